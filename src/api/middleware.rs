//! The middleware stack around the route table, assembled in one function ([`wrap`]) in the order of DESIGN.md:
//! request id → trace → catch-panic → metrics → CORS → security headers → (request timeout) → body limit → rate
//! limit. Each step is a small function here, so the order can be read in one place.
//!
//! The stack is applied with `Router::layer`, which wraps every route (and the fallback) after routing, so each
//! step sees the matched route template (`MatchedPath`) for logs, metrics labels and the choice of rate limiters.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{OnResponse, TraceLayer};
use tracing::Span;

use crate::app::AppState;
use crate::auth::bearer_token;
use crate::config::TrustProxy;
use crate::error::ApiError;
use crate::ratelimit::{self, Admission, Key, LimiterId, Quota, RateLimits};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id (incoming `X-Request-Id` or generated), in the request's extensions.
#[derive(Clone, Debug)]
pub struct RequestId(pub HeaderValue);

/// Wraps the route table in the whole stack. `routes` already carries its state.
pub fn wrap(routes: Router, state: &AppState) -> Router {
    let trust = state.config.trust_proxy.clone();
    let stack = ServiceBuilder::new()
        .layer(middleware::from_fn(request_id))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(move |req: &Request| request_span(req, &trust))
                .on_request(())
                .on_response(LogResponse)
                .on_failure(()),
        )
        .layer(CatchPanicLayer::custom(|_| {
            // The panic message stays out of the log line (it could quote request data); the span carries the
            // request id, so the 500 can be matched with the default panic hook's output on stderr.
            tracing::error!("handler panicked");
            let mut resp = ApiError::internal("Internal server error").into_response();
            set_security_headers(resp.headers_mut());
            resp
        }))
        .layer(middleware::from_fn(record_metrics))
        .layer(middleware::from_fn_with_state(cors_config(&state.config.cors_origins), cors))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn_with_state(state.config.request_timeout, request_timeout))
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit));
    routes.layer(stack)
}

// ---------------------------------------------------------------------------------------------------------------
// Request id

/// Keeps an incoming `X-Request-Id` of 1–128 printable ASCII characters (so a proxy's id follows the request into
/// our logs), replaces anything else with a fresh UUID, and echoes it on the response.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = match req.headers().get(&X_REQUEST_ID) {
        Some(v) if valid_request_id(v.as_bytes()) => v.clone(),
        _ => HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a UUID is a valid header value"),
    };
    req.headers_mut().insert(X_REQUEST_ID, id.clone());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(X_REQUEST_ID, id);
    resp
}

pub fn valid_request_id(bytes: &[u8]) -> bool {
    (1..=128).contains(&bytes.len()) && bytes.iter().all(|b| (0x20..=0x7e).contains(b))
}

// ---------------------------------------------------------------------------------------------------------------
// Trace: one span per request, one log line per response

fn matched_route(req: &Request) -> &str {
    req.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str)
}

/// The `route` of requests that matched no route (unknown paths, static files): raw paths never become labels.
pub const UNMATCHED: &str = "unmatched";

fn peer_ip(req: &Request) -> IpAddr {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

fn request_span(req: &Request, trust: &TrustProxy) -> Span {
    let id = req.extensions().get::<RequestId>().and_then(|r| r.0.to_str().ok()).unwrap_or("");
    let client = ratelimit::client_ip(trust, peer_ip(req), req.headers());
    // Only the method, the route template and the client address: never the query string or headers, which
    // could carry credentials.
    tracing::info_span!("request", request_id = %id, method = %req.method(), route = matched_route(req), client = %client)
}

/// The request log line, inside the request's span (id, method, route, client). Every 500 — a handler's error
/// or a caught panic — is logged at error level with its request id here.
#[derive(Clone, Copy)]
struct LogResponse;

impl<B> OnResponse<B> for LogResponse {
    fn on_response(self, resp: &axum::http::Response<B>, latency: Duration, _span: &Span) {
        let status = resp.status().as_u16();
        let latency_ms = (latency.as_secs_f64() * 1e5).round() / 100.0;
        if resp.status().is_server_error() {
            tracing::error!(status, latency_ms, "request failed");
        } else {
            tracing::info!(status, latency_ms, "request");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Metrics

/// Methods outside this list share one label value, so a client cannot grow the label set.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Records the request when dropped: normally with the response's status, and with 500 when the handler
/// panicked (catch-panic sits outside this layer, and unwinding drops this future with the guard still armed).
struct RequestMetrics {
    method: &'static str,
    route: String,
    started: Instant,
    status: Option<u16>,
}

impl Drop for RequestMetrics {
    fn drop(&mut self) {
        let status = self.status.unwrap_or(500).to_string();
        let labels = [("method", self.method.to_owned()), ("route", std::mem::take(&mut self.route))];
        metrics::histogram!("http_request_duration_seconds", &labels).record(self.started.elapsed().as_secs_f64());
        let [m, r] = labels;
        metrics::counter!("http_requests_total", &[m, r, ("status", status)]).increment(1);
    }
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let mut guard = RequestMetrics {
        method: method_label(req.method()),
        route: matched_route(&req).to_owned(),
        started: Instant::now(),
        status: None,
    };
    let resp = next.run(req).await;
    guard.status = Some(resp.status().as_u16());
    resp
}

// ---------------------------------------------------------------------------------------------------------------
// CORS (configuration.md §8)

/// The allowed origins (matched exactly on scheme, host and port) and tower-http's layer built from them.
#[derive(Clone)]
struct Cors {
    origins: Arc<[HeaderValue]>,
    layer: CorsLayer,
}

fn cors_config(origins: &[String]) -> Cors {
    let origins: Arc<[HeaderValue]> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let layer = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-csrf-token"),
            HeaderName::from_static("x-requested-with"),
            X_REQUEST_ID,
        ])
        .expose_headers([
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
            HeaderName::from_static("ratelimit-policy"),
            header::RETRY_AFTER,
            X_REQUEST_ID,
        ])
        .max_age(Duration::from_secs(600));
    Cors { origins, layer }
}

fn is_preflight(req: &Request) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// tower-http's CORS layer answers every `OPTIONS` itself (200) and adds the method/header lists even for an
/// origin it does not allow. The contract is narrower: a preflight is answered 204; a disallowed origin gets no
/// CORS headers at all (and no error); an `OPTIONS` that is not a preflight is an ordinary request (404).
async fn cors(State(cors): State<Cors>, req: Request, next: Next) -> Response {
    cors_response(cors, req, next).await
}

async fn cors_response(cors: Cors, req: Request, next: Next) -> Response {
    let allowed = req.headers().get(header::ORIGIN).is_some_and(|o| cors.origins.contains(o));
    let preflight = is_preflight(&req);
    if !allowed {
        if preflight {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            set_security_headers(resp.headers_mut());
            return resp;
        }
        return next.run(req).await;
    }
    if req.method() == Method::OPTIONS && !preflight {
        return next.run(req).await;
    }
    let mut resp = match cors.layer.layer(next).oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    if preflight {
        *resp.status_mut() = StatusCode::NO_CONTENT;
        // The preflight never reaches the security-headers step further in.
        set_security_headers(resp.headers_mut());
    }
    resp
}

/// Socket.IO is answered by the socketioxide layer around the router, so its requests never reach [`wrap`]'s
/// stack. This puts the same origin list in front of it (configuration.md §8): long-polling gets the CORS
/// treatment of the REST routes (headers for an allowed origin, no error for another), and a WebSocket upgrade
/// with a disallowed `Origin` is refused, because browsers apply no CORS to WebSockets — the server must. Requests
/// without `Origin` (non-browser clients) pass, and every other path passes untouched.
pub fn guard_socket_io(app: Router, state: &AppState) -> Router {
    app.layer(middleware::from_fn_with_state(cors_config(&state.config.cors_origins), socket_io_guard))
}

async fn socket_io_guard(State(cors): State<Cors>, mut req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/socket.io") {
        return next.run(req).await;
    }
    detach_from_read_buffer(&mut req);
    let Some(origin) = req.headers().get(header::ORIGIN) else { return next.run(req).await };
    let upgrade = req.headers().get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if upgrade && !cors.origins.contains(origin) {
        // Engine.IO's own refusal (what socket.io answers when `allowRequest` says no).
        let body = axum::Json(serde_json::json!({ "code": 4, "message": "Forbidden" }));
        return (StatusCode::FORBIDDEN, body).into_response();
    }
    cors_response(cors, req, next).await
}

/// hyper parses header values and the URI as slices of the connection's read buffer, and engineioxide keeps the
/// request's parts (extensions included, where axum put a copy of the URI) for the socket's whole life, so each
/// socket pinned its connection's whole read buffer. Owned copies let the buffer go once the connection is
/// upgraded.
fn detach_from_read_buffer(req: &mut Request) {
    // Only what the Engine.IO handshake, the polling transport and the CORS answer read is kept: a browser's
    // cookies and user agent would otherwise stay in memory as long as its socket.
    const KEPT: &[&str] = &[
        "host",
        "origin",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "content-type",
        "content-length",
        "transfer-encoding",
        "access-control-request-method",
        "access-control-request-headers",
    ];
    let dropped: Vec<HeaderName> = req.headers().keys().filter(|k| !KEPT.contains(&k.as_str())).cloned().collect();
    for name in dropped {
        req.headers_mut().remove(name);
    }
    for value in req.headers_mut().values_mut() {
        if let Ok(mut owned) = HeaderValue::from_bytes(value.as_bytes()) {
            owned.set_sensitive(value.is_sensitive());
            *value = owned;
        }
    }
    if let Ok(uri) = axum::http::Uri::try_from(req.uri().to_string()) {
        *req.uri_mut() = uri;
    }
    // Of the extensions only hyper's upgrade handle is used past this point (engineioxide takes it to upgrade to a
    // websocket); the others (connection info, axum's copy of the URI) would live as long as the socket.
    let upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
    req.extensions_mut().clear();
    if let Some(upgrade) = upgrade {
        req.extensions_mut().insert(upgrade);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Security headers (helmet's defaults, http-api.md §1.13)

const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';\
         img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';\
         style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests",
    ),
    ("strict-transport-security", "max-age=31536000; includeSubDomains"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "SAMEORIGIN"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("origin-agent-cluster", "?1"),
    ("x-dns-prefetch-control", "off"),
    ("x-download-options", "noopen"),
    ("x-permitted-cross-domain-policies", "none"),
    ("x-xss-protection", "0"),
];

/// Adds each header unless the handler set its own (uploaded SVGs carry a stricter, sandboxing CSP).
pub fn set_security_headers(headers: &mut HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        if !headers.contains_key(*name) {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
    }
    headers.remove("x-powered-by");
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    set_security_headers(resp.headers_mut());
    resp
}

// ---------------------------------------------------------------------------------------------------------------
// Request timeout

/// A request still running after `FLUX_REQUEST_TIMEOUT` is cancelled and answered 503 `timeout`. A JSON write
/// is atomic (one journal record), so cancelling leaves it either fully committed or absent.
async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    // Uploads stream up to FLUX_UPLOAD_MAX_FILES × FLUX_UPLOAD_MAX_FILE and are bounded by size instead.
    if req.uri().path() == "/api/files/upload" {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::unavailable("timeout", "Request timed out").into_response(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Rate limits (configuration.md §7, http-api.md §1.12)

/// Every REST request is limited except the exempt ones: everything outside `/api` (health, readiness, metrics,
/// static files, `/uploads/*`, `/socket.io/`), `/api/health`, and CORS preflights (answered before this step).
fn is_limited(req: &Request) -> bool {
    let path = req.uri().path();
    (path == "/api" || path.starts_with("/api/")) && path != "/api/health" && !is_preflight(req)
}

/// The account a per-account limiter counts: the token's user id. A request without a valid token is refused
/// by its handler anyway and only counts in the per-IP limiters.
fn account_key(state: &AppState, headers: &HeaderMap) -> Option<Key> {
    let header = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = bearer_token(Some(header)).ok()?;
    state.jwt.verify(token).ok().map(Key::Account)
}

async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limits: &RateLimits = &state.limits;
    if !limits.any_enabled() || !is_limited(&req) {
        return next.run(req).await;
    }
    let ip = limits.client_ip(peer_ip(&req), req.headers());
    let mut wanted = vec![(LimiterId::Global, Key::Ip(ip))];
    let route = matched_route(&req).to_owned();
    let mut req = req;
    let is_login = *req.method() == Method::POST && route == "/api/auth/login";
    match (req.method().clone(), route.as_str()) {
        (Method::POST, "/api/auth/signup") => wanted.push((LimiterId::Signup, Key::Ip(ip))),
        (Method::POST, "/api/auth/google") => wanted.push((LimiterId::Google, Key::Ip(ip))),
        (Method::POST, "/api/auth/login") => {
            wanted.push((LimiterId::Login, Key::Ip(ip)));
            if limits.is_enabled(LimiterId::LoginAccount) {
                let (email, rebuilt) = match login_email(req, state.config.body_limit).await {
                    Ok(v) => v,
                    Err(resp) => return resp,
                };
                req = rebuilt;
                wanted.extend(email.map(|e| (LimiterId::LoginAccount, Key::Email(e))));
            }
        }
        (Method::POST, "/api/projects") => {
            wanted.extend(account_key(&state, req.headers()).map(|k| (LimiterId::ProjectCreate, k)));
        }
        (Method::PUT, "/api/projects/{id}") => {
            wanted.extend(account_key(&state, req.headers()).map(|k| (LimiterId::ProjectUpdate, k)));
        }
        (Method::POST, "/api/projects/{id}/tasks") => {
            wanted.extend(account_key(&state, req.headers()).map(|k| (LimiterId::TaskCreate, k)));
        }
        _ => {}
    }
    // The failed-login limiter counts the attempt while it runs (so a burst of parallel guesses cannot overtake
    // it) and gives the count back unless the login failed.
    let admission: Admission = match limits.acquire(&wanted, &[LimiterId::LoginAccount]) {
        Ok(a) => a,
        Err(refusal) => {
            metrics::counter!("flux_rate_limited_total", "limiter" => refusal.limiter.name()).increment(1);
            tracing::info!(limiter = refusal.limiter.name(), "rate limited");
            let mut resp = ApiError::rate_limited(refusal.retry_after_secs).into_response();
            set_quota_headers(resp.headers_mut(), &refusal.quota);
            return resp;
        }
    };
    let mut resp = next.run(req).await;
    if is_login && resp.status() != StatusCode::UNAUTHORIZED {
        for r in &admission.reservations {
            limits.release(r);
        }
    }
    if let Some(q) = admission.tightest() {
        set_quota_headers(resp.headers_mut(), &q);
    }
    resp
}

/// Reads the login body (bounded by the body limit) for its `email`, and puts it back for the handler.
async fn login_email(req: Request, limit: usize) -> Result<(Option<String>, Request), Response> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Request body too large").into_response()
    })?;
    let email = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("email").and_then(|e| e.as_str()).map(ratelimit::normalise_email))
        .filter(|e| !e.is_empty());
    Ok((email, Request::from_parts(parts, Body::from(bytes))))
}

fn set_quota_headers(headers: &mut HeaderMap, q: &Quota) {
    headers.insert("ratelimit-limit", HeaderValue::from(q.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(q.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(q.reset_secs));
    let policy = format!("{};w={}", q.limit, q.window_secs);
    headers.insert("ratelimit-policy", HeaderValue::from_str(&policy).expect("digits are a valid header value"));
}

/// Writes pass the store's write gate before their handler picks a store: during a primary flip's barrier they
/// wait here and then run on the new primary (store-modes.md §5). The switch request itself must not wait for the
/// barrier it raises.
pub async fn write_gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) || req.uri().path() == "/api/admin/store" {
        return next.run(req).await;
    }
    let _admitted = state.stores.admit_write().await;
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::routing::get;
    use parking_lot::Mutex;

    use super::*;
    use crate::store::json::{JsonOptions, JsonStore};

    #[test]
    fn socket_requests_keep_their_uri_the_headers_the_handshake_reads_and_only_the_upgrade_extension() {
        let mut req = Request::builder()
            .uri("/socket.io/?EIO=4&transport=websocket")
            .header(header::ORIGIN, "https://app.example")
            .header(header::UPGRADE, "websocket")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("x-custom", &b"caf\xc3\xa9"[..])
            .header(header::COOKIE, "session=secret")
            .header(header::USER_AGENT, "Mozilla/5.0")
            .body(Body::empty())
            .unwrap();
        let original = axum::extract::OriginalUri(req.uri().clone());
        req.extensions_mut().insert(original);
        detach_from_read_buffer(&mut req);
        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(req.uri().query(), Some("EIO=4&transport=websocket"));
        let kept: Vec<&str> = req.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(kept, ["origin", "upgrade", "sec-websocket-key"]);
        assert_eq!(req.headers()["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(req.headers()[header::ORIGIN], "https://app.example");
        assert!(req.extensions().get::<axum::extract::OriginalUri>().is_none(), "nothing but the upgrade handle");
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn boom() -> &'static str {
        panic!("secret detail")
    }

    #[test]
    fn a_panicking_handler_is_a_logged_500_with_the_request_id() {
        let dir = tempfile::TempDir::new().unwrap();
        let data = dir.path().to_str().unwrap();
        let args = ["fluxstudio", "--no-env-file", "--data-dir", data, "serve", "--bcrypt-cost", "4"];
        let (_, cfg) = crate::config::parse_args(args).unwrap();
        let store = Arc::new(JsonStore::open(JsonOptions::new(dir.path())).unwrap());
        let state = crate::app::state_for_tests(cfg, "unit-test-secret-0123456789abcdef0123", store);
        let routes: Router = Router::new().route("/api/boom/{id}", get(boom)).with_state(state.clone());
        let app = wrap(routes, &state);
        crate::telemetry::metrics_handle();

        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber =
            tracing_subscriber::fmt().json().flatten_event(true).with_writer(move || sink.clone()).finish();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let resp = tracing::subscriber::with_default(subscriber, || {
            rt.block_on(async {
                let req = Request::get("/api/boom/42").header("x-request-id", "boom-1").body(Body::empty()).unwrap();
                app.oneshot(req).await.unwrap()
            })
        });
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()["x-request-id"], "boom-1");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        let body = rt.block_on(axum::body::to_bytes(resp.into_body(), 1 << 16)).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, serde_json::json!({"message": "Internal server error", "code": "internal"}));

        let logs = String::from_utf8(captured.0.lock().clone()).unwrap();
        let lines: Vec<serde_json::Value> = logs.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let panicked = lines.iter().find(|l| l["message"] == "handler panicked").expect("panic logged");
        assert_eq!(panicked["level"], "ERROR");
        assert_eq!(panicked["span"]["request_id"], "boom-1");
        let failed = lines.iter().find(|l| l["message"] == "request failed").expect("500 logged");
        assert_eq!(failed["status"], 500);
        assert_eq!(failed["span"]["request_id"], "boom-1");
        assert_eq!(failed["span"]["route"], "/api/boom/{id}");
        assert!(!logs.contains("secret detail"), "the panic message stays out of the logs");

        let metrics = crate::telemetry::render_metrics();
        assert!(
            metrics.contains(r#"http_requests_total{method="GET",route="/api/boom/{id}",status="500"}"#),
            "panics are counted as 500s: {metrics}"
        );
    }

    #[test]
    fn request_ids_must_be_short_and_printable() {
        assert!(valid_request_id(b"a"));
        assert!(valid_request_id(&[b'x'; 128]));
        assert!(!valid_request_id(&[b'x'; 129]));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id(b"tab\there"));
        assert!(!valid_request_id("caf\u{e9}".as_bytes()));
    }
}
