//! The storage boundary. Every backend (the journaled JSON store now; PostgreSQL and the dual modes later) implements
//! [`Store`]; handlers and CLI commands see only this trait and domain types.

pub mod json;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::ops::{NewProject, NewTask, ProjectPatch, TaskPatch};
use crate::domain::{Activity, Actor, Project, Task, Team, User};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum StoreError {
    /// `code` is the API's not-found code (`project_not_found`, `task_not_found`, …).
    #[error("not found: {code}")]
    NotFound { code: &'static str },
    #[error("conflict: {message}")]
    Conflict { code: &'static str, message: String },
    /// The store cannot make the write durable or cannot be reached; nothing was acknowledged.
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
    /// Login lookup (auth.md §4.2): the exact address, else a unique case-insensitive match.
    async fn get_user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    async fn get_user_by_google_id(&self, google_id: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// `Conflict{email_taken}` when an account with that e-mail (case-insensitive) exists.
    async fn insert_user(&self, user: User) -> StoreResult<User>;
    async fn update_user(&self, id: &str, patch: UserPatch) -> StoreResult<User>;

    async fn get_team(&self, id: &str) -> StoreResult<Option<Team>>;

    /// Projects the user is a member of (http-api.md §1.10), in creation order.
    async fn list_projects_for(&self, user: &User) -> StoreResult<Vec<Arc<Project>>>;
    async fn get_project(&self, id: &str) -> StoreResult<Option<Arc<Project>>>;
    async fn insert_project(&self, input: NewProject, actor: &Actor) -> StoreResult<Arc<Project>>;
    async fn update_project(&self, id: &str, patch: ProjectPatch) -> StoreResult<Arc<Project>>;
    /// Removes the project with its members, tasks, milestones and activities.
    async fn delete_project(&self, id: &str) -> StoreResult<()>;

    async fn insert_task(
        &self,
        project_id: &str,
        input: NewTask,
        actor: &Actor,
    ) -> StoreResult<(Task, Activity)>;
    async fn update_task(
        &self,
        project_id: &str,
        task_id: &str,
        patch: TaskPatch,
        actor: &Actor,
    ) -> StoreResult<(Task, Activity)>;
    async fn delete_task(
        &self,
        project_id: &str,
        task_id: &str,
        actor: &Actor,
    ) -> StoreResult<Activity>;

    /// Newest first, filtered, then paged.
    async fn list_activities(
        &self,
        project_id: &str,
        query: &ActivityQuery,
    ) -> StoreResult<ActivityPage>;

    /// Makes everything acknowledged so far durable in the store's long-term form (JSON: a final compaction).
    async fn flush(&self) -> StoreResult<()>;
}

pub type DynStore = Arc<dyn Store>;
