//! `Store` for PostgreSQL. Each method mirrors the JSON store's (`store/json/store_impl.rs`): the same domain
//! functions, the same checks in the same order, the same errors. Writes are one transaction each; project-scoped
//! writes first lock and load the project (one statement), decide in memory with `crate::domain::ops`, then write
//! only the rows that changed.

use crate::domain::events::DomainEvent;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::{PgConnection, Row, ValueRef};
use uuid::Uuid;

use super::ids::{storage_id, Entity, Ids};
use super::mapping::{self, ActivityRow, FileRow, MemberRow, ProjectRow, TaskRow, TeamRow, UserRow};
use super::rows;
use super::PostgresStore;
use crate::domain::model::progress_of;
use crate::domain::ops::{
    self, FilePatch, MilestonePatch, NewMilestone, NewProject, NewTask, ProjectPatch, Rejection, TaskPatch,
};
use crate::domain::{time, Activity, Actor, FileRecord, Member, Milestone, Project, Task, Team, User};
use crate::store::json::state::Op;
use crate::store::{ActivityPage, ActivityQuery, ProjectAccess, Store, StoreError, StoreResult, UserPatch};

const PROJECT_NOT_FOUND: StoreError = StoreError::NotFound { code: "project_not_found" };
const TASK_NOT_FOUND: StoreError = StoreError::NotFound { code: "task_not_found" };
const MILESTONE_NOT_FOUND: StoreError = StoreError::NotFound { code: "milestone_not_found" };
const FILE_NOT_FOUND: StoreError = StoreError::NotFound { code: "file_not_found" };
const USER_NOT_FOUND: StoreError = StoreError::NotFound { code: "user_not_found" };

/// `ops::add_member` already refuses a user who belongs to the project; this is the same answer for the one case
/// it cannot see (two legacy entries resolving to one account).
const ALREADY_MEMBER: Rejection =
    Rejection { status: 409, code: "already_member", message: "User is already a member of this project" };

fn email_taken() -> StoreError {
    StoreError::Conflict { code: "email_taken", message: "Email already registered".into() }
}

fn map_err(e: mapping::MapError) -> StoreError {
    StoreError::Other(e.to_string())
}

/// A project loaded (and locked) inside a write transaction: the rows, for storage ids and positions, and the
/// record the domain functions work on.
struct Loaded {
    row: ProjectRow,
    project: Project,
}

impl Loaded {
    fn id(&self) -> Uuid {
        self.row.header.id
    }

    fn next_member_position(&self) -> i32 {
        self.row.members.0.iter().map(|m| m.position).max().map_or(0, |m| m + 1)
    }

    /// New milestones go after every existing one (http-api.md §1.11), whatever gaps deletes left.
    fn next_milestone_index(&self) -> i32 {
        self.row.milestones.0.iter().map(|m| m.order_index).max().map_or(0, |m| m + 1)
    }
}

fn access_from_rows(ids: &Ids, id: Uuid, creator: Uuid, members: &[MemberRow], tasks: &[TaskRow]) -> ProjectAccess {
    ProjectAccess {
        id: ids.public(id),
        created_by: ids.public(creator),
        members: members.iter().map(|m| mapping::member_from_row(m, ids)).collect(),
        tasks: tasks.iter().map(|t| Arc::new(mapping::task_from_row(t, ids))).collect(),
    }
}

fn activity_op(a: &Activity) -> Op {
    Op::AddActivity { rec: a.clone() }
}

/// The outbox entries of a member change: the project's after-image (members are part of its record) and the
/// activity.
fn members_ops(project: &Project, members: Vec<Member>, act: &Activity) -> Vec<Op> {
    let mut p = project.clone();
    p.members = members;
    vec![Op::put_project(&p), activity_op(act)]
}

/// The outbox entries of a task write: the task's after-image (`usize::MAX`: a new one is appended, an existing one
/// keeps its place) and the activity.
fn task_ops(project_id: &str, task: &Task, act: &Activity) -> Vec<Op> {
    vec![Op::PutTask { project: project_id.to_owned(), pos: usize::MAX, rec: task.clone() }, activity_op(act)]
}

impl PostgresStore {
    /// Locks the project row, then loads the project with what it embeds, its tasks only when `with_tasks` (two
    /// statements: see `rows::LOCK_PROJECT` for why not one). Without tasks the load costs nothing per task.
    async fn lock_project(&self, conn: &mut PgConnection, id: &str, with_tasks: bool) -> StoreResult<Loaded> {
        let id = storage_id(Entity::Project, id);
        let locked =
            sqlx::query(rows::LOCK_PROJECT).bind(id).fetch_optional(&mut *conn).await.map_err(|e| self.err(e))?;
        if locked.is_none() {
            return Err(PROJECT_NOT_FOUND);
        }
        let load = if with_tasks { rows::PROJECT_BY_ID } else { rows::PROJECT_BY_ID_WITHOUT_TASKS };
        let row: Option<ProjectRow> =
            sqlx::query_as(load).bind(id).fetch_optional(&mut *conn).await.map_err(|e| self.err(e))?;
        let row = row.ok_or(PROJECT_NOT_FOUND)?;
        let project = self.translate_in(Some(conn), |ids| mapping::project_from_row(&row, ids)).await?;
        Ok(Loaded { row, project })
    }

    async fn insert_activity(&self, conn: &mut PgConnection, a: &Activity, entity: Option<Uuid>) -> StoreResult<()> {
        let row = mapping::activity_to_row(a, entity).map_err(map_err)?;
        rows::insert_activity(conn, &row).await.map_err(|e| self.err(e))
    }

    /// Locks the project row for a task update or delete (which reads no other part of the project), so that a
    /// project's writes, and their outbox entries in dual-postgres, commit in one order; the progress becomes derived.
    async fn lock_for_tasks(&self, conn: &mut PgConnection, project: Uuid) -> StoreResult<()> {
        let derived: Option<bool> = sqlx::query_scalar(rows::LOCK_PROJECT_DERIVED)
            .bind(project)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        if !derived.ok_or(PROJECT_NOT_FOUND)? {
            self.mark_progress_derived(conn, project).await?;
        }
        Ok(())
    }

    /// The JSON store recomputes a project's stored `progress` whenever it rewrites the project, its members or its
    /// tasks; from the first such write on, the stored progress is the tasks' (see migration 0005).
    pub(super) async fn mark_progress_derived(&self, conn: &mut PgConnection, project: Uuid) -> StoreResult<()> {
        sqlx::query(rows::MARK_PROGRESS_DERIVED).bind(project).execute(conn).await.map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A task of the project, read inside the write's transaction; `None` also when `task_id` is not the task's
    /// public id exactly (the JSON store matches ids by string).
    async fn task_in(&self, conn: &mut PgConnection, project: Uuid, task_id: &str) -> StoreResult<(TaskRow, Task)> {
        let row: Option<TaskRow> = sqlx::query_as(rows::TASK_BY_ID)
            .bind(storage_id(Entity::Task, task_id))
            .bind(project)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        let row = row.ok_or(TASK_NOT_FOUND)?;
        let task = self.translate_in(Some(conn), |ids| mapping::task_from_row(&row, ids)).await?;
        if task.id != task_id {
            return Err(TASK_NOT_FOUND);
        }
        Ok((row, task))
    }

    async fn users_from(&self, rows: Vec<UserRow>) -> StoreResult<Vec<User>> {
        self.translate(|ids| rows.iter().map(|r| mapping::user_from_row(r, ids)).collect()).await
    }

    async fn user_from(&self, conn: Option<&mut PgConnection>, row: Option<UserRow>) -> StoreResult<Option<User>> {
        match row {
            None => Ok(None),
            Some(r) => self.translate_in(conn, |ids| Some(mapping::user_from_row(&r, ids))).await,
        }
    }

    async fn file_from(&self, conn: Option<&mut PgConnection>, row: FileRow) -> StoreResult<FileRecord> {
        self.translate_in(conn, |ids| mapping::file_from_row(&row, ids)).await
    }

    /// Login lookup on an open connection (also used to resolve members stored by e-mail).
    pub(crate) async fn find_user_by_email(
        &self,
        conn: &mut PgConnection,
        email: &str,
    ) -> StoreResult<Option<UserRow>> {
        let exact: Option<UserRow> = sqlx::query_as(rows::USER_BY_EMAIL)
            .bind(email)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        if exact.is_some() {
            return Ok(exact);
        }
        let lower = email.to_lowercase();
        let candidates: Vec<UserRow> =
            sqlx::query_as(rows::USERS_BY_EMAIL_CI).bind(email).fetch_all(&mut *conn).await.map_err(|e| self.err(e))?;
        let mut matches = candidates.into_iter().filter(|u| u.email.to_lowercase() == lower);
        let first = matches.next();
        Ok(if matches.next().is_none() { first } else { None })
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(rows::USER_BY_ID)
            .bind(storage_id(Entity::User, id))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        self.user_from(None, row).await
    }

    async fn get_user_for_request(&self, id: &str) -> StoreResult<Option<User>> {
        if let Some(user) = self.users.get_fresh(id) {
            return Ok(Some(user));
        }
        let user = self.get_user(id).await?;
        if let Some(u) = &user {
            self.users.put(id, u.clone());
        }
        Ok(user)
    }

    async fn get_user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.err(e))?;
        let row = self.find_user_by_email(&mut conn, email).await?;
        drop(conn);
        self.user_from(None, row).await
    }

    async fn get_user_by_google_id(&self, google_id: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(rows::USER_BY_GOOGLE_ID)
            .bind(google_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        self.user_from(None, row).await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows: Vec<UserRow> =
            sqlx::query_as(rows::LIST_USERS).fetch_all(self.read_pool()).await.map_err(|e| self.err(e))?;
        self.users_from(rows).await
    }

    async fn insert_user(&self, user: User) -> StoreResult<User> {
        let row = mapping::user_to_row(&user).map_err(map_err)?;
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        // The unique index is byte-exact; addresses that differ only in case are serialised by this lock and then
        // refused by the check below, as the JSON store's single writer does.
        let lower = user.email.to_lowercase();
        sqlx::query(rows::EMAIL_LOCK)
            .bind(format!("fluxstudio:user-email:{lower}"))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let clashes: Vec<(Uuid, String)> = sqlx::query_as(rows::USER_CLASHES)
            .bind(row.id)
            .bind(&user.email)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if clashes.iter().any(|(id, email)| *id == row.id || email.to_lowercase() == lower) {
            return Err(email_taken());
        }
        self.record_ids(&mut tx, &[(Entity::User, &user.id)]).await?;
        rows::insert_user(&mut tx, &row).await.map_err(|e| self.err(e))?;
        self.record_outbox(&mut tx, || vec![Op::PutUser { rec: user.clone() }]).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        self.remember_ids(&[(Entity::User, &user.id)]);
        Ok(user)
    }

    async fn update_user(&self, id: &str, patch: UserPatch) -> StoreResult<User> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let row: Option<UserRow> = sqlx::query_as(rows::USER_BY_ID_FOR_UPDATE)
            .bind(storage_id(Entity::User, id))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let mut u = self.user_from(Some(&mut tx), row).await?.ok_or(USER_NOT_FOUND)?;
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
        let row = mapping::user_to_row(&u).map_err(map_err)?;
        rows::update_user(&mut tx, &row).await.map_err(|e| self.err(e))?;
        self.record_outbox(&mut tx, || vec![Op::PutUser { rec: u.clone() }]).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        // Under the id the caller used: a legacy id and its storage form are different cache keys.
        self.users.forget(id);
        self.users.forget(&u.id);
        Ok(u)
    }

    async fn get_team(&self, id: &str) -> StoreResult<Option<Team>> {
        let row: Option<TeamRow> = sqlx::query_as(rows::TEAM_BY_ID)
            .bind(storage_id(Entity::Team, id))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        match row {
            None => Ok(None),
            Some(r) => self.translate(|ids| Some(mapping::team_from_row(&r, ids))).await,
        }
    }

    async fn list_teams_for(&self, user: &User) -> StoreResult<Vec<Team>> {
        let rows: Vec<TeamRow> = sqlx::query_as(rows::TEAMS_FOR_USER)
            .bind(storage_id(Entity::User, &user.id))
            .fetch_all(self.read_pool())
            .await
            .map_err(|e| self.err(e))?;
        self.translate(|ids| rows.iter().map(|r| mapping::team_from_row(r, ids)).collect()).await
    }

    async fn insert_team(&self, team: Team) -> StoreResult<Team> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        self.write_team(&mut tx, &team).await?;
        self.record_outbox(&mut tx, || vec![Op::PutTeam { rec: team.clone() }]).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        self.remember_ids(&[(Entity::Team, &team.id)]);
        Ok(team)
    }

    async fn list_projects_for(&self, user: &User) -> StoreResult<Vec<Arc<Project>>> {
        let rows: Vec<ProjectRow> = sqlx::query_as(rows::PROJECTS_FOR_USER)
            .bind(storage_id(Entity::User, &user.id))
            .fetch_all(self.read_pool())
            .await
            .map_err(|e| self.err(e))?;
        self.translate(|ids| rows.iter().map(|r| Arc::new(mapping::project_from_row(r, ids))).collect()).await
    }

    async fn get_project(&self, id: &str) -> StoreResult<Option<Arc<Project>>> {
        let row: Option<ProjectRow> = sqlx::query_as(rows::PROJECT_BY_ID)
            .bind(storage_id(Entity::Project, id))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        match row {
            None => Ok(None),
            Some(r) => self.translate(|ids| Some(Arc::new(mapping::project_from_row(&r, ids)))).await,
        }
    }

    async fn get_project_access(&self, id: &str, with_tasks: bool) -> StoreResult<Option<ProjectAccess>> {
        let project = storage_id(Entity::Project, id);
        if !with_tasks {
            // Every project request's access check (the writes' too): a hot connection, no release ping.
            let row: Option<(Uuid, Uuid, sqlx::types::Json<Vec<MemberRow>>)> = self
                .hot_read(|conn| Box::pin(sqlx::query_as(rows::PROJECT_ACCESS).bind(project).fetch_optional(conn)))
                .await
                .map_err(|e| self.err(e))?;
            let Some((id, creator, members)) = row else { return Ok(None) };
            return self.translate(|ids| Some(access_from_rows(ids, id, creator, &members.0, &[]))).await;
        }
        // The GET tasks statement: on a hot connection, which skips sqlx's release ping (hot.rs). The rows are
        // decoded as they arrive (by column index, see `TaskRow::from_row_at`), so no `Vec<PgRow>` is built and
        // grown; a decode error leaves the rest unread, and the hot set then drops the connection.
        type Head = (Uuid, Uuid, sqlx::types::Json<Vec<MemberRow>>);
        let read: Option<(Head, Vec<TaskRow>)> = self
            .hot_read(|conn| {
                Box::pin(async move {
                    let mut rows = sqlx::query(rows::PROJECT_ACCESS_WITH_TASKS).bind(project).fetch(conn);
                    // The project's row is the one with a project id; the others are its tasks, in no order.
                    let (mut head, mut tasks): (Option<Head>, _) = (None, Vec::with_capacity(64));
                    while let Some(r) = rows.try_next().await? {
                        if head.is_none() && !r.try_get_raw(0)?.is_null() {
                            head = Some((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
                        } else {
                            tasks.push(TaskRow::from_row_at(&r, rows::PROJECT_ACCESS_TASK_COLUMNS)?);
                        }
                    }
                    // No project row: no project (its tasks cannot outlive it).
                    let Some(head) = head else { return Ok(None) };
                    tasks.sort_unstable_by(mapping::task_list_order);
                    Ok(Some((head, tasks)))
                })
            })
            .await
            .map_err(|e| self.err(e))?;
        let Some(((id, creator, members), tasks)) = read else { return Ok(None) };
        // Only the ids go through `translate` (whose closure may run twice, so it can only borrow); the rows'
        // strings and JSON then move into the tasks rather than being cloned (access_from_rows copies them).
        let (id, created_by, members, task_ids) = self
            .translate(|ids| {
                let members: Vec<Member> = members.0.iter().map(|m| mapping::member_from_row(m, ids)).collect();
                let task_ids: Vec<(String, Option<String>, String)> = tasks
                    .iter()
                    .map(|t| (ids.public(t.id), ids.public_opt(t.assigned_to), ids.public(t.created_by)))
                    .collect();
                (ids.public(id), ids.public(creator), members, task_ids)
            })
            .await?;
        let tasks = tasks
            .into_iter()
            .zip(task_ids)
            .map(|(t, (id, assigned_to, created_by))| {
                Arc::new(mapping::task_from_owned_row(t, id, assigned_to, created_by))
            })
            .collect();
        Ok(Some(ProjectAccess { id, created_by, members, tasks }))
    }

    async fn insert_project(&self, input: NewProject, actor: &Actor) -> StoreResult<Arc<Project>> {
        let project = ops::build_project(input, actor);
        let header = mapping::project_to_header(&project).map_err(map_err)?;
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        rows::insert_project(&mut tx, &header).await.map_err(|e| self.err(e))?;
        for (i, m) in project.members.iter().enumerate() {
            let row = mapping::member_to_row("project", &project.id, m, i as i32, storage_id(Entity::User, &m.user_id))
                .map_err(map_err)?;
            rows::insert_member(&mut tx, header.id, &row).await.map_err(|e| self.err(e))?;
        }
        self.record_outbox(&mut tx, || vec![Op::put_project(&project)]).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        Ok(Arc::new(project))
    }

    async fn update_project(&self, id: &str, patch: ProjectPatch) -> StoreResult<Arc<Project>> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let loaded = self.lock_project(&mut tx, id, true).await?;
        let mut p = loaded.project.clone();
        ops::apply_project_patch(&mut p, patch);
        // Returned as the patch left it; stored with the progress recomputed, as the JSON store's PutProject does.
        let mut stored = p.clone();
        stored.progress = progress_of(&p.tasks);
        let header = mapping::project_to_header(&stored).map_err(map_err)?;
        rows::update_project(&mut tx, &header).await.map_err(|e| self.err(e))?;
        self.record_outbox(&mut tx, || vec![Op::put_project(&stored)]).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        Ok(Arc::new(p))
    }

    async fn delete_project(&self, id: &str) -> StoreResult<()> {
        // Members, tasks, milestones and activities go with it (`on delete cascade`); one statement, one
        // transaction.
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let done = sqlx::query(rows::DELETE_PROJECT)
            .bind(storage_id(Entity::Project, id))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(PROJECT_NOT_FOUND);
        }
        let events = vec![DomainEvent::ProjectDeleted { project_id: id.to_owned() }];
        self.record_outbox(&mut tx, || vec![Op::DelProject { id: id.to_owned() }]).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        self.publish(events);
        Ok(())
    }

    async fn insert_task(&self, project_id: &str, input: NewTask, actor: &Actor) -> StoreResult<(Task, Activity)> {
        let (new, row, act_row) = new_task_rows(project_id, input, actor)?;
        let project = storage_id(Entity::Project, project_id);
        if self.outbox_epoch().is_none() {
            // One statement, its own transaction: no project lock, so inserts into one project share commits. (A
            // switch to dual-postgres turns recording on only while no write is in flight: the write gate.)
            let inserted = self
                .hot_write(move |conn| {
                    Box::pin(async move { rows::insert_task_at_end(conn, project, &row, &act_row, None).await })
                })
                .await
                .map_err(|e| self.insert_task_err(e))?;
            if !inserted {
                return Err(PROJECT_NOT_FOUND);
            }
        } else {
            let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
            self.lock_for_tasks(&mut tx, project).await?;
            let inserted = rows::insert_task_at_end(&mut *tx, project, &row, &act_row, None)
                .await
                .map_err(|e| self.insert_task_err(e))?;
            if !inserted {
                return Err(PROJECT_NOT_FOUND);
            }
            self.record_outbox(&mut tx, || task_ops(project_id, &new.task, &new.activity)).await?;
            tx.commit().await.map_err(|e| self.err(e))?;
            self.outbox_committed();
        }
        self.publish(new.events);
        Ok((new.task, new.activity))
    }

    async fn insert_task_as_writer(
        &self,
        project_id: &str,
        input: NewTask,
        actor: &Actor,
        user: &User,
    ) -> StoreResult<Option<(Task, Activity)>> {
        if self.outbox_epoch().is_some() {
            // dual-postgres: the regular path, under the project lock, with its outbox entries.
            return Ok(None);
        }
        let (new, row, act_row) = new_task_rows(project_id, input, actor)?;
        let project = storage_id(Entity::Project, project_id);
        let caller = storage_id(Entity::User, &user.id);
        let inserted = self
            .hot_write(move |conn| {
                Box::pin(async move { rows::insert_task_at_end(conn, project, &row, &act_row, Some(caller)).await })
            })
            .await
            .map_err(|e| self.insert_task_err(e))?;
        if !inserted {
            return Ok(None);
        }
        self.publish(new.events);
        Ok(Some((new.task, new.activity)))
    }

    async fn update_task(
        &self,
        project_id: &str,
        task_id: &str,
        patch: TaskPatch,
        actor: &Actor,
    ) -> StoreResult<(Task, Activity)> {
        let project = storage_id(Entity::Project, project_id);
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        self.lock_for_tasks(&mut tx, project).await?;
        let (old, mut task) = self.task_in(&mut tx, project, task_id).await?;
        let activity = ops::apply_task_patch(project_id, &mut task, patch, actor);
        let row = mapping::task_to_row(&task, old.position).map_err(map_err)?;
        rows::update_task(&mut tx, project, &row).await.map_err(|e| self.err(e))?;
        self.insert_activity(&mut tx, &activity, None).await?;
        let events = DomainEvent::task_written(false, project_id, &task, actor, &activity);
        self.record_outbox(&mut tx, || task_ops(project_id, &task, &activity)).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        self.publish(events);
        Ok((task, activity))
    }

    async fn delete_task(&self, project_id: &str, task_id: &str, actor: &Actor) -> StoreResult<Activity> {
        let project = storage_id(Entity::Project, project_id);
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        self.lock_for_tasks(&mut tx, project).await?;
        let (row, task) = self.task_in(&mut tx, project, task_id).await?;
        let activity = ops::task_deleted_activity(project_id, &task, actor);
        sqlx::query(rows::DELETE_TASK).bind(row.id).bind(project).execute(&mut *tx).await.map_err(|e| self.err(e))?;
        self.insert_activity(&mut tx, &activity, None).await?;
        let events = DomainEvent::task_deleted(project_id, task_id, actor, &activity);
        self.record_outbox(&mut tx, || {
            vec![Op::DelTask { project: project_id.to_owned(), id: task.id.clone() }, activity_op(&activity)]
        })
        .await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        self.publish(events);
        Ok(activity)
    }

    async fn add_member(
        &self,
        project_id: &str,
        user: &User,
        role: &str,
        actor: &Actor,
    ) -> StoreResult<(Member, Activity)> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let loaded = self.lock_project(&mut tx, project_id, false).await?;
        let (members, member, act) =
            ops::add_member(&loaded.project, user, role, actor).map_err(StoreError::Rejected)?;
        let user_id = storage_id(Entity::User, &user.id);
        let row = mapping::member_to_row("project", project_id, &member, loaded.next_member_position(), user_id)
            .map_err(map_err)?;
        if let Err(e) = rows::insert_member(&mut tx, loaded.id(), &row).await {
            let duplicate = matches!(&e, sqlx::Error::Database(db)
                if db.constraint() == Some("project_members_project_user_key"));
            return Err(if duplicate { StoreError::Rejected(ALREADY_MEMBER) } else { self.err(e) });
        }
        self.insert_activity(&mut tx, &act, Some(user_id)).await?;
        self.mark_progress_derived(&mut tx, loaded.id()).await?;
        let events = vec![DomainEvent::ActivityAdded(act.clone())];
        self.record_outbox(&mut tx, || members_ops(&loaded.project, members, &act)).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        self.publish(events);
        Ok((member, act))
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
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let loaded = self.lock_project(&mut tx, project_id, false).await?;
        let (members, member, act) = ops::set_member_role(&loaded.project, entry, label, role, caller_is_owner, actor)
            .map_err(StoreError::Rejected)?;
        let Some(act) = act else {
            // Nothing changed: nothing is written (the JSON store journals nothing either).
            return Ok((member, None));
        };
        // `set_member_role` found the entry the same way; its row is at the same index.
        let idx = loaded
            .project
            .members
            .iter()
            .position(|m| m.user_id == entry)
            .ok_or(StoreError::Other("member entry vanished inside the transaction".into()))?;
        let user_id = loaded.row.members.0[idx].user_id;
        sqlx::query(rows::SET_MEMBER_ROLE)
            .bind(loaded.id())
            .bind(user_id)
            .bind(role)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.insert_activity(&mut tx, &act, Some(user_id)).await?;
        self.mark_progress_derived(&mut tx, loaded.id()).await?;
        let events = vec![DomainEvent::ActivityAdded(act.clone())];
        self.record_outbox(&mut tx, || members_ops(&loaded.project, members, &act)).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        self.publish(events);
        Ok((member, Some(act)))
    }

    async fn remove_member(
        &self,
        project_id: &str,
        entry: &str,
        label: &str,
        caller_is_owner: bool,
        actor: &Actor,
    ) -> StoreResult<Activity> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let loaded = self.lock_project(&mut tx, project_id, false).await?;
        let (members, act) =
            ops::remove_member(&loaded.project, entry, label, caller_is_owner, actor).map_err(StoreError::Rejected)?;
        let idx = loaded
            .project
            .members
            .iter()
            .position(|m| m.user_id == entry)
            .ok_or(StoreError::Other("member entry vanished inside the transaction".into()))?;
        let user_id = loaded.row.members.0[idx].user_id;
        sqlx::query(rows::DELETE_MEMBER)
            .bind(loaded.id())
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.insert_activity(&mut tx, &act, Some(user_id)).await?;
        self.mark_progress_derived(&mut tx, loaded.id()).await?;
        let events = vec![
            DomainEvent::ActivityAdded(act.clone()),
            DomainEvent::MemberRemoved { project_id: project_id.to_owned(), member_ref: entry.to_owned() },
        ];
        self.record_outbox(&mut tx, || members_ops(&loaded.project, members, &act)).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        self.publish(events);
        Ok(act)
    }

    async fn insert_milestone(
        &self,
        project_id: &str,
        input: NewMilestone,
        actor: &Actor,
    ) -> StoreResult<(Milestone, Activity)> {
        let m = ops::build_milestone(input, actor);
        let act = ops::milestone_created_activity(project_id, &m, actor);
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let loaded = self.lock_project(&mut tx, project_id, false).await?;
        let row = mapping::milestone_to_row(&m, loaded.next_milestone_index()).map_err(map_err)?;
        rows::insert_milestone(&mut tx, loaded.id(), &row).await.map_err(|e| self.err(e))?;
        self.insert_activity(&mut tx, &act, None).await?;
        let events = vec![DomainEvent::ActivityAdded(act.clone())];
        self.record_outbox(&mut tx, || {
            vec![
                Op::PutMilestone { project: project_id.to_owned(), pos: usize::MAX, rec: m.clone() },
                activity_op(&act),
            ]
        })
        .await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        self.publish(events);
        Ok((m, act))
    }

    async fn update_milestone(
        &self,
        project_id: &str,
        milestone_id: &str,
        patch: MilestonePatch,
        actor: &Actor,
    ) -> StoreResult<(Milestone, Activity)> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let loaded = self.lock_project(&mut tx, project_id, false).await?;
        let pos = loaded.project.milestones.iter().position(|m| m.id == milestone_id).ok_or(MILESTONE_NOT_FOUND)?;
        let mut m = loaded.project.milestones[pos].clone();
        let act = ops::apply_milestone_patch(project_id, &mut m, patch, actor);
        let row = mapping::milestone_to_row(&m, loaded.row.milestones.0[pos].order_index).map_err(map_err)?;
        rows::update_milestone(&mut tx, loaded.id(), &row).await.map_err(|e| self.err(e))?;
        self.insert_activity(&mut tx, &act, None).await?;
        let events = vec![DomainEvent::ActivityAdded(act.clone())];
        self.record_outbox(&mut tx, || {
            vec![Op::PutMilestone { project: project_id.to_owned(), pos, rec: m.clone() }, activity_op(&act)]
        })
        .await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        self.publish(events);
        Ok((m, act))
    }

    async fn insert_files(&self, files: Vec<FileRecord>) -> StoreResult<Vec<FileRecord>> {
        let rows = files.iter().map(mapping::file_to_row).collect::<Result<Vec<_>, _>>().map_err(map_err)?;
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        for (f, row) in files.iter().zip(&rows) {
            self.record_ids(&mut tx, &[(Entity::File, &f.id)]).await?;
            rows::upsert_file(&mut tx, row).await.map_err(|e| self.err(e))?;
        }
        self.record_outbox(&mut tx, || files.iter().map(|f| Op::PutFile { rec: f.clone() }).collect()).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        self.remember_ids(&files.iter().map(|f| (Entity::File, f.id.as_str())).collect::<Vec<_>>());
        Ok(files)
    }

    async fn list_files_for(&self, uploader: &str, project_id: Option<&str>) -> StoreResult<Vec<FileRecord>> {
        let rows: Vec<FileRow> = sqlx::query_as(rows::FILES_FOR_UPLOADER)
            .bind(storage_id(Entity::User, uploader))
            .bind(project_id.map(|p| storage_id(Entity::Project, p)))
            .fetch_all(self.read_pool())
            .await
            .map_err(|e| self.err(e))?;
        self.translate(|ids| rows.iter().map(|r| mapping::file_from_row(r, ids)).collect()).await
    }

    async fn get_file(&self, id: &str) -> StoreResult<Option<FileRecord>> {
        let row: Option<FileRow> = sqlx::query_as(rows::FILE_BY_ID)
            .bind(storage_id(Entity::File, id))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        match row {
            None => Ok(None),
            Some(r) => self.file_from(None, r).await.map(Some),
        }
    }

    async fn update_file(&self, id: &str, patch: FilePatch) -> StoreResult<FileRecord> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let row: Option<FileRow> = sqlx::query_as(rows::FILE_BY_ID_FOR_UPDATE)
            .bind(storage_id(Entity::File, id))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let mut f = self.file_from(Some(&mut tx), row.ok_or(FILE_NOT_FOUND)?).await?;
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
        let row = mapping::file_to_row(&f).map_err(map_err)?;
        rows::upsert_file(&mut tx, &row).await.map_err(|e| self.err(e))?;
        self.record_outbox(&mut tx, || vec![Op::PutFile { rec: f.clone() }]).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        Ok(f)
    }

    async fn delete_file(&self, id: &str) -> StoreResult<FileRecord> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let row: Option<FileRow> = sqlx::query_as(rows::DELETE_FILE)
            .bind(storage_id(Entity::File, id))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let f = self.file_from(Some(&mut tx), row.ok_or(FILE_NOT_FOUND)?).await?;
        self.record_outbox(&mut tx, || vec![Op::DelFile { id: f.id.clone() }]).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.outbox_committed();
        Ok(f)
    }

    async fn list_activities(&self, project_id: &str, q: &ActivityQuery) -> StoreResult<ActivityPage> {
        let bound = |d: &Option<String>| -> StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
            d.as_deref()
                .map(|s| mapping::parse_ts(s).ok_or_else(|| StoreError::Other(format!("not a timestamp: {s:?}"))))
                .transpose()
        };
        let (from, to) = (bound(&q.date_from)?, bound(&q.date_to)?);
        let project = storage_id(Entity::Project, project_id);
        let user = q.user_id.as_deref().map(|u| storage_id(Entity::User, u));
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);

        #[derive(sqlx::FromRow)]
        struct Paged {
            #[sqlx(flatten)]
            row: ActivityRow,
            total: i64,
        }
        let page: Vec<Paged> = sqlx::query_as(rows::LIST_ACTIVITIES)
            .bind(project)
            .bind(q.kind.as_deref())
            .bind(user)
            .bind(from)
            .bind(to)
            .bind(limit)
            .bind(offset)
            .fetch_all(self.read_pool())
            .await
            .map_err(|e| self.err(e))?;
        let total = match page.first() {
            Some(p) => p.total,
            // An empty page says nothing about the total unless it started at 0 with room for rows.
            None if offset == 0 && limit > 0 => 0,
            None => sqlx::query_scalar(rows::COUNT_ACTIVITIES)
                .bind(project)
                .bind(q.kind.as_deref())
                .bind(user)
                .bind(from)
                .bind(to)
                .fetch_one(self.read_pool())
                .await
                .map_err(|e| self.err(e))?,
        };
        let activities =
            self.translate(|ids| page.iter().map(|p| mapping::activity_from_row(&p.row, ids)).collect()).await?;
        Ok(ActivityPage { activities, total: usize::try_from(total).unwrap_or(0) })
    }

    async fn flush(&self) -> StoreResult<()> {
        // Every acknowledged write is a committed transaction already.
        Ok(())
    }

    async fn check_health(&self) -> StoreResult<()> {
        // After an outage the pool may still hold connections that died while idle; each fails its first statement
        // and is dropped. Readiness asks whether the database answers, so a dead connection is not the answer: try
        // again (a fresh connection, at the latest after the pool's idle ones are used up).
        let mut attempts = 0;
        loop {
            match sqlx::query("select 1").execute(&self.pool).await {
                Ok(_) => return Ok(()),
                Err(sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_)) if attempts < 3 => {
                    attempts += 1
                }
                Err(e) => return Err(self.err(e)),
            }
        }
    }
}

/// A new task, its `task_created` activity and the events to publish after commit: what both task insert paths
/// build before their statement (which takes the rows, built beside it).
struct NewTaskRows {
    task: Task,
    activity: Activity,
    events: Vec<DomainEvent>,
}

fn new_task_rows(project_id: &str, input: NewTask, actor: &Actor) -> StoreResult<(NewTaskRows, TaskRow, ActivityRow)> {
    let task = ops::build_task(input, actor);
    let activity = ops::task_created_activity(project_id, &task, actor);
    // Position 0 if the project has no task yet; else after the last one (see `rows::INSERT_TASK_AT_END`).
    let row = mapping::task_to_row(&task, 0).map_err(map_err)?;
    let act_row = mapping::activity_to_row(&activity, None).map_err(map_err)?;
    let events = DomainEvent::task_written(true, project_id, &task, actor, &activity);
    Ok((NewTaskRows { task, activity, events }, row, act_row))
}

impl PostgresStore {
    /// A task insert's error: a project deleted between the statement's snapshot and its foreign-key check shows as
    /// the key refusing the task.
    fn insert_task_err(&self, e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::Database(db)
                if db.code().as_deref() == Some("23503")
                    && db.constraint().is_some_and(|c| c.ends_with("_project_id_fkey")) =>
            {
                PROJECT_NOT_FOUND
            }
            _ => self.err(e),
        }
    }
}
