//! The dual-postgres outbox (store-modes.md §2): table `store_outbox`, one row per changed record, inserted in the
//! same transaction as the write it belongs to, so a committed write always has its entries. The replay worker
//! reads pending rows in `seq` order and marks them `done_at` once the JSON secondary holds them; done rows are
//! deleted after 7 days.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::{json, Value};
use sqlx::PgConnection;
use tokio::sync::Notify;

use super::PostgresStore;
use crate::domain::time;
use crate::store::json::state::Op;
use crate::store::outbox::{FailureRecord, OutboxEntry, OutboxSource};
use crate::store::StoreResult;

const INSERT_ENTRIES: &str = "insert into store_outbox (epoch, ordering_key, entity, entity_id, op, payload) \
     select $1, k, e, i, o, p from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[]) as u(k, e, i, o, p)";
const PENDING: &str = "select seq, epoch, ordering_key, entity, entity_id, op, payload, created_at from store_outbox \
     where done_at is null order by seq limit $1";
const MARK_DONE: &str = "update store_outbox set done_at = now() where seq = any($1)";
const DEPTH: &str = "select count(*), min(created_at) from store_outbox where done_at is null";
const RECORD_FAILURES: &str = "update store_outbox o set attempts = f.attempts, \
       next_attempt_at = f.next_at::timestamptz, last_error = f.error \
     from unnest($1::bigint[], $2::int[], $3::text[], $4::text[]) as f(seq, attempts, next_at, error) \
     where o.seq = f.seq and o.done_at is null";
const LOAD_FAILURES: &str = "select seq, attempts, next_attempt_at, coalesce(last_error, '') from store_outbox \
     where done_at is null and attempts > 0";
const PRUNE: &str = "delete from store_outbox where done_at < now() - interval '7 days'";

/// Outbox recording state of a PostgreSQL store (`None` epoch: not recording).
#[derive(Default)]
pub struct PgOutboxState {
    epoch: Mutex<Option<u64>>,
    notify: Arc<Notify>,
    /// Depth and oldest pending time as of the last query (the status must not need a round trip).
    depth: Mutex<(usize, Option<String>)>,
    /// Commits that recorded entries, and the count of them known applied: a pass that found nothing pending
    /// after reading `written` proves every commit counted so far replayed.
    written: AtomicU64,
    drained: AtomicU64,
}

type PendingRow = (i64, i64, String, String, String, String, Option<Value>, chrono::DateTime<chrono::Utc>);

impl PostgresStore {
    /// Starts recording an outbox entry with every write (dual-postgres), stamped with `epoch`.
    pub fn enable_outbox(&self, epoch: u64) {
        *self.outbox.epoch.lock() = Some(epoch);
    }

    pub fn disable_outbox(&self) {
        *self.outbox.epoch.lock() = None;
    }

    pub fn outbox_epoch(&self) -> Option<u64> {
        *self.outbox.epoch.lock()
    }

    /// Inside a write's transaction: one `store_outbox` row per op, when recording (`ops` is only built then). The
    /// entries become visible (and replayable) only if the write commits.
    pub async fn record_outbox(&self, conn: &mut PgConnection, ops: impl FnOnce() -> Vec<Op>) -> StoreResult<()> {
        let Some(epoch) = self.outbox_epoch() else { return Ok(()) };
        let ops = ops();
        if ops.is_empty() {
            return Ok(());
        }
        let (mut keys, mut entities, mut ids, mut kinds, mut payloads) = (vec![], vec![], vec![], vec![], vec![]);
        for op in &ops {
            // `seq` and `at` come from the table (bigserial, created_at).
            let e = OutboxEntry::from_op(op, 0, epoch, "");
            keys.push(e.ordering_key);
            entities.push(e.entity);
            ids.push(e.id);
            kinds.push(if e.data.is_some() { "upsert" } else { "delete" }.to_owned());
            payloads.push(json!({ "data": e.data, "position": e.position }));
        }
        sqlx::query(INSERT_ENTRIES)
            .bind(epoch as i64)
            .bind(&keys)
            .bind(&entities)
            .bind(&ids)
            .bind(&kinds)
            .bind(&payloads)
            .execute(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// After a write that recorded entries committed: wakes the replay worker.
    pub fn outbox_committed(&self) {
        if self.outbox_epoch().is_some() {
            self.outbox.written.fetch_add(1, Ordering::SeqCst);
            self.outbox.notify.notify_one();
        }
    }

    /// Whether some committed entry may still wait for the JSON secondary (shadow reads skip then). Coarse — the
    /// whole outbox, not one aggregate — because asking per aggregate would cost a query per sampled read.
    pub fn outbox_maybe_pending(&self) -> bool {
        self.outbox.depth.lock().0 > 0
            || self.outbox.drained.load(Ordering::SeqCst) < self.outbox.written.load(Ordering::SeqCst)
    }
}

/// The replay worker's view of `store_outbox`.
pub struct PgOutbox {
    store: Arc<PostgresStore>,
}

impl PgOutbox {
    pub fn new(store: Arc<PostgresStore>) -> PgOutbox {
        PgOutbox { store }
    }

    /// Refreshes the cached depth (the worker calls it after each pass) and prunes old done rows.
    pub async fn refresh(&self) -> StoreResult<(usize, Option<String>)> {
        let (n, oldest): (i64, Option<chrono::DateTime<chrono::Utc>>) =
            sqlx::query_as(DEPTH).fetch_one(self.store.pool()).await.map_err(|e| self.store.err(e))?;
        let value = (n.max(0) as usize, oldest.map(time::format_ts));
        *self.store.outbox.depth.lock() = value.clone();
        let _ = sqlx::query(PRUNE).execute(self.store.pool()).await;
        Ok(value)
    }
}

fn to_entry(row: PendingRow) -> OutboxEntry {
    let (seq, epoch, ordering_key, entity, id, op, payload, created_at) = row;
    let payload = payload.unwrap_or(Value::Null);
    OutboxEntry {
        seq: seq.max(0) as u64,
        epoch: epoch.max(0) as u64,
        ordering_key,
        entity,
        id,
        op: if op == "delete" { crate::store::outbox::EntryOp::Delete } else { crate::store::outbox::EntryOp::Upsert },
        at: time::format_ts(created_at),
        data: payload.get("data").filter(|d| !d.is_null()).cloned(),
        position: payload.get("position").and_then(Value::as_u64).map(|p| p as usize),
    }
}

#[async_trait]
impl OutboxSource for PgOutbox {
    async fn pending(&self, limit: usize) -> Vec<OutboxEntry> {
        let written = self.store.outbox.written.load(Ordering::SeqCst);
        let rows: Result<Vec<PendingRow>, _> =
            sqlx::query_as(PENDING).bind(limit as i64).fetch_all(self.store.pool()).await;
        match rows {
            Ok(rows) => {
                if rows.is_empty() {
                    *self.store.outbox.depth.lock() = (0, None);
                    self.store.outbox.drained.fetch_max(written, Ordering::SeqCst);
                } else {
                    let _ = self.refresh().await;
                }
                rows.into_iter().map(to_entry).collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read store_outbox");
                vec![]
            }
        }
    }

    async fn mark_applied(&self, seqs: &[u64]) {
        if seqs.is_empty() {
            return;
        }
        let seqs: Vec<i64> = seqs.iter().map(|s| *s as i64).collect();
        if let Err(e) = sqlx::query(MARK_DONE).bind(&seqs).execute(self.store.pool()).await {
            // Not lost: the entries stay pending and are applied again (idempotent) on the next pass.
            tracing::warn!(error = %e, "cannot mark outbox entries done");
        }
        let _ = self.refresh().await;
    }

    fn depth(&self) -> (usize, Option<String>) {
        self.store.outbox.depth.lock().clone()
    }

    fn notify(&self) -> Arc<Notify> {
        self.store.outbox.notify.clone()
    }

    async fn record_failures(&self, failures: &[FailureRecord]) {
        // Entries that recovered are done (their attempts no longer matter); only failing ones are updated.
        let seqs: Vec<i64> = failures.iter().map(|f| f.seq as i64).collect();
        let attempts: Vec<i32> = failures.iter().map(|f| f.attempts as i32).collect();
        let next: Vec<String> = failures.iter().map(|f| f.next_attempt_at.clone()).collect();
        let errors: Vec<String> = failures.iter().map(|f| f.last_error.clone()).collect();
        let result = sqlx::query(RECORD_FAILURES)
            .bind(&seqs)
            .bind(&attempts)
            .bind(&next)
            .bind(&errors)
            .execute(self.store.pool())
            .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "cannot record the outbox retry state");
        }
    }

    async fn load_failures(&self) -> Vec<FailureRecord> {
        let rows: Vec<(i64, i32, chrono::DateTime<chrono::Utc>, String)> =
            sqlx::query_as(LOAD_FAILURES).fetch_all(self.store.pool()).await.unwrap_or_default();
        rows.into_iter()
            .map(|(seq, attempts, next, last_error)| FailureRecord {
                seq: seq.max(0) as u64,
                attempts: attempts.max(0) as u32,
                next_attempt_at: time::format_ts(next),
                last_error,
            })
            .collect()
    }
}
