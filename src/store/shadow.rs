//! Shadow reads (store-modes.md §3): in a dual mode a sampled single-record read is repeated against the
//! secondary after the caller already has the primary's answer, and the two are compared field by field with the
//! comparison rules of data-model.md §11. Differences are counted in `flux_shadow_read_mismatch_total{entity,field}`
//! and logged with entity, id and field names only (never values). A slow or failing secondary never delays or
//! fails the request: the comparison runs in its own task.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use super::{ActivityPage, ActivityQuery, DynStore, Store, StoreResult, UserPatch};
use crate::domain::ops::{FilePatch, MilestonePatch, NewMilestone, NewProject, NewTask, ProjectPatch, TaskPatch};
use crate::domain::{Activity, Actor, FileRecord, Member, Milestone, Project, Task, Team, User};

/// The sampling rate, shared between the store wrapper and `PUT /api/admin/store {"shadowReadRate"}`.
#[derive(Default)]
pub struct ShadowRate(AtomicU64);

impl ShadowRate {
    pub fn new(rate: f64) -> ShadowRate {
        ShadowRate(AtomicU64::new(rate.clamp(0.0, 1.0).to_bits()))
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    pub fn set(&self, rate: f64) {
        self.0.store(rate.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }
    fn sample(&self) -> bool {
        let rate = self.get();
        rate > 0.0 && (rate >= 1.0 || rand::random::<f64>() < rate)
    }
}

/// Whether an aggregate (`project:<id>`, `user:<id>`, …) has outbox entries not yet applied to the secondary: such
/// records are legitimately different and are skipped.
pub type PendingCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

pub struct ShadowStore {
    primary: DynStore,
    secondary: DynStore,
    rate: Arc<ShadowRate>,
    pending: PendingCheck,
}

impl ShadowStore {
    pub fn new(primary: DynStore, secondary: DynStore, rate: Arc<ShadowRate>, pending: PendingCheck) -> ShadowStore {
        ShadowStore { primary, secondary, rate, pending }
    }

    fn shadow<T, F>(&self, entity: &'static str, id: &str, key: String, primary: &Option<T>, read: F)
    where
        T: Serialize + Send + Sync + 'static,
        F: FnOnce(DynStore) -> BoxFut<Option<T>> + Send + 'static,
    {
        if !self.rate.sample() || (self.pending)(&key) {
            return;
        }
        let primary = primary.as_ref().map(|p| serde_json::to_value(p).expect("records serialise"));
        let secondary = self.secondary.clone();
        let pending = self.pending.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let other = match read(secondary).await {
                Ok(v) => v.map(|r| serde_json::to_value(&r).expect("records serialise")),
                Err(e) => {
                    metrics::counter!("flux_shadow_reads_total", "result" => "error").increment(1);
                    tracing::debug!(entity, id = %id, error = %e, "shadow read failed on the secondary");
                    return;
                }
            };
            // A write that landed between the two reads is not a mismatch.
            if pending(&key) {
                metrics::counter!("flux_shadow_reads_total", "result" => "skipped").increment(1);
                return;
            }
            let fields = match (&primary, &other) {
                (None, None) => vec![],
                (Some(_), None) => vec!["(missing in secondary)".to_owned()],
                (None, Some(_)) => vec!["(missing in primary)".to_owned()],
                (Some(a), Some(b)) => diff_fields(entity, a, b),
            };
            if fields.is_empty() {
                metrics::counter!("flux_shadow_reads_total", "result" => "match").increment(1);
                return;
            }
            metrics::counter!("flux_shadow_reads_total", "result" => "mismatch").increment(1);
            for f in &fields {
                metrics::counter!("flux_shadow_read_mismatch_total", "entity" => entity, "field" => f.clone())
                    .increment(1);
            }
            tracing::warn!(entity, id = %id, fields = %fields.join(", "), "shadow read mismatch between primary and secondary");
        });
    }
}

/// Field names that differ between two records in their legacy JSON form (data-model.md §11): absent equals null;
/// task and milestone lists compare per id plus order; member lists as (user, role, joinedAt) plus order; derived
/// values (`progress`) are not compared.
pub fn diff_fields(entity: &str, a: &Value, b: &Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return if a == b { vec![] } else { vec!["(record)".into()] };
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        let (x, y) = (a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null));
        if entity == "project" && k == "progress" {
            continue;
        }
        match (entity, k.as_str()) {
            ("project", "tasks" | "milestones") => {
                let singular = if k == "tasks" { "task" } else { "milestone" };
                out.extend(diff_lists(singular, k, x, y));
            }
            _ if x != y => out.push(k.clone()),
            _ => {}
        }
    }
    out
}

fn diff_lists(entity: &str, field: &str, a: &Value, b: &Value) -> Vec<String> {
    let empty = vec![];
    let (a, b) = (a.as_array().unwrap_or(&empty), b.as_array().unwrap_or(&empty));
    let id = |v: &Value| v.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
    let ids_a: Vec<String> = a.iter().map(id).collect();
    let ids_b: Vec<String> = b.iter().map(id).collect();
    let mut out = BTreeSet::new();
    for (i, x) in a.iter().enumerate() {
        match b.iter().find(|y| id(y) == ids_a[i]) {
            None => {
                out.insert(format!("{field}[missing]"));
            }
            Some(y) => out.extend(diff_fields(entity, x, y).into_iter().map(|f| format!("{field}.{f}"))),
        }
    }
    if ids_b.iter().any(|i| !ids_a.contains(i)) {
        out.insert(format!("{field}[extra]"));
    }
    let common_a: Vec<&String> = ids_a.iter().filter(|i| ids_b.contains(i)).collect();
    let common_b: Vec<&String> = ids_b.iter().filter(|i| ids_a.contains(i)).collect();
    if common_a != common_b {
        out.insert(format!("{field}[order]"));
    }
    out.into_iter().collect()
}

type BoxFut<T> = std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<T>> + Send>>;

fn boxed<T: Send + 'static>(f: impl std::future::Future<Output = StoreResult<T>> + Send + 'static) -> BoxFut<T> {
    Box::pin(f)
}

#[async_trait]
impl Store for ShadowStore {
    fn backend(&self) -> &'static str {
        self.primary.backend()
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<User>> {
        let r = self.primary.get_user(id).await?;
        let owned = id.to_owned();
        self.shadow("user", id, format!("user:{id}"), &r, move |s| boxed(async move { s.get_user(&owned).await }));
        Ok(r)
    }
    async fn get_user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        self.primary.get_user_by_email(email).await
    }
    async fn get_user_by_google_id(&self, google_id: &str) -> StoreResult<Option<User>> {
        self.primary.get_user_by_google_id(google_id).await
    }
    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.primary.list_users().await
    }
    async fn insert_user(&self, user: User) -> StoreResult<User> {
        self.primary.insert_user(user).await
    }
    async fn update_user(&self, id: &str, patch: UserPatch) -> StoreResult<User> {
        self.primary.update_user(id, patch).await
    }

    async fn get_team(&self, id: &str) -> StoreResult<Option<Team>> {
        let r = self.primary.get_team(id).await?;
        let owned = id.to_owned();
        self.shadow("team", id, format!("team:{id}"), &r, move |s| boxed(async move { s.get_team(&owned).await }));
        Ok(r)
    }
    async fn list_teams_for(&self, user: &User) -> StoreResult<Vec<Team>> {
        self.primary.list_teams_for(user).await
    }
    async fn insert_team(&self, team: Team) -> StoreResult<Team> {
        self.primary.insert_team(team).await
    }

    async fn list_projects_for(&self, user: &User) -> StoreResult<Vec<Arc<Project>>> {
        self.primary.list_projects_for(user).await
    }
    async fn get_project(&self, id: &str) -> StoreResult<Option<Arc<Project>>> {
        let r = self.primary.get_project(id).await?;
        let owned = id.to_owned();
        self.shadow("project", id, format!("project:{id}"), &r, move |s| {
            boxed(async move { s.get_project(&owned).await })
        });
        Ok(r)
    }
    async fn insert_project(&self, input: NewProject, actor: &Actor) -> StoreResult<Arc<Project>> {
        self.primary.insert_project(input, actor).await
    }
    async fn update_project(&self, id: &str, patch: ProjectPatch) -> StoreResult<Arc<Project>> {
        self.primary.update_project(id, patch).await
    }
    async fn delete_project(&self, id: &str) -> StoreResult<()> {
        self.primary.delete_project(id).await
    }

    async fn insert_task(&self, project_id: &str, input: NewTask, actor: &Actor) -> StoreResult<(Task, Activity)> {
        self.primary.insert_task(project_id, input, actor).await
    }
    async fn update_task(
        &self,
        project_id: &str,
        task_id: &str,
        patch: TaskPatch,
        actor: &Actor,
    ) -> StoreResult<(Task, Activity)> {
        self.primary.update_task(project_id, task_id, patch, actor).await
    }
    async fn delete_task(&self, project_id: &str, task_id: &str, actor: &Actor) -> StoreResult<Activity> {
        self.primary.delete_task(project_id, task_id, actor).await
    }

    async fn add_member(
        &self,
        project_id: &str,
        user: &User,
        role: &str,
        actor: &Actor,
    ) -> StoreResult<(Member, Activity)> {
        self.primary.add_member(project_id, user, role, actor).await
    }
    async fn update_member_role(
        &self,
        project_id: &str,
        entry: &str,
        label: &str,
        role: &str,
        caller_is_owner: bool,
        actor: &Actor,
    ) -> StoreResult<(Member, Option<Activity>)> {
        self.primary.update_member_role(project_id, entry, label, role, caller_is_owner, actor).await
    }
    async fn remove_member(
        &self,
        project_id: &str,
        entry: &str,
        label: &str,
        caller_is_owner: bool,
        actor: &Actor,
    ) -> StoreResult<Activity> {
        self.primary.remove_member(project_id, entry, label, caller_is_owner, actor).await
    }

    async fn insert_milestone(
        &self,
        project_id: &str,
        input: NewMilestone,
        actor: &Actor,
    ) -> StoreResult<(Milestone, Activity)> {
        self.primary.insert_milestone(project_id, input, actor).await
    }
    async fn update_milestone(
        &self,
        project_id: &str,
        milestone_id: &str,
        patch: MilestonePatch,
        actor: &Actor,
    ) -> StoreResult<(Milestone, Activity)> {
        self.primary.update_milestone(project_id, milestone_id, patch, actor).await
    }

    async fn insert_files(&self, files: Vec<FileRecord>) -> StoreResult<Vec<FileRecord>> {
        self.primary.insert_files(files).await
    }
    async fn list_files_for(&self, uploader: &str, project_id: Option<&str>) -> StoreResult<Vec<FileRecord>> {
        self.primary.list_files_for(uploader, project_id).await
    }
    async fn get_file(&self, id: &str) -> StoreResult<Option<FileRecord>> {
        let r = self.primary.get_file(id).await?;
        let owned = id.to_owned();
        self.shadow("file", id, format!("file:{id}"), &r, move |s| boxed(async move { s.get_file(&owned).await }));
        Ok(r)
    }
    async fn update_file(&self, id: &str, patch: FilePatch) -> StoreResult<FileRecord> {
        self.primary.update_file(id, patch).await
    }
    async fn delete_file(&self, id: &str) -> StoreResult<FileRecord> {
        self.primary.delete_file(id).await
    }

    async fn list_activities(&self, project_id: &str, query: &ActivityQuery) -> StoreResult<ActivityPage> {
        self.primary.list_activities(project_id, query).await
    }

    async fn flush(&self) -> StoreResult<()> {
        self.primary.flush().await
    }

    async fn check_health(&self) -> StoreResult<()> {
        self.primary.check_health().await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn differences_are_named_by_field_tasks_by_id_and_order() {
        let a = json!({"id": "p", "name": "A", "progress": 50, "tasks": [{"id": "1", "title": "x"}, {"id": "2", "title": "y"}],
                       "milestones": [], "extra": null});
        let b = json!({"id": "p", "name": "B", "progress": 0, "tasks": [{"id": "2", "title": "y"}, {"id": "1", "title": "z"}],
                       "milestones": [{"id": "m"}]});
        assert_eq!(diff_fields("project", &a, &b), vec!["milestones[extra]", "name", "tasks.title", "tasks[order]"]);
        assert!(diff_fields("project", &a, &a).is_empty());
        assert_eq!(diff_fields("user", &json!({"id": "u", "avatar": null}), &json!({"id": "u"})), Vec::<String>::new());
    }

    #[test]
    fn the_rate_samples_nothing_at_zero_and_everything_at_one() {
        let r = ShadowRate::new(0.0);
        assert!((0..100).all(|_| !r.sample()));
        r.set(1.0);
        assert!((0..100).all(|_| r.sample()));
        r.set(7.0);
        assert_eq!(r.get(), 1.0, "clamped");
    }
}
