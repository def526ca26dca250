//! Authentication: tokens, passwords, Google sign-in, and the `AuthUser` extractor that every authenticated
//! handler takes, so a handler's signature says who may call it.

pub mod google;
pub mod jwt;
pub mod password;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::domain::{Actor, User};
use crate::error::ApiError;

/// The caller, loaded from the store after the token's signature checked out. The stored record decides
/// authorisation (auth.md §1): a deleted or disabled user is refused even with a valid token.
#[derive(Clone, Debug)]
pub struct AuthUser(pub User);

impl AuthUser {
    pub fn actor(&self) -> Actor {
        Actor::from_user(&self.0)
    }
}

/// `Bearer <token>` with the scheme in any case and one or more spaces; anything else is a bad token, and no
/// header, an empty one or a bare `Bearer` means no token at all (http-api.md §1.2).
pub fn bearer_token(header: Option<&str>) -> Result<&str, ApiError> {
    let value = header.map(str::trim).unwrap_or("");
    if value.is_empty() {
        return Err(ApiError::auth_required());
    }
    let mut parts = value.split_whitespace();
    let scheme = parts.next().unwrap_or("");
    let token = parts.next();
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::invalid_token("invalid_token"));
    }
    let Some(token) = token else {
        return Err(ApiError::auth_required());
    };
    if parts.next().is_some() {
        return Err(ApiError::invalid_token("invalid_token"));
    }
    Ok(token)
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = match parts.headers.get(AUTHORIZATION) {
            Some(v) => Some(v.to_str().map_err(|_| ApiError::invalid_token("invalid_token"))?),
            None => None,
        };
        let token = bearer_token(header)?;
        let id = state.jwt.verify(token).map_err(|e| match e {
            jwt::TokenError::Expired => ApiError::invalid_token("token_expired"),
            jwt::TokenError::Invalid => ApiError::invalid_token("invalid_token"),
        })?;
        let user = state
            .store()
            .get_user_for_request(&id)
            .await
            .map_err(|e| ApiError::from_store(e, "Server error"))?
            .ok_or_else(|| ApiError::invalid_token("invalid_token"))?;
        if !user.is_active {
            return Err(ApiError::invalid_token("invalid_token"));
        }
        Ok(AuthUser(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing_follows_the_contract() {
        assert_eq!(bearer_token(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(Some("  bEaReR    abc  ")).unwrap(), "abc");
        assert_eq!(bearer_token(None).unwrap_err().code, "auth_required");
        assert_eq!(bearer_token(Some("Bearer")).unwrap_err().code, "auth_required");
        assert_eq!(bearer_token(Some("Basic abc")).unwrap_err().code, "invalid_token");
        assert_eq!(bearer_token(Some("Bearer a b")).unwrap_err().code, "invalid_token");
    }
}
