//! `fluxstudio validate` (cli.md §4): the JSON side and PostgreSQL compared in both directions, per entity, with
//! the comparison rules of data-model.md §11 (see [`super::flat`]); `--repair` copies the source of truth's
//! version of every differing record to the other side and validates again.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use super::flat::{differing_fields, flatten, Flat};
use super::{db_failure, Failure, Kind, PersistedMode};
use crate::store::json::state::Op;
use crate::store::json::state::State;
use crate::store::postgres::bulk::{self, OnConflict};
use crate::store::postgres::ids::{storage_id, Entity};
use crate::store::postgres::{mapping, PostgresStore};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Json,
    Postgres,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Json => "json",
            Side::Postgres => "postgres",
        }
    }

    /// The primary of a persisted mode (cli.md §4).
    pub fn primary_of(mode: &str) -> Side {
        match mode {
            "dual-postgres" | "postgres" => Side::Postgres,
            _ => Side::Json,
        }
    }
}

/// The ids of JSON-side records whose dual-json outbox entries have not reached PostgreSQL yet. The dual-json
/// outbox is not part of this version; the server that owns it passes this hook when it exists, and without one
/// no JSON-side record is pending.
pub type JsonPendingHook = Box<dyn Fn(&Path) -> Result<HashSet<String>, String> + Send + Sync>;

pub struct Options {
    pub only: Vec<Kind>,
    pub source: Option<Side>,
    pub repair: bool,
    pub wait_outbox: Option<Duration>,
    pub max_details: usize,
    pub json_pending: Option<JsonPendingHook>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Mismatch {
    pub id: String,
    pub fields: Vec<String>,
    /// (field, json value, postgres value) for display; password values are never kept.
    #[serde(skip)]
    pub values: Vec<(String, String, String)>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EntityResult {
    pub json: u64,
    pub postgres: u64,
    pub matched: u64,
    pub missing_in_postgres: Vec<String>,
    pub missing_in_json: Vec<String>,
    pub mismatched: Vec<Mismatch>,
    pub pending: u64,
    pub accuracy: f64,
}

impl EntityResult {
    fn differences(&self) -> u64 {
        (self.missing_in_postgres.len() + self.missing_in_json.len() + self.mismatched.len()) as u64
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    pub records: u64,
    pub differences: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub entity: String,
    pub id: String,
    /// `insert`, `overwrite` or `delete`.
    pub action: String,
    /// The side that was changed.
    pub target: Side,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Repaired {
    pub differences_before: u64,
    pub changes: Vec<Change>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub mode: String,
    pub source: Side,
    pub started_at: String,
    pub passed: bool,
    pub entities: IndexMap<String, EntityResult>,
    pub totals: Totals,
    pub repaired: Option<Repaired>,
    #[serde(skip)]
    pub json_target: String,
    #[serde(skip)]
    pub pg_target: String,
    #[serde(skip)]
    pub max_details: usize,
}

/// One decimal, rounded down, so that 100.0 is printed only when nothing differs.
fn accuracy(matched: u64, differences: u64) -> f64 {
    let total = matched + differences;
    if total == 0 {
        return 100.0;
    }
    (matched as f64 * 1000.0 / total as f64).floor() / 10.0
}

fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".into(),
        Some(v) => super::cut(&v.to_string()),
    }
}

/// Compares the two sides entity by entity; ids in `pending` (or whose parent is pending) are left out.
pub fn compare(json: &Flat, pg: &Flat, only: &[Kind], pending: &HashSet<String>) -> IndexMap<String, EntityResult> {
    let mut out = IndexMap::new();
    for kind in only {
        let (j, p) = (json.get(*kind), pg.get(*kind));
        let is_pending = |id: &str| {
            pending.contains(id)
                || json.parent.get(id).is_some_and(|par| pending.contains(par))
                || pg.parent.get(id).is_some_and(|par| pending.contains(par))
        };
        let mut r = EntityResult {
            json: j.len() as u64,
            postgres: p.len() as u64,
            matched: 0,
            missing_in_postgres: Vec::new(),
            missing_in_json: Vec::new(),
            mismatched: Vec::new(),
            pending: 0,
            accuracy: 100.0,
        };
        for (id, jr) in j {
            if is_pending(id) {
                r.pending += 1;
                continue;
            }
            match p.get(id) {
                None => r.missing_in_postgres.push(id.clone()),
                Some(pr) => {
                    let fields = differing_fields(jr, pr);
                    if fields.is_empty() {
                        r.matched += 1;
                    } else {
                        let values = fields
                            .iter()
                            .filter(|f| f.as_str() != "password")
                            .map(|f| (f.clone(), show(jr.get(f)), show(pr.get(f))))
                            .collect();
                        r.mismatched.push(Mismatch { id: id.clone(), fields, values });
                    }
                }
            }
        }
        for id in p.keys() {
            if !j.contains_key(id) {
                if is_pending(id) {
                    r.pending += 1;
                } else {
                    r.missing_in_json.push(id.clone());
                }
            }
        }
        r.accuracy = accuracy(r.matched, r.differences());
        out.insert(kind.name().to_owned(), r);
    }
    out
}

impl Report {
    pub fn exit_code(&self) -> i32 {
        if self.passed {
            0
        } else {
            1
        }
    }

    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "validate  json {}  <->  postgres {}   mode {} (source: {})\n",
            self.json_target,
            self.pg_target,
            self.mode,
            self.source.name()
        );
        if let Some(rep) = &self.repaired {
            let _ = writeln!(s, "repaired {} of {} differences:", rep.changes.len(), rep.differences_before);
            for c in &rep.changes {
                let _ = writeln!(s, "  {:<16}{}  {} in {}", c.entity, c.id, c.action, c.target.name());
            }
            let _ = writeln!(s, "\nafter repair:");
        }
        let _ = writeln!(
            s,
            "{:<16}{:>6}{:>10}{:>9}{:>12}{:>14}{:>12}{:>9}{:>10}",
            "entity", "json", "postgres", "matched", "missing pg", "missing json", "mismatched", "pending", "accuracy"
        );
        for (name, r) in &self.entities {
            let _ = writeln!(
                s,
                "{:<16}{:>6}{:>10}{:>9}{:>12}{:>14}{:>12}{:>9}{:>9.1}%",
                name,
                r.json,
                r.postgres,
                r.matched,
                r.missing_in_postgres.len(),
                r.missing_in_json.len(),
                r.mismatched.len(),
                r.pending,
                r.accuracy
            );
        }
        let diffs = self.totals.differences;
        if diffs > 0 {
            let _ = writeln!(s, "\ndifferences ({diffs}):");
            for (name, r) in &self.entities {
                let mut lines = Vec::new();
                for m in &r.mismatched {
                    let fields: Vec<String> = m
                        .fields
                        .iter()
                        .map(|f| match m.values.iter().find(|(n, _, _)| n == f) {
                            Some((_, j, p)) => format!("{f} (json {j}, postgres {p})"),
                            None => f.clone(),
                        })
                        .collect();
                    lines.push(format!("{}  mismatched: {}", m.id, fields.join(", ")));
                }
                lines.extend(r.missing_in_postgres.iter().map(|id| format!("{id}  missing in postgres")));
                lines.extend(r.missing_in_json.iter().map(|id| format!("{id}  missing in json")));
                for l in lines.iter().take(self.max_details) {
                    let _ = writeln!(s, "  {name:<12}{l}");
                }
                if lines.len() > self.max_details {
                    let _ = writeln!(s, "  {name:<12}… and {} more", lines.len() - self.max_details);
                }
            }
            let _ = writeln!(
                s,
                "RESULT: {diffs} difference{}. Run `fluxstudio validate --repair` to copy {}'s version.",
                if diffs == 1 { "" } else { "s" },
                self.source.name()
            );
        } else {
            let _ = writeln!(s, "\nRESULT: 100.0% in both directions, {} records.", self.totals.records);
        }
        s
    }
}

/// Records of either side with outbox entries not yet applied: PostgreSQL's `store_outbox` (dual-postgres) plus
/// what the JSON hook reports (dual-json).
async fn pending(
    conn: &mut PgConnection,
    data_dir: &Path,
    hook: Option<&JsonPendingHook>,
) -> Result<HashSet<String>, Failure> {
    let ids: Vec<String> = sqlx::query_scalar("select distinct entity_id from store_outbox where done_at is null")
        .fetch_all(conn)
        .await
        .map_err(db_failure)?;
    let mut set: HashSet<String> = ids.into_iter().collect();
    if let Some(h) = hook {
        set.extend(h(data_dir).map_err(Failure::other)?);
    }
    Ok(set)
}

async fn wait_outbox(conn: &mut PgConnection, data_dir: &Path, opts: &Options, limit: Duration) -> Result<(), Failure> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if pending(conn, data_dir, opts.json_pending.as_ref()).await?.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// PostgreSQL from one repeatable-read snapshot.
pub async fn pg_state(conn: &mut PgConnection) -> Result<State, Failure> {
    Ok(pg_state_and_pending(conn).await?.0)
}

/// As [`pg_state`], plus the `store_outbox` entries still pending in the same snapshot: exactly the entries whose
/// writes the snapshot already holds (`postgres -> dual-postgres` marks them done after exporting it).
pub async fn pg_state_and_pending(conn: &mut PgConnection) -> Result<(State, Vec<i64>), Failure> {
    let mut tx = conn.begin().await.map_err(db_failure)?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await
        .map_err(db_failure)?;
    let snap = bulk::export(&mut tx).await.map_err(db_failure)?;
    let pending: Vec<i64> = sqlx::query_scalar("select seq from store_outbox where done_at is null")
        .fetch_all(&mut *tx)
        .await
        .map_err(db_failure)?;
    tx.commit().await.map_err(db_failure)?;
    Ok((super::state_of(snap), pending))
}

struct Sides {
    json: State,
    pg: State,
}

async fn load(conn: &mut PgConnection, data_dir: &Path) -> Result<Sides, Failure> {
    let json = super::load_json(data_dir)?;
    let pg = pg_state(conn).await?;
    Ok(Sides { json, pg })
}

/// Runs validate (and `--repair`). `store` is the target database; `data_dir` the JSON side.
pub async fn run(store: &PostgresStore, data_dir: &Path, opts: &Options) -> Result<Report, Failure> {
    let started = crate::domain::time::now();
    let mut conn = store.pool().acquire().await.map_err(db_failure)?;
    let persisted = super::persisted_mode(&mut conn).await?;
    let source = opts.source.unwrap_or_else(|| Side::primary_of(&persisted.mode));
    if let Some(limit) = opts.wait_outbox {
        wait_outbox(&mut conn, data_dir, opts, limit).await?;
    }
    let pend = pending(&mut conn, data_dir, opts.json_pending.as_ref()).await?;
    let sides = load(&mut conn, data_dir).await?;
    let mut entities = compare(&flatten(&sides.json, true), &flatten(&sides.pg, false), &opts.only, &pend);
    let mut repaired = None;
    if opts.repair && entities.values().any(|r| r.differences() > 0) {
        let before = entities.values().map(EntityResult::differences).sum();
        let changes = match source {
            Side::Json => repair_postgres(store, &mut conn, &sides, &entities).await?,
            Side::Postgres => repair_json(data_dir, &sides, &entities).await?,
        };
        repaired = Some(Repaired { differences_before: before, changes });
        let pend = pending(&mut conn, data_dir, opts.json_pending.as_ref()).await?;
        let sides = load(&mut conn, data_dir).await?;
        entities = compare(&flatten(&sides.json, true), &flatten(&sides.pg, false), &opts.only, &pend);
    }
    let differences: u64 = entities.values().map(EntityResult::differences).sum();
    let records: u64 = entities.values().map(|r| if source == Side::Json { r.json } else { r.postgres }).sum();
    let report = Report {
        mode: persisted.mode.clone(),
        source,
        started_at: started,
        passed: differences == 0,
        entities,
        totals: Totals { records, differences },
        repaired,
        json_target: data_dir.display().to_string(),
        pg_target: store.target(),
        max_details: opts.max_details,
    };
    if report.passed {
        record_pass(&mut conn, &report, &persisted).await?;
    }
    Ok(report)
}

/// A passing run is what a dual-json ⇄ dual-postgres switch requires for the current epoch (store-modes.md §5).
async fn record_pass(conn: &mut PgConnection, report: &Report, persisted: &PersistedMode) -> Result<(), Failure> {
    let result = serde_json::to_value(report).unwrap_or(Value::Null);
    let mut tx = conn.begin().await.map_err(db_failure)?;
    sqlx::query(
        "insert into validation_runs (run_id, started_at, finished_at, mode, result, passed) \
         values ($1, $2::timestamptz, now(), $3, $4, true)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(&report.started_at)
    .bind(&persisted.mode)
    .bind(result)
    .execute(&mut *tx)
    .await
    .map_err(db_failure)?;
    sqlx::query("update store_state set validated_at = now(), validated_epoch = epoch")
        .execute(&mut *tx)
        .await
        .map_err(db_failure)?;
    tx.commit().await.map_err(db_failure)
}

/// The ids of records that differ, per entity.
fn differing(entities: &IndexMap<String, EntityResult>, kind: Kind) -> (Vec<String>, Vec<String>) {
    let Some(r) = entities.get(kind.name()) else {
        return (Vec::new(), Vec::new());
    };
    let upsert = r.missing_in_postgres.iter().chain(r.mismatched.iter().map(|m| &m.id)).cloned().collect();
    (upsert, r.missing_in_json.clone())
}

fn parent_of(child: &str) -> &str {
    child.split_once('/').map_or(child, |(p, _)| p)
}

/// JSON is the source: write its version of each differing record into PostgreSQL (one transaction).
async fn repair_postgres(
    store: &PostgresStore,
    conn: &mut PgConnection,
    sides: &Sides,
    entities: &IndexMap<String, EntityResult>,
) -> Result<Vec<Change>, Failure> {
    let json = &sides.json;
    let mut changes = Vec::new();
    let mut change = |kind: Kind, id: &str, action: &str| {
        changes.push(Change {
            entity: kind.name().into(),
            id: id.into(),
            action: action.into(),
            target: Side::Postgres,
        })
    };
    let action = |kind: Kind, id: &str| -> &'static str {
        if entities.get(kind.name()).is_some_and(|r| r.missing_in_postgres.iter().any(|m| m == id)) {
            "insert"
        } else {
            "overwrite"
        }
    };
    let map_err = |e: mapping::MapError| Failure::other(e.to_string());
    let mut tx = conn.begin().await.map_err(db_failure)?;

    let (users, extra_users) = differing(entities, Kind::Users);
    for id in &users {
        let Some(u) = json.users.get(id) else { continue };
        let row = mapping::user_to_row(u).map_err(map_err)?;
        bulk::insert_legacy_ids(&mut tx, &legacy(Entity::User, id)).await.map_err(db_failure)?;
        bulk::insert_users(&mut tx, &[(id.clone(), row)], OnConflict::Overwrite).await.map_err(db_failure)?;
        change(Kind::Users, id, action(Kind::Users, id));
    }
    // Teams with their members: the team record is written whole.
    let (teams, extra_teams) = differing(entities, Kind::Teams);
    let (tm, extra_tm) = differing(entities, Kind::TeamMembers);
    let mut team_ids: Vec<String> = teams.clone();
    team_ids.extend(tm.iter().chain(&extra_tm).map(|m| parent_of(m).to_owned()));
    team_ids.sort();
    team_ids.dedup();
    for id in &team_ids {
        let Some(t) = json.teams.get(id) else { continue };
        store.write_team(&mut tx, t).await.map_err(|e| Failure::other(e.to_string()))?;
        change(Kind::Teams, id, action(Kind::Teams, id));
    }
    // Projects with members, tasks and milestones: written whole, which also removes children PostgreSQL has
    // and the files do not.
    let mut project_ids: Vec<String> = Vec::new();
    let (projects, extra_projects) = differing(entities, Kind::Projects);
    project_ids.extend(projects);
    for kind in [Kind::ProjectMembers, Kind::Tasks, Kind::Milestones] {
        let (up, extra) = differing(entities, kind);
        for id in up.iter().chain(&extra) {
            let parent = match kind {
                Kind::ProjectMembers => Some(parent_of(id).to_owned()),
                _ => owner_project(json, id).or_else(|| owner_project(&sides.pg, id)),
            };
            if let Some(p) = parent.filter(|p| json.projects.contains_key(p)) {
                project_ids.push(p);
            } else if kind != Kind::ProjectMembers && extra.contains(id) {
                let table = if kind == Kind::Tasks { bulk::RecordTable::Tasks } else { bulk::RecordTable::Milestones };
                let entity = if kind == Kind::Tasks { Entity::Task } else { Entity::Milestone };
                bulk::delete_record(&mut tx, table, storage_id(entity, id)).await.map_err(db_failure)?;
                change(kind, id, "delete");
            }
        }
    }
    project_ids.sort();
    project_ids.dedup();
    tx.commit().await.map_err(db_failure)?;
    for id in &project_ids {
        let Some(p) = json.projects.get(id) else { continue };
        store.put_project(p).await.map_err(|e| Failure::other(format!("project {id}: {e}")))?;
        changes.push(Change {
            entity: Kind::Projects.name().into(),
            id: id.clone(),
            action: action(Kind::Projects, id).into(),
            target: Side::Postgres,
        });
    }

    let mut tx = conn.begin().await.map_err(db_failure)?;
    let (files, extra_files) = differing(entities, Kind::Files);
    for id in &files {
        let Some(f) = json.files.get(id) else { continue };
        let row = mapping::file_to_row(f).map_err(map_err)?;
        bulk::insert_legacy_ids(&mut tx, &legacy(Entity::File, id)).await.map_err(db_failure)?;
        bulk::insert_files(&mut tx, &[(id.clone(), row)], OnConflict::Overwrite).await.map_err(db_failure)?;
        changes.push(Change {
            entity: "files".into(),
            id: id.clone(),
            action: action(Kind::Files, id).into(),
            target: Side::Postgres,
        });
    }
    let (acts, extra_acts) = differing(entities, Kind::Activities);
    for id in &acts {
        let Some(a) = json.activities.values().flat_map(|l| l.oldest_first()).find(|a| &a.id == id) else { continue };
        // Activities are never updated in place: a differing one is replaced.
        bulk::delete_record(&mut tx, bulk::RecordTable::Activities, storage_id(Entity::Activity, id))
            .await
            .map_err(db_failure)?;
        let row = mapping::activity_to_row(a, None).map_err(map_err)?;
        bulk::insert_legacy_ids(&mut tx, &legacy(Entity::Activity, id)).await.map_err(db_failure)?;
        bulk::insert_activities(&mut tx, &[(id.clone(), row)]).await.map_err(db_failure)?;
        changes.push(Change {
            entity: "activities".into(),
            id: id.clone(),
            action: action(Kind::Activities, id).into(),
            target: Side::Postgres,
        });
    }
    // Deletes last, children before parents.
    let deletes = [
        (Kind::Activities, extra_acts, bulk::RecordTable::Activities, Entity::Activity),
        (Kind::Files, extra_files, bulk::RecordTable::Files, Entity::File),
        (Kind::Projects, extra_projects, bulk::RecordTable::Projects, Entity::Project),
        (Kind::Teams, extra_teams, bulk::RecordTable::Teams, Entity::Team),
        (Kind::Users, extra_users, bulk::RecordTable::Users, Entity::User),
    ];
    for (kind, ids, table, entity) in deletes {
        for id in ids {
            bulk::delete_record(&mut tx, table, storage_id(entity, &id)).await.map_err(db_failure)?;
            changes.push(Change { entity: kind.name().into(), id, action: "delete".into(), target: Side::Postgres });
        }
    }
    tx.commit().await.map_err(db_failure)?;
    Ok(changes)
}

/// PostgreSQL is the source and a server holds the data dir (dual-postgres): the differing records go to the
/// server's JSON store as journal ops through its control socket (`POST /v1/apply`). Users, teams and files are
/// replaced or deleted by id; a project is replaced whole — header, members, tasks, milestones and its activity
/// log — by deleting it and putting PostgreSQL's version back in the same journal record.
async fn repair_json_through_server(
    data_dir: &Path,
    sides: &Sides,
    entities: &IndexMap<String, EntityResult>,
) -> Result<Vec<Change>, Failure> {
    let (ops, changes) = repair_ops(&sides.pg, &sides.json, entities);
    if ops.is_empty() {
        return Ok(changes);
    }
    crate::control::send_ops(&data_dir.join(".control.sock"), &ops).await.map_err(|(refused, e)| {
        let message = format!("repair towards JSON through the running server: {e}");
        if refused {
            Failure::usage(message)
        } else {
            Failure::other(message)
        }
    })?;
    Ok(changes)
}

/// The journal ops that make the JSON side hold PostgreSQL's version of every differing record.
fn repair_ops(pg: &State, json: &State, entities: &IndexMap<String, EntityResult>) -> (Vec<Op>, Vec<Change>) {
    let mut ops = Vec::new();
    let mut changes = Vec::new();
    let mut note = |kind: Kind, id: &str, present: bool, existed: bool| {
        let action = match (present, existed) {
            (false, _) => "delete",
            (true, false) => "insert",
            (true, true) => "overwrite",
        };
        changes.push(Change { entity: kind.name().into(), id: id.into(), action: action.into(), target: Side::Json });
    };
    let ids = |kinds: &[Kind]| -> Vec<String> {
        let mut all: Vec<String> = kinds
            .iter()
            .flat_map(|k| {
                let (a, b) = differing_json(entities, *k);
                a.into_iter().chain(b)
            })
            .collect();
        all.sort();
        all.dedup();
        all
    };
    for id in ids(&[Kind::Users]) {
        note(Kind::Users, &id, pg.users.contains_key(&id), json.users.contains_key(&id));
        ops.push(match pg.users.get(&id) {
            Some(u) => Op::PutUser { rec: (**u).clone() },
            None => Op::DelUser { id },
        });
    }
    let mut teams: Vec<String> =
        ids(&[Kind::Teams, Kind::TeamMembers]).iter().map(|i| parent_of(i).to_owned()).collect();
    teams.dedup();
    for id in teams {
        note(Kind::Teams, &id, pg.teams.contains_key(&id), json.teams.contains_key(&id));
        ops.push(match pg.teams.get(&id) {
            Some(t) => Op::PutTeam { rec: (**t).clone() },
            None => Op::DelTeam { id },
        });
    }
    let mut projects: Vec<String> = Vec::new();
    for id in ids(&[Kind::Projects, Kind::ProjectMembers]) {
        projects.push(parent_of(&id).to_owned());
    }
    for id in ids(&[Kind::Tasks, Kind::Milestones]) {
        projects.extend(owner_project(pg, &id).into_iter().chain(owner_project(json, &id)));
    }
    for id in ids(&[Kind::Activities]) {
        let present = pg.activities.values().any(|l| l.oldest_first().any(|a| a.id == id));
        let existed = json.activities.values().any(|l| l.oldest_first().any(|a| a.id == id));
        note(Kind::Activities, &id, present, existed);
        projects.extend([pg, json].iter().find_map(|s| {
            s.activities.iter().find(|(_, l)| l.oldest_first().any(|a| a.id == id)).map(|(p, _)| p.clone())
        }));
    }
    projects.sort();
    projects.dedup();
    for id in projects {
        note(Kind::Projects, &id, pg.projects.contains_key(&id), json.projects.contains_key(&id));
        ops.push(Op::DelProject { id: id.clone() });
        let Some(p) = pg.projects.get(&id) else { continue };
        ops.push(Op::put_project(p));
        for (pos, t) in p.tasks.iter().enumerate() {
            ops.push(Op::PutTask { project: id.clone(), pos, rec: (**t).clone() });
        }
        for (pos, m) in p.milestones.iter().enumerate() {
            ops.push(Op::PutMilestone { project: id.clone(), pos, rec: m.clone() });
        }
        if let Some(log) = pg.activities.get(&id) {
            ops.extend(log.oldest_first().map(|a| Op::AddActivity { rec: a.clone() }));
        }
    }
    for id in ids(&[Kind::Files]) {
        note(Kind::Files, &id, pg.files.contains_key(&id), json.files.contains_key(&id));
        ops.push(match pg.files.get(&id) {
            Some(f) => Op::PutFile { rec: (**f).clone() },
            None => Op::DelFile { id },
        });
    }
    (ops, changes)
}

fn owner_project(state: &State, child: &str) -> Option<String> {
    state
        .projects
        .values()
        .find(|p| p.tasks.iter().any(|t| t.id == child) || p.milestones.iter().any(|m| m.id == child))
        .map(|p| p.id.clone())
}

fn legacy(entity: Entity, id: &str) -> Vec<(&'static str, String, uuid::Uuid)> {
    match crate::store::postgres::ids::canonical_uuid(id) {
        Some(_) => Vec::new(),
        None => vec![(entity.as_str(), id.to_owned(), storage_id(entity, id))],
    }
}

/// PostgreSQL is the source: its version of each differing record goes into the legacy files. Only when no
/// server holds the data dir: the files are rewritten directly (atomic renames) and the journal, whose records
/// are already in the loaded state, is emptied so that nothing older is replayed over them. With a server
/// running this is refused (exit 2); going through its control socket is a later slice.
async fn repair_json(
    data_dir: &Path,
    sides: &Sides,
    entities: &IndexMap<String, EntityResult>,
) -> Result<Vec<Change>, Failure> {
    use crate::store::json::state::FileKey;
    let pg = &sides.pg;
    let lock = match super::lock_data_dir(data_dir, "repair towards JSON") {
        Ok(lock) => lock,
        // A running server owns the files: the repair goes through it (its journal), as after-images.
        Err(_) if data_dir.join(".control.sock").exists() => {
            return repair_json_through_server(data_dir, sides, entities).await
        }
        Err(e) => return Err(e),
    };
    let mut json = super::read_json(data_dir, true)?;
    let mut changes = Vec::new();
    let mut dirty: Vec<FileKey> = Vec::new();
    let note = |changes: &mut Vec<Change>, kind: Kind, id: &str, present: bool, existed: bool| {
        let action = match (present, existed) {
            (false, _) => "delete",
            (true, false) => "insert",
            (true, true) => "overwrite",
        };
        changes.push(Change { entity: kind.name().into(), id: id.into(), action: action.into(), target: Side::Json });
    };

    let (users, extra_users) = differing_json(entities, Kind::Users);
    for id in users.iter().chain(&extra_users) {
        let existed = json.users.contains_key(id);
        match pg.users.get(id) {
            Some(u) => {
                json.users.insert(id.clone(), u.clone());
            }
            None => {
                json.users.shift_remove(id);
            }
        }
        note(&mut changes, Kind::Users, id, pg.users.contains_key(id), existed);
        dirty.push(FileKey::Users);
    }
    let mut team_ids = [Kind::Teams, Kind::TeamMembers]
        .iter()
        .flat_map(|k| {
            let (a, b) = differing_json(entities, *k);
            a.into_iter().chain(b).map(|id| parent_of(&id).to_owned())
        })
        .collect::<Vec<_>>();
    team_ids.sort();
    team_ids.dedup();
    for id in &team_ids {
        let existed = json.teams.contains_key(id);
        match pg.teams.get(id) {
            Some(t) => {
                json.teams.insert(id.clone(), t.clone());
            }
            None => {
                json.teams.shift_remove(id);
            }
        }
        note(&mut changes, Kind::Teams, id, pg.teams.contains_key(id), existed);
        dirty.push(FileKey::Teams);
    }
    let mut project_ids = Vec::new();
    for kind in [Kind::Projects, Kind::ProjectMembers, Kind::Tasks, Kind::Milestones] {
        let (a, b) = differing_json(entities, kind);
        for id in a.iter().chain(&b) {
            match kind {
                Kind::Projects | Kind::ProjectMembers => project_ids.push(parent_of(id).to_owned()),
                _ => project_ids.extend(owner_project(pg, id).into_iter().chain(owner_project(&json, id))),
            }
        }
    }
    project_ids.sort();
    project_ids.dedup();
    for id in &project_ids {
        let existed = json.projects.contains_key(id);
        match pg.projects.get(id) {
            Some(p) => {
                json.projects.insert(id.clone(), p.clone());
            }
            None => {
                json.projects.shift_remove(id);
            }
        }
        note(&mut changes, Kind::Projects, id, pg.projects.contains_key(id), existed);
        dirty.push(FileKey::Projects);
    }
    let (files, extra_files) = differing_json(entities, Kind::Files);
    for id in files.iter().chain(&extra_files) {
        let existed = json.files.contains_key(id);
        match pg.files.get(id) {
            Some(f) => {
                json.files.insert(id.clone(), f.clone());
            }
            None => {
                json.files.shift_remove(id);
            }
        }
        note(&mut changes, Kind::Files, id, pg.files.contains_key(id), existed);
        dirty.push(FileKey::Files);
    }
    // An activity file is rewritten whole from PostgreSQL's list for that project.
    let (acts, extra_acts) = differing_json(entities, Kind::Activities);
    let mut logs = Vec::new();
    for id in acts.iter().chain(&extra_acts) {
        let project = [pg, &json].iter().find_map(|s| {
            s.activities.iter().find(|(_, l)| l.oldest_first().any(|a| &a.id == id)).map(|(p, _)| p.clone())
        });
        if let Some(p) = project {
            logs.push(p);
        }
        let present = pg.activities.values().any(|l| l.oldest_first().any(|a| &a.id == id));
        let existed = json.activities.values().any(|l| l.oldest_first().any(|a| &a.id == id));
        note(&mut changes, Kind::Activities, id, present, existed);
    }
    logs.sort();
    logs.dedup();
    for p in logs {
        match pg.activities.get(&p) {
            Some(l) => {
                json.activities.insert(p.clone(), l.clone());
            }
            None => {
                json.activities.remove(&p);
            }
        }
        dirty.push(FileKey::Activities(p));
    }
    dirty.sort();
    dirty.dedup();
    super::write_legacy_files(data_dir, &json, &dirty)?;
    drop(lock);
    Ok(changes)
}

/// Records to copy towards JSON: those JSON lacks or has differently, and those only JSON has (to delete).
fn differing_json(entities: &IndexMap<String, EntityResult>, kind: Kind) -> (Vec<String>, Vec<String>) {
    let Some(r) = entities.get(kind.name()) else {
        return (Vec::new(), Vec::new());
    };
    let upsert = r.missing_in_json.iter().chain(r.mismatched.iter().map(|m| &m.id)).cloned().collect();
    (upsert, r.missing_in_postgres.clone())
}
