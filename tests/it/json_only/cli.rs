//! `fluxstudio user …` against a data dir with no server (direct) and with a running server (control socket).

use std::io::Write;
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::support::{copy_fixtures, read_json, TestApp};

fn fluxstudio(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fluxstudio"))
        .args(["--no-env-file", "--data-dir", dir.to_str().unwrap()])
        .args(args)
        .env("FLUX_BCRYPT_COST", "4")
        .env_remove("JWT_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn user_commands_work_on_a_data_dir_without_a_server() {
    let dir = TempDir::new().unwrap();
    copy_fixtures(dir.path());
    let (code, out, err) = fluxstudio(
        dir.path(),
        &["user", "create", "--email", "ops@example.org", "--name", "Ops", "--admin", "--password-stdin"],
        Some("Admin-Ops-2025!\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ops@example.org (admin) in json store"), "{out}");
    let (code, _, err) = fluxstudio(
        dir.path(),
        &["user", "create", "--email", "OPS@example.org", "--name", "Again", "--password-stdin"],
        Some("Admin-Ops-2025!"),
    );
    assert_eq!(code, 1, "duplicate e-mail: {err}");
    let (code, _, _) = fluxstudio(
        dir.path(),
        &["user", "create", "--email", "weak@example.org", "--name", "W", "--password-stdin"],
        Some("short"),
    );
    assert_eq!(code, 2, "password rules");

    let (code, out, _) = fluxstudio(dir.path(), &["user", "grant-admin", "lena.fischer@example.com"], None);
    assert_eq!(code, 0);
    assert!(out.contains("designer -> admin"), "{out}");
    let (code, out, _) = fluxstudio(dir.path(), &["user", "grant-admin", "lena.fischer@example.com"], None);
    assert_eq!(code, 0);
    assert!(out.contains("already admin"));
    let (code, _, _) = fluxstudio(dir.path(), &["user", "grant-admin", "nobody@example.com"], None);
    assert_eq!(code, 1);
    let (code, _, _) = fluxstudio(dir.path(), &["user", "disable", "jose.alvarez@example.com"], None);
    assert_eq!(code, 0);

    let users = read_json(&dir.path().join("users.json"));
    let users = users["users"].as_array().unwrap();
    let lena = users.iter().find(|u| u["email"] == "lena.fischer@example.com").unwrap();
    assert_eq!(lena["userType"], "admin");
    assert!(lena["updatedAt"].is_string());
    let jose = users.iter().find(|u| u["email"] == "jose.alvarez@example.com").unwrap();
    assert_eq!(jose["isActive"], false);
    let ops = users.iter().find(|u| u["email"] == "ops@example.org").unwrap();
    assert!(ops["password"].as_str().unwrap().starts_with("$2b$04$"));
}

#[tokio::test]
async fn user_commands_reach_a_running_server_through_the_control_socket() {
    let app = TestApp::with_fixtures().await;
    let dir = app.data_dir().to_owned();
    let before = app.login("jose.alvarez@example.com", "jose-Alvarez-3141").await;
    let token = before.body["token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/api/auth/me", &token).await.status, 200);

    let d = dir.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || fluxstudio(&d, &["user", "disable", "jose.alvarez@example.com"], None))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(app.get("/api/auth/me", &token).await.status, 401, "existing tokens refused once disabled");
    let login = app.login("jose.alvarez@example.com", "jose-Alvarez-3141").await;
    assert_eq!((login.status.as_u16(), login.body["code"].as_str()), (403, Some("account_disabled")));

    let d = dir.clone();
    let (code, _, _) =
        tokio::task::spawn_blocking(move || fluxstudio(&d, &["user", "enable", "jose.alvarez@example.com"], None))
            .await
            .unwrap();
    assert_eq!(code, 0);
    assert_eq!(app.get("/api/auth/me", &token).await.status, 200);

    let d = dir.clone();
    let (code, _, _) = tokio::task::spawn_blocking(move || {
        fluxstudio(&d, &["user", "set-password", "zoe.tran@example.com", "--password-stdin"], Some("zoe-New-Pass-1"))
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        app.login("zoe.tran@example.com", "zoe-New-Pass-1").await.status,
        200,
        "a Google-only account gains a password"
    );
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let app = TestApp::spawn().await;
    let cfg = crate::support::test_config(app.data_dir(), &[]);
    let err = fluxstudio::app::start(fluxstudio::app::ServerOptions::new(cfg, crate::support::SECRET.into()))
        .await
        .err()
        .expect("refused");
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("is locked by another fluxstudio instance"), "{err}");
}

#[test]
fn invalid_configuration_exits_2_with_one_line() {
    let dir = TempDir::new().unwrap();
    for (var, value) in [("PORT", "abc"), ("FLUX_STORE", "mongo"), ("JWT_SECRET", "short"), ("FLUX_STORE", "postgres")]
    {
        let out = Command::new(env!("CARGO_BIN_EXE_fluxstudio"))
            .args(["--no-env-file", "--data-dir", dir.path().to_str().unwrap(), "serve", "--check-config"])
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
        assert!(!err.contains("short") || var != "JWT_SECRET", "secret value never echoed");
    }
}
