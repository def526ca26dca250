//! Headers every response carries: security headers, the request id, CORS (http-api.md §1.13, configuration.md §8).

use reqwest::header::HeaderMap;
use reqwest::Method;

use crate::support::TestApp;

fn assert_security_headers(h: &HeaderMap, what: &str) {
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["x-frame-options"], "SAMEORIGIN", "{what}");
    assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    assert!(h["strict-transport-security"].to_str().unwrap().starts_with("max-age="), "{what}");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("object-src 'none'"), "{what}: {csp}");
    assert!(h.get("x-powered-by").is_none(), "{what}");
}

#[tokio::test]
async fn security_headers_are_on_every_response() {
    let app = TestApp::spawn().await;
    let (token, _) = app.signup("headers@example.com").await;
    for (method, path, tok, status) in [
        (Method::GET, "/health", None, 200),
        (Method::GET, "/health/ready", None, 200),
        (Method::GET, "/api/projects", Some(token.as_str()), 200),
        (Method::GET, "/api/projects", None, 401),
        (Method::GET, "/api/nope", None, 404),
        (Method::GET, "/not-a-page", None, 404),
        (Method::DELETE, "/api/projects/x", Some(token.as_str()), 404),
    ] {
        let r = app.call(method.clone(), path, tok, None).await;
        assert_eq!(r.status, status, "{method} {path}");
        assert_security_headers(&r.headers, &format!("{method} {path}"));
    }
    let r = app.raw(Method::POST, "/api/projects", Some(&token), Some("application/json"), "{not json").await;
    assert_eq!(r.status, 400);
    assert_security_headers(&r.headers, "invalid json");
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = TestApp::spawn().await;
    let send = |id: Option<&'static str>, path: &'static str| {
        let mut req = app.client.get(format!("{}{path}", app.base));
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        req.send()
    };
    let r = send(Some("lb-7f3a-0001"), "/api/health").await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "lb-7f3a-0001");
    let r = send(Some("trace id with spaces/and:punctuation"), "/api/projects").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "trace id with spaces/and:punctuation", "errors echo it too");

    let r = send(None, "/api/nope").await.unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let other = send(None, "/health").await.unwrap().headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(generated, other, "one id per request");

    let long: &'static str = Box::leak("x".repeat(129).into_boxed_str());
    let r = send(Some(long), "/health").await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "an over-long id is replaced: {id}");
    let max: &'static str = Box::leak("y".repeat(128).into_boxed_str());
    assert_eq!(send(Some(max), "/health").await.unwrap().headers()["x-request-id"], max);
    let r = send(Some("tab\there"), "/health").await.unwrap();
    assert!(uuid::Uuid::parse_str(r.headers()["x-request-id"].to_str().unwrap()).is_ok(), "control characters");
}

const ORIGINS: &str = "https://app.example, http://localhost:3000";

#[tokio::test]
async fn cors_answers_listed_origins_only() {
    let app = TestApp::spawn_flags(&["--cors-origins", ORIGINS]).await;
    let (token, _) = app.signup("cors@example.com").await;
    let r = app
        .client
        .get(format!("{}/api/projects", app.base))
        .bearer_auth(&token)
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let exposed = h["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    for e in
        ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy", "retry-after", "x-request-id"]
    {
        assert!(exposed.contains(e), "{e} not exposed: {exposed}");
    }

    for origin in ["https://evil.example", "https://app.example:8443", "http://app.example", "null"] {
        let r = app
            .client
            .get(format!("{}/api/projects", app.base))
            .bearer_auth(&token)
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "a disallowed origin is not an error");
        assert!(!r.headers().keys().any(|k| k.as_str().starts_with("access-control-")), "{origin}: {:?}", r.headers());
    }
    // No Origin at all (curl, server to server): unaffected.
    let r = app.get("/api/projects", &token).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn cors_preflights_get_204_with_the_contract_lists() {
    let app = TestApp::spawn_flags(&["--cors-origins", ORIGINS]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, format!("{}/api/projects/abc", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "authorization,content-type,x-request-id")
            .send()
    };
    let r = preflight("http://localhost:3000").await.unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "http://localhost:3000");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "600");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    for m in ["GET", "POST", "PUT", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = h["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    for a in ["authorization", "content-type", "x-csrf-token", "x-requested-with", "x-request-id"] {
        assert!(allowed.contains(a), "{allowed}");
    }
    assert!(h.get("ratelimit-limit").is_none(), "preflights are not rate limited");
    assert!(h.contains_key("x-request-id"));
    assert_eq!(h["x-content-type-options"], "nosniff");

    let r = preflight("https://evil.example").await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(!r.headers().keys().any(|k| k.as_str().starts_with("access-control-")), "{:?}", r.headers());

    // An OPTIONS that is not a preflight is an ordinary request on a path without that method.
    let r = app.call(Method::OPTIONS, "/api/projects", None, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["code"], "route_not_found");
}

/// Socket.IO's long-polling is answered outside the REST stack; it still gets the REST routes' CORS treatment.
#[tokio::test]
async fn socket_io_long_polling_carries_cors_headers_for_listed_origins_only() {
    let app = TestApp::spawn_flags(&["--cors-origins", ORIGINS]).await;
    let open = |origin: Option<&'static str>| {
        let mut req = app.client.get(format!("{}/socket.io/?EIO=4&transport=polling", app.base));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    let r = open(Some("https://app.example")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example");
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert!(r.text().await.unwrap().starts_with("0{\"sid\""), "an Engine.IO open packet");

    for origin in [Some("https://evil.example"), None] {
        let r = open(origin).await.unwrap();
        assert_eq!(r.status(), 200, "{origin:?}: not an error status (the browser enforces the missing header)");
        assert!(
            !r.headers().keys().any(|k| k.as_str().starts_with("access-control-")),
            "{origin:?}: {:?}",
            r.headers()
        );
    }

    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, format!("{}/socket.io/?EIO=4&transport=polling&sid=x", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let r = preflight("http://localhost:3000").await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "http://localhost:3000");
    let r = preflight("https://evil.example").await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(!r.headers().keys().any(|k| k.as_str().starts_with("access-control-")), "{:?}", r.headers());
}

/// Browsers apply no CORS to WebSockets, so the upgrade itself checks `Origin` (configuration.md §8).
#[tokio::test]
async fn socket_io_websocket_upgrades_from_unlisted_origins_are_refused() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

    let app = TestApp::spawn_flags(&["--cors-origins", ORIGINS]).await;
    let url = format!("{}/socket.io/?EIO=4&transport=websocket", app.base.replacen("http", "ws", 1));
    let connect = |origin: Option<&'static str>| {
        let mut req = url.as_str().into_client_request().unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        tokio_tungstenite::connect_async(req)
    };
    for origin in ["https://evil.example", "https://app.example:8443", "null"] {
        match connect(Some(origin)).await {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403, "{origin}"),
            Err(e) => panic!("{origin}: refused with {e}, expected 403"),
            Ok(_) => panic!("{origin}: the upgrade was accepted"),
        }
    }
    for origin in [Some("https://app.example"), Some("http://localhost:3000"), None] {
        let (mut ws, _) = connect(origin).await.unwrap_or_else(|e| panic!("{origin:?}: {e}"));
        let first = ws.next().await.unwrap().unwrap();
        assert!(first.to_text().unwrap().starts_with("0{\"sid\""), "{origin:?}: {first:?}");
    }
}
