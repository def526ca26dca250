//! `Store` for the JSON backend: reads come from the published snapshot; each write is one `JsonStore::write`.

use std::sync::Arc;

use async_trait::async_trait;

use super::state::Op;
use super::JsonStore;
use crate::domain::events::DomainEvent;
use crate::domain::ops::{self, FilePatch, MilestonePatch, NewMilestone, NewProject, NewTask, ProjectPatch, TaskPatch};
use crate::domain::{access, time, Activity, Actor, FileRecord, Member, Milestone, Project, Task, Team, User};
use crate::store::{ActivityPage, ActivityQuery, Store, StoreError, StoreResult, UserPatch};

const PROJECT_NOT_FOUND: StoreError = StoreError::NotFound { code: "project_not_found" };
const TASK_NOT_FOUND: StoreError = StoreError::NotFound { code: "task_not_found" };
const MILESTONE_NOT_FOUND: StoreError = StoreError::NotFound { code: "milestone_not_found" };
const FILE_NOT_FOUND: StoreError = StoreError::NotFound { code: "file_not_found" };

/// A member change journals the project header (which carries the member list) and its activity.
fn members_write(p: &Project, members: Vec<Member>, activity: Option<Activity>) -> Vec<Op> {
    let mut header = p.clone();
    header.members = members;
    let mut ops = vec![Op::put_project(&header)];
    ops.extend(activity.map(|rec| Op::AddActivity { rec }));
    ops
}

fn project<'a>(state: &'a super::state::State, id: &str) -> StoreResult<&'a Arc<Project>> {
    state.projects.get(id).ok_or(PROJECT_NOT_FOUND)
}

impl JsonStore {
    /// Writes records as they are (after-images or deletes by id) in one journaled write: the replay target of the
    /// dual-postgres outbox and of `validate --repair` towards JSON. A child record whose project is not here (yet)
    /// is an error, so the caller retries instead of losing it; deleting what is already gone is a no-op.
    pub async fn apply_ops(&self, ops: Vec<Op>) -> StoreResult<()> {
        self.write(move |state| {
            // Projects as they will be at each op: the batch may create (or delete) a project before its children.
            let mut added: std::collections::HashSet<&str> = std::collections::HashSet::new();
            let mut removed: std::collections::HashSet<&str> = std::collections::HashSet::new();
            for op in &ops {
                let parent = match op {
                    Op::PutProject { rec } => {
                        added.insert(&rec.id);
                        removed.remove(rec.id.as_str());
                        None
                    }
                    Op::DelProject { id } => {
                        removed.insert(id);
                        added.remove(id.as_str());
                        None
                    }
                    Op::PutTask { project, .. } | Op::PutMilestone { project, .. } => Some(project.as_str()),
                    Op::AddActivity { rec } => Some(rec.project_id.as_str()),
                    _ => None,
                };
                if let Some(p) = parent {
                    let present = added.contains(p) || (state.projects.contains_key(p) && !removed.contains(p));
                    if !present {
                        return Err(StoreError::Other(format!("project {p} is not in the JSON store (yet)")));
                    }
                }
            }
            Ok(((), ops))
        })
        .await
    }
}

#[async_trait]
impl crate::store::outbox::OutboxTarget for JsonStore {
    fn name(&self) -> &'static str {
        "json"
    }

    async fn apply(&self, entry: &crate::store::outbox::OutboxEntry) -> Result<(), crate::store::outbox::ApplyError> {
        self.apply_batch(std::slice::from_ref(entry)).await
    }

    /// One journal record (one fsync) for the whole batch.
    async fn apply_batch(
        &self,
        entries: &[crate::store::outbox::OutboxEntry],
    ) -> Result<(), crate::store::outbox::ApplyError> {
        use crate::store::outbox::ApplyError;
        let ops = entries.iter().map(|e| e.to_op()).collect::<Result<Vec<_>, _>>().map_err(ApplyError::Failed)?;
        Ok(self.apply_ops(ops).await?)
    }
}

#[async_trait]
impl Store for JsonStore {
    fn backend(&self) -> &'static str {
        "json"
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<User>> {
        Ok(self.snapshot().users.get(id).map(|u| (**u).clone()))
    }

    async fn get_user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        Ok(self.snapshot().user_by_email(email).map(|u| (**u).clone()))
    }

    async fn get_user_by_google_id(&self, google_id: &str) -> StoreResult<Option<User>> {
        let state = self.snapshot();
        Ok(state.users.values().find(|u| u.google_id.as_deref() == Some(google_id)).map(|u| (**u).clone()))
    }

    async fn get_team(&self, id: &str) -> StoreResult<Option<Team>> {
        Ok(self.snapshot().teams.get(id).map(|t| (**t).clone()))
    }

    async fn list_teams_for(&self, user: &User) -> StoreResult<Vec<Team>> {
        let state = self.snapshot();
        Ok(state.teams.values().filter(|t| access::team_role(t, user).is_some()).map(|t| (**t).clone()).collect())
    }

    async fn insert_team(&self, team: Team) -> StoreResult<Team> {
        self.write(|_| Ok((team.clone(), vec![Op::PutTeam { rec: team }]))).await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        Ok(self.snapshot().users.values().map(|u| (**u).clone()).collect())
    }

    async fn insert_user(&self, user: User) -> StoreResult<User> {
        self.write(|s| {
            if s.email_taken(&user.email) || s.users.contains_key(&user.id) {
                return Err(StoreError::Conflict { code: "email_taken", message: "Email already registered".into() });
            }
            Ok((user.clone(), vec![Op::PutUser { rec: user }]))
        })
        .await
    }

    async fn update_user(&self, id: &str, patch: UserPatch) -> StoreResult<User> {
        self.write(|s| {
            let mut u = (**s.users.get(id).ok_or(StoreError::NotFound { code: "user_not_found" })?).clone();
            if let Some(v) = patch.user_type {
                u.user_type = v;
            }
            if let Some(v) = patch.password {
                u.password = v;
            }
            if let Some(v) = patch.google_id {
                u.google_id = v;
            }
            if let Some(v) = patch.oauth_provider {
                u.oauth_provider = v;
            }
            if let Some(v) = patch.is_active {
                u.is_active = v;
            }
            if patch.touch_updated_at {
                u.updated_at = Some(time::now());
            }
            Ok((u.clone(), vec![Op::PutUser { rec: u }]))
        })
        .await
    }

    async fn list_projects_for(&self, user: &User) -> StoreResult<Vec<Arc<Project>>> {
        let state = self.snapshot();
        Ok(state.projects.values().filter(|p| access::is_member(p, user)).cloned().collect())
    }

    async fn get_project(&self, id: &str) -> StoreResult<Option<Arc<Project>>> {
        Ok(self.snapshot().projects.get(id).cloned())
    }

    async fn insert_project(&self, input: NewProject, actor: &Actor) -> StoreResult<Arc<Project>> {
        let project = ops::build_project(input, actor);
        let id = project.id.clone();
        self.write(|_| Ok(((), vec![Op::put_project(&project)]))).await?;
        self.snapshot().projects.get(&id).cloned().ok_or(PROJECT_NOT_FOUND)
    }

    async fn update_project(&self, id: &str, patch: ProjectPatch) -> StoreResult<Arc<Project>> {
        let updated = self
            .write(|s| {
                let mut p = (**project(s, id)?).clone();
                ops::apply_project_patch(&mut p, patch);
                let op = Op::put_project(&p);
                Ok((p, vec![op]))
            })
            .await?;
        Ok(Arc::new(updated))
    }

    async fn delete_project(&self, id: &str) -> StoreResult<()> {
        self.write_with_events(|s| {
            project(s, id)?;
            let events = vec![DomainEvent::ProjectDeleted { project_id: id.to_owned() }];
            Ok(((), vec![Op::DelProject { id: id.to_owned() }], events))
        })
        .await
    }

    async fn insert_task(&self, project_id: &str, input: NewTask, actor: &Actor) -> StoreResult<(Task, Activity)> {
        let task = ops::build_task(input, actor);
        let activity = ops::task_created_activity(project_id, &task, actor);
        self.write_with_events(|s| {
            let p = project(s, project_id)?;
            let ops = vec![
                Op::PutTask { project: project_id.to_owned(), pos: p.tasks.len(), rec: task.clone() },
                Op::AddActivity { rec: activity.clone() },
            ];
            let events = DomainEvent::task_written(true, project_id, &task, actor, &activity);
            Ok(((task, activity), ops, events))
        })
        .await
    }

    async fn update_task(
        &self,
        project_id: &str,
        task_id: &str,
        patch: TaskPatch,
        actor: &Actor,
    ) -> StoreResult<(Task, Activity)> {
        self.write_with_events(|s| {
            let p = project(s, project_id)?;
            let pos = p.tasks.iter().position(|t| t.id == task_id).ok_or(TASK_NOT_FOUND)?;
            let mut task = (*p.tasks[pos]).clone();
            let activity = ops::apply_task_patch(project_id, &mut task, patch, actor);
            let ops = vec![
                Op::PutTask { project: project_id.to_owned(), pos, rec: task.clone() },
                Op::AddActivity { rec: activity.clone() },
            ];
            let events = DomainEvent::task_written(false, project_id, &task, actor, &activity);
            Ok(((task, activity), ops, events))
        })
        .await
    }

    async fn delete_task(&self, project_id: &str, task_id: &str, actor: &Actor) -> StoreResult<Activity> {
        self.write_with_events(|s| {
            let p = project(s, project_id)?;
            let task = p.tasks.iter().find(|t| t.id == task_id).ok_or(TASK_NOT_FOUND)?;
            let activity = ops::task_deleted_activity(project_id, task, actor);
            let ops = vec![
                Op::DelTask { project: project_id.to_owned(), id: task_id.to_owned() },
                Op::AddActivity { rec: activity.clone() },
            ];
            let events = DomainEvent::task_deleted(project_id, task_id, actor, &activity);
            Ok((activity, ops, events))
        })
        .await
    }

    async fn add_member(
        &self,
        project_id: &str,
        user: &User,
        role: &str,
        actor: &Actor,
    ) -> StoreResult<(Member, Activity)> {
        self.write_with_events(|s| {
            let p = project(s, project_id)?;
            let (members, member, act) = ops::add_member(p, user, role, actor).map_err(StoreError::Rejected)?;
            let events = vec![DomainEvent::ActivityAdded(act.clone())];
            Ok(((member, act.clone()), members_write(p, members, Some(act)), events))
        })
        .await
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
        self.write_with_events(|s| {
            let p = project(s, project_id)?;
            let (members, member, act) =
                ops::set_member_role(p, entry, label, role, caller_is_owner, actor).map_err(StoreError::Rejected)?;
            let writes = if act.is_some() { members_write(p, members, act.clone()) } else { vec![] };
            let events = act.iter().cloned().map(DomainEvent::ActivityAdded).collect();
            Ok(((member, act), writes, events))
        })
        .await
    }

    async fn remove_member(
        &self,
        project_id: &str,
        entry: &str,
        label: &str,
        caller_is_owner: bool,
        actor: &Actor,
    ) -> StoreResult<Activity> {
        self.write_with_events(|s| {
            let p = project(s, project_id)?;
            let (members, act) =
                ops::remove_member(p, entry, label, caller_is_owner, actor).map_err(StoreError::Rejected)?;
            // The activity goes out before the member's sockets leave the room (realtime.md §5).
            let events = vec![
                DomainEvent::ActivityAdded(act.clone()),
                DomainEvent::MemberRemoved { project_id: project_id.to_owned(), member_ref: entry.to_owned() },
            ];
            Ok((act.clone(), members_write(p, members, Some(act)), events))
        })
        .await
    }

    async fn insert_milestone(
        &self,
        project_id: &str,
        input: NewMilestone,
        actor: &Actor,
    ) -> StoreResult<(Milestone, Activity)> {
        let m = ops::build_milestone(input, actor);
        let act = ops::milestone_created_activity(project_id, &m, actor);
        self.write_with_events(|s| {
            let p = project(s, project_id)?;
            let ops = vec![
                Op::PutMilestone { project: project_id.to_owned(), pos: p.milestones.len(), rec: m.clone() },
                Op::AddActivity { rec: act.clone() },
            ];
            let events = vec![DomainEvent::ActivityAdded(act.clone())];
            Ok(((m, act), ops, events))
        })
        .await
    }

    async fn update_milestone(
        &self,
        project_id: &str,
        milestone_id: &str,
        patch: MilestonePatch,
        actor: &Actor,
    ) -> StoreResult<(Milestone, Activity)> {
        self.write_with_events(|s| {
            let p = project(s, project_id)?;
            let pos = p.milestones.iter().position(|m| m.id == milestone_id).ok_or(MILESTONE_NOT_FOUND)?;
            let mut m = p.milestones[pos].clone();
            let act = ops::apply_milestone_patch(project_id, &mut m, patch, actor);
            let ops = vec![
                Op::PutMilestone { project: project_id.to_owned(), pos, rec: m.clone() },
                Op::AddActivity { rec: act.clone() },
            ];
            let events = vec![DomainEvent::ActivityAdded(act.clone())];
            Ok(((m, act), ops, events))
        })
        .await
    }

    async fn insert_files(&self, files: Vec<FileRecord>) -> StoreResult<Vec<FileRecord>> {
        self.write(|_| {
            let ops = files.iter().map(|f| Op::PutFile { rec: f.clone() }).collect();
            Ok((files, ops))
        })
        .await
    }

    async fn list_files_for(&self, uploader: &str, project_id: Option<&str>) -> StoreResult<Vec<FileRecord>> {
        let state = self.snapshot();
        Ok(state
            .files
            .values()
            .filter(|f| f.uploaded_by == uploader && project_id.is_none_or(|p| f.project_id.as_deref() == Some(p)))
            .map(|f| (**f).clone())
            .collect())
    }

    async fn get_file(&self, id: &str) -> StoreResult<Option<FileRecord>> {
        Ok(self.snapshot().files.get(id).map(|f| (**f).clone()))
    }

    async fn update_file(&self, id: &str, patch: FilePatch) -> StoreResult<FileRecord> {
        self.write(|s| {
            let mut f = (**s.files.get(id).ok_or(FILE_NOT_FOUND)?).clone();
            if let Some(v) = patch.description {
                f.description = v;
            }
            if let Some(v) = patch.tags {
                f.tags = v;
            }
            if let Some(v) = patch.is_public {
                f.is_public = v;
            }
            f.updated_at = Some(time::now());
            Ok((f.clone(), vec![Op::PutFile { rec: f }]))
        })
        .await
    }

    async fn delete_file(&self, id: &str) -> StoreResult<FileRecord> {
        self.write(|s| {
            let f = (**s.files.get(id).ok_or(FILE_NOT_FOUND)?).clone();
            Ok((f, vec![Op::DelFile { id: id.to_owned() }]))
        })
        .await
    }

    async fn list_activities(&self, project_id: &str, q: &ActivityQuery) -> StoreResult<ActivityPage> {
        let state = self.snapshot();
        let Some(list) = state.activities.get(project_id) else {
            return Ok(ActivityPage { activities: vec![], total: 0 });
        };
        let matches = |a: &&Activity| {
            q.kind.as_ref().is_none_or(|k| &a.kind == k)
                && q.user_id.as_ref().is_none_or(|u| a.user_id.as_ref() == Some(u))
                && q.date_from.as_ref().is_none_or(|d| &a.timestamp >= d)
                && q.date_to.as_ref().is_none_or(|d| &a.timestamp <= d)
        };
        let filtered: Vec<&Activity> = list.newest_first().filter(matches).collect();
        let total = filtered.len();
        let activities = filtered.into_iter().skip(q.offset).take(q.limit).cloned().collect();
        Ok(ActivityPage { activities, total })
    }

    async fn flush(&self) -> StoreResult<()> {
        self.compact_now().await
    }

    async fn check_health(&self) -> StoreResult<()> {
        self.probe().await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::json::JsonOptions;
    use crate::store::outbox::{OutboxEntry, OutboxTarget};

    fn op(v: serde_json::Value) -> Op {
        serde_json::from_value(v).unwrap()
    }

    fn task(id: &str, title: &str) -> serde_json::Value {
        json!({"id": id, "title": title, "description": null, "status": "todo", "priority": "medium",
               "assignedTo": null, "dueDate": null, "createdBy": "u1", "createdAt": "2026-01-01T00:00:00.000Z",
               "updatedAt": "2026-01-01T00:00:00.000Z", "completedAt": null})
    }

    #[tokio::test]
    async fn replayed_entries_land_in_order_idempotently_and_refuse_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonStore::open(JsonOptions::new(dir.path())).unwrap();
        let project = op(json!({"op": "putProject", "rec": {"id": "p1", "name": "P", "status": "active",
            "priority": "medium", "createdBy": "u1", "createdAt": "2026-01-01T00:00:00.000Z", "members": []}}));
        let t1 = op(json!({"op": "putTask", "project": "p1", "pos": 0, "rec": task("t1", "one")}));
        let t2 = op(json!({"op": "putTask", "project": "p1", "pos": usize::MAX, "rec": task("t2", "two")}));
        let entries: Vec<OutboxEntry> = [&project, &t1, &t2]
            .iter()
            .enumerate()
            .map(|(i, o)| OutboxEntry::from_op(o, i as u64 + 1, 1, "x"))
            .collect();
        // A task before its project is a retryable failure, not a silent drop.
        assert!(store.apply(&entries[1]).await.is_err());
        for e in entries.iter().chain(entries.iter()) {
            store.apply(e).await.unwrap();
        }
        let p = store.get_project("p1").await.unwrap().unwrap();
        let titles: Vec<&str> = p.tasks.iter().map(|t| t.title.as_str()).collect();
        assert_eq!(titles, vec!["one", "two"], "applied twice, same state");
        let update = op(json!({"op": "putTask", "project": "p1", "pos": usize::MAX, "rec": task("t1", "uno")}));
        store.apply(&OutboxEntry::from_op(&update, 4, 1, "x")).await.unwrap();
        let del = op(json!({"op": "delTask", "project": "p1", "id": "t2"}));
        store.apply(&OutboxEntry::from_op(&del, 5, 1, "x")).await.unwrap();
        store.apply(&OutboxEntry::from_op(&del, 5, 1, "x")).await.unwrap();
        let p = store.get_project("p1").await.unwrap().unwrap();
        let titles: Vec<&str> = p.tasks.iter().map(|t| t.title.as_str()).collect();
        assert_eq!(titles, vec!["uno"], "an update keeps the task's place; a repeated delete is a no-op");
        store.close().await.unwrap();
    }
}
