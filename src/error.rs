//! The one error type of the HTTP layer and the one place where errors become status codes and bodies.
//!
//! The legacy API has two error body families (http-api.md §1.3): the *message* family `{message, code}` and the
//! *success* family `{success: false, error, code}`. Which one a route uses is part of its contract, so it is
//! encoded in the handler's return type: `ApiResult` renders the message family, `SuccessResult` the success
//! family. Errors raised by extractors (authentication, body parsing) never pass through a handler's return
//! type and therefore always use the message family, which is exactly the legacy behaviour (rule 1 of §1.3).

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

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

/// The closed list of error codes an HTTP response may carry (http-api.md §1.4, without the Socket.IO-only
/// `invalid_payload` and `too_many_rooms`). The OpenAPI document's `ErrorCode` enum is this list, and a test checks
/// that every code literal in the sources is on it, so a new code cannot ship undocumented.
pub const ERROR_CODES: &[&str] = &[
    "invalid_json",
    "validation_failed",
    "too_many_files",
    "google_email_unverified",
    "auth_required",
    "invalid_token",
    "token_expired",
    "invalid_credentials",
    "google_auth_failed",
    "access_denied",
    "permission_denied",
    "admin_required",
    "admin_signup_forbidden",
    "account_disabled",
    "route_not_found",
    "project_not_found",
    "task_not_found",
    "milestone_not_found",
    "file_not_found",
    "team_not_found",
    "organization_not_found",
    "user_not_found",
    "member_not_found",
    "email_taken",
    "already_member",
    "last_owner",
    "switch_in_progress",
    "store_not_configured",
    "outbox_not_drained",
    "switch_refused",
    "payload_too_large",
    "unsupported_media_type",
    "unsupported_file_type",
    "rate_limited",
    "internal",
    "store_unavailable",
    "google_not_configured",
    "google_unavailable",
    "timeout",
    "not_ready",
];

/// The `code` of every error body: a string from [`ERROR_CODES`] (the OpenAPI document's `ErrorCode` enum).
pub struct ErrorCode;

impl PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .enum_values(Some(ERROR_CODES.iter().copied()))
            .description(Some("Stable error code (http-api.md §1.4); match on it rather than on the text."))
            .into()
    }
}

impl ToSchema for ErrorCode {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

/// The message family (http-api.md §1.3): the auth, files, teams, organizations and channel routes, and every
/// error raised before a handler runs.
#[derive(Serialize, ToSchema)]
pub struct MessageError<'a> {
    pub message: &'a str,
    #[schema(value_type = ErrorCode)]
    pub code: &'a str,
    /// Only on `validation_failed`: the human name of the field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

/// The success family (http-api.md §1.3): the project, member, task, milestone and activity routes.
#[derive(Serialize, ToSchema)]
pub struct SuccessError<'a> {
    /// Always `false`.
    pub success: bool,
    pub error: &'a str,
    /// Only on `validation_failed`: the human name of the field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    #[schema(value_type = ErrorCode)]
    pub code: &'a str,
}

/// A status that a success-family route answers in either family: its own validation errors in the success
/// family, errors raised before the handler (`invalid_json`, 415, 413, 401, 429) in the message family.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum EitherError<'a> {
    Message(MessageError<'a>),
    Success(SuccessError<'a>),
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
            StoreError::Conflict { code, message } if ERROR_CODES.contains(&code) => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            // A unique violation the contract has no code for (a duplicate key other than the e-mail's) is a
            // server fault, not something the client could fix.
            StoreError::Conflict { code, message } => {
                tracing::error!(code, error = %message, "store conflict without an API code");
                ApiError::internal(message_500)
            }
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
        debug_assert!(ERROR_CODES.contains(&self.code), "error code {:?} is not in ERROR_CODES", self.code);
        let body = match self.family.unwrap_or(route_family) {
            Family::Message => serde_json::to_value(MessageError {
                message: &self.message,
                code: self.code,
                field: self.field.as_deref(),
            }),
            Family::Success => serde_json::to_value(SuccessError {
                success: false,
                error: &self.message,
                field: self.field.as_deref(),
                code: self.code,
            }),
        }
        .unwrap_or_default();
        let mut resp = (self.status, axum::Json(body)).into_response();
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
