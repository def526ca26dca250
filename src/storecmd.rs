//! `fluxstudio store status` and `fluxstudio store switch` (cli.md §7). Both talk to a running server — through
//! the control socket when a server holds this data dir, else over HTTP with an admin token — and show what
//! `GET`/`PUT /api/admin/store` answer. `switch --offline` changes the persisted mode of a stopped server after the
//! same precondition checks as the live switch.

use std::time::Duration;

use serde_json::{json, Value};

use crate::cli::{ServerArgs, StoreCommand};
use crate::config::{Config, StoreMode};
use crate::store::json::lock::DataDirLock;
use crate::store::json::{JsonOptions, JsonStore};
use crate::store::modes::{self, neighbours, PersistedMode};
use crate::store::postgres::PostgresStore;

pub async fn run(cfg: Config, cmd: StoreCommand) -> i32 {
    match cmd {
        StoreCommand::Status { server, json } => status(&cfg, &server, json).await,
        StoreCommand::Switch { mode, server, force, timeout, offline } => {
            let Some(target) = StoreMode::parse(&mode) else {
                eprintln!("fluxstudio: unknown mode {mode:?} (json, dual-json, dual-postgres, postgres)");
                return 2;
            };
            if !(1..=600).contains(&timeout) {
                eprintln!("fluxstudio: --timeout must be from 1 to 600 seconds");
                return 2;
            }
            if offline {
                return switch_offline(&cfg, target, force).await;
            }
            switch(&cfg, &server, target, force, timeout).await
        }
    }
}

enum Failure {
    /// Exit code and message.
    Exit(i32, String),
}

/// One request to the running server: the control socket if a server holds this data dir and no `--server` was
/// given, else HTTP.
async fn call(cfg: &Config, server: &ServerArgs, method: &str, body: Option<Value>) -> Result<(u16, Value), Failure> {
    let socket = cfg.data_dir.join(".control.sock");
    let bytes = body.map(|b| serde_json::to_vec(&b).expect("json serialises"));
    let (status, raw) = if server.server.is_none() && DataDirLock::is_held(&cfg.data_dir) && socket.exists() {
        let (status, raw) =
            crate::control::request(&socket, method, "/v1/store", bytes).await.map_err(|e| Failure::Exit(3, e))?;
        (status.as_u16(), raw.to_vec())
    } else {
        let base = server.server.clone().unwrap_or_else(|| format!("http://127.0.0.1:{}", cfg.port));
        let Some(token) = server.token.as_deref().filter(|t| !t.is_empty()) else {
            return Err(Failure::Exit(
                2,
                format!(
                    "no server holds {} on this host; to reach {base} over HTTP give an admin token \
                     (--token or FLUX_ADMIN_TOKEN)",
                    cfg.data_dir.display()
                ),
            ));
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(660))
            .build()
            .map_err(|e| Failure::Exit(1, e.to_string()))?;
        let url = format!("{}/api/admin/store", base.trim_end_matches('/'));
        let mut req = match method {
            "PUT" => client.put(&url),
            _ => client.get(&url),
        }
        .bearer_auth(token);
        if let Some(b) = bytes {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.map_err(|e| Failure::Exit(3, format!("cannot reach the server at {base}: {e}")))?;
        let status = resp.status().as_u16();
        let raw = resp.bytes().await.map_err(|e| Failure::Exit(3, e.to_string()))?;
        (status, raw.to_vec())
    };
    let value: Value =
        serde_json::from_slice(&raw).unwrap_or_else(|_| json!({ "message": String::from_utf8_lossy(&raw) }));
    Ok((status, value))
}

fn message_of(v: &Value) -> String {
    v.get("message").and_then(Value::as_str).unwrap_or("no message").to_owned()
}

/// Non-2xx answers: 409 → 1 (refused), 503 → 3, 400 → 2, auth → 2.
fn exit_for(status: u16, body: &Value) -> i32 {
    let code = body.get("code").and_then(Value::as_str).unwrap_or("");
    let msg = message_of(body);
    match status {
        409 => {
            println!("refused: {msg}");
            eprintln!("fluxstudio: store switch refused ({code})");
            1
        }
        503 => {
            eprintln!("fluxstudio: {msg} ({code})");
            3
        }
        _ => {
            eprintln!("fluxstudio: the server answered {status}: {msg} ({code})");
            2
        }
    }
}

fn dash(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn print_status(cfg: &Config, s: &Value) {
    let mode = dash(s.get("mode"));
    println!("mode       {mode} (epoch {}, since {})", dash(s.get("epoch")), dash(s.get("since")));
    let primary = dash(s.get("primary"));
    let where_of = |store: &str| match store {
        "json" => cfg.data_dir.display().to_string(),
        _ => cfg.database_url.as_deref().map(crate::config::redact_url).unwrap_or_else(|| "(not configured)".into()),
    };
    println!("primary    {primary} {}", where_of(&primary));
    match s.get("secondary").and_then(Value::as_str) {
        Some(sec) => {
            let ok = match s.get("secondaryReachable").and_then(Value::as_bool) {
                Some(true) => "ok",
                _ => "UNREACHABLE",
            };
            println!("secondary  {sec} {}  {ok}", where_of(sec));
        }
        None => println!("secondary  -"),
    }
    let o = s.get("outbox").cloned().unwrap_or(Value::Null);
    let err = match o.get("lastReplayError") {
        Some(Value::Object(e)) => format!(
            "{} {}: {} ({})",
            dash(e.get("entity")),
            dash(e.get("id")),
            dash(e.get("message")),
            dash(e.get("at"))
        ),
        _ => "-".into(),
    };
    let oldest = match o.get("oldestPendingAgeSeconds").and_then(Value::as_f64) {
        Some(a) => format!("{a:.1} s"),
        None => "-".into(),
    };
    println!(
        "outbox     depth {}, oldest {oldest}, stuck {}, last replay {}, last error: {err}",
        dash(o.get("depth")),
        dash(o.get("stuck")),
        dash(o.get("lastReplayAt"))
    );
    println!("shadow     rate {}", dash(s.get("shadowReadRate")));
    match s.get("lastValidation") {
        Some(Value::Object(v)) => println!(
            "validate   last run {} {} (epoch {})",
            dash(v.get("at")),
            if v.get("passed").and_then(Value::as_bool) == Some(true) { "passed" } else { "failed" },
            dash(v.get("epoch"))
        ),
        _ => println!("validate   no run recorded"),
    }
    let instances = s.get("instances").and_then(Value::as_array).cloned().unwrap_or_default();
    let list: Vec<String> = instances
        .iter()
        .map(|i| {
            format!(
                "{} ({}, epoch {}, heartbeat {})",
                dash(i.get("id")),
                dash(i.get("mode")),
                dash(i.get("epoch")),
                dash(i.get("heartbeatAt"))
            )
        })
        .collect();
    println!("instances  {}: {}", list.len(), list.join("; "));
}

async fn status(cfg: &Config, server: &ServerArgs, as_json: bool) -> i32 {
    match call(cfg, server, "GET", None).await {
        Ok((200, body)) => {
            if as_json {
                println!("{body}");
            } else {
                print_status(cfg, &body);
            }
            0
        }
        Ok((status, body)) => exit_for(status, &body),
        Err(Failure::Exit(code, msg)) => {
            eprintln!("fluxstudio: {msg}");
            code
        }
    }
}

async fn switch(cfg: &Config, server: &ServerArgs, target: StoreMode, force: bool, timeout: u64) -> i32 {
    let body = json!({ "mode": target.as_str(), "force": force, "timeoutSeconds": timeout });
    match call(cfg, server, "PUT", Some(body)).await {
        Ok((200, body)) => {
            let changed = body.get("changed").and_then(Value::as_bool).unwrap_or(false);
            if changed {
                println!(
                    "switched {} -> {}; outbox depth {}",
                    dash(body.get("previousMode")),
                    dash(body.get("mode")),
                    dash(body.get("outbox").and_then(|o| o.get("depth")))
                );
            } else {
                println!("already in mode {}", dash(body.get("mode")));
            }
            println!("mode {} (epoch {})", dash(body.get("mode")), dash(body.get("epoch")));
            0
        }
        Ok((status, body)) => exit_for(status, &body),
        Err(Failure::Exit(code, msg)) => {
            eprintln!("fluxstudio: {msg}");
            code
        }
    }
}

/// Why an offline switch did not happen: exit code and message (1 refused, 2 usage/lock/data, 3 unreachable).
struct Refusal(i32, String);

fn refused(message: impl Into<String>) -> Refusal {
    Refusal(1, format!("refused: {}", message.into()))
}

async fn open_json(cfg: &Config) -> Result<JsonStore, Refusal> {
    let opts = JsonOptions::new(&cfg.data_dir);
    match tokio::task::spawn_blocking(move || JsonStore::open(opts)).await {
        Ok(Ok(j)) => Ok(j),
        Ok(Err(e)) => Err(Refusal(2, format!("fluxstudio: cannot open the JSON store: {e}"))),
        Err(e) => Err(Refusal(1, format!("fluxstudio: {e}"))),
    }
}

async fn postgres(cfg: &Config, target: StoreMode) -> Result<std::sync::Arc<PostgresStore>, Refusal> {
    if cfg.database_url.is_none() {
        return Err(refused(format!("{target} needs PostgreSQL and no database is configured (DATABASE_URL or DB_*)")));
    }
    let pg = crate::app::connect_postgres(cfg).await.map_err(|e| Refusal(3, format!("fluxstudio: {e}")))?;
    match pg.pending_migrations().await {
        Ok(p) if p.is_empty() => Ok(pg),
        Ok(p) => Err(refused(format!("{} schema migrations pending; run `fluxstudio db migrate`", p.len()))),
        Err(e) => Err(Refusal(3, format!("fluxstudio: {e}"))),
    }
}

/// Offline, nothing writes: the only instance that may be live is none.
async fn no_live_instance(pg: &PostgresStore, target: StoreMode) -> Result<(), Refusal> {
    let live = modes::live_instances(pg).await.ok_or_else(|| Refusal(3, "cannot read store_instances".into()))?;
    match live.first() {
        None => Ok(()),
        Some(i) => Err(refused(format!(
            "{target} runs a single instance and {} is live (mode {}, heartbeat {}); stop it first",
            i.id, i.mode, i.heartbeat_at
        ))),
    }
}

async fn store_outbox_pending(pg: &PostgresStore) -> Result<i64, Refusal> {
    sqlx::query_scalar("select count(*) from store_outbox where done_at is null")
        .fetch_one(pg.pool())
        .await
        .map_err(|e| Refusal(3, format!("fluxstudio: {e}")))
}

/// The preconditions and the data work of one offline step; the caller persists the new mode.
async fn offline_step(
    cfg: &Config,
    from: StoreMode,
    target: StoreMode,
    force: bool,
    state: &mut PersistedMode,
) -> Result<Option<std::sync::Arc<PostgresStore>>, Refusal> {
    let replay_first = |n: usize| {
        refused(format!(
            "the outbox holds {n} entries not yet replayed; start the server in {from} to replay them first"
        ))
    };
    Ok(match (from, target) {
        (StoreMode::Json, StoreMode::DualJson) => Some(postgres(cfg, target).await?),
        (StoreMode::DualJson, StoreMode::Json) => {
            let json = open_json(cfg).await?;
            let pending = json.outbox().pending_snapshot().len();
            if pending > 0 && !force {
                let _ = json.close().await;
                return Err(refused(format!(
                    "the outbox holds {pending} entries not yet in PostgreSQL; start the server in dual-json to \
                     replay them, or use --force (discards them and marks PostgreSQL stale)"
                )));
            }
            if pending > 0 {
                json.disable_outbox(true);
                state.pg_stale = true;
            }
            let _ = json.close().await;
            None
        }
        (StoreMode::DualJson, StoreMode::DualPostgres) => {
            let json = open_json(cfg).await?;
            let pending = json.outbox().pending_snapshot().len();
            let _ = json.close().await;
            if pending > 0 {
                return Err(replay_first(pending));
            }
            let pg = postgres(cfg, target).await?;
            modes::validation_allows(&pg, state, from, target).await.map_err(refused)?;
            no_live_instance(&pg, target).await?;
            Some(pg)
        }
        (StoreMode::DualPostgres, StoreMode::DualJson) | (StoreMode::DualPostgres, StoreMode::Postgres) => {
            let pg = postgres(cfg, target).await?;
            let pending = store_outbox_pending(&pg).await?;
            if pending > 0 {
                return Err(replay_first(pending as usize));
            }
            no_live_instance(&pg, target).await?;
            if target == StoreMode::DualJson {
                modes::validation_allows(&pg, state, from, target).await.map_err(refused)?;
            } else {
                // The journal compacted into the files (the JSON store's clean close), then the files frozen.
                let json = open_json(cfg).await?;
                json.close().await.map_err(|e| Refusal(1, format!("fluxstudio: compacting the JSON journal: {e}")))?;
                state.json_frozen_at = Some(crate::domain::time::now());
            }
            Some(pg)
        }
        (StoreMode::Postgres, StoreMode::DualPostgres) => {
            let pg = postgres(cfg, target).await?;
            no_live_instance(&pg, target).await?;
            let mut conn = pg.pool().acquire().await.map_err(|e| Refusal(3, format!("fluxstudio: {e}")))?;
            let report = crate::migrate::rollback::export_for_dual_postgres(&mut conn, &cfg.data_dir)
                .await
                .map_err(|e| Refusal(e.code, format!("fluxstudio: {}", e.message)))?;
            println!(
                "exported PostgreSQL into {} (backup {})",
                cfg.data_dir.display(),
                report.backup.unwrap_or_default()
            );
            state.json_frozen_at = None;
            Some(pg)
        }
        _ => unreachable!("neighbours() allows one step only"),
    })
}

/// The persisted mode of a stopped server, changed after the same preconditions as the live switch.
async fn switch_offline(cfg: &Config, target: StoreMode, force: bool) -> i32 {
    let _lock = match DataDirLock::acquire(&cfg.data_dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fluxstudio: {e}; --offline needs the server stopped (drop --offline to switch it live)");
            return 2;
        }
    };
    let (from, mut state) = match modes::startup_mode(cfg) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("fluxstudio: {e}");
            return 2;
        }
    };
    if from == target {
        println!("already in mode {target}");
        return 0;
    }
    if !neighbours(from).contains(&target) {
        let allowed: Vec<&str> = neighbours(from).iter().map(|m| m.as_str()).collect();
        println!("refused: {from} -> {target} skips a step; allowed next modes: {}", allowed.join(", "));
        return 1;
    }
    let pg = match offline_step(cfg, from, target, force, &mut state).await {
        Ok(pg) => pg,
        Err(Refusal(code, message)) => {
            if code == 1 {
                println!("{message}");
            } else {
                eprintln!("{message}");
            }
            return code;
        }
    };
    state = PersistedMode { mode: target, epoch: state.epoch + 1, since: crate::domain::time::now(), ..state };
    if let Err(e) = state.write(&cfg.data_dir) {
        eprintln!("fluxstudio: cannot write the persisted mode: {e}");
        return 1;
    }
    if let Some(pg) = pg {
        if let Err(e) = modes::record_mode(&pg, target, state.epoch, "store switch --offline").await {
            eprintln!("fluxstudio: warning: the mode is persisted in the data dir but not in store_state: {e}");
        }
    }
    println!("mode {target} (epoch {}), persisted in {}", state.epoch, cfg.data_dir.join(modes::STATE_FILE).display());
    0
}
