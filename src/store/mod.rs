//! The storage boundary. Every backend (the journaled JSON store now; PostgreSQL and the dual modes later) implements
//! [`Store`]; handlers and CLI commands see only this trait and domain types.

pub mod json;
pub mod modes;
pub mod outbox;
pub mod postgres;
pub mod shadow;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::access::{self, Role};
use crate::domain::ops::{
    FilePatch, MilestonePatch, NewMilestone, NewProject, NewTask, ProjectPatch, Rejection, TaskPatch,
};
use crate::domain::{Activity, Actor, FileRecord, Member, Milestone, Project, Task, Team, User};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum StoreError {
    /// `code` is the API's not-found code (`project_not_found`, `task_not_found`, …).
    #[error("not found: {code}")]
    NotFound { code: &'static str },
    #[error("conflict: {message}")]
    Conflict { code: &'static str, message: String },
    /// The store cannot make the write durable or cannot be reached; nothing was acknowledged.
    /// A domain rule refused the change (decided against the current state inside the atomic unit).
    #[error("rejected: {}", .0.code)]
    Rejected(Rejection),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A change to a user record, applied atomically against the current version (no lost update between, say, a
/// login's rehash and an operator's `grant-admin`).
#[derive(Clone, Debug, Default)]
pub struct UserPatch {
    pub user_type: Option<String>,
    pub password: Option<Option<String>>,
    pub google_id: Option<Option<String>>,
    pub oauth_provider: Option<Option<String>>,
    pub is_active: Option<bool>,
    /// Most operator changes stamp `updatedAt`; a login's rehash must not (auth.md §3).
    pub touch_updated_at: bool,
}

/// How stale [`Store::get_user_for_request`] may be (auth.md §1, §5: "at most 5 s").
pub const USER_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// A project's creator and members, and its tasks when they were asked for ([`Store::get_project_access`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectAccess {
    pub id: String,
    pub created_by: String,
    pub members: Vec<Member>,
    pub tasks: Vec<Arc<Task>>,
}

impl ProjectAccess {
    /// The caller's role, as [`access::role_of`] decides it for the whole project.
    pub fn role_of(&self, user: &User) -> Option<Role> {
        access::role_from(&self.created_by, &self.members, user)
    }
}

#[derive(Clone, Debug, Default)]
pub struct ActivityQuery {
    pub limit: usize,
    pub offset: usize,
    pub kind: Option<String>,
    pub user_id: Option<String>,
    pub date_from: Option<String>,
    pub date_to: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ActivityPage {
    pub activities: Vec<Activity>,
    pub total: usize,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `json`, `postgres`, … for logs and metrics.
    fn backend(&self) -> &'static str;

    async fn get_user(&self, id: &str) -> StoreResult<Option<User>>;
    /// The caller of an authenticated request (auth.md §1). A store may answer from a cache up to
    /// [`USER_CACHE_TTL`] old, so a change made elsewhere (another instance) shows within that time; its own
    /// `update_user` is seen at once.
    async fn get_user_for_request(&self, id: &str) -> StoreResult<Option<User>> {
        self.get_user(id).await
    }
    /// Login lookup (auth.md §4.2): the exact address, else a unique case-insensitive match.
    async fn get_user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    async fn get_user_by_google_id(&self, google_id: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// `Conflict{email_taken}` when an account with that e-mail (case-insensitive) exists.
    async fn insert_user(&self, user: User) -> StoreResult<User>;
    async fn update_user(&self, id: &str, patch: UserPatch) -> StoreResult<User>;

    async fn get_team(&self, id: &str) -> StoreResult<Option<Team>>;
    /// Teams and organizations (one collection) the user is a member of, in creation order.
    async fn list_teams_for(&self, user: &User) -> StoreResult<Vec<Team>>;
    async fn insert_team(&self, team: Team) -> StoreResult<Team>;

    /// Projects the user is a member of (http-api.md §1.10), in creation order.
    async fn list_projects_for(&self, user: &User) -> StoreResult<Vec<Arc<Project>>>;
    async fn get_project(&self, id: &str) -> StoreResult<Option<Arc<Project>>>;
    /// What a project-scoped request needs to authorise its caller (creator and members), with the project's tasks
    /// in list order when `with_tasks`, else none. Cheaper than [`get_project`](Store::get_project) for a store
    /// that must assemble the whole project.
    async fn get_project_access(&self, id: &str, with_tasks: bool) -> StoreResult<Option<ProjectAccess>> {
        Ok(self.get_project(id).await?.map(|p| ProjectAccess {
            id: p.id.clone(),
            created_by: p.created_by.clone(),
            members: p.members.clone(),
            tasks: if with_tasks { p.tasks.clone() } else { Vec::new() },
        }))
    }
    async fn insert_project(&self, input: NewProject, actor: &Actor) -> StoreResult<Arc<Project>>;
    async fn update_project(&self, id: &str, patch: ProjectPatch) -> StoreResult<Arc<Project>>;
    /// Removes the project with its members, tasks, milestones and activities.
    async fn delete_project(&self, id: &str) -> StoreResult<()>;

    async fn insert_task(&self, project_id: &str, input: NewTask, actor: &Actor) -> StoreResult<(Task, Activity)>;
    /// [`insert_task`](Store::insert_task) with the access check folded in, for a store where that saves a round
    /// trip: `Some` when it inserted because `user` can certainly write to the project; `None` when it did nothing
    /// (no such project, not shown to be a writer, or no such shortcut in this store or mode) and the caller must
    /// take the regular path — access check, then `insert_task`. A store may answer `None` for a writer, never
    /// `Some` for anyone else.
    async fn insert_task_as_writer(
        &self,
        _project_id: &str,
        _input: NewTask,
        _actor: &Actor,
        _user: &User,
    ) -> StoreResult<Option<(Task, Activity)>> {
        Ok(None)
    }
    async fn update_task(
        &self,
        project_id: &str,
        task_id: &str,
        patch: TaskPatch,
        actor: &Actor,
    ) -> StoreResult<(Task, Activity)>;
    async fn delete_task(&self, project_id: &str, task_id: &str, actor: &Actor) -> StoreResult<Activity>;

    /// Appends `user` to the members (`Rejected{already_member}` when they already belong).
    async fn add_member(
        &self,
        project_id: &str,
        user: &User,
        role: &str,
        actor: &Actor,
    ) -> StoreResult<(Member, Activity)>;
    /// `entry` is the member entry's stored `userId` (an id, or a legacy e-mail); `label` names the member in the
    /// activity. `None` activity when the role did not change.
    async fn update_member_role(
        &self,
        project_id: &str,
        entry: &str,
        label: &str,
        role: &str,
        caller_is_owner: bool,
        actor: &Actor,
    ) -> StoreResult<(Member, Option<Activity>)>;
    async fn remove_member(
        &self,
        project_id: &str,
        entry: &str,
        label: &str,
        caller_is_owner: bool,
        actor: &Actor,
    ) -> StoreResult<Activity>;

    async fn insert_milestone(
        &self,
        project_id: &str,
        input: NewMilestone,
        actor: &Actor,
    ) -> StoreResult<(Milestone, Activity)>;
    async fn update_milestone(
        &self,
        project_id: &str,
        milestone_id: &str,
        patch: MilestonePatch,
        actor: &Actor,
    ) -> StoreResult<(Milestone, Activity)>;

    /// One atomic write for every record of an upload request.
    async fn insert_files(&self, files: Vec<FileRecord>) -> StoreResult<Vec<FileRecord>>;
    /// The uploader's files, in upload order, optionally only those attached to `project_id`.
    async fn list_files_for(&self, uploader: &str, project_id: Option<&str>) -> StoreResult<Vec<FileRecord>>;
    async fn get_file(&self, id: &str) -> StoreResult<Option<FileRecord>>;
    async fn update_file(&self, id: &str, patch: FilePatch) -> StoreResult<FileRecord>;
    async fn delete_file(&self, id: &str) -> StoreResult<FileRecord>;

    /// Newest first, filtered, then paged.
    async fn list_activities(&self, project_id: &str, query: &ActivityQuery) -> StoreResult<ActivityPage>;

    /// Makes everything acknowledged so far durable in the store's long-term form (JSON: a final compaction).
    async fn flush(&self) -> StoreResult<()>;

    /// Readiness (`/health/ready`): a trivial round trip that proves the backend can serve reads and take writes
    /// now (JSON: the data dir is readable and a probe file can be written; PostgreSQL: `select 1`). The caller
    /// bounds it with a timeout. `Unavailable` carries a short reason without paths or secrets.
    async fn check_health(&self) -> StoreResult<()> {
        Ok(())
    }
}

pub type DynStore = Arc<dyn Store>;
