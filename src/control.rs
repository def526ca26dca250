//! The local control socket `<data dir>/.control.sock` (cli.md §1): operator commands reach a running server
//! through it instead of writing the files the server owns.
//!
//! Protocol: HTTP/1.1 over the Unix socket (mode 0600, so only the server's OS user can connect; no token).
//! `POST /v1/user` with a JSON [`UserRequest`](crate::usercmd::UserRequest) body answers 200 with a JSON
//! [`UserReply`](crate::usercmd::UserReply) `{"exit_code": N, "message": "…"}`; the CLI prints the message and
//! exits with the code. `GET /v1/ping` answers 200 `{"ok": true}`. `GET`/`PUT /v1/store` are
//! `GET`/`PUT /api/admin/store` (same bodies and answers) for `fluxstudio store status|switch`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::AppState;
use crate::store::json::state::Op;
use crate::usercmd::{self, UserReply, UserRequest};

pub fn serve(path: &Path, state: AppState, mut shutdown: watch::Receiver<bool>) -> std::io::Result<JoinHandle<()>> {
    // We hold the data dir lock, so a socket file left here belongs to a dead instance.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let app = Router::new()
        .route("/v1/ping", get(|| async { Json(serde_json::json!({ "ok": true })) }))
        .route("/v1/user", post(user))
        .route("/v1/store", get(store_status).put(store_switch))
        .route("/v1/apply", post(apply_ops))
        .with_state(state);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|v| *v).await;
            })
            .await;
    }))
}

async fn store_status(State(state): State<AppState>) -> Response {
    crate::api::admin::status_response(&state).await
}

async fn store_switch(
    State(state): State<AppState>,
    Json(body): Json<serde_json::Map<String, serde_json::Value>>,
) -> Response {
    match crate::api::admin::apply_put(&state, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn user(State(state): State<AppState>, Json(req): Json<UserRequest>) -> Json<UserReply> {
    // A write like any API write: it waits while a primary flip holds the barrier.
    let _admitted = state.stores.admit_write().await;
    Json(usercmd::execute(&state.store(), &state.passwords, req).await)
}

/// `validate --repair` towards JSON while this server owns the files: PostgreSQL's after-images (journal ops)
/// applied to the JSON store in one journaled write. Only when JSON is not the source of truth.
async fn apply_ops(State(state): State<AppState>, Json(ops): Json<Vec<Op>>) -> Response {
    use axum::http::StatusCode;
    let refuse = |status: StatusCode, message: String| (status, Json(serde_json::json!({ "message": message })));
    let mode = state.stores.mode();
    if crate::store::modes::primary_of(mode) == "json" {
        return refuse(
            StatusCode::CONFLICT,
            format!("the JSON store is the source of truth in mode {mode}; repair goes towards PostgreSQL"),
        )
        .into_response();
    }
    let Some(json) = state.stores.json() else {
        return refuse(StatusCode::CONFLICT, format!("the JSON files are frozen in mode {mode}")).into_response();
    };
    let _admitted = state.stores.admit_write().await;
    let n = ops.len();
    match json.apply_ops(ops).await {
        Ok(()) => Json(serde_json::json!({ "applied": n })).into_response(),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// Client side of `/v1/apply`: `Err((refused, message))`, `refused` when the server declined (409), else it could
/// not be reached or failed.
pub async fn send_ops(path: &Path, ops: &[Op]) -> Result<(), (bool, String)> {
    let body = serde_json::to_vec(ops).map_err(|e| (false, e.to_string()))?;
    let (status, bytes) = request(path, "POST", "/v1/apply", Some(body)).await.map_err(|e| (false, e))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err((
            status == hyper::StatusCode::CONFLICT,
            format!("the running server answered {status}: {message}"),
        ));
    }
    Ok(())
}

/// Client side, used by the CLI.
pub async fn send_user(path: &Path, req: &UserRequest) -> Result<UserReply, String> {
    let body = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    let (status, bytes) = request(path, "POST", "/v1/user", Some(body)).await?;
    if !status.is_success() {
        return Err(format!("control socket answered {status}: {}", String::from_utf8_lossy(&bytes)));
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// One HTTP/1.1 request over the control socket: the status and the body.
pub async fn request(
    path: &Path,
    method: &str,
    uri: &str,
    body: Option<Vec<u8>>,
) -> Result<(hyper::StatusCode, bytes::Bytes), String> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| format!("cannot reach the running server at {}: {e}", path.display()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, bytes))
}
