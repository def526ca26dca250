//! Operational endpoints: `/health/ready` and `/metrics` (http-api.md §14).

use reqwest::Method;

use crate::support::TestApp;

#[tokio::test]
async fn ready_reports_the_json_store() {
    let app = TestApp::spawn().await;
    let r = app.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "ready");
    assert_eq!(r.body["mode"], "json");
    assert_eq!(r.body["checks"]["json"]["ok"], true);
    assert!(r.body["checks"]["json"]["latencyMs"].as_f64().unwrap() >= 0.0);
    assert_eq!(r.body["outbox"], serde_json::json!({"depth": 0, "oldestPendingAgeSeconds": null}));
    assert!(r.body.get("code").is_none());
}

/// The probe writes into the journal directory; replacing that directory with a file makes the write fail even
/// for root (which ignores permission bits).
#[tokio::test]
async fn ready_is_503_when_the_journal_dir_is_not_writable_and_recovers() {
    let mut app = TestApp::spawn().await;
    let journal = app.data_dir().join("journal");
    let moved = app.data_dir().join("journal.moved");
    std::fs::rename(&journal, &moved).unwrap();
    std::fs::write(&journal, b"not a directory").unwrap();

    let r = app.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["status"], "not_ready");
    assert_eq!(r.body["message"], "Store not ready");
    assert_eq!(r.body["code"], "not_ready");
    assert_eq!(r.body["checks"]["json"]["ok"], false);
    let text = r.body.to_string();
    assert!(!text.contains(app.data_dir().to_str().unwrap()), "no server paths in the body: {text}");
    // Liveness never touches the store.
    assert_eq!(app.call(Method::GET, "/health", None, None).await.status, 200);

    std::fs::remove_file(&journal).unwrap();
    std::fs::rename(&moved, &journal).unwrap();
    let r = app.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.stop().await;
}

#[tokio::test]
async fn ready_is_503_once_shutdown_begins() {
    let app = TestApp::spawn().await;
    app.server.as_ref().unwrap().state.begin_drain();
    let r = app.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["status"], "not_ready");
    assert_eq!(r.body["code"], "not_ready");
    assert_eq!(r.body["checks"]["json"]["ok"], true, "the store itself is fine");
    assert_eq!(app.call(Method::GET, "/health", None, None).await.status, 200);
}

async fn get_text(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

#[tokio::test]
async fn metrics_on_loopback_label_route_templates_not_raw_ids() {
    let app = TestApp::spawn_flags(&["--rate-limit", "on"]).await;
    let (token, _) = app.signup("metrics@example.com").await;
    let pid = app.create_project(&token, "Measured").await;
    let task = app.create_task(&token, &pid, "counted").await;
    let tid = task.body["task"]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get(&format!("/api/projects/{pid}"), &token).await.status, 200);
    assert_eq!(app.get(&format!("/api/projects/{pid}/tasks/{tid}"), &token).await.status, 200);
    assert_eq!(app.get("/api/projects/does-not-exist", &token).await.status, 404);
    app.call(Method::GET, "/api/no/such/route/with-id-5f9c", None, None).await;
    app.login("metrics@example.com", "wrong-password").await;

    let (status, ct, text) = get_text(&app.client, &format!("{}/metrics", app.base), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    for needle in [
        r#"http_requests_total{method="GET",route="/api/projects/{id}",status="200"}"#,
        r#"http_requests_total{method="GET",route="/api/projects/{id}",status="404"}"#,
        r#"http_requests_total{method="POST",route="/api/projects/{id}/tasks",status="200"}"#,
        r#"http_requests_total{method="GET",route="/api/projects/{id}/tasks/{task_id}",status="200"}"#,
        r#"http_requests_total{method="GET",route="unmatched",status="404"}"#,
        r#"http_request_duration_seconds_bucket{method="GET",route="/api/projects/{id}",le="0.1"}"#,
        r#"flux_store_mode{mode="json"} 1"#,
        r#"flux_store_mode{mode="postgres"} 0"#,
        r#"flux_store_operation_duration_seconds_count{backend="json",op="write"}"#,
        r#"flux_rate_limited_total{limiter="login"}"#,
        r#"flux_login_failures_total{method="password",reason="invalid_credentials"}"#,
        "flux_socket_connections 0",
        "flux_outbox_depth 0",
        "# TYPE http_request_duration_seconds histogram",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    for raw in [pid.as_str(), tid.as_str(), "does-not-exist", "with-id-5f9c", "metrics@example.com"] {
        assert!(!text.contains(raw), "raw value {raw} in the metrics");
    }
}

#[tokio::test]
async fn metrics_are_404_for_forwarded_requests() {
    let app = TestApp::spawn().await;
    let url = format!("{}/metrics", app.base);
    for h in [("x-forwarded-for", "203.0.113.7"), ("forwarded", "for=203.0.113.7")] {
        let (status, _, text) = get_text(&app.client, &url, &[h]).await;
        assert_eq!(status, 404, "{h:?}");
        assert!(!text.contains("http_requests_total"));
    }
}

#[tokio::test]
async fn metrics_move_to_their_own_listener_when_configured() {
    let app = TestApp::spawn_flags(&["--metrics-addr", "127.0.0.1:0"]).await;
    let metrics_addr = app.server.as_ref().unwrap().metrics_addr.expect("metrics listener bound");
    assert_ne!(metrics_addr.port(), app.server.as_ref().unwrap().addr.port());
    app.call(Method::GET, "/api/health", None, None).await;

    let (status, _, _) = get_text(&app.client, &format!("{}/metrics", app.base), &[]).await;
    assert_eq!(status, 404, "not on the main port");
    let (status, ct, text) = get_text(&app.client, &format!("http://{metrics_addr}/metrics"), &[]).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/plain; version=0.0.4"));
    assert!(text.contains(r#"route="/api/health""#), "{text}");
    // Whoever reaches this listener may scrape it, proxy or not.
    let (status, _, _) =
        get_text(&app.client, &format!("http://{metrics_addr}/metrics"), &[("x-forwarded-for", "203.0.113.7")]).await;
    assert_eq!(status, 200);
    let (status, _, _) = get_text(&app.client, &format!("http://{metrics_addr}/api/health"), &[]).await;
    assert_eq!(status, 404, "only /metrics there");
}
