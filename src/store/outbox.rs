//! The dual-write outbox (store-modes.md §2): entries, their mapping to record after-images, and the replay worker
//! that applies them to the secondary store.
//!
//! An entry is one changed record — an after-image (`upsert`) or a delete — expressed through the JSON store's
//! journal [`Op`], which already is an idempotent after-image keyed by id. Both directions use it: the JSON primary
//! derives entries from the ops of each journal record, and the PostgreSQL secondary applies an op with upserts.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{watch, Notify};

use super::json::state::Op;
use crate::domain::time;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryOp {
    Upsert,
    Delete,
}

/// One outbox entry in the wire format of store-modes.md §2. `position` (not in the spec's example) is the
/// record's index in its project's task or milestone list, so a replay into the JSON files keeps the order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    pub seq: u64,
    pub epoch: u64,
    pub ordering_key: String,
    pub entity: String,
    pub id: String,
    pub op: EntryOp,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
}

fn to_value<T: Serialize>(rec: &T) -> Value {
    serde_json::to_value(rec).expect("records always serialise")
}

impl OutboxEntry {
    /// The entry for one journal op; `seq` is assigned by the caller.
    pub fn from_op(op: &Op, seq: u64, epoch: u64, at: &str) -> OutboxEntry {
        let project_key = |p: &str| format!("project:{p}");
        let (key, entity, id, kind, data, position) = match op {
            Op::PutUser { rec } => {
                (format!("user:{}", rec.id), "user", rec.id.clone(), EntryOp::Upsert, Some(to_value(rec)), None)
            }
            Op::DelUser { id } => (format!("user:{id}"), "user", id.clone(), EntryOp::Delete, None, None),
            Op::PutProject { rec } => {
                (project_key(&rec.id), "project", rec.id.clone(), EntryOp::Upsert, Some(to_value(rec)), None)
            }
            Op::DelProject { id } => (project_key(id), "project", id.clone(), EntryOp::Delete, None, None),
            Op::PutTask { project, pos, rec } => {
                (project_key(project), "task", rec.id.clone(), EntryOp::Upsert, Some(to_value(rec)), Some(*pos))
            }
            Op::DelTask { project, id } => (project_key(project), "task", id.clone(), EntryOp::Delete, None, None),
            Op::PutMilestone { project, pos, rec } => {
                (project_key(project), "milestone", rec.id.clone(), EntryOp::Upsert, Some(to_value(rec)), Some(*pos))
            }
            Op::DelMilestone { project, id } => {
                (project_key(project), "milestone", id.clone(), EntryOp::Delete, None, None)
            }
            Op::PutTeam { rec } => {
                (format!("team:{}", rec.id), "team", rec.id.clone(), EntryOp::Upsert, Some(to_value(rec)), None)
            }
            Op::DelTeam { id } => (format!("team:{id}"), "team", id.clone(), EntryOp::Delete, None, None),
            Op::PutFile { rec } => {
                (format!("file:{}", rec.id), "file", rec.id.clone(), EntryOp::Upsert, Some(to_value(rec)), None)
            }
            Op::DelFile { id } => (format!("file:{id}"), "file", id.clone(), EntryOp::Delete, None, None),
            Op::AddActivity { rec } => {
                (project_key(&rec.project_id), "activity", rec.id.clone(), EntryOp::Upsert, Some(to_value(rec)), None)
            }
        };
        OutboxEntry {
            seq,
            epoch,
            ordering_key: key,
            entity: entity.to_owned(),
            id,
            op: kind,
            at: at.to_owned(),
            data,
            position,
        }
    }

    /// The op this entry re-creates (the inverse of [`from_op`](Self::from_op)).
    pub fn to_op(&self) -> Result<Op, String> {
        let data = || -> Result<Value, String> {
            self.data.clone().ok_or_else(|| format!("{} {} upsert without data", self.entity, self.id))
        };
        let parse = |what: &str, e: serde_json::Error| format!("{what} {}: {e}", self.id);
        let project = || -> Result<String, String> {
            self.ordering_key
                .strip_prefix("project:")
                .map(str::to_owned)
                .ok_or_else(|| format!("{} {} outside a project key", self.entity, self.id))
        };
        let pos = self.position.unwrap_or(usize::MAX);
        let id = self.id.clone();
        Ok(match (self.entity.as_str(), self.op) {
            ("user", EntryOp::Upsert) => {
                Op::PutUser { rec: serde_json::from_value(data()?).map_err(|e| parse("user", e))? }
            }
            ("user", EntryOp::Delete) => Op::DelUser { id },
            ("project", EntryOp::Upsert) => {
                Op::PutProject { rec: serde_json::from_value(data()?).map_err(|e| parse("project", e))? }
            }
            ("project", EntryOp::Delete) => Op::DelProject { id },
            ("task", EntryOp::Upsert) => Op::PutTask {
                project: project()?,
                pos,
                rec: serde_json::from_value(data()?).map_err(|e| parse("task", e))?,
            },
            ("task", EntryOp::Delete) => Op::DelTask { project: project()?, id },
            ("milestone", EntryOp::Upsert) => Op::PutMilestone {
                project: project()?,
                pos,
                rec: serde_json::from_value(data()?).map_err(|e| parse("milestone", e))?,
            },
            ("milestone", EntryOp::Delete) => Op::DelMilestone { project: project()?, id },
            ("team", EntryOp::Upsert) => {
                Op::PutTeam { rec: serde_json::from_value(data()?).map_err(|e| parse("team", e))? }
            }
            ("team", EntryOp::Delete) => Op::DelTeam { id },
            ("file", EntryOp::Upsert) => {
                Op::PutFile { rec: serde_json::from_value(data()?).map_err(|e| parse("file", e))? }
            }
            ("file", EntryOp::Delete) => Op::DelFile { id },
            ("activity", EntryOp::Upsert) => {
                Op::AddActivity { rec: serde_json::from_value(data()?).map_err(|e| parse("activity", e))? }
            }
            (entity, op) => return Err(format!("unknown outbox entry {entity}/{op:?} for {}", self.id)),
        })
    }
}

/// Why applying an entry failed. `Unavailable` means the secondary cannot be reached at all: the worker backs off
/// as a whole instead of trying every aggregate's head entry against a dead connection.
#[derive(Debug, Clone)]
pub enum ApplyError {
    Unavailable(String),
    Failed(String),
}

/// A secondary that cannot be reached backs the worker off as a whole; any other store error holds back only the
/// entry's aggregate.
impl From<super::StoreError> for ApplyError {
    fn from(e: super::StoreError) -> ApplyError {
        match e {
            super::StoreError::Unavailable(m) => ApplyError::Unavailable(m),
            other => ApplyError::Failed(other.to_string()),
        }
    }
}

impl ApplyError {
    pub fn message(&self) -> &str {
        match self {
            ApplyError::Unavailable(m) | ApplyError::Failed(m) => m,
        }
    }
}

/// Where pending entries come from (the primary's durable outbox: the JSON journal's entries in dual-json, the
/// `store_outbox` table in dual-postgres).
#[async_trait]
pub trait OutboxSource: Send + Sync + 'static {
    /// Pending entries in `seq` order, at most `limit`.
    async fn pending(&self, limit: usize) -> Vec<OutboxEntry>;
    /// The secondary committed these entries; they are never handed out again (unless a crash lost the mark, in
    /// which case they are re-applied, which is harmless).
    async fn mark_applied(&self, seqs: &[u64]);
    /// Number of pending entries and the commit time of the oldest (cached by sources that must query for it).
    fn depth(&self) -> (usize, Option<String>);
    /// Woken by every commit that adds entries.
    fn notify(&self) -> Arc<Notify>;
    /// Persists the attempts of the entries that are failing (all of them, replacing what was recorded), so a
    /// restart keeps their backoff and `stuck` state: `<data dir>/outbox/status.jsonl` in dual-json, the
    /// `attempts`/`next_attempt_at`/`last_error` columns of `store_outbox` in dual-postgres.
    async fn record_failures(&self, failures: &[FailureRecord]);
    /// What [`record_failures`](Self::record_failures) persisted, read when the worker starts.
    async fn load_failures(&self) -> Vec<FailureRecord>;
}

/// The persisted form of a failing entry's retry state (one line of `status.jsonl`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureRecord {
    pub seq: u64,
    pub attempts: u32,
    pub next_attempt_at: String,
    pub last_error: String,
}

/// The secondary store.
#[async_trait]
pub trait OutboxTarget: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn apply(&self, entry: &OutboxEntry) -> Result<(), ApplyError>;
    /// Applies several entries atomically (all or none), in order. On `Failed` the worker retries them one by one
    /// to find the culprit, so only its aggregate is held back.
    async fn apply_batch(&self, entries: &[OutboxEntry]) -> Result<(), ApplyError> {
        for e in entries {
            self.apply(e).await?;
        }
        Ok(())
    }
}

/// Entries per secondary transaction.
const BATCH: usize = 200;

/// After this many failed attempts an entry is `stuck` (store-modes.md §2): still retried, but readiness degrades.
pub const STUCK_AFTER: u32 = 10;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayError {
    pub entity: String,
    pub id: String,
    pub message: String,
    pub at: String,
}

#[derive(Clone, Debug)]
struct Failure {
    attempts: u32,
    next_attempt: Instant,
    last_error: String,
}

#[derive(Default)]
struct WorkerState {
    failures: BTreeMap<u64, Failure>,
    last_replay_at: Option<String>,
    last_error: Option<ReplayError>,
    applied_total: u64,
    /// Set while the target as a whole is unreachable.
    target_down_until: Option<Instant>,
    target_down_attempts: u32,
    /// The failures changed since they were last persisted.
    failures_dirty: bool,
}

/// What `GET /api/admin/store` and `store status` show of the outbox.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxStatus {
    pub depth: usize,
    pub oldest_pending_age_seconds: Option<f64>,
    pub stuck: usize,
    pub last_replay_at: Option<String>,
    pub last_replay_error: Option<ReplayError>,
}

impl OutboxStatus {
    pub fn empty() -> OutboxStatus {
        OutboxStatus {
            depth: 0,
            oldest_pending_age_seconds: None,
            stuck: 0,
            last_replay_at: None,
            last_replay_error: None,
        }
    }
}

/// Exponential backoff from 100 ms, doubling, capped at 30 s, ±20 % jitter (store-modes.md §2).
pub fn backoff(attempts: u32) -> Duration {
    let base = 100f64 * 2f64.powi(attempts.saturating_sub(1).min(16) as i32);
    let capped = base.min(30_000.0);
    let jitter = 1.0 + (rand::random::<f64>() * 0.4 - 0.2);
    Duration::from_millis((capped * jitter) as u64)
}

/// The replay worker: applies pending entries to the target, in `seq` order per ordering key, retrying failures
/// with backoff forever. One per dual-mode server.
pub struct Replayer {
    source: Arc<dyn OutboxSource>,
    target: Arc<dyn OutboxTarget>,
    state: Mutex<WorkerState>,
    interval: Duration,
    stop: watch::Sender<bool>,
    /// Signalled after every pass, so a switch can wait for the outbox to drain without polling hard.
    progress: Notify,
}

impl Replayer {
    pub fn start(source: Arc<dyn OutboxSource>, target: Arc<dyn OutboxTarget>, interval: Duration) -> Arc<Replayer> {
        let (stop, stop_rx) = watch::channel(false);
        let r = Arc::new(Replayer {
            source,
            target,
            state: Mutex::new(WorkerState::default()),
            interval,
            stop,
            progress: Notify::new(),
        });
        tokio::spawn(r.clone().run(stop_rx));
        r
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Starts a pass now (a switch waiting for the drain does not wait for the poll interval).
    pub fn wake(&self) {
        self.source.notify().notify_one();
    }

    pub fn target_name(&self) -> &'static str {
        self.target.name()
    }

    pub fn status(&self) -> OutboxStatus {
        let (depth, oldest) = self.source.depth();
        let st = self.state.lock();
        let stuck = st.failures.values().filter(|f| f.attempts >= STUCK_AFTER).count();
        let age = oldest.and_then(|at| time::age_seconds(&at));
        OutboxStatus {
            depth,
            oldest_pending_age_seconds: if depth == 0 { None } else { age },
            stuck,
            last_replay_at: st.last_replay_at.clone(),
            last_replay_error: if depth == 0 { None } else { st.last_error.clone() },
        }
    }

    /// Waits (at most `timeout`) until at most `threshold` entries are pending or the backlog stops shrinking for
    /// half a second: the point where pausing writes to drain the rest costs the least.
    pub async fn wait_small(&self, threshold: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut best = usize::MAX;
        let mut best_at = tokio::time::Instant::now();
        while tokio::time::Instant::now() < deadline {
            let depth = self.source.depth().0;
            if depth <= threshold {
                return;
            }
            if depth < best {
                best = depth;
                best_at = tokio::time::Instant::now();
            } else if best_at.elapsed() > Duration::from_millis(500) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the outbox is empty, at most `timeout`. True when it drained.
    pub async fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.progress.notified();
            if self.source.depth().0 == 0 {
                return true;
            }
            self.source.notify().notify_one();
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.source.depth().0 == 0;
            }
        }
    }

    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let notify = self.source.notify();
        self.restore_failures().await;
        loop {
            let wait = self.pass().await;
            self.persist_failures().await;
            self.progress.notify_waiters();
            metrics::gauge!("flux_outbox_depth").set(self.source.depth().0 as f64);
            if let Some(age) = self.status().oldest_pending_age_seconds {
                metrics::gauge!("flux_outbox_oldest_age_seconds").set(age);
            } else {
                metrics::gauge!("flux_outbox_oldest_age_seconds").set(0.0);
            }
            let wait = wait.min(self.interval);
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One pass over the pending entries; returns how long to wait before the next retry is due.
    async fn pass(&self) -> Duration {
        let now = Instant::now();
        {
            let st = self.state.lock();
            if let Some(until) = st.target_down_until {
                if until > now {
                    return until - now;
                }
            }
        }
        let mut blocked: HashSet<String> = HashSet::new();
        let mut next_due = self.interval;
        loop {
            let batch = self.source.pending(1000).await;
            if batch.is_empty() {
                return next_due;
            }
            let mut eligible = Vec::new();
            {
                let st = self.state.lock();
                for e in &batch {
                    if blocked.contains(&e.ordering_key) {
                        continue;
                    }
                    if let Some(f) = st.failures.get(&e.seq) {
                        let now = Instant::now();
                        if f.next_attempt > now {
                            next_due = next_due.min(f.next_attempt - now);
                            blocked.insert(e.ordering_key.clone());
                            continue;
                        }
                    }
                    eligible.push(e.clone());
                }
            }
            let mut applied = Vec::new();
            for chunk in eligible.chunks(BATCH) {
                let chunk: Vec<OutboxEntry> =
                    chunk.iter().filter(|e| !blocked.contains(&e.ordering_key)).cloned().collect();
                if chunk.is_empty() {
                    continue;
                }
                match self.target.apply_batch(&chunk).await {
                    Ok(()) => {
                        applied.extend(chunk.iter().map(|e| e.seq));
                        self.record_success(&chunk);
                    }
                    Err(ApplyError::Unavailable(msg)) => {
                        let wait = self.record_failure(&chunk[0], &ApplyError::Unavailable(msg));
                        self.source.mark_applied(&applied).await;
                        return wait.unwrap_or(next_due);
                    }
                    Err(ApplyError::Failed(_)) => {
                        // Find the culprit(s): one by one, each failure holding back only its own aggregate.
                        for e in &chunk {
                            if blocked.contains(&e.ordering_key) {
                                continue;
                            }
                            match self.target.apply(e).await {
                                Ok(()) => {
                                    applied.push(e.seq);
                                    self.record_success(std::slice::from_ref(e));
                                }
                                Err(err) => {
                                    if let Some(wait) = self.record_failure(e, &err) {
                                        self.source.mark_applied(&applied).await;
                                        return wait;
                                    }
                                    let due = self.state.lock().failures.get(&e.seq).map(|f| f.next_attempt);
                                    if let Some(due) = due {
                                        next_due = next_due.min(due.saturating_duration_since(Instant::now()));
                                    }
                                    blocked.insert(e.ordering_key.clone());
                                }
                            }
                        }
                    }
                }
            }
            let progressed = !applied.is_empty();
            self.source.mark_applied(&applied).await;
            if !progressed || batch.len() < 1000 {
                return next_due;
            }
        }
    }

    /// Attempts survive a restart: an entry that was stuck stays stuck, and its backoff goes on where it was.
    async fn restore_failures(&self) {
        let records = self.source.load_failures().await;
        let mut st = self.state.lock();
        let now = Instant::now();
        let wall = chrono::Utc::now();
        for r in records {
            let remaining = chrono::DateTime::parse_from_rfc3339(&r.next_attempt_at)
                .ok()
                .and_then(|at| (at.with_timezone(&chrono::Utc) - wall).to_std().ok())
                .unwrap_or_default();
            st.failures.insert(
                r.seq,
                Failure { attempts: r.attempts, next_attempt: now + remaining, last_error: r.last_error },
            );
        }
    }

    async fn persist_failures(&self) {
        let records = {
            let mut st = self.state.lock();
            if !st.failures_dirty {
                return;
            }
            st.failures_dirty = false;
            let now = Instant::now();
            let wall = chrono::Utc::now();
            st.failures
                .iter()
                .map(|(seq, f)| FailureRecord {
                    seq: *seq,
                    attempts: f.attempts,
                    next_attempt_at: time::format_ts(
                        wall + chrono::Duration::from_std(f.next_attempt.saturating_duration_since(now))
                            .unwrap_or_default(),
                    ),
                    last_error: f.last_error.clone(),
                })
                .collect::<Vec<_>>()
        };
        self.source.record_failures(&records).await;
    }

    fn record_success(&self, entries: &[OutboxEntry]) {
        metrics::counter!("flux_outbox_replay_total", "result" => "ok").increment(entries.len() as u64);
        let mut st = self.state.lock();
        for e in entries {
            if st.failures.remove(&e.seq).is_some() {
                st.failures_dirty = true;
            }
        }
        st.applied_total += entries.len() as u64;
        st.last_replay_at = Some(time::now());
        st.target_down_until = None;
        st.target_down_attempts = 0;
    }

    /// Records a failed attempt. `Some(wait)` when the secondary as a whole is unreachable (the pass stops).
    fn record_failure(&self, e: &OutboxEntry, err: &ApplyError) -> Option<Duration> {
        metrics::counter!("flux_outbox_replay_total", "result" => "error").increment(1);
        let mut st = self.state.lock();
        st.last_error = Some(ReplayError {
            entity: e.entity.clone(),
            id: e.id.clone(),
            message: err.message().to_owned(),
            at: time::now(),
        });
        if let ApplyError::Unavailable(msg) = err {
            st.target_down_attempts += 1;
            let wait = backoff(st.target_down_attempts);
            st.target_down_until = Some(Instant::now() + wait);
            tracing::warn!(seq = e.seq, entity = %e.entity, id = %e.id, target = self.target.name(),
                attempt = st.target_down_attempts, error = %msg, "outbox replay: secondary unavailable; backing off");
            return Some(wait);
        }
        let f = st.failures.entry(e.seq).or_insert(Failure {
            attempts: 0,
            next_attempt: Instant::now(),
            last_error: String::new(),
        });
        f.attempts += 1;
        let wait = backoff(f.attempts);
        f.next_attempt = Instant::now() + wait;
        f.last_error = err.message().to_owned();
        let attempts = f.attempts;
        st.failures_dirty = true;
        if attempts >= STUCK_AFTER {
            tracing::warn!(seq = e.seq, entity = %e.entity, id = %e.id, attempt = attempts,
                error = %err.message(), "outbox entry stuck; it keeps being retried (fluxstudio validate --repair fixes the record)");
        } else {
            tracing::warn!(seq = e.seq, entity = %e.entity, id = %e.id, attempt = attempts,
                error = %err.message(), "outbox replay failed; will retry");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn op(v: Value) -> Op {
        serde_json::from_value(v).expect("a journal op")
    }

    fn task() -> Value {
        json!({"id": "t1", "title": "Copy review", "description": null, "status": "review", "priority": "high",
               "assignedTo": null, "dueDate": null, "createdBy": "u1", "createdAt": "2026-01-01T00:00:00.000Z",
               "updatedAt": "2026-01-02T00:00:00.000Z", "completedAt": null, "labels": ["kept"]})
    }

    #[test]
    fn every_op_round_trips_through_an_entry_with_its_aggregate_key() {
        let ops = [
            (
                op(json!({"op": "putTask", "project": "p1", "pos": 3, "rec": task()})),
                "project:p1",
                "task",
                EntryOp::Upsert,
            ),
            (op(json!({"op": "delTask", "project": "p1", "id": "t1"})), "project:p1", "task", EntryOp::Delete),
            (op(json!({"op": "delProject", "id": "p1"})), "project:p1", "project", EntryOp::Delete),
            (
                op(json!({"op": "delMilestone", "project": "p1", "id": "m1"})),
                "project:p1",
                "milestone",
                EntryOp::Delete,
            ),
            (op(json!({"op": "delTeam", "id": "g1"})), "team:g1", "team", EntryOp::Delete),
            (op(json!({"op": "delFile", "id": "f1"})), "file:f1", "file", EntryOp::Delete),
            (op(json!({"op": "delUser", "id": "u1"})), "user:u1", "user", EntryOp::Delete),
        ];
        for (i, (op, key, entity, kind)) in ops.iter().enumerate() {
            let e = OutboxEntry::from_op(op, 10 + i as u64, 3, "2026-11-26T10:15:02.114Z");
            assert_eq!((e.ordering_key.as_str(), e.entity.as_str(), e.op), (*key, *entity, *kind));
            assert_eq!((e.seq, e.epoch), (10 + i as u64, 3));
            assert_eq!(kind == &EntryOp::Delete, e.data.is_none(), "deletes carry no data");
            // Through the wire format and back to the same op.
            let wire = serde_json::to_string(&e).unwrap();
            let back: OutboxEntry = serde_json::from_str(&wire).unwrap();
            assert_eq!(serde_json::to_value(back.to_op().unwrap()).unwrap(), serde_json::to_value(op).unwrap());
        }
    }

    #[test]
    fn an_upsert_carries_the_public_after_image_and_the_list_position() {
        let e =
            OutboxEntry::from_op(&op(json!({"op": "putTask", "project": "p1", "pos": 3, "rec": task()})), 1, 1, "x");
        let wire = serde_json::to_value(&e).unwrap();
        assert_eq!(wire["orderingKey"], "project:p1");
        assert_eq!(wire["data"]["title"], "Copy review");
        assert_eq!(wire["data"]["labels"], json!(["kept"]), "unknown keys travel with the record");
        assert_eq!(wire["position"], 3);
    }

    #[test]
    fn malformed_entries_are_errors_not_panics() {
        let mut e =
            OutboxEntry::from_op(&op(json!({"op": "putTask", "project": "p1", "pos": 0, "rec": task()})), 1, 1, "x");
        e.data = Some(json!({"id": 5}));
        assert!(e.to_op().is_err());
        e.data = None;
        assert!(e.to_op().unwrap_err().contains("without data"));
        e.entity = "spaceship".into();
        assert!(e.to_op().is_err());
        let mut e = OutboxEntry::from_op(&op(json!({"op": "delTask", "project": "p1", "id": "t1"})), 1, 1, "x");
        e.ordering_key = "user:u1".into();
        assert!(e.to_op().unwrap_err().contains("outside a project key"));
    }

    #[test]
    fn backoff_doubles_from_100_ms_and_caps_at_30_s_with_jitter() {
        for _ in 0..50 {
            let first = backoff(1).as_millis();
            assert!((80..=120).contains(&first), "{first}");
            let fourth = backoff(4).as_millis();
            assert!((640..=960).contains(&fourth), "{fourth}");
            let late = backoff(40).as_millis();
            assert!((24_000..=36_000).contains(&late), "{late}");
        }
    }
}
