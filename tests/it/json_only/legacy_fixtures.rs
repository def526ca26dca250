use serde_json::json;

use crate::support::{copy_fixtures, fixtures_dir, read_json, token_for, TestApp};

const LOGINS: [(&str, &str, &str); 7] = [
    ("marten.oberg@example.com", "legacy-Marten-2025", "1756887342317"),
    ("priya.raman@example.org", "Admin-Priya-2025!", "aaaaaaaa-0000-4000-8000-000000000002"),
    ("aoife.obrien@example.com", "obrien's-Pass-42", "aaaaaaaa-0000-4000-8000-000000000004"),
    ("kwame.mensah@example.org", "Kwame-Rollback-77", "aaaaaaaa-0000-4000-8000-000000000005"),
    ("lena.fischer@example.com", "rocket-Lena-9000", "aaaaaaaa-0000-4000-8000-000000000007"),
    ("chen.jing+flux@example.org", "密码-chen-2025", "aaaaaaaa-0000-4000-8000-000000000008"),
    ("jose.alvarez@example.com", "jose-Alvarez-3141", "aaaaaaaa-0000-4000-8000-000000000009"),
];

#[tokio::test]
async fn every_fixture_user_logs_in_with_the_listed_password() {
    let app = TestApp::with_fixtures().await;
    for (email, password, id) in LOGINS {
        let r = app.login(email, password).await;
        assert_eq!(r.status, 200, "{email}: {}", r.body);
        assert_eq!(r.body["user"]["id"], id);
        assert!(r.body["user"].get("password").is_none());
    }
    // Google-only (no password key) and rollback-shaped `"password": null` users cannot log in with a password.
    for email in ["zoe.tran@example.com", "ines.dubois@example.org"] {
        let r = app.login(email, "anything-at-all").await;
        assert_eq!(r.status, 401, "{email}");
        assert_eq!(r.body["code"], "invalid_credentials");
    }
}

#[tokio::test]
async fn fixture_projects_load_with_normalised_values() {
    let app = TestApp::with_fixtures().await;
    // Priya (user 2) is a member of several fixture projects.
    let r = app.login("priya.raman@example.org", "Admin-Priya-2025!").await;
    let token = r.body["token"].as_str().unwrap().to_owned();
    let list = app.get("/api/projects", &token).await;
    assert_eq!(list.status, 200);
    for p in list.body["projects"].as_array().unwrap() {
        for t in p["tasks"].as_array().unwrap() {
            assert!(
                ["todo", "in_progress", "review", "blocked", "completed"].contains(&t["status"].as_str().unwrap()),
                "{t}"
            );
            assert_eq!(t["projectId"], p["id"]);
        }
        assert!(
            ["planning", "in_progress", "on_hold", "completed", "cancelled"].contains(&p["status"].as_str().unwrap())
        );
    }
    let p1 = app.get("/api/projects/bbbbbbbb-0000-4000-8000-000000000001", &token).await;
    assert_eq!(p1.status, 200);
    assert_eq!(p1.body["project"]["progress"], 20);
    assert_eq!(p1.body["project"]["name"], "Café Menu Redesign ☕");
    let t4 = p1.body["project"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["title"].as_str().unwrap().starts_with("Fix"))
        .unwrap()
        .clone();
    assert_eq!(t4["title"], "Fix &quot;Buy now&quot; button &amp; footer &lt;&#x2F;div&gt;");
    assert_eq!(t4["dueDate"], "2025-11-30T00:00:00.000Z");
}

#[tokio::test]
async fn member_stored_by_email_and_legacy_id_owner_have_access() {
    let app = TestApp::with_fixtures().await;
    let aoife = app.login("aoife.obrien@example.com", "obrien's-Pass-42").await;
    let token = aoife.body["token"].as_str().unwrap();
    let p2 = app.get("/api/projects/bbbbbbbb-0000-4000-8000-000000000002", token).await;
    assert_eq!(p2.status, 200, "the e-mail member entry resolves to Aoife");
    assert_eq!(p2.body["project"]["createdBy"], "1756887342317");
    let marten = app.login("marten.oberg@example.com", "legacy-Marten-2025").await;
    let t = marten.body["token"].as_str().unwrap();
    let created = app.create_task(t, "bbbbbbbb-0000-4000-8000-000000000002", "by the legacy-id user").await;
    assert_eq!(created.status, 200);
    assert_eq!(created.body["task"]["createdBy"], "1756887342317");
}

/// Files nobody wrote to are left byte-identical by start-up and shutdown compaction; files that changed keep
/// every unknown key and the legacy layout.
#[tokio::test]
async fn compaction_rewrites_only_changed_files_and_keeps_the_legacy_format() {
    let mut app = TestApp::with_fixtures().await;
    let dir = app.data_dir().to_owned();
    let original_users = std::fs::read(dir.join("users.json")).unwrap();
    let original_teams = std::fs::read(dir.join("teams.json")).unwrap();
    let token = token_for("aaaaaaaa-0000-4000-8000-000000000002", "priya.raman@example.org");
    app.create_task(&token, "bbbbbbbb-0000-4000-8000-000000000001", "New task").await;
    app.stop().await;

    assert!(std::fs::read(dir.join("users.json")).unwrap() == original_users, "users.json untouched");
    assert!(std::fs::read(dir.join("teams.json")).unwrap() == original_teams, "teams.json untouched");
    let bytes = std::fs::read(dir.join("projects.json")).unwrap();
    assert!(!bytes.ends_with(b"\n"), "no trailing newline, as JSON.stringify writes");
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("{\n  \"projects\": [\n    {\n      \"id\": "));
    assert!(text.contains("Café Menu Redesign ☕"), "non-ASCII written raw");
    let projects = read_json(&dir.join("projects.json"));
    let p1 = &projects["projects"][0];
    let tasks = p1["tasks"].as_array().unwrap();
    assert_eq!(tasks.last().unwrap()["title"], "New task");
    let t5 = tasks.iter().find(|t| t.get("labels").is_some()).expect("unknown task keys survive");
    assert_eq!(t5["labels"], json!(["i18n", "print"]));
    assert_eq!(t5["estimateHours"], 6);
    let original = read_json(&fixtures_dir().join("projects.json"));
    assert_eq!(projects["projects"].as_array().unwrap().len(), original["projects"].as_array().unwrap().len());
    let p3 = projects["projects"].as_array().unwrap().iter().find(|p| p["name"] == "Harbour Festival Poster").unwrap();
    assert_eq!(p3["status"], "in_progress", "aliases are written canonically");
    let m = &p3["milestones"][0];
    assert_eq!(m["title"], "Design freeze");
    assert!(m.get("name").is_none(), "`name` is read but never written");
    assert_eq!(m["orderIndex"], 0);
    let acts = read_json(&dir.join("data/activities/bbbbbbbb-0000-4000-8000-000000000001.json"));
    assert_eq!(acts["activities"].as_array().unwrap().len(), 4);
    assert_eq!(acts["activities"][0]["type"], "task.created", "newest first");
}

/// A stored hash of another cost is upgraded at the next successful login (tests run at cost 4; the fixture
/// hashes are cost 10), and the user's `updatedAt` is not touched.
#[tokio::test]
async fn a_hash_of_another_cost_is_rehashed_on_login() {
    let mut app = TestApp::with_fixtures().await;
    assert_eq!(app.login("lena.fischer@example.com", "rocket-Lena-9000").await.status, 200);
    app.stop().await;
    let users = read_json(&app.data_dir().join("users.json"));
    let lena =
        users["users"].as_array().unwrap().iter().find(|u| u["email"] == "lena.fischer@example.com").unwrap().clone();
    assert!(lena["password"].as_str().unwrap().starts_with("$2b$04$"), "{lena}");
    assert!(lena.get("updatedAt").is_none());
    let app = app.restart().await;
    assert_eq!(app.login("lena.fischer@example.com", "rocket-Lena-9000").await.status, 200);
}

#[tokio::test]
async fn a_corrupt_legacy_file_refuses_to_start_naming_it() {
    let dir = tempfile::TempDir::new().unwrap();
    copy_fixtures(dir.path());
    std::fs::write(dir.path().join("projects.json"), "{\"projects\": [ {").unwrap();
    let cfg = crate::support::test_config(dir.path(), &[]);
    let err = fluxstudio::app::start(fluxstudio::app::ServerOptions::new(cfg, crate::support::SECRET.into()))
        .await
        .err()
        .expect("refused");
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("projects.json"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("projects.json")).unwrap(),
        "{\"projects\": [ {",
        "left untouched"
    );
}
