//! Liveness (`/health`, `/api/health`) and the CSRF stub (http-api.md §3). Liveness never touches a store.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::config::StoreMode;
use crate::domain::time;

pub async fn health(State(state): State<AppState>) -> Json<Value> {
    let mode = state.mode();
    let (use_pg, dual) = match mode {
        StoreMode::Json => (false, false),
        StoreMode::DualJson => (false, true),
        StoreMode::DualPostgres => (true, true),
        StoreMode::Postgres => (true, false),
    };
    Json(json!({
        "status": "ok",
        "service": "auth-service",
        "timestamp": time::now(),
        "uptime": state.started.elapsed().as_secs_f64(),
        "version": env!("CARGO_PKG_VERSION"),
        "store": { "mode": mode.as_str() },
        "database": { "usePostgres": use_pg, "dualWriteEnabled": dual },
    }))
}

pub async fn csrf_token() -> Json<Value> {
    Json(json!({ "csrfToken": "" }))
}
