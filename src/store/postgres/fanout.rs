//! Realtime fan-out between instances in postgres mode (realtime.md §8), with our own LISTEN/NOTIFY rather than a
//! young adapter crate. A write's events are published with `pg_notify` inside the write's transaction, so other
//! instances hear of them only if and when the write commits, in commit order; each instance emits its own writes
//! locally and ignores its own notifications.
//!
//! Envelope on channel `flux_events`: `{"v":1,"origin":"<instance id>","events":[DomainEvent…]}`; one larger than a
//! NOTIFY payload allows goes into `realtime_events` and the notification carries `{"v":1,"origin":…,"ref":<id>}`.
//! (The spec's envelope names one room/event per message; carrying the write's domain events keeps their order and
//! lets every instance render the same payloads — the observable behaviour is the same.)

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::PgConnection;

use super::PostgresStore;
use crate::domain::events::DomainEvent;
use crate::store::StoreResult;

pub const CHANNEL: &str = "flux_events";
/// NOTIFY payloads must stay under 8000 bytes.
const MAX_INLINE: usize = 7900;

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    events: Option<Vec<DomainEvent>>,
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    reference: Option<i64>,
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
        let env = Envelope { v: 1, origin: origin.clone(), events: Some(events.to_vec()), reference: None };
        let mut payload = serde_json::to_string(&env).map_err(|e| crate::store::StoreError::Other(e.to_string()))?;
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
            let small = Envelope { v: 1, origin: origin.clone(), events: None, reference: Some(id) };
            payload = serde_json::to_string(&small).map_err(|e| crate::store::StoreError::Other(e.to_string()))?;
        }
        sqlx::query("select pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The dedicated LISTEN connection: other instances' events go to this instance's sink. Reconnects with
    /// backoff up to 30 s; events published meanwhile are not replayed (clients refetch, realtime.md §9).
    pub fn spawn_listener(self: &Arc<Self>) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                match store.listen_once().await {
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

    async fn listen_once(&self) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        let own = self.fanout.get().cloned().unwrap_or_default();
        loop {
            let n = listener.recv().await?;
            let Ok(env) = serde_json::from_str::<Envelope>(n.payload()) else { continue };
            if env.origin == own {
                continue;
            }
            let events = match (env.events, env.reference) {
                (Some(events), _) => events,
                (None, Some(id)) => {
                    let row: Option<String> =
                        sqlx::query_scalar("select payload::text from realtime_events where id = $1")
                            .bind(id)
                            .fetch_optional(&self.pool)
                            .await?;
                    match row.and_then(|p| serde_json::from_str::<Envelope>(&p).ok()).and_then(|e| e.events) {
                        Some(events) => events,
                        None => continue,
                    }
                }
                _ => continue,
            };
            self.publish(events);
        }
    }
}
