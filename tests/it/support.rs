//! Test harness: a real server on 127.0.0.1:0 over a temporary data dir, driven through its HTTP API.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fluxstudio::app::{self, Server, ServerOptions};
use fluxstudio::config::{self, Config};
use fluxstudio::store::json::fs::Fs;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

pub const SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/legacy"))
}

/// Copies the legacy fixture set into `dir` (writable copies; the originals are read-only).
pub fn copy_fixtures(dir: &Path) {
    copy_tree(&fixtures_dir(), dir);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else if e.path().extension().is_some_and(|x| x == "json") {
            std::fs::write(&target, std::fs::read(e.path()).unwrap()).unwrap();
        }
    }
}

pub fn test_config(data_dir: &Path, extra: &[&str]) -> Config {
    let dir = data_dir.to_str().unwrap().to_owned();
    let mut args: Vec<String> = [
        "fluxstudio",
        "--no-env-file",
        "--data-dir",
        &dir,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--bcrypt-cost",
        "4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // The suite sends thousands of requests from 127.0.0.1: rate limiting is off unless a test configures it
    // (the rate-limit tests pass `--rate-limit on` or their own `--rate-*` values).
    if !extra.iter().any(|a| a.starts_with("--rate-limit")) {
        args.extend(["--rate-limit".to_owned(), "off".to_owned()]);
    }
    // One PostgreSQL with the default `max_connections` (100) serves the whole suite, and the in-process servers of
    // the JSON run's PostgreSQL tests (dual modes, two instances, switches) keep their connections until the test
    // process ends (see the closing note of issue 5: a leak not found yet). Those get a budget of 3 (no hot set);
    // the conformance runs keep 10 (5 pool + 5 hot), and tests of the hot set pass their own.
    if !extra.iter().any(|a| a.starts_with("--db-pool-max")) {
        let budget = if store_run().is_some() { "10" } else { "3" };
        args.extend(["--db-pool-max".to_owned(), budget.to_owned()]);
    }
    // The conformance runs (FLUX_TEST_STORE=postgres, dual-json or dual-postgres) give every server its own fresh database.
    if let Some(mode) = store_run().filter(|_| !extra.iter().any(|a| a.starts_with("--store"))) {
        args.extend(["--store".to_owned(), mode.to_owned(), "--database-url".to_owned(), fresh_database()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let (_, cfg) = config::parse_args(args).expect("test configuration is valid");
    cfg
}

/// True in the run of this suite against the PostgreSQL store (scripts/test.sh).
pub fn postgres_run() -> bool {
    store_run() == Some("postgres")
}

/// The store mode of this run of the suite, when it is not the default JSON store: `postgres`, `dual-json`
/// (JSON primary, every write replayed into PostgreSQL through the outbox) or `dual-postgres` (the reverse).
pub fn store_run() -> Option<&'static str> {
    match std::env::var("FLUX_TEST_STORE").as_deref() {
        Ok("postgres") => Some("postgres"),
        Ok("dual-json") => Some("dual-json"),
        Ok("dual-postgres") => Some("dual-postgres"),
        _ => None,
    }
}

fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates `flux_it_<random>` on the test server and returns its URL. scripts/test.sh drops leftovers of
/// earlier runs; a database per server keeps tests independent.
pub fn fresh_database() -> String {
    let name = format!("flux_it_{}", uuid::Uuid::new_v4().simple());
    let admin = server_url();
    let n = name.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL must be reachable for the postgres run ({admin}): {e}"));
            // The name is generated above (hex only), never input.
            sqlx::query(sqlx::AssertSqlSafe(format!("create database {n}"))).execute(&mut conn).await.unwrap();
            let _ = conn.close().await;
        })
    })
    .join()
    .expect("database created");
    let (base, _) = admin_split(&server_url());
    format!("{base}/{name}")
}

/// `postgres://user@host:port/db?query` → (`postgres://user@host:port`, `db?query`).
fn admin_split(url: &str) -> (String, String) {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[scheme_end..].find('/') {
        Some(i) => (url[..scheme_end + i].to_owned(), url[scheme_end + i + 1..].to_owned()),
        None => (url.to_owned(), String::new()),
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub server: Option<Server>,
    pub dir: Arc<TempDir>,
    /// A database the harness created for this server alone: dropped (with its connections) when the test ends,
    /// so that connections a dropped server still holds do not pile up over the run.
    pub owned_db: Option<String>,
}

pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_in(Arc::new(TempDir::new().unwrap()), Fs::default()).await
    }

    /// A server over the legacy fixture set. In the PostgreSQL and dual-json runs the fixtures are first moved into
    /// the fresh database with `fluxstudio migrate` (what an operator does), so the same tests run on every store.
    pub async fn with_fixtures() -> TestApp {
        let dir = Arc::new(TempDir::new().unwrap());
        copy_fixtures(dir.path());
        let Some(mode) = store_run() else {
            return Self::spawn_in(dir, Fs::default()).await;
        };
        let db = fresh_database();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fluxstudio"))
            .args(["--no-env-file", "--data-dir", dir.path().to_str().unwrap(), "--database-url", &db])
            .args(["migrate", "--json"])
            .env("RUST_LOG", "error")
            .output()
            .expect("fluxstudio migrate runs");
        assert!(out.status.success(), "migrate of the fixtures failed: {}", String::from_utf8_lossy(&out.stdout));
        let mut app = Self::spawn_with(dir, Fs::default(), &["--store", mode, "--database-url", &db]).await;
        app.owned_db = Some(db);
        app
    }

    pub async fn spawn_in(dir: Arc<TempDir>, fs: Fs) -> TestApp {
        Self::spawn_with(dir, fs, &[]).await
    }

    /// A server with extra command-line flags (`--rate-login 3/15m`, `--cors-origins …`, `--metrics-addr …`).
    pub async fn spawn_flags(extra: &[&str]) -> TestApp {
        Self::spawn_with(Arc::new(TempDir::new().unwrap()), Fs::default(), extra).await
    }

    pub async fn spawn_with(dir: Arc<TempDir>, fs: Fs, extra: &[&str]) -> TestApp {
        let cfg = test_config(dir.path(), extra);
        let mut opts = ServerOptions::new(cfg, SECRET.into());
        opts.json_fs = fs;
        let owned_db = match store_run() {
            Some(_) if !extra.iter().any(|a| a.starts_with("--store")) => opts.config.database_url.clone(),
            _ => None,
        };
        let server = app::start(opts).await.expect("server starts");
        TestApp {
            base: format!("http://{}", server.addr),
            client: reqwest::Client::new(),
            server: Some(server),
            dir,
            owned_db,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }

    /// Stops and starts again on the same data dir (journal replay + files).
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        Self::spawn_in(self.dir.clone(), Fs::default()).await
    }

    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp { status, body, headers }
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: &'static str,
    ) -> Resp {
        let mut req = self.client.request(method, format!("{}{}", self.base, path)).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        Resp { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)), headers }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }
    pub async fn put(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Signs up a fresh user; returns (token, user id).
    pub async fn signup(&self, email: &str) -> (String, String) {
        let r = self
            .call(
                Method::POST,
                "/api/auth/signup",
                None,
                Some(json!({"email": email, "password": "password-123", "name": email.split('@').next().unwrap()})),
            )
            .await;
        assert_eq!(r.status, 200, "signup failed: {}", r.body);
        (r.body["token"].as_str().unwrap().to_owned(), r.body["user"]["id"].as_str().unwrap().to_owned())
    }

    pub async fn login(&self, email: &str, password: &str) -> Resp {
        self.call(Method::POST, "/api/auth/login", None, Some(json!({"email": email, "password": password}))).await
    }

    pub async fn create_project(&self, token: &str, name: &str) -> String {
        let r = self.post("/api/projects", token, json!({"name": name})).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["project"]["id"].as_str().unwrap().to_owned()
    }

    pub async fn create_task(&self, token: &str, project: &str, title: &str) -> Resp {
        self.post(&format!("/api/projects/{project}/tasks"), token, json!({"title": title})).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // A test that panicked leaves its server running on the runtime; nothing to flush.
        self.server.take();
        if let Some(url) = self.owned_db.take() {
            drop_database(&url);
        }
    }
}

/// Drops a database made by [`fresh_database`], ending its sessions (on a thread of its own: this runs in `Drop`,
/// inside the test's runtime).
pub fn drop_database(url: &str) {
    let (_, name) = admin_split(url);
    let name: String = name.split('?').next().unwrap_or("").to_owned();
    if !name.starts_with("flux_it_") || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return;
    }
    let admin = server_url();
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                // The name was checked above (generated hex), never input.
                let sql = format!("drop database if exists {name} with (force)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
                let _ = conn.close().await;
            }
        })
    })
    .join();
}

/// A token as the legacy server would sign it (no password login, so no rehash side effect).
pub fn token_for(id: &str, email: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"id": id, "email": email, "userType": "client", "iat": now, "exp": now + 604800});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A `fluxstudio serve` child process on 127.0.0.1 (port picked by the kernel, the test secret, bcrypt cost 4,
/// rate limiting off), returned once it printed `listening on ADDR`.
pub struct ChildServer {
    pub child: std::process::Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub base: String,
}

impl ChildServer {
    /// `POST path` with a JSON body (and a bearer token when given): the status and the JSON answer.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (reqwest::StatusCode, Value) {
        let mut req = reqwest::Client::new().post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Signs up `email` and creates a project: (token, project id).
    pub async fn signup_with_project(&self, email: &str, project: &str) -> (String, String) {
        let (_, r) = self
            .post("/api/auth/signup", None, json!({"email": email, "password": "password-123", "name": "Child"}))
            .await;
        let token = r["token"].as_str().expect("signed up").to_owned();
        let (_, r) = self.post("/api/projects", Some(&token), json!({ "name": project })).await;
        let pid = r["project"]["id"].as_str().expect("project created").to_owned();
        (token, pid)
    }
}

pub fn spawn_child(dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> ChildServer {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fluxstudio"))
        .args(["--no-env-file", "--data-dir", dir.to_str().unwrap(), "serve", "--host", "127.0.0.1", "--port", "0"])
        .args(["--rate-limit", "off"])
        .args(extra_args)
        .env("JWT_SECRET", SECRET)
        .env("FLUX_BCRYPT_COST", "4")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("binary starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split_whitespace().nth(2).unwrap_or_else(|| panic!("unexpected first line: {line:?}")).to_owned();
    ChildServer { child, base: format!("http://{addr}"), addr }
}

/// Every task id in the data dir's `projects.json`.
pub fn task_ids_in_files(dir: &Path) -> std::collections::HashSet<String> {
    read_json(&dir.join("projects.json"))["projects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()))
        .collect()
}

pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}
