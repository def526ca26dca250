//! `scripts/backup.sh` and `scripts/restore.sh` end to end: back up, wipe, restore, and the users, projects, tasks
//! and uploads are all there again.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use fluxstudio::store::json::fs::Fs;
use tempfile::TempDir;

use crate::support::TestApp;

fn script(name: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("FLUX_DATA_DIR")
        .env_remove("FLUX_UPLOAD_DIR")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn backup_wipe_restore_brings_everything_back() {
    let dir = Arc::new(TempDir::new().unwrap());
    let data = dir.path().to_str().unwrap().to_owned();
    let out_dir = TempDir::new().unwrap();
    let archive = out_dir.path().join("backup.tar.gz");
    let archive = archive.to_str().unwrap();

    let mut app = TestApp::spawn_in(dir.clone(), Fs::default()).await;
    let (alice, _) = app.signup("alice@example.com").await;
    let (bob, _) = app.signup("bob@example.com").await;
    let pa = app.create_project(&alice, "Alice's project").await;
    let pb = app.create_project(&bob, "Bob's project").await;
    for i in 0..5 {
        assert_eq!(app.create_task(&alice, &pa, &format!("a{i}")).await.status, 200);
    }
    assert_eq!(app.create_task(&bob, &pb, "b0").await.status, 200);
    let form = reqwest::multipart::Form::new().part(
        "files",
        reqwest::multipart::Part::bytes(b"%PDF-1.4 menu".to_vec())
            .file_name("menu.pdf")
            .mime_str("application/pdf")
            .unwrap(),
    );
    let up = app
        .client
        .post(format!("{}/api/files/upload", app.base))
        .bearer_auth(&alice)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 200);
    let up: serde_json::Value = up.json().await.unwrap();
    let url = up["files"][0]["url"].as_str().unwrap().to_owned();

    // A running server holds the data dir: the backup refuses rather than copy a moving target.
    let (code, text) = script("backup.sh", &["--data-dir", &data, "--output", archive]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("server is running"), "{text}");
    assert!(!Path::new(archive).exists());

    app.stop().await;
    let (code, text) = script("backup.sh", &["--data-dir", &data, "--output", archive]);
    assert_eq!(code, 0, "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(archive).unwrap().permissions().mode() & 0o777, 0o600, "the archive holds hashes");

    // Wipe the data dir.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) }.unwrap();
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());

    let (code, text) = script("restore.sh", &["--data-dir", &data, archive]);
    assert_eq!(code, 0, "{text}");
    // Restoring over live data needs --force.
    let (code, text) = script("restore.sh", &["--data-dir", &data, archive]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not empty"), "{text}");

    let app = TestApp::spawn_in(dir.clone(), Fs::default()).await;
    for email in ["alice@example.com", "bob@example.com"] {
        let r = app.login(email, "password-123").await;
        assert_eq!(r.status, 200, "{email}: {}", r.body);
    }
    let projects = app.get("/api/projects", &alice).await;
    let names: Vec<&str> =
        projects.body["projects"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Alice's project"]);
    let tasks = app.get(&format!("/api/projects/{pa}/tasks"), &alice).await;
    let titles: Vec<&str> =
        tasks.body["tasks"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(titles.len(), 5, "{titles:?}");
    assert_eq!(app.get(&format!("/api/projects/{pb}/tasks"), &bob).await.body["tasks"][0]["title"], "b0");
    let bytes = app.client.get(format!("{}{url}", app.base)).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&bytes[..], b"%PDF-1.4 menu");
    let activity = app.get(&format!("/api/projects/{pa}/activities"), &alice).await;
    assert_eq!(activity.status, 200);
    assert!(!activity.body["activities"].as_array().unwrap().is_empty());
}

/// An unclean stop leaves acknowledged writes only in the journal; the backup carries it and the restored
/// server replays it.
#[tokio::test]
async fn a_backup_after_a_crash_keeps_journaled_writes() {
    let dir = Arc::new(TempDir::new().unwrap());
    let data = dir.path().to_str().unwrap().to_owned();
    let out_dir = TempDir::new().unwrap();
    let archive = out_dir.path().join("crash.tar.gz");
    let archive = archive.to_str().unwrap();

    let mut app = TestApp::spawn_in(dir.clone(), Fs::default()).await;
    let (token, _) = app.signup("crash@example.com").await;
    let pid = app.create_project(&token, "Journaled").await;
    assert_eq!(app.create_task(&token, &pid, "only in the journal").await.status, 200);
    // Simulate a crash: no final compaction; release the in-process lock as the kernel would for a dead process.
    let server = app.server.take().unwrap();
    std::mem::forget(server);
    std::fs::remove_file(dir.path().join(".lock")).unwrap();

    let (code, text) = script("backup.sh", &["--data-dir", &data, "--output", archive]);
    assert_eq!(code, 0, "{text}");
    let target = TempDir::new().unwrap();
    let target_dir = target.path().join("restored");
    let (code, text) = script("restore.sh", &["--data-dir", target_dir.to_str().unwrap(), archive]);
    assert_eq!(code, 0, "{text}");

    let target = Arc::new(target);
    let cfg_dir = target_dir.clone();
    // The restored copy lives in a sub-directory of the temporary dir.
    let cfg = crate::support::test_config(&cfg_dir, &[]);
    let server = fluxstudio::app::start(fluxstudio::app::ServerOptions::new(cfg, crate::support::SECRET.into()))
        .await
        .expect("restored data dir opens");
    let app = TestApp {
        base: format!("http://{}", server.addr),
        client: reqwest::Client::new(),
        server: Some(server),
        dir: target,
        owned_db: None,
    };
    let tasks = app.get(&format!("/api/projects/{pid}/tasks"), &token).await;
    assert_eq!(tasks.body["tasks"][0]["title"], "only in the journal", "{}", tasks.body);
}
