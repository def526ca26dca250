// Test support for Google sign-in: a local JWKS endpoint and an ID-token signer.
// Also `include!`d by the unit tests in src/auth/google.rs, so no inner attributes here.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

#[allow(dead_code)]
pub const TEST_KID: &str = "test-key-1";

const JWKS_JSON: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/google/jwks.json"));
const TEST_KEY_PEM: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/google/test-key.pem"));

#[allow(dead_code)]
pub struct JwksServer {
    /// Full URL of the key set, e.g. `http://127.0.0.1:PORT/certs`.
    pub url: String,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

struct ServerState {
    fetches: AtomicUsize,
    failing: AtomicBool,
    cache_control: Option<&'static str>,
}

#[allow(dead_code)]
impl JwksServer {
    /// Serves tests/fixtures/google/jwks.json on 127.0.0.1:0 at /certs; counts requests.
    pub async fn start() -> JwksServer {
        Self::start_with_cache_control(None).await
    }

    /// Like `start`, with a `Cache-Control` header on every response.
    pub async fn start_with_cache_control(cache_control: Option<&'static str>) -> JwksServer {
        let state =
            Arc::new(ServerState { fetches: AtomicUsize::new(0), failing: AtomicBool::new(false), cache_control });
        let handler_state = state.clone();
        let app = Router::new().route(
            "/certs",
            get(move || {
                let state = handler_state.clone();
                async move { serve_jwks(&state) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind JWKS test server");
        let addr = listener.local_addr().expect("JWKS test server address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JwksServer { url: format!("http://{addr}/certs"), state, task }
    }

    pub fn fetch_count(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    /// While set, `/certs` answers 500 (still counted as a fetch).
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn serve_jwks(state: &ServerState) -> Response {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    if state.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], JWKS_JSON).into_response();
    if let Some(cc) = state.cache_control {
        resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static(cc));
    }
    resp
}

/// The fixture private key (PKCS#8 PEM) matching jwks.json.
#[allow(dead_code)]
pub fn test_key_pem() -> &'static str {
    TEST_KEY_PEM
}

/// Signs an ID token with tests/fixtures/google/test-key.pem (RS256, kid "test-key-1").
/// `claims` is merged over defaults: iss "https://accounts.google.com", aud = the given client id,
/// iat = now, exp = now+3600, email_verified true. A `null` claim removes the default.
#[allow(dead_code)]
pub fn sign_id_token(client_id: &str, claims: serde_json::Value) -> String {
    sign_id_token_with_key(TEST_KEY_PEM, TEST_KID, client_id, claims)
}

/// `sign_id_token` with another private key and/or `kid`.
#[allow(dead_code)]
pub fn sign_id_token_with_key(key_pem: &str, kid: &str, client_id: &str, claims: serde_json::Value) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut merged = serde_json::json!({
        "iss": "https://accounts.google.com",
        "aud": client_id,
        "iat": now,
        "exp": now + 3600,
        "email_verified": true,
    });
    let target = merged.as_object_mut().expect("default claims are an object");
    for (k, v) in claims.as_object().expect("claims must be a JSON object") {
        if v.is_null() {
            target.remove(k);
        } else {
            target.insert(k.clone(), v.clone());
        }
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).expect("test RSA key");
    encode(&header, &merged, &key).expect("sign test ID token")
}
