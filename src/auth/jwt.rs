//! HS256 session tokens, interoperable with the legacy server's (auth.md §1): the same claims in the same order,
//! the secret's UTF-8 bytes as the key, 7 days, no other claims.

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::User;

pub const TOKEN_LIFETIME_SECS: i64 = 604_800;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub id: String,
    pub email: String,
    #[serde(rename = "userType")]
    pub user_type: String,
    pub iat: i64,
    pub exp: i64,
}

/// What verification needs from a token: a string `id` (the legacy server's tokens always carry it; `email`
/// and `userType` are informational).
#[derive(Debug, Deserialize)]
struct VerifiedClaims {
    id: String,
    exp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Invalid,
    Expired,
}

pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Tokens whose signature and claims were checked, with their (id, exp): a client sends the same token with
    /// every request, and checking it again (base64, HMAC-SHA256, JSON) was ~35,000 instructions of a GET tasks
    /// under callgrind, against a few hundred for the lookup. Only the expiry can change a verified token's answer,
    /// and it is checked on every hit. Keyed by the whole token (a hit is an exact match, not a hash match); the
    /// cache belongs to this key, so another secret starts empty. Bounded, least recently used first out.
    verified: quick_cache::sync::Cache<String, (String, i64)>,
}

/// Enough for the active sessions of a large studio; a flood of distinct valid tokens only evicts.
const VERIFIED_CAPACITY: usize = 10_000;

impl Jwt {
    pub fn new(secret: &str) -> Jwt {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Jwt {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            verified: quick_cache::sync::Cache::new(VERIFIED_CAPACITY),
        }
    }

    pub fn issue(&self, user: &User) -> String {
        let iat = chrono::Utc::now().timestamp();
        self.issue_at(user, iat, iat + TOKEN_LIFETIME_SECS)
    }

    pub fn issue_at(&self, user: &User, iat: i64, exp: i64) -> String {
        let claims =
            Claims { id: user.id.clone(), email: user.email.clone(), user_type: user.user_type.clone(), iat, exp };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an in-memory key cannot fail")
    }

    /// Returns the token's user id.
    pub fn verify(&self, token: &str) -> Result<String, TokenError> {
        self.verify_with_exp(token).map(|(id, _)| id)
    }

    /// The token's user id and its `exp` (seconds since the epoch).
    pub fn verify_with_exp(&self, token: &str) -> Result<(String, i64), TokenError> {
        if let Some((id, exp)) = self.verified.get(token) {
            // jsonwebtoken's rule with no leeway: expired once `exp` is before the current second.
            return if exp < jsonwebtoken::get_current_timestamp() as i64 {
                Err(TokenError::Expired)
            } else {
                Ok((id, exp))
            };
        }
        match jsonwebtoken::decode::<VerifiedClaims>(token, &self.decoding, &self.validation) {
            Ok(data) => {
                self.verified.insert(token.to_owned(), (data.claims.id.clone(), data.claims.exp));
                Ok((data.claims.id, data.claims.exp))
            }
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(_) => Err(TokenError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        serde_json::from_value(serde_json::json!({
            "id": "1756887342317", "email": "m@example.com", "name": "M", "userType": "designer",
            "createdAt": "2025-09-03T08:15:42.317Z"
        }))
        .unwrap()
    }

    #[test]
    fn round_trip_and_claim_order() {
        let jwt = Jwt::new("0123456789abcdef0123456789abcdef");
        let t = jwt.issue(&user());
        assert_eq!(jwt.verify(&t), Ok("1756887342317".into()));
        let payload = t.split('.').nth(1).unwrap();
        use base64_decode as b64;
        let json = b64(payload);
        assert!(json
            .starts_with("{\"id\":\"1756887342317\",\"email\":\"m@example.com\",\"userType\":\"designer\",\"iat\":"));
    }

    #[test]
    fn a_verified_token_is_served_from_the_cache_until_it_expires() {
        let jwt = Jwt::new("0123456789abcdef0123456789abcdef");
        let t = jwt.issue(&user());
        assert_eq!(jwt.verify(&t), Ok("1756887342317".into()));
        assert!(jwt.verified.get(&t).is_some(), "cached after the first check");
        assert_eq!(jwt.verify(&t), Ok("1756887342317".into()));
        // The same claims under another signature are not the cached token.
        let (head, rest) = t.rsplit_once('.').unwrap();
        let forged = format!("{head}.{}", rest.chars().rev().collect::<String>());
        assert_eq!(jwt.verify(&forged), Err(TokenError::Invalid));
        // The expiry is checked on every hit.
        let now = chrono::Utc::now().timestamp();
        jwt.verified.insert(t.clone(), ("1756887342317".into(), now - 1));
        assert_eq!(jwt.verify(&t), Err(TokenError::Expired));
    }

    #[test]
    fn expired_and_forged_tokens_are_told_apart() {
        let jwt = Jwt::new("0123456789abcdef0123456789abcdef");
        let now = chrono::Utc::now().timestamp();
        let expired = jwt.issue_at(&user(), now - 100, now - 1);
        assert_eq!(jwt.verify(&expired), Err(TokenError::Expired));
        let other = Jwt::new("ffffffffffffffffffffffffffffffff0");
        assert_eq!(other.verify(&jwt.issue(&user())), Err(TokenError::Invalid));
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpZCI6IngiLCJleHAiOjk5OTk5OTk5OTl9.";
        assert_eq!(jwt.verify(none), Err(TokenError::Invalid));
    }

    fn base64_decode(s: &str) -> String {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in s.bytes() {
            let v = alphabet.iter().position(|a| *a == c).unwrap() as u32;
            bits = (bits << 6) | v;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
                bits &= (1 << n) - 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
}
