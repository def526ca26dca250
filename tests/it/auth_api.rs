use reqwest::Method;
use serde_json::json;

use crate::support::{TestApp, SECRET};

#[tokio::test]
async fn signup_returns_token_and_public_user() {
    let app = TestApp::spawn().await;
    let r = app
        .call(Method::POST, "/api/auth/signup", None, Some(json!({"email": "  Lena@Example.com ", "password": "password-123", "name": " Lena ", "userType": "designer"})))
        .await;
    assert_eq!(r.status, 200);
    insta::assert_json_snapshot!("signup", r.body, {
        ".token" => "[token]", ".user.id" => "[id]", ".user.createdAt" => "[ts]"
    });
    let me = app.get("/api/auth/me", r.body["token"].as_str().unwrap()).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["email"], "Lena@Example.com");
    assert!(me.body.get("password").is_none());
}

#[tokio::test]
async fn signup_validation_follows_the_check_order() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"password": "password-123", "name": "A"}), 400, "validation_failed", Some("Email")),
        (json!({"email": "a@b.co", "name": "A"}), 400, "validation_failed", Some("Password")),
        (json!({"email": "a@b.co", "password": "password-123"}), 400, "validation_failed", Some("Name")),
        (json!({"email": 5, "password": "password-123", "name": "A"}), 400, "validation_failed", Some("Email")),
        (
            json!({"email": "a@b.co", "password": "password-123", "name": "A", "userType": "boss"}),
            400,
            "validation_failed",
            Some("User type"),
        ),
        (
            json!({"email": "a@b.co", "password": "password-123", "name": "A", "userType": "admin"}),
            403,
            "admin_signup_forbidden",
            None,
        ),
        (
            json!({"email": "not-an-email", "password": "password-123", "name": "A"}),
            400,
            "validation_failed",
            Some("Email"),
        ),
        (json!({"email": "a@b.co", "password": "short", "name": "A"}), 400, "validation_failed", Some("Password")),
        (
            json!({"email": "a@b.co", "password": "x".repeat(73), "name": "A"}),
            400,
            "validation_failed",
            Some("Password"),
        ),
        (
            json!({"email": "a@b.co", "password": "password-123", "name": "n".repeat(256)}),
            400,
            "validation_failed",
            Some("Name"),
        ),
    ];
    for (body, status, code, field) in cases {
        let r = app.call(Method::POST, "/api/auth/signup", None, Some(body.clone())).await;
        assert_eq!(r.status, status, "{body} -> {}", r.body);
        assert_eq!(r.body["code"], code, "{body}");
        assert_eq!(r.body["field"].as_str(), field, "{body}");
        assert!(r.body.get("message").is_some());
    }
    // Nothing was created by the refused admin signup.
    assert_eq!(app.login("a@b.co", "password-123").await.status, 401);
}

#[tokio::test]
async fn duplicate_email_is_409_case_insensitively_and_concurrent_signups_make_one_account() {
    let app = TestApp::spawn().await;
    app.signup("dup@example.com").await;
    let r = app
        .call(
            Method::POST,
            "/api/auth/signup",
            None,
            Some(json!({"email": "DUP@example.com", "password": "password-123", "name": "D"})),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body["code"], "email_taken");

    let mut handles = Vec::new();
    for _ in 0..8 {
        let client = app.client.clone();
        let url = format!("{}/api/auth/signup", app.base);
        handles.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"email": "race@example.com", "password": "password-123", "name": "R"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 409));
}

#[tokio::test]
async fn login_errors_and_success() {
    let app = TestApp::spawn().await;
    app.signup("user@example.com").await;
    let ok = app.login("  USER@example.com ", "password-123").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["user"]["email"], "user@example.com");
    let wrong = app.login("user@example.com", "nope-nope").await;
    assert_eq!((wrong.status.as_u16(), wrong.body["code"].as_str()), (401, Some("invalid_credentials")));
    let unknown = app.login("ghost@example.com", "password-123").await;
    assert_eq!(unknown.body, wrong.body);
    let missing = app.call(Method::POST, "/api/auth/login", None, Some(json!({"email": "user@example.com"}))).await;
    assert_eq!((missing.status.as_u16(), missing.body["code"].as_str()), (400, Some("validation_failed")));
}

#[tokio::test]
async fn every_password_login_costs_exactly_one_verification() {
    let app = TestApp::spawn().await;
    app.signup("counted@example.com").await;
    let passwords = app.server.as_ref().unwrap().state.passwords.clone();
    for (email, pw) in [
        ("counted@example.com", "password-123"),
        ("counted@example.com", "wrong-one"),
        ("nobody@example.com", "password-123"),
    ] {
        let before = passwords.verification_count();
        app.login(email, pw).await;
        assert_eq!(passwords.verification_count() - before, 1, "{email}/{pw}");
    }
}

#[tokio::test]
async fn token_failures_are_401_with_codes() {
    let app = TestApp::spawn().await;
    let (token, user_id) = app.signup("tok@example.com").await;
    let none = app.call(Method::GET, "/api/auth/me", None, None).await;
    assert_eq!((none.status.as_u16(), none.body["code"].as_str()), (401, Some("auth_required")));
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    let forged = app.get("/api/auth/me", &format!("{token}x")).await;
    assert_eq!((forged.status.as_u16(), forged.body["code"].as_str()), (401, Some("invalid_token")));
    let none_alg =
        app.get("/api/auth/me", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpZCI6IngiLCJleHAiOjk5OTk5OTk5OTl9.").await;
    assert_eq!(none_alg.body["code"], "invalid_token");
    let basic = app
        .client
        .get(format!("{}/api/auth/me", app.base))
        .header("authorization", format!("Basic {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);

    // An expired token signed with the right secret.
    let now = chrono::Utc::now().timestamp();
    let claims =
        json!({"id": user_id, "email": "tok@example.com", "userType": "client", "iat": now - 1000, "exp": now - 10});
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let r = app.get("/api/auth/me", &expired).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (401, Some("token_expired")));
    assert!(r.headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));

    let logout = app.call(Method::POST, "/api/auth/logout", Some(&token), None).await;
    assert_eq!(logout.body, json!({"message": "Logged out successfully"}));
}

#[tokio::test]
async fn a_legacy_style_token_for_a_legacy_id_works() {
    let app = TestApp::with_fixtures().await;
    let now = chrono::Utc::now().timestamp();
    // What the legacy Node server signs: {id, email, userType} plus iat/exp, HS256 with the shared secret.
    let claims = json!({"id": "1756887342317", "email": "marten.oberg@example.com", "userType": "designer", "iat": now, "exp": now + 604800});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let me = app.get("/api/auth/me", &token).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["id"], "1756887342317");
    let projects = app.get("/api/projects", &token).await;
    let names: Vec<&str> =
        projects.body["projects"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"Mårten&#x27;s Portfolio &amp; Reel"), "{names:?}");
}

#[tokio::test]
async fn tokens_we_issue_carry_exactly_the_legacy_claims() {
    let app = TestApp::spawn().await;
    let (token, id) = app.signup("claims@example.com").await;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.validate_exp = true;
    let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &v,
    )
    .unwrap();
    let keys: Vec<&str> = data.claims.keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "email", "userType", "iat", "exp"]);
    assert_eq!(data.claims["id"], id.as_str());
    assert_eq!(data.claims["exp"].as_i64().unwrap() - data.claims["iat"].as_i64().unwrap(), 604800);
}
