use reqwest::Method;
use serde_json::json;

use crate::support::TestApp;

#[tokio::test]
async fn create_get_list_update_delete_project() {
    let app = TestApp::spawn().await;
    let (token, _) = app.signup("owner@example.com").await;
    let r = app
        .post("/api/projects", &token, json!({"name": "  Spring Lookbook ", "description": "Look & feel <b>", "dueDate": "2025-12-01", "members": ["ignored"], "bogus": 1}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    insta::assert_json_snapshot!("project_created", r.body, {
        ".project.id" => "[id]", ".project.createdBy" => "[user]", ".project.members[].userId" => "[user]",
        ".project.members[].joinedAt" => "[ts]", ".project.createdAt" => "[ts]", ".project.updatedAt" => "[ts]",
        ".project.startDate" => "[ts]"
    });
    let id = r.body["project"]["id"].as_str().unwrap().to_owned();

    let got = app.get(&format!("/api/projects/{id}"), &token).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["project"]["name"], "Spring Lookbook");
    assert_eq!(got.body["project"]["description"], "Look & feel <b>");

    let list = app.get("/api/projects", &token).await;
    assert_eq!(list.body["success"], true);
    assert_eq!(list.body["projects"].as_array().unwrap().len(), 1);

    let upd = app
        .put(
            &format!("/api/projects/{id}"),
            &token,
            json!({"status": "on-hold", "priority": "urgent", "dueDate": null}),
        )
        .await;
    assert_eq!(upd.status, 200, "{}", upd.body);
    assert_eq!(upd.body["message"], "Project updated successfully");
    assert_eq!(upd.body["project"]["status"], "on_hold");
    assert_eq!(upd.body["project"]["priority"], "urgent");
    assert_eq!(upd.body["project"]["dueDate"], json!(null));
    assert_eq!(upd.body["project"]["name"], "Spring Lookbook");

    let bad = app.put(&format!("/api/projects/{id}"), &token, json!({"status": "nope"})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["success"], false, "PUT field errors use the success family");
    assert_eq!(bad.body["field"], "Status");

    let del = app.delete(&format!("/api/projects/{id}"), &token).await;
    assert_eq!(del.body, json!({"success": true, "message": "Project deleted successfully"}));
    let gone = app.get(&format!("/api/projects/{id}"), &token).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.body, json!({"success": false, "error": "Project not found", "code": "project_not_found"}));
}

#[tokio::test]
async fn non_members_get_the_missing_project_answer() {
    let app = TestApp::spawn().await;
    let (owner, _) = app.signup("owner@example.com").await;
    let (stranger, _) = app.signup("stranger@example.com").await;
    let id = app.create_project(&owner, "Secret").await;
    let missing = app.get("/api/projects/does-not-exist", &stranger).await;
    let foreign = app.get(&format!("/api/projects/{id}"), &stranger).await;
    assert_eq!(foreign.status, 404);
    assert_eq!(foreign.body, missing.body);
    let put = app.put(&format!("/api/projects/{id}"), &stranger, json!({"name": "x"})).await;
    assert_eq!(put.status, 404);
    assert_eq!(put.body, json!({"message": "Project not found", "code": "project_not_found"}));
    let del = app.delete(&format!("/api/projects/{id}"), &stranger).await;
    assert_eq!(del.status, 404);
    let tasks = app.get(&format!("/api/projects/{id}/tasks"), &stranger).await;
    assert_eq!(tasks.status, 404);
    let long = app.get(&format!("/api/projects/{}", "x".repeat(500)), &owner).await;
    assert_eq!(long.status, 404);
    assert!(app.get("/api/projects", &stranger).await.body["projects"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn project_validation_errors_name_the_field() {
    let app = TestApp::spawn().await;
    let (token, _) = app.signup("v@example.com").await;
    let cases = [
        (json!({}), "Project name"),
        (json!({"name": "   "}), "Project name"),
        (json!({"name": 42}), "Project name"),
        (json!({"name": "n".repeat(201)}), "Project name"),
        (json!({"name": "ok", "description": "d".repeat(2001)}), "Description"),
        (json!({"name": "ok", "status": "done"}), "Status"),
        (json!({"name": "ok", "priority": "critical"}), "Priority"),
        (json!({"name": "ok", "dueDate": "next week"}), "Due date"),
        (json!({"name": "ok", "startDate": 12}), "Start date"),
        (json!({"name": "ok", "teamId": "no-such-team"}), "Team ID"),
    ];
    for (body, field) in cases {
        let r = app.post("/api/projects", &token, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.body["success"], false);
        assert_eq!(r.body["code"], "validation_failed");
        assert_eq!(r.body["field"], field, "{body}");
    }
}

#[tokio::test]
async fn channel_link_and_read() {
    let app = TestApp::spawn().await;
    let (token, _) = app.signup("c@example.com").await;
    let id = app.create_project(&token, "Chan").await;
    let before = app.get(&format!("/api/projects/{id}/channel"), &token).await;
    assert_eq!(before.body, json!({"channelMetadata": null, "hasChannel": false}));
    let missing = app.post(&format!("/api/projects/{id}/channel"), &token, json!({})).await;
    assert_eq!((missing.status.as_u16(), missing.body["field"].as_str()), (400, Some("Channel ID")));
    let linked = app.post(&format!("/api/projects/{id}/channel"), &token, json!({"channelId": "chan-42"})).await;
    assert_eq!(linked.status, 200);
    assert_eq!(linked.body["project"]["channelMetadata"]["channelId"], "chan-42");
    let after = app.get(&format!("/api/projects/{id}/channel"), &token).await;
    assert_eq!(after.body["hasChannel"], true);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_route_not_found() {
    let app = TestApp::spawn().await;
    let r = app.call(Method::GET, "/api/nope", None, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body, json!({"message": "API endpoint not found", "code": "route_not_found"}));
    let r = app.call(Method::PATCH, "/api/projects", None, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["code"], "route_not_found");
    let h = app.call(Method::GET, "/api/health", None, None).await;
    assert_eq!(h.body["status"], "ok");
    match crate::support::store_run() {
        Some("postgres") => {
            assert_eq!(h.body["store"]["mode"], "postgres");
            assert_eq!(h.body["database"], json!({"usePostgres": true, "dualWriteEnabled": false}));
        }
        Some("dual-json") => {
            assert_eq!(h.body["store"]["mode"], "dual-json");
            assert_eq!(h.body["database"], json!({"usePostgres": false, "dualWriteEnabled": true}));
        }
        Some("dual-postgres") => {
            assert_eq!(h.body["store"]["mode"], "dual-postgres");
            assert_eq!(h.body["database"], json!({"usePostgres": true, "dualWriteEnabled": true}));
        }
        _ => {
            assert_eq!(h.body["store"]["mode"], "json");
            assert_eq!(h.body["database"], json!({"usePostgres": false, "dualWriteEnabled": false}));
        }
    }
    let h = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(h.status, 200);
    let csrf = app.call(Method::GET, "/api/csrf-token", None, None).await;
    assert_eq!(csrf.body, json!({"csrfToken": ""}));
}

#[tokio::test]
async fn the_client_build_is_served_with_an_index_fallback() {
    let dir = std::sync::Arc::new(tempfile::TempDir::new().unwrap());
    let build = dir.path().join("build");
    std::fs::create_dir_all(&build).unwrap();
    std::fs::write(build.join("index.html"), "<html>app</html>").unwrap();
    std::fs::write(build.join("app.js"), "console.log(1)").unwrap();
    let cfg = crate::support::test_config(&dir.path().join("data"), &["--static-dir", build.to_str().unwrap()]);
    let owned_db = cfg.database_url.clone();
    let server =
        fluxstudio::app::start(fluxstudio::app::ServerOptions::new(cfg, crate::support::SECRET.into())).await.unwrap();
    let app = TestApp {
        base: format!("http://{}", server.addr),
        client: reqwest::Client::new(),
        server: Some(server),
        dir,
        owned_db,
    };
    let js = app.call(Method::GET, "/app.js", None, None).await;
    assert_eq!((js.status.as_u16(), js.body.as_str()), (200, Some("console.log(1)")));
    let deep = app.call(Method::GET, "/projects/123/board", None, None).await;
    assert_eq!((deep.status.as_u16(), deep.body.as_str()), (200, Some("<html>app</html>")));
    let api = app.call(Method::GET, "/api/unknown", None, None).await;
    assert_eq!(api.body["code"], "route_not_found");
}
