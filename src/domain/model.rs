//! Records as the legacy JSON files hold them. The serde layout *is* the legacy file format (canonical key order,
//! the "always written" keys, unknown keys kept in `extra` in the order they were read); the wire shapes live in
//! `api::dto`. Enum spellings and timestamps are normalised once, by `normalize()` after reading.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::time::{self, Timestamp};
use super::vocab;

pub type Extra = Map<String, Value>;

fn is_true(b: &bool) -> bool {
    *b
}
fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub user_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub is_active: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub user_id: String,
    pub role: String,
    pub joined_at: Timestamp,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub status: String,
    pub priority: String,
    #[serde(default)]
    pub assigned_to: Option<String>,
    #[serde(default)]
    pub due_date: Option<Timestamp>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Milestone {
    pub id: String,
    /// Legacy rollback-shaped records say `name`; `normalize()` moves it here and `name` is never written.
    #[serde(default)]
    pub title: String,
    #[serde(default, rename = "name", skip_serializing)]
    pub legacy_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub due_date: Option<Timestamp>,
    pub status: String,
    #[serde(default)]
    pub created_by: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_index: Option<i64>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    pub status: String,
    pub priority: String,
    #[serde(default)]
    pub start_date: Option<Timestamp>,
    #[serde(default)]
    pub due_date: Option<Timestamp>,
    #[serde(default)]
    pub progress: i64,
    pub created_by: String,
    pub created_at: Timestamp,
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    #[serde(default)]
    pub members: Vec<Member>,
    #[serde(default)]
    /// Behind `Arc` so that changing one task of a project shares the others with readers' snapshots.
    pub tasks: Vec<Arc<Task>>,
    #[serde(default)]
    pub milestones: Vec<Milestone>,
    #[serde(default)]
    pub files: Vec<Value>,
    #[serde(default)]
    pub channel_metadata: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    pub id: String,
    pub project_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub user_email: Option<String>,
    pub user_avatar: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub entity_title: Option<String>,
    pub action: String,
    #[serde(default = "empty_object")]
    pub metadata: Value,
    pub timestamp: Timestamp,
    #[serde(flatten)]
    pub extra: Extra,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileRecord {
    pub id: String,
    pub original_name: String,
    pub filename: String,
    #[serde(default)]
    pub path: Option<String>,
    pub url: String,
    pub size: i64,
    pub mimetype: String,
    pub uploaded_by: String,
    pub uploaded_at: Timestamp,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub is_public: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Team {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub created_by: String,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    #[serde(default)]
    pub members: Vec<Member>,
    #[serde(default)]
    pub invites: Vec<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

fn norm_ts(t: &mut Timestamp) {
    if let Some(c) = time::canonical(t) {
        *t = c;
    }
}
fn norm_opt_ts(t: &mut Option<Timestamp>) {
    if let Some(v) = t {
        norm_ts(v);
    }
}

/// Applied to every record read from a legacy file or a journal: canonical timestamps and enum spellings
/// (data-model.md §1, §8). Values that match no rule are kept verbatim rather than guessed at.
pub trait Normalize {
    fn normalize(&mut self);
}

impl Normalize for User {
    fn normalize(&mut self) {
        norm_ts(&mut self.created_at);
        norm_opt_ts(&mut self.updated_at);
    }
}

impl Normalize for Member {
    fn normalize(&mut self) {
        norm_ts(&mut self.joined_at);
    }
}

impl Normalize for Task {
    fn normalize(&mut self) {
        self.status = vocab::TASK_STATUS.canonical(&self.status);
        norm_opt_ts(&mut self.due_date);
        norm_ts(&mut self.created_at);
        norm_ts(&mut self.updated_at);
        norm_opt_ts(&mut self.completed_at);
    }
}

impl Normalize for Milestone {
    fn normalize(&mut self) {
        if let Some(name) = self.legacy_name.take() {
            if self.title.is_empty() {
                self.title = name;
            }
        }
        self.status = vocab::MILESTONE_STATUS.canonical(&self.status);
        norm_opt_ts(&mut self.due_date);
        norm_ts(&mut self.created_at);
        norm_ts(&mut self.updated_at);
        norm_opt_ts(&mut self.completed_at);
    }
}

impl Normalize for Project {
    fn normalize(&mut self) {
        self.status = vocab::PROJECT_STATUS.canonical(&self.status);
        norm_opt_ts(&mut self.start_date);
        norm_opt_ts(&mut self.due_date);
        norm_ts(&mut self.created_at);
        norm_opt_ts(&mut self.updated_at);
        self.members.iter_mut().for_each(Normalize::normalize);
        self.tasks.iter_mut().for_each(|t| Arc::make_mut(t).normalize());
        self.milestones.iter_mut().for_each(Normalize::normalize);
    }
}

impl Normalize for Activity {
    fn normalize(&mut self) {
        norm_ts(&mut self.timestamp);
    }
}

impl Normalize for FileRecord {
    fn normalize(&mut self) {
        norm_ts(&mut self.uploaded_at);
        norm_opt_ts(&mut self.updated_at);
    }
}

impl Normalize for Team {
    fn normalize(&mut self) {
        norm_ts(&mut self.created_at);
        norm_opt_ts(&mut self.updated_at);
        self.members.iter_mut().for_each(Normalize::normalize);
    }
}

impl Project {
    /// http-api.md §2: always derived from the current tasks, never trusted from storage.
    pub fn computed_progress(&self) -> i64 {
        progress_of(&self.tasks)
    }
}

pub fn progress_of(tasks: &[Arc<Task>]) -> i64 {
    let done = tasks.iter().filter(|t| t.status == "completed").count();
    progress_from_counts(done as u64, tasks.len() as u64)
}

/// [`progress_of`] from the counts alone (a store that counts in SQL must round exactly as this does).
pub fn progress_from_counts(completed: u64, total: u64) -> i64 {
    if total == 0 {
        return 0;
    }
    ((completed as f64 / total as f64) * 100.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::progress_from_counts;

    #[test]
    fn progress_from_counts_rounds_halves_up_and_is_zero_without_tasks() {
        assert_eq!(progress_from_counts(0, 0), 0);
        assert_eq!(progress_from_counts(0, 7), 0);
        assert_eq!(progress_from_counts(1, 8), 13, "12.5 rounds up");
        assert_eq!(progress_from_counts(1, 3), 33);
        assert_eq!(progress_from_counts(2, 3), 67);
        assert_eq!(progress_from_counts(5, 5), 100);
    }
}
