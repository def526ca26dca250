//! Whole-record writes ("after-images"): a legacy or replayed record is written as it is, replacing what the
//! database holds for its id, ids and e-mail members resolved on the way. These are the building blocks for
//! `fluxstudio migrate` and for replaying the dual-json outbox into PostgreSQL; the `Store` methods, which apply
//! domain operations, do not use them (except teams, which the API only ever writes whole).
//!
//! Each call is one transaction. Rows a record no longer has (a task deleted from the array) are deleted, so that
//! writing the same record twice is a no-op and writing a newer one converges.

use sqlx::PgConnection;
use uuid::Uuid;

use super::ids::{canonical_uuid, storage_id, Entity};
use super::mapping::{self, member_is_email};
use super::rows::{self, MemberTable};
use super::PostgresStore;
use crate::domain::{Activity, Member, Project, Team, User};
use crate::store::json::state::Op;
use crate::store::{StoreError, StoreResult};

fn map_err(e: mapping::MapError) -> StoreError {
    StoreError::Other(e.to_string())
}

impl PostgresStore {
    /// A member entry's `userId` → the storage id of its user. An e-mail resolves like a login lookup (the exact
    /// address, else a unique case-insensitive match; data-model.md §7); an id maps by the id rules. A reference
    /// that names no user is a dangling reference, refused.
    pub(crate) async fn resolve_member(&self, conn: &mut PgConnection, user_ref: &str) -> StoreResult<Uuid> {
        if member_is_email(user_ref) {
            return match self.find_user_by_email(conn, user_ref).await? {
                Some(u) => Ok(u.id),
                None => Err(StoreError::Other(format!("member {user_ref:?} matches no user"))),
            };
        }
        Ok(storage_id(Entity::User, user_ref))
    }

    pub(super) async fn record_ids(&self, conn: &mut PgConnection, ids: &[(Entity, &str)]) -> StoreResult<()> {
        for (entity, public) in ids {
            if canonical_uuid(public).is_none() {
                rows::insert_legacy_id(conn, entity.as_str(), public, storage_id(*entity, public))
                    .await
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(())
    }

    pub(super) fn remember_ids(&self, ids: &[(Entity, &str)]) {
        for (entity, public) in ids {
            if canonical_uuid(public).is_none() {
                self.ids.insert(storage_id(*entity, public), (*public).to_owned());
            }
        }
    }

    pub(super) async fn write_members(
        &self,
        conn: &mut PgConnection,
        table: MemberTable,
        parent_kind: &'static str,
        parent_public: &str,
        parent: Uuid,
        members: &[Member],
    ) -> StoreResult<()> {
        let mut keep = Vec::with_capacity(members.len());
        let mut member_rows = Vec::with_capacity(members.len());
        for (i, m) in members.iter().enumerate() {
            let user = self.resolve_member(conn, &m.user_id).await?;
            if keep.contains(&user) {
                // Two entries for one account (an id and a legacy e-mail): the first one's role and position stand.
                continue;
            }
            keep.push(user);
            member_rows.push(mapping::member_to_row(parent_kind, parent_public, m, i as i32, user).map_err(map_err)?);
        }
        let delete = match table {
            MemberTable::Project => rows::DELETE_PROJECT_MEMBERS_EXCEPT,
            MemberTable::Team => rows::DELETE_TEAM_MEMBERS_EXCEPT,
        };
        sqlx::query(delete).bind(parent).bind(&keep).execute(&mut *conn).await.map_err(|e| self.err(e))?;
        for row in &member_rows {
            rows::upsert_member(conn, table, parent, row).await.map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// A team or organization with its members (`insert_team` and imports).
    pub(crate) async fn write_team(&self, conn: &mut PgConnection, team: &Team) -> StoreResult<()> {
        let header = mapping::team_to_header(team).map_err(map_err)?;
        self.record_ids(conn, &[(Entity::Team, &team.id)]).await?;
        rows::upsert_team(conn, &header).await.map_err(|e| self.err(e))?;
        self.write_members(conn, MemberTable::Team, "team", &team.id, header.id, &team.members).await
    }

    /// Writes a user record as it is (an existing id is replaced). Another account with the same exact e-mail is
    /// `Conflict{email_taken}`.
    pub async fn put_user(&self, user: &User) -> StoreResult<()> {
        self.apply_ops(&[Op::PutUser { rec: user.clone() }]).await
    }

    /// Writes a project with its members, tasks and milestones as they are: list order becomes position, members
    /// stored by e-mail keep their raw reference, rows the record no longer has are deleted.
    pub async fn put_project(&self, p: &Project) -> StoreResult<()> {
        let header = mapping::project_to_header(p).map_err(map_err)?;
        let task_rows = p
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| mapping::task_to_row(t, i as i32))
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        let milestone_rows = p
            .milestones
            .iter()
            .enumerate()
            .map(|(i, m)| mapping::milestone_to_row(m, i as i32))
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        let mut ids = vec![(Entity::Project, p.id.as_str())];
        ids.extend(p.tasks.iter().map(|t| (Entity::Task, t.id.as_str())));
        ids.extend(p.milestones.iter().map(|m| (Entity::Milestone, m.id.as_str())));

        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        self.record_ids(&mut tx, &ids).await?;
        rows::upsert_project(&mut tx, &header).await.map_err(|e| self.err(e))?;
        self.write_members(&mut tx, MemberTable::Project, "project", &p.id, header.id, &p.members).await?;

        let task_ids: Vec<Uuid> = task_rows.iter().map(|t| t.id).collect();
        sqlx::query(rows::DELETE_TASKS_EXCEPT)
            .bind(header.id)
            .bind(&task_ids)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        for row in &task_rows {
            if rows::upsert_task(&mut tx, header.id, row).await.map_err(|e| self.err(e))? == 0 {
                return Err(StoreError::Conflict {
                    code: "conflict",
                    message: format!("task {} belongs to another project", row.id),
                });
            }
        }
        let milestone_ids: Vec<Uuid> = milestone_rows.iter().map(|m| m.id).collect();
        sqlx::query(rows::DELETE_MILESTONES_EXCEPT)
            .bind(header.id)
            .bind(&milestone_ids)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        for row in &milestone_rows {
            if rows::upsert_milestone(&mut tx, header.id, row).await.map_err(|e| self.err(e))? == 0 {
                return Err(StoreError::Conflict {
                    code: "conflict",
                    message: format!("milestone {} belongs to another project", row.id),
                });
            }
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        self.remember_ids(&ids);
        Ok(())
    }

    /// Appends an activity (an existing id is left alone: activities never change). A member activity whose
    /// `entityId` is an e-mail is linked to the user it resolves to, when there is one.
    pub async fn put_activity(&self, a: &Activity) -> StoreResult<()> {
        self.apply_ops(&[Op::AddActivity { rec: a.clone() }]).await
    }
}
