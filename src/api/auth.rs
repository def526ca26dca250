//! `/api/auth/*` (auth.md §4). Message family throughout.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde_json::Value;

use super::dto::{AuthResponse, GoogleLoginRequest, LoginRequest, MessageResponse, SignupRequest, UserDto};
use super::extract::JsonObject;
use super::json_response;
use crate::app::AppState;
use crate::auth::google::GoogleError;
use crate::auth::password::check_policy;
use crate::auth::AuthUser;
use crate::domain::{new_user, User};
use crate::error::{ApiError, ApiResult, MessageError};
use crate::store::{StoreError, UserPatch};

fn token_response(state: &AppState, user: &User) -> Response {
    json_response(&AuthResponse { token: state.jwt.issue(user), user: UserDto::from(user) })
}

/// `local@domain` with a dot in the domain, no whitespace, at most 254 characters.
pub fn valid_email(email: &str) -> bool {
    if email.chars().count() > 254 || email.chars().any(char::is_whitespace) {
        return false;
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

fn nonempty_str<'a>(body: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

#[utoipa::path(post, path = "/api/auth/signup", tag = "auth", request_body = SignupRequest, responses(
    (status = 200, description = "Account created and signed in", body = AuthResponse),
    (status = 400, description = "`validation_failed` or `invalid_json`", body = MessageError),
    (status = 403, description = "`admin_signup_forbidden`", body = MessageError),
    (status = 409, description = "`email_taken`", body = MessageError),
    (status = 500, body = MessageError), (status = 503, body = MessageError),
))]
pub async fn signup(State(state): State<AppState>, JsonObject(body): JsonObject) -> ApiResult<Response> {
    let required = |e: &str| ApiError::validation(e, "All fields are required");
    let email = nonempty_str(&body, "email").ok_or_else(|| required("Email"))?;
    let password =
        body.get("password").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| required("Password"))?;
    let name = nonempty_str(&body, "name").ok_or_else(|| required("Name"))?;
    let user_type = match body.get("userType") {
        None | Some(Value::Null) => "client",
        Some(Value::String(t)) if matches!(t.as_str(), "client" | "designer" | "admin") => t.as_str(),
        Some(_) => return Err(ApiError::validation("User type", "Invalid user type")),
    };
    if user_type == "admin" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_signup_forbidden",
            "Admin accounts cannot be created by signup",
        ));
    }
    let email = email.trim();
    if !valid_email(email) {
        return Err(ApiError::validation("Email", "Email must be a valid email address"));
    }
    let name = name.trim();
    if name.chars().count() > 255 {
        return Err(ApiError::validation("Name", "Name must be 255 characters or less"));
    }
    check_policy(password).map_err(|m| ApiError::validation("Password", m))?;
    let store = state.store();
    // A cheap pre-check spares the bcrypt work for an obvious duplicate; the insert re-checks atomically.
    if store
        .get_user_by_email(email)
        .await
        .map_err(|e| ApiError::from_store(e, "Server error during signup"))?
        .is_some_and(|u| u.email.to_lowercase() == email.to_lowercase())
    {
        return Err(ApiError::new(StatusCode::CONFLICT, "email_taken", "Email already registered"));
    }
    let hash = state.passwords.hash(password).await.map_err(|_| ApiError::internal("Server error during signup"))?;
    let user = new_user(email, name, user_type, Some(hash));
    let user = store.insert_user(user).await.map_err(|e| ApiError::from_store(e, "Server error during signup"))?;
    Ok(token_response(&state, &user))
}

#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, description = "Signed in", body = AuthResponse),
    (status = 400, description = "`validation_failed` or `invalid_json`", body = MessageError),
    (status = 401, description = "`invalid_credentials`", body = MessageError),
    (status = 403, description = "`account_disabled`", body = MessageError),
    (status = 500, body = MessageError), (status = 503, body = MessageError),
))]
pub async fn login(State(state): State<AppState>, JsonObject(body): JsonObject) -> ApiResult<Response> {
    let (Some(email), Some(password)) =
        (body.get("email").and_then(Value::as_str), body.get("password").and_then(Value::as_str))
    else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", "Email and password are required"));
    };
    let store = state.store();
    let user = store
        .get_user_by_email(email.trim())
        .await
        .map_err(|e| ApiError::from_store(e, "Server error during login"))?;
    let hash = user.as_ref().and_then(|u| u.password.as_deref());
    // Exactly one verification whatever the account looks like (auth.md §3).
    let ok = state.passwords.verify(password, hash).await;
    let (true, Some(user)) = (ok, user) else {
        login_failed("password", "invalid_credentials");
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "Invalid email or password"));
    };
    if !user.is_active {
        login_failed("password", "account_disabled");
        return Err(ApiError::new(StatusCode::FORBIDDEN, "account_disabled", "Account disabled"));
    }
    if user.password.as_deref().is_some_and(|h| state.passwords.needs_rehash(h)) {
        match state.passwords.hash(password).await {
            Ok(new_hash) => {
                let patch = UserPatch { password: Some(Some(new_hash)), ..Default::default() };
                if let Err(e) = store.update_user(&user.id, patch).await {
                    tracing::warn!(error = %e, user = %user.id, "could not save the rehashed password; login proceeds");
                }
            }
            Err(e) => tracing::warn!(error = %e, "rehash failed; login proceeds"),
        }
    }
    Ok(token_response(&state, &user))
}

/// `flux_login_failures_total{method,reason}`: no e-mail or IP in the labels (unbounded, and personal data).
fn login_failed(method: &'static str, reason: &'static str) {
    metrics::counter!("flux_login_failures_total", "method" => method, "reason" => reason).increment(1);
}

#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearerAuth" = [])), responses(
    (status = 200, description = "The caller, bare", body = UserDto),
    (status = 503, body = MessageError),
))]
pub async fn me(AuthUser(user): AuthUser) -> Response {
    json_response(&UserDto::from(&user))
}

#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", security(("bearerAuth" = [])), responses(
    (status = 200, description = "Stateless: the token stays valid until it expires", body = MessageResponse),
    (status = 503, body = MessageError),
))]
pub async fn logout(_user: AuthUser) -> Json<MessageResponse> {
    Json(MessageResponse { message: "Logged out successfully" })
}

#[utoipa::path(post, path = "/api/auth/google", tag = "auth", request_body = GoogleLoginRequest, responses(
    (status = 200, description = "Signed in (account linked or created as needed)", body = AuthResponse),
    (status = 400, description = "`validation_failed`, `invalid_json` or `google_email_unverified`", body = MessageError),
    (status = 401, description = "`google_auth_failed`", body = MessageError),
    (status = 403, description = "`account_disabled`", body = MessageError),
    (status = 409, description = "`email_taken`: the e-mail is linked to another Google account", body = MessageError),
    (status = 500, body = MessageError),
    (status = 503, description = "`google_not_configured`, `google_unavailable` or `store_unavailable`", body = MessageError),
))]
pub async fn google(State(state): State<AppState>, JsonObject(body): JsonObject) -> ApiResult<Response> {
    let credential = nonempty_str(&body, "credential")
        .ok_or_else(|| ApiError::validation("Credential", "Google credential is required"))?;
    let identity = state.google.verify(credential).await.map_err(|e| match e {
        GoogleError::NotConfigured => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "google_not_configured", "Google OAuth not configured")
        }
        GoogleError::Unavailable => {
            ApiError::unavailable("google_unavailable", "Google authentication temporarily unavailable")
        }
        GoogleError::AuthFailed => {
            login_failed("google", "google_auth_failed");
            ApiError::new(StatusCode::UNAUTHORIZED, "google_auth_failed", "Google authentication failed")
        }
        GoogleError::EmailUnverified => {
            login_failed("google", "google_email_unverified");
            ApiError::new(StatusCode::BAD_REQUEST, "google_email_unverified", "Google email not verified")
        }
    })?;
    let store = state.store();
    let err500 = |e: StoreError| ApiError::from_store(e, "Google authentication error");
    let user = if let Some(u) = store.get_user_by_google_id(&identity.sub).await.map_err(err500)? {
        u
    } else if let Some(u) = store.get_user_by_email(&identity.email).await.map_err(err500)? {
        match &u.google_id {
            Some(other) if other != &identity.sub => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "email_taken",
                    "Email already linked to another Google account",
                ));
            }
            Some(_) => u,
            None => {
                let patch = UserPatch {
                    google_id: Some(Some(identity.sub.clone())),
                    oauth_provider: Some(Some("google".into())),
                    ..Default::default()
                };
                store.update_user(&u.id, patch).await.map_err(err500)?
            }
        }
    } else {
        let local = identity.email.split('@').next().unwrap_or_default().to_owned();
        let name = identity.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or(local);
        let mut user = new_user(&identity.email, &name, "client", None);
        user.google_id = Some(identity.sub.clone());
        user.oauth_provider = Some("google".into());
        store.insert_user(user).await.map_err(err500)?
    };
    if !user.is_active {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "account_disabled", "Account disabled"));
    }
    Ok(token_response(&state, &user))
}

#[cfg(test)]
mod tests {
    use super::valid_email;

    #[test]
    fn email_shape() {
        assert!(valid_email("a@b.co"));
        assert!(valid_email("chen.jing+flux@example.org"));
        assert!(!valid_email("a@b"));
        assert!(!valid_email("@b.co"));
        assert!(!valid_email("a b@c.de"));
        assert!(!valid_email("a@.de"));
    }
}
