//! Operational endpoints (http-api.md §14): readiness (`/health/ready`) and Prometheus metrics (`/metrics`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use indexmap::IndexMap;

use super::dto::{OutboxSummary, ReadyCheck, ReadyResponse};
use crate::app::AppState;
use crate::store::StoreError;
use crate::telemetry;

/// A backend that does not answer its probe within this long is not ready (a hung disk or database must not
/// hang the load balancer's health check too).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 `ready` when the live store passes its probe; 503 `not_ready` when it fails or the server is shutting down.
#[utoipa::path(get, path = "/health/ready", tag = "ops", responses(
    (status = 200, description = "The primary passed its probe (`ready`, or `degraded` when a dual mode's secondary \
     is down or its outbox is stuck or old)", body = ReadyResponse),
    (status = 503, description = "`not_ready` (probe failed, or shutting down)", body = ReadyResponse),
))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let mode = state.mode();
    let store = state.store();
    let (primary_ok, primary_check) = probe(&store).await;
    let mut checks = IndexMap::from([(store.backend(), primary_check)]);
    // Dual modes: the secondary's reachability and the outbox make the answer `degraded`, never 503
    // (store-modes.md §4): the primary alone decides whether requests can be served.
    let mut degraded = false;
    if let Some(secondary) = state.stores.secondary() {
        let (ok, check) = probe(&secondary).await;
        checks.insert(secondary.backend(), check);
        degraded |= !ok;
    }
    let outbox = state.stores.outbox_status();
    degraded |= outbox.stuck > 0 || outbox.oldest_pending_age_seconds.is_some_and(|a| a > 300.0);
    let ready = primary_ok && !state.is_draining();
    let mut body = ReadyResponse {
        status: match (ready, degraded) {
            (false, _) => "not_ready",
            (true, true) => "degraded",
            (true, false) => "ready",
        },
        mode: mode.as_str(),
        checks,
        outbox: OutboxSummary {
            depth: outbox.depth as u64,
            oldest_pending_age_seconds: outbox.oldest_pending_age_seconds,
        },
        message: None,
        code: None,
    };
    if ready {
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    if !primary_ok {
        tracing::warn!(reason = ?body.checks.get(store.backend()).and_then(|c| c.error.clone()), "readiness check failed");
    }
    body.message = Some("Store not ready");
    body.code = Some("not_ready");
    let mut resp = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(5));
    resp
}

/// One backend's probe, bounded by [`CHECK_TIMEOUT`]: whether it passed and its `checks` entry.
async fn probe(store: &crate::store::DynStore) -> (bool, ReadyCheck) {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(CHECK_TIMEOUT, store.check_health()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(StoreError::Unavailable(reason))) => Err(reason),
        Ok(Err(_)) => Err("check failed".to_owned()),
        Err(_) => Err("timed out".to_owned()),
    };
    let latency_ms = (started.elapsed().as_secs_f64() * 1e5).round() / 100.0;
    (outcome.is_ok(), ReadyCheck { ok: outcome.is_ok(), latency_ms, error: outcome.err() })
}

/// `/metrics` on the main port: loopback peers only, and only when no proxy forwarded the request (a reverse
/// proxy on the same host would otherwise expose it); nobody at all when `FLUX_METRICS_ADDR` moves it to its own
/// listener. Everyone else gets the same plain 404 as an unknown path.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses(
    (status = 200, description = "Prometheus text format (loopback clients only, or only on `FLUX_METRICS_ADDR`)",
     content_type = "text/plain", body = String),
    (status = 404, description = "Not a loopback client, or served on its own listener", content_type = "text/plain",
     body = String),
))]
pub async fn metrics_on_main_port(State(state): State<AppState>, req: Request) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let forwarded = req.headers().contains_key("x-forwarded-for") || req.headers().contains_key("forwarded");
    let loopback = peer.is_some_and(|ip| match ip {
        std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        v4 => v4.is_loopback(),
    });
    if state.config.metrics_addr.is_some() || !loopback || forwarded {
        return plain_not_found().await;
    }
    render(State(state)).await
}

async fn render(State(state): State<AppState>) -> Response {
    // Sampled at scrape time from the Socket.IO server itself, so the gauge cannot drift from the truth.
    metrics::gauge!("flux_socket_connections").set(state.realtime.connected_sockets() as f64);
    if let Some(pg) = state.stores.postgres() {
        for (pool, size, idle, max) in pg.pool_usage() {
            let in_use = (size as usize).saturating_sub(idle) as f64;
            metrics::gauge!("flux_db_pool_connections", "pool" => pool, "state" => "in_use").set(in_use);
            metrics::gauge!("flux_db_pool_connections", "pool" => pool, "state" => "idle").set(idle as f64);
            metrics::gauge!("flux_db_pool_max_connections", "pool" => pool).set(max as f64);
        }
    }
    let body = tokio::task::spawn_blocking(telemetry::render_metrics).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], body)
        .into_response()
}

async fn plain_not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}

/// The separate metrics listener (`FLUX_METRICS_ADDR`): `/metrics` for whoever can reach it, 404 otherwise.
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(render)).fallback(plain_not_found).with_state(state)
}
