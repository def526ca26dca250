use std::sync::Arc;

use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::support::{test_config, Resp, TestApp, SECRET};

async fn app_with_limits() -> TestApp {
    let dir = Arc::new(TempDir::new().unwrap());
    let cfg = test_config(dir.path(), &["--upload-max-file", "2KiB", "--upload-max-files", "3"]);
    let owned_db = cfg.database_url.clone();
    let server = fluxstudio::app::start(fluxstudio::app::ServerOptions::new(cfg, SECRET.into())).await.unwrap();
    TestApp {
        base: format!("http://{}", server.addr),
        client: reqwest::Client::new(),
        server: Some(server),
        dir,
        owned_db,
    }
}

fn part(name: &str, mime: &str, bytes: &[u8]) -> Part {
    Part::bytes(bytes.to_vec()).file_name(name.to_owned()).mime_str(mime).unwrap()
}

async fn upload(app: &TestApp, token: &str, form: Form) -> Resp {
    let resp = app
        .client
        .post(format!("{}/api/files/upload", app.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    Resp { status, body, headers }
}

fn uploads_count(app: &TestApp) -> usize {
    std::fs::read_dir(app.data_dir().join("uploads")).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn upload_list_get_update_delete() {
    let app = app_with_limits().await;
    let (token, user_id) = app.signup("f@example.com").await;
    let (other, _) = app.signup("g@example.com").await;
    let pid = app.create_project(&token, "Files").await;
    let form = Form::new()
        .part("files", part("../../etc/Menu Draft.PDF", "application/pdf", b"%PDF-1.4 tiny"))
        .part("files", part("logo.png", "application/octet-stream", b"\x89PNG...."))
        .text("projectId", pid.clone());
    let r = upload(&app, &token, form).await;
    assert_eq!(r.status, 200, "{}", r.body);
    insta::assert_json_snapshot!("files_uploaded", r.body, {
        ".files[].id" => "[id]", ".files[].filename" => "[name]", ".files[].path" => "[path]", ".files[].url" => "[url]",
        ".files[].uploadedBy" => "[user]", ".files[].uploadedAt" => "[ts]", ".files[].projectId" => "[project]"
    });
    let files = r.body["files"].as_array().unwrap().clone();
    assert_eq!(files[0]["originalName"], "Menu Draft.PDF", "directories stripped from client names");
    assert_eq!(files[1]["mimetype"], "image/png", "octet-stream takes the extension's type");
    assert_eq!(files[0]["uploadedBy"], user_id.as_str());
    let fid = files[0]["id"].as_str().unwrap().to_owned();
    let url = files[1]["url"].as_str().unwrap().to_owned();
    assert!(files[0]["filename"].as_str().unwrap().ends_with(".pdf"));

    let bytes = app.client.get(format!("{}{}", app.base, url)).send().await.unwrap();
    assert_eq!(bytes.status(), 200);
    assert_eq!(bytes.headers()["content-type"], "image/png");
    assert_eq!(bytes.headers()["x-content-type-options"], "nosniff");
    assert_eq!(bytes.bytes().await.unwrap().as_ref(), b"\x89PNG....");
    for bad in ["/uploads/..%2Fusers.json", "/uploads/.jwt-secret", "/uploads/nope.png"] {
        assert_eq!(app.client.get(format!("{}{bad}", app.base)).send().await.unwrap().status(), 404, "{bad}");
    }

    assert_eq!(app.get("/api/files", &token).await.body["files"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.get(&format!("/api/files?projectId={pid}"), &token).await.body["files"].as_array().unwrap().len(),
        2
    );
    assert_eq!(app.get("/api/files?projectId=other", &token).await.body["files"].as_array().unwrap().len(), 0);
    assert_eq!(app.get("/api/files", &other).await.body["files"].as_array().unwrap().len(), 0);
    let r = app.get(&format!("/api/files/{fid}"), &other).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (404, Some("file_not_found")));
    assert_eq!(app.get(&format!("/api/files/{fid}"), &token).await.body["id"], fid.as_str());

    let r = app
        .put(
            &format!("/api/files/{fid}"),
            &token,
            json!({"description": "menu", "tags": [" a ", "b"], "isPublic": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["tags"], json!(["a", "b"]));
    assert!(r.body["updatedAt"].is_string());
    let r = app.put(&format!("/api/files/{fid}"), &token, json!({"description": ""})).await;
    assert_eq!(r.body["description"], "", "description can be cleared");
    for (body, field) in [
        (json!({"isPublic": "yes"}), "Is public"),
        (json!({"tags": "a"}), "Tags"),
        (json!({"tags": [""]}), "Tags"),
        (json!({"description": 1}), "Description"),
    ] {
        let r = app.put(&format!("/api/files/{fid}"), &token, body.clone()).await;
        assert_eq!((r.status.as_u16(), r.body["field"].as_str()), (400, Some(field)), "{body}");
    }
    assert_eq!(app.delete(&format!("/api/files/{fid}"), &other).await.status, 404);
    let r = app.delete(&format!("/api/files/{fid}"), &token).await;
    assert_eq!(r.body, json!({"message": "File deleted successfully"}));
    assert_eq!(uploads_count(&app), 1, "the bytes are removed with the record");
}

#[tokio::test]
async fn upload_refusals_leave_nothing_behind() {
    let app = app_with_limits().await;
    let (token, _) = app.signup("r@example.com").await;
    let (stranger, _) = app.signup("s@example.com").await;
    let foreign = app.create_project(&stranger, "Not yours").await;

    let big = vec![b'x'; 3000];
    let cases: Vec<(Form, u16, &str)> = vec![
        (
            Form::new()
                .part("files", part("a.txt", "text/plain", b"ok"))
                .part("files", part("big.txt", "text/plain", &big)),
            413,
            "payload_too_large",
        ),
        (
            Form::new()
                .part("files", part("1.txt", "text/plain", b"1"))
                .part("files", part("2.txt", "text/plain", b"2"))
                .part("files", part("3.txt", "text/plain", b"3"))
                .part("files", part("4.txt", "text/plain", b"4")),
            400,
            "too_many_files",
        ),
        (Form::new().part("files", part("evil.exe", "application/octet-stream", b"MZ")), 415, "unsupported_file_type"),
        (Form::new().part("files", part("fake.png", "text/html", b"<script>")), 415, "unsupported_file_type"),
        (Form::new().part("files", part("x.svg.exe", "image/svg+xml", b"<svg/>")), 415, "unsupported_file_type"),
        (Form::new().part("attachment", part("a.txt", "text/plain", b"a")), 400, "validation_failed"),
        (Form::new().text("projectId", "x"), 400, "validation_failed"),
        (
            Form::new().part("files", part("a.txt", "text/plain", b"a")).text("projectId", foreign.clone()),
            404,
            "project_not_found",
        ),
    ];
    for (form, status, code) in cases {
        let r = upload(&app, &token, form).await;
        assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (status, Some(code)), "{}", r.body);
    }
    assert_eq!(uploads_count(&app), 0, "no partial files");
    assert_eq!(app.get("/api/files", &token).await.body["files"].as_array().unwrap().len(), 0, "no records");
    let r = app.raw(Method::POST, "/api/files/upload", Some(&token), Some("application/json"), "{}").await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (415, Some("unsupported_media_type")));
}

#[tokio::test]
async fn svg_is_served_sandboxed() {
    let app = app_with_limits().await;
    let (token, _) = app.signup("svg@example.com").await;
    let r =
        upload(&app, &token, Form::new().part("files", part("logo.svg", "image/svg+xml", b"<svg onload=alert(1)/>")))
            .await;
    let url = r.body["files"][0]["url"].as_str().unwrap().to_owned();
    let resp = app.client.get(format!("{}{}", app.base, url)).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "image/svg+xml");
    assert_eq!(resp.headers()["content-security-policy"], "default-src 'none'; style-src 'unsafe-inline'; sandbox");
}
