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

impl DomainEvent {
    /// A task create or update: the task event, then its activity (realtime.md §5), in the order clients get them.
    pub fn task_written(created: bool, project_id: &str, task: &Task, actor: &Actor, activity: &Activity) -> Vec<Self> {
        let (project_id, task, actor) = (project_id.to_owned(), task.clone(), actor.clone());
        let event = if created {
            DomainEvent::TaskCreated { project_id, task, actor }
        } else {
            DomainEvent::TaskUpdated { project_id, task, actor }
        };
        vec![event, DomainEvent::ActivityAdded(activity.clone())]
    }

    pub fn task_deleted(project_id: &str, task_id: &str, actor: &Actor, activity: &Activity) -> Vec<Self> {
        vec![
            DomainEvent::TaskDeleted {
                project_id: project_id.to_owned(),
                task_id: task_id.to_owned(),
                actor: actor.clone(),
            },
            DomainEvent::ActivityAdded(activity.clone()),
        ]
    }
}

/// Where a store delivers committed events; called from the store's commit path, so it must not block.
pub type EventSink = std::sync::Arc<dyn Fn(DomainEvent) + Send + Sync>;

/// One socket's place in a project room, as instances tell each other about it (realtime.md §8).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEntry {
    pub project_id: String,
    pub socket: String,
    pub user_id: String,
    pub name: String,
    pub joined_at: String,
}

/// Presence announcements between instances in postgres mode (realtime.md §8). An instance publishes them in the
/// order its presence changed; a receiver treats a snapshot as the whole truth about its sender.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum PresenceMsg {
    Join(PresenceEntry),
    Leave {
        project_id: String,
        socket: String,
    },
    /// Every entry of the sender; sent every 15 s and when asked.
    Snapshot {
        entries: Vec<PresenceEntry>,
    },
    /// "Send me your snapshot": a listener that just (re)connected missed what was said meanwhile.
    Sync,
}

/// Receives another instance's presence announcement (sender's instance id, message); must not block.
pub type PresenceSink = std::sync::Arc<dyn Fn(String, PresenceMsg) + Send + Sync>;

/// What the fan-out transport needs from realtime presence: the announcements to publish, in order, and where to
/// deliver the ones it hears.
pub struct PresenceLink {
    pub outgoing: tokio::sync::mpsc::UnboundedReceiver<PresenceMsg>,
    pub incoming: PresenceSink,
}
