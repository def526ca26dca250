//! dual-json (store-modes.md §1–2, §5): JSON stays the primary, every acknowledged write reaches PostgreSQL
//! through the outbox (also across a PostgreSQL outage and a kill -9), and the live switch json ⇄ dual-json
//! refuses what would lose data. PostgreSQL's copy is checked by a second server in postgres mode on the same
//! database: both must answer the same reads with the same bytes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::postgres_outage::{through, ChaosProxy};
use crate::support::{fresh_database, spawn_child, test_config, token_for, TestApp, SECRET};

const ADMIN_ID: &str = "aaaaaaaa-0000-4000-8000-0000000000ad";
const ADMIN_EMAIL: &str = "ops@example.org";

/// A data dir whose only account is an admin (the admin API checks the stored user type).
pub(super) fn admin_data_dir() -> Arc<tempfile::TempDir> {
    let dir = Arc::new(tempfile::TempDir::new().unwrap());
    let users = json!({"users": [{
        "id": ADMIN_ID, "email": ADMIN_EMAIL, "name": "Ops", "userType": "admin",
        "createdAt": "2026-01-01T00:00:00.000Z"
    }]});
    std::fs::write(dir.path().join("users.json"), serde_json::to_vec_pretty(&users).unwrap()).unwrap();
    dir
}

pub(super) fn admin_token() -> String {
    token_for(ADMIN_ID, ADMIN_EMAIL)
}

/// A fresh database with the current schema (the live switch requires one: `fluxstudio db migrate`).
pub(super) async fn migrated_database() -> String {
    let url = fresh_database();
    let dir = tempfile::TempDir::new().unwrap();
    let cfg = test_config(dir.path(), &["--store", "postgres", "--database-url", &url]);
    let pg = fluxstudio::app::open_postgres(&cfg).await.expect("schema migrated");
    pg.close().await;
    url
}

/// A migrated database, a chaos proxy in front of it, and the database's URL through the proxy.
async fn proxied_database() -> (String, ChaosProxy, String) {
    let url = migrated_database().await;
    let (upstream, _) = through(&url, "127.0.0.1:1".parse().unwrap());
    let proxy = ChaosProxy::start(upstream).await;
    let (_, proxied) = through(&url, proxy.addr);
    (url, proxy, proxied)
}

/// A dual-json server over `dir` whose PostgreSQL goes through `proxied`, failing fast when it is cut.
async fn start_dual_json_through(dir: Arc<tempfile::TempDir>, proxied: &str) -> TestApp {
    start(dir, &["--store", "dual-json", "--database-url", proxied, "--db-acquire-timeout", "1s"]).await
}

pub(super) async fn start(dir: Arc<tempfile::TempDir>, flags: &[&str]) -> TestApp {
    let cfg = test_config(dir.path(), flags);
    let server = fluxstudio::app::start(fluxstudio::app::ServerOptions::new(cfg, SECRET.into())).await.unwrap();
    TestApp {
        base: format!("http://{}", server.addr),
        client: reqwest::Client::new(),
        server: Some(server),
        dir,
        owned_db: None,
    }
}

pub(super) async fn status(app: &TestApp) -> Value {
    let r = app.get("/api/admin/store", &admin_token()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

pub(super) async fn wait_for_empty_outbox(app: &TestApp) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(app).await;
        if s["outbox"]["depth"] == 0 {
            return s;
        }
        assert!(Instant::now() < deadline, "the outbox did not drain: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn switch(app: &TestApp, body: Value) -> crate::support::Resp {
    app.put("/api/admin/store", &admin_token(), body).await
}

/// The reads a client makes of one project, as (path, body) pairs.
async fn project_reads(app: &TestApp, token: &str, pid: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for path in [
        format!("/api/projects/{pid}"),
        format!("/api/projects/{pid}/tasks"),
        format!("/api/projects/{pid}/members"),
        format!("/api/projects/{pid}/activities"),
        "/api/projects".to_owned(),
        "/api/teams".to_owned(),
        "/api/auth/me".to_owned(),
    ] {
        let r = app.get(&path, token).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        out.push((path, r.body));
    }
    out
}

/// A postgres-mode server on `url` (its own data dir; postgres mode takes no lock).
pub(super) async fn postgres_reader(url: &str) -> TestApp {
    start(Arc::new(tempfile::TempDir::new().unwrap()), &["--store", "postgres", "--database-url", url]).await
}

/// Writes of every kind a project sees: create, update, delete, members, milestones, teams.
async fn write_workload(app: &TestApp, token: &str, tag: &str) -> String {
    let pid = app.create_project(token, &format!("Dual {tag}")).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = app.create_task(token, &pid, &format!("{tag} task {i}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        ids.push(r.body["task"]["id"].as_str().unwrap().to_owned());
    }
    let r = app.put(&format!("/api/projects/{pid}/tasks/{}", ids[1]), token, json!({"status": "review"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app.delete(&format!("/api/projects/{pid}/tasks/{}", ids[2]), token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app.post(&format!("/api/projects/{pid}/milestones"), token, json!({"title": format!("{tag} beta")})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app.put(&format!("/api/projects/{pid}"), token, json!({"description": "moved by the outbox"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app.post("/api/teams", token, json!({"name": format!("{tag} team")})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_switch_to_dual_json_replays_every_write_into_postgres_and_back_to_json_stops() {
    let url = migrated_database().await;
    let app = start(admin_data_dir(), &["--database-url", &url]).await;

    let s = status(&app).await;
    assert_eq!((s["mode"].as_str(), s["primary"].as_str()), (Some("json"), Some("json")), "{s}");
    assert!(s["secondary"].is_null() && s["secondaryReachable"].is_null(), "{s}");

    // Only admins (by stored user type), one step at a time, valid bodies only.
    let (user_token, _) = app.signup("dual.writer@example.com").await;
    let r = app.put("/api/admin/store", &user_token, json!({"mode": "dual-json"})).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (403, Some("admin_required")), "{}", r.body);
    let r = switch(&app, json!({"mode": "postgres"})).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (409, Some("switch_refused")), "{}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("allowed next modes: dual-json"), "{}", r.body);
    let r = switch(&app, json!({"mode": "mongo"})).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (400, Some("validation_failed")), "{}", r.body);
    let r = switch(&app, json!({"mode": "dual-json", "timeoutSeconds": 0})).await;
    assert_eq!(r.status, 400, "{}", r.body);

    let r = switch(&app, json!({"mode": "dual-json"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["previousMode"].as_str(), r.body["mode"].as_str()), (Some("json"), Some("dual-json")));
    assert_eq!(r.body["changed"], true);
    let epoch = r.body["epoch"].as_u64().unwrap();
    let r = switch(&app, json!({"mode": "dual-json"})).await;
    assert_eq!((r.status.as_u16(), &r.body["changed"]), (200, &json!(false)), "same mode: nothing done");

    // Writes from now on reach PostgreSQL. The writer signs up after the switch, so PostgreSQL has the account too.
    let (token, _) = app.signup("dual.author@example.com").await;
    let pid = write_workload(&app, &token, "live").await;
    let s = wait_for_empty_outbox(&app).await;
    assert_eq!((s["mode"].as_str(), s["secondary"].as_str()), (Some("dual-json"), Some("postgres")), "{s}");
    assert_eq!(s["instances"][0]["mode"], "dual-json", "{s}");
    assert_eq!(s["secondaryReachable"], true, "{s}");
    assert!(s["outbox"]["lastReplayAt"].is_string(), "{s}");
    let ready = app.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!((ready.status.as_u16(), ready.body["status"].as_str()), (200, Some("ready")), "{}", ready.body);
    assert!(ready.body["checks"]["postgres"]["ok"] == true, "{}", ready.body);

    let reader = postgres_reader(&url).await;
    let from_json = project_reads(&app, &token, &pid).await;
    let from_pg = project_reads(&reader, &token, &pid).await;
    for ((path, a), (_, b)) in from_json.iter().zip(&from_pg) {
        assert_eq!(a, b, "{path}: PostgreSQL's copy differs from the JSON primary");
    }

    // Back to json: the outbox is empty, so no force is needed; later writes stay in JSON.
    let r = switch(&app, json!({"mode": "json"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["epoch"].as_u64().unwrap() > epoch);
    let r = app.create_task(&token, &pid, "json only").await;
    assert_eq!(r.status, 200);
    let tid = r.body["task"]["id"].as_str().unwrap().to_owned();
    assert_eq!(status(&app).await["outbox"]["depth"], 0, "json mode records no outbox entries");
    let r = reader.get(&format!("/api/projects/{pid}/tasks/{tid}"), &token).await;
    assert_eq!(r.status, 404, "a json-mode write must not reach PostgreSQL: {}", r.body);

    // The mode survives a restart (the persisted mode wins over the configured one).
    let state: Value =
        serde_json::from_slice(&std::fs::read(app.data_dir().join(".store-state.json")).unwrap()).unwrap();
    assert_eq!(state["mode"], "json");
    drop(reader);
    let dir = app.dir.clone();
    let mut app = app;
    app.stop().await;
    let app = start(dir.clone(), &["--database-url", &url, "--store", "dual-json"]).await;
    assert_eq!(status(&app).await["mode"], "json", "persisted json wins over the configured dual-json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_json_acknowledges_writes_while_postgres_is_down_and_catches_up_after() {
    let (url, proxy, proxied) = proxied_database().await;
    let app = start_dual_json_through(admin_data_dir(), &proxied).await;
    let (token, _) = app.signup("outage.writer@example.com").await;
    let pid = app.create_project(&token, "Through the outage").await;
    wait_for_empty_outbox(&app).await;

    proxy.cut();
    for i in 0..10 {
        let r = app.create_task(&token, &pid, &format!("during outage {i}")).await;
        assert_eq!(r.status, 200, "JSON is the primary: PostgreSQL being down must not fail writes: {}", r.body);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = status(&app).await;
        if s["outbox"]["lastReplayError"].is_object() {
            break s;
        }
        assert!(Instant::now() < deadline, "no replay error reported while PostgreSQL is down: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(s["outbox"]["depth"].as_u64().unwrap() >= 10, "{s}");
    assert_eq!(s["secondaryReachable"], false, "{s}");
    let ready = app.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!((ready.status.as_u16(), ready.body["status"].as_str()), (200, Some("degraded")), "{}", ready.body);
    // validate (reading the files while the server runs) counts the writes waiting in the outbox as pending,
    // not as missing in PostgreSQL.
    let (_, out, err) = cli(app.data_dir(), &["--database-url", &url, "validate", "--json"], &[]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    assert!(report["entities"]["tasks"]["pending"].as_u64().unwrap() >= 10, "{report}");
    assert_eq!(report["entities"]["tasks"]["missingInPostgres"], json!([]), "{report}");
    // Leaving dual-json now would lose the pending entries: refused unless forced.
    let r = switch(&app, json!({"mode": "json", "timeoutSeconds": 1})).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (409, Some("outbox_not_drained")), "{}", r.body);
    assert_eq!(status(&app).await["mode"], "dual-json");

    proxy.restore();
    wait_for_empty_outbox(&app).await;
    let reader = postgres_reader(&url).await;
    let a = app.get(&format!("/api/projects/{pid}/tasks"), &token).await;
    let b = reader.get(&format!("/api/projects/{pid}/tasks"), &token).await;
    assert_eq!(a.body["tasks"].as_array().unwrap().len(), 10);
    assert_eq!(a.body, b.body, "PostgreSQL caught up with every acknowledged write");
    // The admin account predates dual-json: the backfill brings it, then both stores agree.
    let (code, out, err) = cli(app.data_dir(), &["--database-url", &url, "migrate"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(app.data_dir(), &["--database-url", &url, "validate"], &[]);
    assert_eq!(code, 0, "both stores agree after the outage: {out}{err}");
    assert!(out.contains("mode dual-json"), "{out}");
}

fn outbox_pending_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("outbox/pending.jsonl")).map(|s| s.lines().count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_outbox_entries_survive_kill_9_and_replay_after_restart() {
    let (url, proxy, proxied) = proxied_database().await;
    let dir = admin_data_dir();
    let flags = ["--store", "dual-json", "--database-url", proxied.as_str(), "--db-acquire-timeout", "1s"];
    let mut child = spawn_child(dir.path(), &flags, &[]);
    let client = reqwest::Client::new();
    let signup = client
        .post(format!("{}/api/auth/signup", child.base))
        .json(&json!({"email": "kill.writer@example.com", "password": "password-123", "name": "Kill"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), StatusCode::OK);
    let token = signup.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    proxy.cut();
    let r: Value = client
        .post(format!("{}/api/projects", child.base))
        .bearer_auth(&token)
        .json(&json!({"name": "Killed"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pid = r["project"]["id"].as_str().unwrap().to_owned();
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let resp = client
            .post(format!("{}/api/projects/{pid}/tasks", child.base))
            .bearer_auth(&token)
            .json(&json!({"title": format!("before the kill {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        acknowledged.push(resp.json::<Value>().await.unwrap()["task"]["id"].as_str().unwrap().to_owned());
    }
    child.child.kill().unwrap(); // SIGKILL: the entries exist only in the journal now
    let _ = child.child.wait();
    assert_eq!(outbox_pending_lines(dir.path()), 0, "no compaction ran: the entries are in the journal only");

    proxy.restore();
    let app = start(dir.clone(), &["--database-url", &proxied]).await; // the persisted mode (dual-json) wins
    assert_eq!(status(&app).await["mode"], "dual-json");
    wait_for_empty_outbox(&app).await;
    let reader = postgres_reader(&url).await;
    let b = reader.get(&format!("/api/projects/{pid}/tasks"), &token).await;
    let in_pg: Vec<&str> = b.body["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(in_pg, acknowledged.iter().map(String::as_str).collect::<Vec<_>>(), "{}", b.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_entries_move_to_pending_jsonl_when_compaction_drops_their_journal_records() {
    let (url, proxy, proxied) = proxied_database().await;
    let dir = admin_data_dir();
    let app = start_dual_json_through(dir.clone(), &proxied).await;
    let (token, _) = app.signup("compact.writer@example.com").await;
    let pid = app.create_project(&token, "Compacted").await;
    wait_for_empty_outbox(&app).await;
    proxy.cut();
    for i in 0..6 {
        assert_eq!(app.create_task(&token, &pid, &format!("pending {i}")).await.status, 200);
    }
    let depth = status(&app).await["outbox"]["depth"].as_u64().unwrap();
    assert!(depth >= 6, "depth {depth}");
    // A compaction drops the journal records that hold the entries: they must be in pending.jsonl first.
    app.server.as_ref().unwrap().json_store().compact_now().await.unwrap();
    assert!(outbox_pending_lines(dir.path()) as u64 >= depth, "pending.jsonl holds every pending entry");
    let mut app = app;
    app.stop().await; // clean stop, PostgreSQL still down: nothing may be lost
    proxy.restore();
    let app = start(dir.clone(), &["--database-url", &proxied]).await;
    wait_for_empty_outbox(&app).await;
    let reader = postgres_reader(&url).await;
    let a = app.get(&format!("/api/projects/{pid}/tasks"), &token).await;
    let b = reader.get(&format!("/api/projects/{pid}/tasks"), &token).await;
    assert_eq!(a.body["tasks"].as_array().unwrap().len(), 6);
    assert_eq!(a.body, b.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_switch_to_json_discards_pending_entries_and_marks_postgres_stale() {
    let (_, proxy, proxied) = proxied_database().await;
    let dir = admin_data_dir();
    let app = start_dual_json_through(dir.clone(), &proxied).await;
    let (token, _) = app.signup("force.writer@example.com").await;
    proxy.cut();
    let pid = app.create_project(&token, "Forced").await;
    assert_eq!(app.create_task(&token, &pid, "never in postgres").await.status, 200);
    let r = switch(&app, json!({"mode": "json", "force": true, "timeoutSeconds": 1})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["outbox"]["depth"], 0);
    let state: Value = serde_json::from_slice(&std::fs::read(dir.path().join(".store-state.json")).unwrap()).unwrap();
    assert_eq!((state["mode"].as_str(), &state["pgStale"]), (Some("json"), &json!(true)), "{state}");
    // Writes go on, JSON only.
    assert_eq!(app.create_task(&token, &pid, "after the forced switch").await.status, 200);
}

pub(super) fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fluxstudio"))
        .args(["--no-env-file", "--data-dir", dir.to_str().unwrap()])
        .args(args)
        .env("RUST_LOG", "error")
        .envs(env.iter().copied())
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_status_and_switch_from_the_command_line() {
    let url = migrated_database().await;
    let dir = admin_data_dir();
    let mut server = spawn_child(dir.path(), &["--database-url", &url], &[]);
    let d = dir.path();

    // Through the control socket (the server holds the data dir): no token needed.
    let (code, out, err) = cli(d, &["store", "status", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((s["mode"].as_str(), s["outbox"]["depth"].as_u64()), (Some("json"), Some(0)), "{s}");
    let (code, out, _) = cli(d, &["store", "switch", "postgres"], &[]);
    assert_eq!(code, 1, "a skipped step is refused: {out}");
    assert!(out.contains("refused: json -> postgres skips a step; allowed next modes: dual-json"), "{out}");
    let (code, _, err) = cli(d, &["store", "switch", "sideways"], &[]);
    assert_eq!(code, 2, "{err}");
    let (code, out, err) = cli(d, &["store", "switch", "dual-json"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("mode dual-json (epoch"), "{out}");
    let (code, out, _) = cli(d, &["store", "status"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("mode       dual-json") && out.contains("secondary  postgres"), "{out}");
    assert!(out.contains("outbox     depth 0"), "{out}");
    // --offline needs the server stopped.
    let (code, _, err) = cli(d, &["store", "switch", "json", "--offline"], &[]);
    assert_eq!(code, 2, "{err}");

    // Over HTTP with an admin token, as from another host.
    let base = server.base.clone();
    let (code, out, err) =
        cli(d, &["store", "status", "--json", "--server", &base], &[("FLUX_ADMIN_TOKEN", &admin_token())]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["mode"], "dual-json");
    let (code, _, err) =
        cli(d, &["store", "status", "--server", &base, "--token", &token_for("nobody", "n@x.org")], &[]);
    assert_ne!(code, 0, "{err}");

    server.child.kill().unwrap();
    let _ = server.child.wait();
    let (code, out, err) = cli(d, &["--database-url", &url, "store", "switch", "json", "--offline"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let state: Value = serde_json::from_slice(&std::fs::read(d.join(".store-state.json")).unwrap()).unwrap();
    assert_eq!(state["mode"], "json");
    let (code, _, err) = cli(d, &["store", "status"], &[]);
    assert_eq!(code, 2, "no server and no token: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_reads_count_fields_that_differ_in_postgres_and_still_answer_from_json() {
    let url = migrated_database().await;
    let app = start(admin_data_dir(), &["--store", "dual-json", "--database-url", &url]).await;
    let r = switch(&app, json!({"shadowReadRate": 1.0})).await;
    assert_eq!((r.status.as_u16(), r.body["shadowReadRate"].as_f64()), (200, Some(1.0)), "{}", r.body);
    let (token, _) = app.signup("shadow.reader@example.com").await;
    let pid = app.create_project(&token, "Shadowed").await;
    let tid = app.create_task(&token, &pid, "original title").await.body["task"]["id"].as_str().unwrap().to_owned();
    wait_for_empty_outbox(&app).await;

    // Someone edits PostgreSQL behind the product's back.
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let n = sqlx::query("update tasks set title = 'tampered' where id = $1::uuid")
            .bind(&tid)
            .execute(&mut conn)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(n, 1);
        // The instance announces itself (migrate --overwrite and the switch look here).
        let modes: Vec<String> =
            sqlx::query_scalar("select mode from store_instances").fetch_all(&mut conn).await.unwrap();
        assert_eq!(modes, vec!["dual-json".to_owned()]);
        conn.close().await.unwrap();
    }
    let r = app.get(&format!("/api/projects/{pid}"), &token).await;
    assert_eq!(r.body["project"]["tasks"][0]["title"], "original title", "the client gets the primary's answer");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = app.call(Method::GET, "/metrics", None, None).await;
        let text = m.body.as_str().unwrap_or_default().to_owned();
        if text.lines().any(|l| {
            l.starts_with("flux_shadow_read_mismatch_total")
                && l.contains(r#"entity="project""#)
                && l.contains(r#"field="tasks.title""#)
        }) {
            // Pool usage is exported too (issue: "pool usage" among the metrics).
            // The JSON run's servers have a budget of 3 (support.rs): all of it the sqlx pool, no hot set.
            assert!(text.contains("flux_db_pool_max_connections{pool=\"primary\"} 3"), "{text}");
            assert!(text.lines().any(|l| l.starts_with("flux_db_pool_connections") && l.contains("in_use")), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no mismatch counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The rate is a dual-mode setting.
    let r = switch(&app, json!({"shadowReadRate": 1.5})).await;
    assert_eq!(r.status, 400);
    let r = switch(&app, json!({"mode": "json", "shadowReadRate": 0.5})).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (409, Some("switch_refused")), "{}", r.body);
    let s = status(&app).await;
    assert_eq!(
        (s["mode"].as_str(), s["shadowReadRate"].as_f64()),
        (Some("dual-json"), Some(1.0)),
        "nothing applied: {s}"
    );
}

/// store-modes.md §5 guarantees under concurrent load: no in-flight request fails across json ⇄ dual-json switches,
/// and every write sent after a switch to dual-json returned (and acknowledged before the next switch started)
/// reaches PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_back_and_forth_under_write_load_fails_no_request_and_loses_no_write() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let url = migrated_database().await;
    let app = Arc::new(start(admin_data_dir(), &["--database-url", &url]).await);
    let r = switch(&app, json!({"mode": "dual-json"})).await;
    assert_eq!(r.status, 200);
    // The writer exists in PostgreSQL too (signed up in dual-json); so does its project.
    let (token, _) = app.signup("load.writer@example.com").await;
    let pid = app.create_project(&token, "Under load").await;
    wait_for_empty_outbox(&app).await;
    let r = switch(&app, json!({"mode": "json"})).await;
    assert_eq!(r.status, 200);

    let origin = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (app, token, pid, stop) = (app.clone(), token.clone(), pid.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let sent = origin.elapsed();
                let r = app.create_task(&token, &pid, &format!("w{w} #{i}")).await;
                assert_eq!(r.status, 200, "a write failed during a switch: {}", r.body);
                done.push((sent, origin.elapsed(), r.body["task"]["id"].as_str().unwrap().to_owned()));
                // Steady load rather than a flood: the replay (one PostgreSQL transaction per batch) keeps up.
                tokio::time::sleep(Duration::from_millis(2)).await;
                i += 1;
            }
            done
        }));
    }
    // (switch started, switch returned) for each switch.
    let mut switches = Vec::new();
    for mode in ["dual-json", "json", "dual-json", "json", "dual-json"] {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let started = origin.elapsed();
        let r = switch(&app, json!({"mode": mode, "timeoutSeconds": 30})).await;
        assert_eq!(r.status, 200, "{mode}: {}", r.body);
        switches.push((mode, started, origin.elapsed()));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    wait_for_empty_outbox(&app).await;

    let json_ids: std::collections::HashSet<String> = app.get(&format!("/api/projects/{pid}/tasks"), &token).await.body
        ["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    let reader = postgres_reader(&url).await;
    let pg_ids: std::collections::HashSet<String> =
        reader.get(&format!("/api/projects/{pid}/tasks"), &token).await.body["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
    let mut must_be_in_pg = 0;
    for (sent, acked, id) in &acknowledged {
        assert!(json_ids.contains(id), "acknowledged write {id} missing from the JSON primary");
        // Inside a dual-json window: sent after the switch to dual-json returned, acknowledged before the next
        // switch started (or any time after the last one).
        let inside = switches.iter().enumerate().any(|(k, (mode, _, returned))| {
            *mode == "dual-json"
                && sent > returned
                && switches.get(k + 1).is_none_or(|(_, next_started, _)| acked < next_started)
        });
        if inside {
            must_be_in_pg += 1;
            assert!(pg_ids.contains(id), "write {id} acknowledged in dual-json never reached PostgreSQL");
        }
    }
    assert!(must_be_in_pg > 0 && acknowledged.len() > must_be_in_pg, "the load spanned both modes");
    eprintln!("{} writes acknowledged, {must_be_in_pg} inside dual-json windows", acknowledged.len());
    assert!(pg_ids.iter().all(|id| json_ids.contains(id)), "PostgreSQL holds nothing the primary does not");
}
