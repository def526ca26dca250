//! Realtime fan-out between instances in postgres mode (realtime.md §8), with our own LISTEN/NOTIFY rather than a
//! young adapter crate. Each instance emits its own writes locally and ignores its own notifications.
//!
//! **Published after commit, not inside the write's transaction.** A transaction that calls `pg_notify` takes a
//! database-wide lock in its pre-commit and holds it until its commit record is flushed, so notifying writes
//! commit one at a time and never share a WAL flush (group commit); on the bench machine that capped writes far
//! below what the same INSERTs reach without it (bench/README.md, "PostgreSQL mode"). So the write path's
//! [`PostgresStore::notify`] sends nothing, and [`PostgresStore::publish`] — called right after the commit, where the
//! events are also emitted locally — queues the events for one publisher task per instance. That task takes
//! everything pending, packs it into as few notifications as fit the payload limit, and sends them with one
//! autocommit statement on a connection of its own, so a burst of writes costs a few notify commits, not one each.
//!
//! The trade-off, accepted for the throughput: (1) a crash (or a lost publisher connection) between a write's
//! commit and its notification loses that notification for the other instances — the write itself is durable, and
//! their clients catch up by refetching when they reconnect or reload (realtime.md §9), as for any listener gap;
//! failures are logged and counted in `flux_fanout_dropped_total`. (2) Other instances receive an instance's
//! events in the order its writes called `publish` (the order its own sockets got them), not in PostgreSQL's
//! commit order; two writes of one project committed within the publish delay (about a millisecond) through
//! *different* instances may reach a third instance in either order. The originating instance's local emission
//! could already overtake a remote notification before, so this only widens an existing window.
//!
//! Envelope on channel `flux_events`: `{"v":1,"origin":"<instance id>","seq":N,"events":[DomainEvent…]}`; `seq`
//! counts this instance's notifications (PostgreSQL folds identical payloads sent in one transaction, so every
//! payload must differ). An event too large for a notification on its own goes into `realtime_events` and the
//! notification carries `{"v":1,"origin":…,"seq":N,"ref":<id>}`; rows older than 5 minutes are deleted. (The
//! spec's envelope names one room/event per message; carrying domain events keeps their order and lets every
//! instance render the same payloads — the observable behaviour is the same.)
//!
//! Presence travels on the same channel as `{"v":1,"origin":…,"seq":N,"presence":[PresenceMsg…]}`, through the
//! same publisher, in the order presence changed. A listener that (re)connects asks everyone for a snapshot, since
//! what was said while it was away is not replayed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::PostgresStore;
use crate::domain::events::{DomainEvent, PresenceLink, PresenceMsg, PresenceSink};

pub const CHANNEL: &str = "flux_events";
/// NOTIFY payloads must stay under 8000 bytes.
const MAX_INLINE: usize = 7900;
/// Most events (and, separately, presence messages) taken into one batch: a backlog after a stall goes out in a
/// few statements of bounded size rather than one huge one.
const MAX_BATCH: usize = 1024;
/// A publisher connection idle for longer is checked before use, so that a batch is not lost to a connection
/// PostgreSQL closed meanwhile (a batch that fails once sent is not retried: it may have been delivered).
const IDLE_CHECK: Duration = Duration::from_secs(10);
/// `realtime_events` rows are needed only until every listener has read them.
const STORED_TTL: Duration = Duration::from_secs(300);

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    events: Option<Vec<DomainEvent>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    presence: Option<Vec<PresenceMsg>>,
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    reference: Option<i64>,
}

/// This instance's fan-out state (postgres mode).
pub(super) struct Fanout {
    origin: String,
    /// Committed writes' events, each already JSON, in the order the writes called `publish`.
    queue: UnboundedSender<Vec<String>>,
    /// The queue's receiving end until `spawn_listener` starts the publisher task.
    pending: Mutex<Option<UnboundedReceiver<Vec<String>>>>,
    /// Held while a write's events are handed to the queue and to the local sockets.
    order: Mutex<()>,
}

/// One notification of a batch: its text, or a whole envelope too large for a notification, which goes into
/// `realtime_events` while the notification carries a reference with the given `seq`.
#[derive(Debug, PartialEq)]
enum Payload {
    Inline(String),
    Stored { seq: u64, envelope: String },
}

/// Packs `items` (each a JSON value) in order into envelopes `{"v":1,"origin":…,"seq":N,"<kind>":[…]}` of at most
/// `limit` bytes, as many items per envelope as fit. An item that does not fit an envelope of its own becomes a
/// [`Payload::Stored`]. `seq` is advanced once per payload.
fn pack(origin_json: &str, kind: &str, items: &[String], limit: usize, seq: &mut u64) -> Vec<Payload> {
    let prefix = |seq: u64| format!("{{\"v\":1,\"origin\":{origin_json},\"seq\":{seq},\"{kind}\":[");
    let mut out = Vec::new();
    let mut open: Option<String> = None;
    for item in items {
        // `,` before the item and `]}` after it.
        if let Some(buf) = &mut open {
            if buf.len() + 1 + item.len() + 2 <= limit {
                buf.push(',');
                buf.push_str(item);
                continue;
            }
            let mut done = open.take().unwrap_or_default();
            done.push_str("]}");
            out.push(Payload::Inline(done));
        }
        let mut buf = prefix(*seq);
        *seq += 1;
        buf.push_str(item);
        if buf.len() + 2 <= limit {
            open = Some(buf);
        } else {
            buf.push_str("]}");
            out.push(Payload::Stored { seq: *seq - 1, envelope: buf });
        }
    }
    if let Some(mut buf) = open {
        buf.push_str("]}");
        out.push(Payload::Inline(buf));
    }
    out
}

/// How every envelope an instance writes begins (`origin_json` is its id as a JSON string).
fn envelope_prefix(origin_json: &str) -> String {
    format!("{{\"v\":1,\"origin\":{origin_json},")
}

fn reference(origin_json: &str, seq: u64, id: i64) -> String {
    format!("{{\"v\":1,\"origin\":{origin_json},\"seq\":{seq},\"ref\":{id}}}")
}

impl PostgresStore {
    /// Turns on publishing (postgres mode only: the one mode where several instances serve a deployment). Events
    /// published before `spawn_listener` starts the publisher wait in its queue.
    pub fn enable_fanout(&self, origin: String) {
        let (queue, pending) = unbounded_channel();
        let _ = self.fanout.set(Fanout { origin, queue, pending: Mutex::new(Some(pending)), order: Mutex::new(()) });
    }

    /// Hands a committed write's events to the publisher task and to this instance's sockets.
    pub(super) fn publish_with_fanout(&self, events: Vec<DomainEvent>) {
        let Some(fanout) = self.fanout.get() else { return self.emit_local(events) };
        // Encoded here, on the writer's task and before taking the lock, so the publisher only concatenates.
        let encoded: Vec<String> = events
            .iter()
            .filter_map(|e| {
                serde_json::to_string(e)
                    .map_err(|err| tracing::warn!(error = %err, "realtime event not encodable; not published"))
                    .ok()
            })
            .collect();
        // One lock around both hand-overs (two channel sends), so that the other instances get this instance's
        // events in exactly the order its own sockets get them, even when writes finish concurrently.
        let _order = fanout.order.lock();
        if !encoded.is_empty() && fanout.queue.send(encoded).is_err() {
            // Only when the publisher task is gone (runtime shutting down).
            metrics::counter!("flux_fanout_dropped_total").increment(events.len() as u64);
        }
        self.emit_local(events);
    }

    /// The dedicated LISTEN connection: other instances' events go to this instance's sink, their presence
    /// announcements to `presence.incoming`; `presence.outgoing` and this instance's events are published by a
    /// task of its own. Reconnects with backoff up to 30 s; events published meanwhile are not replayed (clients
    /// refetch, realtime.md §9).
    pub fn spawn_listener(self: &Arc<Self>, presence: PresenceLink) {
        let PresenceLink { outgoing, incoming } = presence;
        let events = self.fanout.get().and_then(|f| f.pending.lock().take());
        let origin = self.fanout.get().map(|f| f.origin.clone()).unwrap_or_default();
        let publisher = Publisher {
            store: self.clone(),
            origin_json: serde_json::Value::String(origin).to_string(),
            seq: 0,
            conn: None,
            last_cleanup: None,
        };
        tokio::spawn(publisher.run(events, outgoing));
        let store = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                match store.listen_once(&incoming).await {
                    Ok(()) => backoff = Duration::from_millis(500),
                    Err(e) => {
                        tracing::warn!(error = %e, "realtime listener connection lost; reconnecting");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
    }

    async fn listen_once(&self, presence: &PresenceSink) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        let own = self.fanout.get().map(|f| f.origin.clone()).unwrap_or_default();
        // Listening now: ask the others for their snapshots, and republish ours (they may have expired us).
        let sync = Envelope {
            v: 1,
            origin: own.clone(),
            seq: None,
            events: None,
            presence: Some(vec![PresenceMsg::Sync]),
            reference: None,
        };
        sqlx::query("select pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(serde_json::to_string(&sync).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
            .execute(&self.pool)
            .await?;
        presence(own.clone(), PresenceMsg::Sync);
        // This instance's own notifications come back to it too, as many as it publishes: recognise them by the
        // start every envelope it writes has (`pack`, and serde's field order for the sync above) instead of parsing
        // their events only to drop them. Anything else still goes through the full parse and origin check.
        let own_prefix = envelope_prefix(&serde_json::Value::String(own.clone()).to_string());
        loop {
            let n = listener.recv().await?;
            if n.payload().starts_with(&own_prefix) {
                continue;
            }
            let Ok(mut env) = serde_json::from_str::<Envelope>(n.payload()) else {
                metrics::counter!("flux_fanout_notifications_total", "direction" => "invalid").increment(1);
                continue;
            };
            if env.origin == own {
                continue;
            }
            metrics::counter!("flux_fanout_notifications_total", "direction" => "received").increment(1);
            if let Some(id) = env.reference {
                let row: Option<String> = sqlx::query_scalar("select payload::text from realtime_events where id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                match row.and_then(|p| serde_json::from_str::<Envelope>(&p).ok()) {
                    Some(stored) => env = stored,
                    None => continue,
                }
            }
            if let Some(events) = env.events {
                self.emit_local(events);
            }
            for msg in env.presence.into_iter().flatten() {
                presence(env.origin.clone(), msg);
            }
        }
    }
}

/// Publishes this instance's events and presence announcements, in the order they were queued, on a connection of
/// its own (not taken from the pool, so it never waits behind requests and costs them no slot).
struct Publisher {
    store: Arc<PostgresStore>,
    origin_json: String,
    seq: u64,
    conn: Option<(PgConnection, Instant)>,
    last_cleanup: Option<Instant>,
}

impl Publisher {
    async fn run(
        mut self,
        mut events: Option<UnboundedReceiver<Vec<String>>>,
        mut presence: UnboundedReceiver<PresenceMsg>,
    ) {
        let mut presence_open = true;
        let (mut batch, mut announcements) = (Vec::new(), Vec::new());
        while events.is_some() || presence_open {
            // Wait for anything, then take whatever else is already pending on both queues.
            tokio::select! {
                got = async { events.as_mut()?.recv().await }, if events.is_some() => match got {
                    Some(w) => batch.extend(w),
                    None => events = None,
                },
                got = presence.recv(), if presence_open => match got {
                    Some(m) => announcements.push(m),
                    None => presence_open = false,
                },
            }
            if let Some(rx) = events.as_mut() {
                while batch.len() < MAX_BATCH {
                    let Ok(w) = rx.try_recv() else { break };
                    batch.extend(w);
                }
            }
            while announcements.len() < MAX_BATCH {
                let Ok(m) = presence.try_recv() else { break };
                announcements.push(m);
            }
            if batch.is_empty() && announcements.is_empty() {
                continue;
            }
            let presence_items: Vec<String> =
                announcements.drain(..).filter_map(|m| serde_json::to_string(&m).ok()).collect();
            let mut payloads = pack(&self.origin_json, "events", &batch, MAX_INLINE, &mut self.seq);
            payloads.extend(pack(&self.origin_json, "presence", &presence_items, MAX_INLINE, &mut self.seq));
            let count = batch.len() + presence_items.len();
            batch.clear();
            if let Err(e) = self.send(payloads).await {
                // Dropped, not retried: once sent, the notifications may have been delivered. Lost events are
                // covered by clients refetching (realtime.md §9); lost presence by the next snapshot.
                self.conn = None;
                metrics::counter!("flux_fanout_dropped_total").increment(count as u64);
                tracing::warn!(error = %e, messages = count, "realtime fan-out not published to other instances");
            }
        }
    }

    /// The publisher's connection, (re)connected when missing and checked when it has been idle for a while.
    async fn connection(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        if let Some((conn, used)) = &mut self.conn {
            if used.elapsed() > IDLE_CHECK && conn.ping().await.is_err() {
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            let opts = self.store.pool.connect_options();
            let conn = tokio::time::timeout(self.store.opts.acquire_timeout, PgConnection::connect_with(&opts))
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??;
            self.conn = Some((conn, Instant::now()));
        }
        let (conn, used) = self.conn.as_mut().expect("connected above");
        *used = Instant::now();
        Ok(conn)
    }

    /// Stores the oversized envelopes, then sends every notification of the batch with one autocommit statement
    /// (`unnest` yields the array in order, and PostgreSQL delivers one transaction's notifications in the order
    /// they were sent).
    async fn send(&mut self, payloads: Vec<Payload>) -> Result<(), sqlx::Error> {
        let cleanup_due = self.last_cleanup.is_none_or(|t| t.elapsed() > STORED_TTL / 5);
        let origin_json = self.origin_json.clone();
        let conn = self.connection().await?;
        let mut texts = Vec::with_capacity(payloads.len());
        let mut stored = false;
        for p in payloads {
            match p {
                Payload::Inline(text) => texts.push(text),
                Payload::Stored { seq, envelope } => {
                    let id: i64 = sqlx::query_scalar(
                        "insert into realtime_events (payload, created_at) values ($1::jsonb, now()) returning id",
                    )
                    .bind(&envelope)
                    .fetch_one(&mut *conn)
                    .await?;
                    texts.push(reference(&origin_json, seq, id));
                    stored = true;
                }
            }
        }
        if stored && cleanup_due {
            sqlx::query("delete from realtime_events where created_at < now() - make_interval(secs => $1)")
                .bind(STORED_TTL.as_secs_f64())
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query("select pg_notify($1, p) from unnest($2::text[]) as p")
            .bind(CHANNEL)
            .bind(&texts)
            .execute(&mut *conn)
            .await?;
        if stored && cleanup_due {
            self.last_cleanup = Some(Instant::now());
        }
        metrics::counter!("flux_fanout_notifications_total", "direction" => "sent").increment(texts.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(sizes: &[usize]) -> Vec<String> {
        sizes.iter().enumerate().map(|(i, n)| format!("\"{}{}\"", i % 10, "x".repeat(n - 3))).collect()
    }

    fn inline(p: &Payload) -> &str {
        match p {
            Payload::Inline(t) => t,
            Payload::Stored { .. } => panic!("expected an inline payload, got {p:?}"),
        }
    }

    /// The listener drops its own notifications by their first bytes; every kind of envelope must start so.
    #[test]
    fn every_envelope_an_instance_writes_starts_with_its_prefix() {
        let origin_json = serde_json::Value::String("inst-\"1\"".into()).to_string();
        let prefix = envelope_prefix(&origin_json);
        let mut seq = 1;
        let mut written: Vec<String> = pack(&origin_json, "events", &items(&[10, 9000]), 7900, &mut seq)
            .iter()
            .map(|p| match p {
                Payload::Inline(t) => t.clone(),
                Payload::Stored { .. } => reference(&origin_json, 2, 42),
            })
            .collect();
        let sync = Envelope {
            v: 1,
            origin: "inst-\"1\"".into(),
            seq: None,
            events: None,
            presence: Some(vec![PresenceMsg::Sync]),
            reference: None,
        };
        written.push(serde_json::to_string(&sync).unwrap());
        assert_eq!(written.len(), 3);
        for w in &written {
            assert!(w.starts_with(&prefix), "{w}");
            let other = envelope_prefix(&serde_json::Value::String("inst-\"2\"".into()).to_string());
            assert!(!w.starts_with(&other), "{w}");
        }
    }

    #[test]
    fn small_items_share_one_envelope_in_order() {
        let mut seq = 7;
        let out = pack("\"i1\"", "events", &items(&[10, 20, 30]), 7900, &mut seq);
        assert_eq!(out.len(), 1);
        let v: serde_json::Value = serde_json::from_str(inline(&out[0])).unwrap();
        assert_eq!(v["origin"], "i1");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["events"].as_array().unwrap().len(), 3);
        assert!(v["events"][0].as_str().unwrap().starts_with('0'));
        assert!(v["events"][2].as_str().unwrap().starts_with('2'));
        assert_eq!(seq, 8);
    }

    #[test]
    fn envelopes_stay_within_the_limit_and_keep_every_item_once_in_order() {
        let input = items(&[900, 1500, 3000, 2999, 40, 7000, 5, 1200, 800]);
        let mut seq = 0;
        let out = pack("\"origin\"", "events", &input, 4000, &mut seq);
        let mut seen = Vec::new();
        let mut seqs = Vec::new();
        for p in &out {
            let text = match p {
                Payload::Inline(t) => {
                    assert!(t.len() <= 4000, "payload of {} bytes", t.len());
                    t
                }
                Payload::Stored { seq, envelope } => {
                    assert!(envelope.len() > 4000, "stored although it fits: {} bytes", envelope.len());
                    seqs.push(*seq);
                    envelope
                }
            };
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            if let Payload::Inline(_) = p {
                seqs.push(v["seq"].as_u64().unwrap());
            }
            seen.extend(v["events"].as_array().unwrap().iter().map(|e| e.to_string()));
        }
        assert_eq!(seen, input, "every item once, in order");
        assert_eq!(seqs, (0..out.len() as u64).collect::<Vec<_>>(), "one distinct seq per payload");
        assert_eq!(seq, out.len() as u64);
        assert_eq!(out.iter().filter(|p| matches!(p, Payload::Stored { .. })).count(), 1, "only the 7000-byte item");
    }

    #[test]
    fn nothing_to_pack_is_no_payload() {
        let mut seq = 0;
        assert!(pack("\"o\"", "presence", &[], 7900, &mut seq).is_empty());
        assert_eq!(seq, 0);
    }

    #[test]
    fn a_reference_is_a_valid_envelope() {
        let v: Envelope = serde_json::from_str(&reference("\"o\\\"x\"", 3, 42)).unwrap();
        assert_eq!((v.origin.as_str(), v.seq, v.reference), ("o\"x", Some(3), Some(42)));
    }
}
