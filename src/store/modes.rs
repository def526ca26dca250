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

use super::json::JsonStore;
use super::outbox::{OutboxStatus, Replayer};
use super::postgres::PostgresStore;
use super::shadow::{ShadowRate, ShadowStore};
use super::{DynStore, Store, StoreError};
use crate::config::{Config, StoreMode};
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

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SwitchOutcome {
    pub previous_mode: StoreMode,
    pub mode: StoreMode,
    pub changed: bool,
    pub epoch: u64,
    pub switched_at: String,
    pub outbox: OutboxStatus,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastValidation {
    pub at: String,
    pub passed: bool,
    pub epoch: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceInfo {
    pub id: String,
    pub mode: StoreMode,
    pub epoch: u64,
    pub heartbeat_at: String,
}

/// The body of `GET /api/admin/store` (http-api.md §13).
#[derive(Clone, Debug, Serialize)]
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
    "insert into store_instances (instance_id, mode, epoch, heartbeat_at) values ($1, $2, $3, now()) \
     on conflict (instance_id) do update set mode = excluded.mode, epoch = excluded.epoch, heartbeat_at = now()";
const LIVE_INSTANCES: &str = "select instance_id, mode, epoch, heartbeat_at from store_instances \
     where heartbeat_at > now() - interval '15 seconds' order by instance_id";
/// How often an instance refreshes its `store_instances` row; rows older than 15 s count as gone.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

const UPSERT_STORE_STATE: &str = "insert into store_state (singleton, mode, epoch, changed_at, changed_by) \
     values (true, $1, $2, now(), $3) \
     on conflict (singleton) do update set mode = excluded.mode, epoch = excluded.epoch, \
       changed_at = excluded.changed_at, changed_by = excluded.changed_by";

pub struct StoreControl {
    config: Arc<Config>,
    data_dir: PathBuf,
    slot: ArcSwap<StoreSlot>,
    json: Option<Arc<JsonStore>>,
    pg: Mutex<Option<Arc<PostgresStore>>>,
    replayer: Mutex<Option<Arc<Replayer>>>,
    persisted: Mutex<PersistedMode>,
    switching: tokio::sync::Mutex<()>,
    shadow_rate: Arc<ShadowRate>,
    stopping: std::sync::atomic::AtomicBool,
}

impl StoreControl {
    /// `json`/`pg` are the stores opened at start-up for `mode`; dual-json starts its outbox worker here.
    pub fn new(
        config: Arc<Config>,
        mode: StoreMode,
        persisted: PersistedMode,
        json: Option<Arc<JsonStore>>,
        pg: Option<Arc<PostgresStore>>,
    ) -> Arc<StoreControl> {
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
            json,
            pg: Mutex::new(pg),
            replayer: Mutex::new(None),
            persisted: Mutex::new(persisted),
            switching: tokio::sync::Mutex::new(()),
            stopping: std::sync::atomic::AtomicBool::new(false),
        });
        if let (StoreMode::Json, Some(j)) = (mode, &control.json) {
            let pending = j.outbox().pending_snapshot().len();
            if pending > 0 {
                tracing::warn!(
                    pending,
                    "json mode with outbox entries never replayed: PostgreSQL misses these writes \
                    (switch to dual-json to replay them, or treat PostgreSQL as stale)"
                );
            }
        }
        if mode == StoreMode::DualJson {
            control.start_dual_json();
            control.slot.store(Arc::new(StoreSlot { store: control.dual_json_store(), mode }));
        }
        control.spawn_heartbeat();
        control
    }

    /// The store requests use in dual-json: the JSON store, with sampled reads repeated against PostgreSQL.
    fn dual_json_store(&self) -> DynStore {
        let json = self.json.clone().expect("json modes run the JSON store");
        let Some(pg) = self.postgres() else { return json };
        let outbox = json.outbox();
        Arc::new(ShadowStore::new(json, pg, self.shadow_rate.clone(), Arc::new(move |key| outbox.has_pending(key))))
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
            json: None,
            pg: Mutex::new(None),
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
        let (Some(json), Some(pg)) = (self.json.clone(), self.postgres()) else {
            return;
        };
        json.enable_outbox(self.epoch());
        let mut slot = self.replayer.lock();
        if slot.is_none() {
            *slot = Some(Replayer::start(json.outbox(), pg, self.config.outbox_interval));
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
        let pg = self.postgres()?;
        let rows: Vec<(String, String, i64, chrono::DateTime<chrono::Utc>)> =
            tokio::time::timeout(Duration::from_secs(2), sqlx::query_as(LIVE_INSTANCES).fetch_all(pg.pool()))
                .await
                .ok()?
                .ok()?;
        Some(
            rows.into_iter()
                .filter_map(|(id, mode, epoch, at)| {
                    Some(InstanceInfo {
                        id,
                        mode: StoreMode::parse(&mode)?,
                        epoch: epoch.max(0) as u64,
                        heartbeat_at: time::format_ts(at),
                    })
                })
                .collect(),
        )
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
            _ => self.json.clone()?,
        })
    }

    /// Reachability of the secondary (bounded), `None` in single-store modes.
    pub async fn secondary_reachable(&self) -> Option<bool> {
        let secondary = self.secondary()?;
        let ok = matches!(tokio::time::timeout(Duration::from_secs(2), secondary.check_health()).await, Ok(Ok(())));
        Some(ok)
    }

    async fn last_validation(&self) -> Option<LastValidation> {
        let pg = self.postgres()?;
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

    pub async fn status(&self) -> StoreStatus {
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
            _ => {
                return Err(SwitchError::Refused(format!(
                    "{from} -> {to} is not available in this version yet (live switching covers json <-> dual-json)"
                )))
            }
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

    async fn record_in_postgres(&self, pg: &PostgresStore, mode: StoreMode, epoch: u64) -> Result<(), StoreError> {
        sqlx::query(UPSERT_STORE_STATE)
            .bind(mode.as_str())
            .bind(epoch as i64)
            .bind(&self.config.instance_id)
            .execute(pg.pool())
            .await
            .map(drop)
            .map_err(|e| pg.err(e))
    }

    async fn json_to_dual_json(&self) -> Result<(), SwitchError> {
        let pg = self.ensure_postgres().await?;
        match tokio::time::timeout(Duration::from_secs(5), pg.check_health()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(SwitchError::Unavailable(format!("PostgreSQL is not reachable: {e}"))),
            Err(_) => return Err(SwitchError::Unavailable("PostgreSQL did not answer within 5 s".into())),
        }
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
        let json = self.json.clone().expect("json modes run the JSON store");
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
    is_send(c.switch(r));
}
