//! Whole-table statements for the operator tools (`fluxstudio migrate`, `validate`, `rollback`): many rows per
//! statement (`unnest` of one array per column, so a batch is one round trip and one plan), and the export of the
//! whole database as domain records. Rows come from the one mapping in [`super::mapping`].
//!
//! Inserts skip rows that have a tombstone (`store_tombstones`, a delete seen during a dual mode) so that a backfill
//! never resurrects them, and report per row whether it was inserted or updated (`xmax = 0` is true for a row this
//! statement inserted); rows the statement left alone are not returned.

use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::ids::{IdMap, Ids};
use super::mapping::{
    self, ActivityRow, FileRow, MemberRow, MilestoneRow, ProjectHeader, ProjectRow, TaskRow, TeamHeader, TeamRow,
    UserRow,
};
use super::rows;
use crate::domain::{Activity, FileRecord, Project, Team, User};

/// What one statement did: the rest of its rows already existed (and were equal, with `overwrite`) or were
/// tombstoned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub inserted: u64,
    pub updated: u64,
}

fn written(flags: Vec<bool>) -> Written {
    let inserted = flags.iter().filter(|f| **f).count() as u64;
    Written { inserted, updated: flags.len() as u64 - inserted }
}

/// Whether an existing row is replaced (`--overwrite`) or left alone (the default: insert only what is missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnConflict {
    Keep,
    Overwrite,
}

/// One statement per table and conflict rule. `$src` yields the table's columns plus `public_id` (for the
/// tombstone check) from one array parameter per column.
macro_rules! bulk_sql {
    ($table:literal, $entity:literal, $key:literal, $cols:literal, $src:literal, $set:literal) => {
        [
            concat!(
                "insert into ",
                $table,
                " (",
                $cols,
                ") select ",
                $cols,
                " from (",
                $src,
                ") u ",
                "where not exists (select 1 from store_tombstones t where t.entity = '",
                $entity,
                "' and t.entity_id in (u.public_id, u.id::text)) ",
                "on conflict ",
                $key,
                " do nothing returning (xmax = 0) as inserted"
            ),
            concat!(
                "insert into ",
                $table,
                " (",
                $cols,
                ") select ",
                $cols,
                " from (",
                $src,
                ") u ",
                "where not exists (select 1 from store_tombstones t where t.entity = '",
                $entity,
                "' and t.entity_id in (u.public_id, u.id::text)) ",
                "on conflict ",
                $key,
                " do update set ",
                $set,
                " where (",
                $table,
                ".*) is distinct from (excluded.*) returning (xmax = 0) as inserted"
            ),
        ]
    };
}

fn pick(sql: &[&'static str; 2], on_conflict: OnConflict) -> &'static str {
    match on_conflict {
        OnConflict::Keep => sql[0],
        OnConflict::Overwrite => sql[1],
    }
}

const USERS: [&str; 2] = bulk_sql!(
    "users",
    "user",
    "(id)",
    "id, email, name, password_hash, user_type, oauth_provider, oauth_id, avatar_url, is_active, created_at, \
     updated_at, extra",
    "select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
       $8::text[], $9::bool[], $10::timestamptz[], $11::timestamptz[], $12::jsonb[], $13::text[]) \
     as s(id, email, name, password_hash, user_type, oauth_provider, oauth_id, avatar_url, is_active, created_at, \
       updated_at, extra, public_id)",
    "email = excluded.email, name = excluded.name, password_hash = excluded.password_hash, \
     user_type = excluded.user_type, oauth_provider = excluded.oauth_provider, oauth_id = excluded.oauth_id, \
     avatar_url = excluded.avatar_url, is_active = excluded.is_active, created_at = excluded.created_at, \
     updated_at = excluded.updated_at, extra = excluded.extra"
);

pub async fn insert_users(
    conn: &mut PgConnection,
    items: &[(String, UserRow)],
    on_conflict: OnConflict,
) -> Result<Written, sqlx::Error> {
    let flags: Vec<bool> = sqlx::query_scalar(pick(&USERS, on_conflict))
        .bind(items.iter().map(|(_, u)| u.id).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, u)| u.email.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, u)| u.name.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, u)| u.password_hash.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, u)| u.user_type.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, u)| u.oauth_provider.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, u)| u.oauth_id.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, u)| u.avatar_url.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, u)| u.is_active).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, u)| u.created_at).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, u)| u.updated_at).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, u)| u.extra.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?;
    Ok(written(flags))
}

const TEAMS: [&str; 2] = bulk_sql!(
    "teams",
    "team",
    "(id)",
    "id, kind, name, description, created_by, created_at, updated_at, invites, extra",
    "select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::timestamptz[], \
       $7::timestamptz[], $8::jsonb[], $9::jsonb[], $10::text[]) \
     as s(id, kind, name, description, created_by, created_at, updated_at, invites, extra, public_id)",
    "kind = excluded.kind, name = excluded.name, description = excluded.description, \
     created_by = excluded.created_by, created_at = excluded.created_at, updated_at = excluded.updated_at, \
     invites = excluded.invites, extra = excluded.extra"
);

pub async fn insert_teams(
    conn: &mut PgConnection,
    items: &[(String, TeamHeader)],
    on_conflict: OnConflict,
) -> Result<Written, sqlx::Error> {
    let flags: Vec<bool> = sqlx::query_scalar(pick(&TEAMS, on_conflict))
        .bind(items.iter().map(|(_, t)| t.id).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, t)| t.kind.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, t)| t.name.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, t)| t.description.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, t)| t.created_by).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, t)| t.created_at).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, t)| t.updated_at).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, t)| t.invites.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, t)| t.extra.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?;
    Ok(written(flags))
}

/// Members have no id of their own (and no tombstones): their key is (parent, user).
macro_rules! member_sql {
    ($table:literal, $parent:literal) => {
        [
            concat!(
                "insert into ",
                $table,
                " (",
                $parent,
                ", user_id, role, joined_at, position, member_ref, extra) ",
                "select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::int[], $6::text[], ",
                "$7::jsonb[]) on conflict (",
                $parent,
                ", user_id) do nothing returning (xmax = 0) as inserted"
            ),
            concat!(
                "insert into ",
                $table,
                " (",
                $parent,
                ", user_id, role, joined_at, position, member_ref, extra) ",
                "select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::int[], $6::text[], ",
                "$7::jsonb[]) on conflict (",
                $parent,
                ", user_id) do update set role = excluded.role, ",
                "joined_at = excluded.joined_at, position = excluded.position, member_ref = excluded.member_ref, ",
                "extra = excluded.extra where (",
                $table,
                ".*) is distinct from (excluded.*) ",
                "returning (xmax = 0) as inserted"
            ),
        ]
    };
}

const PROJECT_MEMBERS: [&str; 2] = member_sql!("project_members", "project_id");
const TEAM_MEMBERS: [&str; 2] = member_sql!("team_members", "team_id");

pub use super::rows::MemberTable;

pub async fn insert_members(
    conn: &mut PgConnection,
    table: MemberTable,
    items: &[(Uuid, MemberRow)],
    on_conflict: OnConflict,
) -> Result<Written, sqlx::Error> {
    let sql = match table {
        MemberTable::Project => pick(&PROJECT_MEMBERS, on_conflict),
        MemberTable::Team => pick(&TEAM_MEMBERS, on_conflict),
    };
    let flags: Vec<bool> = sqlx::query_scalar(sql)
        .bind(items.iter().map(|(p, _)| *p).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, m)| m.user_id).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, m)| m.role.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, m)| m.joined_at).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, m)| m.position).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, m)| m.member_ref.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, m)| Json(m.extra.clone())).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?;
    Ok(written(flags))
}

const PROJECTS: [&str; 2] = bulk_sql!(
    "projects",
    "project",
    "(id)",
    "id, name, description, team_id, organization_id, manager_id, status, priority, start_date, due_date, \
     progress, channel_metadata, files, created_at, updated_at, extra",
    "select * from unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::uuid[], $6::uuid[], $7::text[], \
       $8::text[], $9::timestamptz[], $10::timestamptz[], $11::int2[], $12::jsonb[], $13::jsonb[], \
       $14::timestamptz[], $15::timestamptz[], $16::jsonb[], $17::text[]) \
     as s(id, name, description, team_id, organization_id, manager_id, status, priority, start_date, due_date, \
       progress, channel_metadata, files, created_at, updated_at, extra, public_id)",
    "name = excluded.name, description = excluded.description, team_id = excluded.team_id, \
     organization_id = excluded.organization_id, manager_id = excluded.manager_id, status = excluded.status, \
     priority = excluded.priority, start_date = excluded.start_date, due_date = excluded.due_date, \
     progress = excluded.progress, channel_metadata = excluded.channel_metadata, files = excluded.files, \
     created_at = excluded.created_at, updated_at = excluded.updated_at, extra = excluded.extra, \
     progress_derived = false"
);

pub async fn insert_projects(
    conn: &mut PgConnection,
    items: &[(String, ProjectHeader)],
    on_conflict: OnConflict,
) -> Result<Written, sqlx::Error> {
    let flags: Vec<bool> = sqlx::query_scalar(pick(&PROJECTS, on_conflict))
        .bind(items.iter().map(|(_, p)| p.id).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p)| p.name.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p)| p.description.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p)| p.team_id).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p)| p.organization_id).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p)| p.manager_id).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p)| p.status.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p)| p.priority.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p)| p.start_date).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p)| p.due_date).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p)| p.progress).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p)| p.channel_metadata.clone().map(Json)).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p)| p.files.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p)| p.created_at).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p)| p.updated_at).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p)| p.extra.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?;
    Ok(written(flags))
}

/// `text[]` columns travel as `jsonb` arrays: `unnest` cannot yield one array per row from a 2-D array.
const TASKS: [&str; 2] = bulk_sql!(
    "tasks",
    "task",
    "(id)",
    "id, project_id, position, title, description, status, priority, assigned_to, due_date, created_by, \
     created_at, updated_at, completed_at, tags, attachments, extra",
    "select id, project_id, position, title, description, status, priority, assigned_to, due_date, created_by, \
       created_at, updated_at, completed_at, \
       case when tags is null then null else array(select jsonb_array_elements_text(tags)) end as tags, \
       attachments, extra, public_id \
     from unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::uuid[], \
       $9::timestamptz[], $10::uuid[], $11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::jsonb[], \
       $15::jsonb[], $16::jsonb[], $17::text[]) \
     as s(id, project_id, position, title, description, status, priority, assigned_to, due_date, created_by, \
       created_at, updated_at, completed_at, tags, attachments, extra, public_id)",
    "project_id = excluded.project_id, position = excluded.position, title = excluded.title, \
     description = excluded.description, status = excluded.status, priority = excluded.priority, \
     assigned_to = excluded.assigned_to, due_date = excluded.due_date, created_by = excluded.created_by, \
     created_at = excluded.created_at, updated_at = excluded.updated_at, completed_at = excluded.completed_at, \
     tags = excluded.tags, attachments = excluded.attachments, extra = excluded.extra"
);

/// (public id, project storage id, row).
pub async fn insert_tasks(
    conn: &mut PgConnection,
    items: &[(String, Uuid, TaskRow)],
    on_conflict: OnConflict,
) -> Result<Written, sqlx::Error> {
    let flags: Vec<bool> = sqlx::query_scalar(pick(&TASKS, on_conflict))
        .bind(items.iter().map(|(_, _, t)| t.id).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p, _)| *p).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, t)| t.position).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, t)| t.title.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, t)| t.description.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, t)| t.status.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, t)| t.priority.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, t)| t.assigned_to).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, t)| t.due_date).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, t)| t.created_by).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, t)| t.created_at).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, t)| t.updated_at).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, t)| t.completed_at).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, t)| t.tags.clone().map(Json)).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, t)| t.attachments.clone().map(Json)).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, t)| Json(t.extra.clone())).collect::<Vec<_>>())
        .bind(items.iter().map(|(id, _, _)| id.clone()).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?;
    Ok(written(flags))
}

const MILESTONES: [&str; 2] = bulk_sql!(
    "milestones",
    "milestone",
    "(id)",
    "id, project_id, order_index, order_index_set, title, description, due_date, status, progress, created_by, \
     created_at, updated_at, completed_at, extra",
    "select * from unnest($1::uuid[], $2::uuid[], $3::int[], $4::bool[], $5::text[], $6::text[], \
       $7::timestamptz[], $8::text[], $9::int2[], $10::uuid[], $11::timestamptz[], $12::timestamptz[], \
       $13::timestamptz[], $14::jsonb[], $15::text[]) \
     as s(id, project_id, order_index, order_index_set, title, description, due_date, status, progress, \
       created_by, created_at, updated_at, completed_at, extra, public_id)",
    "project_id = excluded.project_id, order_index = excluded.order_index, \
     order_index_set = excluded.order_index_set, title = excluded.title, description = excluded.description, \
     due_date = excluded.due_date, status = excluded.status, progress = excluded.progress, \
     created_by = excluded.created_by, created_at = excluded.created_at, updated_at = excluded.updated_at, \
     completed_at = excluded.completed_at, extra = excluded.extra"
);

pub async fn insert_milestones(
    conn: &mut PgConnection,
    items: &[(String, Uuid, MilestoneRow)],
    on_conflict: OnConflict,
) -> Result<Written, sqlx::Error> {
    let flags: Vec<bool> = sqlx::query_scalar(pick(&MILESTONES, on_conflict))
        .bind(items.iter().map(|(_, _, m)| m.id).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, p, _)| *p).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, m)| m.order_index).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, m)| m.order_index_set).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, m)| m.title.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, m)| m.description.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, m)| m.due_date).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, m)| m.status.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, m)| m.progress).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, m)| m.created_by).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, m)| m.created_at).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, m)| m.updated_at).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, m)| m.completed_at).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, _, m)| Json(m.extra.clone())).collect::<Vec<_>>())
        .bind(items.iter().map(|(id, _, _)| id.clone()).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?;
    Ok(written(flags))
}

const FILES: [&str; 2] = bulk_sql!(
    "files",
    "file",
    "(id)",
    "id, original_name, filename, storage_path, url, size, mimetype, uploaded_by, uploaded_at, tags, description, \
     is_public, updated_at, project_id, extra",
    "select id, original_name, filename, storage_path, url, size, mimetype, uploaded_by, uploaded_at, \
       array(select jsonb_array_elements_text(tags)) as tags, description, is_public, updated_at, project_id, \
       extra, public_id \
     from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[], $8::uuid[], \
       $9::timestamptz[], $10::jsonb[], $11::text[], $12::bool[], $13::timestamptz[], $14::uuid[], $15::jsonb[], \
       $16::text[]) \
     as s(id, original_name, filename, storage_path, url, size, mimetype, uploaded_by, uploaded_at, tags, \
       description, is_public, updated_at, project_id, extra, public_id)",
    "original_name = excluded.original_name, filename = excluded.filename, storage_path = excluded.storage_path, \
     url = excluded.url, size = excluded.size, mimetype = excluded.mimetype, uploaded_by = excluded.uploaded_by, \
     uploaded_at = excluded.uploaded_at, tags = excluded.tags, description = excluded.description, \
     is_public = excluded.is_public, updated_at = excluded.updated_at, project_id = excluded.project_id, \
     extra = excluded.extra"
);

pub async fn insert_files(
    conn: &mut PgConnection,
    items: &[(String, FileRow)],
    on_conflict: OnConflict,
) -> Result<Written, sqlx::Error> {
    let flags: Vec<bool> = sqlx::query_scalar(pick(&FILES, on_conflict))
        .bind(items.iter().map(|(_, f)| f.id).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, f)| f.original_name.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, f)| f.filename.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, f)| f.storage_path.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, f)| f.url.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, f)| f.size).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, f)| f.mimetype.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, f)| f.uploaded_by).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, f)| f.uploaded_at).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, f)| Json(f.tags.clone())).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, f)| f.description.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, f)| f.is_public).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, f)| f.updated_at).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, f)| f.project_id).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, f)| f.extra.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?;
    Ok(written(flags))
}

/// Activities never change once written, so `--overwrite` has nothing to replace: both rules insert only.
const ACTIVITIES: &str = "insert into activities (id, project_id, type, user_id, user_name, user_email, user_avatar, \
       entity_type, entity_id, entity_ref, entity_title, action, metadata, \"timestamp\", extra) \
     select id, project_id, type, user_id, user_name, user_email, user_avatar, entity_type, entity_id, entity_ref, \
       entity_title, action, metadata, ts, extra \
     from unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[], \
       $9::uuid[], $10::text[], $11::text[], $12::text[], $13::jsonb[], $14::timestamptz[], $15::jsonb[], \
       $16::text[]) with ordinality \
     as u(id, project_id, type, user_id, user_name, user_email, user_avatar, entity_type, entity_id, entity_ref, \
       entity_title, action, metadata, ts, extra, public_id, ord) \
     where not exists (select 1 from store_tombstones t where t.entity = 'activity' \
       and t.entity_id in (u.public_id, u.id::text)) \
     order by ord \
     on conflict (id) do nothing returning true";

/// Rows are inserted in the order given, which becomes their `seq` (the tie-break of equal timestamps).
pub async fn insert_activities(
    conn: &mut PgConnection,
    items: &[(String, ActivityRow)],
) -> Result<Written, sqlx::Error> {
    let flags: Vec<bool> = sqlx::query_scalar(ACTIVITIES)
        .bind(items.iter().map(|(_, a)| a.id).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, a)| a.project_id).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, a)| a.kind.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, a)| a.user_id).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, a)| a.user_name.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, a)| a.user_email.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, a)| a.user_avatar.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, a)| a.entity_type.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, a)| a.entity_id).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, a)| a.entity_ref.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, a)| a.entity_title.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, a)| a.action.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, a)| a.metadata.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, a)| a.timestamp).collect::<Vec<_>>())
        .bind(items.iter().map(|(_, a)| a.extra.clone()).collect::<Vec<_>>())
        .bind(items.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?;
    Ok(written(flags))
}

/// Records legacy ids (entity, public id, storage id); new ones are announced on `flux_legacy_ids` at commit.
pub async fn insert_legacy_ids(conn: &mut PgConnection, items: &[(&str, String, Uuid)]) -> Result<(), sqlx::Error> {
    if items.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "with ins as (insert into legacy_ids (entity, legacy_id, id) \
           select * from unnest($1::text[], $2::text[], $3::uuid[]) on conflict do nothing \
           returning entity, legacy_id) \
         select pg_notify('flux_legacy_ids', entity || ':' || legacy_id) from ins",
    )
    .bind(items.iter().map(|(e, _, _)| e.to_string()).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, l, _)| l.clone()).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, _, id)| *id).collect::<Vec<_>>())
    .execute(conn)
    .await
    .map(drop)
}

/// The whole database as domain records with public ids, read on `conn` (the caller decides the isolation level:
/// rollback and validate read one repeatable-read snapshot). Activities come oldest first per project.
pub struct Snapshot {
    pub users: Vec<User>,
    pub teams: Vec<Team>,
    pub projects: Vec<Project>,
    pub files: Vec<FileRecord>,
    pub activities: Vec<Activity>,
}

pub async fn export(conn: &mut PgConnection) -> Result<Snapshot, sqlx::Error> {
    let pairs: Vec<(Uuid, String)> =
        sqlx::query_as("select id, legacy_id from legacy_ids").fetch_all(&mut *conn).await?;
    let map = IdMap::default();
    map.replace(pairs);
    let ids = Ids::new(&map);
    let users: Vec<UserRow> = sqlx::query_as(rows::LIST_USERS).fetch_all(&mut *conn).await?;
    let teams: Vec<TeamRow> = sqlx::query_as(rows::ALL_TEAMS).fetch_all(&mut *conn).await?;
    let projects: Vec<ProjectRow> = sqlx::query_as(rows::ALL_PROJECTS).fetch_all(&mut *conn).await?;
    let files: Vec<FileRow> = sqlx::query_as(rows::ALL_FILES).fetch_all(&mut *conn).await?;
    let activities: Vec<ActivityRow> = sqlx::query_as(rows::ALL_ACTIVITIES).fetch_all(&mut *conn).await?;
    Ok(Snapshot {
        users: users.iter().map(|r| mapping::user_from_row(r, &ids)).collect(),
        teams: teams.iter().map(|r| mapping::team_from_row(r, &ids)).collect(),
        projects: projects.iter().map(|r| mapping::project_from_row(r, &ids)).collect(),
        files: files.iter().map(|r| mapping::file_from_row(r, &ids)).collect(),
        activities: activities.iter().map(|r| mapping::activity_from_row(r, &ids)).collect(),
    })
}

/// Deletes one record by storage id (`validate --repair` removing what the source does not have). Children go
/// with their project by the schema's cascades.
pub async fn delete_record(conn: &mut PgConnection, table: RecordTable, id: Uuid) -> Result<u64, sqlx::Error> {
    let sql = match table {
        RecordTable::Users => "delete from users where id = $1",
        RecordTable::Teams => "delete from teams where id = $1",
        RecordTable::Projects => "delete from projects where id = $1",
        RecordTable::Tasks => "delete from tasks where id = $1",
        RecordTable::Milestones => "delete from milestones where id = $1",
        RecordTable::Files => "delete from files where id = $1",
        RecordTable::Activities => "delete from activities where id = $1",
    };
    Ok(sqlx::query(sql).bind(id).execute(conn).await?.rows_affected())
}

pub async fn delete_member(
    conn: &mut PgConnection,
    table: MemberTable,
    parent: Uuid,
    user: Uuid,
) -> Result<u64, sqlx::Error> {
    let sql = match table {
        MemberTable::Project => "delete from project_members where project_id = $1 and user_id = $2",
        MemberTable::Team => "delete from team_members where team_id = $1 and user_id = $2",
    };
    Ok(sqlx::query(sql).bind(parent).bind(user).execute(conn).await?.rows_affected())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordTable {
    Users,
    Teams,
    Projects,
    Tasks,
    Milestones,
    Files,
    Activities,
}
