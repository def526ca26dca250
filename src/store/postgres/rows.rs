//! The SQL text, all of it: fixed statements with bind parameters, plus the functions that bind a mapped row to
//! them. Column lists are spelled out (never `select *` into a record, never built from input), so that a schema
//! change is a compile-visible edit here and no request key can ever name a column (legacy defect 14).

use sqlx::PgConnection;
use uuid::Uuid;

use super::mapping::{ActivityRow, FileRow, MemberRow, MilestoneRow, ProjectHeader, TaskRow, TeamHeader, UserRow};

macro_rules! user_cols {
    () => {
        "id, email, name, password_hash, user_type, oauth_provider, oauth_id, avatar_url, is_active, created_at, \
         updated_at, extra"
    };
}

macro_rules! file_cols {
    () => {
        "id, original_name, filename, storage_path, url, size, mimetype, uploaded_by, uploaded_at, tags, description, \
         is_public, updated_at, project_id, extra"
    };
}

macro_rules! activity_cols {
    () => {
        "id, project_id, type, user_id, user_name, user_email, user_avatar, entity_type, entity_id, entity_ref, \
         entity_title, action, metadata, \"timestamp\", extra"
    };
}

/// A project and everything it embeds in one statement: children are aggregated as `jsonb` in list order
/// (position, with deterministic tie-breaks for legacy data that repeats a position).
macro_rules! project_select {
    () => {
        "select p.id, p.name, p.description, p.team_id, p.organization_id, p.manager_id, p.status, p.priority, \
           p.start_date, p.due_date, p.progress, p.channel_metadata, p.files, p.created_at, p.updated_at, p.extra, \
           p.progress_derived, \
           coalesce((select jsonb_agg(to_jsonb(m) order by m.position, m.joined_at, m.user_id) \
                     from project_members m where m.project_id = p.id), '[]'::jsonb) as members, \
           coalesce((select jsonb_agg(to_jsonb(t) order by t.position, t.created_at, t.id) \
                     from tasks t where t.project_id = p.id), '[]'::jsonb) as tasks, \
           coalesce((select jsonb_agg(to_jsonb(ms) order by ms.order_index, ms.created_at, ms.id) \
                     from milestones ms where ms.project_id = p.id), '[]'::jsonb) as milestones \
         from projects p "
    };
}

/// [`project_select`] without the tasks (an empty list): for writes that do not read them (members, milestones).
/// Without the tasks a derived progress cannot be computed, so these rows carry the stored column as it is.
macro_rules! project_select_without_tasks {
    () => {
        "select p.id, p.name, p.description, p.team_id, p.organization_id, p.manager_id, p.status, p.priority, \
           p.start_date, p.due_date, p.progress, p.channel_metadata, p.files, p.created_at, p.updated_at, p.extra, \
           false as progress_derived, \
           coalesce((select jsonb_agg(to_jsonb(m) order by m.position, m.joined_at, m.user_id) \
                     from project_members m where m.project_id = p.id), '[]'::jsonb) as members, \
           '[]'::jsonb as tasks, \
           coalesce((select jsonb_agg(to_jsonb(ms) order by ms.order_index, ms.created_at, ms.id) \
                     from milestones ms where ms.project_id = p.id), '[]'::jsonb) as milestones \
         from projects p "
    };
}

/// A project's members as one `jsonb` list, in list order (for the membership check of a request).
macro_rules! members_of_p {
    () => {
        "coalesce((select jsonb_agg(to_jsonb(m) order by m.position, m.joined_at, m.user_id) \
                   from project_members m where m.project_id = p.id), '[]'::jsonb)"
    };
}

macro_rules! task_cols {
    () => {
        "id, position, title, description, status, priority, assigned_to, due_date, created_by, created_at, \
         updated_at, completed_at, tags, attachments, extra"
    };
}

macro_rules! team_select {
    () => {
        "select t.id, t.kind, t.name, t.description, t.created_by, t.created_at, t.updated_at, t.invites, t.extra, \
           coalesce((select jsonb_agg(to_jsonb(m) order by m.position, m.joined_at, m.user_id) \
                     from team_members m where m.team_id = t.id), '[]'::jsonb) as members \
         from teams t "
    };
}

// ---------------------------------------------------------------------------------------------------------- users

pub const USER_BY_ID: &str = concat!("select ", user_cols!(), " from users where id = $1");
pub const USER_BY_ID_FOR_UPDATE: &str = concat!("select ", user_cols!(), " from users where id = $1 for update");
pub const USER_BY_EMAIL: &str = concat!("select ", user_cols!(), " from users where email = $1");
/// Candidates for the case-insensitive match; the caller re-checks with Rust's case folding, which is what the JSON
/// store uses, so that PostgreSQL's locale can only narrow the candidates, never widen the match.
pub const USERS_BY_EMAIL_CI: &str =
    concat!("select ", user_cols!(), " from users where lower(email) = lower($1) order by created_at, id");
pub const USER_BY_GOOGLE_ID: &str =
    concat!("select ", user_cols!(), " from users where oauth_id = $1 order by created_at, id limit 1");
pub const LIST_USERS: &str = concat!("select ", user_cols!(), " from users order by created_at, id");
/// Rows that would make a new account a duplicate: the same id, or an e-mail equal up to case.
pub const USER_CLASHES: &str = "select id, email from users where id = $1 or lower(email) = lower($2)";
/// Serialises signups of addresses that differ only in case (the unique index is byte-exact).
pub const EMAIL_LOCK: &str = "select pg_advisory_xact_lock(hashtext($1))";

const INSERT_USER: &str =
    concat!("insert into users (", user_cols!(), ") values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)");
const UPSERT_USER: &str = concat!(
    "insert into users (",
    user_cols!(),
    ") values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
     on conflict (id) do update set email = excluded.email, name = excluded.name, \
       password_hash = excluded.password_hash, user_type = excluded.user_type, \
       oauth_provider = excluded.oauth_provider, oauth_id = excluded.oauth_id, avatar_url = excluded.avatar_url, \
       is_active = excluded.is_active, created_at = excluded.created_at, updated_at = excluded.updated_at, \
       extra = excluded.extra"
);
const UPDATE_USER: &str = "update users set email = $2, name = $3, password_hash = $4, user_type = $5, \
     oauth_provider = $6, oauth_id = $7, avatar_url = $8, is_active = $9, updated_at = $10, extra = $11 where id = $1";

fn bind_user<'q>(
    sql: &'static str,
    r: &'q UserRow,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(r.id)
        .bind(&r.email)
        .bind(&r.name)
        .bind(&r.password_hash)
        .bind(&r.user_type)
        .bind(&r.oauth_provider)
        .bind(&r.oauth_id)
        .bind(&r.avatar_url)
        .bind(r.is_active)
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(&r.extra)
}

pub async fn insert_user(conn: &mut PgConnection, r: &UserRow) -> Result<(), sqlx::Error> {
    bind_user(INSERT_USER, r).execute(conn).await.map(drop)
}

pub async fn upsert_user(conn: &mut PgConnection, r: &UserRow) -> Result<(), sqlx::Error> {
    bind_user(UPSERT_USER, r).execute(conn).await.map(drop)
}

pub async fn update_user(conn: &mut PgConnection, r: &UserRow) -> Result<(), sqlx::Error> {
    sqlx::query(UPDATE_USER)
        .bind(r.id)
        .bind(&r.email)
        .bind(&r.name)
        .bind(&r.password_hash)
        .bind(&r.user_type)
        .bind(&r.oauth_provider)
        .bind(&r.oauth_id)
        .bind(&r.avatar_url)
        .bind(r.is_active)
        .bind(r.updated_at)
        .bind(&r.extra)
        .execute(conn)
        .await
        .map(drop)
}

// ------------------------------------------------------------------------------------------------------- projects

pub const PROJECT_BY_ID: &str = concat!(project_select!(), "where p.id = $1");
pub const PROJECT_BY_ID_WITHOUT_TASKS: &str = concat!(project_select_without_tasks!(), "where p.id = $1");
/// Who may use a project: creator and members, one row.
pub const PROJECT_ACCESS: &str = concat!(
    "select p.id as project_id, p.manager_id, ",
    members_of_p!(),
    " as members from projects p where p.id = $1"
);
/// The same with the tasks, in one statement and one round trip: a row with the project's id, creator and members
/// (and null task columns), and a row per task (plain columns, decoded without a JSON pass; null project columns).
/// A missing project is no row at all (tasks cannot outlive their project). The members are sent once rather than
/// joined onto every task row, which made PostgreSQL render their `jsonb` once per task. The rows come in no
/// particular order: the reader finds the project's row by its non-null id and puts the tasks in list order
/// ([`task_list_order`](super::mapping::task_list_order)) itself — for a project's few dozen rows that is cheaper
/// there than PostgreSQL's sort node (~9 % of the statement in pgbench).
pub const PROJECT_ACCESS_WITH_TASKS: &str = concat!(
    "select p.id as project_id, p.manager_id, ",
    members_of_p!(),
    " as members, \
       null::uuid as id, null::int as position, null::text as title, null::text as description, \
       null::text as status, null::text as priority, null::uuid as assigned_to, null::timestamptz as due_date, \
       null::uuid as created_by, null::timestamptz as created_at, null::timestamptz as updated_at, \
       null::timestamptz as completed_at, null::text[] as tags, null::jsonb as attachments, null::jsonb as extra \
     from projects p where p.id = $1 \
     union all \
     select null, null, null, ",
    task_cols!(),
    " from tasks where project_id = $1"
);
/// The index of the first task column (`id`) in [`PROJECT_ACCESS_WITH_TASKS`]'s rows: after `project_id`,
/// `manager_id` and `members`. The task columns follow in `task_cols!` order (`TaskRow::from_row_at`).
pub const PROJECT_ACCESS_TASK_COLUMNS: usize = 3;
/// Every project-scoped write starts by locking the project row, so writes to one project are serialised while
/// reads and other projects go on. The lock is its own statement on purpose: under READ COMMITTED a
/// `select … for update` that waited for the lock re-reads the locked row but not its sub-selects, which would
/// still show the tasks and members as of before the write it waited for. The load that follows is a new
/// statement, with a snapshot taken after the lock was granted.
///
/// `for no key update`, not `for update`: it serialises the project's writes among themselves but lets the foreign
/// key checks of task and activity inserts (`for key share`) through, so an insert that takes no project lock of
/// its own (`insert_task` outside dual-postgres) never waits behind another project write.
pub const LOCK_PROJECT: &str = "select 1 from projects where id = $1 for no key update";
/// [`LOCK_PROJECT`] for the task updates and deletes, answering whether the progress is derived yet.
pub const LOCK_PROJECT_DERIVED: &str = "select progress_derived from projects where id = $1 for no key update";
/// Marks the project's stored progress as derived from its tasks (migration 0005), the JSON store's rule once a
/// project is rewritten. Once set, the `where` is false on the row as read and the statement takes no row lock, so
/// only a project's first write pays for it.
pub const MARK_PROGRESS_DERIVED: &str =
    "update projects set progress_derived = true where id = $1 and not progress_derived";
/// Membership comes from the member rows (plus the creator, who always counts as an owner), never from a
/// fallback (legacy defect 11).
pub const PROJECTS_FOR_USER: &str = concat!(
    project_select!(),
    "where p.manager_id = $1 \
        or exists (select 1 from project_members pm where pm.project_id = p.id and pm.user_id = $1) \
     order by p.created_at, p.id"
);
pub const DELETE_PROJECT: &str = "delete from projects where id = $1";

const PROJECT_VALUES: &str = "insert into projects (id, name, description, team_id, organization_id, manager_id, \
     status, priority, start_date, due_date, progress, channel_metadata, files, created_at, updated_at, extra) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";
macro_rules! upsert_project {
    () => {
        "insert into projects (id, name, description, team_id, organization_id, manager_id, \
         status, priority, start_date, due_date, progress, channel_metadata, files, created_at, updated_at, extra) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         on conflict (id) do update set name = excluded.name, description = excluded.description, \
           team_id = excluded.team_id, organization_id = excluded.organization_id, manager_id = excluded.manager_id, \
           status = excluded.status, priority = excluded.priority, start_date = excluded.start_date, \
           due_date = excluded.due_date, progress = excluded.progress, channel_metadata = excluded.channel_metadata, \
           files = excluded.files, created_at = excluded.created_at, updated_at = excluded.updated_at, \
           extra = excluded.extra, "
    };
}
/// A project record as it stands, its `progress` included (an import of the JSON store's state).
const UPSERT_PROJECT: &str = concat!(upsert_project!(), "progress_derived = false");
/// A replayed `PutProject`: the JSON store recomputes the progress of a project it already holds (and keeps a new
/// one's), so an existing row's progress becomes derived.
const UPSERT_PROJECT_REPLAYED: &str = concat!(upsert_project!(), "progress_derived = true");
/// The editable header columns; `manager_id` and `created_at` never change after creation. The JSON store
/// recomputes the progress on this write, so from now on it is derived.
const UPDATE_PROJECT: &str = "update projects set name = $2, description = $3, team_id = $4, organization_id = $5, \
     status = $6, priority = $7, start_date = $8, due_date = $9, progress = $10, channel_metadata = $11, files = $12, \
     updated_at = $13, extra = $14, progress_derived = true where id = $1";

fn bind_project<'q>(
    sql: &'static str,
    h: &'q ProjectHeader,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(h.id)
        .bind(&h.name)
        .bind(&h.description)
        .bind(h.team_id)
        .bind(h.organization_id)
        .bind(h.manager_id)
        .bind(&h.status)
        .bind(&h.priority)
        .bind(h.start_date)
        .bind(h.due_date)
        .bind(h.progress)
        .bind(&h.channel_metadata)
        .bind(&h.files)
        .bind(h.created_at)
        .bind(h.updated_at)
        .bind(&h.extra)
}

pub async fn insert_project(conn: &mut PgConnection, h: &ProjectHeader) -> Result<(), sqlx::Error> {
    bind_project(PROJECT_VALUES, h).execute(conn).await.map(drop)
}

pub async fn upsert_project(conn: &mut PgConnection, h: &ProjectHeader) -> Result<(), sqlx::Error> {
    bind_project(UPSERT_PROJECT, h).execute(conn).await.map(drop)
}

pub async fn upsert_replayed_project(conn: &mut PgConnection, h: &ProjectHeader) -> Result<(), sqlx::Error> {
    bind_project(UPSERT_PROJECT_REPLAYED, h).execute(conn).await.map(drop)
}

pub async fn update_project(conn: &mut PgConnection, h: &ProjectHeader) -> Result<(), sqlx::Error> {
    sqlx::query(UPDATE_PROJECT)
        .bind(h.id)
        .bind(&h.name)
        .bind(&h.description)
        .bind(h.team_id)
        .bind(h.organization_id)
        .bind(&h.status)
        .bind(&h.priority)
        .bind(h.start_date)
        .bind(h.due_date)
        .bind(h.progress)
        .bind(&h.channel_metadata)
        .bind(&h.files)
        .bind(h.updated_at)
        .bind(&h.extra)
        .execute(conn)
        .await
        .map(drop)
}

// -------------------------------------------------------------------------------------------------------- members

/// Which member table a member row belongs to.
#[derive(Clone, Copy, Debug)]
pub enum MemberTable {
    Project,
    Team,
}

const UPSERT_PROJECT_MEMBER: &str = "insert into project_members \
     (project_id, user_id, role, joined_at, position, member_ref, extra) values ($1, $2, $3, $4, $5, $6, $7) \
     on conflict (project_id, user_id) do update set role = excluded.role, joined_at = excluded.joined_at, \
       position = excluded.position, member_ref = excluded.member_ref, extra = excluded.extra";
const UPSERT_TEAM_MEMBER: &str = "insert into team_members \
     (team_id, user_id, role, joined_at, position, member_ref, extra) values ($1, $2, $3, $4, $5, $6, $7) \
     on conflict (team_id, user_id) do update set role = excluded.role, joined_at = excluded.joined_at, \
       position = excluded.position, member_ref = excluded.member_ref, extra = excluded.extra";
const INSERT_PROJECT_MEMBER: &str = "insert into project_members \
     (project_id, user_id, role, joined_at, position, member_ref, extra) values ($1, $2, $3, $4, $5, $6, $7)";
pub const SET_MEMBER_ROLE: &str = "update project_members set role = $3 where project_id = $1 and user_id = $2";
pub const DELETE_MEMBER: &str = "delete from project_members where project_id = $1 and user_id = $2";
pub const DELETE_PROJECT_MEMBERS_EXCEPT: &str =
    "delete from project_members where project_id = $1 and not (user_id = any($2))";
pub const DELETE_TEAM_MEMBERS_EXCEPT: &str = "delete from team_members where team_id = $1 and not (user_id = any($2))";

pub async fn insert_member(conn: &mut PgConnection, project: Uuid, r: &MemberRow) -> Result<(), sqlx::Error> {
    bind_member(INSERT_PROJECT_MEMBER, project, r).execute(conn).await.map(drop)
}

pub async fn upsert_member(
    conn: &mut PgConnection,
    table: MemberTable,
    parent: Uuid,
    r: &MemberRow,
) -> Result<(), sqlx::Error> {
    let sql = match table {
        MemberTable::Project => UPSERT_PROJECT_MEMBER,
        MemberTable::Team => UPSERT_TEAM_MEMBER,
    };
    bind_member(sql, parent, r).execute(conn).await.map(drop)
}

fn bind_member<'q>(
    sql: &'static str,
    parent: Uuid,
    r: &'q MemberRow,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(parent)
        .bind(r.user_id)
        .bind(&r.role)
        .bind(r.joined_at)
        .bind(r.position)
        .bind(&r.member_ref)
        .bind(sqlx::types::Json(&r.extra))
}

// ---------------------------------------------------------------------------------------------------------- tasks

const UPSERT_TASK: &str = "insert into tasks (id, project_id, position, title, description, status, priority, \
     assigned_to, due_date, created_by, created_at, updated_at, completed_at, tags, attachments, extra) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
     on conflict (id) do update set position = excluded.position, title = excluded.title, \
       description = excluded.description, status = excluded.status, priority = excluded.priority, \
       assigned_to = excluded.assigned_to, due_date = excluded.due_date, created_by = excluded.created_by, \
       created_at = excluded.created_at, updated_at = excluded.updated_at, completed_at = excluded.completed_at, \
       tags = excluded.tags, attachments = excluded.attachments, extra = excluded.extra \
     where tasks.project_id = excluded.project_id";
/// The editable columns of a task; its position, creator and creation time stay.
const UPDATE_TASK: &str = "update tasks set title = $3, description = $4, status = $5, priority = $6, \
     assigned_to = $7, due_date = $8, updated_at = $9, completed_at = $10, tags = $11, attachments = $12, extra = $13 \
     where id = $1 and project_id = $2";
/// A task with its `task_created` activity, in one statement (and, outside a transaction, one round trip and one
/// commit). The task goes after every existing one, whatever gaps deletes left (http-api.md §1.11); `$3` is its
/// position in a project without tasks. The project's progress becomes derived ([`MARK_PROGRESS_DERIVED`]).
///
/// Under the project lock (dual-postgres, whose outbox must list a project's task inserts in commit order) the
/// maximum includes every committed task. Without it, inserts into one project run concurrently and commit together
/// (group commit); two that overlap can take the same position, and they are then listed by creation time and id
/// (the tie-break of every task list), which is how the JSON store orders two writes that arrive together.
///
/// `$32` null: the caller's access was checked before; the statement inserts when the project exists. `$32` a
/// caller's storage id: the access check is in the statement, so a POST task makes one round trip instead of two,
/// and it inserts only when that caller is certainly a writer — the project's creator, or a member by id (not by a
/// legacy e-mail reference, whose match is the domain's case-insensitive comparison) whose role is not `viewer`, a
/// subset of `access::role_from(..).can_write()`. Nothing inserted means no such project or, with a caller, not shown
/// to be a writer; the caller then takes the regular path (access check, then this with `$32` null).
const INSERT_TASK_AT_END: &str = concat!(
    "with acc as ( \
       select p.id from projects p where p.id = $2 and ($32::uuid is null or p.manager_id = $32 or exists ( \
         select 1 from project_members m where m.project_id = p.id and m.user_id = $32 \
           and m.member_ref is null and m.role <> 'viewer'))), \
     mark as (update projects set progress_derived = true where id = (select id from acc) and not progress_derived), \
     ins as ( \
       insert into tasks (id, project_id, position, title, description, status, priority, assigned_to, due_date, \
         created_by, created_at, updated_at, completed_at, tags, attachments, extra) \
       select $1, acc.id, coalesce((select max(position) + 1 from tasks where project_id = $2), $3), $4, $5, $6, \
         $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 from acc \
       returning id) \
     insert into activities (",
    activity_cols!(),
    // A new activity has a new id: no `on conflict` (a speculative insertion costs more than a plain one).
    ") select $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31 from ins"
);
pub const TASK_BY_ID: &str = concat!("select ", task_cols!(), " from tasks where id = $1 and project_id = $2");
pub const DELETE_TASK: &str = "delete from tasks where id = $1 and project_id = $2";
pub const DELETE_TASKS_EXCEPT: &str = "delete from tasks where project_id = $1 and not (id = any($2))";

fn bind_task<'q>(
    sql: &'static str,
    project: Uuid,
    r: &'q TaskRow,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(r.id)
        .bind(project)
        .bind(r.position)
        .bind(&r.title)
        .bind(&r.description)
        .bind(&r.status)
        .bind(&r.priority)
        .bind(r.assigned_to)
        .bind(r.due_date)
        .bind(r.created_by)
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.completed_at)
        .bind(&r.tags)
        .bind(&r.attachments)
        .bind(sqlx::types::Json(&r.extra))
}

/// [`INSERT_TASK_AT_END`] on `conn` (a transaction's connection, or a connection on which the statement is its own
/// transaction), `writer` its `$32`: whether the task was inserted.
pub async fn insert_task_at_end<'c>(
    conn: impl sqlx::PgExecutor<'c>,
    project: Uuid,
    r: &TaskRow,
    a: &ActivityRow,
    writer: Option<Uuid>,
) -> Result<bool, sqlx::Error> {
    let done = bind_activity(bind_task(INSERT_TASK_AT_END, project, r), a).bind(writer).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}

pub async fn upsert_task(conn: &mut PgConnection, project: Uuid, r: &TaskRow) -> Result<u64, sqlx::Error> {
    bind_task(UPSERT_TASK, project, r).execute(conn).await.map(|d| d.rows_affected())
}

pub async fn update_task(conn: &mut PgConnection, project: Uuid, r: &TaskRow) -> Result<(), sqlx::Error> {
    sqlx::query(UPDATE_TASK)
        .bind(r.id)
        .bind(project)
        .bind(&r.title)
        .bind(&r.description)
        .bind(&r.status)
        .bind(&r.priority)
        .bind(r.assigned_to)
        .bind(r.due_date)
        .bind(r.updated_at)
        .bind(r.completed_at)
        .bind(&r.tags)
        .bind(&r.attachments)
        .bind(sqlx::types::Json(&r.extra))
        .execute(conn)
        .await
        .map(drop)
}

// ----------------------------------------------------------------------------------------------------- milestones

const INSERT_MILESTONE: &str = "insert into milestones (id, project_id, order_index, order_index_set, title, \
     description, due_date, status, progress, created_by, created_at, updated_at, completed_at, extra) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
const UPSERT_MILESTONE: &str = "insert into milestones (id, project_id, order_index, order_index_set, title, \
     description, due_date, status, progress, created_by, created_at, updated_at, completed_at, extra) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
     on conflict (id) do update set order_index = excluded.order_index, order_index_set = excluded.order_index_set, \
       title = excluded.title, description = excluded.description, due_date = excluded.due_date, \
       status = excluded.status, progress = excluded.progress, created_by = excluded.created_by, \
       created_at = excluded.created_at, updated_at = excluded.updated_at, completed_at = excluded.completed_at, \
       extra = excluded.extra \
     where milestones.project_id = excluded.project_id";
const UPDATE_MILESTONE: &str = "update milestones set title = $3, description = $4, due_date = $5, status = $6, \
     progress = $7, updated_at = $8, completed_at = $9, extra = $10 where id = $1 and project_id = $2";
pub const DELETE_MILESTONES_EXCEPT: &str = "delete from milestones where project_id = $1 and not (id = any($2))";

fn bind_milestone<'q>(
    sql: &'static str,
    project: Uuid,
    r: &'q MilestoneRow,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(r.id)
        .bind(project)
        .bind(r.order_index)
        .bind(r.order_index_set)
        .bind(&r.title)
        .bind(&r.description)
        .bind(r.due_date)
        .bind(&r.status)
        .bind(r.progress)
        .bind(r.created_by)
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.completed_at)
        .bind(sqlx::types::Json(&r.extra))
}

pub async fn insert_milestone(conn: &mut PgConnection, project: Uuid, r: &MilestoneRow) -> Result<(), sqlx::Error> {
    bind_milestone(INSERT_MILESTONE, project, r).execute(conn).await.map(drop)
}

pub async fn upsert_milestone(conn: &mut PgConnection, project: Uuid, r: &MilestoneRow) -> Result<u64, sqlx::Error> {
    bind_milestone(UPSERT_MILESTONE, project, r).execute(conn).await.map(|d| d.rows_affected())
}

pub async fn update_milestone(conn: &mut PgConnection, project: Uuid, r: &MilestoneRow) -> Result<(), sqlx::Error> {
    sqlx::query(UPDATE_MILESTONE)
        .bind(r.id)
        .bind(project)
        .bind(&r.title)
        .bind(&r.description)
        .bind(r.due_date)
        .bind(&r.status)
        .bind(r.progress)
        .bind(r.updated_at)
        .bind(r.completed_at)
        .bind(sqlx::types::Json(&r.extra))
        .execute(conn)
        .await
        .map(drop)
}

// ----------------------------------------------------------------------------------------------------- activities

const INSERT_ACTIVITY: &str = concat!(
    "insert into activities (",
    activity_cols!(),
    ") values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) on conflict (id) do nothing"
);

/// Newest first; activities of the same millisecond in reverse insertion order, like the JSON store's list.
/// `count(*) over ()` is evaluated before `limit`/`offset`, so `total` is the filtered count (legacy defect 18).
pub const LIST_ACTIVITIES: &str = concat!(
    "select ",
    activity_cols!(),
    ", count(*) over () as total from activities \
     where project_id = $1 \
       and ($2::text is null or type = $2) \
       and ($3::uuid is null or user_id = $3) \
       and ($4::timestamptz is null or \"timestamp\" >= $4) \
       and ($5::timestamptz is null or \"timestamp\" <= $5) \
     order by \"timestamp\" desc, seq desc limit $6 offset $7"
);
/// The total alone, for a page past the end (which returns no row to carry the window count).
pub const COUNT_ACTIVITIES: &str = "select count(*) from activities \
     where project_id = $1 \
       and ($2::text is null or type = $2) \
       and ($3::uuid is null or user_id = $3) \
       and ($4::timestamptz is null or \"timestamp\" >= $4) \
       and ($5::timestamptz is null or \"timestamp\" <= $5)";

pub async fn insert_activity(conn: &mut PgConnection, r: &ActivityRow) -> Result<(), sqlx::Error> {
    bind_activity(sqlx::query(INSERT_ACTIVITY), r).execute(conn).await.map(drop)
}

/// Binds the [`activity_cols`] of `r` after the parameters `q` already has.
fn bind_activity<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    r: &'q ActivityRow,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    q.bind(r.id)
        .bind(r.project_id)
        .bind(&r.kind)
        .bind(r.user_id)
        .bind(&r.user_name)
        .bind(&r.user_email)
        .bind(&r.user_avatar)
        .bind(&r.entity_type)
        .bind(r.entity_id)
        .bind(&r.entity_ref)
        .bind(&r.entity_title)
        .bind(&r.action)
        .bind(&r.metadata)
        .bind(r.timestamp)
        .bind(&r.extra)
}

// ---------------------------------------------------------------------------------------------------------- teams

pub const TEAM_BY_ID: &str = concat!(team_select!(), "where t.id = $1");
pub const TEAMS_FOR_USER: &str = concat!(
    team_select!(),
    "where exists (select 1 from team_members m where m.team_id = t.id and m.user_id = $1) \
     order by t.created_at, t.id"
);
const UPSERT_TEAM: &str = "insert into teams \
     (id, kind, name, description, created_by, created_at, updated_at, invites, extra) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     on conflict (id) do update set kind = excluded.kind, name = excluded.name, description = excluded.description, \
       created_by = excluded.created_by, created_at = excluded.created_at, updated_at = excluded.updated_at, \
       invites = excluded.invites, extra = excluded.extra";

pub async fn upsert_team(conn: &mut PgConnection, h: &TeamHeader) -> Result<(), sqlx::Error> {
    sqlx::query(UPSERT_TEAM)
        .bind(h.id)
        .bind(&h.kind)
        .bind(&h.name)
        .bind(&h.description)
        .bind(h.created_by)
        .bind(h.created_at)
        .bind(h.updated_at)
        .bind(&h.invites)
        .bind(&h.extra)
        .execute(conn)
        .await
        .map(drop)
}

// ---------------------------------------------------------------------------------------------------------- files

pub const FILE_BY_ID: &str = concat!("select ", file_cols!(), " from files where id = $1");
pub const FILE_BY_ID_FOR_UPDATE: &str = concat!("select ", file_cols!(), " from files where id = $1 for update");
pub const FILES_FOR_UPLOADER: &str = concat!(
    "select ",
    file_cols!(),
    " from files where uploaded_by = $1 and ($2::uuid is null or project_id = $2) order by uploaded_at, id"
);
pub const DELETE_FILE: &str = concat!("delete from files where id = $1 returning ", file_cols!());
/// A file record is an after-image, as in the JSON store: writing an existing id replaces it.
const UPSERT_FILE: &str = concat!(
    "insert into files (",
    file_cols!(),
    ") values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
     on conflict (id) do update set original_name = excluded.original_name, filename = excluded.filename, \
       storage_path = excluded.storage_path, url = excluded.url, size = excluded.size, \
       mimetype = excluded.mimetype, uploaded_by = excluded.uploaded_by, uploaded_at = excluded.uploaded_at, \
       tags = excluded.tags, description = excluded.description, is_public = excluded.is_public, \
       updated_at = excluded.updated_at, project_id = excluded.project_id, extra = excluded.extra"
);

pub async fn upsert_file(conn: &mut PgConnection, r: &FileRow) -> Result<(), sqlx::Error> {
    sqlx::query(UPSERT_FILE)
        .bind(r.id)
        .bind(&r.original_name)
        .bind(&r.filename)
        .bind(&r.storage_path)
        .bind(&r.url)
        .bind(r.size)
        .bind(&r.mimetype)
        .bind(r.uploaded_by)
        .bind(r.uploaded_at)
        .bind(&r.tags)
        .bind(&r.description)
        .bind(r.is_public)
        .bind(r.updated_at)
        .bind(r.project_id)
        .bind(&r.extra)
        .execute(conn)
        .await
        .map(drop)
}

// ------------------------------------------------------------------------------------------------------ legacy ids

/// Records a legacy id and tells the other instances (data-model.md §7: `NOTIFY flux_legacy_ids`). The
/// notification is delivered only if the transaction commits.
const INSERT_LEGACY_ID: &str = "with ins as ( \
       insert into legacy_ids (entity, legacy_id, id) values ($1, $2, $3) \
       on conflict (entity, legacy_id) do nothing returning 1) \
     select pg_notify('flux_legacy_ids', $1 || ':' || $2) from ins";

pub async fn insert_legacy_id(
    conn: &mut PgConnection,
    entity: &str,
    legacy: &str,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_LEGACY_ID).bind(entity).bind(legacy).bind(id).execute(conn).await.map(drop)
}

// ------------------------------------------------------------------------------------------------- whole-database

/// Every project, team, file and activity, for the operator tools that export or compare the whole database
/// (`fluxstudio rollback`, `validate`); users come from `LIST_USERS`.
pub const ALL_PROJECTS: &str = concat!(project_select!(), "order by p.created_at, p.id");
pub const ALL_TEAMS: &str = concat!(team_select!(), "order by t.created_at, t.id");
pub const ALL_FILES: &str = concat!("select ", file_cols!(), " from files order by uploaded_at, id");
/// Oldest first per project, ties in insertion order: the JSON activity log's order.
pub const ALL_ACTIVITIES: &str =
    concat!("select ", activity_cols!(), " from activities order by project_id, \"timestamp\", seq");
