//! `POST /api/auth/google` against a local JWKS server with a fixture RSA key.

use std::sync::Arc;

use reqwest::Method;
use serde_json::json;
use tempfile::TempDir;

use crate::google_support::{sign_id_token, JwksServer};
use crate::support::{copy_fixtures, test_config, TestApp, SECRET};

const CLIENT: &str = "test-client.apps.googleusercontent.com";

async fn app_with_google(jwks: &JwksServer) -> TestApp {
    let dir = Arc::new(TempDir::new().unwrap());
    copy_fixtures(dir.path());
    let mut cfg = test_config(dir.path(), &[]);
    cfg.google_client_ids = vec![CLIENT.into()];
    cfg.google_jwks_url = jwks.url.clone();
    let server = fluxstudio::app::start(fluxstudio::app::ServerOptions::new(cfg, SECRET.into())).await.unwrap();
    TestApp {
        base: format!("http://{}", server.addr),
        client: reqwest::Client::new(),
        server: Some(server),
        dir,
        owned_db: None,
    }
}

async fn google(app: &TestApp, credential: serde_json::Value) -> crate::support::Resp {
    app.call(Method::POST, "/api/auth/google", None, Some(json!({ "credential": credential }))).await
}

#[tokio::test]
async fn google_sign_in_links_creates_and_refuses_as_specified() {
    let jwks = JwksServer::start().await;
    let app = app_with_google(&jwks).await;

    // Known subject (fixture user 1 has googleId 104729384756102938475) → that user, legacy id and all.
    let t = sign_id_token(CLIENT, json!({"sub": "104729384756102938475", "email": "changed@example.com", "name": "M"}));
    let r = google(&app, json!(t)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["user"]["id"], "1756887342317");

    // Same e-mail, no googleId stored → linked, password kept.
    let t = sign_id_token(CLIENT, json!({"sub": "g-lena", "email": "lena.fischer@example.com"}));
    let r = google(&app, json!(t)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["user"]["id"], "aaaaaaaa-0000-4000-8000-000000000007");
    assert_eq!(r.body["user"]["googleId"], "g-lena");
    assert_eq!(app.login("lena.fischer@example.com", "rocket-Lena-9000").await.status, 200);

    // E-mail linked to another subject → 409.
    let t = sign_id_token(CLIENT, json!({"sub": "someone-else", "email": "marten.oberg@example.com"}));
    let r = google(&app, json!(t)).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (409, Some("email_taken")));

    // Unknown e-mail → a new client account without a password.
    let t = sign_id_token(CLIENT, json!({"sub": "g-new", "email": "new.person@example.com", "name": "New Person"}));
    let r = google(&app, json!(t)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["user"]["userType"], "client");
    assert_eq!(r.body["user"]["name"], "New Person");
    assert_eq!(app.login("new.person@example.com", "anything-123").await.status, 401);

    // Disabled account (fixture user 6, googleId set) → 403.
    let users = crate::support::read_json(&app.data_dir().join("users.json"));
    let ines =
        users["users"].as_array().unwrap().iter().find(|u| u["email"] == "ines.dubois@example.org").unwrap().clone();
    let t = sign_id_token(CLIENT, json!({"sub": ines["googleId"], "email": "ines.dubois@example.org"}));
    let r = google(&app, json!(t)).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (403, Some("account_disabled")));

    // Verification failures.
    let wrong_aud = sign_id_token("other-client", json!({"sub": "x", "email": "x@example.com"}));
    let r = google(&app, json!(wrong_aud)).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (401, Some("google_auth_failed")));
    assert!(r.body.get("error").is_none(), "no exception text");
    let unverified = sign_id_token(CLIENT, json!({"sub": "x", "email": "x@example.com", "email_verified": false}));
    let r = google(&app, json!(unverified)).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (400, Some("google_email_unverified")));
    let r = google(&app, json!(42)).await;
    assert_eq!((r.status.as_u16(), r.body["field"].as_str()), (400, Some("Credential")));
}

#[tokio::test]
async fn google_without_client_id_is_503_not_configured() {
    let app = TestApp::spawn().await;
    let r = app.call(Method::POST, "/api/auth/google", None, Some(json!({"credential": "x.y.z"}))).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (503, Some("google_not_configured")));
}

#[tokio::test]
async fn google_keys_unreachable_is_503_with_retry_after() {
    let jwks = JwksServer::start().await;
    jwks.set_failing(true);
    let app = app_with_google(&jwks).await;
    let t = sign_id_token(CLIENT, json!({"sub": "x", "email": "x@example.com"}));
    let r = google(&app, json!(t)).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (503, Some("google_unavailable")));
    assert_eq!(r.headers["retry-after"], "5");
}
