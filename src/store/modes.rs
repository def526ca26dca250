//! The live store mode (store-modes.md §1, §5): which store serves requests, the dual-json outbox worker, the
//! persisted mode, and the switch between modes without a restart.
//!
//! Requests take the active [`StoreSlot`] once (an `ArcSwap` load) and keep it for their whole life, so a switch
//! never fails an in-flight request. Switching `json ⇄ dual-json` does not change the primary: the JSON store
//! turns outbox recording on or off under its writer lock, so every write is either entirely before (no entry)
//! or entirely after (an entry in the same journal record) the switch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::json::lock::DataDirLock;
use super::json::{JsonOptions, JsonStore};
use super::outbox::{OutboxStatus, Replayer};
use super::postgres::outbox::PgOutbox;
use super::postgres::PostgresStore;
use super::shadow::{ShadowRate, ShadowStore};
use super::{DynStore, Store, StoreError, StoreResult};
use crate::config::{Config, StoreMode};
use crate::domain::events::EventSink;
use crate::domain::time;

/// The store a request uses, and the mode it belongs to. Swapped as a whole.
pub struct StoreSlot {
    pub store: DynStore,
    pub mode: StoreMode,
}

pub const STATE_FILE: &str = ".store-state.json";

/// `<data dir>/.store-state.json`: the persisted mode, which wins over the configured one at start-up
/// (store-modes.md §5, configuration.md §4).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PersistedMode {
    pub mode: StoreMode,
    pub epoch: u64,
    pub since: String,
    /// PostgreSQL missed writes (a forced `dual-json → json`): it needs a fresh migrate + validate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pg_stale: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_frozen_at: Option<String>,
}

impl PersistedMode {
    pub fn read(data_dir: &Path) -> Result<Option<PersistedMode>, String> {
        let path = data_dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Atomic replace (temporary file, fsync, rename, directory fsync).
    pub fn write(&self, data_dir: &Path) -> std::io::Result<()> {
        let tmp = data_dir.join(format!("{STATE_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).expect("mode state serialises");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, data_dir.join(STATE_FILE))?;
        std::fs::File::open(data_dir)?.sync_all()
    }
}

/// Why a switch was refused; maps onto the 409/503 codes of http-api.md §13.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SwitchError {
    #[error("{0}")]
    InProgress(String),
    #[error("{0}")]
    NotConfigured(String),
    #[error("{0}")]
    NotDrained(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
}

impl SwitchError {
    pub fn code(&self) -> &'static str {
        match self {
            SwitchError::InProgress(_) => "switch_in_progress",
            SwitchError::NotConfigured(_) => "store_not_configured",
            SwitchError::NotDrained(_) => "outbox_not_drained",
            SwitchError::Refused(_) => "switch_refused",
            SwitchError::Unavailable(_) => "store_unavailable",
        }
    }
}

#[derive(Clone, Debug)]
pub struct SwitchRequest {
    pub mode: StoreMode,
    pub force: bool,
    pub timeout: Duration,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchOutcome {
    pub previous_mode: StoreMode,
    pub mode: StoreMode,
    pub changed: bool,
    pub epoch: u64,
    pub switched_at: String,
    pub outbox: OutboxStatus,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastValidation {
    pub at: String,
    pub passed: bool,
    pub epoch: u64,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceInfo {
    pub id: String,
    pub mode: StoreMode,
    pub epoch: u64,
    pub heartbeat_at: String,
}

/// The body of `GET /api/admin/store` (http-api.md §13).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    pub mode: StoreMode,
    pub primary: &'static str,
    pub secondary: Option<&'static str>,
    pub switching: bool,
    pub epoch: u64,
    pub since: String,
    pub secondary_reachable: Option<bool>,
    pub shadow_read_rate: f64,
    pub outbox: OutboxStatus,
    pub last_validation: Option<LastValidation>,
    pub instances: Vec<InstanceInfo>,
}

pub fn primary_of(mode: StoreMode) -> &'static str {
    match mode {
        StoreMode::Json | StoreMode::DualJson => "json",
        StoreMode::DualPostgres | StoreMode::Postgres => "postgres",
    }
}

pub fn secondary_of(mode: StoreMode) -> Option<&'static str> {
    match mode {
        StoreMode::DualJson => Some("postgres"),
        StoreMode::DualPostgres => Some("json"),
        StoreMode::Json | StoreMode::Postgres => None,
    }
}

/// The modes one step away along `json ⇄ dual-json ⇄ dual-postgres ⇄ postgres`.
pub fn neighbours(mode: StoreMode) -> &'static [StoreMode] {
    match mode {
        StoreMode::Json => &[StoreMode::DualJson],
        StoreMode::DualJson => &[StoreMode::Json, StoreMode::DualPostgres],
        StoreMode::DualPostgres => &[StoreMode::DualJson, StoreMode::Postgres],
        StoreMode::Postgres => &[StoreMode::DualPostgres],
    }
}

const HEARTBEAT: &str =
    "insert into store_instances (instance_id, mode, epoch, heartbeat_at, host) values ($1, $2, $3, now(), $4) \
     on conflict (instance_id) do update set mode = excluded.mode, epoch = excluded.epoch, heartbeat_at = now(), \
       host = excluded.host";
const LIVE_INSTANCES: &str = "select instance_id, mode, epoch, heartbeat_at, host from store_instances \
     where heartbeat_at > now() - interval '15 seconds' order by instance_id";
/// How often an instance refreshes its `store_instances` row; rows older than 15 s count as gone.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

const UPSERT_STORE_STATE: &str = "insert into store_state (singleton, mode, epoch, changed_at, changed_by) \
     values (true, $1, $2, now(), $3) \
     on conflict (singleton) do update set mode = excluded.mode, epoch = excluded.epoch, \
       changed_at = excluded.changed_at, changed_by = excluded.changed_by";

/// What the server wires into whichever store is primary: realtime events of its commits, and (once PostgreSQL
/// is primary) the cross-instance fan-out.
pub type PgPrimaryHook = Arc<dyn Fn(&Arc<PostgresStore>) + Send + Sync>;

#[derive(Clone)]
pub struct Hooks {
    pub sink: Option<EventSink>,
    pub on_pg_primary: PgPrimaryHook,
}

impl Hooks {
    pub fn none() -> Hooks {
        Hooks { sink: None, on_pg_primary: Arc::new(|_| {}) }
    }
}

pub struct StoreControl {
    config: Arc<Config>,
    data_dir: PathBuf,
    slot: ArcSwap<StoreSlot>,
    /// The JSON store: open in every mode but `postgres` (closed when entering it, reopened by
    /// `postgres -> dual-postgres`).
    json: Mutex<Option<Arc<JsonStore>>>,
    /// The data dir's single-instance lock while this process owns the JSON files.
    json_lock: Mutex<Option<DataDirLock>>,
    pg: Mutex<Option<Arc<PostgresStore>>>,
    /// Every API write holds a read guard for its whole life; a primary flip takes the write side, so new writes
    /// wait (they do not fail) and then run on the new primary (store-modes.md §5, barrier).
    gate: Arc<tokio::sync::RwLock<()>>,
    hooks: Hooks,
    replayer: Mutex<Option<Arc<Replayer>>>,
    persisted: Mutex<PersistedMode>,
    switching: tokio::sync::Mutex<()>,
    shadow_rate: Arc<ShadowRate>,
    stopping: std::sync::atomic::AtomicBool,
}

impl StoreControl {
    /// `json`/`pg` are the stores opened at start-up for `mode` (`lock` held with the JSON store); a dual mode
    /// starts its outbox worker here.
    pub fn new(
        config: Arc<Config>,
        mode: StoreMode,
        persisted: PersistedMode,
        json: Option<(Arc<JsonStore>, DataDirLock)>,
        pg: Option<Arc<PostgresStore>>,
        hooks: Hooks,
    ) -> Arc<StoreControl> {
        let (json, lock) = match json {
            Some((j, l)) => (Some(j), Some(l)),
            None => (None, None),
        };
        let store: DynStore = match (primary_of(mode), &json, &pg) {
            ("json", Some(j), _) => j.clone(),
            (_, _, Some(p)) => p.clone(),
            _ => unreachable!("start-up opens the primary of the mode"),
        };
        let control = Arc::new(StoreControl {
            data_dir: config.data_dir.clone(),
            shadow_rate: Arc::new(ShadowRate::new(config.shadow_read_rate)),
            config,
            slot: ArcSwap::from_pointee(StoreSlot { store, mode }),
            json: Mutex::new(json),
            json_lock: Mutex::new(lock),
            pg: Mutex::new(pg),
            gate: Arc::new(tokio::sync::RwLock::new(())),
            hooks,
            replayer: Mutex::new(None),
            persisted: Mutex::new(persisted),
            switching: tokio::sync::Mutex::new(()),
            stopping: std::sync::atomic::AtomicBool::new(false),
        });
        control.route_events(mode);
        if let (StoreMode::Json, Some(j)) = (mode, control.json()) {
            let pending = j.outbox().pending_snapshot().len();
            if pending > 0 {
                tracing::warn!(
                    pending,
                    "json mode with outbox entries never replayed: PostgreSQL misses these writes \
                    (switch to dual-json to replay them, or treat PostgreSQL as stale)"
                );
            }
        }
        match mode {
            StoreMode::DualJson => {
                control.start_dual_json();
                control.slot.store(Arc::new(StoreSlot { store: control.dual_json_store(), mode }));
            }
            StoreMode::DualPostgres => {
                control.start_dual_postgres(control.epoch());
                control.slot.store(Arc::new(StoreSlot { store: control.dual_postgres_store(), mode }));
            }
            StoreMode::Json | StoreMode::Postgres => {}
        }
        control.spawn_heartbeat();
        control
    }

    /// Realtime events come from the primary's commits only (a secondary's replays emit nothing).
    fn route_events(&self, mode: StoreMode) {
        let (json, pg) = (self.json(), self.postgres());
        if primary_of(mode) == "json" {
            if let (Some(j), Some(sink)) = (&json, &self.hooks.sink) {
                j.set_event_sink(sink.clone());
            }
            if let Some(p) = &pg {
                p.clear_event_sink();
            }
        } else {
            if let Some(p) = &pg {
                if let Some(sink) = &self.hooks.sink {
                    p.set_event_sink(sink.clone());
                }
                (self.hooks.on_pg_primary)(p);
            }
            if let Some(j) = &json {
                j.clear_event_sink();
            }
        }
    }

    pub fn json(&self) -> Option<Arc<JsonStore>> {
        self.json.lock().clone()
    }

    /// Admission of one API write (held until the response): waits while a primary flip holds the barrier.
    pub async fn admit_write(&self) -> tokio::sync::OwnedRwLockReadGuard<()> {
        self.gate.clone().read_owned().await
    }

    /// The store requests use in dual-json: the JSON store, with sampled reads repeated against PostgreSQL.
    fn dual_json_store(&self) -> DynStore {
        let json = self.json().expect("json modes run the JSON store");
        let Some(pg) = self.postgres() else { return json };
        let outbox = json.outbox();
        Arc::new(ShadowStore::new(json, pg, self.shadow_rate.clone(), Arc::new(move |key| outbox.has_pending(key))))
    }

    /// The store requests use in dual-postgres: PostgreSQL, with sampled reads repeated against the JSON store.
    fn dual_postgres_store(&self) -> DynStore {
        let pg = self.postgres().expect("dual-postgres runs PostgreSQL");
        let Some(json) = self.json() else { return pg };
        let check = pg.clone();
        Arc::new(ShadowStore::new(pg, json, self.shadow_rate.clone(), Arc::new(move |_| check.outbox_maybe_pending())))
    }

    pub fn shadow_read_rate(&self) -> f64 {
        if secondary_of(self.mode()).is_some() {
            self.shadow_rate.get()
        } else {
            0.0
        }
    }

    /// `PUT /api/admin/store {"shadowReadRate"}`: dual modes only.
    pub fn set_shadow_read_rate(&self, rate: f64) -> Result<(), SwitchError> {
        if secondary_of(self.mode()).is_none() {
            return Err(SwitchError::Refused(format!(
                "shadow reads run in the dual modes only; the mode is {}",
                self.mode()
            )));
        }
        self.shadow_rate.set(rate);
        tracing::info!(rate, "shadow read rate changed");
        Ok(())
    }

    /// For unit tests of the HTTP layer: a fixed store, no persistence.
    pub fn fixed(config: Arc<Config>, store: DynStore, mode: StoreMode) -> Arc<StoreControl> {
        Arc::new(StoreControl {
            data_dir: config.data_dir.clone(),
            shadow_rate: Arc::new(ShadowRate::new(0.0)),
            config,
            slot: ArcSwap::from_pointee(StoreSlot { store, mode }),
            json: Mutex::new(None),
            json_lock: Mutex::new(None),
            pg: Mutex::new(None),
            gate: Arc::new(tokio::sync::RwLock::new(())),
            hooks: Hooks::none(),
            replayer: Mutex::new(None),
            persisted: Mutex::new(PersistedMode {
                mode,
                epoch: 0,
                since: time::now(),
                pg_stale: false,
                json_frozen_at: None,
            }),
            switching: tokio::sync::Mutex::new(()),
            stopping: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn store(&self) -> DynStore {
        self.slot.load().store.clone()
    }

    pub fn mode(&self) -> StoreMode {
        self.slot.load().mode
    }

    pub fn epoch(&self) -> u64 {
        self.persisted.lock().epoch
    }

    pub fn postgres(&self) -> Option<Arc<PostgresStore>> {
        self.pg.lock().clone()
    }

    pub fn outbox_status(&self) -> OutboxStatus {
        match self.replayer.lock().as_ref() {
            Some(r) => r.status(),
            None => OutboxStatus::empty(),
        }
    }

    fn start_dual_json(&self) {
        let (Some(json), Some(pg)) = (self.json(), self.postgres()) else {
            return;
        };
        json.enable_outbox(self.epoch());
        let mut slot = self.replayer.lock();
        if slot.is_none() {
            *slot = Some(Replayer::start(json.outbox(), pg, self.config.outbox_interval));
        }
    }

    /// dual-postgres: every PostgreSQL write records its entries (stamped `epoch`); the worker replays them into
    /// the JSON store.
    fn start_dual_postgres(&self, epoch: u64) {
        let (Some(json), Some(pg)) = (self.json(), self.postgres()) else {
            return;
        };
        pg.enable_outbox(epoch);
        let mut slot = self.replayer.lock();
        if slot.is_none() {
            *slot = Some(Replayer::start(Arc::new(PgOutbox::new(pg)), json, self.config.outbox_interval));
        }
    }

    fn stop_replayer(&self) {
        if let Some(r) = self.replayer.lock().take() {
            r.stop();
        }
    }

    /// Keeps this instance's `store_instances` row fresh while PostgreSQL is in use (store-modes.md §5), so other
    /// instances and `fluxstudio migrate --overwrite` see which modes are live.
    pub fn spawn_heartbeat(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(control) = me.upgrade() else { return };
                if control.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                if let Some(pg) = control.postgres() {
                    let mode = control.mode();
                    let result = sqlx::query(HEARTBEAT)
                        .bind(&control.config.instance_id)
                        .bind(mode.as_str())
                        .bind(control.epoch() as i64)
                        .bind(hostname())
                        .execute(pg.pool())
                        .await;
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "store_instances heartbeat failed");
                    }
                }
                drop(control);
                tokio::time::sleep(HEARTBEAT_EVERY).await;
            }
        });
    }

    async fn live_instances(&self) -> Option<Vec<InstanceInfo>> {
        live_instances(&*self.postgres()?).await
    }

    /// Stops the worker after one last replay attempt (graceful shutdown, store-modes.md / issue: "attempt one
    /// outbox replay").
    pub async fn shutdown(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        let replayer = self.replayer.lock().take();
        if let Some(r) = replayer {
            let _ = r.wait_drained(Duration::from_secs(2)).await;
            r.stop();
        }
        // A cleanly stopped instance removes its row (a killed one ages out after 15 s).
        if let Some(pg) = self.postgres() {
            let delete = sqlx::query("delete from store_instances where instance_id = $1")
                .bind(&self.config.instance_id)
                .execute(pg.pool());
            let _ = tokio::time::timeout(Duration::from_secs(2), delete).await;
        }
    }

    /// The secondary store of a dual mode.
    pub fn secondary(&self) -> Option<DynStore> {
        Some(match secondary_of(self.mode())? {
            "postgres" => self.postgres()?,
            _ => self.json()?,
        })
    }

    /// Reachability of the secondary (bounded), `None` in single-store modes.
    pub async fn secondary_reachable(&self) -> Option<bool> {
        let secondary = self.secondary()?;
        let ok = matches!(tokio::time::timeout(Duration::from_secs(2), secondary.check_health()).await, Ok(Ok(())));
        Some(ok)
    }

    async fn last_validation(&self) -> Option<LastValidation> {
        last_validation(&*self.postgres()?).await
    }

    pub async fn status(&self) -> StoreStatus {
        // An operator's status asks `store_outbox` itself rather than the worker's cached depth.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.refresh_store_outbox_depth()).await;
        let mode = self.mode();
        let persisted = self.persisted.lock().clone();
        let switching = self.switching.try_lock().is_err();
        let secondary_reachable = self.secondary_reachable().await;
        let me = InstanceInfo {
            id: self.config.instance_id.clone(),
            mode,
            epoch: persisted.epoch,
            heartbeat_at: time::now(),
        };
        // Live rows from store_instances when PostgreSQL answers; this instance is always listed.
        let mut instances = self.live_instances().await.unwrap_or_default();
        instances.retain(|i| i.id != me.id);
        instances.insert(0, me);
        StoreStatus {
            mode,
            primary: primary_of(mode),
            secondary: secondary_of(mode),
            switching,
            epoch: persisted.epoch,
            since: persisted.since.clone(),
            secondary_reachable,
            shadow_read_rate: self.shadow_read_rate(),
            outbox: self.outbox_status(),
            last_validation: self.last_validation().await,
            instances,
        }
    }

    /// `PUT /api/admin/store` / `fluxstudio store switch`.
    pub async fn switch(&self, req: SwitchRequest) -> Result<SwitchOutcome, SwitchError> {
        let _guard = self
            .switching
            .try_lock()
            .map_err(|_| SwitchError::InProgress("a store switch is already running".into()))?;
        let from = self.mode();
        let to = req.mode;
        if from == to {
            return Ok(SwitchOutcome {
                previous_mode: from,
                mode: to,
                changed: false,
                epoch: self.epoch(),
                switched_at: self.persisted.lock().since.clone(),
                outbox: self.outbox_status(),
            });
        }
        if !neighbours(from).contains(&to) {
            let allowed: Vec<&str> = neighbours(from).iter().map(|m| m.as_str()).collect();
            return Err(SwitchError::Refused(format!(
                "{from} -> {to} skips a step; allowed next modes: {}",
                allowed.join(", ")
            )));
        }
        match (from, to) {
            (StoreMode::Json, StoreMode::DualJson) => self.json_to_dual_json().await?,
            (StoreMode::DualJson, StoreMode::Json) => self.dual_json_to_json(req.force, req.timeout).await?,
            (StoreMode::DualJson, StoreMode::DualPostgres) | (StoreMode::DualPostgres, StoreMode::DualJson) => {
                self.flip_primary(to, req.timeout).await?
            }
            (StoreMode::DualPostgres, StoreMode::Postgres) => self.dual_postgres_to_postgres(req.timeout).await?,
            (StoreMode::Postgres, StoreMode::DualPostgres) => self.postgres_to_dual_postgres(req.timeout).await?,
            _ => unreachable!("neighbours() allows one step only"),
        }
        let persisted = self.persisted.lock().clone();
        tracing::info!(from = %from, to = %to, epoch = persisted.epoch, "store mode switched");
        crate::telemetry::set_store_mode(to);
        Ok(SwitchOutcome {
            previous_mode: from,
            mode: to,
            changed: true,
            epoch: persisted.epoch,
            switched_at: persisted.since,
            outbox: self.outbox_status(),
        })
    }

    async fn ensure_postgres(&self) -> Result<Arc<PostgresStore>, SwitchError> {
        if self.config.database_url.is_none() {
            return Err(SwitchError::NotConfigured(
                "the target mode needs PostgreSQL, and no database is configured (DATABASE_URL or DB_*)".into(),
            ));
        }
        if let Some(pg) = self.postgres() {
            return Ok(pg);
        }
        let pg =
            crate::app::connect_postgres(&self.config).await.map_err(|e| SwitchError::Unavailable(e.to_string()))?;

        let mut slot = self.pg.lock();
        Ok(slot.get_or_insert(pg).clone())
    }

    fn persist(&self, next: PersistedMode) -> Result<(), SwitchError> {
        next.write(&self.data_dir).map_err(|e| {
            SwitchError::Unavailable(format!("cannot persist the store mode in {}: {e}", self.data_dir.display()))
        })?;
        *self.persisted.lock() = next;
        Ok(())
    }

    /// A start in a dual mode records its mode and epoch in `store_state` (the data dir's state file is the
    /// authority for a single-instance mode), so that `validate` records its pass for this epoch.
    pub async fn record_started_mode(&self) {
        let mode = self.mode();
        if secondary_of(mode).is_none() {
            return;
        }
        if let Some(pg) = self.postgres() {
            if let Err(e) = self.record_in_postgres(&pg, mode, self.epoch()).await {
                tracing::warn!(error = %e, "could not record the store mode in PostgreSQL's store_state");
            }
        }
    }

    async fn record_in_postgres(&self, pg: &PostgresStore, mode: StoreMode, epoch: u64) -> Result<(), StoreError> {
        record_mode(pg, mode, epoch, &self.config.instance_id).await
    }

    async fn json_to_dual_json(&self) -> Result<(), SwitchError> {
        let pg = self.reachable_postgres().await?;
        self.require_single_instance(StoreMode::DualJson).await?;
        let pending = pg.pending_migrations().await.map_err(|e| SwitchError::Unavailable(e.to_string()))?.len();
        if pending > 0 {
            return Err(SwitchError::Refused(format!(
                "the PostgreSQL schema is not current ({pending} migrations pending); run `fluxstudio db migrate`"
            )));
        }
        pg.reload_legacy_ids().await.map_err(|e| SwitchError::Unavailable(format!("PostgreSQL: {e}")))?;
        let mut next = self.persisted.lock().clone();
        next.mode = StoreMode::DualJson;
        next.epoch += 1;
        next.since = time::now();
        self.record_in_postgres(&pg, next.mode, next.epoch)
            .await
            .map_err(|e| SwitchError::Unavailable(format!("cannot record the store mode in PostgreSQL: {e}")))?;
        self.persist(next)?;
        self.start_dual_json();
        self.slot.store(Arc::new(StoreSlot { store: self.dual_json_store(), mode: StoreMode::DualJson }));
        Ok(())
    }

    async fn dual_json_to_json(&self, force: bool, timeout: Duration) -> Result<(), SwitchError> {
        let json = self.json().expect("json modes run the JSON store");
        let replayer = self.replayer.lock().clone();
        let deadline = tokio::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        let not_drained = |json: &JsonStore| {
            SwitchError::NotDrained(format!(
                "the outbox still holds {} pending entries after {} s; PostgreSQL must catch up first \
                 (or use force, which discards them and marks PostgreSQL stale)",
                json.outbox().pending_snapshot().len(),
                timeout.as_secs()
            ))
        };
        // Writes pause (they wait, they do not fail) from here until recording stops: entries acknowledged after
        // this point could not be replayed if the switch were then refused.
        let mut discarded = false;
        let _paused = if force {
            discarded = !json.outbox().is_empty();
            None
        } else {
            // Let the replay catch up while writes go on, then pause them for the tail.
            if let Some(r) = &replayer {
                r.wait_small(256, left() / 2).await;
            }
            let paused = json.pause_writes(left()).await.ok_or_else(|| not_drained(&json))?;
            if let Some(r) = &replayer {
                if !r.wait_drained(left()).await {
                    return Err(not_drained(&json));
                }
            }
            Some(paused)
        };
        loop {
            if json.disable_outbox(force) {
                break;
            }
            // Forced: an entry still between its commit and its fsync; it lands within milliseconds.
            if tokio::time::Instant::now() >= deadline {
                return Err(not_drained(&json));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut next = self.persisted.lock().clone();
        next.mode = StoreMode::Json;
        next.epoch += 1;
        next.since = time::now();
        next.pg_stale |= discarded;
        if let Err(e) = self.persist(next.clone()) {
            json.enable_outbox(self.epoch());
            return Err(e);
        }
        if let Some(r) = self.replayer.lock().take() {
            r.stop();
        }
        if let Some(pg) = self.postgres() {
            if let Err(e) = self.record_in_postgres(&pg, next.mode, next.epoch).await {
                tracing::warn!(error = %e, "could not record the json mode in PostgreSQL's store_state");
            }
        }
        self.slot.store(Arc::new(StoreSlot { store: json, mode: StoreMode::Json }));
        Ok(())
    }

    async fn reachable_postgres(&self) -> Result<Arc<PostgresStore>, SwitchError> {
        let pg = self.ensure_postgres().await?;
        match tokio::time::timeout(Duration::from_secs(5), pg.check_health()).await {
            Ok(Ok(())) => Ok(pg),
            Ok(Err(e)) => Err(SwitchError::Unavailable(format!("PostgreSQL is not reachable: {e}"))),
            Err(_) => Err(SwitchError::Unavailable("PostgreSQL did not answer within 5 s".into())),
        }
    }

    /// Dual modes with a JSON primary, and the flip between the dual modes, need this instance to be the only
    /// live one (store-modes.md §2, §5).
    async fn require_single_instance(&self, target: StoreMode) -> Result<(), SwitchError> {
        let others: Vec<InstanceInfo> = self
            .live_instances()
            .await
            .ok_or_else(|| SwitchError::Unavailable("cannot read store_instances from PostgreSQL".into()))?
            .into_iter()
            .filter(|i| i.id != self.config.instance_id)
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = others.iter().map(|i| i.id.as_str()).collect();
        Err(SwitchError::Refused(format!(
            "{target} runs exactly one instance, and {} other live instance(s) are registered ({}); stop them first",
            others.len(),
            ids.join(", ")
        )))
    }

    /// A primary flip needs a passing `fluxstudio validate` recorded for the current epoch, at most 24 h old.
    async fn require_validation(&self, from: StoreMode, to: StoreMode) -> Result<(), SwitchError> {
        let pg = self.postgres().ok_or_else(|| SwitchError::NotConfigured("no PostgreSQL store is open".into()))?;
        let persisted = self.persisted.lock().clone();
        validation_allows(&pg, &persisted, from, to).await.map_err(SwitchError::Refused)
    }

    /// Closes the write gate: waits for in-flight writes, then holds every new one until the guard drops.
    async fn barrier(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<tokio::sync::OwnedRwLockWriteGuard<()>, SwitchError> {
        tokio::time::timeout_at(deadline, self.gate.clone().write_owned()).await.map_err(|_| {
            SwitchError::Refused("in-flight writes did not finish within the switch timeout; nothing changed".into())
        })
    }

    /// Waits until the running replay worker has applied every entry. For `store_outbox` the depth is asked from
    /// the table itself: the worker's cached depth may predate the last commit before the barrier.
    async fn drain(&self, deadline: tokio::time::Instant) -> Result<(), SwitchError> {
        let replayer = self.replayer.lock().clone();
        let Some(r) = replayer else { return Ok(()) };
        loop {
            let depth = match self.refresh_store_outbox_depth().await {
                Some(asked) => asked.map_err(|e| SwitchError::Unavailable(e.to_string()))?,
                None => r.status().depth,
            };
            if depth == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SwitchError::NotDrained(format!(
                    "the outbox still holds {depth} pending entries (replayed into {}); the switch waited until its \
                     timeout; see lastReplayError in the store status",
                    r.target_name()
                )));
            }
            r.wake();
            let _ = tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(20))).await;
        }
    }

    /// When the running worker replays from `store_outbox` (dual-postgres): its depth asked from the table, which
    /// also refreshes the worker's cached depth. `None` in the other modes.
    async fn refresh_store_outbox_depth(&self) -> Option<StoreResult<usize>> {
        let replayer = self.replayer.lock().clone();
        if replayer?.target_name() != "json" {
            return None;
        }
        let pg = self.postgres()?;
        Some(PgOutbox::new(pg).refresh().await.map(|(depth, _)| depth))
    }

    async fn next_state(&self, pg: &PostgresStore, mode: StoreMode) -> Result<PersistedMode, SwitchError> {
        let mut next = self.persisted.lock().clone();
        next.mode = mode;
        next.epoch += 1;
        next.since = time::now();
        next.json_frozen_at = None;
        self.record_in_postgres(pg, next.mode, next.epoch)
            .await
            .map_err(|e| SwitchError::Unavailable(format!("cannot record the store mode in PostgreSQL: {e}")))?;
        Ok(next)
    }

    /// `dual-json -> dual-postgres` and back: outbox drained under the write barrier, then the primary's handle is
    /// swapped and the outbox turns around.
    async fn flip_primary(&self, to: StoreMode, timeout: Duration) -> Result<(), SwitchError> {
        let from = self.mode();
        let deadline = tokio::time::Instant::now() + timeout;
        let pg = self.reachable_postgres().await?;
        let json = self.json().expect("dual modes run the JSON store");
        self.require_validation(from, to).await?;
        self.require_single_instance(to).await?;
        // Let the worker catch up while writes go on, so the pause below covers only the tail.
        let replayer = self.replayer.lock().clone();
        if let Some(r) = replayer {
            r.wait_small(64, timeout / 2).await;
        }
        let _barrier = self.barrier(deadline).await?;
        self.drain(deadline).await?;
        let next = self.next_state(&pg, to).await?;
        self.persist(next.clone())?;
        self.stop_replayer();
        if to == StoreMode::DualPostgres {
            if !json.disable_outbox(false) {
                return Err(SwitchError::NotDrained("the JSON outbox gained entries under the barrier".into()));
            }
            self.start_dual_postgres(next.epoch);
            self.route_events(to);
            self.slot.store(Arc::new(StoreSlot { store: self.dual_postgres_store(), mode: to }));
        } else {
            pg.disable_outbox();
            self.start_dual_json();
            self.route_events(to);
            self.slot.store(Arc::new(StoreSlot { store: self.dual_json_store(), mode: to }));
        }
        Ok(())
    }

    /// `dual-postgres -> postgres`: the JSON side drained, its journal compacted into the files and the data dir
    /// marked frozen, so the files are a complete rollback point that cannot become primary by accident.
    async fn dual_postgres_to_postgres(&self, timeout: Duration) -> Result<(), SwitchError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let pg = self.reachable_postgres().await?;
        let _barrier = self.barrier(deadline).await?;
        self.drain(deadline).await?;
        let json = self.json().expect("dual-postgres runs the JSON store");
        json.close()
            .await
            .map_err(|e| SwitchError::Unavailable(format!("cannot compact the JSON journal into the files: {e}")))?;
        let mut next = self.next_state(&pg, StoreMode::Postgres).await?;
        next.json_frozen_at = Some(time::now());
        self.persist(next)?;
        pg.disable_outbox();
        self.stop_replayer();
        *self.json.lock() = None;
        self.route_events(StoreMode::Postgres);
        self.slot.store(Arc::new(StoreSlot { store: pg, mode: StoreMode::Postgres }));
        Ok(())
    }

    /// `postgres -> dual-postgres`: writes start recording JSON entries, PostgreSQL is exported from one
    /// repeatable-read snapshot into the files (previous files backed up), the entries that snapshot already holds
    /// are marked done, and the worker replays the rest into the reopened JSON store.
    async fn postgres_to_dual_postgres(&self, timeout: Duration) -> Result<(), SwitchError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let pg = self.reachable_postgres().await?;
        self.require_single_instance(StoreMode::DualPostgres).await?;
        {
            let mut lock = self.json_lock.lock();
            if lock.is_none() {
                *lock = Some(DataDirLock::acquire(&self.data_dir).map_err(|e| SwitchError::Refused(e.to_string()))?);
            }
        }
        let epoch = self.epoch() + 1;
        {
            let _barrier = self.barrier(deadline).await?;
            pg.enable_outbox(epoch);
        }
        let result = self.export_and_open(&pg).await;
        let json = match result {
            Ok(json) => json,
            Err(e) => {
                pg.disable_outbox();
                return Err(e);
            }
        };
        *self.json.lock() = Some(json);
        let next = match self.next_state(&pg, StoreMode::DualPostgres).await {
            Ok(next) => next,
            Err(e) => {
                pg.disable_outbox();
                *self.json.lock() = None;
                return Err(e);
            }
        };
        self.persist(next.clone())?;
        self.start_dual_postgres(next.epoch);
        self.route_events(StoreMode::DualPostgres);
        self.slot.store(Arc::new(StoreSlot { store: self.dual_postgres_store(), mode: StoreMode::DualPostgres }));
        Ok(())
    }

    async fn export_and_open(&self, pg: &PostgresStore) -> Result<Arc<JsonStore>, SwitchError> {
        let failed = |what: &str, e: String| SwitchError::Unavailable(format!("{what}: {e}"));
        let mut conn = pg.pool().acquire().await.map_err(|e| failed("PostgreSQL", e.to_string()))?;
        let report = crate::migrate::rollback::export_for_dual_postgres(&mut conn, &self.data_dir)
            .await
            .map_err(|e| failed("exporting PostgreSQL into the JSON files", e.message))?;
        drop(conn);
        tracing::info!(backup = ?report.backup, counts = ?report.counts, "PostgreSQL exported into the JSON files");
        let opts = json_options(&self.config);
        let json = tokio::task::spawn_blocking(move || JsonStore::open(opts))
            .await
            .map_err(|e| failed("opening the JSON store", e.to_string()))?
            .map_err(|e| failed("opening the JSON store", e.to_string()))?;
        Ok(Arc::new(json))
    }
}

/// The JSON store's options from the configuration (the file-system seam stays the default).
pub fn json_options(config: &Config) -> JsonOptions {
    let mut opts = JsonOptions::new(&config.data_dir);
    opts.compact_bytes = config.json_compact_bytes;
    opts.compact_seconds = config.json_compact_seconds;
    opts
}

/// Records the mode and epoch in `store_state` (`by`: the instance or command that changed it).
pub async fn record_mode(pg: &PostgresStore, mode: StoreMode, epoch: u64, by: &str) -> Result<(), StoreError> {
    sqlx::query(UPSERT_STORE_STATE)
        .bind(mode.as_str())
        .bind(epoch as i64)
        .bind(by)
        .execute(pg.pool())
        .await
        .map(drop)
        .map_err(|e| pg.err(e))
}

/// The last passing validation recorded in `store_state` (`None` also when PostgreSQL does not answer in 2 s).
pub async fn last_validation(pg: &PostgresStore) -> Option<LastValidation> {
    let row: Option<(Option<chrono::DateTime<chrono::Utc>>, Option<i64>)> = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query_as("select validated_at, validated_epoch from store_state where singleton")
            .fetch_optional(pg.pool()),
    )
    .await
    .ok()?
    .ok()?;
    match row {
        Some((Some(at), Some(epoch))) => {
            Some(LastValidation { at: time::format_ts(at), passed: true, epoch: epoch.max(0) as u64 })
        }
        _ => None,
    }
}

/// The precondition of a primary flip (live or offline): PostgreSQL not stale, and a passing validation recorded
/// for the current epoch, at most 24 h old. `Err` carries the reason for the operator.
pub async fn validation_allows(
    pg: &PostgresStore,
    persisted: &PersistedMode,
    from: StoreMode,
    to: StoreMode,
) -> Result<(), String> {
    if persisted.pg_stale {
        return Err("PostgreSQL is stale (a forced dual-json -> json discarded outbox entries); run `fluxstudio \
             migrate` and `fluxstudio validate` first"
            .into());
    }
    let epoch = persisted.epoch;
    let advice = "run `fluxstudio validate` (exit 0) and switch again";
    let Some(v) = last_validation(pg).await else {
        return Err(format!(
            "{from} -> {to} needs a passing validation for the current epoch {epoch}, and none is recorded; {advice}"
        ));
    };
    if v.epoch != epoch {
        return Err(format!(
            "{from} -> {to} needs a passing validation for the current epoch {epoch}; the last one was for epoch {}; \
             {advice}",
            v.epoch
        ));
    }
    if time::age_seconds(&v.at).unwrap_or(f64::MAX) > 24.0 * 3600.0 {
        return Err(format!(
            "{from} -> {to} needs a validation at most 24 h old; the last passed at {}; {advice}",
            v.at
        ));
    }
    Ok(())
}

/// The instances whose `store_instances` heartbeat is younger than 15 s (`None` when PostgreSQL does not answer
/// within 2 s).
pub async fn live_instances(pg: &PostgresStore) -> Option<Vec<InstanceInfo>> {
    Some(live_rows(pg).await?.into_iter().map(|(info, _)| info).collect())
}

/// Live instances with their hosts.
async fn live_rows(pg: &PostgresStore) -> Option<Vec<(InstanceInfo, Option<String>)>> {
    type Row = (String, String, i64, chrono::DateTime<chrono::Utc>, Option<String>);
    let rows: Vec<Row> =
        tokio::time::timeout(Duration::from_secs(2), sqlx::query_as(LIVE_INSTANCES).fetch_all(pg.pool()))
            .await
            .ok()?
            .ok()?;
    Some(
        rows.into_iter()
            .filter_map(|(id, mode, epoch, at, host)| {
                let info = InstanceInfo {
                    id,
                    mode: StoreMode::parse(&mode)?,
                    epoch: epoch.max(0) as u64,
                    heartbeat_at: time::format_ts(at),
                };
                Some((info, host))
            })
            .collect(),
    )
}

/// This machine's name, as the heartbeat records it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A dual mode runs one instance (store-modes.md §2): a start that finds a live instance of another host
/// registered on the same database refuses, naming it. On this host the data dir lock decides (and a killed
/// instance's fresh row must not block its own restart).
pub async fn refuse_other_instances(pg: &PostgresStore, mode: StoreMode, me: &str) -> Result<(), String> {
    let host = hostname();
    let others: Vec<(InstanceInfo, Option<String>)> = live_rows(pg)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|(i, h)| i.id != me && h.as_deref() != Some(host.as_str()))
        .collect();
    match others.first() {
        None => Ok(()),
        Some((other, other_host)) => Err(format!(
            "another live fluxstudio instance ({} on {}, mode {}, heartbeat {}) uses this database; json, dual-json \
             and dual-postgres run a single instance, so this {mode} start is refused (stop it, or wait 15 s after \
             it died)",
            other.id,
            other_host.as_deref().unwrap_or("an unknown host"),
            other.mode,
            other.heartbeat_at
        )),
    }
}

/// Resolves the mode to start in: the persisted one wins over the configured one unless `FLUX_STORE_FORCE`.
pub fn startup_mode(config: &Config) -> Result<(StoreMode, PersistedMode), String> {
    let persisted = PersistedMode::read(&config.data_dir)?;
    let configured = config.store_mode;
    Ok(match persisted {
        Some(p) if p.mode != configured && !config.store_force => {
            tracing::warn!(persisted = %p.mode, configured = %configured,
                "the persisted store mode ({}) wins over the configured one ({}); FLUX_STORE_FORCE=1 makes the configuration win",
                p.mode, configured);
            (p.mode, p)
        }
        Some(mut p) => {
            if p.mode != configured {
                tracing::warn!(persisted = %p.mode, configured = %configured, "FLUX_STORE_FORCE: the configured store mode wins");
                p.mode = configured;
                p.epoch += 1;
                p.since = time::now();
            }
            (configured, p)
        }
        None => (
            configured,
            PersistedMode { mode: configured, epoch: 1, since: time::now(), pg_stale: false, json_frozen_at: None },
        ),
    })
}

/// Compile-time check: the switch runs inside axum handlers, which need `Send` futures (sqlx's migrator future is
/// not, which is why a live switch requires a current schema instead of migrating).
#[allow(dead_code)]
fn assert_send(c: &StoreControl, r: SwitchRequest) {
    fn is_send<T: Send>(_: T) {}
    is_send(c.json_to_dual_json());
    is_send(c.dual_json_to_json(false, Duration::ZERO));
    is_send(c.status());
    is_send(c.ensure_postgres());
    is_send(c.flip_primary(StoreMode::DualPostgres, Duration::ZERO));
    is_send(c.postgres_to_dual_postgres(Duration::ZERO));
    is_send(c.dual_postgres_to_postgres(Duration::ZERO));
    is_send(c.switch(r));
}
