//! Building and running the server: state, listener, control socket, graceful shutdown. `main` and the tests
//! both start the server through [`start`], which binds (port 0 in tests) and reports the address.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::google::GoogleVerifier;
use crate::auth::jwt::Jwt;
use crate::auth::password::Passwords;
use crate::config::{Config, StoreMode};
use crate::ratelimit::{LimiterId, RateLimits};
use crate::realtime::Realtime;
use crate::store::json::fs::Fs;
use crate::store::json::lock::DataDirLock;
use crate::store::json::JsonStore;
use crate::store::modes::{self, PersistedMode, StoreControl};
use crate::store::postgres::{PgError, PgOptions, PostgresStore};
use crate::store::DynStore;

pub struct Inner {
    pub config: Arc<Config>,
    pub jwt: Jwt,
    pub passwords: Arc<Passwords>,
    pub google: GoogleVerifier,
    pub started: Instant,
    pub limits: RateLimits,
    pub realtime: Arc<Realtime>,
    /// The live store mode and its switch (store/modes.rs).
    pub stores: Arc<StoreControl>,
    /// Set when shutdown begins: `/health/ready` answers 503 from then on, so a load balancer stops routing here.
    draining: AtomicBool,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Inner {
    pub fn store(&self) -> DynStore {
        self.stores.store()
    }
    pub fn mode(&self) -> StoreMode {
        self.stores.mode()
    }
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
    /// Marks the server as shutting down (readiness fails from now on); [`Server::shutdown`] calls it first.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}

/// A state over any store, without a listener: unit tests of the middleware stack drive the router directly.
#[cfg(test)]
pub(crate) fn state_for_tests(config: Config, jwt_secret: &str, store: DynStore) -> AppState {
    AppState(Arc::new(Inner {
        jwt: Jwt::new(jwt_secret),
        passwords: Arc::new(Passwords::new(config.bcrypt_cost)),
        google: GoogleVerifier::new(config.google_client_ids.clone(), config.google_jwks_url.clone()),
        started: Instant::now(),
        realtime: crate::realtime::layer(&config).1,
        limits: RateLimits::from_config(&config),
        stores: StoreControl::fixed(Arc::new(config.clone()), store, StoreMode::Json),
        draining: AtomicBool::new(false),
        config: Arc::new(config),
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Exit 2: configuration, lock, corrupt data, port in use.
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Runtime(String),
    /// Exit 3: a schema migration failed.
    #[error("{0}")]
    Migration(String),
}

impl StartError {
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Config(_) => 2,
            StartError::Runtime(_) => 1,
            StartError::Migration(_) => 3,
        }
    }
}

/// The backend a mode runs on, opened at start-up.
struct Opened {
    json: Option<(Arc<JsonStore>, DataDirLock)>,
    postgres: Option<Arc<PostgresStore>>,
}

pub fn pg_options(config: &Config) -> Option<PgOptions> {
    let url = config.database_url.clone()?;
    let mut o = PgOptions::new(url);
    o.read_url = config.database_read_url.clone();
    o.ca_cert = config.database_ca_cert.clone();
    o.max_connections = config.db_pool.max;
    o.min_connections = config.db_pool.min;
    o.idle_timeout = config.db_pool.idle_timeout;
    o.acquire_timeout = config.db_pool.acquire_timeout;
    o.statement_timeout = config.db_pool.statement_timeout;
    o.max_lifetime = config.db_pool.max_lifetime;
    Some(o)
}

/// Connects (the pool; no migrations: a live mode switch requires a current schema instead).
pub async fn connect_postgres(config: &Config) -> Result<Arc<PostgresStore>, StartError> {
    let opts =
        pg_options(config).ok_or_else(|| StartError::Config("the store mode needs DATABASE_URL or DB_*".into()))?;
    let store = PostgresStore::connect(opts).await.map_err(|e| match e {
        PgError::Unsupported(m) | PgError::InvalidUrl(m) | PgError::InvalidCaCert(m) => StartError::Config(m),
        other => StartError::Runtime(other.to_string()),
    })?;
    Ok(Arc::new(store))
}

/// Connects and applies pending migrations. PostgreSQL being down is not fatal (configuration.md §6): the server
/// listens, answers 503 where PostgreSQL is needed, and migrates in the background as soon as it can connect.
pub async fn open_postgres(config: &Config) -> Result<Arc<PostgresStore>, StartError> {
    let store = connect_postgres(config).await?;
    match store.migrate().await {
        Ok(report) => {
            if !report.applied.is_empty() {
                tracing::info!(applied = report.applied.len(), "schema migrations applied");
            }
        }
        Err(PgError::Unreachable { .. }) => {
            tracing::warn!("PostgreSQL unreachable at start-up; schema migrations will run once it answers");
            let s = store.clone();
            // sqlx's migrator future is not provably `Send` for every lifetime (it borrows a connection through a
            // generic `Acquire`), so the retry loop gets a thread and a small runtime of its own.
            let spawned = std::thread::Builder::new().name("pg-migrate-retry".into()).spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
                rt.block_on(async move {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                        match s.migrate().await {
                            Ok(_) => {
                                tracing::info!("PostgreSQL reachable; schema is current");
                                break;
                            }
                            Err(PgError::Unreachable { .. }) => continue,
                            Err(e) => {
                                tracing::error!(error = %e, "schema migration failed after PostgreSQL came back");
                                break;
                            }
                        }
                    }
                });
            });
            if let Err(e) = spawned {
                return Err(StartError::Runtime(format!("cannot start the migration retry thread: {e}")));
            }
        }
        Err(e) => return Err(StartError::Migration(format!("schema migration failed: {e}"))),
    }
    Ok(store)
}

pub struct ServerOptions {
    pub config: Config,
    pub jwt_secret: String,
    /// The JSON store's file-system seam (fault injection in tests).
    pub json_fs: Fs,
}

impl ServerOptions {
    pub fn new(config: Config, jwt_secret: String) -> ServerOptions {
        ServerOptions { config, jwt_secret, json_fs: Fs::default() }
    }
}

pub struct Server {
    pub addr: SocketAddr,
    /// The separate `/metrics` listener's address, when `FLUX_METRICS_ADDR` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    shutdown_tx: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    metrics_http: Option<JoinHandle<std::io::Result<()>>>,
    control: Option<JoinHandle<()>>,
    control_path: PathBuf,
}

/// Opens the data dir (lock, journal replay), binds the listener and starts serving.
pub async fn start(opts: ServerOptions) -> Result<Server, StartError> {
    let config = Arc::new(opts.config);
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| StartError::Config(format!("FLUX_DATA_DIR={}: cannot create: {e}", data_dir.display())))?;
    std::fs::create_dir_all(&config.upload_dir).map_err(|e| {
        StartError::Config(format!("FLUX_UPLOAD_DIR={}: cannot create: {e}", config.upload_dir.display()))
    })?;
    // The persisted mode wins over the configured one (store-modes.md §5).
    let (mode, persisted) = modes::startup_mode(&config).map_err(StartError::Config)?;
    if mode.needs_database() && config.database_url.is_none() {
        return Err(StartError::Config(format!(
            "the persisted store mode '{mode}' ({}) needs PostgreSQL; set DATABASE_URL or DB_*",
            data_dir.join(modes::STATE_FILE).display()
        )));
    }
    // Every mode but postgres keeps the JSON store and its single-instance lock; postgres is the only mode where
    // several instances share a deployment.
    let json = match mode {
        StoreMode::Postgres => None,
        _ => {
            let lock = DataDirLock::acquire(&data_dir).map_err(|e| StartError::Config(e.to_string()))?;
            let mut json_opts = modes::json_options(&config);
            json_opts.fs = opts.json_fs;
            let json = tokio::task::spawn_blocking(move || JsonStore::open(json_opts))
                .await
                .map_err(|e| StartError::Runtime(e.to_string()))?
                .map_err(|e| StartError::Config(format!("cannot open the JSON store: {e}")))?;
            Some((Arc::new(json), lock))
        }
    };
    let postgres = match mode {
        StoreMode::Json => None,
        _ => Some(open_postgres(&config).await?),
    };
    if let (StoreMode::DualJson | StoreMode::DualPostgres, Some(pg)) = (mode, &postgres) {
        modes::refuse_other_instances(pg, mode, &config.instance_id).await.map_err(StartError::Config)?;
    }
    // Switches persist the mode, and so does a start in a dual mode (its outbox is an obligation a later start must
    // not forget); a forced start over a different persisted mode records the override. A plain json or postgres
    // start writes nothing, so changing the configuration of such a deployment still takes effect.
    let on_disk = PersistedMode::read(&data_dir).ok().flatten();
    let dual = matches!(mode, StoreMode::DualJson | StoreMode::DualPostgres);
    if on_disk.as_ref().is_some_and(|d| d.mode != mode) || (dual && on_disk.is_none()) {
        persisted
            .write(&data_dir)
            .map_err(|e| StartError::Config(format!("{}: {e}", data_dir.join(modes::STATE_FILE).display())))?;
    }
    let opened = Opened { json, postgres };

    let cost = config.bcrypt_cost;
    let passwords = tokio::task::spawn_blocking(move || Passwords::new(cost))
        .await
        .map_err(|e| StartError::Runtime(e.to_string()))?;
    let (socket_layer, realtime) = crate::realtime::layer(&config);
    let sink = crate::realtime::event_pipeline(realtime.clone());
    let postgres = opened.postgres;
    // Realtime events come from the primary's commits (StoreControl routes them on every switch); once PostgreSQL
    // is primary they also travel between instances.
    let fanout_on = Arc::new(std::sync::Once::new());
    let (fanout_rt, fanout_id) = (realtime.clone(), config.instance_id.clone());
    let hooks = modes::Hooks {
        sink: Some(sink),
        on_pg_primary: Arc::new(move |p: &Arc<PostgresStore>| {
            fanout_on.call_once(|| {
                p.enable_fanout(fanout_id.clone());
                p.spawn_listener(fanout_rt.cluster(&fanout_id));
            })
        }),
    };
    let has_json = opened.json.is_some();
    let stores = StoreControl::new(config.clone(), mode, persisted, opened.json, postgres, hooks);
    stores.record_started_mode().await;
    let state = AppState(Arc::new(Inner {
        realtime: realtime.clone(),
        jwt: Jwt::new(&opts.jwt_secret),
        passwords: Arc::new(passwords),
        google: GoogleVerifier::new(config.google_client_ids.clone(), config.google_jwks_url.clone()),
        started: Instant::now(),
        limits: RateLimits::from_config(&config),
        stores,
        draining: AtomicBool::new(false),
        config: config.clone(),
    }));
    let enabled: Vec<&'static str> =
        LimiterId::ALL.iter().filter(|&&id| state.limits.is_enabled(id)).map(|id| id.name()).collect();
    crate::telemetry::register_baseline(state.mode(), &enabled);

    let host = if config.host == "localhost" { "127.0.0.1" } else { config.host.as_str() };
    let bind = format!("{}:{}", if host.contains(':') { format!("[{host}]") } else { host.to_owned() }, config.port);
    let listener = TcpListener::bind(&bind).await.map_err(|e| {
        StartError::Config(format!("cannot listen on {bind}: {e} (PORT={} / HOST={})", config.port, config.host))
    })?;
    let addr = listener.local_addr().map_err(|e| StartError::Runtime(e.to_string()))?;

    // The metrics listener is bound before serving anything, so a taken port fails the start (exit 2).
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| StartError::Config(format!("cannot listen on {addr}: {e} (FLUX_METRICS_ADDR={addr})")))?,
        ),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr().map_err(|e| StartError::Runtime(e.to_string()))?),
        None => None,
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    crate::realtime::register(&realtime, state.clone());
    let app = crate::api::middleware::guard_socket_io(crate::api::router(state.clone()).layer(socket_layer), &state);
    let mut rx = shutdown_rx.clone();
    let http = tokio::spawn(async move {
        // Responses are written whole, so Nagle's algorithm can only hold back the tail of one behind an
        // unacknowledged earlier segment on the same keep-alive connection; nothing is gained by waiting.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|v| *v).await;
            })
            .await
    });
    let metrics_http = metrics_listener.map(|listener| {
        let mut rx = shutdown_rx.clone();
        let metrics_state = state.clone();
        tracing::info!("metrics listening on {}", metrics_addr.expect("bound"));
        tokio::spawn(async move {
            axum::serve(listener, crate::api::ops::metrics_router(metrics_state))
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|v| *v).await;
                })
                .await
        })
    });

    // The control socket belongs to the process that owns the data dir; in postgres mode CLI commands talk to
    // the database directly.
    let control_path = data_dir.join(".control.sock");
    let control = match has_json {
        true => Some(
            crate::control::serve(&control_path, state.clone(), shutdown_rx)
                .map_err(|e| StartError::Runtime(format!("control socket {}: {e}", control_path.display())))?,
        ),
        false => None,
    };

    Ok(Server { addr, metrics_addr, state, shutdown_tx, http, metrics_http, control, control_path })
}

impl Server {
    /// Stops accepting, lets in-flight requests finish within the grace period, then compacts the journal into
    /// the legacy files.
    pub async fn shutdown(mut self) -> Result<(), String> {
        self.state.begin_drain();
        let _ = self.shutdown_tx.send(true);
        // Long-polling requests would otherwise hold the graceful shutdown for a whole ping interval.
        self.state.realtime.close().await;
        let grace = self.state.config.shutdown_grace;
        if tokio::time::timeout(grace, &mut self.http).await.is_err() {
            tracing::warn!(
                grace_secs = grace.as_secs_f64(),
                "in-flight requests did not finish within the grace period"
            );
            self.http.abort();
        }
        if let Some(m) = self.metrics_http.take() {
            m.abort();
        }
        if let Some(c) = self.control.take() {
            c.abort();
            let _ = std::fs::remove_file(&self.control_path);
        }
        self.state.stores.shutdown().await;
        if let Some(pg) = self.state.stores.postgres() {
            pg.close().await;
        }
        match self.state.stores.json() {
            Some(json) => json.close().await.map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// The JSON store of a json-mode server (tests reach its fault seam and compaction through it).
    pub fn json_store(&self) -> Arc<JsonStore> {
        self.state.stores.json().expect("json_store() on a server that does not run the JSON store")
    }

    /// The PostgreSQL store, when the mode uses one (opened at start-up or by a switch).
    pub fn postgres_store(&self) -> Option<Arc<PostgresStore>> {
        self.state.stores.postgres()
    }
}
