//! Rows ↔ domain records (data-model.md §10): one place for the column names, the id translation (§7), the
//! canonical timestamps (§1) and `extra` ↔ unknown keys. The PostgreSQL store uses it for every read and write;
//! migrate, validate and rollback are meant to use it too, so that the mapping exists once.
//!
//! Rows hold storage ids (`Uuid`) and `DateTime<Utc>`; records hold public ids and canonical timestamp strings.
//! Child rows (members, tasks, milestones) are read as `jsonb` aggregated into their parent's row, so that a project
//! with everything it embeds is one statement (one round trip, one snapshot); they therefore derive `Deserialize`
//! with the column names as keys, exactly what `to_jsonb(row)` produces.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::ids::{canonical_uuid, legacy_uuid, storage_id, Entity, Ids};
use crate::domain::model::{progress_of, Extra};
use crate::domain::{time, Activity, FileRecord, Member, Milestone, Project, Task, Team, Timestamp, User};

/// A record that cannot be represented in the schema (a timestamp that does not parse, a progress outside 0–100).
/// Never expected for records the API built; possible for hand-edited legacy data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{entity} {id}: {field}: {message}")]
pub struct MapError {
    pub entity: &'static str,
    pub id: String,
    pub field: &'static str,
    pub message: String,
}

struct Ctx<'a> {
    entity: &'static str,
    id: &'a str,
}

impl Ctx<'_> {
    fn err(&self, field: &'static str, message: impl Into<String>) -> MapError {
        MapError { entity: self.entity, id: self.id.to_owned(), field, message: message.into() }
    }

    fn ts(&self, field: &'static str, s: &str) -> Result<DateTime<Utc>, MapError> {
        parse_ts(s).ok_or_else(|| self.err(field, format!("not a timestamp: {s:?}")))
    }

    fn ts_opt(&self, field: &'static str, s: &Option<Timestamp>) -> Result<Option<DateTime<Utc>>, MapError> {
        s.as_deref().map(|v| self.ts(field, v)).transpose()
    }
}

/// Reader rule of data-model.md §1 (RFC 3339 or a bare date), then parsed for a `timestamptz` column.
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    let canonical = time::canonical(s)?;
    DateTime::parse_from_rfc3339(&canonical).ok().map(|t| t.with_timezone(&Utc))
}

/// `timestamptz` keeps microseconds; the canonical form has milliseconds, which is all any writer ever stored.
pub fn format_ts(t: DateTime<Utc>) -> Timestamp {
    time::format_ts(t)
}

fn format_ts_opt(t: Option<DateTime<Utc>>) -> Option<Timestamp> {
    t.map(format_ts)
}

// ---------------------------------------------------------------------------------------------------------- users

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub password_hash: Option<String>,
    pub user_type: String,
    pub oauth_provider: Option<String>,
    pub oauth_id: Option<String>,
    pub avatar_url: Option<String>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    pub extra: Json<Extra>,
}

pub fn user_to_row(u: &User) -> Result<UserRow, MapError> {
    let cx = Ctx { entity: "user", id: &u.id };
    Ok(UserRow {
        id: storage_id(Entity::User, &u.id),
        email: u.email.clone(),
        name: u.name.clone(),
        password_hash: u.password.clone(),
        user_type: u.user_type.clone(),
        oauth_provider: u.oauth_provider.clone(),
        oauth_id: u.google_id.clone(),
        avatar_url: u.avatar.clone(),
        is_active: u.is_active,
        created_at: cx.ts("createdAt", &u.created_at)?,
        updated_at: cx.ts_opt("updatedAt", &u.updated_at)?,
        extra: Json(u.extra.clone()),
    })
}

pub fn user_from_row(r: &UserRow, ids: &Ids) -> User {
    User {
        id: ids.public(r.id),
        email: r.email.clone(),
        name: r.name.clone(),
        user_type: r.user_type.clone(),
        password: r.password_hash.clone(),
        google_id: r.oauth_id.clone(),
        oauth_provider: r.oauth_provider.clone(),
        avatar: r.avatar_url.clone(),
        created_at: format_ts(r.created_at),
        updated_at: format_ts_opt(r.updated_at),
        is_active: r.is_active,
        extra: r.extra.0.clone(),
    }
}

// -------------------------------------------------------------------------------------------------------- members

/// A `project_members` or `team_members` row (the two tables have the same shape).
#[derive(Debug, Clone, Deserialize)]
pub struct MemberRow {
    pub user_id: Uuid,
    pub role: String,
    pub joined_at: DateTime<Utc>,
    pub position: i32,
    /// The raw `userId` when it was not an id (a legacy member stored by e-mail).
    #[serde(default)]
    pub member_ref: Option<String>,
    #[serde(default)]
    pub extra: Extra,
}

/// A member entry's `userId` is an id, or (legacy data) an e-mail address; the e-mail form needs a user lookup,
/// which the caller does and passes as `resolved`.
pub fn member_is_email(user_ref: &str) -> bool {
    user_ref.contains('@')
}

pub fn member_to_row(
    parent: &'static str,
    parent_id: &str,
    m: &Member,
    position: i32,
    resolved: Uuid,
) -> Result<MemberRow, MapError> {
    let cx = Ctx { entity: parent, id: parent_id };
    Ok(MemberRow {
        user_id: resolved,
        role: m.role.clone(),
        joined_at: cx.ts("members.joinedAt", &m.joined_at)?,
        position,
        member_ref: member_is_email(&m.user_id).then(|| m.user_id.clone()),
        extra: m.extra.clone(),
    })
}

pub fn member_from_row(r: &MemberRow, ids: &Ids) -> Member {
    Member {
        user_id: r.member_ref.clone().unwrap_or_else(|| ids.public(r.user_id)),
        role: r.role.clone(),
        joined_at: format_ts(r.joined_at),
        extra: r.extra.clone(),
    }
}

// ---------------------------------------------------------------------------------------------------------- tasks

/// Decoded from a `tasks` row, or from its `to_jsonb` form inside a project aggregate.
#[derive(Debug, Clone, Deserialize, sqlx::FromRow)]
pub struct TaskRow {
    pub id: Uuid,
    pub position: i32,
    pub title: String,
    pub description: Option<String>,
    pub status: String,
    pub priority: String,
    pub assigned_to: Option<Uuid>,
    pub due_date: Option<DateTime<Utc>>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub tags: Option<Vec<String>>,
    pub attachments: Option<Value>,
    #[serde(default)]
    #[sqlx(json)]
    pub extra: Extra,
}

/// The order of every task list: position, then creation time, then id (two inserts that overlap may share a
/// position). The same as the `order by position, created_at, id` of the statements that sort in PostgreSQL
/// (timestamps compare as instants, UUIDs byte-wise, in both).
pub fn task_list_order(a: &TaskRow, b: &TaskRow) -> std::cmp::Ordering {
    (a.position, a.created_at, a.id).cmp(&(b.position, b.created_at, b.id))
}

impl TaskRow {
    /// The task columns of `r`, in `task_cols!` order from column `at` on, read by index: the GET tasks read
    /// (`rows::PROJECT_ACCESS_WITH_TASKS`, task columns from 3) then skips the by-name column lookup that the derived
    /// `FromRow` does for each of 15 columns of each of the project's tasks. The statement is ours and its column
    /// types fixed, so the per-value type check (a `PgTypeInfo` clone and comparison each) is skipped as well;
    /// every decoder still checks the value's length and nullness.
    pub fn from_row_at(r: &sqlx::postgres::PgRow, at: usize) -> Result<TaskRow, sqlx::Error> {
        use sqlx::Row;
        Ok(TaskRow {
            id: r.try_get_unchecked(at)?,
            position: r.try_get_unchecked(at + 1)?,
            title: r.try_get_unchecked(at + 2)?,
            description: r.try_get_unchecked(at + 3)?,
            status: r.try_get_unchecked(at + 4)?,
            priority: r.try_get_unchecked(at + 5)?,
            assigned_to: r.try_get_unchecked(at + 6)?,
            due_date: r.try_get_unchecked::<Option<FastTs>, _>(at + 7)?.map(|t| t.0),
            created_by: r.try_get_unchecked(at + 8)?,
            created_at: r.try_get_unchecked::<FastTs, _>(at + 9)?.0,
            updated_at: r.try_get_unchecked::<FastTs, _>(at + 10)?.0,
            completed_at: r.try_get_unchecked::<Option<FastTs>, _>(at + 11)?.map(|t| t.0),
            tags: r.try_get_unchecked(at + 12)?,
            attachments: r.try_get_unchecked(at + 13)?,
            extra: r.try_get_unchecked::<FastExtra, _>(at + 14)?.0,
        })
    }
}

/// A `timestamptz` decoded from its binary form straight to a `DateTime<Utc>`: sqlx goes through a `NaiveDateTime`
/// sum and a `FixedOffset` conversion (~300 instructions under callgrind; a task list decodes ~100 timestamps), and
/// its sum panics on PostgreSQL's `infinity`, which here is a decode error. The text form (never sent for our
/// prepared statements) goes to sqlx's decoder.
struct FastTs(DateTime<Utc>);

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01T00:00:00Z).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

impl sqlx::Type<sqlx::Postgres> for FastTs {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <DateTime<Utc> as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for FastTs {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        if value.format() != sqlx::postgres::PgValueFormat::Binary {
            return <DateTime<Utc> as sqlx::Decode<sqlx::Postgres>>::decode(value).map(FastTs);
        }
        let bytes: [u8; 8] = value.as_bytes()?.try_into().map_err(|_| "timestamptz: not 8 bytes")?;
        i64::from_be_bytes(bytes)
            .checked_add(PG_EPOCH_UNIX_MICROS)
            .and_then(DateTime::from_timestamp_micros)
            .map(FastTs)
            .ok_or_else(|| "timestamptz out of range".into())
    }
}

/// A row's `extra` (`jsonb`): nearly always `{}`, which is taken as is rather than through serde_json (~300
/// instructions a row). Anything else is sqlx's `Json` decode.
struct FastExtra(Extra);

impl sqlx::Type<sqlx::Postgres> for FastExtra {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <Json<Extra> as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for FastExtra {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        // Binary `jsonb` is a version byte (1) and the text.
        if value.format() == sqlx::postgres::PgValueFormat::Binary && value.as_bytes()? == b"\x01{}" {
            return Ok(FastExtra(Extra::new()));
        }
        <Json<Extra> as sqlx::Decode<sqlx::Postgres>>::decode(value).map(|j| FastExtra(j.0))
    }
}

pub fn task_to_row(t: &Task, position: i32) -> Result<TaskRow, MapError> {
    let cx = Ctx { entity: "task", id: &t.id };
    Ok(TaskRow {
        id: storage_id(Entity::Task, &t.id),
        position,
        title: t.title.clone(),
        description: t.description.clone(),
        status: t.status.clone(),
        priority: t.priority.clone(),
        assigned_to: t.assigned_to.as_deref().map(|a| storage_id(Entity::User, a)),
        due_date: cx.ts_opt("dueDate", &t.due_date)?,
        created_by: storage_id(Entity::User, &t.created_by),
        created_at: cx.ts("createdAt", &t.created_at)?,
        updated_at: cx.ts("updatedAt", &t.updated_at)?,
        completed_at: cx.ts_opt("completedAt", &t.completed_at)?,
        tags: t.tags.clone(),
        attachments: t.attachments.clone(),
        extra: t.extra.clone(),
    })
}

pub fn task_from_row(r: &TaskRow, ids: &Ids) -> Task {
    Task {
        id: ids.public(r.id),
        title: r.title.clone(),
        description: r.description.clone(),
        status: r.status.clone(),
        priority: r.priority.clone(),
        assigned_to: ids.public_opt(r.assigned_to),
        due_date: format_ts_opt(r.due_date),
        created_by: ids.public(r.created_by),
        created_at: format_ts(r.created_at),
        updated_at: format_ts(r.updated_at),
        completed_at: format_ts_opt(r.completed_at),
        tags: r.tags.clone(),
        attachments: r.attachments.clone(),
        extra: r.extra.clone(),
    }
}

/// [`task_from_row`] for a row that is not needed afterwards, with its ids already translated: its strings, tags and
/// JSON move into the task instead of being copied (the GET tasks path; see `get_project_access`).
pub fn task_from_owned_row(r: TaskRow, id: String, assigned_to: Option<String>, created_by: String) -> Task {
    Task {
        id,
        title: r.title,
        description: r.description,
        status: r.status,
        priority: r.priority,
        assigned_to,
        due_date: format_ts_opt(r.due_date),
        created_by,
        created_at: format_ts(r.created_at),
        updated_at: format_ts(r.updated_at),
        completed_at: format_ts_opt(r.completed_at),
        tags: r.tags,
        attachments: r.attachments,
        extra: r.extra,
    }
}

// ----------------------------------------------------------------------------------------------------- milestones

#[derive(Debug, Clone, Deserialize)]
pub struct MilestoneRow {
    pub id: Uuid,
    pub order_index: i32,
    #[serde(default)]
    pub order_index_set: bool,
    pub title: String,
    pub description: Option<String>,
    pub due_date: Option<DateTime<Utc>>,
    pub status: String,
    pub progress: Option<i16>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub extra: Extra,
}

/// `position` is the array index; an explicit legacy `orderIndex` wins over it (data-model.md §10).
pub fn milestone_to_row(m: &Milestone, position: i32) -> Result<MilestoneRow, MapError> {
    let cx = Ctx { entity: "milestone", id: &m.id };
    let order_index = match m.order_index {
        Some(i) => i32::try_from(i).map_err(|_| cx.err("orderIndex", format!("out of range: {i}")))?,
        None => position,
    };
    let progress = m
        .progress
        .map(|p| {
            i16::try_from(p).ok().filter(|p| (0..=100).contains(p)).ok_or_else(|| cx.err("progress", p.to_string()))
        })
        .transpose()?;
    // `legacy_name` is folded into `title` by normalize(); a record that skipped it still must not lose its name.
    let title = match (&m.legacy_name, m.title.is_empty()) {
        (Some(name), true) => name.clone(),
        _ => m.title.clone(),
    };
    Ok(MilestoneRow {
        id: storage_id(Entity::Milestone, &m.id),
        order_index,
        order_index_set: m.order_index.is_some(),
        title,
        description: m.description.clone(),
        due_date: cx.ts_opt("dueDate", &m.due_date)?,
        status: m.status.clone(),
        progress,
        created_by: m.created_by.as_deref().map(|c| storage_id(Entity::User, c)),
        created_at: cx.ts("createdAt", &m.created_at)?,
        updated_at: cx.ts("updatedAt", &m.updated_at)?,
        completed_at: cx.ts_opt("completedAt", &m.completed_at)?,
        extra: m.extra.clone(),
    })
}

pub fn milestone_from_row(r: &MilestoneRow, ids: &Ids) -> Milestone {
    Milestone {
        id: ids.public(r.id),
        title: r.title.clone(),
        legacy_name: None,
        description: r.description.clone(),
        due_date: format_ts_opt(r.due_date),
        status: r.status.clone(),
        created_by: ids.public_opt(r.created_by),
        created_at: format_ts(r.created_at),
        updated_at: format_ts(r.updated_at),
        completed_at: format_ts_opt(r.completed_at),
        progress: r.progress.map(i64::from),
        order_index: r.order_index_set.then_some(i64::from(r.order_index)),
        extra: r.extra.clone(),
    }
}

// ------------------------------------------------------------------------------------------------------- projects

/// The `projects` columns.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProjectHeader {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub team_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
    pub manager_id: Uuid,
    pub status: String,
    pub priority: String,
    pub start_date: Option<DateTime<Utc>>,
    pub due_date: Option<DateTime<Utc>>,
    pub progress: i16,
    pub channel_metadata: Option<Value>,
    pub files: Json<Vec<Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub extra: Json<Extra>,
}

/// A project with everything it embeds, as one `select` returns it (children in position order).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProjectRow {
    #[sqlx(flatten)]
    pub header: ProjectHeader,
    /// The stored progress is the tasks' (migration 0005), not the `progress` column.
    pub progress_derived: bool,
    pub members: Json<Vec<MemberRow>>,
    pub tasks: Json<Vec<TaskRow>>,
    pub milestones: Json<Vec<MilestoneRow>>,
}

/// The header columns only; members, tasks and milestones are rows of their own.
pub fn project_to_header(p: &Project) -> Result<ProjectHeader, MapError> {
    let cx = Ctx { entity: "project", id: &p.id };
    let created_at = cx.ts("createdAt", &p.created_at)?;
    let progress = i16::try_from(p.progress)
        .ok()
        .filter(|v| (0..=100).contains(v))
        .ok_or_else(|| cx.err("progress", p.progress.to_string()))?;
    Ok(ProjectHeader {
        id: storage_id(Entity::Project, &p.id),
        name: p.name.clone(),
        description: p.description.clone(),
        team_id: p.team_id.as_deref().map(|t| storage_id(Entity::Team, t)),
        organization_id: p.organization_id.as_deref().map(|t| storage_id(Entity::Team, t)),
        manager_id: storage_id(Entity::User, &p.created_by),
        status: p.status.clone(),
        priority: p.priority.clone(),
        start_date: cx.ts_opt("startDate", &p.start_date)?,
        due_date: cx.ts_opt("dueDate", &p.due_date)?,
        progress,
        channel_metadata: p.channel_metadata.clone(),
        files: Json(p.files.clone()),
        created_at,
        // `updated_at` is NOT NULL in the schema; a legacy record without `updatedAt` is stamped with its creation.
        updated_at: cx.ts_opt("updatedAt", &p.updated_at)?.unwrap_or(created_at),
        extra: Json(p.extra.clone()),
    })
}

pub fn project_from_row(r: &ProjectRow, ids: &Ids) -> Project {
    let h = &r.header;
    let tasks: Vec<_> = r.tasks.0.iter().map(|t| std::sync::Arc::new(task_from_row(t, ids))).collect();
    let progress = if r.progress_derived { progress_of(&tasks) } else { i64::from(h.progress) };
    Project {
        id: ids.public(h.id),
        name: h.name.clone(),
        description: h.description.clone(),
        team_id: ids.public_opt(h.team_id),
        organization_id: ids.public_opt(h.organization_id),
        status: h.status.clone(),
        priority: h.priority.clone(),
        start_date: format_ts_opt(h.start_date),
        due_date: format_ts_opt(h.due_date),
        progress,
        created_by: ids.public(h.manager_id),
        created_at: format_ts(h.created_at),
        updated_at: Some(format_ts(h.updated_at)),
        members: r.members.0.iter().map(|m| member_from_row(m, ids)).collect(),
        tasks,
        milestones: r.milestones.0.iter().map(|m| milestone_from_row(m, ids)).collect(),
        files: h.files.0.clone(),
        channel_metadata: h.channel_metadata.clone(),
        extra: h.extra.0.clone(),
    }
}

// ---------------------------------------------------------------------------------------------------------- teams

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TeamHeader {
    pub id: Uuid,
    pub kind: String,
    pub name: String,
    pub description: Option<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    pub invites: Json<Vec<Value>>,
    pub extra: Json<Extra>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TeamRow {
    #[sqlx(flatten)]
    pub header: TeamHeader,
    pub members: Json<Vec<MemberRow>>,
}

/// data-model.md §10: an organization is a record with `updatedAt` whose creator's role is `admin`.
pub fn team_kind(t: &Team) -> &'static str {
    let creator_is_admin = t.members.iter().any(|m| m.user_id == t.created_by && m.role == "admin");
    if t.updated_at.is_some() && creator_is_admin {
        "organization"
    } else {
        "team"
    }
}

pub fn team_to_header(t: &Team) -> Result<TeamHeader, MapError> {
    let cx = Ctx { entity: "team", id: &t.id };
    Ok(TeamHeader {
        id: storage_id(Entity::Team, &t.id),
        kind: team_kind(t).to_owned(),
        name: t.name.clone(),
        description: Some(t.description.clone()),
        created_by: storage_id(Entity::User, &t.created_by),
        created_at: cx.ts("createdAt", &t.created_at)?,
        updated_at: cx.ts_opt("updatedAt", &t.updated_at)?,
        invites: Json(t.invites.clone()),
        extra: Json(t.extra.clone()),
    })
}

pub fn team_from_row(r: &TeamRow, ids: &Ids) -> Team {
    let h = &r.header;
    Team {
        id: ids.public(h.id),
        name: h.name.clone(),
        description: h.description.clone().unwrap_or_default(),
        created_by: ids.public(h.created_by),
        created_at: format_ts(h.created_at),
        updated_at: format_ts_opt(h.updated_at),
        members: r.members.0.iter().map(|m| member_from_row(m, ids)).collect(),
        invites: h.invites.0.clone(),
        extra: h.extra.0.clone(),
    }
}

// ---------------------------------------------------------------------------------------------------------- files

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FileRow {
    pub id: Uuid,
    pub original_name: String,
    pub filename: String,
    pub storage_path: Option<String>,
    pub url: String,
    pub size: i64,
    pub mimetype: String,
    pub uploaded_by: Uuid,
    pub uploaded_at: DateTime<Utc>,
    pub tags: Vec<String>,
    pub description: String,
    pub is_public: bool,
    pub updated_at: Option<DateTime<Utc>>,
    pub project_id: Option<Uuid>,
    pub extra: Json<Extra>,
}

pub fn file_to_row(f: &FileRecord) -> Result<FileRow, MapError> {
    let cx = Ctx { entity: "file", id: &f.id };
    Ok(FileRow {
        id: storage_id(Entity::File, &f.id),
        original_name: f.original_name.clone(),
        filename: f.filename.clone(),
        storage_path: f.path.clone(),
        url: f.url.clone(),
        size: f.size,
        mimetype: f.mimetype.clone(),
        uploaded_by: storage_id(Entity::User, &f.uploaded_by),
        uploaded_at: cx.ts("uploadedAt", &f.uploaded_at)?,
        tags: f.tags.clone(),
        description: f.description.clone(),
        is_public: f.is_public,
        updated_at: cx.ts_opt("updatedAt", &f.updated_at)?,
        project_id: f.project_id.as_deref().map(|p| storage_id(Entity::Project, p)),
        extra: Json(f.extra.clone()),
    })
}

pub fn file_from_row(r: &FileRow, ids: &Ids) -> FileRecord {
    FileRecord {
        id: ids.public(r.id),
        original_name: r.original_name.clone(),
        filename: r.filename.clone(),
        path: r.storage_path.clone(),
        url: r.url.clone(),
        size: r.size,
        mimetype: r.mimetype.clone(),
        uploaded_by: ids.public(r.uploaded_by),
        uploaded_at: format_ts(r.uploaded_at),
        tags: r.tags.clone(),
        description: r.description.clone(),
        is_public: r.is_public,
        updated_at: format_ts_opt(r.updated_at),
        project_id: ids.public_opt(r.project_id),
        extra: r.extra.0.clone(),
    }
}

// ----------------------------------------------------------------------------------------------------- activities

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActivityRow {
    pub id: Uuid,
    pub project_id: Option<Uuid>,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub user_name: Option<String>,
    pub user_email: Option<String>,
    pub user_avatar: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<Uuid>,
    pub entity_ref: Option<String>,
    pub entity_title: Option<String>,
    pub action: String,
    pub metadata: Json<Value>,
    pub timestamp: DateTime<Utc>,
    pub extra: Json<Extra>,
}

/// Which id space an activity's `entityId` lives in, for the v5 mapping of a legacy id.
fn entity_of(entity_type: Option<&str>) -> Option<Entity> {
    Some(match entity_type? {
        "task" => Entity::Task,
        "milestone" => Entity::Milestone,
        "project" => Entity::Project,
        "file" => Entity::File,
        "team" => Entity::Team,
        "member" => Entity::User,
        _ => return None,
    })
}

/// `resolved_entity` is the storage id the caller already knows the entity by (a member stored by e-mail resolves
/// to a user); an `entityId` that is not a canonical UUID is also kept verbatim in `entity_ref`.
pub fn activity_to_row(a: &Activity, resolved_entity: Option<Uuid>) -> Result<ActivityRow, MapError> {
    let cx = Ctx { entity: "activity", id: &a.id };
    let (entity_id, entity_ref) = match a.entity_id.as_deref() {
        None => (None, None),
        Some(raw) => match canonical_uuid(raw) {
            Some(u) => (Some(u), None),
            None => {
                let derived = if member_is_email(raw) {
                    None
                } else {
                    entity_of(a.entity_type.as_deref()).map(|e| legacy_uuid(e, raw))
                };
                (resolved_entity.or(derived), Some(raw.to_owned()))
            }
        },
    };
    Ok(ActivityRow {
        id: storage_id(Entity::Activity, &a.id),
        project_id: Some(storage_id(Entity::Project, &a.project_id)),
        kind: a.kind.clone(),
        user_id: a.user_id.as_deref().map(|u| storage_id(Entity::User, u)),
        user_name: a.user_name.clone(),
        user_email: a.user_email.clone(),
        user_avatar: a.user_avatar.clone(),
        entity_type: a.entity_type.clone(),
        entity_id,
        entity_ref,
        entity_title: a.entity_title.clone(),
        action: a.action.clone(),
        metadata: Json(a.metadata.clone()),
        timestamp: cx.ts("timestamp", &a.timestamp)?,
        extra: Json(a.extra.clone()),
    })
}

pub fn activity_from_row(r: &ActivityRow, ids: &Ids) -> Activity {
    Activity {
        id: ids.public(r.id),
        project_id: ids.public_opt(r.project_id).unwrap_or_default(),
        kind: r.kind.clone(),
        user_id: ids.public_opt(r.user_id),
        user_name: r.user_name.clone(),
        user_email: r.user_email.clone(),
        user_avatar: r.user_avatar.clone(),
        entity_type: r.entity_type.clone(),
        entity_id: r.entity_ref.clone().or_else(|| ids.public_opt(r.entity_id)),
        entity_title: r.entity_title.clone(),
        action: r.action.clone(),
        metadata: r.metadata.0.clone(),
        timestamp: format_ts(r.timestamp),
        extra: r.extra.0.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::ids::IdMap;
    use super::*;

    #[test]
    fn timestamps_round_trip_in_canonical_form() {
        let t = parse_ts("2025-11-30").unwrap();
        assert_eq!(format_ts(t), "2025-11-30T00:00:00.000Z");
        let t = parse_ts("2025-10-30T10:00:01.2345+02:00").unwrap();
        assert_eq!(format_ts(t), "2025-10-30T08:00:01.234Z");
        assert!(parse_ts("tomorrow").is_none());
    }

    #[test]
    fn e_mail_entity_ids_are_kept_verbatim() {
        let map = IdMap::default();
        let ids = Ids::new(&map);
        let a = Activity {
            id: "aaaaaaaa-0000-4000-8000-00000000000a".into(),
            project_id: "bbbbbbbb-0000-4000-8000-000000000002".into(),
            kind: "member.removed".into(),
            user_id: Some("1756887342317".into()),
            user_name: None,
            user_email: None,
            user_avatar: None,
            entity_type: Some("member".into()),
            entity_id: Some("aoife.obrien@example.com".into()),
            entity_title: None,
            action: "removed".into(),
            metadata: serde_json::json!({}),
            timestamp: "2025-09-23T10:00:00.000Z".into(),
            extra: Extra::new(),
        };
        let row = activity_to_row(&a, None).unwrap();
        assert_eq!(row.entity_id, None);
        assert_eq!(row.entity_ref.as_deref(), Some("aoife.obrien@example.com"));
        map.insert(storage_id(Entity::User, "1756887342317"), "1756887342317".into());
        assert_eq!(activity_from_row(&row, &ids), a);
    }
}
