//! Acknowledged writes survive concurrency, kill -9 and a failing disk.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fluxstudio::store::json::fs::{Fs, FsOp};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::support::{read_json, spawn_child, task_ids_in_files, TestApp, SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_writers_lose_nothing() {
    let app = TestApp::spawn().await;
    let (token, _) = app.signup("writer@example.com").await;
    let shared = app.create_project(&token, "Shared").await;
    let mut own = Vec::new();
    for i in 0..25 {
        own.push(app.create_project(&token, &format!("Own {i}")).await);
    }
    let app = Arc::new(app);
    let mut handles = Vec::new();
    for w in 0..50 {
        let app = app.clone();
        let token = token.clone();
        let project = if w % 2 == 0 { shared.clone() } else { own[w / 2].clone() };
        handles.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..6 {
                let r = app.create_task(&token, &project, &format!("w{w}-{i}")).await;
                assert_eq!(r.status, 200, "{}", r.body);
                acked.push(r.body["task"]["id"].as_str().unwrap().to_owned());
            }
            acked
        }));
    }
    let mut acked = HashSet::new();
    for h in handles {
        acked.extend(h.await.unwrap());
    }
    assert_eq!(acked.len(), 300);
    let tasks = app.get(&format!("/api/projects/{shared}/tasks"), &token).await;
    assert_eq!(tasks.body["tasks"].as_array().unwrap().len(), 25 * 6);
    let mut app = Arc::try_unwrap(app).ok().expect("no other owners");
    app.stop().await;
    let on_disk = task_ids_in_files(app.data_dir());
    assert!(
        acked.is_subset(&on_disk),
        "{} acknowledged tasks missing from projects.json",
        acked.difference(&on_disk).count()
    );
    // Activity files are valid JSON too, one per project with writes.
    let acts = read_json(&app.data_dir().join(format!("data/activities/{shared}.json")));
    assert_eq!(acts["activities"].as_array().unwrap().len(), 150);
}

#[tokio::test]
async fn concurrent_updates_to_one_project_are_not_lost() {
    let app = Arc::new(TestApp::spawn().await);
    let (token, _) = app.signup("u@example.com").await;
    let pid = app.create_project(&token, "Batch").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(app.create_task(&token, &pid, &format!("t{i}")).await.body["task"]["id"].as_str().unwrap().to_owned());
    }
    // The Kanban board's batch move: N parallel PUTs on tasks of one project.
    let mut handles = Vec::new();
    for id in ids.clone() {
        let app = app.clone();
        let (token, pid) = (token.clone(), pid.clone());
        handles.push(tokio::spawn(async move {
            app.put(&format!("/api/projects/{pid}/tasks/{id}"), &token, json!({"status": "review"})).await.status
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), 200);
    }
    let tasks = app.get(&format!("/api/projects/{pid}/tasks"), &token).await;
    assert!(tasks.body["tasks"].as_array().unwrap().iter().all(|t| t["status"] == "review"));
}

/// The disk fails under the journal: the write gets 503 `store_unavailable`, is not visible, and the legacy
/// files stay the last good version; once the disk recovers, writes succeed again.
#[tokio::test]
async fn a_failing_fsync_is_a_503_and_nothing_changes() {
    let failing = Arc::new(AtomicBool::new(false));
    let flag = failing.clone();
    let fs = Fs::with_faults(Arc::new(move |op, _path| {
        if flag.load(Ordering::SeqCst) && matches!(op, FsOp::JournalSync | FsOp::CompactWrite) {
            Err(std::io::Error::other("injected EIO"))
        } else {
            Ok(())
        }
    }));
    let dir = Arc::new(TempDir::new().unwrap());
    let mut app = TestApp::spawn_in(dir.clone(), fs).await;
    let (token, _) = app.signup("disk@example.com").await;
    let pid = app.create_project(&token, "Disk").await;
    assert_eq!(app.create_task(&token, &pid, "before").await.status, 200);
    app.server.as_ref().unwrap().json_store().compact_now().await.unwrap();
    let files_before = std::fs::read(dir.path().join("projects.json")).unwrap();

    failing.store(true, Ordering::SeqCst);
    let r = app.create_task(&token, &pid, "during").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["code"], "store_unavailable");
    assert_eq!(r.headers["retry-after"], "5");
    let r = app.put(&format!("/api/projects/{pid}"), &token, json!({"name": "renamed"})).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["code"], "store_unavailable");
    let tasks = app.get(&format!("/api/projects/{pid}/tasks"), &token).await;
    let titles: Vec<&str> =
        tasks.body["tasks"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["before"], "an unacknowledged write is not visible");
    assert!(app.server.as_ref().unwrap().json_store().compact_now().await.is_err());
    assert_eq!(
        std::fs::read(dir.path().join("projects.json")).unwrap(),
        files_before,
        "files stay the last good version"
    );

    failing.store(false, Ordering::SeqCst);
    assert_eq!(app.create_task(&token, &pid, "after").await.status, 200);
    app.stop().await;
    let projects = read_json(&dir.path().join("projects.json"));
    let p = projects["projects"].as_array().unwrap().iter().find(|p| p["id"] == pid.as_str()).unwrap();
    let titles: Vec<&str> = p["tasks"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["before", "after"]);
    assert_eq!(p["name"], "Disk");
}

/// A child server under write load is killed with SIGKILL at random moments; after each restart the files parse
/// and every write that got a 2xx is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_write_load_loses_no_acknowledged_write() {
    let dir = TempDir::new().unwrap();
    let client = reqwest::Client::new();
    let mut acked: HashSet<String> = HashSet::new();
    let mut token = String::new();
    let mut pid = String::new();
    for round in 0..4 {
        // Alternate compaction thresholds so kills land both between and during compactions.
        let mut server =
            spawn_child(dir.path(), &[], &[("FLUX_JSON_COMPACT_SECONDS", if round % 2 == 0 { "1" } else { "300" })]);
        if round == 0 {
            let r: Value = client
                .post(format!("{}/api/auth/signup", server.base))
                .json(&json!({"email": "crash@example.com", "password": "password-123", "name": "Crash"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            token = r["token"].as_str().unwrap().to_owned();
            let r: Value = client
                .post(format!("{}/api/projects", server.base))
                .bearer_auth(&token)
                .json(&json!({"name": "Crash"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            pid = r["project"]["id"].as_str().unwrap().to_owned();
        }
        // Every acknowledged write from earlier rounds is present after the restart.
        let r: Value = client
            .get(format!("{}/api/projects/{pid}/tasks", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let present: HashSet<String> =
            r["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect();
        let missing: Vec<_> = acked.difference(&present).collect();
        assert!(missing.is_empty(), "round {round}: {} acknowledged writes lost", missing.len());

        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..8 {
            let (client, base, token, pid, stop) =
                (client.clone(), server.base.clone(), token.clone(), pid.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let resp = client
                        .post(format!("{base}/api/projects/{pid}/tasks"))
                        .bearer_auth(&token)
                        .json(&json!({"title": format!("r{round}-w{w}-{i}")}))
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status() == 200 => {
                            if let Ok(v) = r.json::<Value>().await {
                                mine.push(v["task"]["id"].as_str().unwrap().to_owned());
                            }
                        }
                        _ => break,
                    }
                }
                mine
            }));
        }
        let delay = 150 + (rand::random::<u64>() % 600);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            acked.extend(w.await.unwrap());
        }
        // The files on disk parse at every moment (a consistent, possibly older snapshot).
        for f in ["users.json", "projects.json", "teams.json", "files.json"] {
            read_json(&dir.path().join(f));
        }
    }
    assert!(acked.len() > 20, "the load produced writes ({})", acked.len());
    let mut server = spawn_child(dir.path(), &[], &[("FLUX_JSON_COMPACT_SECONDS", "300")]);
    let r: Value = client
        .get(format!("{}/api/projects/{pid}/tasks", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let present: HashSet<String> =
        r["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect();
    assert!(acked.is_subset(&present), "{} acknowledged writes lost", acked.difference(&present).count());
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // Start-up replay compacted everything into the legacy files.
    assert!(acked.is_subset(&task_ids_in_files(dir.path())));
}

#[tokio::test]
async fn a_torn_journal_tail_is_discarded_and_a_corrupt_middle_refuses_start() {
    let dir = Arc::new(TempDir::new().unwrap());
    let mut app = TestApp::spawn_in(dir.clone(), Fs::default()).await;
    let (token, _) = app.signup("torn@example.com").await;
    let pid = app.create_project(&token, "Torn").await;
    app.create_task(&token, &pid, "kept").await;
    // Simulate a crash: drop the server without the final compaction, leaving the journal as the only copy.
    let server = app.server.take().unwrap();
    std::mem::forget(server);
    let journal = dir.path().join("journal");
    let mut segs: Vec<_> = std::fs::read_dir(&journal)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    let last = segs.last().unwrap().clone();
    let mut bytes = std::fs::read(&last).unwrap();
    assert!(!bytes.is_empty());
    let copy = bytes.clone();
    bytes.extend_from_slice(b"{\"seq\":99999,\"at\":\"x\",\"ops\":[{\"op\":\"putUser\""); // torn, no checksum
    std::fs::write(&last, &bytes).unwrap();

    // A second instance cannot start while the "crashed" one still holds the lock in this process, so release it.
    std::fs::remove_file(dir.path().join(".lock")).ok();
    let cfg = crate::support::test_config(dir.path(), &[]);
    let server = fluxstudio::app::start(fluxstudio::app::ServerOptions::new(cfg, SECRET.into()))
        .await
        .expect("torn tail is not fatal");
    let app2 = TestApp {
        base: format!("http://{}", server.addr),
        client: reqwest::Client::new(),
        server: Some(server),
        dir: dir.clone(),
        owned_db: None,
    };
    let tasks = app2.get(&format!("/api/projects/{pid}/tasks"), &token).await;
    assert_eq!(tasks.body["tasks"][0]["title"], "kept");
    let mut app2 = app2;
    app2.stop().await;

    // Corruption before the last record is not a crash artefact: refuse to start.
    std::fs::write(journal.join("00000000000000000001.wal"), b"garbage\tdeadbeef\n").unwrap();
    std::fs::write(journal.join("00000000000000000002.wal"), &copy).unwrap();
    std::fs::write(journal.join("BASE"), b"0").unwrap();
    let cfg = crate::support::test_config(dir.path(), &[]);
    let err = fluxstudio::app::start(fluxstudio::app::ServerOptions::new(cfg, SECRET.into()))
        .await
        .err()
        .expect("a corrupt journal record before the end refuses start");
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("corrupt journal record"), "{err}");
}
