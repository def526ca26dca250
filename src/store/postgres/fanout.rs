//! Realtime fan-out between instances in postgres mode (realtime.md §8), with our own LISTEN/NOTIFY rather than a
//! young adapter crate. A write's events are published with `pg_notify` inside the write's transaction, so other
//! instances hear of them only if and when the write commits, in commit order; each instance emits its own writes
//! locally and ignores its own notifications.
//!
//! Envelope on channel `flux_events`: `{"v":1,"origin":"<instance id>","events":[DomainEvent…]}`; one larger than a
//! NOTIFY payload allows goes into `realtime_events` and the notification carries `{"v":1,"origin":…,"ref":<id>}`.
//! (The spec's envelope names one room/event per message; carrying the write's domain events keeps their order and
//! lets every instance render the same payloads — the observable behaviour is the same.)
//!
//! Presence travels on the same channel as `{"v":1,"origin":…,"presence":[PresenceMsg…]}`: one publisher task
//! per instance sends its announcements one after the other (batched when they pile up), so they commit — and
//! reach the other instances — in the order presence changed. A listener that (re)connects asks everyone for a
//! snapshot, since what was said while it was away is not replayed.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::PgConnection;
use tokio::sync::mpsc::UnboundedReceiver;

use super::PostgresStore;
use crate::domain::events::{DomainEvent, PresenceLink, PresenceMsg, PresenceSink};
use crate::store::{StoreError, StoreResult};

pub const CHANNEL: &str = "flux_events";
/// NOTIFY payloads must stay under 8000 bytes.
const MAX_INLINE: usize = 7900;
/// Most presence announcements in one notification: a burst of joins becomes a few notifications, not thousands.
const PRESENCE_BATCH: usize = 256;

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    events: Option<Vec<DomainEvent>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    presence: Option<Vec<PresenceMsg>>,
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    reference: Option<i64>,
}

impl Envelope {
    fn new(origin: &str) -> Envelope {
        Envelope { v: 1, origin: origin.to_owned(), events: None, presence: None, reference: None }
    }
}

fn encode(env: &Envelope) -> StoreResult<String> {
    serde_json::to_string(env).map_err(|e| StoreError::Other(e.to_string()))
}

impl PostgresStore {
    /// Turns on publishing (postgres mode only: the one mode where several instances serve a deployment).
    pub fn enable_fanout(&self, origin: String) {
        let _ = self.fanout.set(origin);
    }

    /// Publishes a write's events inside its transaction (no-op unless fan-out is on).
    pub(crate) async fn notify(&self, conn: &mut PgConnection, events: &[DomainEvent]) -> StoreResult<()> {
        let Some(origin) = self.fanout.get() else { return Ok(()) };
        if events.is_empty() {
            return Ok(());
        }
        let env = Envelope { events: Some(events.to_vec()), ..Envelope::new(origin) };
        self.send(conn, &env).await
    }

    /// `pg_notify` on `conn` (inside the caller's transaction, if any); an envelope too large for a notification
    /// goes into `realtime_events` and the notification carries its id.
    async fn send(&self, conn: &mut PgConnection, env: &Envelope) -> StoreResult<()> {
        let mut payload = encode(env)?;
        if payload.len() > MAX_INLINE {
            let id: i64 = sqlx::query_scalar(
                "insert into realtime_events (payload, created_at) values ($1::jsonb, now()) returning id",
            )
            .bind(&payload)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
            sqlx::query("delete from realtime_events where created_at < now() - interval '5 minutes'")
                .execute(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
            payload = encode(&Envelope { reference: Some(id), ..Envelope::new(&env.origin) })?;
        }
        sqlx::query("select pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Publishes this instance's presence announcements, in order (autocommit: each notification commits
    /// before the next is sent). One that cannot be sent is dropped: the next snapshot repairs it.
    async fn publish_presence(self: Arc<Self>, mut outgoing: UnboundedReceiver<PresenceMsg>) {
        let origin = self.fanout.get().cloned().unwrap_or_default();
        let mut batch = Vec::with_capacity(PRESENCE_BATCH);
        while outgoing.recv_many(&mut batch, PRESENCE_BATCH).await > 0 {
            let env = Envelope { presence: Some(std::mem::take(&mut batch)), ..Envelope::new(&origin) };
            let sent = match self.pool.acquire().await {
                Ok(mut conn) => self.send(&mut conn, &env).await,
                Err(e) => Err(self.err(e)),
            };
            if let Err(e) = sent {
                tracing::warn!(error = %e, "presence announcement not published");
            }
        }
    }

    /// The dedicated LISTEN connection: other instances' events go to this instance's sink, their presence
    /// announcements to `presence.incoming`; `presence.outgoing` is published by a task of its own. Reconnects
    /// with backoff up to 30 s; events published meanwhile are not replayed (clients refetch, realtime.md §9).
    pub fn spawn_listener(self: &Arc<Self>, presence: PresenceLink) {
        let PresenceLink { outgoing, incoming } = presence;
        tokio::spawn(self.clone().publish_presence(outgoing));
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
        let own = self.fanout.get().cloned().unwrap_or_default();
        // Listening now: ask the others for their snapshots, and republish ours (they may have expired us).
        let sync = Envelope { presence: Some(vec![PresenceMsg::Sync]), ..Envelope::new(&own) };
        sqlx::query("select pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(serde_json::to_string(&sync).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
            .execute(&self.pool)
            .await?;
        presence(own.clone(), PresenceMsg::Sync);
        loop {
            let n = listener.recv().await?;
            let Ok(mut env) = serde_json::from_str::<Envelope>(n.payload()) else { continue };
            if env.origin == own {
                continue;
            }
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
                self.publish(events);
            }
            for msg in env.presence.into_iter().flatten() {
                presence(env.origin.clone(), msg);
            }
        }
    }
}
