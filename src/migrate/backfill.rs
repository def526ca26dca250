//! `fluxstudio migrate` (cli.md §3): the JSON files into PostgreSQL, entity by entity in dependency order, rows in
//! storage-id order, in batches of one binary COPY into a staging table and one `insert … select … on conflict`
//! each (see [`copy`]), with the entity's checkpoint (`migration_runs`) updated in the same transaction, so an
//! interrupted run resumes after its last committed batch.
//!
//! Every record is checked before anything is written (vocabulary, timestamps, references, duplicate e-mails), so
//! a bad row becomes a row error and never a failed batch. A batch that PostgreSQL still refuses (a constraint this
//! check does not know) is retried one row per savepoint, which turns the offending rows into row errors too.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

use indexmap::IndexMap;
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::{db_failure, Failure, Kind};
use crate::domain::{vocab, Member, Project};
use crate::store::json::state::State;
use crate::store::postgres::bulk::{self, MemberTable, OnConflict, Written};
use crate::store::postgres::copy::{self, FkMode};
use crate::store::postgres::deferred;
use crate::store::postgres::ids::{canonical_uuid, storage_id, Entity};
use crate::store::postgres::mapping::{
    self, member_is_email, ActivityRow, FileRow, MapError, MemberRow, MilestoneRow, ProjectHeader, TaskRow, TeamHeader,
    UserRow,
};

#[derive(Clone, Debug)]
pub struct Options {
    pub dry_run: bool,
    pub batch_size: usize,
    pub only: Vec<Kind>,
    pub restart: bool,
    pub overwrite: bool,
    /// `--on-dangling null`: a nullable reference to a missing user/team/project is set to null and listed.
    pub dangling_null: bool,
    pub include_orphans: bool,
    /// Draw progress bars (stderr is a terminal, no `--json`/`--quiet`).
    pub progress: bool,
    /// Test hook: end the process abruptly after this many committed batches, as a crash would.
    pub crash_after_batches: Option<u64>,
    /// Always let PostgreSQL's foreign-key triggers check every row, even where the role could skip them after
    /// locking a batch's parents (`FLUX_TEST_MIGRATE_FK_TRIGGERS=1`; for comparisons and tests of that path).
    pub fk_triggers: bool,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub read: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub errors: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RowError {
    pub entity: String,
    pub id: String,
    pub field: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyId {
    pub entity: String,
    pub legacy_id: String,
    pub id: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub dry_run: bool,
    pub source: String,
    pub target: String,
    pub entities: IndexMap<String, Counts>,
    pub row_errors: Vec<RowError>,
    /// `--on-dangling null`: references set to null instead of failing their row.
    pub nulled_references: Vec<RowError>,
    /// Activity files whose project exists nowhere (skipped unless `--include-orphans`).
    pub orphan_activity_files: Vec<String>,
    pub legacy_ids: Vec<LegacyId>,
    /// The interrupted run this one continued, if any.
    pub resumed_run: Option<String>,
    pub duration_seconds: f64,
}

impl Report {
    pub fn exit_code(&self) -> i32 {
        if self.row_errors.is_empty() {
            0
        } else {
            1
        }
    }

    /// The summary table of cli.md §3.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let head = if self.dry_run { "would insert" } else { "inserted" };
        let _ = writeln!(
            s,
            "{:<16}{:>6}{:>w$}{:>9}{:>11}{:>8}",
            "entity",
            "read",
            head,
            "updated",
            "unchanged",
            "errors",
            w = head.len() + 2
        );
        for (name, c) in &self.entities {
            let _ = writeln!(
                s,
                "{:<16}{:>6}{:>w$}{:>9}{:>11}{:>8}",
                name,
                c.read,
                c.inserted,
                c.updated,
                c.unchanged,
                c.errors,
                w = head.len() + 2
            );
        }
        match self.legacy_ids.len() {
            0 => {}
            n => {
                let shown: Vec<String> = self
                    .legacy_ids
                    .iter()
                    .take(5)
                    .map(|l| format!("{} {} -> {}", l.entity, l.legacy_id, l.id))
                    .collect();
                let more = if n > 5 { format!(", … and {} more", n - 5) } else { String::new() };
                let _ = writeln!(s, "legacy ids mapped: {n} ({}{more})", shown.join(", "));
            }
        }
        if !self.orphan_activity_files.is_empty() {
            let _ = writeln!(
                s,
                "orphaned activity files {} (their project exists nowhere): {}",
                if self.dry_run { "would be skipped" } else { "skipped" },
                self.orphan_activity_files.join(", ")
            );
        }
        if !self.nulled_references.is_empty() {
            let _ = writeln!(s, "dangling references set to null ({}):", self.nulled_references.len());
            for e in &self.nulled_references {
                let _ = writeln!(s, "  {} {} {}: {}", e.entity, e.id, e.field, e.reason);
            }
        }
        if let Some(run) = &self.resumed_run {
            let _ = writeln!(s, "resumed interrupted run {run}");
        }
        let _ = writeln!(
            s,
            "{} in {:.2} s, {} row errors",
            if self.dry_run { "dry run done (nothing written)" } else { "done" },
            self.duration_seconds,
            self.row_errors.len()
        );
        if !self.row_errors.is_empty() {
            let _ = writeln!(s, "row errors ({}):", self.row_errors.len());
            for e in &self.row_errors {
                let _ = writeln!(s, "  {} {} {}: {}", e.entity, e.id, e.field, e.reason);
            }
        }
        s
    }
}

/// `(record, 0)` for records, `(parent, user)` for members: the order rows are written and checkpointed in.
type Key = (Uuid, Uuid);

fn key_text(kind: Kind, k: Key) -> String {
    match kind {
        Kind::TeamMembers | Kind::ProjectMembers => format!("{},{}", k.0, k.1),
        _ => k.0.to_string(),
    }
}

fn parse_key(s: &str) -> Option<Key> {
    match s.split_once(',') {
        Some((a, b)) => Some((Uuid::parse_str(a).ok()?, Uuid::parse_str(b).ok()?)),
        None => Some((Uuid::parse_str(s).ok()?, Uuid::nil())),
    }
}

type LegacyPairs = Vec<(&'static str, String, Uuid)>;

/// One entity's rows, sorted by key, as parallel lists so that a batch is a plain slice of rows.
struct Prepared<T> {
    keys: Vec<Key>,
    ids: Vec<String>,
    legacy: Vec<LegacyPairs>,
    rows: Vec<T>,
}

impl<T> Prepared<T> {
    fn from_items(items: Vec<(Key, String, LegacyPairs, T)>) -> Prepared<T> {
        // Sorting the items themselves moved every (large) row about log n times, seconds for a million tasks;
        // sorting (key, position) pairs and then moving each row once does not. The position breaks ties, so
        // equal keys keep their input order as with the stable sort.
        let mut order: Vec<(Key, usize)> = items.iter().enumerate().map(|(i, item)| (item.0, i)).collect();
        order.sort_unstable();
        let n = items.len();
        let mut slots: Vec<Option<(Key, String, LegacyPairs, T)>> = items.into_iter().map(Some).collect();
        let mut p = Prepared {
            keys: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            legacy: Vec::with_capacity(n),
            rows: Vec::with_capacity(n),
        };
        for (_, i) in order {
            if let Some((k, id, l, r)) = slots[i].take() {
                p.keys.push(k);
                p.ids.push(id);
                p.legacy.push(l);
                p.rows.push(r);
            }
        }
        p
    }
}

/// How one entity's rows are written: `copy`, a whole batch through a staging table (the fast path), and
/// `insert`, the `unnest` statement that the row-by-row fallback uses to pin a refused batch on its rows.
trait Bulk: Sized {
    async fn insert(
        conn: &mut PgConnection,
        items: &[Self],
        oc: OnConflict,
        kind: Kind,
    ) -> Result<Written, sqlx::Error>;

    async fn copy(
        conn: &mut PgConnection,
        items: &[Self],
        oc: OnConflict,
        kind: Kind,
        fk: FkMode,
    ) -> Result<Written, sqlx::Error>;
}

impl Bulk for (String, UserRow) {
    async fn insert(conn: &mut PgConnection, items: &[Self], oc: OnConflict, _: Kind) -> Result<Written, sqlx::Error> {
        bulk::insert_users(conn, items, oc).await
    }
    async fn copy(
        conn: &mut PgConnection,
        items: &[Self],
        oc: OnConflict,
        _: Kind,
        fk: FkMode,
    ) -> Result<Written, sqlx::Error> {
        copy::copy_users(conn, items, oc, fk).await
    }
}
impl Bulk for (String, TeamHeader) {
    async fn insert(conn: &mut PgConnection, items: &[Self], oc: OnConflict, _: Kind) -> Result<Written, sqlx::Error> {
        bulk::insert_teams(conn, items, oc).await
    }
    async fn copy(
        conn: &mut PgConnection,
        items: &[Self],
        oc: OnConflict,
        _: Kind,
        fk: FkMode,
    ) -> Result<Written, sqlx::Error> {
        copy::copy_teams(conn, items, oc, fk).await
    }
}
impl Bulk for (Uuid, MemberRow) {
    async fn insert(conn: &mut PgConnection, items: &[Self], oc: OnConflict, k: Kind) -> Result<Written, sqlx::Error> {
        let table = if k == Kind::TeamMembers { MemberTable::Team } else { MemberTable::Project };
        bulk::insert_members(conn, table, items, oc).await
    }
    async fn copy(
        conn: &mut PgConnection,
        items: &[Self],
        oc: OnConflict,
        k: Kind,
        fk: FkMode,
    ) -> Result<Written, sqlx::Error> {
        let table = if k == Kind::TeamMembers { MemberTable::Team } else { MemberTable::Project };
        copy::copy_members(conn, table, items, oc, fk).await
    }
}
impl Bulk for (String, ProjectHeader) {
    async fn insert(conn: &mut PgConnection, items: &[Self], oc: OnConflict, _: Kind) -> Result<Written, sqlx::Error> {
        bulk::insert_projects(conn, items, oc).await
    }
    async fn copy(
        conn: &mut PgConnection,
        items: &[Self],
        oc: OnConflict,
        _: Kind,
        fk: FkMode,
    ) -> Result<Written, sqlx::Error> {
        copy::copy_projects(conn, items, oc, fk).await
    }
}
impl Bulk for (String, Uuid, TaskRow) {
    async fn insert(conn: &mut PgConnection, items: &[Self], oc: OnConflict, _: Kind) -> Result<Written, sqlx::Error> {
        bulk::insert_tasks(conn, items, oc).await
    }
    async fn copy(
        conn: &mut PgConnection,
        items: &[Self],
        oc: OnConflict,
        _: Kind,
        fk: FkMode,
    ) -> Result<Written, sqlx::Error> {
        copy::copy_tasks(conn, items, oc, fk).await
    }
}
impl Bulk for (String, Uuid, MilestoneRow) {
    async fn insert(conn: &mut PgConnection, items: &[Self], oc: OnConflict, _: Kind) -> Result<Written, sqlx::Error> {
        bulk::insert_milestones(conn, items, oc).await
    }
    async fn copy(
        conn: &mut PgConnection,
        items: &[Self],
        oc: OnConflict,
        _: Kind,
        fk: FkMode,
    ) -> Result<Written, sqlx::Error> {
        copy::copy_milestones(conn, items, oc, fk).await
    }
}
impl Bulk for (String, FileRow) {
    async fn insert(conn: &mut PgConnection, items: &[Self], oc: OnConflict, _: Kind) -> Result<Written, sqlx::Error> {
        bulk::insert_files(conn, items, oc).await
    }
    async fn copy(
        conn: &mut PgConnection,
        items: &[Self],
        oc: OnConflict,
        _: Kind,
        fk: FkMode,
    ) -> Result<Written, sqlx::Error> {
        copy::copy_files(conn, items, oc, fk).await
    }
}
impl Bulk for (String, ActivityRow) {
    async fn insert(conn: &mut PgConnection, items: &[Self], _: OnConflict, _: Kind) -> Result<Written, sqlx::Error> {
        bulk::insert_activities(conn, items).await
    }
    async fn copy(
        conn: &mut PgConnection,
        items: &[Self],
        _: OnConflict,
        _: Kind,
        fk: FkMode,
    ) -> Result<Written, sqlx::Error> {
        copy::copy_activities(conn, items, fk).await
    }
}

fn legacy_of(entity: Entity, public: &str) -> LegacyPairs {
    match canonical_uuid(public) {
        Some(_) => Vec::new(),
        None => vec![(entity.as_str(), public.to_owned(), storage_id(entity, public))],
    }
}

/// Who a user reference names: the users being migrated plus those PostgreSQL already has. An e-mail resolves
/// like a login (the exact address, else a unique case-insensitive match; data-model.md §7).
#[derive(Default)]
struct Users {
    known: HashSet<Uuid>,
    exact: HashMap<String, Uuid>,
    lower: HashMap<String, Vec<Uuid>>,
}

impl Users {
    fn add(&mut self, id: Uuid, email: &str) {
        if self.known.insert(id) {
            self.exact.entry(email.to_owned()).or_insert(id);
            self.lower.entry(email.to_lowercase()).or_default().push(id);
        }
    }

    fn resolve(&self, user_ref: &str) -> Option<Uuid> {
        if member_is_email(user_ref) {
            if let Some(id) = self.exact.get(user_ref) {
                return Some(*id);
            }
            return match self.lower.get(&user_ref.to_lowercase()).map(Vec::as_slice) {
                Some([one]) => Some(*one),
                _ => None,
            };
        }
        let id = storage_id(Entity::User, user_ref);
        self.known.contains(&id).then_some(id)
    }
}

/// Row checks and their outcome; shared by every entity's preparation.
struct Checks {
    null_dangling: bool,
    errors: Vec<RowError>,
    nulled: Vec<RowError>,
    error_counts: HashMap<Kind, u64>,
}

impl Checks {
    fn error(&mut self, kind: Kind, id: &str, field: &str, reason: String) {
        self.errors.push(RowError { entity: kind.name().into(), id: id.into(), field: field.into(), reason });
        *self.error_counts.entry(kind).or_default() += 1;
    }

    fn map_error(&mut self, kind: Kind, id: &str, e: MapError) {
        self.error(kind, id, e.field, e.message)
    }

    fn vocab(&mut self, kind: Kind, id: &str, field: &str, value: &str, v: &vocab::Vocab) -> bool {
        if v.values.contains(&value) {
            return true;
        }
        self.error(kind, id, field, format!("invalid value {value:?}; expected one of {}", v.list()));
        false
    }

    /// A reference that resolves to nothing: with `--on-dangling null` a nullable one is cleared and listed
    /// (returns true: "set it to null"); otherwise it is a row error (returns false).
    fn dangling(&mut self, kind: Kind, id: &str, field: &str, reason: String, nullable: bool) -> bool {
        if nullable && self.null_dangling {
            self.nulled.push(RowError { entity: kind.name().into(), id: id.into(), field: field.into(), reason });
            true
        } else {
            self.error(kind, id, field, reason);
            false
        }
    }
}

/// Every entity's rows, ready to write.
struct Plan {
    users: Prepared<(String, UserRow)>,
    teams: Prepared<(String, TeamHeader)>,
    team_members: Prepared<(Uuid, MemberRow)>,
    projects: Prepared<(String, ProjectHeader)>,
    project_members: Prepared<(Uuid, MemberRow)>,
    tasks: Prepared<(String, Uuid, TaskRow)>,
    milestones: Prepared<(String, Uuid, MilestoneRow)>,
    files: Prepared<(String, FileRow)>,
    activities: Prepared<(String, ActivityRow)>,
    read: HashMap<Kind, u64>,
    /// Rows not written because their record (or their project) has a tombstone.
    tombstoned: HashMap<Kind, u64>,
    orphans: Vec<String>,
}

/// What PostgreSQL already holds that references may point to.
struct Existing {
    users: Vec<(Uuid, String)>,
    teams: HashSet<Uuid>,
    projects: HashSet<Uuid>,
    tombstoned_projects: HashSet<String>,
}

async fn existing(conn: &mut PgConnection) -> Result<Existing, sqlx::Error> {
    let users: Vec<(Uuid, String)> = sqlx::query_as("select id, email from users").fetch_all(&mut *conn).await?;
    let teams: Vec<Uuid> = sqlx::query_scalar("select id from teams").fetch_all(&mut *conn).await?;
    let projects: Vec<Uuid> = sqlx::query_scalar("select id from projects").fetch_all(&mut *conn).await?;
    let tomb: Vec<String> = sqlx::query_scalar("select entity_id from store_tombstones where entity = 'project'")
        .fetch_all(&mut *conn)
        .await?;
    Ok(Existing {
        users,
        teams: teams.into_iter().collect(),
        projects: projects.into_iter().collect(),
        tombstoned_projects: tomb.into_iter().collect(),
    })
}

/// Whose members: the report's entity, the mapping's parent kind, the parent's public and storage id, and the
/// roles a stored member may have.
struct Parent<'a> {
    kind: Kind,
    parent_kind: &'static str,
    public: &'a str,
    id: Uuid,
    roles: &'a [&'a str],
}

fn members_of(
    parent: Parent<'_>,
    members: &[Member],
    users: &Users,
    checks: &mut Checks,
    out: &mut Vec<(Key, String, LegacyPairs, (Uuid, MemberRow))>,
) {
    let Parent { kind, parent_kind, public: parent_public, id: parent, roles } = parent;
    let mut seen = HashSet::new();
    for (i, m) in members.iter().enumerate() {
        let id = format!("{parent_public}/{}", m.user_id);
        if !roles.contains(&m.role.as_str()) {
            checks.error(
                kind,
                &id,
                "role",
                format!("invalid value {:?}; expected one of {}", m.role, roles.join(", ")),
            );
            continue;
        }
        let Some(user) = users.resolve(&m.user_id) else {
            // A member is a key, not a nullable column: "null" drops the membership (and lists it).
            checks.dangling(kind, &id, "userId", format!("references unknown user {}", m.user_id), true);
            continue;
        };
        if !seen.insert(user) {
            // Two entries for one account (an id and a legacy e-mail): the first one's role and position stand,
            // as in the PostgreSQL store's import.
            continue;
        }
        match mapping::member_to_row(parent_kind, parent_public, m, i as i32, user) {
            Ok(row) => out.push(((parent, user), id, Vec::new(), (parent, row))),
            Err(e) => checks.map_error(kind, &id, e),
        }
    }
}

type Items<T> = Vec<(Key, String, LegacyPairs, T)>;

/// One share of the projects, planned ([`plan_projects`]).
struct ProjectsPlan {
    read: HashMap<Kind, u64>,
    tombstoned: HashMap<Kind, u64>,
    checks: Checks,
    known: Vec<Uuid>,
    projects: Items<(String, ProjectHeader)>,
    members: Items<(Uuid, MemberRow)>,
    tasks: Items<(String, Uuid, TaskRow)>,
    milestones: Items<(String, Uuid, MilestoneRow)>,
}

/// Checks and maps `projects` with their members, tasks and milestones.
fn plan_projects(
    projects: &[&Project],
    pg: &Existing,
    users: &Users,
    known_teams: &HashSet<Uuid>,
    null_dangling: bool,
) -> ProjectsPlan {
    let mut read: HashMap<Kind, u64> = HashMap::new();
    let mut tombstoned: HashMap<Kind, u64> = HashMap::new();
    let mut own_checks = Checks { null_dangling, errors: Vec::new(), nulled: Vec::new(), error_counts: HashMap::new() };
    let checks = &mut own_checks;
    let mut known = Vec::new();
    let mut project_items = Vec::new();
    let mut project_member_items = Vec::new();
    let mut task_items = Vec::new();
    let mut milestone_items = Vec::new();
    for p in projects {
        *read.entry(Kind::Projects).or_default() += 1;
        *read.entry(Kind::ProjectMembers).or_default() += p.members.len() as u64;
        *read.entry(Kind::Tasks).or_default() += p.tasks.len() as u64;
        *read.entry(Kind::Milestones).or_default() += p.milestones.len() as u64;
        let children_failed = |checks: &mut Checks, why: &str| {
            for m in &p.members {
                checks.error(Kind::ProjectMembers, &format!("{}/{}", p.id, m.user_id), "projectId", why.into());
            }
            for t in &p.tasks {
                checks.error(Kind::Tasks, &t.id, "projectId", why.into());
            }
            for m in &p.milestones {
                checks.error(Kind::Milestones, &m.id, "projectId", why.into());
            }
        };
        let pid = storage_id(Entity::Project, &p.id);
        if pg.tombstoned_projects.contains(&p.id) || pg.tombstoned_projects.contains(&pid.to_string()) {
            // Deleted during a dual mode: neither the project nor anything it embeds comes back.
            *tombstoned.entry(Kind::Projects).or_default() += 1;
            *tombstoned.entry(Kind::ProjectMembers).or_default() += p.members.len() as u64;
            *tombstoned.entry(Kind::Tasks).or_default() += p.tasks.len() as u64;
            *tombstoned.entry(Kind::Milestones).or_default() += p.milestones.len() as u64;
            continue;
        }
        let ok_status = checks.vocab(Kind::Projects, &p.id, "status", &p.status, &vocab::PROJECT_STATUS);
        let ok_priority =
            ok_status && checks.vocab(Kind::Projects, &p.id, "priority", &p.priority, &vocab::PROJECT_PRIORITY);
        if !ok_priority {
            children_failed(checks, "its project was not migrated");
            continue;
        }
        let mut header = match mapping::project_to_header(p) {
            Ok(h) => h,
            Err(e) => {
                checks.map_error(Kind::Projects, &p.id, e);
                children_failed(checks, "its project was not migrated");
                continue;
            }
        };
        if !users.known.contains(&header.manager_id) {
            checks.error(Kind::Projects, &p.id, "createdBy", format!("references unknown user {}", p.created_by));
            children_failed(checks, "its project was not migrated");
            continue;
        }
        let mut refused = false;
        for (field, value) in [("teamId", &p.team_id), ("organizationId", &p.organization_id)] {
            let Some(team) = value else { continue };
            if known_teams.contains(&storage_id(Entity::Team, team)) {
                continue;
            }
            if checks.dangling(Kind::Projects, &p.id, field, format!("references unknown team {team}"), true) {
                match field {
                    "teamId" => header.team_id = None,
                    _ => header.organization_id = None,
                }
            } else {
                refused = true;
            }
        }
        if refused {
            children_failed(checks, "its project was not migrated");
            continue;
        }
        known.push(pid);
        members_of(
            Parent {
                kind: Kind::ProjectMembers,
                parent_kind: "project",
                public: &p.id,
                id: pid,
                roles: vocab::PROJECT_MEMBER_ROLE_VALUES,
            },
            &p.members,
            users,
            checks,
            &mut project_member_items,
        );
        for (i, t) in p.tasks.iter().enumerate() {
            if !checks.vocab(Kind::Tasks, &t.id, "status", &t.status, &vocab::TASK_STATUS)
                || !checks.vocab(Kind::Tasks, &t.id, "priority", &t.priority, &vocab::TASK_PRIORITY)
            {
                continue;
            }
            let mut row = match mapping::task_to_row(t, i as i32) {
                Ok(r) => r,
                Err(e) => {
                    checks.map_error(Kind::Tasks, &t.id, e);
                    continue;
                }
            };
            if !users.known.contains(&row.created_by) {
                checks.error(Kind::Tasks, &t.id, "createdBy", format!("references unknown user {}", t.created_by));
                continue;
            }
            if let (Some(a), Some(raw)) = (row.assigned_to, &t.assigned_to) {
                if !users.known.contains(&a) {
                    if !checks.dangling(
                        Kind::Tasks,
                        &t.id,
                        "assignedTo",
                        format!("references unknown user {raw}"),
                        true,
                    ) {
                        continue;
                    }
                    row.assigned_to = None;
                }
            }
            task_items.push((
                (row.id, Uuid::nil()),
                t.id.clone(),
                legacy_of(Entity::Task, &t.id),
                (t.id.clone(), pid, row),
            ));
        }
        for (i, m) in p.milestones.iter().enumerate() {
            if !checks.vocab(Kind::Milestones, &m.id, "status", &m.status, &vocab::MILESTONE_STATUS) {
                continue;
            }
            let mut row = match mapping::milestone_to_row(m, i as i32) {
                Ok(r) => r,
                Err(e) => {
                    checks.map_error(Kind::Milestones, &m.id, e);
                    continue;
                }
            };
            if let (Some(c), Some(raw)) = (row.created_by, &m.created_by) {
                if !users.known.contains(&c) {
                    if !checks.dangling(
                        Kind::Milestones,
                        &m.id,
                        "createdBy",
                        format!("references unknown user {raw}"),
                        true,
                    ) {
                        continue;
                    }
                    row.created_by = None;
                }
            }
            milestone_items.push((
                (row.id, Uuid::nil()),
                m.id.clone(),
                legacy_of(Entity::Milestone, &m.id),
                (m.id.clone(), pid, row),
            ));
        }
        project_items.push((
            (pid, Uuid::nil()),
            p.id.clone(),
            legacy_of(Entity::Project, &p.id),
            (p.id.clone(), header),
        ));
    }
    ProjectsPlan {
        read,
        tombstoned,
        checks: own_checks,
        known,
        projects: project_items,
        members: project_member_items,
        tasks: task_items,
        milestones: milestone_items,
    }
}

fn plan(state: &State, pg: &Existing, opts: &Options, checks: &mut Checks) -> Plan {
    let mut read: HashMap<Kind, u64> = HashMap::new();
    let mut tombstoned: HashMap<Kind, u64> = HashMap::new();

    // Users first: every other entity's references are checked against the valid ones.
    let mut users = Users::default();
    let mut user_items = Vec::new();
    let mut seen_email: HashMap<&str, &str> = HashMap::new();
    let pg_email: HashMap<&str, Uuid> = pg.users.iter().map(|(id, e)| (e.as_str(), *id)).collect();
    for u in state.users.values() {
        *read.entry(Kind::Users).or_default() += 1;
        if !checks.vocab(Kind::Users, &u.id, "userType", &u.user_type, &vocab::USER_TYPE) {
            continue;
        }
        let row = match mapping::user_to_row(u) {
            Ok(r) => r,
            Err(e) => {
                checks.map_error(Kind::Users, &u.id, e);
                continue;
            }
        };
        if let Some(other) = seen_email.get(u.email.as_str()) {
            checks.error(Kind::Users, &u.id, "email", format!("duplicate email (also user {other})"));
            continue;
        }
        if let Some(other) = pg_email.get(u.email.as_str()).filter(|o| **o != row.id) {
            checks.error(Kind::Users, &u.id, "email", format!("duplicate email: PostgreSQL has user {other}"));
            continue;
        }
        seen_email.insert(&u.email, &u.id);
        users.add(row.id, &u.email);
        user_items.push(((row.id, Uuid::nil()), u.id.clone(), legacy_of(Entity::User, &u.id), (u.id.clone(), row)));
    }
    for (id, email) in &pg.users {
        users.add(*id, email);
    }

    // Teams and their members.
    let mut known_teams: HashSet<Uuid> = pg.teams.clone();
    let mut team_items = Vec::new();
    let mut team_member_items = Vec::new();
    for t in state.teams.values() {
        *read.entry(Kind::Teams).or_default() += 1;
        *read.entry(Kind::TeamMembers).or_default() += t.members.len() as u64;
        let header = match mapping::team_to_header(t) {
            Ok(h) => h,
            Err(e) => {
                checks.map_error(Kind::Teams, &t.id, e);
                continue;
            }
        };
        if !users.known.contains(&header.created_by) {
            checks.error(Kind::Teams, &t.id, "createdBy", format!("references unknown user {}", t.created_by));
            for m in &t.members {
                let id = format!("{}/{}", t.id, m.user_id);
                checks.error(Kind::TeamMembers, &id, "teamId", "its team was not migrated".into());
            }
            continue;
        }
        known_teams.insert(header.id);
        members_of(
            Parent {
                kind: Kind::TeamMembers,
                parent_kind: "team",
                public: &t.id,
                id: header.id,
                roles: vocab::TEAM_ROLE_VALUES,
            },
            &t.members,
            &users,
            checks,
            &mut team_member_items,
        );
        team_items.push((
            (header.id, Uuid::nil()),
            t.id.clone(),
            legacy_of(Entity::Team, &t.id),
            (t.id.clone(), header),
        ));
    }

    // Projects with their members, tasks and milestones: most of the rows, mapped on every core (the database
    // waits meanwhile). Each thread takes a contiguous share and the shares are joined in order, so rows, row
    // errors and counts come out exactly as from one pass.
    let all: Vec<&Project> = state.projects.values().map(|p| &**p).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let share = all.len().div_ceil(threads).max(1000);
    let null_dangling = checks.null_dangling;
    let parts: Vec<ProjectsPlan> = std::thread::scope(|scope| {
        let running: Vec<_> = all
            .chunks(share)
            .map(|chunk| {
                let (users, known_teams) = (&users, &known_teams);
                scope.spawn(move || plan_projects(chunk, pg, users, known_teams, null_dangling))
            })
            .collect();
        running.into_iter().map(|t| t.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let mut known_projects: HashSet<Uuid> = pg.projects.clone();
    let mut project_items = Vec::new();
    let mut project_member_items = Vec::new();
    let mut task_items = Vec::new();
    let mut milestone_items = Vec::new();
    for part in parts {
        for (kind, n) in part.read {
            *read.entry(kind).or_default() += n;
        }
        for (kind, n) in part.tombstoned {
            *tombstoned.entry(kind).or_default() += n;
        }
        checks.errors.extend(part.checks.errors);
        checks.nulled.extend(part.checks.nulled);
        for (kind, n) in part.checks.error_counts {
            *checks.error_counts.entry(kind).or_default() += n;
        }
        known_projects.extend(part.known);
        project_items.extend(part.projects);
        project_member_items.extend(part.members);
        task_items.extend(part.tasks);
        milestone_items.extend(part.milestones);
    }

    // Files.
    let mut file_items = Vec::new();
    for f in state.files.values() {
        *read.entry(Kind::Files).or_default() += 1;
        let mut row = match mapping::file_to_row(f) {
            Ok(r) => r,
            Err(e) => {
                checks.map_error(Kind::Files, &f.id, e);
                continue;
            }
        };
        if !users.known.contains(&row.uploaded_by) {
            checks.error(Kind::Files, &f.id, "uploadedBy", format!("references unknown user {}", f.uploaded_by));
            continue;
        }
        if let (Some(p), Some(raw)) = (row.project_id, &f.project_id) {
            if !known_projects.contains(&p) {
                if !checks.dangling(Kind::Files, &f.id, "projectId", format!("references unknown project {raw}"), true)
                {
                    continue;
                }
                row.project_id = None;
            }
        }
        file_items.push(((row.id, Uuid::nil()), f.id.clone(), legacy_of(Entity::File, &f.id), (f.id.clone(), row)));
    }

    // Activities, per project file.
    let mut orphans = Vec::new();
    let mut activity_items = Vec::new();
    let mut files: Vec<_> = state.activities.iter().collect();
    files.sort_by(|a, b| a.0.cmp(b.0));
    for (pid, log) in files {
        let project = storage_id(Entity::Project, pid);
        let orphan = !known_projects.contains(&project);
        if pg.tombstoned_projects.contains(pid) || pg.tombstoned_projects.contains(&project.to_string()) {
            *read.entry(Kind::Activities).or_default() += log.len() as u64;
            *tombstoned.entry(Kind::Activities).or_default() += log.len() as u64;
            continue;
        }
        if orphan && !opts.include_orphans {
            orphans.push(pid.clone());
            continue;
        }
        for a in log.oldest_first() {
            *read.entry(Kind::Activities).or_default() += 1;
            let resolved = a.entity_id.as_deref().filter(|e| member_is_email(e)).and_then(|e| users.resolve(e));
            let mut row = match mapping::activity_to_row(a, resolved) {
                Ok(r) => r,
                Err(e) => {
                    checks.map_error(Kind::Activities, &a.id, e);
                    continue;
                }
            };
            if orphan {
                row.project_id = None;
            }
            if let (Some(u), Some(raw)) = (row.user_id, &a.user_id) {
                if !users.known.contains(&u) {
                    if !checks.dangling(
                        Kind::Activities,
                        &a.id,
                        "userId",
                        format!("references unknown user {raw}"),
                        true,
                    ) {
                        continue;
                    }
                    row.user_id = None;
                }
            }
            activity_items.push((
                (row.id, Uuid::nil()),
                a.id.clone(),
                legacy_of(Entity::Activity, &a.id),
                (a.id.clone(), row),
            ));
        }
    }

    Plan {
        users: Prepared::from_items(user_items),
        teams: Prepared::from_items(team_items),
        team_members: Prepared::from_items(team_member_items),
        projects: Prepared::from_items(project_items),
        project_members: Prepared::from_items(project_member_items),
        tasks: Prepared::from_items(task_items),
        milestones: Prepared::from_items(milestone_items),
        files: Prepared::from_items(file_items),
        activities: Prepared::from_items(activity_items),
        read,
        tombstoned,
        orphans,
    }
}

/// An error that means the connection is gone: the run stops (exit 3) instead of blaming rows.
fn is_connection_error(e: &sqlx::Error) -> bool {
    db_failure_code(e) == 3
}

fn db_failure_code(e: &sqlx::Error) -> i32 {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => 3,
        sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")) => 3,
        _ => 1,
    }
}

fn row_reason(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => match d.constraint() {
            Some(c) => format!("refused by PostgreSQL ({c}): {}", d.message()),
            None => format!("refused by PostgreSQL: {}", d.message()),
        },
        other => other.to_string(),
    }
}

/// The table of an entity whose lookup indexes may be built after its load ([`deferred`]).
fn deferrable_table(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Projects => Some("projects"),
        Kind::ProjectMembers => Some("project_members"),
        Kind::Tasks => Some("tasks"),
        Kind::Milestones => Some("milestones"),
        Kind::Files => Some("files"),
        Kind::Activities => Some("activities"),
        Kind::Users | Kind::Teams | Kind::TeamMembers => None,
    }
}

struct Checkpoint {
    last: Option<Key>,
    finished: bool,
}

struct Runner<'a> {
    run_id: String,
    opts: &'a Options,
    counts: IndexMap<String, Counts>,
    errors: Vec<RowError>,
    checkpoints: HashMap<String, Checkpoint>,
    batches: u64,
    /// Whether batches may skip the foreign-key triggers once their parents are locked ([`copy::lock_parents`]).
    fk: FkMode,
}

impl Runner<'_> {
    async fn run_entity(
        &mut self,
        conn: &mut PgConnection,
        others: &mut [&mut PgConnection],
        kind: Kind,
        plan: &Plan,
    ) -> Result<(), Failure> {
        match kind {
            Kind::Users => self.run_kind(conn, others, kind, &plan.users).await,
            Kind::Teams => self.run_kind(conn, others, kind, &plan.teams).await,
            Kind::TeamMembers => self.run_kind(conn, others, kind, &plan.team_members).await,
            Kind::Projects => self.run_kind(conn, others, kind, &plan.projects).await,
            Kind::ProjectMembers => self.run_kind(conn, others, kind, &plan.project_members).await,
            Kind::Tasks => self.run_kind(conn, others, kind, &plan.tasks).await,
            Kind::Milestones => self.run_kind(conn, others, kind, &plan.milestones).await,
            Kind::Files => self.run_kind(conn, others, kind, &plan.files).await,
            Kind::Activities => self.run_kind(conn, others, kind, &plan.activities).await,
        }
    }

    /// Writes one entity from its checkpoint on. With other connections, one batch per connection is in flight at
    /// once (the time goes into PostgreSQL's inserts, and one backend keeps one core busy at best); they still
    /// commit in key order, each with its checkpoint, so the checkpoint only ever covers contiguous committed
    /// batches.
    async fn run_kind<T: Bulk>(
        &mut self,
        conn: &mut PgConnection,
        others: &mut [&mut PgConnection],
        kind: Kind,
        p: &Prepared<T>,
    ) -> Result<(), Failure> {
        let oc = if self.opts.overwrite { OnConflict::Overwrite } else { OnConflict::Keep };
        let fk = self.fk;
        let cp = self.checkpoints.get(kind.name());
        if cp.is_some_and(|c| c.finished) {
            // Finished by the interrupted run this one resumes.
            self.counts.entry(kind.name().into()).or_default().unchanged += p.rows.len() as u64;
            return Ok(());
        }
        let start = match cp.and_then(|c| c.last) {
            Some(last) => p.keys.partition_point(|k| *k <= last),
            None => 0,
        };
        self.counts.entry(kind.name().into()).or_default().unchanged += start as u64;
        let began = Instant::now();
        let table = deferrable_table(kind).filter(|_| !self.opts.dry_run);
        if let Some(t) = table {
            // Into an empty table, building the lookup indexes once afterwards is several times cheaper than
            // maintaining them row by row. A table with rows keeps them: its rows came from a dual-json server
            // or an earlier run, and a resumed run finds them already recreated at start-up (deferred::restore).
            if deferred::table_is_empty(conn, t).await.map_err(db_failure)? == Some(true) {
                deferred::drop_for_load(conn, t).await.map_err(db_failure)?;
            }
        }
        let bar = self.opts.progress.then(|| {
            let bar = indicatif::ProgressBar::new(p.rows.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{prefix:<16}{wide_bar} {pos}/{len}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_prefix(kind.name());
            bar.set_position(start as u64);
            bar
        });
        let size = self.opts.batch_size.max(1);
        let n = p.rows.len();
        let bounds: Vec<(usize, usize)> = (start..n).step_by(size).map(|from| (from, (from + size).min(n))).collect();
        // Each connection takes the next batch as soon as its previous one is committed, instead of a group of
        // batches waiting for its slowest. Commits still go in key order (a batch commits only once every batch
        // before it has), so the checkpoint only ever covers contiguous committed batches.
        let next = Cell::new(0usize);
        let (turn, _) = tokio::sync::watch::channel(Turn { committed: 0, failed_at: usize::MAX });
        let done: RefCell<Vec<(usize, BatchResult)>> = RefCell::new(Vec::new());
        let failures: RefCell<Vec<(usize, Failure)>> = RefCell::new(Vec::new());
        let ctx = Pipeline {
            run_id: &self.run_id,
            kind,
            p,
            oc,
            fk,
            bounds: &bounds,
            next: &next,
            turn: &turn,
            done: &done,
            failures: &failures,
            bar: bar.as_ref(),
            crash_after: self.opts.crash_after_batches.map(|c| c.saturating_sub(self.batches)),
        };
        let conns = std::iter::once(&mut *conn).chain(others.iter_mut().map(|c| &mut **c));
        join_all(conns.map(|c| ctx.work(c))).await;
        let mut done = done.into_inner();
        done.sort_by_key(|(b, _)| *b);
        for (b, result) in done {
            let (from, to) = bounds[b];
            self.count_batch(kind, from, to, result);
        }
        let mut failures = failures.into_inner();
        failures.sort_by_key(|(b, _)| *b);
        if let Some((_, e)) = failures.into_iter().next() {
            return Err(e);
        }
        if let Some(bar) = bar {
            bar.finish();
        }
        let loaded = began.elapsed();
        if let Some(t) = table {
            // Before the entity counts as finished: a run that stops before this line leaves the entity
            // unfinished, and whatever connects next recreates the indexes.
            // One index per connection at a time: the builds of one table run side by side.
            let gone = deferred::missing(conn, Some(t)).await.map_err(db_failure)?;
            let ways = others.len() + 1;
            let shares: Vec<Vec<&str>> =
                (0..ways).map(|w| gone.iter().skip(w).step_by(ways).copied().collect()).collect();
            let conns = std::iter::once(&mut *conn).chain(others.iter_mut().map(|c| &mut **c));
            let built = join_all(conns.zip(&shares).map(|(c, names)| deferred::create(c, names))).await;
            for b in built {
                b.map_err(db_failure)?;
            }
        }
        tracing::debug!(
            target: "fluxstudio::migrate",
            "{}: {} rows written in {:.2} s, indexes in {:.2} s",
            kind.name(),
            n - start,
            super::seconds(loaded),
            super::seconds(began.elapsed() - loaded)
        );
        sqlx::query("update migration_runs set finished_at = now() where run_id = $1 and entity = $2")
            .bind(&self.run_id)
            .bind(kind.name())
            .execute(&mut *conn)
            .await
            .map_err(db_failure)?;
        Ok(())
    }

    /// The counts of a committed batch.
    fn count_batch(&mut self, kind: Kind, from: usize, to: usize, result: BatchResult) {
        let failed = result.errors.len() as u64;
        let c = self.counts.entry(kind.name().into()).or_default();
        c.inserted += result.inserted;
        c.updated += result.updated;
        c.unchanged += (to - from) as u64 - result.inserted - result.updated - failed;
        c.errors += failed;
        self.errors.extend(result.errors);
        self.batches += 1;
    }
}

/// Which batches have committed (all before `committed`), and the first batch that failed (`usize::MAX`: none).
#[derive(Clone, Copy)]
struct Turn {
    committed: usize,
    failed_at: usize,
}

/// What the connections writing one entity share (they run on one task, hence the cells).
struct Pipeline<'a, T> {
    run_id: &'a str,
    kind: Kind,
    p: &'a Prepared<T>,
    oc: OnConflict,
    fk: FkMode,
    bounds: &'a [(usize, usize)],
    next: &'a Cell<usize>,
    turn: &'a tokio::sync::watch::Sender<Turn>,
    done: &'a RefCell<Vec<(usize, BatchResult)>>,
    failures: &'a RefCell<Vec<(usize, Failure)>>,
    bar: Option<&'a indicatif::ProgressBar>,
    /// Committed batches of this entity after which to exit as a crash would (test hook).
    crash_after: Option<u64>,
}

impl<T: Bulk> Pipeline<'_, T> {
    /// One connection's share: batches in turn until none is left or one has failed. A batch after a failed one
    /// is rolled back (its transaction dropped); the batches before it still commit, as they did in key order.
    async fn work(&self, conn: &mut PgConnection) {
        let mut rx = self.turn.subscribe();
        loop {
            let b = self.next.get();
            if b >= self.bounds.len() || self.turn.borrow().failed_at != usize::MAX {
                return;
            }
            self.next.set(b + 1);
            let (from, to) = self.bounds[b];
            if let Err(e) = self.batch(conn, &mut rx, b, from, to).await {
                self.turn.send_modify(|t| t.failed_at = t.failed_at.min(b));
                self.failures.borrow_mut().push((b, e));
                return;
            }
            if self.turn.borrow().failed_at < b {
                return;
            }
        }
    }

    /// Writes batch `b`, waits until every batch before it has committed, then commits it with its checkpoint.
    async fn batch(
        &self,
        conn: &mut PgConnection,
        rx: &mut tokio::sync::watch::Receiver<Turn>,
        b: usize,
        from: usize,
        to: usize,
    ) -> Result<(), Failure> {
        let (mut tx, result) = write_batch(conn, self.kind, self.p, from, to, self.oc, self.fk).await?;
        let ready = rx.wait_for(|t| t.committed == b || t.failed_at < b).await.map(|t| t.committed == b);
        if !ready.unwrap_or(false) {
            // A batch before this one failed: this one is rolled back.
            return Ok(());
        }
        let failed = result.errors.len() as i64;
        sqlx::query(
            "update migration_runs set last_id = $3, rows_done = rows_done + $4, rows_failed = rows_failed + $5 \
             where run_id = $1 and entity = $2",
        )
        .bind(self.run_id)
        .bind(self.kind.name())
        .bind(key_text(self.kind, self.p.keys[to - 1]))
        .bind((to - from) as i64 - failed)
        .bind(failed)
        .execute(&mut *tx)
        .await
        .map_err(db_failure)?;
        tx.commit().await.map_err(db_failure)?;
        self.done.borrow_mut().push((b, result));
        self.turn.send_modify(|t| t.committed = b + 1);
        self.bar.iter().for_each(|bar| bar.set_position(to as u64));
        if self.crash_after.is_some_and(|n| b as u64 + 1 >= n) {
            // Simulates a crash right after a committed batch (tests of resume); no cleanup on purpose.
            std::process::exit(137);
        }
        Ok(())
    }
}

/// One batch written inside a new transaction on `conn`, not yet committed: COPYed into the staging table and
/// moved in with one statement. If PostgreSQL refuses the batch (a constraint the checks do not know), it is
/// written again one savepoint per row with the `unnest` statement, and the refused rows become row errors.
async fn write_batch<'c, T: Bulk>(
    conn: &'c mut PgConnection,
    kind: Kind,
    p: &Prepared<T>,
    from: usize,
    to: usize,
    oc: OnConflict,
    fk: FkMode,
) -> Result<(sqlx::Transaction<'c, sqlx::Postgres>, BatchResult), Failure> {
    let legacy: LegacyPairs = p.legacy[from..to].iter().flatten().cloned().collect();
    let mut tx = conn.begin().await.map_err(db_failure)?;
    // No wait for the WAL flush at commit: a crash may lose the last batches' commits, but each batch commits
    // together with its checkpoint, so a lost batch is a lost checkpoint too, and the rerun resumes before it
    // (inserting only what is missing, as always). Durability is the backfill's to give up, not the server's: the
    // setting is local to this transaction.
    sqlx::raw_sql("set local synchronous_commit = off").execute(&mut *tx).await.map_err(db_failure)?;
    // The whole batch under a savepoint, so that a refused batch can be redone row by row in the same transaction.
    let mut whole = tx.begin().await.map_err(db_failure)?;
    let outcome = async {
        bulk::insert_legacy_ids(&mut whole, &legacy).await?;
        T::copy(&mut whole, &p.rows[from..to], oc, kind, fk).await
    }
    .await;
    match outcome {
        Ok(w) => {
            whole.commit().await.map_err(db_failure)?;
            return Ok((tx, BatchResult { inserted: w.inserted, updated: w.updated, errors: Vec::new() }));
        }
        Err(e) if is_connection_error(&e) => return Err(db_failure(e)),
        Err(_) => whole.rollback().await.map_err(db_failure)?,
    }
    let mut r = BatchResult::default();
    for j in from..to {
        let mut sp = tx.begin().await.map_err(db_failure)?;
        let single = async {
            bulk::insert_legacy_ids(&mut sp, &p.legacy[j]).await?;
            T::insert(&mut sp, &p.rows[j..j + 1], oc, kind).await
        }
        .await;
        match single {
            Ok(w) => {
                sp.commit().await.map_err(db_failure)?;
                r.inserted += w.inserted;
                r.updated += w.updated;
            }
            Err(e) if is_connection_error(&e) => return Err(db_failure(e)),
            Err(e) => {
                sp.rollback().await.map_err(db_failure)?;
                r.errors.push(RowError {
                    entity: kind.name().into(),
                    id: p.ids[j].clone(),
                    field: "-".into(),
                    reason: row_reason(&e),
                });
            }
        }
    }
    Ok((tx, r))
}

/// Polls every future until all are done and returns their outputs in order (`futures::join_all` for a few
/// futures that borrow their connections, without a dependency for it).
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[derive(Default)]
struct BatchResult {
    inserted: u64,
    updated: u64,
    errors: Vec<RowError>,
}

/// `--overwrite` is refused while a dual-mode server holds the database (store-modes.md §5): its outbox writes
/// are newer than the files.
async fn live_dual_instance(conn: &mut PgConnection) -> Result<Option<(String, String)>, Failure> {
    sqlx::query_as(
        "select instance_id, mode from store_instances where mode in ('dual-json', 'dual-postgres') \
         and heartbeat_at > now() - interval '15 seconds' order by heartbeat_at desc limit 1",
    )
    .fetch_optional(conn)
    .await
    .map_err(db_failure)
}

/// Runs the backfill of `state` into the database behind `conn`; `others`, more connections to the same
/// database, let that many more batches be written at once (a dry run uses one transaction, hence one
/// connection).
pub async fn run(
    conn: &mut PgConnection,
    others: Vec<&mut PgConnection>,
    state: &State,
    source: String,
    target: String,
    opts: &Options,
) -> Result<Report, Failure> {
    let started = Instant::now();
    if opts.overwrite {
        if let Some((instance, mode)) = live_dual_instance(conn).await? {
            return Err(Failure::usage(format!(
                "--overwrite refused: instance {instance} is serving in {mode} mode (heartbeat within 15 s); its \
                 outbox writes are newer than the files. Stop it or run without --overwrite"
            )));
        }
    }
    // A dry run does everything inside one transaction that is rolled back; its batches are savepoints.
    if opts.dry_run {
        let mut tx = conn.begin().await.map_err(db_failure)?;
        let report = run_in(&mut tx, Vec::new(), state, source, target, opts, started).await;
        tx.rollback().await.map_err(db_failure)?;
        report
    } else {
        run_in(conn, others, state, source, target, opts, started).await
    }
}

async fn run_in(
    conn: &mut PgConnection,
    mut others: Vec<&mut PgConnection>,
    state: &State,
    source: String,
    target: String,
    opts: &Options,
    started: Instant,
) -> Result<Report, Failure> {
    let pg = existing(conn).await.map_err(db_failure)?;
    let planning = Instant::now();
    let mut checks = Checks {
        null_dangling: opts.dangling_null,
        errors: Vec::new(),
        nulled: Vec::new(),
        error_counts: HashMap::new(),
    };
    let plan = plan(state, &pg, opts, &mut checks);
    tracing::debug!(
        target: "fluxstudio::migrate",
        "existing rows read in {:.2} s, rows mapped and checked in {:.2} s",
        super::seconds(planning - started),
        super::seconds(planning.elapsed())
    );

    let interrupted: Option<String> = sqlx::query_scalar(
        "select run_id from migration_runs group by run_id having bool_or(finished_at is null) \
         order by max(started_at) desc limit 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_failure)?;
    let resumed = match interrupted {
        Some(run) if opts.restart => {
            sqlx::query("delete from migration_runs where run_id = $1")
                .bind(&run)
                .execute(&mut *conn)
                .await
                .map_err(db_failure)?;
            None
        }
        other => other,
    };
    let run_id = resumed.clone().unwrap_or_else(|| Uuid::new_v4().to_string());
    for kind in &opts.only {
        sqlx::query("insert into migration_runs (run_id, entity) values ($1, $2) on conflict do nothing")
            .bind(&run_id)
            .bind(kind.name())
            .execute(&mut *conn)
            .await
            .map_err(db_failure)?;
    }
    let rows: Vec<(String, Option<String>, bool)> =
        sqlx::query_as("select entity, last_id, finished_at is not null from migration_runs where run_id = $1")
            .bind(&run_id)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_failure)?;
    let checkpoints = rows
        .into_iter()
        .map(|(e, last, finished)| (e, Checkpoint { last: last.as_deref().and_then(parse_key), finished }))
        .collect();

    // The staging tables live in each session (a dry run's go with its rollback).
    copy::create_staging(conn).await.map_err(db_failure)?;
    for other in others.iter_mut() {
        copy::create_staging(other).await.map_err(db_failure)?;
    }
    let fk = if opts.fk_triggers || !copy::can_skip_fk_triggers(conn).await.map_err(db_failure)? {
        FkMode::Triggers
    } else {
        FkMode::LockedParents
    };
    let mut runner = Runner { run_id, opts, counts: IndexMap::new(), errors: Vec::new(), checkpoints, batches: 0, fk };
    for kind in &opts.only {
        runner.counts.insert(kind.name().into(), Counts::default());
    }
    let written = async {
        for kind in opts.only.clone() {
            runner.run_entity(conn, &mut others, kind, &plan).await?;
            let c = runner.counts.entry(kind.name().into()).or_default();
            c.read = plan.read.get(&kind).copied().unwrap_or(0);
            c.unchanged += plan.tombstoned.get(&kind).copied().unwrap_or(0);
            c.errors += checks.error_counts.get(&kind).copied().unwrap_or(0);
        }
        Ok::<(), Failure>(())
    }
    .await;
    if let Err(e) = written {
        if !opts.dry_run {
            // Best effort (the connection may be what failed): indexes deferred for the entity that failed come
            // back now rather than at the next start-up.
            let _ = deferred::restore(conn).await;
        }
        return Err(e);
    }

    let selected: HashSet<&str> = opts.only.iter().map(|k| k.name()).collect();
    let mut row_errors: Vec<RowError> =
        checks.errors.into_iter().filter(|e| selected.contains(e.entity.as_str())).collect();
    row_errors.extend(runner.errors);
    let nulled_references = checks.nulled.into_iter().filter(|e| selected.contains(e.entity.as_str())).collect();
    let mut legacy_ids = Vec::new();
    let mut push_legacy = |kind: Kind, legacy: &[LegacyPairs]| {
        if selected.contains(kind.name()) {
            for (entity, public, id) in legacy.iter().flatten() {
                legacy_ids.push(LegacyId { entity: (*entity).into(), legacy_id: public.clone(), id: id.to_string() });
            }
        }
    };
    push_legacy(Kind::Users, &plan.users.legacy);
    push_legacy(Kind::Teams, &plan.teams.legacy);
    push_legacy(Kind::Projects, &plan.projects.legacy);
    push_legacy(Kind::Tasks, &plan.tasks.legacy);
    push_legacy(Kind::Milestones, &plan.milestones.legacy);
    push_legacy(Kind::Files, &plan.files.legacy);
    push_legacy(Kind::Activities, &plan.activities.legacy);
    Ok(Report {
        dry_run: opts.dry_run,
        source,
        target,
        entities: runner.counts,
        row_errors,
        nulled_references,
        orphan_activity_files: if selected.contains("activities") { plan.orphans } else { Vec::new() },
        legacy_ids,
        resumed_run: resumed,
        duration_seconds: super::seconds(started.elapsed()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_keys_round_trip() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        assert_eq!(parse_key(&key_text(Kind::Tasks, (a, Uuid::nil()))), Some((a, Uuid::nil())));
        assert_eq!(parse_key(&key_text(Kind::ProjectMembers, (a, b))), Some((a, b)));
        assert_eq!(parse_key("nonsense"), None);
    }

    #[test]
    fn members_resolve_by_exact_then_unique_case_insensitive_address() {
        let mut users = Users::default();
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        users.add(a, "Ann@example.com");
        users.add(b, "bob@example.com");
        assert_eq!(users.resolve("Ann@example.com"), Some(a));
        assert_eq!(users.resolve("ann@EXAMPLE.com"), Some(a));
        assert_eq!(users.resolve("carol@example.com"), None);
        users.add(Uuid::new_v4(), "ANN@example.com");
        assert_eq!(users.resolve("ann@example.com"), None, "two case-insensitive matches resolve to nobody");
        assert_eq!(users.resolve(&b.to_string()), Some(b));
    }
}
