//! Request body extraction with the contract's errors: 415 for a body that is not declared JSON, 413 above the
//! body limit, 400 `invalid_json` for anything that is not a JSON object (http-api.md §1.1).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// A JSON object body. An absent body is `{}`: field validation then names the first missing field, which tells
/// a client more than "invalid body" would.
pub struct JsonObject(pub Map<String, Value>);

fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Whether a string anywhere in `v` holds a NUL character (see `validate::nul_refused`).
fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Request body too large")
            } else {
                ApiError::invalid_json()
            }
        })?;
        if bytes.is_empty() {
            return Ok(JsonObject(Map::new()));
        }
        if !is_json(content_type.as_deref()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Content-Type must be application/json",
            ));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => {
                if let Some((key, _)) = map.iter().find(|(k, v)| k.contains('\0') || holds_nul(v)) {
                    return Err(super::validate::nul_refused(key));
                }
                Ok(JsonObject(map))
            }
            _ => Err(ApiError::invalid_json()),
        }
    }
}
