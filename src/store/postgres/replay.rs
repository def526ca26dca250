//! Applying dual-json outbox entries to PostgreSQL (store-modes.md §2 "Idempotent replay"): each op is an
//! after-image upserted by id, or a delete by id that also leaves a tombstone so a later backfill
//! (`fluxstudio migrate`) cannot resurrect the record. One transaction per entry; applying an entry twice gives
//! the same rows.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::ids::{storage_id, Entity};
use super::mapping;
use super::rows::{self, MemberTable};
use super::PostgresStore;
use crate::domain::{FileRecord, Milestone, Project, Task};
use crate::store::json::state::Op;
use crate::store::outbox::{ApplyError, OutboxEntry, OutboxTarget};
use crate::store::{StoreError, StoreResult};

const INSERT_TOMBSTONE: &str = "insert into store_tombstones (entity, entity_id) values ($1, $2) \
     on conflict (entity, entity_id) do update set deleted_at = now()";
const TASK_POSITION: &str = "select position from tasks where id = $1";
const NEXT_TASK_POSITION: &str = "select coalesce(max(position) + 1, 0) from tasks where project_id = $1";

fn map_err(e: mapping::MapError) -> StoreError {
    StoreError::Other(e.to_string())
}

impl PostgresStore {
    /// Applies journal ops as they stand (after-images or deletes) in one transaction, in order.
    pub async fn apply_ops(&self, ops: &[Op]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let mut ids: Vec<(Entity, &str)> = Vec::new();
        for op in ops {
            self.apply_op_on(&mut tx, op, &mut ids).await?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        self.remember_ids(&ids);
        if ops.iter().any(|op| matches!(op, Op::PutUser { .. } | Op::DelUser { .. })) {
            // Replayed accounts bypass update_user, which is what keeps the request cache honest.
            self.forget_cached_users();
        }
        Ok(())
    }

    async fn apply_op_on<'a>(
        &self,
        tx: &mut PgConnection,
        op: &'a Op,
        ids: &mut Vec<(Entity, &'a str)>,
    ) -> StoreResult<()> {
        match op {
            Op::PutUser { rec } => {
                let row = mapping::user_to_row(rec).map_err(map_err)?;
                self.record_ids(tx, &[(Entity::User, &rec.id)]).await?;
                rows::upsert_user(tx, &row).await.map_err(|e| self.err(e))?;
                ids.push((Entity::User, &rec.id));
            }
            Op::AddActivity { rec } => {
                let resolved = match rec.entity_id.as_deref() {
                    Some(e) if mapping::member_is_email(e) => self.find_user_by_email(tx, e).await?.map(|u| u.id),
                    _ => None,
                };
                let row = mapping::activity_to_row(rec, resolved).map_err(map_err)?;
                self.record_ids(tx, &[(Entity::Activity, &rec.id)]).await?;
                rows::insert_activity(tx, &row).await.map_err(|e| self.err(e))?;
                ids.push((Entity::Activity, &rec.id));
            }
            Op::DelUser { id } => {
                self.delete_with_tombstone(tx, Entity::User, id, "delete from users where id = $1").await?;
            }
            Op::PutProject { rec } => {
                self.put_project_header(tx, rec).await?;
                ids.push((Entity::Project, &rec.id));
            }
            Op::DelProject { id } => {
                self.delete_with_tombstone(tx, Entity::Project, id, rows::DELETE_PROJECT).await?;
            }
            Op::PutTask { project, pos, rec } => {
                self.put_task(tx, project, *pos, rec).await?;
                // The JSON store recomputed the project's progress when it applied the entry (migration 0005).
                self.mark_progress_derived(tx, storage_id(Entity::Project, project)).await?;
                ids.push((Entity::Task, &rec.id));
            }
            Op::DelTask { project, id } => {
                self.delete_with_tombstone(tx, Entity::Task, id, "delete from tasks where id = $1").await?;
                // The JSON store recomputed the project's progress when it applied the entry (migration 0005).
                self.mark_progress_derived(tx, storage_id(Entity::Project, project)).await?;
            }
            Op::PutMilestone { project, pos, rec } => {
                self.put_milestone(tx, project, *pos, rec).await?;
                ids.push((Entity::Milestone, &rec.id));
            }
            Op::DelMilestone { id, .. } => {
                self.delete_with_tombstone(tx, Entity::Milestone, id, "delete from milestones where id = $1").await?;
            }
            Op::PutTeam { rec } => {
                self.write_team(tx, rec).await?;
                ids.push((Entity::Team, &rec.id));
            }
            Op::DelTeam { id } => {
                self.delete_with_tombstone(tx, Entity::Team, id, "delete from teams where id = $1").await?;
            }
            Op::PutFile { rec } => {
                self.put_file(tx, rec).await?;
                ids.push((Entity::File, &rec.id));
            }
            Op::DelFile { id } => {
                self.delete_with_tombstone(tx, Entity::File, id, "delete from files where id = $1").await?;
            }
        }
        Ok(())
    }

    async fn delete_with_tombstone(
        &self,
        conn: &mut PgConnection,
        entity: Entity,
        public: &str,
        sql: &'static str,
    ) -> StoreResult<()> {
        sqlx::query(sql).bind(storage_id(entity, public)).execute(&mut *conn).await.map_err(|e| self.err(e))?;
        sqlx::query(INSERT_TOMBSTONE)
            .bind(entity.as_str())
            .bind(public)
            .execute(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The project's own columns and its members; its tasks and milestones are separate entries.
    async fn put_project_header(&self, conn: &mut PgConnection, p: &Project) -> StoreResult<()> {
        let header = mapping::project_to_header(p).map_err(map_err)?;
        self.record_ids(conn, &[(Entity::Project, &p.id)]).await?;
        rows::upsert_replayed_project(conn, &header).await.map_err(|e| self.err(e))?;
        self.write_members(conn, MemberTable::Project, "project", &p.id, header.id, &p.members).await
    }

    /// A task keeps the position it has; a new one goes after the project's last task (the JSON store appends),
    /// and never before its index in the JSON list: while `fluxstudio migrate` backfills a project, a live task
    /// can arrive before the older tasks, which then take positions from 0 on.
    async fn put_task(&self, conn: &mut PgConnection, project: &str, pos: usize, t: &Task) -> StoreResult<()> {
        let project_id = storage_id(Entity::Project, project);
        let id = storage_id(Entity::Task, &t.id);
        let existing: Option<i32> =
            sqlx::query_scalar(TASK_POSITION).bind(id).fetch_optional(&mut *conn).await.map_err(|e| self.err(e))?;
        let position = match existing {
            Some(p) => p,
            None => {
                let next: i32 = sqlx::query_scalar(NEXT_TASK_POSITION)
                    .bind(project_id)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| self.err(e))?;
                // `usize::MAX` (no index known) means "append".
                next.max(i32::try_from(pos).unwrap_or(0))
            }
        };
        let row = mapping::task_to_row(t, position).map_err(map_err)?;
        self.record_ids(conn, &[(Entity::Task, &t.id)]).await?;
        if rows::upsert_task(conn, project_id, &row).await.map_err(|e| self.err(e))? == 0 {
            return Err(StoreError::Other(format!("task {} belongs to another project", t.id)));
        }
        Ok(())
    }

    async fn put_milestone(
        &self,
        conn: &mut PgConnection,
        project: &str,
        pos: usize,
        m: &Milestone,
    ) -> StoreResult<()> {
        let project_id = storage_id(Entity::Project, project);
        let row = mapping::milestone_to_row(m, pos.min(i32::MAX as usize) as i32).map_err(map_err)?;
        self.record_ids(conn, &[(Entity::Milestone, &m.id)]).await?;
        if rows::upsert_milestone(conn, project_id, &row).await.map_err(|e| self.err(e))? == 0 {
            return Err(StoreError::Other(format!("milestone {} belongs to another project", m.id)));
        }
        Ok(())
    }

    async fn put_file(&self, conn: &mut PgConnection, f: &FileRecord) -> StoreResult<()> {
        let row = mapping::file_to_row(f).map_err(map_err)?;
        self.record_ids(conn, &[(Entity::File, &f.id)]).await?;
        rows::upsert_file(conn, &row).await.map_err(|e| self.err(e))
    }
}

#[async_trait]
impl OutboxTarget for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn apply(&self, entry: &OutboxEntry) -> Result<(), ApplyError> {
        self.apply_batch(std::slice::from_ref(entry)).await
    }

    /// One transaction for the whole batch: replay's cost is round trips, not rows.
    async fn apply_batch(&self, entries: &[OutboxEntry]) -> Result<(), ApplyError> {
        let ops = entries.iter().map(|e| e.to_op()).collect::<Result<Vec<_>, _>>().map_err(ApplyError::Failed)?;
        Ok(self.apply_ops(&ops).await?)
    }
}
