//! Schema migrations (`fluxstudio db migrate`, and `serve` at start) and the health report of `fluxstudio db check`
//! (cli.md §6).
//!
//! Concurrency: sqlx's migrator takes a session-level `pg_advisory_lock` (keyed on the database name) before it
//! even creates its bookkeeping table and applies each migration in its own transaction; we run it on a dedicated
//! connection that is closed afterwards, because the migrator does not release its lock when a migration fails and
//! a pooled connection would carry the lock on. Around it we hold a second advisory lock of our own, so that the
//! "applied before / applied after" comparison that tells which migrations *this* call applied cannot be confused
//! by another instance migrating at the same moment.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use sqlx::migrate::MigrateError;
use sqlx::{Connection, PgConnection};

use super::{version_label, ConnectErrorClass, PgError, PostgresStore, MIGRATOR};

/// The 21 seed indexes of data-model.md §9.2, by table, in the spec's order.
pub const SEED_INDEXES: [(&str, &str); 21] = [
    ("users", "users_email_key"),
    ("users", "idx_users_oauth"),
    ("users", "idx_users_created_at"),
    ("projects", "idx_projects_manager"),
    ("projects", "idx_projects_team"),
    ("projects", "idx_projects_organization"),
    ("projects", "idx_projects_status"),
    ("projects", "idx_projects_created_at"),
    ("project_members", "project_members_project_user_key"),
    ("project_members", "idx_project_members_user"),
    ("project_members", "idx_project_members_role"),
    ("tasks", "idx_tasks_project_position"),
    ("tasks", "idx_tasks_project_status"),
    ("tasks", "idx_tasks_assigned_to"),
    ("tasks", "idx_tasks_due_date"),
    ("milestones", "idx_milestones_project_order"),
    ("milestones", "idx_milestones_due_date"),
    ("activities", "idx_activities_project_timestamp"),
    ("activities", "idx_activities_user"),
    ("activities", "idx_activities_entity"),
    ("activities", "idx_activities_organization"),
];

const SEED_TABLES: [&str; 6] = ["users", "projects", "project_members", "tasks", "milestones", "activities"];

/// Our own lock around a migrate call (distinct from sqlx's key): "flux" "migr" in ASCII.
const MIGRATE_LOCK_KEY: i64 = 0x666c_7578_6d69_6772;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationInfo {
    pub version: i64,
    pub description: String,
}

impl fmt::Display for MigrationInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04} {}", self.version, self.description)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateReport {
    /// Applied by this call, in order. Empty when the schema was already current (`schema current, nothing to apply`).
    pub applied: Vec<MigrationInfo>,
    /// Total applied migrations after the call.
    pub total_applied: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectFailure {
    pub class: ConnectErrorClass,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub min_connections: u32,
    pub idle_timeout: Duration,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
    pub max_lifetime: Duration,
}

/// Everything `fluxstudio db check` prints; [`CheckReport::exit_code`] is its exit status.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// The URL with the password redacted.
    pub target: String,
    /// `Some` when no connection could be made (exit 3).
    pub connect_error: Option<ConnectFailure>,
    pub server_version_num: Option<u32>,
    /// `PostgreSQL 13.11 is not supported: …` for a server older than 14.
    pub unsupported: Option<String>,
    /// Median of 5 `select 1` round trips.
    pub latency: Option<Duration>,
    pub tls: Option<bool>,
    pub applied: Vec<MigrationInfo>,
    pub pending: Vec<MigrationInfo>,
    /// Versions recorded in the database that this binary does not know (a newer binary migrated it).
    pub unknown_applied: Vec<i64>,
    /// A migration recorded as failed (`success = false`): the schema needs an operator.
    pub dirty: Option<i64>,
    pub indexes_present: Vec<&'static str>,
    pub indexes_missing: Vec<&'static str>,
    /// Further (non-primary-key) indexes on the six seed tables, reported separately (data-model.md §9.2).
    pub extra_indexes: Vec<String>,
    pub pool: PoolSettings,
    pub read_pool_configured: bool,
    /// An error met after connecting (a query failed); the report is then incomplete.
    pub error: Option<String>,
}

impl CheckReport {
    /// 0 when reachable, supported and current; 1 when reachable but not (pending migrations, a missing index, an
    /// old server); 3 when it cannot connect (cli.md §6).
    pub fn exit_code(&self) -> i32 {
        if self.connect_error.is_some() {
            3
        } else if self.is_ok() {
            0
        } else {
            1
        }
    }

    pub fn is_ok(&self) -> bool {
        self.connect_error.is_none()
            && self.unsupported.is_none()
            && self.error.is_none()
            && self.dirty.is_none()
            && self.pending.is_empty()
            && self.indexes_missing.is_empty()
    }
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || s == 0 {
        return format!("{} ms", d.as_millis());
    }
    match (s % 3600, s % 60) {
        (0, _) => format!("{} h", s / 3600),
        (_, 0) => format!("{} min", s / 60),
        _ => format!("{s} s"),
    }
}

/// The text form of cli.md §6.
impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tls = match self.tls {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown",
        };
        writeln!(f, "target     {}  (tls: {tls})", self.target)?;
        if let Some(e) = &self.connect_error {
            writeln!(f, "error      cannot connect: {}: {}", e.class, e.message)?;
            return write!(f, "UNREACHABLE");
        }
        if let Some(n) = self.server_version_num {
            match &self.unsupported {
                Some(_) => writeln!(
                    f,
                    "server     PostgreSQL {} — not supported: fluxstudio needs PostgreSQL 14 or newer",
                    version_label(n)
                )?,
                None => writeln!(f, "server     PostgreSQL {}", version_label(n))?,
            }
        }
        if let Some(l) = self.latency {
            writeln!(f, "latency    {:.2} ms (median of 5)", l.as_secs_f64() * 1000.0)?;
        }
        let state = if self.pending.is_empty() { "current" } else { "migrations pending" };
        writeln!(f, "schema     {} applied, {} pending ({state})", self.applied.len(), self.pending.len())?;
        for m in &self.pending {
            writeln!(f, "           pending {m}")?;
        }
        if let Some(v) = self.dirty {
            writeln!(f, "           migration {v} is recorded as failed")?;
        }
        writeln!(f, "indexes    {}/{} seed indexes present", self.indexes_present.len(), SEED_INDEXES.len())?;
        // On an empty database every index is missing; naming them all would bury the "pending" line.
        if !self.indexes_present.is_empty() {
            for i in &self.indexes_missing {
                writeln!(f, "           missing {i}")?;
            }
        }
        if !self.extra_indexes.is_empty() {
            writeln!(f, "           further indexes: {}", self.extra_indexes.join(", "))?;
        }
        let p = &self.pool;
        let statement =
            if p.statement_timeout.is_zero() { "off".to_owned() } else { fmt_duration(p.statement_timeout) };
        writeln!(
            f,
            "pool       max {}, min {}, idle timeout {}, acquire timeout {}, statement timeout {statement}, max lifetime {}",
            p.max_connections,
            p.min_connections,
            fmt_duration(p.idle_timeout),
            fmt_duration(p.acquire_timeout),
            fmt_duration(p.max_lifetime)
        )?;
        let read = if self.read_pool_configured { "configured" } else { "not configured (DATABASE_READ_URL)" };
        writeln!(f, "read pool  {read}")?;
        if let Some(e) = &self.error {
            writeln!(f, "error      {e}")?;
        }
        write!(f, "{}", if self.is_ok() { "OK" } else { "NOT OK" })
    }
}

/// The embedded migrations, in order.
pub fn embedded() -> Vec<MigrationInfo> {
    MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| MigrationInfo { version: m.version, description: m.description.to_string() })
        .collect()
}

struct Applied {
    versions: Vec<i64>,
    dirty: Option<i64>,
}

/// What `_sqlx_migrations` records (nothing when the table does not exist yet).
async fn applied(conn: &mut PgConnection) -> Result<Applied, sqlx::Error> {
    let exists: Option<String> =
        sqlx::query_scalar("select to_regclass('_sqlx_migrations')::text").fetch_one(&mut *conn).await?;
    if exists.is_none() {
        return Ok(Applied { versions: vec![], dirty: None });
    }
    let rows: Vec<(i64, bool)> =
        sqlx::query_as("select version, success from _sqlx_migrations order by version").fetch_all(&mut *conn).await?;
    Ok(Applied {
        versions: rows.iter().filter(|r| r.1).map(|r| r.0).collect(),
        dirty: rows.iter().find(|r| !r.1).map(|r| r.0),
    })
}

fn db_error(e: sqlx::Error) -> PgError {
    PgError::Database(e.to_string())
}

impl PostgresStore {
    /// Applies the pending migrations in order, each in its own transaction, under an advisory lock; a no-op when
    /// the schema is current. Safe to call from several instances at once.
    pub async fn migrate(&self) -> Result<MigrateReport, PgError> {
        let mut conn = self.direct_connection().await?;
        let result = self.migrate_on(&mut conn).await;
        // Closing the session releases every advisory lock it still holds, also after a failed migration.
        let _ = conn.close().await;
        if result.is_ok() {
            // A store that came up before the schema existed could not load the legacy ids yet.
            if let Err(e) = self.reload_legacy_ids().await {
                tracing::warn!(target: "fluxstudio::store", "legacy ids not loaded after migrate: {e}");
            }
        }
        result
    }

    async fn migrate_on(&self, conn: &mut PgConnection) -> Result<MigrateReport, PgError> {
        sqlx::query("select pg_advisory_lock($1)")
            .bind(MIGRATE_LOCK_KEY)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        let before: HashSet<i64> = applied(conn).await.map_err(db_error)?.versions.into_iter().collect();
        if let Err(e) = MIGRATOR.run(&mut *conn).await {
            return Err(match e {
                MigrateError::Execute(inner) => PgError::Database(inner.to_string()),
                MigrateError::ExecuteMigration(inner, version) => PgError::Migration {
                    version,
                    description: embedded()
                        .into_iter()
                        .find(|m| m.version == version)
                        .map(|m| m.description)
                        .unwrap_or_default(),
                    message: inner.to_string(),
                },
                other => PgError::Database(other.to_string()),
            });
        }
        let after = applied(conn).await.map_err(db_error)?.versions;
        // Indexes a backfill dropped to build after its load and could not rebuild (it was interrupted): back
        // before anything serves from the tables again.
        let restored = super::deferred::restore(conn).await.map_err(db_error)?;
        if !restored.is_empty() {
            tracing::warn!(
                target: "fluxstudio::store",
                "recreated indexes an interrupted migrate had deferred: {}",
                restored.join(", ")
            );
        }
        sqlx::query("select pg_advisory_unlock($1)")
            .bind(MIGRATE_LOCK_KEY)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        let applied_now =
            embedded().into_iter().filter(|m| after.contains(&m.version) && !before.contains(&m.version)).collect();
        Ok(MigrateReport { applied: applied_now, total_applied: after.len() })
    }

    /// The migrations `migrate` would apply (`db migrate --dry-run`).
    pub async fn pending_migrations(&self) -> Result<Vec<MigrationInfo>, PgError> {
        let mut conn = self.direct_connection().await?;
        let result = applied(&mut conn).await.map_err(db_error);
        let _ = conn.close().await;
        let done = result?.versions;
        Ok(embedded().into_iter().filter(|m| !done.contains(&m.version)).collect())
    }

    /// `fluxstudio db check`: never fails; everything it finds is in the report.
    pub async fn check(&self) -> CheckReport {
        let o = &self.opts;
        let mut report = CheckReport {
            target: self.target(),
            connect_error: None,
            server_version_num: None,
            unsupported: None,
            latency: None,
            tls: None,
            applied: vec![],
            pending: vec![],
            unknown_applied: vec![],
            dirty: None,
            indexes_present: vec![],
            indexes_missing: vec![],
            extra_indexes: vec![],
            pool: PoolSettings {
                max_connections: o.max_connections,
                min_connections: o.min_connections,
                idle_timeout: o.idle_timeout,
                acquire_timeout: o.acquire_timeout,
                statement_timeout: o.statement_timeout,
                max_lifetime: o.max_lifetime,
            },
            read_pool_configured: o.read_url.is_some(),
            error: None,
        };
        let mut conn = match self.direct_connection().await {
            Ok(c) => c,
            Err(PgError::Unsupported(message)) => {
                // Reachable but too old: the version is all there is to report.
                report.unsupported = Some(message);
                report.server_version_num = self.probe_version().await;
                return report;
            }
            Err(PgError::Unreachable { class, message, .. }) => {
                report.connect_error = Some(ConnectFailure { class, message });
                return report;
            }
            Err(e) => {
                report.connect_error = Some(ConnectFailure { class: ConnectErrorClass::Other, message: e.to_string() });
                return report;
            }
        };
        if let Err(e) = fill_check(&mut conn, &mut report).await {
            report.error = Some(e.to_string());
        }
        let _ = conn.close().await;
        report
    }

    async fn probe_version(&self) -> Option<u32> {
        use sqlx::ConnectOptions;
        let conn = tokio::time::timeout(self.opts.acquire_timeout, self.direct.connect()).await.ok()?.ok()?;
        let n = conn.server_version_num();
        let _ = conn.close().await;
        n
    }
}

async fn fill_check(conn: &mut PgConnection, report: &mut CheckReport) -> Result<(), sqlx::Error> {
    let num: String = sqlx::query_scalar("select current_setting('server_version_num')").fetch_one(&mut *conn).await?;
    report.server_version_num = num.trim().parse().ok();

    let mut samples = Vec::with_capacity(5);
    for _ in 0..5 {
        let start = Instant::now();
        sqlx::query("select 1").execute(&mut *conn).await?;
        samples.push(start.elapsed());
    }
    samples.sort();
    report.latency = Some(samples[2]);

    report.tls = sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        .fetch_optional(&mut *conn)
        .await?;

    let applied = applied(conn).await?;
    let embedded = embedded();
    report.dirty = applied.dirty;
    report.applied = embedded.iter().filter(|m| applied.versions.contains(&m.version)).cloned().collect();
    report.pending = embedded.iter().filter(|m| !applied.versions.contains(&m.version)).cloned().collect();
    report.unknown_applied =
        applied.versions.iter().copied().filter(|v| !embedded.iter().any(|m| m.version == *v)).collect();

    let tables: Vec<String> = SEED_TABLES.iter().map(|t| t.to_string()).collect();
    let found: Vec<(String, String, bool)> = sqlx::query_as(
        "select i.relname::text, t.relname::text, x.indisprimary \
         from pg_index x \
         join pg_class i on i.oid = x.indexrelid \
         join pg_class t on t.oid = x.indrelid \
         join pg_namespace n on n.oid = t.relnamespace \
         where n.nspname = current_schema() and t.relname = any($1) \
         order by t.relname, i.relname",
    )
    .bind(&tables)
    .fetch_all(&mut *conn)
    .await?;
    for (table, index) in SEED_INDEXES {
        if found.iter().any(|(i, t, _)| i == index && t == table) {
            report.indexes_present.push(index);
        } else {
            report.indexes_missing.push(index);
        }
    }
    report.extra_indexes = found
        .into_iter()
        .filter(|(i, _, primary)| !primary && !SEED_INDEXES.iter().any(|(_, s)| s == i))
        .map(|(i, t, _)| format!("{t}.{i}"))
        .collect();
    Ok(())
}
