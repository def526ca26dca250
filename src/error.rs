//! The one error type of the HTTP layer and the one place where errors become status codes and bodies.
//!
//! The legacy API has two error body families (http-api.md §1.3): the *message* family `{message, code}` and the
//! *success* family `{success: false, error, code}`. Which one a route uses is part of its contract, so it is
//! encoded in the handler's return type: `ApiResult` renders the message family, `SuccessResult` the success
//! family. Errors raised by extractors (authentication, body parsing) never pass through a handler's return
//! type and therefore always use the message family, which is exactly the legacy behaviour (rule 1 of §1.3).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::store::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Message,
    Success,
}

#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Forces a family regardless of the route's (PUT project's field errors, rule 2 of §1.3).
    pub family: Option<Family>,
    pub retry_after: Option<u64>,
    /// `Some(true)` when a token was sent (adds `error="invalid_token"` to `WWW-Authenticate`).
    pub www_authenticate: Option<bool>,
}

pub type ApiResult<T> = Result<T, ApiError>;
pub type SuccessResult<T> = Result<T, InSuccessFamily>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            family: None,
            retry_after: None,
            www_authenticate: None,
        }
    }

    pub fn validation(field: &str, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", message);
        e.field = Some(field.to_owned());
        e
    }

    pub fn invalid_json() -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", "Invalid request body")
    }

    pub fn project_not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "project_not_found", "Project not found")
    }

    pub fn task_not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "task_not_found", "Task not found")
    }

    pub fn permission_denied(message: &str) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "permission_denied", message)
    }

    pub fn route_not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "API endpoint not found")
    }

    pub fn auth_required() -> ApiError {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "auth_required", "Authentication required");
        e.www_authenticate = Some(false);
        e
    }

    pub fn invalid_token(code: &'static str) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, code, "Invalid or expired token");
        e.www_authenticate = Some(true);
        e
    }

    pub fn unavailable(code: &'static str, message: &str) -> ApiError {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        e.retry_after = Some(5);
        e
    }

    /// 429 from a rate limiter: always the message family, always with `Retry-After` (http-api.md §1.12).
    pub fn rate_limited(retry_after_secs: u64) -> ApiError {
        let mut e =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many requests, please try again later");
        e.retry_after = Some(retry_after_secs.max(1));
        e.family = Some(Family::Message);
        e
    }

    pub fn internal(message: &str) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn in_family(mut self, family: Family) -> ApiError {
        self.family = Some(family);
        self
    }

    /// Maps a store failure, naming the route's legacy 500 text for the "can't happen" case.
    pub fn from_store(err: StoreError, message_500: &str) -> ApiError {
        match err {
            StoreError::NotFound { code } => ApiError::new(StatusCode::NOT_FOUND, code, not_found_message(code)),
            StoreError::Conflict { code, message } => ApiError::new(StatusCode::CONFLICT, code, message),
            StoreError::Rejected(r) => {
                ApiError::new(StatusCode::from_u16(r.status).unwrap_or(StatusCode::CONFLICT), r.code, r.message)
            }
            StoreError::Unavailable(detail) => {
                tracing::error!(error = %detail, "store unavailable");
                ApiError::unavailable("store_unavailable", "Store unavailable, please retry")
            }
            StoreError::Other(detail) => {
                tracing::error!(error = %detail, "store error");
                ApiError::internal(message_500)
            }
        }
    }

    pub fn render(&self, route_family: Family) -> Response {
        let family = self.family.unwrap_or(route_family);
        let mut body = Map::new();
        match family {
            Family::Message => {
                body.insert("message".into(), Value::String(self.message.clone()));
                body.insert("code".into(), Value::String(self.code.into()));
                if let Some(f) = &self.field {
                    body.insert("field".into(), Value::String(f.clone()));
                }
            }
            Family::Success => {
                body.insert("success".into(), Value::Bool(false));
                body.insert("error".into(), Value::String(self.message.clone()));
                if let Some(f) = &self.field {
                    body.insert("field".into(), Value::String(f.clone()));
                }
                body.insert("code".into(), Value::String(self.code.into()));
            }
        }
        let mut resp = (self.status, axum::Json(Value::Object(body))).into_response();
        let headers = resp.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        match self.www_authenticate {
            Some(true) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
            }
            Some(false) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            None => {}
        }
        resp
    }
}

fn not_found_message(code: &str) -> &'static str {
    match code {
        "project_not_found" => "Project not found",
        "task_not_found" => "Task not found",
        "milestone_not_found" => "Milestone not found",
        "file_not_found" => "File not found",
        "team_not_found" => "Team not found",
        "organization_not_found" => "Organization not found",
        "user_not_found" => "User not found",
        "member_not_found" => "Member not found",
        _ => "Not found",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.render(Family::Message)
    }
}

/// A handler error rendered in the success family.
#[derive(Debug)]
pub struct InSuccessFamily(pub ApiError);

impl<E: Into<ApiError>> From<E> for InSuccessFamily {
    fn from(e: E) -> Self {
        InSuccessFamily(e.into())
    }
}

impl IntoResponse for InSuccessFamily {
    fn into_response(self) -> Response {
        self.0.render(Family::Success)
    }
}

/// A success-family body: `"success": true` first, then the given members.
pub fn success(mut body: Map<String, Value>) -> axum::Json<Value> {
    let mut out = Map::with_capacity(body.len() + 1);
    out.insert("success".into(), Value::Bool(true));
    out.append(&mut body);
    axum::Json(Value::Object(out))
}

/// A success-family body from a `json!({...})` object literal.
pub fn success_json(v: Value) -> axum::Json<Value> {
    match v {
        Value::Object(m) => success(m),
        // Only object literals are passed in; anything else is wrapped rather than silently dropped.
        other => success(Map::from_iter([("data".to_owned(), other)])),
    }
}
