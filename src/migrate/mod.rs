//! The migration toolkit (cli.md §3–5): `fluxstudio migrate` (backfill JSON → PostgreSQL), `validate` (compare
//! both ways, optionally repair) and `rollback` (PostgreSQL → legacy files). All three read records through the one
//! mapping of `store::postgres::mapping` and the JSON store's own loader, so that "what migrate writes", "what
//! validate compares" and "what the stores serve" cannot drift apart.

pub mod backfill;
pub mod flat;
pub mod rollback;
pub mod validate;

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::store::json::lock::{DataDirLock, LockError};
use crate::store::json::state::{ActivityLog, Dirty, FileKey, State};
use crate::store::json::{format, fs::Fs, journal};
use crate::store::postgres::bulk::Snapshot;
use crate::store::postgres::{PgError, PostgresStore};

/// The nine entities migrate and validate report on, in migrate's order (cli.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Users,
    Teams,
    TeamMembers,
    Projects,
    ProjectMembers,
    Tasks,
    Milestones,
    Files,
    Activities,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Users,
        Kind::Teams,
        Kind::TeamMembers,
        Kind::Projects,
        Kind::ProjectMembers,
        Kind::Tasks,
        Kind::Milestones,
        Kind::Files,
        Kind::Activities,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Users => "users",
            Kind::Teams => "teams",
            Kind::TeamMembers => "team_members",
            Kind::Projects => "projects",
            Kind::ProjectMembers => "project_members",
            Kind::Tasks => "tasks",
            Kind::Milestones => "milestones",
            Kind::Files => "files",
            Kind::Activities => "activities",
        }
    }

    /// `--only users,teams,…`: `teams` includes its members (they are part of the team records); an unknown name
    /// is a usage error naming the accepted ones.
    pub fn parse_list(list: Option<&str>) -> Result<Vec<Kind>, Failure> {
        let Some(list) = list else {
            return Ok(Kind::ALL.to_vec());
        };
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let kinds: &[Kind] = match name {
                "teams" => &[Kind::Teams, Kind::TeamMembers],
                other => match Kind::ALL.iter().find(|k| k.name() == other) {
                    Some(k) => std::slice::from_ref(k),
                    None => {
                        return Err(Failure::usage(format!(
                            "--only: unknown entity {other:?}; expected a comma list of {}",
                            Kind::ALL.map(Kind::name).join(", ")
                        )))
                    }
                },
            };
            out.extend_from_slice(kinds);
        }
        if out.is_empty() {
            return Err(Failure::usage("--only: no entity named".into()));
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// A command that cannot run or finish, with its exit code (cli.md §1: 2 usage/configuration, 3 unreachable, 1
/// anything else).
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn usage(message: String) -> Failure {
        Failure { code: 2, message }
    }
    pub fn other(message: impl Into<String>) -> Failure {
        Failure { code: 1, message: message.into() }
    }
}

impl From<PgError> for Failure {
    fn from(e: PgError) -> Failure {
        let code = match e {
            PgError::Unreachable { .. } => 3,
            PgError::Unsupported(_) | PgError::InvalidUrl(_) | PgError::InvalidCaCert(_) => 2,
            _ => 1,
        };
        Failure { code, message: e.to_string() }
    }
}

/// A statement failed: a lost connection is exit 3 (cli.md: "PostgreSQL unreachable"), anything else 1.
pub fn db_failure(e: sqlx::Error) -> Failure {
    let unreachable = matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed)
        || matches!(&e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("28")));
    Failure { code: if unreachable { 3 } else { 1 }, message: format!("PostgreSQL: {e}") }
}

/// Connects (exit 3 when unreachable, 2 for a server older than 14 or a bad URL) and brings the schema up to date
/// (idempotent and advisory-locked, like `db migrate`), so that the tools can run on a fresh database.
pub async fn connect(cfg: &Config) -> Result<PostgresStore, Failure> {
    let Some(opts) = crate::app::pg_options(cfg) else {
        return Err(Failure::usage(
            "no database configured: set DATABASE_URL (or DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD)".into(),
        ));
    };
    let store = PostgresStore::connect(opts).await?;
    store.migrate().await?;
    Ok(store)
}

/// The persisted store mode (store-modes.md §5): the `store_state` row when there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistedMode {
    pub mode: String,
    pub epoch: i64,
    /// Whether the row exists (a fresh database has none; json/epoch 0 is then assumed).
    pub present: bool,
}

pub async fn persisted_mode(conn: &mut sqlx::PgConnection) -> Result<PersistedMode, Failure> {
    let row: Option<(String, i64)> =
        sqlx::query_as("select mode, epoch from store_state").fetch_optional(conn).await.map_err(db_failure)?;
    Ok(match row {
        Some((mode, epoch)) => PersistedMode { mode, epoch, present: true },
        None => PersistedMode { mode: "json".into(), epoch: 0, present: false },
    })
}

/// Takes the data dir lock for a command that writes the legacy files itself; refused (exit 2, naming the pid)
/// while a server holds it.
pub fn lock_data_dir(data_dir: &Path, what: &str) -> Result<DataDirLock, Failure> {
    std::fs::create_dir_all(data_dir).map_err(|e| Failure::usage(format!("{}: {e}", data_dir.display())))?;
    DataDirLock::acquire(data_dir).map_err(|e| match e {
        LockError::Held { dir, pid } => Failure::usage(format!(
            "{what} refused: a running fluxstudio server (pid {pid}) holds the data dir {dir} (.lock); stop it first"
        )),
        other => Failure::usage(other.to_string()),
    })
}

/// The JSON side as the store would serve it: the legacy files plus every journal record not yet compacted into
/// them (after an unclean stop, or while a dual-json server runs). Read-only: when no server holds the data dir,
/// the lock is held for the read; when a server holds it, its files and journal are read as they are.
pub fn load_json(data_dir: &Path) -> Result<State, Failure> {
    if data_dir.exists() && !DataDirLock::is_held(data_dir) {
        let _lock = lock_data_dir(data_dir, "reading the JSON data")?;
        read_json(data_dir, true)
    } else {
        read_json(data_dir, false)
    }
}

/// As [`load_json`]; `locked` says the caller holds the data dir lock, which allows completing an interrupted
/// compaction first (as every command that opens the data dir must, data-model.md §1).
pub fn read_json(data_dir: &Path, locked: bool) -> Result<State, Failure> {
    let corrupt = |e: String| Failure::usage(format!("cannot read the JSON data: {e}"));
    let journal_dir = data_dir.join("journal");
    if locked {
        if let Some(marker) = journal::read_marker(&journal_dir).map_err(|e| corrupt(e.to_string()))? {
            journal::finish_compaction(&Fs::default(), data_dir, &journal_dir, &marker)
                .map_err(|e| corrupt(format!("completing an interrupted compaction: {e}")))?;
        }
    }
    let mut state = format::load_state(data_dir).map_err(|e| corrupt(e.to_string()))?;
    if journal_dir.is_dir() {
        let base = journal::read_base(&journal_dir).map_err(|e| corrupt(e.to_string()))?;
        let mut dirty = Dirty::new();
        for record in journal::read_all(&journal_dir, base).map_err(|e| corrupt(e.to_string()))? {
            for op in &record.ops {
                state.apply(op, &mut dirty);
            }
        }
    }
    Ok(state)
}

fn io_failure(path: &Path, e: std::io::Error) -> Failure {
    Failure::other(format!("{}: {e}", path.display()))
}

/// fsync of a directory, so that renames and removals in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), Failure> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| io_failure(dir, e))
}

/// Writes `bytes` to `path` through a fsynced temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_failure(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    Fs::default().write_synced(&tmp, bytes).map_err(|e| io_failure(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_failure(path, e))?;
    sync_dir(dir)
}

/// Removes every journal segment. Only for a caller that holds the lock and has just written a state that
/// already contains them: a record replayed later would otherwise overwrite newer file content.
pub fn empty_journal(data_dir: &Path) -> Result<(), Failure> {
    let dir = data_dir.join("journal");
    if !dir.is_dir() {
        return Ok(());
    }
    for (_, path) in journal::list_segments(&dir).map_err(|e| io_failure(&dir, e))? {
        std::fs::remove_file(&path).map_err(|e| io_failure(&path, e))?;
    }
    sync_dir(&dir)
}

/// Rewrites the given legacy files from `state` (each atomically; an activity file whose project has no log is
/// removed), then empties the journal. The caller holds the data dir lock.
pub fn write_legacy_files(data_dir: &Path, state: &State, keys: &[FileKey]) -> Result<(), Failure> {
    for key in keys {
        let path = format::path_of(data_dir, key);
        match format::render(state, key) {
            Some(bytes) => write_atomic(&path, &bytes)?,
            None => match std::fs::remove_file(&path) {
                Ok(()) => sync_dir(path.parent().unwrap_or(data_dir))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_failure(&path, e)),
            },
        }
    }
    empty_journal(data_dir)
}

/// A PostgreSQL export as the JSON store's in-memory state (file order = the export's order).
pub fn state_of(snapshot: Snapshot) -> State {
    let mut state = State {
        users: snapshot.users.into_iter().map(|u| (u.id.clone(), Arc::new(u))).collect(),
        teams: snapshot.teams.into_iter().map(|t| (t.id.clone(), Arc::new(t))).collect(),
        projects: snapshot.projects.into_iter().map(|p| (p.id.clone(), Arc::new(p))).collect(),
        files: snapshot.files.into_iter().map(|f| (f.id.clone(), Arc::new(f))).collect(),
        ..State::default()
    };
    let mut logs: std::collections::HashMap<String, Vec<_>> = std::collections::HashMap::new();
    // An orphan migrated with `--include-orphans` has no project, hence no activity file to go back to.
    for a in snapshot.activities.into_iter().filter(|a| !a.project_id.is_empty()) {
        logs.entry(a.project_id.clone()).or_default().push(a);
    }
    state.activities =
        logs.into_iter().map(|(pid, list)| (pid, Arc::new(ActivityLog::from_oldest_first(list)))).collect();
    state
}

/// Seconds with two decimals, as the reports print durations.
pub fn seconds(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

/// `value` cut to 80 characters for display (cli.md §4).
pub fn cut(value: &str) -> String {
    if value.chars().count() <= 80 {
        value.to_owned()
    } else {
        format!("{}…", value.chars().take(79).collect::<String>())
    }
}
