//! `fluxstudio rollback` (cli.md §5): PostgreSQL → the legacy files, from one repeatable-read snapshot, with the
//! safety rules: never under a running server or while the persisted mode writes JSON; never over different files
//! without `--force`; a fsynced backup first; the new set staged, marked (`ROLLBACK_IN_PROGRESS`) and renamed into
//! place; the journal emptied; then the persisted mode set to `json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use super::{db_failure, sync_dir, write_atomic, Failure};
use crate::store::json::format;
use crate::store::json::state::{FileKey, State};

/// The marker of a rollback between its first rename and its end; `serve` refuses to start while it exists.
pub const MARKER: &str = "ROLLBACK_IN_PROGRESS";
const STAGING: &str = ".rollback-staging";

pub struct Options {
    pub force: bool,
    pub backup_dir: Option<PathBuf>,
    pub dry_run: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilePlan {
    pub path: String,
    pub records: u64,
    /// `write` (new or different), `unchanged`, or `remove` (an activity file of a project PostgreSQL lacks).
    pub action: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub dry_run: bool,
    pub data_dir: String,
    pub backup: Option<String>,
    pub counts: indexmap::IndexMap<String, u64>,
    pub files: Vec<FilePlan>,
    pub persisted_mode: Option<serde_json::Value>,
    /// A crashed rollback that this run completed first.
    pub resumed: bool,
    /// Files copied into the backup: (top-level files, activity files).
    #[serde(skip)]
    pub backed_up: (usize, usize),
}

impl Report {
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        if self.resumed {
            let _ = writeln!(s, "completed an interrupted rollback ({MARKER})");
        }
        if self.dry_run {
            let _ = writeln!(s, "dry run: nothing written");
            for f in &self.files {
                let _ = writeln!(s, "  {:<10}{} ({} records)", f.action, f.path, f.records);
            }
        } else if let Some(b) = &self.backup {
            let (top, act) = self.backed_up;
            let _ = writeln!(s, "backup   {b} ({top} files, {act} activity files)");
        }
        let counts: Vec<String> = self.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(s, "{}", counts.join(" · "));
        if !self.dry_run {
            let mode = self.persisted_mode.as_ref().and_then(|m| m["mode"].as_str()).unwrap_or("json");
            let _ = writeln!(s, "wrote {} (atomic); persisted mode: {mode}", self.data_dir);
            let _ = writeln!(s, "next: fluxstudio validate");
        }
        s
    }
}

/// What the marker records: the staged files and where they go, and the files to remove.
#[derive(Serialize, Deserialize)]
struct Marker {
    renames: Vec<(PathBuf, PathBuf)>,
    removes: Vec<PathBuf>,
}

/// Finishes the renames of a rollback that crashed after writing its marker (its staged files were fsynced
/// before the marker was written).
fn complete(data_dir: &Path) -> Result<bool, Failure> {
    let marker_path = data_dir.join(MARKER);
    let bytes = match std::fs::read(&marker_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Failure::other(format!("{}: {e}", marker_path.display()))),
    };
    let marker: Marker = serde_json::from_slice(&bytes).map_err(|e| {
        Failure::usage(format!("{} is unreadable ({e}); restore from the backup", marker_path.display()))
    })?;
    apply(data_dir, &marker)?;
    Ok(true)
}

fn apply(data_dir: &Path, marker: &Marker) -> Result<(), Failure> {
    let io = |p: &Path, e: std::io::Error| Failure::other(format!("{}: {e}", p.display()));
    for (staged, target) in &marker.renames {
        if staged.exists() {
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            }
            std::fs::rename(staged, target).map_err(|e| io(target, e))?;
        }
    }
    for path in &marker.removes {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(path, e)),
        }
    }
    sync_dir(data_dir)?;
    let act = format::activities_dir(data_dir);
    if act.is_dir() {
        sync_dir(&act)?;
    }
    // Older journal records must not be replayed over the exported files.
    super::empty_journal(data_dir)?;
    let _ = std::fs::remove_dir_all(data_dir.join(STAGING));
    std::fs::remove_file(data_dir.join(MARKER)).map_err(|e| io(&data_dir.join(MARKER), e))?;
    sync_dir(data_dir)
}

fn records_in(path: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(path) else { return 0 };
    let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return 0 };
    m.values().next().and_then(|v| v.as_array()).map_or(0, |a| a.len() as u64)
}

fn relative(data_dir: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(data_dir).map(Path::to_path_buf).unwrap_or_else(|_| path.to_path_buf())
}

fn copy_synced(from: &Path, to: &Path) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::other(format!("backup {} -> {}: {e}", from.display(), to.display()));
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::copy(from, to).map_err(io)?;
    std::fs::File::open(to).and_then(|f| f.sync_all()).map_err(io)
}

/// Rule 1's second half: the persisted mode (the `store_state` row, or `.store-state.json` in the data dir) must
/// not be one that writes JSON — the online path for those is `store switch`.
async fn check_mode(conn: &mut PgConnection, data_dir: &Path) -> Result<(), Failure> {
    let pg = super::persisted_mode(conn).await?;
    let file = std::fs::read(data_dir.join(".store-state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["mode"].as_str().map(str::to_owned));
    let persisted = if pg.present { Some(pg.mode) } else { file };
    match persisted.as_deref() {
        Some(m @ ("json" | "dual-json" | "dual-postgres")) => Err(Failure::usage(format!(
            "rollback refused: the persisted store mode is {m}, which writes the JSON files; use `fluxstudio store \
             switch` for the online path"
        ))),
        _ => Ok(()),
    }
}

/// Writes `state` as the legacy files of `data_dir` (rules 2-4: `--force` over different files, backup first,
/// staged + marked + renamed, journal emptied). The caller holds the data dir (the CLI's lock, or the server that
/// owns it during `postgres -> dual-postgres`).
pub fn write_state(data_dir: &Path, state: &State, opts: &Options) -> Result<Report, Failure> {
    let resumed = false;
    let mut keys = vec![FileKey::Users, FileKey::Projects, FileKey::Teams, FileKey::Files];
    let mut pids: Vec<&String> = state.activities.keys().collect();
    pids.sort();
    keys.extend(pids.into_iter().map(|p| FileKey::Activities(p.clone())));
    // Activity files of projects PostgreSQL does not have: after a rollback the files are PostgreSQL's state.
    let mut removes = Vec::new();
    if let Ok(entries) = std::fs::read_dir(format::activities_dir(data_dir)) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_suffix(".json").filter(|_| !name.starts_with('.')) {
                if !state.activities.contains_key(pid) {
                    removes.push(e.path());
                }
            }
        }
    }
    removes.sort();

    let mut files = Vec::new();
    let mut writes = Vec::new();
    for key in &keys {
        let path = format::path_of(data_dir, key);
        let Some(bytes) = format::render(state, key) else { continue };
        let records = match key {
            FileKey::Users => state.users.len(),
            FileKey::Projects => state.projects.len(),
            FileKey::Teams => state.teams.len(),
            FileKey::Files => state.files.len(),
            FileKey::Activities(p) => state.activities.get(p).map_or(0, |l| l.len()),
        } as u64;
        let same = std::fs::read(&path).is_ok_and(|old| old == bytes);
        let action = if same { "unchanged" } else { "write" };
        files.push(FilePlan { path: relative(data_dir, &path).display().to_string(), records, action: action.into() });
        if !same {
            writes.push((path, bytes));
        }
    }
    for path in &removes {
        files.push(FilePlan {
            path: relative(data_dir, path).display().to_string(),
            records: records_in(path),
            action: "remove".into(),
        });
    }
    let activities: u64 = state.activities.values().map(|l| l.len() as u64).sum();
    let tasks: u64 = state.projects.values().map(|p| p.tasks.len() as u64).sum();
    let milestones: u64 = state.projects.values().map(|p| p.milestones.len() as u64).sum();
    let counts = indexmap::IndexMap::from([
        ("users".to_owned(), state.users.len() as u64),
        ("teams".to_owned(), state.teams.len() as u64),
        ("projects".to_owned(), state.projects.len() as u64),
        ("tasks".to_owned(), tasks),
        ("milestones".to_owned(), milestones),
        ("files".to_owned(), state.files.len() as u64),
        ("activities".to_owned(), activities),
    ]);
    let mut report = Report {
        dry_run: opts.dry_run,
        data_dir: data_dir.display().to_string(),
        backup: None,
        counts,
        files,
        persisted_mode: None,
        resumed,
        backed_up: (0, 0),
    };
    if opts.dry_run {
        return Ok(report);
    }

    // Rule 2: existing files that would change are replaced only with --force.
    let replaced: Vec<&PathBuf> = writes.iter().map(|(p, _)| p).filter(|p| p.exists()).chain(removes.iter()).collect();
    if !replaced.is_empty() && !opts.force {
        let list: Vec<String> =
            replaced.iter().map(|p| format!("  {} ({} records)", p.display(), records_in(p))).collect();
        return Err(Failure::usage(format!(
            "rollback refused: these files exist and differ from PostgreSQL's data; rerun with --force to replace \
             them (they are backed up first):\n{}",
            list.join("\n")
        )));
    }

    // Rule 3: every existing target file is copied and fsynced before anything is replaced.
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let backup = opts.backup_dir.clone().unwrap_or_else(|| data_dir.join("backups").join(format!("rollback-{stamp}")));
    let existing: Vec<PathBuf> = keys
        .iter()
        .map(|k| format::path_of(data_dir, k))
        .chain(removes.iter().cloned())
        .filter(|p| p.exists())
        .collect();
    for path in &existing {
        copy_synced(path, &backup.join(relative(data_dir, path)))?;
    }
    std::fs::create_dir_all(&backup).map_err(|e| Failure::other(format!("{}: {e}", backup.display())))?;
    sync_dir(&backup)?;
    if backup.join("data/activities").is_dir() {
        sync_dir(&backup.join("data/activities"))?;
    }
    report.backup = Some(backup.display().to_string());
    let act_dir = format::activities_dir(data_dir);
    let activity_files = existing.iter().filter(|p| p.starts_with(&act_dir)).count();
    report.backed_up = (existing.len() - activity_files, activity_files);

    // Rule 4: stage, mark, rename, empty the journal, unmark.
    let staging = data_dir.join(STAGING);
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| Failure::other(format!("{}: {e}", staging.display())))?;
    let mut renames = Vec::new();
    for (i, (path, bytes)) in writes.iter().enumerate() {
        let staged = staging.join(format!("{i}.json"));
        crate::store::json::fs::Fs::default()
            .write_synced(&staged, bytes)
            .map_err(|e| Failure::other(format!("{}: {e}", staged.display())))?;
        renames.push((staged, path.clone()));
    }
    if staging.is_dir() {
        sync_dir(&staging)?;
    }
    let marker = Marker { renames, removes };
    write_atomic(&data_dir.join(MARKER), &serde_json::to_vec(&marker).unwrap_or_default())?;
    apply(data_dir, &marker)?;

    Ok(report)
}

/// `postgres -> dual-postgres`, live or offline: one repeatable-read snapshot of PostgreSQL written into the files
/// of `data_dir` (existing files backed up under `backups/export-<UTC>/`), then the `store_outbox` entries pending in
/// that same snapshot marked done: the files already hold their writes, and replaying them could only repeat older
/// after-images. The caller owns the data dir.
pub async fn export_for_dual_postgres(conn: &mut PgConnection, data_dir: &Path) -> Result<Report, Failure> {
    let (state, included) = super::validate::pg_state_and_pending(conn).await?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let opts = Options {
        force: true,
        backup_dir: Some(data_dir.join("backups").join(format!("export-{stamp}"))),
        dry_run: false,
    };
    let dir = data_dir.to_path_buf();
    let report = tokio::task::spawn_blocking(move || write_state(&dir, &state, &opts))
        .await
        .map_err(|e| Failure::other(e.to_string()))??;
    sqlx::query("update store_outbox set done_at = now() where seq = any($1)")
        .bind(&included)
        .execute(&mut *conn)
        .await
        .map_err(db_failure)?;
    Ok(report)
}

pub async fn run(conn: &mut PgConnection, data_dir: &Path, opts: &Options) -> Result<Report, Failure> {
    let _lock = super::lock_data_dir(data_dir, "rollback")?;
    let resumed = complete(data_dir)?;
    check_mode(conn, data_dir).await?;
    let state: State = super::validate::pg_state(conn).await?;
    let mut report = write_state(data_dir, &state, opts)?;
    report.resumed = resumed;
    if opts.dry_run {
        return Ok(report);
    }

    // Rule 5: the persisted mode is json, in the database and in the data dir.
    let epoch: i64 = sqlx::query_scalar(
        "insert into store_state (mode, epoch, changed_at, changed_by) values ('json', 1, now(), 'rollback') \
         on conflict (singleton) do update set mode = 'json', epoch = store_state.epoch + 1, changed_at = now(), \
           changed_by = 'rollback', validated_at = null, validated_epoch = null \
         returning epoch",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(db_failure)?;
    // The server's own persisted-mode record, so that `serve` reads it back (it wins over FLUX_STORE).
    let persisted = crate::store::modes::PersistedMode {
        mode: crate::config::StoreMode::Json,
        epoch: epoch.max(0) as u64,
        since: crate::domain::time::now(),
        pg_stale: false,
        json_frozen_at: None,
    };
    persisted
        .write(data_dir)
        .map_err(|e| Failure::other(format!("{}: {e}", data_dir.join(".store-state.json").display())))?;
    report.persisted_mode = serde_json::to_value(&persisted).ok();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_rollback_is_completed_from_its_marker() {
        let dir = tempfile::TempDir::new().unwrap();
        let data = dir.path();
        std::fs::create_dir_all(data.join(STAGING)).unwrap();
        std::fs::create_dir_all(data.join("journal")).unwrap();
        std::fs::write(data.join("journal/0000000000000001.wal"), "old record\n").unwrap();
        std::fs::write(data.join("users.json"), "old").unwrap();
        std::fs::write(data.join(STAGING).join("0.json"), "new").unwrap();
        std::fs::create_dir_all(format::activities_dir(data)).unwrap();
        let stale = format::activities_dir(data).join("gone.json");
        std::fs::write(&stale, "{}").unwrap();
        let marker = Marker {
            renames: vec![(data.join(STAGING).join("0.json"), data.join("users.json"))],
            removes: vec![stale.clone()],
        };
        std::fs::write(data.join(MARKER), serde_json::to_vec(&marker).unwrap()).unwrap();

        assert!(complete(data).unwrap());
        assert_eq!(std::fs::read_to_string(data.join("users.json")).unwrap(), "new");
        assert!(!stale.exists());
        assert!(!data.join(MARKER).exists());
        assert!(!data.join(STAGING).exists());
        assert_eq!(std::fs::read_dir(data.join("journal")).unwrap().count(), 0, "no older record is replayed");
        assert!(!complete(data).unwrap(), "nothing left to complete");
    }
}
