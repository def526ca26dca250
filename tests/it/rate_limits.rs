//! Rate limits (http-api.md §1.12, configuration.md §7, legacy-defects.md #1 and #30). The test client is on
//! 127.0.0.1, a trusted proxy by default (`FLUX_TRUST_PROXY=loopback`), so `X-Forwarded-For` plays the clients.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{Resp, TestApp};

async fn send(app: &TestApp, method: Method, path: &str, ip: &str, token: Option<&str>, body: Option<Value>) -> Resp {
    let mut req = app.client.request(method, format!("{}{path}", app.base)).header("x-forwarded-for", ip);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Resp { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

async fn login(app: &TestApp, ip: &str, email: &str, password: &str) -> Resp {
    send(app, Method::POST, "/api/auth/login", ip, None, Some(json!({"email": email, "password": password}))).await
}

fn header<'a>(r: &'a Resp, name: &str) -> &'a str {
    r.headers.get(name).unwrap_or_else(|| panic!("no {name} header: {:?}", r.headers)).to_str().unwrap()
}

fn assert_refused(r: &Resp) {
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body, json!({"message": "Too many requests, please try again later", "code": "rate_limited"}));
    assert!(header(r, "retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(header(r, "ratelimit-remaining"), "0");
}

#[tokio::test]
async fn a_login_storm_is_refused_while_other_clients_keep_working() {
    let app = TestApp::spawn_flags(&["--rate-limit", "on", "--rate-login", "5/15m"]).await;
    let (victim_token, _) = app.signup("storm-target@example.com").await;
    let (other_token, _) = app.signup("bystander@example.com").await;
    let attacker = "198.51.100.66";
    let mut statuses = Vec::new();
    for i in 0..12 {
        let r = login(&app, attacker, "storm-target@example.com", &format!("guess-{i}")).await;
        statuses.push(r.status.as_u16());
        if r.status == 429 {
            assert_refused(&r);
            let retry: u64 = header(&r, "retry-after").parse().unwrap();
            assert!((800..=910).contains(&retry), "the oldest attempt leaves the 15-minute window: {retry}");
            assert_eq!(header(&r, "ratelimit-limit"), "5");
            assert_eq!(header(&r, "ratelimit-policy"), "5;w=900");
        } else {
            assert_eq!(header(&r, "ratelimit-limit"), "5", "the tightest limiter is reported");
            assert_eq!(header(&r, "ratelimit-remaining"), (4 - i).to_string());
        }
        // Meanwhile another account, from another address, reads as usual.
        let read = send(&app, Method::GET, "/api/projects", "198.51.100.7", Some(&other_token), None).await;
        assert_eq!(read.status, 200);
        assert_eq!(header(&read, "ratelimit-limit"), "1000");
        assert_eq!(header(&read, "ratelimit-policy"), "1000;w=900");
        // And so does the victim's own session from the attacker's address: only logins are limited there.
        let read = send(&app, Method::GET, "/api/auth/me", attacker, Some(&victim_token), None).await;
        assert_eq!(read.status, 200);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);
    // A different address may still log in (the e-mail has 5 failures, under its limit of 10).
    let r = login(&app, "198.51.100.8", "storm-target@example.com", "password-123").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn each_limiter_counts_on_its_own() {
    let app = TestApp::spawn_flags(&[
        "--rate-limit",
        "on",
        "--rate-global",
        "100/15m",
        "--rate-login",
        "3/15m",
        "--rate-task-create",
        "3/1h",
    ])
    .await;
    let ip = "203.0.113.10";
    let (token, _) = app.signup("counter@example.com").await; // from 127.0.0.1, not from `ip`
    let pid = app.create_project(&token, "Budget").await;
    let mut admitted = 0;
    for _ in 0..3 {
        assert_eq!(login(&app, ip, "counter@example.com", "wrong").await.status, 401);
        admitted += 1;
    }
    for _ in 0..4 {
        assert_refused(&login(&app, ip, "counter@example.com", "wrong").await);
    }
    // Failed logins did not eat the task-create budget, and refused logins did not count in the global limiter.
    for i in 0..3 {
        let r = send(
            &app,
            Method::POST,
            &format!("/api/projects/{pid}/tasks"),
            ip,
            Some(&token),
            Some(json!({"title": format!("t{i}")})),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(header(&r, "ratelimit-limit"), "3");
        admitted += 1;
    }
    let r =
        send(&app, Method::POST, &format!("/api/projects/{pid}/tasks"), ip, Some(&token), Some(json!({"title": "t4"})))
            .await;
    assert_refused(&r);
    assert_eq!(header(&r, "ratelimit-policy"), "3;w=3600");
    // The task-create limiter is per account: the same account is refused from any address...
    let r = send(
        &app,
        Method::POST,
        &format!("/api/projects/{pid}/tasks"),
        "203.0.113.99",
        Some(&token),
        Some(json!({"title": "t5"})),
    )
    .await;
    assert_refused(&r);
    // ...while reads from `ip` still pass.
    let r = send(&app, Method::GET, &format!("/api/projects/{pid}/tasks"), ip, Some(&token), None).await;
    assert_eq!(r.status, 200);
    admitted += 1;
    assert_eq!(header(&r, "ratelimit-limit"), "100");
    assert_eq!(header(&r, "ratelimit-remaining"), (100 - admitted).to_string(), "refused requests cost nothing");

    // Health, readiness, metrics and uploads are never limited and carry no RateLimit headers.
    for path in ["/health", "/api/health", "/health/ready", "/uploads/none.png"] {
        for _ in 0..110 {
            let r = send(&app, Method::GET, path, ip, None, None).await;
            assert_ne!(r.status, 429, "{path}");
            assert!(r.headers.get("ratelimit-limit").is_none(), "{path}");
        }
    }
    let r = send(&app, Method::GET, &format!("/api/projects/{pid}/tasks"), ip, Some(&token), None).await;
    assert_eq!(header(&r, "ratelimit-remaining"), (100 - admitted - 1).to_string());
    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"flux_rate_limited_total{limiter="task_create"}"#), "{metrics}");
}

#[tokio::test]
async fn failed_logins_per_email_are_limited_across_addresses() {
    let app = TestApp::spawn_flags(&["--rate-limit", "on", "--rate-login-account", "3/15m"]).await;
    app.signup("target@example.com").await;
    app.signup("friend@example.com").await;
    for (i, email) in ["target@example.com", "  TARGET@example.com ", "Target@Example.com"].iter().enumerate() {
        let r = login(&app, &format!("192.0.2.{}", i + 1), email, "wrong-password").await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    // Any address, even with the right password: the account is locked for the window.
    let r = login(&app, "192.0.2.50", "target@example.com", "password-123").await;
    assert_refused(&r);
    assert_eq!(header(&r, "ratelimit-policy"), "3;w=900");
    // Other e-mails from that address are fine, and unknown e-mails count like known ones.
    assert_eq!(login(&app, "192.0.2.50", "friend@example.com", "wrong").await.status, 401);
    for _ in 0..3 {
        assert_eq!(login(&app, "192.0.2.60", "nobody@example.com", "x").await.status, 401);
    }
    assert_refused(&login(&app, "192.0.2.61", "nobody@example.com", "x").await);
    // Successful logins are not failures: they never use up the budget.
    for i in 0..6 {
        let r = login(&app, &format!("192.0.2.{}", 100 + i), "friend@example.com", "password-123").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

#[tokio::test]
async fn limiters_can_be_switched_off_one_by_one() {
    let app = TestApp::spawn_flags(&["--rate-limit", "on", "--rate-login", "off", "--rate-login-account", "off"]).await;
    app.signup("free@example.com").await;
    for _ in 0..15 {
        let r = login(&app, "192.0.2.9", "free@example.com", "wrong").await;
        assert_eq!(r.status, 401);
        assert_eq!(header(&r, "ratelimit-limit"), "1000", "only the global limiter applies");
    }
    // The suite's default configuration has no limits at all, and no headers.
    let app = TestApp::spawn().await;
    let r = app.call(Method::GET, "/api/health", None, None).await;
    assert!(r.headers.get("ratelimit-limit").is_none());
    let r = app.call(Method::GET, "/api/projects", None, None).await;
    assert!(r.headers.get("ratelimit-limit").is_none());
}

#[tokio::test]
async fn sign_up_and_google_have_per_address_limits() {
    let app = TestApp::spawn_flags(&["--rate-limit", "on", "--rate-signup", "2/15m", "--rate-google", "2/15m"]).await;
    for i in 0..2 {
        let body = json!({"email": format!("s{i}@example.com"), "password": "password-123", "name": "S"});
        assert_eq!(send(&app, Method::POST, "/api/auth/signup", "192.0.2.30", None, Some(body)).await.status, 200);
    }
    let body = json!({"email": "s9@example.com", "password": "password-123", "name": "S"});
    assert_refused(&send(&app, Method::POST, "/api/auth/signup", "192.0.2.30", None, Some(body.clone())).await);
    assert_eq!(send(&app, Method::POST, "/api/auth/signup", "192.0.2.31", None, Some(body)).await.status, 200);
    for _ in 0..2 {
        let r =
            send(&app, Method::POST, "/api/auth/google", "192.0.2.30", None, Some(json!({"credential": "x"}))).await;
        assert_eq!(r.status, 503, "google is not configured: {}", r.body);
    }
    assert_refused(
        &send(&app, Method::POST, "/api/auth/google", "192.0.2.30", None, Some(json!({"credential": "x"}))).await,
    );
}

/// The per-socket event budget (`--rate-socket-events`): past it events are dropped with one `rate_limited` error
/// per window, and the budget is the socket's own (a second socket of the same user still joins).
#[tokio::test]
async fn a_socket_past_its_event_budget_gets_one_rate_limited_error_and_others_are_unaffected() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    // Login and signup limits stay off the path: only the socket budget is small.
    let app = TestApp::spawn_flags(&["--rate-limit", "on", "--rate-socket-events", "3/60s"]).await;
    let (token, _) = app.signup("budget@example.com").await;
    let project = app.create_project(&token, "Budget").await;
    let url = format!("{}/socket.io/?EIO=4&transport=websocket", app.base.replacen("http", "ws", 1));

    // Opens a socket and connects it to the default namespace with the token.
    let open = || async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        loop {
            let Some(Ok(Message::Text(t))) = ws.next().await else { panic!("socket closed during the handshake") };
            if t.starts_with('0') {
                ws.send(Message::text(format!("40{}", json!({ "token": token })))).await.unwrap();
            } else if t.starts_with("40") {
                return ws;
            }
        }
    };
    // Every Socket.IO EVENT packet (`42…`) received until `until` appears or 2 s pass.
    async fn events(
        ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
        until: &str,
    ) -> Vec<String> {
        let mut seen = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            while let Some(Ok(Message::Text(t))) = ws.next().await {
                if t.starts_with("42") || t.starts_with("43") {
                    seen.push(t.as_str().to_owned());
                    if t.contains(until) {
                        break;
                    }
                }
            }
        })
        .await;
        seen
    }

    let mut a = open().await;
    // Three unknown events use the budget up; the fourth and fifth are dropped, with one error between them.
    for i in 0..5 {
        a.send(Message::text(format!("42{}", json!(["no:such:event", { "i": i }])))).await.unwrap();
    }
    a.send(Message::text(format!("421{}", json!(["join:project", { "projectId": project }])))).await.unwrap();
    let seen = events(&mut a, "\"success\"").await;
    let limited: Vec<_> = seen.iter().filter(|t| t.contains("rate_limited")).collect();
    assert_eq!(limited.len(), 1, "{seen:?}");
    assert!(limited[0].contains("\"event\":\"no:such:event\""), "{seen:?}");
    assert!(!seen.iter().any(|t| t.contains("\"success\"")), "the join past the budget was handled: {seen:?}");

    let mut b = open().await;
    b.send(Message::text(format!("421{}", json!(["join:project", { "projectId": project }])))).await.unwrap();
    let seen = events(&mut b, "\"success\"").await;
    assert!(seen.iter().any(|t| t.starts_with("431") && t.contains("\"success\":true")), "{seen:?}");
}
