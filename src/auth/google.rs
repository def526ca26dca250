//! Google ID token verification (auth.md §4.5).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];
const LEEWAY_SECS: u64 = 300;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);
/// Minimum spacing of unknown-`kid` refetches, and of retries while serving stale keys.
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Google's key set is a few KiB; anything far larger is not a key set.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

pub struct GoogleVerifier {
    client_ids: Vec<String>,
    jwks_url: String,
    http: Option<reqwest::Client>,
    validation: Validation,
    cache: parking_lot::RwLock<KeyCache>,
    /// Serialises fetches only; verifications with a usable cache never wait on it.
    fetch_lock: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone)]
pub struct GoogleIdentity {
    pub sub: String,
    pub email: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoogleError {
    /// GOOGLE_CLIENT_ID unset (client_ids empty) -> route answers 503 google_not_configured
    NotConfigured,
    /// keys cannot be fetched and none cached -> 503 google_unavailable
    Unavailable,
    /// malformed, bad signature, unknown kid, wrong aud/iss, expired, missing sub/email -> 401 google_auth_failed
    AuthFailed,
    /// email_verified not true (bool true or string "true") -> 400 google_email_unverified
    EmailUnverified,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    /// `None` until the first successful fetch.
    fresh_until: Option<Instant>,
    /// Bumped after every fetch attempt so tasks queued on `fetch_lock` can reuse its outcome.
    attempts: u64,
    last_failure: Option<Instant>,
    last_kid_refetch: Option<Instant>,
}

impl KeyCache {
    fn has_keys(&self) -> bool {
        self.fresh_until.is_some()
    }

    fn is_fresh(&self, now: Instant) -> bool {
        self.fresh_until.is_some_and(|t| now < t)
    }
}

#[derive(Deserialize)]
struct JwkSetDoc {
    keys: Vec<JwkDoc>,
}

#[derive(Deserialize)]
struct JwkDoc {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

impl GoogleVerifier {
    pub fn new(client_ids: Vec<String>, jwks_url: String) -> Self {
        let client_ids: Vec<String> =
            client_ids.into_iter().map(|id| id.trim().to_owned()).filter(|id| !id.is_empty()).collect();
        let http = reqwest::Client::builder()
            .connect_timeout(FETCH_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|_| tracing::error!("could not build the HTTP client for Google signing keys"))
            .ok();

        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&GOOGLE_ISSUERS);
        validation.set_audience(&client_ids);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);

        Self {
            client_ids,
            jwks_url,
            http,
            validation,
            cache: parking_lot::RwLock::new(KeyCache::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn is_configured(&self) -> bool {
        !self.client_ids.is_empty()
    }

    pub async fn verify(&self, credential: &str) -> Result<GoogleIdentity, GoogleError> {
        if !self.is_configured() {
            return Err(GoogleError::NotConfigured);
        }
        // Reject malformed tokens before any network traffic.
        let header = decode_header(credential).map_err(|_| GoogleError::AuthFailed)?;
        if header.alg != Algorithm::RS256 {
            return Err(GoogleError::AuthFailed);
        }
        let kid = header.kid.ok_or(GoogleError::AuthFailed)?;
        let key = self.key_for(&kid).await?;

        let claims = decode::<Value>(credential, &key, &self.validation).map_err(|_| GoogleError::AuthFailed)?.claims;
        self.identity_from_claims(&claims)
    }

    fn identity_from_claims(&self, claims: &Value) -> Result<GoogleIdentity, GoogleError> {
        // The library accepts array aud/iss that merely intersect; the spec wants an exact string.
        let aud = claims.get("aud").and_then(Value::as_str);
        if !aud.is_some_and(|aud| self.client_ids.iter().any(|id| id == aud)) {
            return Err(GoogleError::AuthFailed);
        }
        let iss = claims.get("iss").and_then(Value::as_str);
        if !iss.is_some_and(|iss| GOOGLE_ISSUERS.contains(&iss)) {
            return Err(GoogleError::AuthFailed);
        }
        let non_empty =
            |field: &str| claims.get(field).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let sub = non_empty("sub").ok_or(GoogleError::AuthFailed)?;
        let email = non_empty("email").ok_or(GoogleError::AuthFailed)?;
        let verified = match claims.get("email_verified") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => false,
        };
        if !verified {
            return Err(GoogleError::EmailUnverified);
        }
        Ok(GoogleIdentity { sub, email, name: non_empty("name") })
    }

    async fn key_for(&self, kid: &str) -> Result<Arc<DecodingKey>, GoogleError> {
        let (needs_fetch, seen) = {
            let cache = self.cache.read();
            let now = Instant::now();
            // Stale keys whose refresh just failed are served for a while rather than
            // making every request wait on a dead endpoint.
            let backing_off =
                cache.has_keys() && cache.last_failure.is_some_and(|t| now.duration_since(t) < REFETCH_INTERVAL);
            (!cache.is_fresh(now) && !backing_off, cache.attempts)
        };
        if needs_fetch {
            self.refresh(seen).await;
        }

        let seen = {
            let cache = self.cache.read();
            if let Some(key) = cache.keys.get(kid) {
                return Ok(key.clone());
            }
            if !cache.has_keys() {
                return Err(GoogleError::Unavailable);
            }
            cache.attempts
        };
        if needs_fetch {
            // The set was fetched for this very call; fetching again would not help.
            return Err(GoogleError::AuthFailed);
        }

        {
            let mut cache = self.cache.write();
            let now = Instant::now();
            if cache.last_kid_refetch.is_some_and(|t| now.duration_since(t) < REFETCH_INTERVAL) {
                return Err(GoogleError::AuthFailed);
            }
            cache.last_kid_refetch = Some(now);
        }
        self.refresh(seen).await;
        self.cache.read().keys.get(kid).cloned().ok_or(GoogleError::AuthFailed)
    }

    /// Fetches the key set unless another task already attempted a fetch since `seen`.
    async fn refresh(&self, seen: u64) {
        let _guard = self.fetch_lock.lock().await;
        if self.cache.read().attempts != seen {
            return;
        }
        let result = self.fetch().await;
        let mut cache = self.cache.write();
        cache.attempts += 1;
        let now = Instant::now();
        match result {
            Some((keys, max_age)) => {
                cache.keys = keys;
                cache.fresh_until = Some(now.checked_add(max_age).unwrap_or(now + DEFAULT_MAX_AGE));
                cache.last_failure = None;
            }
            None => cache.last_failure = Some(now),
        }
    }

    async fn fetch(&self) -> Option<(HashMap<String, Arc<DecodingKey>>, Duration)> {
        let http = self.http.as_ref()?;
        // Error values are never logged: they can carry URLs and peer details.
        let mut resp = match http.get(&self.jwks_url).send().await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::warn!(
                    timeout = e.is_timeout(),
                    connect = e.is_connect(),
                    "fetching Google signing keys failed"
                );
                return None;
            }
        };
        let status = resp.status();
        if !status.is_success() {
            tracing::warn!(status = status.as_u16(), "fetching Google signing keys failed");
            return None;
        }
        let max_age = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age)
            .unwrap_or(DEFAULT_MAX_AGE);

        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_JWKS_BYTES {
                        tracing::warn!("Google signing key set is too large");
                        return None;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!("reading Google signing keys failed");
                    return None;
                }
            }
        }
        let keys = match parse_jwks(&body) {
            Some(keys) => keys,
            None => {
                tracing::warn!("Google signing key set is invalid");
                return None;
            }
        };
        tracing::debug!(keys = keys.len(), "fetched Google signing keys");
        Some((keys, max_age))
    }
}

/// Usable RS256 keys by `kid`; `None` when the document holds none, so a broken
/// response never replaces good cached keys.
fn parse_jwks(body: &[u8]) -> Option<HashMap<String, Arc<DecodingKey>>> {
    let doc: JwkSetDoc = serde_json::from_slice(body).ok()?;
    let keys: HashMap<_, _> = doc
        .keys
        .into_iter()
        .filter(|k| k.kty.as_deref() == Some("RSA"))
        .filter(|k| k.alg.as_deref().is_none_or(|a| a == "RS256"))
        .filter(|k| k.use_.as_deref().is_none_or(|u| u == "sig"))
        .filter_map(|k| {
            let n = k.n?;
            let e = k.e?;
            let key = DecodingKey::from_rsa_components(n.trim_end_matches('='), e.trim_end_matches('=')).ok()?;
            Some((k.kid?, Arc::new(key)))
        })
        .collect();
    (!keys.is_empty()).then_some(keys)
}

fn parse_max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        let secs = value.trim().trim_matches('"').parse::<u64>().ok()?;
        Some(Duration::from_secs(secs))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[allow(dead_code)]
    mod support {
        include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/google.rs"));
    }

    use support::{sign_id_token, sign_id_token_with_key, JwksServer, TEST_KID};

    const CLIENT: &str = "test-client.apps.googleusercontent.com";
    const OTHER_KEY_PEM: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/google/other-key.pem"));

    fn verifier(server: &JwksServer) -> GoogleVerifier {
        GoogleVerifier::new(vec![CLIENT.to_owned()], server.url.clone())
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn base_claims() -> Value {
        json!({"sub": "1234567890", "email": "ada@example.com", "name": "Ada Lovelace"})
    }

    fn with(extra: Value) -> Value {
        let mut claims = base_claims();
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    }

    #[tokio::test]
    async fn valid_token_yields_identity() {
        let server = JwksServer::start().await;
        let id = verifier(&server).verify(&sign_id_token(CLIENT, base_claims())).await.unwrap();
        assert_eq!(id.sub, "1234567890");
        assert_eq!(id.email, "ada@example.com");
        assert_eq!(id.name.as_deref(), Some("Ada Lovelace"));
    }

    #[tokio::test]
    async fn name_is_optional_and_bare_issuer_accepted() {
        let server = JwksServer::start().await;
        let claims = json!({"sub": "1", "email": "a@b.c", "iss": "accounts.google.com"});
        let id = verifier(&server).verify(&sign_id_token(CLIENT, claims)).await.unwrap();
        assert_eq!(id.name, None);
    }

    #[tokio::test]
    async fn any_configured_client_id_is_accepted() {
        let server = JwksServer::start().await;
        let v = GoogleVerifier::new(vec!["web-client".into(), " mobile-client ".into()], server.url.clone());
        assert!(v.verify(&sign_id_token("mobile-client", base_claims())).await.is_ok());
        assert!(v.verify(&sign_id_token("web-client", base_claims())).await.is_ok());
    }

    #[tokio::test]
    async fn wrong_audience_fails() {
        let server = JwksServer::start().await;
        let token = sign_id_token("someone-else", base_claims());
        assert_eq!(verifier(&server).verify(&token).await.unwrap_err(), GoogleError::AuthFailed);
    }

    #[tokio::test]
    async fn audience_array_fails() {
        let server = JwksServer::start().await;
        let token = sign_id_token(CLIENT, with(json!({"aud": [CLIENT, "other"]})));
        assert_eq!(verifier(&server).verify(&token).await.unwrap_err(), GoogleError::AuthFailed);
    }

    #[tokio::test]
    async fn wrong_issuer_fails() {
        let server = JwksServer::start().await;
        let v = verifier(&server);
        for iss in [json!("https://evil.example.com"), json!(null)] {
            let token = sign_id_token(CLIENT, with(json!({ "iss": iss })));
            assert_eq!(v.verify(&token).await.unwrap_err(), GoogleError::AuthFailed);
        }
    }

    #[tokio::test]
    async fn expired_beyond_leeway_fails() {
        let server = JwksServer::start().await;
        let token = sign_id_token(CLIENT, with(json!({"exp": now() - 400})));
        assert_eq!(verifier(&server).verify(&token).await.unwrap_err(), GoogleError::AuthFailed);
    }

    #[tokio::test]
    async fn expired_within_leeway_is_accepted() {
        let server = JwksServer::start().await;
        let token = sign_id_token(CLIENT, with(json!({"exp": now() - 200})));
        assert!(verifier(&server).verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn missing_exp_fails() {
        let server = JwksServer::start().await;
        let token = sign_id_token(CLIENT, with(json!({"exp": null})));
        assert_eq!(verifier(&server).verify(&token).await.unwrap_err(), GoogleError::AuthFailed);
    }

    #[tokio::test]
    async fn bad_signature_fails() {
        let server = JwksServer::start().await;
        let token = sign_id_token_with_key(OTHER_KEY_PEM, TEST_KID, CLIENT, base_claims());
        assert_eq!(verifier(&server).verify(&token).await.unwrap_err(), GoogleError::AuthFailed);
    }

    #[tokio::test]
    async fn tampered_payload_fails() {
        let server = JwksServer::start().await;
        let token = sign_id_token(CLIENT, base_claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = sign_id_token(CLIENT, with(json!({"email": "mallory@example.com"})));
        let forged_payload = forged.split('.').nth(1).unwrap().to_owned();
        parts[1] = &forged_payload;
        assert_eq!(verifier(&server).verify(&parts.join(".")).await.unwrap_err(), GoogleError::AuthFailed);
    }

    #[tokio::test]
    async fn hs256_token_fails_without_fetching() {
        use jsonwebtoken::{encode, EncodingKey, Header};
        let server = JwksServer::start().await;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(TEST_KID.to_owned());
        let claims = with(json!({
            "iss": "https://accounts.google.com", "aud": CLIENT,
            "exp": now() + 3600, "email_verified": true
        }));
        let token = encode(&header, &claims, &EncodingKey::from_secret(b"secret")).unwrap();
        assert_eq!(verifier(&server).verify(&token).await.unwrap_err(), GoogleError::AuthFailed);
        assert_eq!(server.fetch_count(), 0);
    }

    #[tokio::test]
    async fn malformed_tokens_fail() {
        let server = JwksServer::start().await;
        let v = verifier(&server);
        for token in ["", "abc", "a.b.c", "a.b", "....", "eyJhbGciOiJub25lIn0.e30."] {
            assert_eq!(v.verify(token).await.unwrap_err(), GoogleError::AuthFailed, "{token}");
        }
        assert_eq!(server.fetch_count(), 0);
    }

    #[tokio::test]
    async fn unknown_kid_refetches_once_then_fails() {
        let server = JwksServer::start().await;
        let v = verifier(&server);
        v.verify(&sign_id_token(CLIENT, base_claims())).await.unwrap();
        assert_eq!(server.fetch_count(), 1);

        let pem = support::test_key_pem();
        let token = sign_id_token_with_key(pem, "rotated-key", CLIENT, base_claims());
        assert_eq!(v.verify(&token).await.unwrap_err(), GoogleError::AuthFailed);
        assert_eq!(server.fetch_count(), 2);

        // Throttled: no further refetch within 60 s.
        assert_eq!(v.verify(&token).await.unwrap_err(), GoogleError::AuthFailed);
        assert_eq!(server.fetch_count(), 2);
        // Known keys keep working.
        assert!(v.verify(&sign_id_token(CLIENT, base_claims())).await.is_ok());
        assert_eq!(server.fetch_count(), 2);
    }

    #[tokio::test]
    async fn unknown_kid_on_first_fetch_does_not_fetch_twice() {
        let server = JwksServer::start().await;
        let token = sign_id_token_with_key(support::test_key_pem(), "nope", CLIENT, base_claims());
        assert_eq!(verifier(&server).verify(&token).await.unwrap_err(), GoogleError::AuthFailed);
        assert_eq!(server.fetch_count(), 1);
    }

    #[tokio::test]
    async fn missing_kid_fails() {
        use jsonwebtoken::{encode, EncodingKey, Header};
        let server = JwksServer::start().await;
        let key = EncodingKey::from_rsa_pem(support::test_key_pem().as_bytes()).unwrap();
        let claims = with(json!({
            "iss": "https://accounts.google.com", "aud": CLIENT,
            "exp": now() + 3600, "email_verified": true
        }));
        let token = encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap();
        assert_eq!(verifier(&server).verify(&token).await.unwrap_err(), GoogleError::AuthFailed);
    }

    #[tokio::test]
    async fn email_verified_false_is_unverified() {
        let server = JwksServer::start().await;
        let v = verifier(&server);
        for value in [json!(false), json!("false"), json!(null), json!(1), json!("TRUE")] {
            let token = sign_id_token(CLIENT, with(json!({ "email_verified": value })));
            assert_eq!(v.verify(&token).await.unwrap_err(), GoogleError::EmailUnverified, "{value}");
        }
    }

    #[tokio::test]
    async fn email_verified_string_true_is_accepted() {
        let server = JwksServer::start().await;
        let token = sign_id_token(CLIENT, with(json!({"email_verified": "true"})));
        assert!(verifier(&server).verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn bad_token_is_auth_failed_even_if_unverified() {
        let server = JwksServer::start().await;
        let v = verifier(&server);
        let claims = with(json!({"email_verified": false}));
        let wrong_aud = sign_id_token("other", claims.clone());
        assert_eq!(v.verify(&wrong_aud).await.unwrap_err(), GoogleError::AuthFailed);
        let wrong_key = sign_id_token_with_key(OTHER_KEY_PEM, TEST_KID, CLIENT, claims);
        assert_eq!(v.verify(&wrong_key).await.unwrap_err(), GoogleError::AuthFailed);
    }

    #[tokio::test]
    async fn missing_email_or_sub_fails() {
        let server = JwksServer::start().await;
        let v = verifier(&server);
        for claims in [
            json!({"sub": "1"}),
            json!({"sub": "1", "email": ""}),
            json!({"email": "a@b.c"}),
            json!({"sub": 12, "email": "a@b.c"}),
        ] {
            let token = sign_id_token(CLIENT, claims.clone());
            assert_eq!(v.verify(&token).await.unwrap_err(), GoogleError::AuthFailed, "{claims}");
        }
    }

    #[tokio::test]
    async fn unreachable_jwks_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/certs", listener.local_addr().unwrap());
        drop(listener);
        let v = GoogleVerifier::new(vec![CLIENT.to_owned()], url);
        let token = sign_id_token(CLIENT, base_claims());
        assert_eq!(v.verify(&token).await.unwrap_err(), GoogleError::Unavailable);
        // Nothing cached: the next request tries again rather than backing off.
        assert_eq!(v.verify(&token).await.unwrap_err(), GoogleError::Unavailable);
    }

    #[tokio::test]
    async fn jwks_error_status_without_cache_is_unavailable() {
        let server = JwksServer::start().await;
        server.set_failing(true);
        let token = sign_id_token(CLIENT, base_claims());
        let v = verifier(&server);
        assert_eq!(v.verify(&token).await.unwrap_err(), GoogleError::Unavailable);
        server.set_failing(false);
        assert!(v.verify(&token).await.is_ok());
        assert_eq!(server.fetch_count(), 2);
    }

    #[tokio::test]
    async fn not_configured() {
        let server = JwksServer::start().await;
        for ids in [vec![], vec!["  ".to_owned()]] {
            let v = GoogleVerifier::new(ids, server.url.clone());
            assert!(!v.is_configured());
            let token = sign_id_token(CLIENT, base_claims());
            assert_eq!(v.verify(&token).await.unwrap_err(), GoogleError::NotConfigured);
        }
        assert!(verifier(&server).is_configured());
        assert_eq!(server.fetch_count(), 0);
    }

    #[tokio::test]
    async fn cache_is_reused() {
        let server = JwksServer::start().await;
        let v = verifier(&server);
        for _ in 0..5 {
            assert!(v.verify(&sign_id_token(CLIENT, base_claims())).await.is_ok());
        }
        assert_eq!(server.fetch_count(), 1);
    }

    #[tokio::test]
    async fn concurrent_first_verifications_share_one_fetch() {
        let server = JwksServer::start().await;
        let v = Arc::new(verifier(&server));
        let token = sign_id_token(CLIENT, base_claims());
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let v = v.clone();
                let token = token.clone();
                tokio::spawn(async move { v.verify(&token).await })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().is_ok());
        }
        assert_eq!(server.fetch_count(), 1);
    }

    #[tokio::test]
    async fn max_age_zero_refetches_and_stale_keys_survive_failures() {
        let server = JwksServer::start_with_cache_control(Some("public, max-age=0")).await;
        let v = verifier(&server);
        let token = sign_id_token(CLIENT, base_claims());
        assert!(v.verify(&token).await.is_ok());
        assert!(v.verify(&token).await.is_ok());
        assert_eq!(server.fetch_count(), 2);

        server.set_failing(true);
        assert!(v.verify(&token).await.is_ok());
        assert_eq!(server.fetch_count(), 3);
        // After a failed refresh the stale keys are used without hammering the endpoint.
        assert!(v.verify(&token).await.is_ok());
        assert_eq!(server.fetch_count(), 3);
    }

    #[test]
    fn max_age_parsing() {
        assert_eq!(
            parse_max_age("public, max-age=19845, must-revalidate, no-transform"),
            Some(Duration::from_secs(19845))
        );
        assert_eq!(parse_max_age("MAX-AGE = 10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_max_age("max-age=\"7\""), Some(Duration::from_secs(7)));
        assert_eq!(parse_max_age("s-maxage=5, no-cache"), None);
        assert_eq!(parse_max_age("max-age=-1"), None);
        assert_eq!(parse_max_age(""), None);
    }

    #[test]
    fn jwks_parsing_skips_unusable_keys() {
        let body = json!({"keys": [
            {"kty": "EC", "kid": "ec", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "ok", "n": "AQAB", "e": "AQAB"}
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["ok"]);
        assert!(parse_jwks(br#"{"keys": []}"#).is_none());
        assert!(parse_jwks(b"not json").is_none());
    }
}
