//! `Store` for the JSON backend: reads come from the published snapshot; each write is one `JsonStore::write`.

use std::sync::Arc;

use async_trait::async_trait;

use super::state::Op;
use super::JsonStore;
use crate::domain::ops::{self, NewProject, NewTask, ProjectPatch, TaskPatch};
use crate::domain::{access, time, Activity, Actor, Project, Task, Team, User};
use crate::store::{ActivityPage, ActivityQuery, Store, StoreError, StoreResult, UserPatch};

const PROJECT_NOT_FOUND: StoreError = StoreError::NotFound {
    code: "project_not_found",
};
const TASK_NOT_FOUND: StoreError = StoreError::NotFound {
    code: "task_not_found",
};

fn project<'a>(state: &'a super::state::State, id: &str) -> StoreResult<&'a Arc<Project>> {
    state.projects.get(id).ok_or(PROJECT_NOT_FOUND)
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
        Ok(state
            .users
            .values()
            .find(|u| u.google_id.as_deref() == Some(google_id))
            .map(|u| (**u).clone()))
    }

    async fn get_team(&self, id: &str) -> StoreResult<Option<Team>> {
        Ok(self.snapshot().teams.get(id).map(|t| (**t).clone()))
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        Ok(self
            .snapshot()
            .users
            .values()
            .map(|u| (**u).clone())
            .collect())
    }

    async fn insert_user(&self, user: User) -> StoreResult<User> {
        self.write(|s| {
            if s.email_taken(&user.email) || s.users.contains_key(&user.id) {
                return Err(StoreError::Conflict {
                    code: "email_taken",
                    message: "Email already registered".into(),
                });
            }
            Ok((user.clone(), vec![Op::PutUser { rec: user }]))
        })
        .await
    }

    async fn update_user(&self, id: &str, patch: UserPatch) -> StoreResult<User> {
        self.write(|s| {
            let mut u = (**s.users.get(id).ok_or(StoreError::NotFound {
                code: "user_not_found",
            })?)
            .clone();
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
        Ok(state
            .projects
            .values()
            .filter(|p| access::is_member(p, user))
            .cloned()
            .collect())
    }

    async fn get_project(&self, id: &str) -> StoreResult<Option<Arc<Project>>> {
        Ok(self.snapshot().projects.get(id).cloned())
    }

    async fn insert_project(&self, input: NewProject, actor: &Actor) -> StoreResult<Arc<Project>> {
        let project = ops::build_project(input, actor);
        let id = project.id.clone();
        self.write(|_| Ok(((), vec![Op::put_project(&project)])))
            .await?;
        self.snapshot()
            .projects
            .get(&id)
            .cloned()
            .ok_or(PROJECT_NOT_FOUND)
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
        self.write(|s| {
            project(s, id)?;
            Ok(((), vec![Op::DelProject { id: id.to_owned() }]))
        })
        .await
    }

    async fn insert_task(
        &self,
        project_id: &str,
        input: NewTask,
        actor: &Actor,
    ) -> StoreResult<(Task, Activity)> {
        let task = ops::build_task(input, actor);
        let activity = ops::task_created_activity(project_id, &task, actor);
        self.write(|s| {
            let p = project(s, project_id)?;
            let ops = vec![
                Op::PutTask {
                    project: project_id.to_owned(),
                    pos: p.tasks.len(),
                    rec: task.clone(),
                },
                Op::AddActivity {
                    rec: activity.clone(),
                },
            ];
            Ok(((task, activity), ops))
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
        self.write(|s| {
            let p = project(s, project_id)?;
            let pos = p
                .tasks
                .iter()
                .position(|t| t.id == task_id)
                .ok_or(TASK_NOT_FOUND)?;
            let mut task = p.tasks[pos].clone();
            let activity = ops::apply_task_patch(project_id, &mut task, patch, actor);
            let ops = vec![
                Op::PutTask {
                    project: project_id.to_owned(),
                    pos,
                    rec: task.clone(),
                },
                Op::AddActivity {
                    rec: activity.clone(),
                },
            ];
            Ok(((task, activity), ops))
        })
        .await
    }

    async fn delete_task(
        &self,
        project_id: &str,
        task_id: &str,
        actor: &Actor,
    ) -> StoreResult<Activity> {
        self.write(|s| {
            let p = project(s, project_id)?;
            let task = p
                .tasks
                .iter()
                .find(|t| t.id == task_id)
                .ok_or(TASK_NOT_FOUND)?;
            let activity = ops::task_deleted_activity(project_id, task, actor);
            let ops = vec![
                Op::DelTask {
                    project: project_id.to_owned(),
                    id: task_id.to_owned(),
                },
                Op::AddActivity {
                    rec: activity.clone(),
                },
            ];
            Ok((activity, ops))
        })
        .await
    }

    async fn list_activities(
        &self,
        project_id: &str,
        q: &ActivityQuery,
    ) -> StoreResult<ActivityPage> {
        let state = self.snapshot();
        let Some(list) = state.activities.get(project_id) else {
            return Ok(ActivityPage {
                activities: vec![],
                total: 0,
            });
        };
        let matches = |a: &&Activity| {
            q.kind.as_ref().is_none_or(|k| &a.kind == k)
                && q.user_id
                    .as_ref()
                    .is_none_or(|u| a.user_id.as_ref() == Some(u))
                && q.date_from.as_ref().is_none_or(|d| &a.timestamp >= d)
                && q.date_to.as_ref().is_none_or(|d| &a.timestamp <= d)
        };
        let filtered: Vec<&Activity> = list.iter().rev().filter(matches).collect();
        let total = filtered.len();
        let activities = filtered
            .into_iter()
            .skip(q.offset)
            .take(q.limit)
            .cloned()
            .collect();
        Ok(ActivityPage { activities, total })
    }

    async fn flush(&self) -> StoreResult<()> {
        self.compact_now().await
    }
}
