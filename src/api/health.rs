//! Liveness (`/health`, `/api/health`) and the CSRF stub (http-api.md §3). Liveness never touches a store.

use axum::extract::State;
use axum::Json;

use super::dto::{CsrfTokenResponse, HealthDatabase, HealthResponse, HealthStore};
use crate::app::AppState;
use crate::config::StoreMode;
use crate::domain::time;

#[utoipa::path(get, path = "/health", tag = "ops", responses(
    (status = 200, description = "Alive (no store I/O)", body = HealthResponse),
))]
pub async fn health(State(state): State<AppState>) -> Json<HealthResponse> {
    let mode = state.mode();
    let (use_postgres, dual_write_enabled) = match mode {
        StoreMode::Json => (false, false),
        StoreMode::DualJson => (false, true),
        StoreMode::DualPostgres => (true, true),
        StoreMode::Postgres => (true, false),
    };
    Json(HealthResponse {
        status: "ok",
        service: "auth-service",
        timestamp: time::now(),
        uptime: state.started.elapsed().as_secs_f64(),
        version: env!("CARGO_PKG_VERSION"),
        store: HealthStore { mode: mode.as_str() },
        database: HealthDatabase { use_postgres, dual_write_enabled },
    })
}

/// `/api/health`, the alias under `/api` (exempt from rate limits like `/health`).
#[utoipa::path(get, path = "/api/health", tag = "ops", responses(
    (status = 200, description = "Alive (no store I/O)", body = HealthResponse),
))]
pub async fn api_health(state: State<AppState>) -> Json<HealthResponse> {
    health(state).await
}

#[utoipa::path(get, path = "/api/csrf-token", tag = "ops", responses(
    (status = 200, description = "Stub kept for the client", body = CsrfTokenResponse),
))]
pub async fn csrf_token() -> Json<CsrfTokenResponse> {
    Json(CsrfTokenResponse { csrf_token: "" })
}
