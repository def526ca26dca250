//! dual-postgres and the whole switch chain (store-modes.md §1–2, §5, §6): PostgreSQL primary with every write
//! replayed into the JSON files through `store_outbox`, primary flips under the write barrier, the freeze into
//! postgres and the export back, each under concurrent write load with no failed request and no lost write.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::dual_json::{admin_data_dir, cli, migrated_database, start, status, switch, wait_for_empty_outbox};
use crate::support::{task_ids_in_files, TestApp};

fn validate(app: &TestApp, url: &str) -> (i32, String) {
    let (code, out, err) = cli(app.data_dir(), &["--database-url", url, "validate"], &[]);
    (code, format!("{out}{err}"))
}

fn task_ids(body: &Value) -> HashSet<String> {
    body["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
}

/// Writers that create tasks until stopped, each write checked for success; `pause` holds them (between
/// requests) while the test runs `validate`, which compares the stores and wants them at rest.
struct Load {
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(app: &Arc<TestApp>, token: &str, pid: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(AtomicBool::new(false));
        let writers = (0..4)
            .map(|w| {
                let (app, token, pid) = (app.clone(), token.to_owned(), pid.to_owned());
                let (stop, pause) = (stop.clone(), pause.clone());
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        if pause.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        }
                        let r = app.create_task(&token, &pid, &format!("w{w} #{i}")).await;
                        assert_eq!(r.status, 200, "a write failed during a switch: {}", r.body);
                        acked.push(r.body["task"]["id"].as_str().unwrap().to_owned());
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        i += 1;
                    }
                    acked
                })
            })
            .collect();
        Load { stop, pause, writers }
    }

    /// Pauses the writers and waits until their in-flight requests are done.
    async fn pause(&self) {
        self.pause.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    fn resume(&self) {
        self.pause.store(false, Ordering::SeqCst);
    }

    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for w in self.writers {
            all.extend(w.await.unwrap());
        }
        all
    }
}

async fn switch_ok(app: &TestApp, mode: &str) -> Value {
    let r = switch(app, json!({"mode": mode, "timeoutSeconds": 30})).await;
    assert_eq!(r.status, 200, "switch to {mode}: {}", r.body);
    assert_eq!(r.body["mode"], mode);
    r.body
}

/// The drill of store-modes.md §6 end to end, while four clients keep writing: json → dual-json → migrate →
/// validate → dual-postgres → postgres → dual-postgres → validate → dual-json → json. Every request succeeds,
/// every acknowledged task is in the final JSON primary, and both stores agree at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_switch_chain_and_back_under_write_load_fails_no_request_and_loses_no_write() {
    let url = migrated_database().await;
    let app = Arc::new(start(admin_data_dir(), &["--database-url", &url]).await);
    // Written in json mode: only the backfill brings these to PostgreSQL.
    let (token, _) = app.signup("chain.writer@example.com").await;
    let pid = app.create_project(&token, "Chain").await;
    for i in 0..10 {
        assert_eq!(app.create_task(&token, &pid, &format!("before #{i}")).await.status, 200);
    }
    let load = Load::start(&app, &token, &pid);

    switch_ok(&app, "dual-json").await;
    // A primary flip needs a passing validation for the current epoch.
    let r = switch(&app, json!({"mode": "dual-postgres"})).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (409, Some("switch_refused")), "{}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("fluxstudio validate"), "{}", r.body);

    let (code, out, err) = cli(app.data_dir(), &["--database-url", &url, "migrate"], &[]);
    assert_eq!(code, 0, "migrate: {out}{err}");
    load.pause().await;
    wait_for_empty_outbox(&app).await;
    let (code, out) = validate(&app, &url);
    assert_eq!(code, 0, "validate after the backfill: {out}");
    load.resume();

    let flipped = switch_ok(&app, "dual-postgres").await;
    let s = status(&app).await;
    assert_eq!((s["primary"].as_str(), s["secondary"].as_str()), (Some("postgres"), Some("json")), "{s}");
    // The validation was for the previous epoch: flipping back needs a new one.
    let r = switch(&app, json!({"mode": "dual-json"})).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (409, Some("switch_refused")), "{}", r.body);
    tokio::time::sleep(Duration::from_millis(300)).await;

    switch_ok(&app, "postgres").await;
    let state: Value =
        serde_json::from_slice(&std::fs::read(app.data_dir().join(".store-state.json")).unwrap()).unwrap();
    assert_eq!(state["mode"], "postgres");
    assert!(state["jsonFrozenAt"].is_string(), "the data dir is marked frozen: {state}");
    let frozen = task_ids_in_files(app.data_dir());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(task_ids_in_files(app.data_dir()), frozen, "postgres mode writes no JSON");

    switch_ok(&app, "dual-postgres").await;
    assert!(app.data_dir().join("backups").read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("export-")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    load.pause().await;
    wait_for_empty_outbox(&app).await;
    let (code, out) = validate(&app, &url);
    assert_eq!(code, 0, "validate after the export back into JSON: {out}");
    load.resume();

    switch_ok(&app, "dual-json").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The last step under load too; the writes after it stay in JSON only, so the load stops before the final
    // comparison.
    let last = switch_ok(&app, "json").await;
    assert!(last["epoch"].as_u64() > flipped["epoch"].as_u64());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acked = load.finish().await;
    assert!(acked.len() > 50, "the load ran through the chain ({} writes)", acked.len());

    let listed = task_ids(&app.get(&format!("/api/projects/{pid}/tasks"), &token).await.body);
    let missing: Vec<&String> = acked.iter().filter(|id| !listed.contains(*id)).collect();
    assert!(missing.is_empty(), "{} acknowledged writes missing after the chain: {missing:?}", missing.len());
    assert_eq!(listed.len(), acked.len() + 10, "no write duplicated or resurrected");
    // PostgreSQL lacks exactly the writes made in json mode after the last switch; once more through dual-json
    // and a backfill the two agree.
    switch_ok(&app, "dual-json").await;
    let (code, out, err) = cli(app.data_dir(), &["--database-url", &url, "migrate"], &[]);
    assert_eq!(code, 0, "migrate: {out}{err}");
    wait_for_empty_outbox(&app).await;
    let (code, out) = validate(&app, &url);
    assert_eq!(code, 0, "both stores agree at the end: {out}");
    eprintln!("{} writes acknowledged through the chain", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_postgres_replays_every_write_into_the_json_files() {
    let url = migrated_database().await;
    let dir = admin_data_dir();
    let (code, out, err) = cli(dir.path(), &["--database-url", &url, "migrate"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let mut app = start(dir.clone(), &["--store", "dual-postgres", "--database-url", &url]).await;
    let s = status(&app).await;
    assert_eq!((s["mode"].as_str(), s["secondary"].as_str()), (Some("dual-postgres"), Some("json")), "{s}");

    let (token, _) = app.signup("dp.writer@example.com").await;
    let pid = app.create_project(&token, "Outbox to JSON").await;
    let mut tasks = Vec::new();
    for i in 0..5 {
        let r = app.create_task(&token, &pid, &format!("t{i}")).await;
        tasks.push(r.body["task"]["id"].as_str().unwrap().to_owned());
    }
    let r = app.put(&format!("/api/projects/{pid}/tasks/{}", tasks[0]), &token, json!({"status": "completed"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(app.delete(&format!("/api/projects/{pid}/tasks/{}", tasks[1]), &token).await.status, 200);
    assert_eq!(app.post(&format!("/api/projects/{pid}/milestones"), &token, json!({"title": "M"})).await.status, 200);
    assert_eq!(app.post("/api/teams", &token, json!({"name": "DP team"})).await.status, 200);
    let s = wait_for_empty_outbox(&app).await;
    assert!(s["outbox"]["lastReplayAt"].is_string(), "{s}");
    let ready = app.call(reqwest::Method::GET, "/health/ready", None, None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);

    // The JSON store (secondary) answers like the primary.
    let json_copy = app.server.as_ref().unwrap().json_store();
    let p = fluxstudio::store::Store::get_project(&*json_copy, &pid).await.unwrap().expect("project replayed");
    let titles: Vec<&str> = p.tasks.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(titles, ["t0", "t2", "t3", "t4"]);
    assert_eq!(p.tasks[0].status, "completed");
    assert_eq!(p.milestones.len(), 1);

    // validate --repair while the server runs: PostgreSQL is the source, its versions reach the JSON store through
    // the control socket (a changed field, and a milestone that no longer exists in PostgreSQL).
    {
        use sqlx::Connection;
        let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
        let changed = format!("update tasks set title = 'changed behind its back' where id = '{}'", tasks[2]);
        sqlx::query(sqlx::AssertSqlSafe(changed)).execute(&mut db).await.unwrap();
        sqlx::query("delete from milestones").execute(&mut db).await.unwrap();
    }
    let (code, out, err) = cli(dir.path(), &["--database-url", &url, "validate"], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("mismatched: title"), "{out}");
    let (code, out, err) = cli(dir.path(), &["--database-url", &url, "validate", "--repair"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("repaired"), "{out}");
    let p = fluxstudio::store::Store::get_project(&*json_copy, &pid).await.unwrap().unwrap();
    assert_eq!(p.tasks[1].title, "changed behind its back");
    assert!(p.milestones.is_empty());
    let (code, out, err) = cli(dir.path(), &["--database-url", &url, "validate"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    app.stop().await;
    let files = task_ids_in_files(dir.path());
    assert!(tasks.iter().enumerate().all(|(i, t)| (i == 1) != files.contains(t)), "{files:?}");
    let (code, out, err) = cli(dir.path(), &["--database-url", &url, "validate"], &[]);
    assert_eq!(code, 0, "{out}{err}");

    // The persisted dual-postgres wins at the next start, and the validation above counts for its epoch (a start
    // records its mode in store_state): the flip back to dual-json is allowed.
    let app = start(dir.clone(), &["--database-url", &url]).await;
    assert_eq!(status(&app).await["mode"], "dual-postgres");
    let (code, out, err) = cli(dir.path(), &["--database-url", &url, "validate"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    switch_ok(&app, "dual-json").await;
    assert_eq!(status(&app).await["primary"], "json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flip_is_refused_while_another_instance_is_live() {
    let url = migrated_database().await;
    let app = start(admin_data_dir(), &["--database-url", &url]).await;
    switch_ok(&app, "dual-json").await;
    let (code, out, err) = cli(app.data_dir(), &["--database-url", &url, "migrate"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for_empty_outbox(&app).await;
    let (code, out) = validate(&app, &url);
    assert_eq!(code, 0, "{out}");
    let other = super::dual_json::postgres_reader(&url).await;
    // Its heartbeat registers it within a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while status(&app).await["instances"].as_array().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "the second instance never registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = switch(&app, json!({"mode": "dual-postgres"})).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (409, Some("switch_refused")), "{}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("other live instance"), "{}", r.body);
    let mut other = other;
    other.stop().await;
    switch_ok(&app, "dual-postgres").await;
}

/// kill -9 in dual-postgres: every acknowledged write is in PostgreSQL (the primary), and the entries the JSON
/// side had not received yet are still in `store_outbox`; after the restart they reach the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_pending_at_a_kill_9_reach_the_json_files_after_the_restart() {
    use crate::support::spawn_child;
    let url = migrated_database().await;
    let dir = admin_data_dir();
    let (code, out, err) = cli(dir.path(), &["--database-url", &url, "migrate"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let child = spawn_child(dir.path(), &["--store", "dual-postgres", "--database-url", &url], &[]);
    let (token, pid) = child.signup_with_project("kill.dp@example.com", "Killed").await;
    let child = Arc::new(child);
    let writers = (0..4).map(|w| {
        let (child, token, pid) = (child.clone(), token.clone(), pid.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..25 {
                let path = format!("/api/projects/{pid}/tasks");
                let (status, r) = child.post(&path, Some(&token), json!({"title": format!("w{w} #{i}")})).await;
                assert_eq!(status, reqwest::StatusCode::OK);
                acked.push(r["task"]["id"].as_str().unwrap().to_owned());
            }
            acked
        })
    });
    let mut acknowledged = Vec::new();
    for w in writers.collect::<Vec<_>>() {
        acknowledged.extend(w.await.unwrap());
    }
    let mut child = Arc::try_unwrap(child).unwrap_or_else(|_| panic!("writers are done"));
    child.child.kill().unwrap();
    let _ = child.child.wait();
    let pending: i64 = {
        use sqlx::Connection;
        let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query_scalar("select count(*) from store_outbox where done_at is null").fetch_one(&mut db).await.unwrap()
    };
    eprintln!("{pending} entries pending at the kill");

    let mut app = start(dir.clone(), &["--database-url", &url]).await; // the persisted dual-postgres wins
    assert_eq!(status(&app).await["mode"], "dual-postgres");
    wait_for_empty_outbox(&app).await;
    app.stop().await;
    let files = task_ids_in_files(dir.path());
    let missing: Vec<&String> = acknowledged.iter().filter(|id| !files.contains(*id)).collect();
    assert!(missing.is_empty(), "acknowledged tasks missing from the JSON files: {missing:?}");
    let (code, out, err) = cli(dir.path(), &["--database-url", &url, "validate"], &[]);
    assert_eq!(code, 0, "{out}{err}");
}

/// `store switch --offline` along the chain with the server stopped, with the live switch's preconditions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_switches_walk_the_chain_with_the_same_preconditions() {
    let url = migrated_database().await;
    let dir = admin_data_dir();
    let d = dir.path();
    let offline = |mode: &str| cli(d, &["--database-url", &url, "store", "switch", mode, "--offline"], &[]);
    let mut app = start(dir.clone(), &["--store", "dual-json", "--database-url", &url]).await;
    let (token, _) = app.signup("offline@example.com").await;
    let pid = app.create_project(&token, "Offline").await;
    let tid =
        app.create_task(&token, &pid, "kept through the chain").await.body["task"]["id"].as_str().unwrap().to_owned();
    wait_for_empty_outbox(&app).await;
    app.stop().await;

    let (code, out, _) = offline("dual-postgres");
    assert_eq!(code, 1, "no validation yet: {out}");
    assert!(out.contains("refused:") && out.contains("fluxstudio validate"), "{out}");
    let (code, out, err) = cli(d, &["--database-url", &url, "migrate"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(d, &["--database-url", &url, "validate"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = offline("dual-postgres");
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = offline("postgres");
    assert_eq!(code, 0, "{out}{err}");
    let state: Value = serde_json::from_slice(&std::fs::read(d.join(".store-state.json")).unwrap()).unwrap();
    assert_eq!(state["mode"], "postgres");
    assert!(state["jsonFrozenAt"].is_string(), "{state}");
    std::fs::remove_file(d.join("projects.json")).unwrap(); // the export brings it back from PostgreSQL
    let (code, out, err) = offline("dual-postgres");
    assert_eq!(code, 0, "{out}{err}");
    assert!(task_ids_in_files(d).contains(&tid), "exported from PostgreSQL");

    let app = start(dir.clone(), &["--database-url", &url]).await;
    let s = status(&app).await;
    assert_eq!((s["mode"].as_str(), s["primary"].as_str()), (Some("dual-postgres"), Some("postgres")), "{s}");
    let r = app.get(&format!("/api/projects/{pid}/tasks/{tid}"), &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
}
