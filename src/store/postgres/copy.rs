//! The backfill's fast path (cli.md §3: "COPY into staging tables and one `insert … on conflict` per batch"):
//! a batch is sent with one binary `COPY` into a session-local staging table, and moved into its table with one
//! `insert … select … on conflict` that applies the same tombstone and conflict rules as the `unnest` statements
//! of [`super::bulk`] (which stay the row-by-row fallback).
//!
//! Why binary COPY: PostgreSQL decodes binary values without parsing text (timestamps especially), `text[]`
//! columns travel as real arrays (the `unnest` path has to smuggle them through `jsonb` and rebuild them with a
//! sub-select per row), and the client writes one byte buffer instead of one `Vec` per column.
//!
//! Foreign keys, set-wise: [`lock_parents`] locks every parent row a staged batch references with `for key share`
//! — the very lock PostgreSQL's own foreign-key trigger takes, row by row — and checks that all of them exist.
//! Only then, and only where the role may do it, is the batch inserted with `session_replication_role = replica`,
//! which skips the per-row foreign-key triggers (the bulk of a backfill's time after index maintenance). See
//! [`lock_parents`] for why that cannot leave orphans.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::bulk::{OnConflict, Written};
use super::mapping::{ActivityRow, FileRow, MemberRow, MilestoneRow, ProjectHeader, TaskRow, TeamHeader, UserRow};
use super::rows::MemberTable;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01), the origin of binary timestamps.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// `text`'s type oid, written into every binary array.
const TEXT_OID: u32 = 25;

fn encode_error(message: String) -> sqlx::Error {
    sqlx::Error::Encode(message.into())
}

/// A buffer in PostgreSQL's binary COPY format (header, one tuple per row, trailer).
pub struct CopyBuf {
    buf: Vec<u8>,
}

impl CopyBuf {
    pub fn new() -> CopyBuf {
        let mut buf = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        CopyBuf { buf }
    }

    pub fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    pub fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn field(&mut self, bytes: &[u8]) -> Result<(), sqlx::Error> {
        let len = i32::try_from(bytes.len())
            .map_err(|_| encode_error(format!("a value of {} bytes is too large for PostgreSQL", bytes.len())))?;
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    pub fn uuid(&mut self, v: Uuid) {
        self.buf.extend_from_slice(&16i32.to_be_bytes());
        self.buf.extend_from_slice(v.as_bytes());
    }

    pub fn opt_uuid(&mut self, v: Option<Uuid>) {
        match v {
            Some(v) => self.uuid(v),
            None => self.null(),
        }
    }

    pub fn text(&mut self, v: &str) -> Result<(), sqlx::Error> {
        self.field(v.as_bytes())
    }

    pub fn opt_text(&mut self, v: Option<&str>) -> Result<(), sqlx::Error> {
        match v {
            Some(v) => self.text(v),
            None => {
                self.null();
                Ok(())
            }
        }
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.extend_from_slice(&1i32.to_be_bytes());
        self.buf.push(u8::from(v));
    }

    pub fn i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&2i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn opt_i16(&mut self, v: Option<i16>) {
        match v {
            Some(v) => self.i16(v),
            None => self.null(),
        }
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&4i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// A `timestamptz`: microseconds since 2000-01-01 UTC. A value PostgreSQL cannot hold is refused by the
    /// server, which fails the batch and sends it down the row-by-row path that names the row.
    pub fn ts(&mut self, v: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let micros = v
            .timestamp_micros()
            .checked_sub(PG_EPOCH_MICROS)
            .ok_or_else(|| encode_error(format!("timestamp {v} is out of range")))?;
        self.i64(micros);
        Ok(())
    }

    pub fn opt_ts(&mut self, v: Option<DateTime<Utc>>) -> Result<(), sqlx::Error> {
        match v {
            Some(v) => self.ts(v),
            None => {
                self.null();
                Ok(())
            }
        }
    }

    /// A `jsonb`: format version 1, then the JSON text, serialised straight into the buffer.
    pub fn jsonb<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), sqlx::Error> {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0i32.to_be_bytes());
        self.buf.push(1);
        serde_json::to_writer(&mut self.buf, v).map_err(|e| encode_error(e.to_string()))?;
        self.patch_len(at)
    }

    pub fn opt_jsonb<T: Serialize>(&mut self, v: Option<&T>) -> Result<(), sqlx::Error> {
        match v {
            Some(v) => self.jsonb(v),
            None => {
                self.null();
                Ok(())
            }
        }
    }

    /// A one-dimensional `text[]` without nulls (an empty one has no dimensions, as PostgreSQL writes it).
    pub fn text_array(&mut self, items: &[String]) -> Result<(), sqlx::Error> {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0i32.to_be_bytes());
        let dims: i32 = if items.is_empty() { 0 } else { 1 };
        self.buf.extend_from_slice(&dims.to_be_bytes());
        self.buf.extend_from_slice(&0i32.to_be_bytes()); // no nulls
        self.buf.extend_from_slice(&TEXT_OID.to_be_bytes());
        if !items.is_empty() {
            let n = i32::try_from(items.len()).map_err(|_| encode_error("array too long".into()))?;
            self.buf.extend_from_slice(&n.to_be_bytes());
            self.buf.extend_from_slice(&1i32.to_be_bytes()); // lower bound
            for s in items {
                self.field(s.as_bytes())?;
            }
        }
        self.patch_len(at)
    }

    pub fn opt_text_array(&mut self, items: Option<&[String]>) -> Result<(), sqlx::Error> {
        match items {
            Some(items) => self.text_array(items),
            None => {
                self.null();
                Ok(())
            }
        }
    }

    /// Writes the length of the field whose 4-byte length placeholder is at `at`.
    fn patch_len(&mut self, at: usize) -> Result<(), sqlx::Error> {
        let len = self.buf.len() - at - 4;
        let len = i32::try_from(len)
            .map_err(|_| encode_error(format!("a value of {len} bytes is too large for PostgreSQL")))?;
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

impl Default for CopyBuf {
    fn default() -> Self {
        CopyBuf::new()
    }
}

/// One staging table's statements: create (every column nullable: the target's constraints are checked when the
/// rows move in), empty, COPY into, and lock the parents its rows reference (none for users).
struct Stage {
    create: &'static str,
    truncate: &'static str,
    copy: &'static str,
    lock: Option<&'static str>,
}

macro_rules! stage {
    ($name:literal, $ddl:literal, $cols:literal, $lock:expr) => {
        Stage {
            create: concat!("create temp table if not exists ", $name, " (", $ddl, ")"),
            truncate: concat!("truncate pg_temp.", $name),
            copy: concat!("copy pg_temp.", $name, " (", $cols, ") from stdin (format binary)"),
            lock: $lock,
        }
    };
}

/// Locks (`for key share`) the rows of `$table` whose ids `$refs` (a `select … as id` over a staging table)
/// yields, and compares their number with the number of distinct non-null ids asked for (`count(distinct …)`
/// skips nulls: a null reference needs no parent).
macro_rules! parents_present {
    ($table:literal, $refs:literal) => {
        concat!(
            "(select count(*) from (select 1 from ",
            $table,
            " p where p.id in (select id from (",
            $refs,
            ") r) for key share of p) l) = (select count(distinct id) from (",
            $refs,
            ") r)"
        )
    };
}

/// In entity order; `public_id` carries the record's public id for the tombstone check.
const STAGES: [Stage; 9] = [
    stage!(
        "flux_stage_users",
        "id uuid, email text, name text, password_hash text, user_type text, oauth_provider text, oauth_id text, \
         avatar_url text, is_active bool, created_at timestamptz, updated_at timestamptz, extra jsonb, \
         public_id text",
        "id, email, name, password_hash, user_type, oauth_provider, oauth_id, avatar_url, is_active, created_at, \
         updated_at, extra, public_id",
        None
    ),
    stage!(
        "flux_stage_teams",
        "id uuid, kind text, name text, description text, created_by uuid, created_at timestamptz, \
         updated_at timestamptz, invites jsonb, extra jsonb, public_id text",
        "id, kind, name, description, created_by, created_at, updated_at, invites, extra, public_id",
        Some(concat!("select ", parents_present!("users", "select created_by as id from pg_temp.flux_stage_teams")))
    ),
    stage!(
        "flux_stage_team_members",
        "team_id uuid, user_id uuid, role text, joined_at timestamptz, position int, member_ref text, extra jsonb",
        "team_id, user_id, role, joined_at, position, member_ref, extra",
        Some(concat!(
            "select ",
            parents_present!("teams", "select team_id as id from pg_temp.flux_stage_team_members"),
            " and ",
            parents_present!("users", "select user_id as id from pg_temp.flux_stage_team_members")
        ))
    ),
    stage!(
        "flux_stage_projects",
        "id uuid, name text, description text, team_id uuid, organization_id uuid, manager_id uuid, status text, \
         priority text, start_date timestamptz, due_date timestamptz, progress int2, channel_metadata jsonb, \
         files jsonb, created_at timestamptz, updated_at timestamptz, extra jsonb, public_id text",
        "id, name, description, team_id, organization_id, manager_id, status, priority, start_date, due_date, \
         progress, channel_metadata, files, created_at, updated_at, extra, public_id",
        Some(concat!(
            "select ",
            parents_present!(
                "teams",
                "select team_id as id from pg_temp.flux_stage_projects \
                 union select organization_id from pg_temp.flux_stage_projects"
            ),
            " and ",
            parents_present!("users", "select manager_id as id from pg_temp.flux_stage_projects")
        ))
    ),
    stage!(
        "flux_stage_project_members",
        "project_id uuid, user_id uuid, role text, joined_at timestamptz, position int, member_ref text, \
         extra jsonb",
        "project_id, user_id, role, joined_at, position, member_ref, extra",
        Some(concat!(
            "select ",
            parents_present!("projects", "select project_id as id from pg_temp.flux_stage_project_members"),
            " and ",
            parents_present!("users", "select user_id as id from pg_temp.flux_stage_project_members")
        ))
    ),
    stage!(
        "flux_stage_tasks",
        "id uuid, project_id uuid, position int, title text, description text, status text, priority text, \
         assigned_to uuid, due_date timestamptz, created_by uuid, created_at timestamptz, updated_at timestamptz, \
         completed_at timestamptz, tags text[], attachments jsonb, extra jsonb, public_id text",
        "id, project_id, position, title, description, status, priority, assigned_to, due_date, created_by, \
         created_at, updated_at, completed_at, tags, attachments, extra, public_id",
        Some(concat!(
            "select ",
            parents_present!("projects", "select project_id as id from pg_temp.flux_stage_tasks"),
            " and ",
            parents_present!(
                "users",
                "select assigned_to as id from pg_temp.flux_stage_tasks \
                 union select created_by from pg_temp.flux_stage_tasks"
            )
        ))
    ),
    stage!(
        "flux_stage_milestones",
        "id uuid, project_id uuid, order_index int, order_index_set bool, title text, description text, \
         due_date timestamptz, status text, progress int2, created_by uuid, created_at timestamptz, \
         updated_at timestamptz, completed_at timestamptz, extra jsonb, public_id text",
        "id, project_id, order_index, order_index_set, title, description, due_date, status, progress, created_by, \
         created_at, updated_at, completed_at, extra, public_id",
        Some(concat!(
            "select ",
            parents_present!("projects", "select project_id as id from pg_temp.flux_stage_milestones"),
            " and ",
            parents_present!("users", "select created_by as id from pg_temp.flux_stage_milestones")
        ))
    ),
    stage!(
        "flux_stage_files",
        "id uuid, original_name text, filename text, storage_path text, url text, size int8, mimetype text, \
         uploaded_by uuid, uploaded_at timestamptz, tags text[], description text, is_public bool, \
         updated_at timestamptz, project_id uuid, extra jsonb, public_id text",
        "id, original_name, filename, storage_path, url, size, mimetype, uploaded_by, uploaded_at, tags, \
         description, is_public, updated_at, project_id, extra, public_id",
        Some(concat!(
            "select ",
            parents_present!("projects", "select project_id as id from pg_temp.flux_stage_files"),
            " and ",
            parents_present!("users", "select uploaded_by as id from pg_temp.flux_stage_files")
        ))
    ),
    // `organization_id` is not staged: the backfill never sets it (it stays null).
    stage!(
        "flux_stage_activities",
        "id uuid, project_id uuid, type text, user_id uuid, user_name text, user_email text, user_avatar text, \
         entity_type text, entity_id uuid, entity_ref text, entity_title text, action text, metadata jsonb, \
         ts timestamptz, extra jsonb, public_id text, ord int",
        "id, project_id, type, user_id, user_name, user_email, user_avatar, entity_type, entity_id, entity_ref, \
         entity_title, action, metadata, ts, extra, public_id, ord",
        Some(concat!(
            "select ",
            parents_present!("projects", "select project_id as id from pg_temp.flux_stage_activities"),
            " and ",
            parents_present!("users", "select user_id as id from pg_temp.flux_stage_activities")
        ))
    ),
];

/// Creates the session's staging tables (temporary: private to the connection, never WAL-logged, gone with the
/// session). Inside a transaction (a dry run) they go with its rollback.
pub async fn create_staging(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    for s in &STAGES {
        sqlx::raw_sql(s.create).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Empties a staging table and COPYs `data` into it.
async fn stage(conn: &mut PgConnection, which: usize, data: CopyBuf) -> Result<(), sqlx::Error> {
    let s = &STAGES[which];
    // `truncate`, not `delete`: temporary tables are never vacuumed, so deleted rows would pile up batch after
    // batch.
    sqlx::raw_sql(s.truncate).execute(&mut *conn).await?;
    let mut copy = conn.copy_in_raw(s.copy).await?;
    if let Err(e) = copy.send(data.finish()).await {
        // The COPY must be ended before the connection can be used again.
        let _ = copy.abort("staging failed").await;
        return Err(e);
    }
    copy.finish().await?;
    Ok(())
}

/// Whether this role may set `session_replication_role` (a superuser, or on PostgreSQL 15+ a role granted it).
/// Tried in a transaction (a savepoint inside one) that is rolled back, so nothing stays set.
pub async fn can_skip_fk_triggers(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    let ok = sqlx::raw_sql("set local session_replication_role = replica").execute(&mut *tx).await.is_ok();
    tx.rollback().await?;
    Ok(ok)
}

/// Locks the parents of the staged rows and tells whether every one exists.
///
/// Why inserting without the foreign-key triggers after this cannot leave an orphan: PostgreSQL's trigger does
/// for each inserted row `select 1 from <parent> where id = $1 for key share` and fails when nothing comes back;
/// this statement takes the same lock on the same rows, once per distinct parent, in the batch's transaction.
/// A lock held until commit means no concurrent transaction (a dual-json server writing through its outbox, a
/// `validate --repair`) can delete a locked parent or change its key before the batch commits; a delete that
/// committed first has removed the row, so the count falls short and the batch goes through the triggers
/// instead (and fails into row errors). A parent deleted after the commit takes the new rows with it: the
/// cascade is the parent's trigger, fired in the deleting session, which is not affected by this one's
/// `session_replication_role`. The schema has no other triggers on the entity tables that replica mode would
/// skip (migrations/0001–0003: foreign keys only); a migration that adds one must revisit this.
pub async fn lock_parents(conn: &mut PgConnection, which: usize) -> Result<bool, sqlx::Error> {
    match STAGES[which].lock {
        Some(sql) => sqlx::query_scalar::<_, bool>(sql).fetch_one(conn).await,
        None => Ok(true),
    }
}

/// The staging table index of each entity, in [`STAGES`] order.
pub mod stage_of {
    pub const USERS: usize = 0;
    pub const TEAMS: usize = 1;
    pub const TEAM_MEMBERS: usize = 2;
    pub const PROJECTS: usize = 3;
    pub const PROJECT_MEMBERS: usize = 4;
    pub const TASKS: usize = 5;
    pub const MILESTONES: usize = 6;
    pub const FILES: usize = 7;
    pub const ACTIVITIES: usize = 8;
}

fn written(flags: Vec<bool>) -> Written {
    let inserted = flags.iter().filter(|f| **f).count() as u64;
    Written { inserted, updated: flags.len() as u64 - inserted }
}

/// The move from a staging table: the `bulk` statements' tombstone and conflict rules, with the staging table
/// as the source.
macro_rules! move_sql {
    ($table:literal, $entity:literal, $stage:literal, $cols:literal, $set:literal) => {
        [
            concat!(
                "insert into ",
                $table,
                " (",
                $cols,
                ") select ",
                $cols,
                " from pg_temp.",
                $stage,
                " u ",
                "where not exists (select 1 from store_tombstones t where t.entity = '",
                $entity,
                "' and t.entity_id in (u.public_id, u.id::text)) ",
                "on conflict (id) do nothing returning (xmax = 0) as inserted"
            ),
            concat!(
                "insert into ",
                $table,
                " (",
                $cols,
                ") select ",
                $cols,
                " from pg_temp.",
                $stage,
                " u ",
                "where not exists (select 1 from store_tombstones t where t.entity = '",
                $entity,
                "' and t.entity_id in (u.public_id, u.id::text)) ",
                "on conflict (id) do update set ",
                $set,
                " where (",
                $table,
                ".*) is distinct from (excluded.*) ",
                "returning (xmax = 0) as inserted"
            ),
        ]
    };
}

macro_rules! member_move_sql {
    ($table:literal, $parent:literal, $stage:literal) => {
        [
            concat!(
                "insert into ",
                $table,
                " (",
                $parent,
                ", user_id, role, joined_at, position, member_ref, extra) ",
                "select ",
                $parent,
                ", user_id, role, joined_at, position, member_ref, extra from pg_temp.",
                $stage,
                " on conflict (",
                $parent,
                ", user_id) do nothing returning (xmax = 0) as inserted"
            ),
            concat!(
                "insert into ",
                $table,
                " (",
                $parent,
                ", user_id, role, joined_at, position, member_ref, extra) ",
                "select ",
                $parent,
                ", user_id, role, joined_at, position, member_ref, extra from pg_temp.",
                $stage,
                " on conflict (",
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

const MOVE_USERS: [&str; 2] = move_sql!(
    "users",
    "user",
    "flux_stage_users",
    "id, email, name, password_hash, user_type, oauth_provider, oauth_id, avatar_url, is_active, created_at, \
     updated_at, extra",
    "email = excluded.email, name = excluded.name, password_hash = excluded.password_hash, \
     user_type = excluded.user_type, oauth_provider = excluded.oauth_provider, oauth_id = excluded.oauth_id, \
     avatar_url = excluded.avatar_url, is_active = excluded.is_active, created_at = excluded.created_at, \
     updated_at = excluded.updated_at, extra = excluded.extra"
);
const MOVE_TEAMS: [&str; 2] = move_sql!(
    "teams",
    "team",
    "flux_stage_teams",
    "id, kind, name, description, created_by, created_at, updated_at, invites, extra",
    "kind = excluded.kind, name = excluded.name, description = excluded.description, \
     created_by = excluded.created_by, created_at = excluded.created_at, updated_at = excluded.updated_at, \
     invites = excluded.invites, extra = excluded.extra"
);
const MOVE_TEAM_MEMBERS: [&str; 2] = member_move_sql!("team_members", "team_id", "flux_stage_team_members");
const MOVE_PROJECTS: [&str; 2] = move_sql!(
    "projects",
    "project",
    "flux_stage_projects",
    "id, name, description, team_id, organization_id, manager_id, status, priority, start_date, due_date, \
     progress, channel_metadata, files, created_at, updated_at, extra",
    "name = excluded.name, description = excluded.description, team_id = excluded.team_id, \
     organization_id = excluded.organization_id, manager_id = excluded.manager_id, status = excluded.status, \
     priority = excluded.priority, start_date = excluded.start_date, due_date = excluded.due_date, \
     progress = excluded.progress, channel_metadata = excluded.channel_metadata, files = excluded.files, \
     created_at = excluded.created_at, updated_at = excluded.updated_at, extra = excluded.extra, \
     progress_derived = false"
);
const MOVE_PROJECT_MEMBERS: [&str; 2] = member_move_sql!("project_members", "project_id", "flux_stage_project_members");
const MOVE_TASKS: [&str; 2] = move_sql!(
    "tasks",
    "task",
    "flux_stage_tasks",
    "id, project_id, position, title, description, status, priority, assigned_to, due_date, created_by, \
     created_at, updated_at, completed_at, tags, attachments, extra",
    "project_id = excluded.project_id, position = excluded.position, title = excluded.title, \
     description = excluded.description, status = excluded.status, priority = excluded.priority, \
     assigned_to = excluded.assigned_to, due_date = excluded.due_date, created_by = excluded.created_by, \
     created_at = excluded.created_at, updated_at = excluded.updated_at, completed_at = excluded.completed_at, \
     tags = excluded.tags, attachments = excluded.attachments, extra = excluded.extra"
);
const MOVE_MILESTONES: [&str; 2] = move_sql!(
    "milestones",
    "milestone",
    "flux_stage_milestones",
    "id, project_id, order_index, order_index_set, title, description, due_date, status, progress, created_by, \
     created_at, updated_at, completed_at, extra",
    "project_id = excluded.project_id, order_index = excluded.order_index, \
     order_index_set = excluded.order_index_set, title = excluded.title, description = excluded.description, \
     due_date = excluded.due_date, status = excluded.status, progress = excluded.progress, \
     created_by = excluded.created_by, created_at = excluded.created_at, updated_at = excluded.updated_at, \
     completed_at = excluded.completed_at, extra = excluded.extra"
);
const MOVE_FILES: [&str; 2] = move_sql!(
    "files",
    "file",
    "flux_stage_files",
    "id, original_name, filename, storage_path, url, size, mimetype, uploaded_by, uploaded_at, tags, description, \
     is_public, updated_at, project_id, extra",
    "original_name = excluded.original_name, filename = excluded.filename, storage_path = excluded.storage_path, \
     url = excluded.url, size = excluded.size, mimetype = excluded.mimetype, uploaded_by = excluded.uploaded_by, \
     uploaded_at = excluded.uploaded_at, tags = excluded.tags, description = excluded.description, \
     is_public = excluded.is_public, updated_at = excluded.updated_at, project_id = excluded.project_id, \
     extra = excluded.extra"
);
/// Activities never change once written: both rules insert only, in staging order (their `seq`).
const MOVE_ACTIVITIES: &str = "insert into activities (id, project_id, type, user_id, user_name, user_email, \
       user_avatar, entity_type, entity_id, entity_ref, entity_title, action, metadata, \"timestamp\", extra) \
     select id, project_id, type, user_id, user_name, user_email, user_avatar, entity_type, entity_id, entity_ref, \
       entity_title, action, metadata, ts, extra \
     from pg_temp.flux_stage_activities u \
     where not exists (select 1 from store_tombstones t where t.entity = 'activity' \
       and t.entity_id in (u.public_id, u.id::text)) \
     order by ord \
     on conflict (id) do nothing returning true";

fn pick(sql: &[&'static str; 2], oc: OnConflict) -> &'static str {
    match oc {
        OnConflict::Keep => sql[0],
        OnConflict::Overwrite => sql[1],
    }
}

/// How a staged batch moves in: with the foreign-key triggers, or (its parents locked and present, and the role
/// allowed to) without them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FkMode {
    Triggers,
    LockedParents,
}

/// Stages `data` into staging table `which`, then moves it with `sql`. With [`FkMode::LockedParents`] the
/// parents are locked first; when one is missing the move runs with the triggers, which then refuse the batch.
async fn stage_and_move(
    conn: &mut PgConnection,
    which: usize,
    data: CopyBuf,
    sql: &'static str,
    fk: FkMode,
) -> Result<Written, sqlx::Error> {
    stage(conn, which, data).await?;
    let skip = fk == FkMode::LockedParents && lock_parents(conn, which).await?;
    if skip {
        // `set local`: it ends with the transaction at the latest, and a rolled-back savepoint undoes it too.
        sqlx::raw_sql("set local session_replication_role = replica").execute(&mut *conn).await?;
    }
    let flags: Vec<bool> = sqlx::query_scalar(sql).fetch_all(&mut *conn).await?;
    if skip {
        sqlx::raw_sql("set local session_replication_role = origin").execute(&mut *conn).await?;
    }
    Ok(written(flags))
}

pub async fn copy_users(
    conn: &mut PgConnection,
    items: &[(String, UserRow)],
    oc: OnConflict,
    fk: FkMode,
) -> Result<Written, sqlx::Error> {
    let mut b = CopyBuf::new();
    for (public, u) in items {
        b.row(13);
        b.uuid(u.id);
        b.text(&u.email)?;
        b.text(&u.name)?;
        b.opt_text(u.password_hash.as_deref())?;
        b.text(&u.user_type)?;
        b.opt_text(u.oauth_provider.as_deref())?;
        b.opt_text(u.oauth_id.as_deref())?;
        b.opt_text(u.avatar_url.as_deref())?;
        b.bool(u.is_active);
        b.ts(u.created_at)?;
        b.opt_ts(u.updated_at)?;
        b.jsonb(&u.extra.0)?;
        b.text(public)?;
    }
    stage_and_move(conn, stage_of::USERS, b, pick(&MOVE_USERS, oc), fk).await
}

pub async fn copy_teams(
    conn: &mut PgConnection,
    items: &[(String, TeamHeader)],
    oc: OnConflict,
    fk: FkMode,
) -> Result<Written, sqlx::Error> {
    let mut b = CopyBuf::new();
    for (public, t) in items {
        b.row(10);
        b.uuid(t.id);
        b.text(&t.kind)?;
        b.text(&t.name)?;
        b.opt_text(t.description.as_deref())?;
        b.uuid(t.created_by);
        b.ts(t.created_at)?;
        b.opt_ts(t.updated_at)?;
        b.jsonb(&t.invites.0)?;
        b.jsonb(&t.extra.0)?;
        b.text(public)?;
    }
    stage_and_move(conn, stage_of::TEAMS, b, pick(&MOVE_TEAMS, oc), fk).await
}

pub async fn copy_members(
    conn: &mut PgConnection,
    table: MemberTable,
    items: &[(Uuid, MemberRow)],
    oc: OnConflict,
    fk: FkMode,
) -> Result<Written, sqlx::Error> {
    let mut b = CopyBuf::new();
    for (parent, m) in items {
        b.row(7);
        b.uuid(*parent);
        b.uuid(m.user_id);
        b.text(&m.role)?;
        b.ts(m.joined_at)?;
        b.i32(m.position);
        b.opt_text(m.member_ref.as_deref())?;
        b.jsonb(&m.extra)?;
    }
    let (which, sql) = match table {
        MemberTable::Team => (stage_of::TEAM_MEMBERS, pick(&MOVE_TEAM_MEMBERS, oc)),
        MemberTable::Project => (stage_of::PROJECT_MEMBERS, pick(&MOVE_PROJECT_MEMBERS, oc)),
    };
    stage_and_move(conn, which, b, sql, fk).await
}

pub async fn copy_projects(
    conn: &mut PgConnection,
    items: &[(String, ProjectHeader)],
    oc: OnConflict,
    fk: FkMode,
) -> Result<Written, sqlx::Error> {
    let mut b = CopyBuf::new();
    for (public, p) in items {
        b.row(17);
        b.uuid(p.id);
        b.text(&p.name)?;
        b.opt_text(p.description.as_deref())?;
        b.opt_uuid(p.team_id);
        b.opt_uuid(p.organization_id);
        b.uuid(p.manager_id);
        b.text(&p.status)?;
        b.text(&p.priority)?;
        b.opt_ts(p.start_date)?;
        b.opt_ts(p.due_date)?;
        b.i16(p.progress);
        b.opt_jsonb(p.channel_metadata.as_ref())?;
        b.jsonb(&p.files.0)?;
        b.ts(p.created_at)?;
        b.ts(p.updated_at)?;
        b.jsonb(&p.extra.0)?;
        b.text(public)?;
    }
    stage_and_move(conn, stage_of::PROJECTS, b, pick(&MOVE_PROJECTS, oc), fk).await
}

/// (public id, project storage id, row).
pub async fn copy_tasks(
    conn: &mut PgConnection,
    items: &[(String, Uuid, TaskRow)],
    oc: OnConflict,
    fk: FkMode,
) -> Result<Written, sqlx::Error> {
    let mut b = CopyBuf::new();
    for (public, project, t) in items {
        b.row(17);
        b.uuid(t.id);
        b.uuid(*project);
        b.i32(t.position);
        b.text(&t.title)?;
        b.opt_text(t.description.as_deref())?;
        b.text(&t.status)?;
        b.text(&t.priority)?;
        b.opt_uuid(t.assigned_to);
        b.opt_ts(t.due_date)?;
        b.uuid(t.created_by);
        b.ts(t.created_at)?;
        b.ts(t.updated_at)?;
        b.opt_ts(t.completed_at)?;
        b.opt_text_array(t.tags.as_deref())?;
        b.opt_jsonb(t.attachments.as_ref())?;
        b.jsonb(&t.extra)?;
        b.text(public)?;
    }
    stage_and_move(conn, stage_of::TASKS, b, pick(&MOVE_TASKS, oc), fk).await
}

/// (public id, project storage id, row).
pub async fn copy_milestones(
    conn: &mut PgConnection,
    items: &[(String, Uuid, MilestoneRow)],
    oc: OnConflict,
    fk: FkMode,
) -> Result<Written, sqlx::Error> {
    let mut b = CopyBuf::new();
    for (public, project, m) in items {
        b.row(15);
        b.uuid(m.id);
        b.uuid(*project);
        b.i32(m.order_index);
        b.bool(m.order_index_set);
        b.text(&m.title)?;
        b.opt_text(m.description.as_deref())?;
        b.opt_ts(m.due_date)?;
        b.text(&m.status)?;
        b.opt_i16(m.progress);
        b.opt_uuid(m.created_by);
        b.ts(m.created_at)?;
        b.ts(m.updated_at)?;
        b.opt_ts(m.completed_at)?;
        b.jsonb(&m.extra)?;
        b.text(public)?;
    }
    stage_and_move(conn, stage_of::MILESTONES, b, pick(&MOVE_MILESTONES, oc), fk).await
}

pub async fn copy_files(
    conn: &mut PgConnection,
    items: &[(String, FileRow)],
    oc: OnConflict,
    fk: FkMode,
) -> Result<Written, sqlx::Error> {
    let mut b = CopyBuf::new();
    for (public, f) in items {
        b.row(16);
        b.uuid(f.id);
        b.text(&f.original_name)?;
        b.text(&f.filename)?;
        b.opt_text(f.storage_path.as_deref())?;
        b.text(&f.url)?;
        b.i64(f.size);
        b.text(&f.mimetype)?;
        b.uuid(f.uploaded_by);
        b.ts(f.uploaded_at)?;
        b.text_array(&f.tags)?;
        b.text(&f.description)?;
        b.bool(f.is_public);
        b.opt_ts(f.updated_at)?;
        b.opt_uuid(f.project_id);
        b.jsonb(&f.extra.0)?;
        b.text(public)?;
    }
    stage_and_move(conn, stage_of::FILES, b, pick(&MOVE_FILES, oc), fk).await
}

/// Rows are inserted in the order given, which becomes their `seq` (the tie-break of equal timestamps).
pub async fn copy_activities(
    conn: &mut PgConnection,
    items: &[(String, ActivityRow)],
    fk: FkMode,
) -> Result<Written, sqlx::Error> {
    let mut b = CopyBuf::new();
    for (ord, (public, a)) in items.iter().enumerate() {
        b.row(17);
        b.uuid(a.id);
        b.opt_uuid(a.project_id);
        b.text(&a.kind)?;
        b.opt_uuid(a.user_id);
        b.opt_text(a.user_name.as_deref())?;
        b.opt_text(a.user_email.as_deref())?;
        b.opt_text(a.user_avatar.as_deref())?;
        b.opt_text(a.entity_type.as_deref())?;
        b.opt_uuid(a.entity_id);
        b.opt_text(a.entity_ref.as_deref())?;
        b.opt_text(a.entity_title.as_deref())?;
        b.text(&a.action)?;
        b.jsonb(&a.metadata.0)?;
        b.ts(a.timestamp)?;
        b.jsonb(&a.extra.0)?;
        b.text(public)?;
        b.i32(i32::try_from(ord).map_err(|_| encode_error("batch too large".into()))?);
    }
    stage_and_move(conn, stage_of::ACTIVITIES, b, MOVE_ACTIVITIES, fk).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_copy_layout() {
        let mut b = CopyBuf::new();
        b.row(3);
        b.i32(7);
        b.null();
        b.text_array(&["a".into(), "bc".into()]).unwrap();
        let out = b.finish();
        let mut want: Vec<u8> = b"PGCOPY\n\xff\r\n\0".to_vec();
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[0, 3]);
        want.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 7]);
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        // array: length, ndim 1, no nulls, oid 25, 2 elements from 1, "a", "bc"
        want.extend_from_slice(&[0, 0, 0, 31, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 25, 0, 0, 0, 2, 0, 0, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 1, b'a', 0, 0, 0, 2, b'b', b'c']);
        want.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(out, want);
    }

    #[test]
    fn timestamps_count_from_2000() {
        let mut b = CopyBuf::new();
        let t = DateTime::parse_from_rfc3339("2000-01-01T00:00:01.5Z").unwrap().with_timezone(&Utc);
        b.ts(t).unwrap();
        let out = b.finish();
        assert_eq!(&out[19..31], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0x16, 0xe3, 0x60]);
    }

    #[test]
    fn jsonb_has_version_and_length() {
        let mut b = CopyBuf::new();
        b.jsonb(&serde_json::json!({"a": 1})).unwrap();
        let out = b.finish();
        assert_eq!(&out[19..19 + 4], &[0, 0, 0, 8]);
        assert_eq!(&out[23..31], b"\x01{\"a\":1}");
    }

    #[test]
    fn every_entity_with_parents_has_a_lock_statement() {
        assert!(STAGES[stage_of::USERS].lock.is_none());
        let tasks = STAGES[stage_of::TASKS].lock.unwrap();
        assert!(tasks.contains("from projects p") && tasks.contains("from users p"));
        assert!(tasks.contains("select assigned_to as id") && tasks.contains("union select created_by"));
        for (i, s) in STAGES.iter().enumerate() {
            assert!(s.copy.contains("flux_stage_") && s.create.contains("flux_stage_"), "stage {i}");
            if i != stage_of::USERS {
                assert!(s.lock.is_some_and(|l| l.contains("for key share")), "stage {i} locks its parents");
            }
        }
    }
}
