//! What a committed write tells the rest of the system (realtime fan-out). Stores produce these inside the write's
//! atomic unit and hand them over only after the commit, in commit order.

use super::model::{Activity, Task};
use super::Actor;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum DomainEvent {
    TaskCreated {
        project_id: String,
        task: Task,
        actor: Actor,
    },
    TaskUpdated {
        project_id: String,
        task: Task,
        actor: Actor,
    },
    TaskDeleted {
        project_id: String,
        task_id: String,
        actor: Actor,
    },
    ActivityAdded(Activity),
    /// `member_ref` is the removed entry's stored `userId` (an id, or a legacy e-mail).
    MemberRemoved {
        project_id: String,
        member_ref: String,
    },
    ProjectDeleted {
        project_id: String,
    },
}

/// Where a store delivers committed events; called from the store's commit path, so it must not block.
pub type EventSink = std::sync::Arc<dyn Fn(DomainEvent) + Send + Sync>;
