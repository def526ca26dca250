//! `GET`/`PUT /api/admin/store` (http-api.md §13): the live store mode, its outbox, and the switch. The control
//! socket serves the same two operations to `fluxstudio store status|switch` without a token.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::extract::JsonObject;
use super::json_response;
use super::validate::Body;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::config::StoreMode;
use crate::error::{ApiError, ApiResult};
use crate::store::modes::{SwitchError, SwitchRequest};

/// The admin API checks the stored user type, not the token's claim (cli.md §8: tokens issued before a
/// `revoke-admin` still say admin).
fn require_admin(auth: &AuthUser) -> ApiResult<()> {
    if auth.0.user_type == "admin" {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "admin_required", "Admin access required"))
    }
}

pub async fn get_store(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Response> {
    require_admin(&auth)?;
    Ok(status_response(&state).await)
}

pub async fn put_store(
    State(state): State<AppState>,
    auth: AuthUser,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    require_admin(&auth)?;
    apply_put(&state, &body).await
}

pub async fn status_response(state: &AppState) -> Response {
    json_response(&state.stores.status().await)
}

/// What a `PUT` asks for, validated.
#[derive(Debug)]
pub struct PutStore {
    pub switch: Option<SwitchRequest>,
    pub shadow_read_rate: Option<f64>,
}

pub fn parse_put(body: &Body) -> ApiResult<PutStore> {
    let mode = match body.get("mode") {
        None => None,
        Some(Value::String(s)) => Some(StoreMode::parse(s).ok_or_else(|| {
            ApiError::validation("mode", "mode must be one of: json, dual-json, dual-postgres, postgres")
        })?),
        Some(_) => {
            return Err(ApiError::validation("mode", "mode must be one of: json, dual-json, dual-postgres, postgres"))
        }
    };
    let force = match body.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::validation("force", "force must be a boolean")),
    };
    let timeout = match body.get("timeoutSeconds") {
        None | Some(Value::Null) => 30,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(t @ 1..=600) => t,
            _ => return Err(ApiError::validation("timeoutSeconds", "timeoutSeconds must be an integer from 1 to 600")),
        },
        Some(_) => {
            return Err(ApiError::validation("timeoutSeconds", "timeoutSeconds must be an integer from 1 to 600"))
        }
    };
    let shadow_read_rate = match body.get("shadowReadRate") {
        None => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(r) if (0.0..=1.0).contains(&r) => Some(r),
            _ => return Err(ApiError::validation("shadowReadRate", "shadowReadRate must be a number from 0.0 to 1.0")),
        },
        Some(_) => {
            return Err(ApiError::validation("shadowReadRate", "shadowReadRate must be a number from 0.0 to 1.0"))
        }
    };
    if mode.is_none() && shadow_read_rate.is_none() {
        return Err(ApiError::validation("mode", "mode or shadowReadRate is required"));
    }
    Ok(PutStore {
        switch: mode.map(|mode| SwitchRequest { mode, force, timeout: Duration::from_secs(timeout) }),
        shadow_read_rate,
    })
}

fn switch_error(e: SwitchError) -> ApiError {
    let status = match e {
        SwitchError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::CONFLICT,
    };
    let mut err = ApiError::new(status, e.code(), e.to_string());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        err.retry_after = Some(5);
    }
    err
}

pub async fn apply_put(state: &AppState, body: &Body) -> ApiResult<Response> {
    let put = parse_put(body)?;
    // Checked before switching, so a refused rate never leaves a half-applied request behind.
    let target = put.switch.as_ref().map(|r| r.mode).unwrap_or_else(|| state.mode());
    if put.shadow_read_rate.is_some() && crate::store::modes::secondary_of(target).is_none() {
        return Err(switch_error(SwitchError::Refused(format!(
            "shadow reads run in the dual modes only; the mode would be {target}"
        ))));
    }
    let outcome = match put.switch {
        Some(req) => Some(state.stores.switch(req).await.map_err(switch_error)?),
        None => None,
    };
    if let Some(rate) = put.shadow_read_rate {
        state.stores.set_shadow_read_rate(rate).map_err(switch_error)?;
    }
    match outcome {
        Some(o) => Ok(json_response(&o)),
        None => Ok(status_response(state).await),
    }
}
