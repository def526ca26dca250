//! The PostgreSQL store: [`Store`](crate::store::Store) on PostgreSQL 14+ through sqlx, with the embedded,
//! forward-only schema migrations of `migrations/` (data-model.md §9).
//!
//! Behaviour is the JSON store's, call for call: the same records, the same order, the same errors and the same
//! activity records. The domain rules live in `crate::domain::ops`; this module loads the current state inside a
//! transaction, applies those functions, and writes the rows that changed.
//!
//! * Ids: public ids are strings; storage ids are UUIDs (see [`ids`]). Translation happens at this boundary.
//! * Reads: a project is one statement (children aggregated as `jsonb`), so it is one round trip and one snapshot.
//! * Writes: one transaction per trait call; project-scoped writes lock the project row first (`for update`), which
//!   serialises them per project exactly where the JSON store relies on its single writer (positions, member
//!   lists, the last-owner rule, progress).
//! * Availability: the pool is lazy, so the server starts while PostgreSQL is down and recovers by itself; every
//!   connection failure or timeout is `StoreError::Unavailable` (503 `store_unavailable`).
//! * SQL: every statement is a `&'static str` with bind parameters (sqlx 0.9 refuses non-static SQL unless it is
//!   wrapped in `AssertSqlSafe`, which this module never does), so no input can become SQL text.

pub mod bulk;
pub mod copy;
pub mod deferred;
mod errors;
mod fanout;
mod hot;
pub mod ids;
mod import;
pub mod mapping;
pub mod outbox;
mod replay;
mod rows;
mod schema;
mod store_impl;
mod user_cache;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgConnection};
use uuid::Uuid;

use self::ids::Ids;
pub use self::ids::{Entity, IdMap, LEGACY_NAMESPACE};
pub use self::schema::{
    embedded as embedded_migrations, CheckReport, ConnectFailure, MigrateReport, MigrationInfo, PoolSettings,
    SEED_INDEXES,
};
use crate::store::{StoreError, StoreResult};

/// The oldest supported server (configuration.md §3.2): the legacy deployment's PostgreSQL 14.
pub const MIN_SERVER_VERSION_NUM: u32 = 140000;

/// Pool and connection settings (configuration.md §3.2); defaults are the documented ones.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// `postgres://` or `postgresql://`; `sslmode`, `sslrootcert`, `options`… query parameters are honoured.
    pub url: String,
    /// A replica for plain list reads (`DATABASE_READ_URL`); reads that must see a preceding write use `url`.
    pub read_url: Option<String>,
    /// `DATABASE_CA_CERT`: a path to a PEM file, or the PEM text itself. When set, TLS is required and the server
    /// certificate verified (`sslmode=verify-full` unless the URL names a mode).
    pub ca_cert: Option<String>,
    pub max_connections: u32,
    pub min_connections: u32,
    pub idle_timeout: Duration,
    /// How long a request waits for a connection, connecting included, before the store reports itself unavailable.
    pub acquire_timeout: Duration,
    /// Sent as `statement_timeout` on every pooled connection; zero disables it.
    pub statement_timeout: Duration,
    pub max_lifetime: Duration,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> PgOptions {
        PgOptions {
            url: url.into(),
            read_url: None,
            ca_cert: None,
            max_connections: 20,
            min_connections: 0,
            idle_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(30 * 60),
        }
    }
}

/// Why a connection attempt failed, as `db check` names it (cli.md §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectErrorClass {
    Refused,
    Timeout,
    Authentication,
    Tls,
    Other,
}

impl fmt::Display for ConnectErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectErrorClass::Refused => "refused",
            ConnectErrorClass::Timeout => "timeout",
            ConnectErrorClass::Authentication => "authentication",
            ConnectErrorClass::Tls => "TLS",
            ConnectErrorClass::Other => "error",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL does not parse; the message never contains the URL itself (it may hold a password).
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error("invalid DATABASE_CA_CERT: {0}")]
    InvalidCaCert(String),
    /// The server is older than PostgreSQL 14 (`PostgreSQL 13.11 is not supported: …`).
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot connect to PostgreSQL at {target}: {class}: {message}")]
    Unreachable { target: String, class: ConnectErrorClass, message: String },
    /// A migration failed and was rolled back.
    #[error("migration {version} ({description}) failed: {message}")]
    Migration { version: i64, description: String, message: String },
    #[error("PostgreSQL error: {0}")]
    Database(String),
}

/// The message of configuration.md §3.2 for a too-old server, or `None` when the version is supported.
pub fn unsupported_version_message(server_version_num: u32) -> Option<String> {
    if server_version_num >= MIN_SERVER_VERSION_NUM {
        return None;
    }
    Some(format!(
        "PostgreSQL {} is not supported: fluxstudio needs PostgreSQL 14 or newer",
        version_label(server_version_num)
    ))
}

/// `130011` → `13.11`; before PostgreSQL 10 the number had three parts (`90624` → `9.6.24`).
pub fn version_label(n: u32) -> String {
    if n >= 100000 {
        format!("{}.{}", n / 10000, n % 10000)
    } else {
        format!("{}.{}.{}", n / 10000, (n / 100) % 100, n % 100)
    }
}

/// `postgres://user:***@host:port/db`: the password never appears in a message or a log line.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<invalid URL>".into();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let tail = tail.split('?').next().unwrap_or("");
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

fn classify_connect_error(e: &sqlx::Error) -> ConnectErrorClass {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => ConnectErrorClass::Refused,
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => ConnectErrorClass::Timeout,
        sqlx::Error::PoolTimedOut => ConnectErrorClass::Timeout,
        sqlx::Error::Tls(_) => ConnectErrorClass::Tls,
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("28")) => {
            ConnectErrorClass::Authentication
        }
        _ => ConnectErrorClass::Other,
    }
}

/// The embedded migrations. The path is relative to the crate root (`CARGO_MANIFEST_DIR`), so the same line works
/// in the main crate and in any crate that has `migrations/` beside its manifest.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub struct PostgresStore {
    opts: PgOptions,
    /// Options for dedicated connections (migrate, check): same target, no statement timeout (operator work).
    direct: PgConnectOptions,
    pool: PgPool,
    /// Connections for the hot one-statement reads, outside the pool (no release ping; see `hot`); `None` when the
    /// budget is too small to split, and those reads use `pool`.
    hot: Option<Arc<hot::HotConns>>,
    /// The pool's share of `max_connections` (the rest is `hot`'s).
    pool_max: u32,
    read_pool: Option<PgPool>,
    ids: Arc<IdMap>,
    /// Set by the connect hook when the server is too old, so that a pool timeout can say why.
    unsupported: Arc<Mutex<Option<String>>>,
    /// Committed writes' events (realtime), handed over after each commit.
    sink: arc_swap::ArcSwapOption<crate::domain::events::EventSink>,
    /// This instance's id and its publisher queue once cross-instance fan-out is on (postgres mode).
    fanout: std::sync::OnceLock<fanout::Fanout>,
    /// dual-postgres: whether writes record `store_outbox` rows.
    outbox: outbox::PgOutboxState,
    /// Callers of authenticated requests, for at most `USER_CACHE_TTL`.
    users: user_cache::UserCache,
}

fn parse_url(url: &str, ca_cert: Option<&str>) -> Result<PgConnectOptions, PgError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(PgError::InvalidUrl("the scheme must be postgres:// or postgresql://".into()));
    }
    // sqlx's message may quote the URL; report only that it failed.
    let opts = PgConnectOptions::from_str(url)
        .map_err(|_| PgError::InvalidUrl(format!("cannot parse {}", redact_url(url))))?;
    let Some(ca) = ca_cert else {
        return Ok(opts);
    };
    let opts = if ca.contains("-----BEGIN") {
        opts.ssl_root_cert_from_pem(ca.as_bytes().to_vec())
    } else if std::path::Path::new(ca).is_file() {
        opts.ssl_root_cert(ca)
    } else {
        return Err(PgError::InvalidCaCert(format!("{ca}: no such file (expected a PEM file or PEM text)")));
    };
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let names_mode = query.split('&').any(|kv| kv.starts_with("sslmode=") || kv.starts_with("ssl-mode="));
    Ok(if names_mode { opts } else { opts.ssl_mode(PgSslMode::VerifyFull) })
}

/// `application_name` marks our connections in `pg_stat_activity`; `TimeZone=UTC` fixes the text form of
/// `timestamptz` inside the `jsonb` aggregates the reads decode.
fn session_options(base: PgConnectOptions, statement_timeout: Duration) -> PgConnectOptions {
    base.application_name("fluxstudio").options([
        ("TimeZone", "UTC".to_owned()),
        ("statement_timeout", format!("{}ms", statement_timeout.as_millis())),
    ])
}

fn build_pool(
    opts: &PgOptions,
    max: u32,
    connect: PgConnectOptions,
    unsupported: Arc<Mutex<Option<String>>>,
) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max)
        .min_connections(opts.min_connections.min(max))
        .idle_timeout(Some(opts.idle_timeout))
        .acquire_timeout(opts.acquire_timeout)
        .max_lifetime(Some(opts.max_lifetime))
        // No ping before handing out a connection: it would double the round trips of a one-statement request.
        // A connection that died while idle fails its first statement (`Unavailable`, a 503 the client retries),
        // and sqlx tests every connection as it comes back to the pool, so a dead one is dropped there.
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            let unsupported = unsupported.clone();
            Box::pin(async move {
                match version_check(conn).await? {
                    None => {
                        *unsupported.lock() = None;
                        Ok(())
                    }
                    Some(message) => {
                        // Logged at every attempt (configuration.md §3.2); the pool retries until the acquire
                        // timeout, and the caller then reports this message as the reason.
                        tracing::error!(target: "fluxstudio::store", "{message}");
                        *unsupported.lock() = Some(message.clone());
                        Err(sqlx::Error::Configuration(message.into()))
                    }
                }
            })
        })
        .connect_lazy_with(connect)
}

/// `Some(message)` when the server is older than PostgreSQL 14. The version comes from the start-up parameters;
/// only a server that did not report one costs a query.
async fn version_check(conn: &mut PgConnection) -> Result<Option<String>, sqlx::Error> {
    let num = match conn.server_version_num() {
        Some(n) => n,
        None => {
            let s: String =
                sqlx::query_scalar("select current_setting('server_version_num')").fetch_one(&mut *conn).await?;
            s.trim().parse().unwrap_or(0)
        }
    };
    Ok(unsupported_version_message(num))
}

impl PostgresStore {
    /// Builds the pools without requiring the server to be up: when PostgreSQL is down the store still comes up and
    /// answers `Unavailable` until it can connect. A reachable server older than 14 is refused here
    /// (`PgError::Unsupported`), so that `serve` can exit 2 with the message.
    pub async fn connect(opts: PgOptions) -> Result<PostgresStore, PgError> {
        let base = parse_url(&opts.url, opts.ca_cert.as_deref())?;
        let read_base = opts.read_url.as_deref().map(|u| parse_url(u, opts.ca_cert.as_deref())).transpose()?;
        let unsupported = Arc::new(Mutex::new(None));
        // The primary's budget is shared by the pool and the hot set (hot.rs): together never more than
        // `max_connections`. The read pool (another server) keeps the whole budget.
        let (pool_max, hot_max) = hot::split_budget(opts.max_connections);
        let session = session_options(base.clone(), opts.statement_timeout);
        let hot = (hot_max > 0).then(|| {
            hot::HotConns::new(
                session.clone(),
                hot_max,
                opts.acquire_timeout,
                opts.idle_timeout,
                opts.max_lifetime,
                unsupported.clone(),
            )
        });
        let pool = build_pool(&opts, pool_max, session, unsupported.clone());
        let read_pool = read_base.map(|b| {
            build_pool(&opts, opts.max_connections, session_options(b, opts.statement_timeout), unsupported.clone())
        });
        let direct = session_options(base, Duration::ZERO);
        let store = PostgresStore {
            opts,
            direct,
            pool,
            hot,
            pool_max,
            read_pool,
            ids: Arc::new(IdMap::default()),
            unsupported,
            sink: arc_swap::ArcSwapOption::empty(),
            fanout: std::sync::OnceLock::new(),
            outbox: Default::default(),
            users: user_cache::UserCache::default(),
        };

        // One probe, bounded by the acquire timeout: it refuses an old server early and preloads the legacy ids.
        // Any other failure is only logged (PostgreSQL down at start-up, configuration.md §6).
        match tokio::time::timeout(store.opts.acquire_timeout, store.direct.connect()).await {
            Ok(Ok(mut conn)) => {
                let version = version_check(&mut conn).await;
                let _ = conn.close().await;
                match version {
                    Ok(Some(message)) => return Err(PgError::Unsupported(message)),
                    Ok(None) => {
                        if let Err(e) = store.reload_legacy_ids().await {
                            tracing::warn!(target: "fluxstudio::store", "legacy ids not loaded yet: {e}");
                        }
                    }
                    Err(e) => tracing::warn!(target: "fluxstudio::store", "PostgreSQL version check failed: {e}"),
                }
            }
            Ok(Err(e)) => tracing::warn!(
                target: "fluxstudio::store",
                "PostgreSQL at {} not reachable yet ({}): {e}",
                store.target(),
                classify_connect_error(&e)
            ),
            Err(_) => {
                tracing::warn!(target: "fluxstudio::store", "PostgreSQL at {} not reachable yet (timeout)", store.target())
            }
        }
        Ok(store)
    }

    /// Where committed writes' events go (the realtime layer).
    pub fn set_event_sink(&self, sink: crate::domain::events::EventSink) {
        self.sink.store(Some(Arc::new(sink)));
    }

    /// A secondary emits no events: the primary's commits already did.
    pub fn clear_event_sink(&self) {
        self.sink.store(None);
    }

    /// Called right after a commit; events of one project are ordered by the project row lock the writes take.
    /// In postgres mode the events also go to the other instances, in the same order (fanout.rs).
    pub(crate) fn publish(&self, events: Vec<crate::domain::events::DomainEvent>) {
        if self.fanout.get().is_some() {
            self.publish_with_fanout(events);
        } else {
            self.emit_local(events);
        }
    }

    /// Emits events to this instance's sockets only: this instance's writes, and those heard from other instances.
    fn emit_local(&self, events: Vec<crate::domain::events::DomainEvent>) {
        if let Some(sink) = self.sink.load_full() {
            events.into_iter().for_each(|e| sink(e));
        }
    }

    /// The primary pool, for operator tools (migrate, validate, rollback) that run their own statements.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn options(&self) -> &PgOptions {
        &self.opts
    }

    /// The connection target with the password redacted.
    pub fn target(&self) -> String {
        redact_url(&self.opts.url)
    }

    /// The pool used for list reads: the replica when configured.
    /// Pool usage for `/metrics`: (pool, open connections, idle connections, maximum).
    pub fn pool_usage(&self) -> Vec<(&'static str, u32, usize, u32)> {
        let mut out = vec![("primary", self.pool.size(), self.pool.num_idle(), self.pool_max)];
        if let Some(hot) = &self.hot {
            let (open, idle, max) = hot.usage();
            out.push(("hot", open, idle, max));
        }
        if let Some(read) = &self.read_pool {
            out.push(("read", read.size(), read.num_idle(), self.opts.max_connections));
        }
        out
    }

    /// Runs a one-statement, idempotent read of the primary on a hot connection (no release ping, see `hot`), or on
    /// the pool when the budget has no hot set. Reads that may go to the replica use [`read_pool`](Self::read_pool).
    pub(crate) async fn hot_read<T>(
        &self,
        statement: impl for<'c> FnMut(&'c mut PgConnection) -> hot::Statement<'c, T>,
    ) -> Result<T, sqlx::Error> {
        self.on_hot(hot::Retry::OnStaleConnection, statement).await
    }

    /// Runs a one-statement write in its own transaction on a hot connection (no release ping), or on the pool when
    /// the budget has no hot set. Never retried (see [`hot::Retry::Never`]).
    pub(crate) async fn hot_write<T>(
        &self,
        statement: impl for<'c> FnOnce(&'c mut PgConnection) -> hot::Statement<'c, T>,
    ) -> Result<T, sqlx::Error> {
        let mut statement = Some(statement);
        self.on_hot(hot::Retry::Never, move |conn| (statement.take().expect("run at most once"))(conn)).await
    }

    async fn on_hot<T>(
        &self,
        retry: hot::Retry,
        mut statement: impl for<'c> FnMut(&'c mut PgConnection) -> hot::Statement<'c, T>,
    ) -> Result<T, sqlx::Error> {
        match &self.hot {
            Some(hot) => hot.run(retry, statement).await,
            None => {
                let mut conn = self.pool.acquire().await?;
                statement(&mut conn).await
            }
        }
    }

    fn read_pool(&self) -> &PgPool {
        // Counted per pool so an operator (and the routing test) can see where reads go.
        let pool = if self.read_pool.is_some() { "read" } else { "primary" };
        metrics::counter!("flux_db_read_queries_total", "pool" => pool).increment(1);
        self.read_pool.as_ref().unwrap_or(&self.pool)
    }

    /// A dedicated connection outside the pool, without statement timeout (migrations, `db check`).
    async fn direct_connection(&self) -> Result<PgConnection, PgError> {
        let failed = |class, message| PgError::Unreachable { target: self.target(), class, message };
        let mut conn = match tokio::time::timeout(self.opts.acquire_timeout, self.direct.connect()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(failed(classify_connect_error(&e), e.to_string())),
            Err(_) => return Err(failed(ConnectErrorClass::Timeout, "connect timed out".into())),
        };
        match version_check(&mut conn).await {
            Ok(None) => Ok(conn),
            Ok(Some(message)) => Err(PgError::Unsupported(message)),
            Err(e) => Err(failed(classify_connect_error(&e), e.to_string())),
        }
    }

    pub(crate) fn err(&self, e: sqlx::Error) -> StoreError {
        errors::to_store_error(e, self.unsupported.lock().clone())
    }

    /// Reloads the legacy-id map from `legacy_ids` (at start-up, and when `NOTIFY flux_legacy_ids` says another
    /// instance or a migrate run added some). Returns the number of legacy ids.
    pub async fn reload_legacy_ids(&self) -> StoreResult<usize> {
        let rows = self.legacy_pairs(None, None).await?;
        let n = rows.len();
        self.ids.replace(rows);
        Ok(n)
    }

    /// `legacy_ids` rows, all of them or those of `only`, on `conn` when the caller is inside a transaction: a
    /// second pool connection there could wait for a pool that is full of transactions waiting for this one.
    async fn legacy_pairs(
        &self,
        conn: Option<&mut PgConnection>,
        only: Option<&[Uuid]>,
    ) -> StoreResult<Vec<(Uuid, String)>> {
        let query = match only {
            None => sqlx::query_as::<_, (Uuid, String)>("select id, legacy_id from legacy_ids"),
            Some(ids) => {
                sqlx::query_as::<_, (Uuid, String)>("select id, legacy_id from legacy_ids where id = any($1)").bind(ids)
            }
        };
        let rows = match conn {
            Some(c) => query.fetch_all(c).await,
            None => query.fetch_all(&self.pool).await,
        };
        rows.map_err(|e| self.err(e))
    }

    /// Runs `f` (a storage → public translation) and, when it met UUIDv5 values the map does not know, consults
    /// `legacy_ids` for those and runs it again. The common case is one pass and no query.
    pub(crate) async fn translate<T>(&self, f: impl Fn(&Ids) -> T) -> StoreResult<T> {
        self.translate_in(None, f).await
    }

    /// As [`translate`](Self::translate), any lookup made on `conn` (the caller's transaction) when given.
    pub(crate) async fn translate_in<T>(
        &self,
        mut conn: Option<&mut PgConnection>,
        f: impl Fn(&Ids) -> T,
    ) -> StoreResult<T> {
        if !self.ids.is_loaded() {
            let rows = self.legacy_pairs(conn.as_deref_mut(), None).await?;
            self.ids.replace(rows);
        }
        let (out, misses) = {
            let ids = Ids::new(&self.ids);
            let out = f(&ids);
            (out, ids.into_misses())
        };
        if misses.is_empty() {
            return Ok(out);
        }
        let found = self.legacy_pairs(conn, Some(&misses)).await?;
        if found.is_empty() {
            self.ids.mark_genuine(misses);
            return Ok(out);
        }
        let known: Vec<Uuid> = found.iter().map(|(id, _)| *id).collect();
        self.ids.mark_genuine(misses.into_iter().filter(|m| !known.contains(m)));
        for (id, legacy) in found {
            self.ids.insert(id, legacy);
        }
        let ids = Ids::new(&self.ids);
        Ok(f(&ids))
    }

    /// Forgets every cached caller (see `user_cache`): for a bulk write of users such as an import, whose users
    /// must not be served from before it.
    pub fn forget_cached_users(&self) {
        self.users.clear();
    }

    /// Closes both pools and the hot set (graceful shutdown).
    pub async fn close(&self) {
        if let Some(hot) = &self.hot {
            hot.close().await;
        }
        self.pool.close().await;
        if let Some(p) = &self.read_pool {
            p.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(unsupported_version_message(150020), None);
        assert_eq!(unsupported_version_message(140000), None);
        assert_eq!(
            unsupported_version_message(130011).unwrap(),
            "PostgreSQL 13.11 is not supported: fluxstudio needs PostgreSQL 14 or newer"
        );
        assert_eq!(version_label(90624), "9.6.24");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://flux:s3cret@127.0.0.1:5432/flux?sslmode=require"),
            "postgres://flux:***@127.0.0.1:5432/flux"
        );
        assert_eq!(redact_url("postgresql://flux@db/flux"), "postgresql://flux@db/flux");
        assert_eq!(redact_url("postgres://db:5432"), "postgres://db:5432");
        assert_eq!(redact_url("nonsense"), "<invalid URL>");
    }

    #[test]
    fn a_ca_certificate_requires_verified_tls() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let o = parse_url("postgres://flux@db/flux", Some(pem)).unwrap();
        assert!(matches!(o.get_ssl_mode(), PgSslMode::VerifyFull));
        let o = parse_url("postgres://flux@db/flux?sslmode=require", Some(pem)).unwrap();
        assert!(matches!(o.get_ssl_mode(), PgSslMode::Require), "the URL's mode wins");
        assert!(matches!(
            parse_url("postgres://flux@db/flux", Some("/nonexistent.pem")),
            Err(PgError::InvalidCaCert(_))
        ));
        assert!(matches!(parse_url("mysql://flux@db/flux", None), Err(PgError::InvalidUrl(_))));
    }

    #[test]
    fn namespace_is_the_documented_one() {
        assert_eq!(LEGACY_NAMESPACE, Uuid::parse_str("4f1c7a52-9d3e-5b8a-a6c1-2e7d9b0f3c85").unwrap());
    }
}
