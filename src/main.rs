//! `fluxstudio`: parse the command line, set up logging, dispatch. The work happens in the library.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::sync::Arc;

use fluxstudio::app::{self, ServerOptions};
use fluxstudio::auth::password::Passwords;
use fluxstudio::cli::{Command, DbCommand, MigrateArgs, RollbackArgs, ServeArgs, UserCommand, ValidateArgs};
use fluxstudio::config::{self, Config, StoreMode};
use fluxstudio::migrate::{self, backfill, rollback, validate, Failure, Kind};
use fluxstudio::store::json::lock::DataDirLock;
use fluxstudio::store::json::{JsonOptions, JsonStore};
use fluxstudio::store::postgres::{PgError, PostgresStore};
use fluxstudio::store::DynStore;
use fluxstudio::usercmd::{self, UserRequest};
use fluxstudio::{control, telemetry};

// Under load glibc's allocator spent about 16 % of the server's CPU (fastbin consolidation and chunk unlinking
// when the response buffers of a task list are freed); mimalloc's per-thread free lists do not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Parsing loads `.env` into the process environment, which is only sound before any thread exists.
    let (cli, cfg) = match config::parse_args(std::env::args_os()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("fluxstudio: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fluxstudio: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let quiet = cli.global.quiet;
    let code = runtime.block_on(async move {
        match cli.command {
            None => serve(cfg, ServeArgs::default()).await,
            Some(Command::Serve(args)) => serve(cfg, args).await,
            Some(Command::User(cmd)) => user(cfg, cmd).await,
            Some(Command::Db(cmd)) => db(cfg, cmd).await,
            Some(Command::Migrate(args)) => migrate_cmd(cfg, args, quiet).await,
            Some(Command::Validate(args)) => validate_cmd(cfg, args).await,
            Some(Command::Rollback(args)) => rollback_cmd(cfg, args).await,
            Some(Command::Store(cmd)) => {
                let _ = telemetry::init(if cfg.rust_log == "info" { "warn" } else { &cfg.rust_log }, cfg.log_format);
                fluxstudio::storecmd::run(cfg, cmd).await
            }
        }
    });
    ExitCode::from(code as u8)
}

async fn serve(cfg: Config, args: ServeArgs) -> i32 {
    if let Err(e) = telemetry::init(&cfg.rust_log, cfg.log_format) {
        eprintln!("fluxstudio: {e}");
        return 2;
    }
    if args.check_config {
        for line in cfg.report_lines(None) {
            println!("{line}");
        }
        for w in &cfg.warnings {
            println!("warning: {w}");
        }
        println!("configuration OK");
        return 0;
    }
    let (secret, source, secret_warnings) = match config::resolve_jwt_secret(&cfg) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("fluxstudio: {e}");
            return 2;
        }
    };
    for line in cfg.report_lines(Some((&secret, source))) {
        tracing::info!("{line}");
    }
    for i in &cfg.infos {
        tracing::info!("{i}");
    }
    for w in cfg.warnings.iter().chain(&secret_warnings) {
        tracing::warn!("{w}");
    }
    let data_dir = cfg.data_dir.clone();
    let marker = data_dir.join(rollback::MARKER);
    if marker.exists() {
        eprintln!(
            "fluxstudio: {} exists: a rollback was interrupted; run `fluxstudio rollback` again to complete it",
            marker.display()
        );
        return 2;
    }
    let server = match app::start(ServerOptions::new(cfg, secret)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fluxstudio: {e}");
            return e.exit_code();
        }
    };
    let line =
        format!("listening on {} (mode {}, data {})", server.addr, server.state.mode().as_str(), data_dir.display());
    tracing::info!("{line}");
    println!("{line}");
    wait_for_signal().await;
    tracing::info!("shutting down");
    match server.shutdown().await {
        Ok(()) => {
            tracing::info!("shutdown complete");
            0
        }
        Err(e) => {
            tracing::error!(error = %e, "final compaction failed; the journal still holds every acknowledged write");
            1
        }
    }
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Reads a password from stdin (`--password-stdin`, one trailing newline removed) or a hidden prompt.
fn read_password(from_stdin: bool, confirm: bool) -> Result<String, String> {
    if from_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| format!("cannot read stdin: {e}"))?;
        let s = s.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&s).to_owned();
        return Ok(s);
    }
    if !std::io::stdin().is_terminal() {
        return Err("no terminal to prompt for the password: pass it on stdin with --password-stdin".into());
    }
    let first = rpassword::prompt_password("new password: ").map_err(|e| e.to_string())?;
    if confirm {
        let second = rpassword::prompt_password("repeat password: ").map_err(|e| e.to_string())?;
        if first != second {
            return Err("the two passwords differ".into());
        }
    }
    Ok(first)
}

async fn user(cfg: Config, cmd: UserCommand) -> i32 {
    let _ = telemetry::init(if cfg.rust_log == "info" { "warn" } else { &cfg.rust_log }, cfg.log_format);
    let request = match build_user_request(cmd) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fluxstudio: {e}");
            return 2;
        }
    };
    let reply = if cfg.store_mode == StoreMode::Postgres {
        match run_on_postgres(&cfg, request).await {
            Ok(r) => r,
            Err((code, e)) => {
                eprintln!("fluxstudio: {e}");
                return code;
            }
        }
    } else if DataDirLock::is_held(&cfg.data_dir) {
        match control::send_user(&cfg.data_dir.join(".control.sock"), &request).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("fluxstudio: {e}");
                return 3;
            }
        }
    } else {
        match run_offline(&cfg, request).await {
            Ok(r) => r,
            Err((code, e)) => {
                eprintln!("fluxstudio: {e}");
                return code;
            }
        }
    };
    if reply.exit_code == 0 {
        println!("{}", reply.message);
    } else {
        eprintln!("fluxstudio: {}", reply.message);
    }
    reply.exit_code
}

fn build_user_request(cmd: UserCommand) -> Result<UserRequest, String> {
    Ok(match cmd {
        UserCommand::Create { email, name, user_type, admin, password_stdin, google_only } => {
            let user_type = if admin { "admin".to_owned() } else { user_type.unwrap_or_else(|| "client".into()) };
            let password = if google_only { None } else { Some(read_password(password_stdin, true)?) };
            UserRequest::Create { email, name, user_type, password }
        }
        UserCommand::GrantAdmin { email } => UserRequest::GrantAdmin { email },
        UserCommand::RevokeAdmin { email, user_type } => {
            UserRequest::RevokeAdmin { email, user_type: user_type.unwrap_or_else(|| "client".into()) }
        }
        UserCommand::SetPassword { email, password_stdin } => {
            UserRequest::SetPassword { email, password: read_password(password_stdin, true)? }
        }
        UserCommand::Disable { email } => UserRequest::Disable { email },
        UserCommand::Enable { email } => UserRequest::Enable { email },
    })
}

/// postgres mode: operator commands write to the database directly (several servers may share it).
async fn run_on_postgres(cfg: &Config, request: UserRequest) -> Result<usercmd::UserReply, (i32, String)> {
    let store = app::open_postgres(cfg).await.map_err(|e| (e.exit_code().max(2), e.to_string()))?;
    let cost = cfg.bcrypt_cost;
    let passwords =
        Arc::new(tokio::task::spawn_blocking(move || Passwords::new(cost)).await.map_err(|e| (1, e.to_string()))?);
    let dyn_store: DynStore = store.clone();
    let reply = usercmd::execute(&dyn_store, &passwords, request).await;
    store.close().await;
    Ok(reply)
}

/// `fluxstudio db check|migrate` (cli.md §6).
async fn db(cfg: Config, cmd: DbCommand) -> i32 {
    let _ = telemetry::init(if cfg.rust_log == "info" { "warn" } else { &cfg.rust_log }, cfg.log_format);
    let Some(opts) = app::pg_options(&cfg) else {
        eprintln!(
            "fluxstudio: no database configured: set DATABASE_URL (or DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD)"
        );
        return 2;
    };
    let store = match PostgresStore::connect(opts).await {
        Ok(s) => s,
        Err(PgError::Unsupported(m)) => {
            eprintln!("fluxstudio: {m}");
            return if matches!(cmd, DbCommand::Check { .. }) { 1 } else { 2 };
        }
        Err(e) => {
            eprintln!("fluxstudio: {e}");
            return 2;
        }
    };
    match cmd {
        DbCommand::Check { json } => {
            let report = store.check().await;
            if json {
                println!("{}", check_json(&report));
            } else {
                println!("{report}");
            }
            report.exit_code()
        }
        DbCommand::Migrate { dry_run: true } => match store.pending_migrations().await {
            Ok(pending) if pending.is_empty() => {
                println!("schema current, nothing to apply");
                0
            }
            Ok(pending) => {
                pending.iter().for_each(|m| println!("would apply {m}"));
                0
            }
            Err(e) => pg_exit(e),
        },
        DbCommand::Migrate { dry_run: false } => match store.migrate().await {
            Ok(r) if r.applied.is_empty() => {
                println!("schema current, nothing to apply ({} applied)", r.total_applied);
                0
            }
            Ok(r) => {
                r.applied.iter().for_each(|m| println!("applied {m}"));
                println!("schema current ({} applied)", r.total_applied);
                0
            }
            Err(e) => pg_exit(e),
        },
    }
}

fn pg_exit(e: PgError) -> i32 {
    eprintln!("fluxstudio: {e}");
    match e {
        PgError::Unreachable { .. } => 3,
        PgError::Unsupported(_) | PgError::InvalidUrl(_) | PgError::InvalidCaCert(_) => 2,
        _ => 1,
    }
}

fn check_json(r: &fluxstudio::store::postgres::CheckReport) -> serde_json::Value {
    let list = |v: &[fluxstudio::store::postgres::MigrationInfo]| {
        v.iter().map(|m| serde_json::json!({"version": m.version, "description": m.description})).collect::<Vec<_>>()
    };
    serde_json::json!({
        "target": r.target,
        "reachable": r.connect_error.is_none(),
        "connectError": r.connect_error.as_ref().map(|c| serde_json::json!({"class": format!("{:?}", c.class).to_lowercase(), "message": c.message})),
        "serverVersionNum": r.server_version_num,
        "unsupported": r.unsupported,
        "latencyMs": r.latency.map(|d| d.as_secs_f64() * 1000.0),
        "tls": r.tls,
        "applied": list(&r.applied),
        "pending": list(&r.pending),
        "indexesPresent": r.indexes_present,
        "indexesMissing": r.indexes_missing,
        "extraIndexes": r.extra_indexes,
        "pool": {
            "max": r.pool.max_connections, "min": r.pool.min_connections,
            "idleTimeoutSeconds": r.pool.idle_timeout.as_secs_f64(),
            "acquireTimeoutSeconds": r.pool.acquire_timeout.as_secs_f64(),
            "statementTimeoutSeconds": r.pool.statement_timeout.as_secs_f64(),
            "maxLifetimeSeconds": r.pool.max_lifetime.as_secs_f64(),
        },
        "readPoolConfigured": r.read_pool_configured,
        "error": r.error,
        "ok": r.exit_code() == 0,
    })
}

/// No server holds the data dir: take the lock ourselves, apply the change, compact, release.
async fn run_offline(cfg: &Config, request: UserRequest) -> Result<usercmd::UserReply, (i32, String)> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| (2, format!("{}: {e}", cfg.data_dir.display())))?;
    let _lock = DataDirLock::acquire(&cfg.data_dir).map_err(|e| (2, e.to_string()))?;
    let mut opts = JsonOptions::new(&cfg.data_dir);
    opts.compact_bytes = cfg.json_compact_bytes;
    opts.compact_seconds = cfg.json_compact_seconds;
    let store = tokio::task::spawn_blocking(move || JsonStore::open(opts))
        .await
        .map_err(|e| (1, e.to_string()))?
        .map_err(|e| (2, format!("cannot open the JSON store: {e}")))?;
    let store = Arc::new(store);
    let cost = cfg.bcrypt_cost;
    let passwords =
        Arc::new(tokio::task::spawn_blocking(move || Passwords::new(cost)).await.map_err(|e| (1, e.to_string()))?);
    let dyn_store: DynStore = store.clone();
    let reply = usercmd::execute(&dyn_store, &passwords, request).await;
    store.close().await.map_err(|e| (1, format!("final compaction failed: {e}")))?;
    Ok(reply)
}

fn fail(e: Failure) -> i32 {
    eprintln!("fluxstudio: {}", e.message);
    e.code
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));
}

/// `fluxstudio migrate` (cli.md §3).
async fn migrate_cmd(cfg: Config, args: MigrateArgs, quiet: bool) -> i32 {
    let _ = telemetry::init(if cfg.rust_log == "info" { "warn" } else { &cfg.rust_log }, cfg.log_format);
    let only = match Kind::parse_list(args.only.as_deref()) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let opts = backfill::Options {
        dry_run: args.dry_run,
        batch_size: args.batch_size as usize,
        only,
        restart: args.restart,
        overwrite: args.overwrite,
        dangling_null: args.on_dangling == "null",
        include_orphans: args.include_orphans,
        progress: !args.json && !quiet && std::io::stderr().is_terminal(),
        crash_after_batches: std::env::var("FLUX_TEST_MIGRATE_CRASH_AFTER_BATCHES").ok().and_then(|v| v.parse().ok()),
        fk_triggers: std::env::var("FLUX_TEST_MIGRATE_FK_TRIGGERS").is_ok_and(|v| v == "1"),
    };
    let data_dir = cfg.data_dir.clone();
    let state = match tokio::task::spawn_blocking(move || migrate::load_json(&data_dir)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return fail(e),
        Err(e) => return fail(Failure::other(e.to_string())),
    };
    let store = match migrate::connect(&cfg).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let activity_files = state.activities.len();
    let source = format!(
        "{} (users.json, projects.json, teams.json, files.json, {activity_files} activity file{})",
        cfg.data_dir.display(),
        if activity_files == 1 { "" } else { "s" }
    );
    if !args.json && !quiet {
        println!("source  {source}");
        println!("target  {} (schema current)", store.target());
    }
    let mut conn = match store.pool().acquire().await {
        Ok(c) => c,
        Err(e) => return fail(migrate::db_failure(e)),
    };
    // More connections keep more batches in flight: with two cores, four backends keep both busy while some wait
    // for their next statement; a smaller pool gives fewer (its size is the user's choice), a pool of 1 none.
    let extra = if args.dry_run { 0 } else { (store.pool().options().get_max_connections() as usize).clamp(1, 4) - 1 };
    let mut others = Vec::with_capacity(extra);
    for _ in 0..extra {
        match store.pool().acquire().await {
            Ok(c) => others.push(c),
            Err(_) => break,
        }
    }
    let report = backfill::run(
        &mut conn,
        others.iter_mut().map(|c| &mut **c).collect(),
        &state,
        cfg.data_dir.display().to_string(),
        store.target(),
        &opts,
    )
    .await;
    drop(others);
    drop(conn);
    store.close().await;
    match report {
        Ok(r) => {
            if args.json {
                print_json(&r);
            } else {
                print!("{}", r.text());
            }
            r.exit_code()
        }
        Err(e) => fail(e),
    }
}

/// `fluxstudio validate` (cli.md §4).
async fn validate_cmd(cfg: Config, args: ValidateArgs) -> i32 {
    let _ = telemetry::init(if cfg.rust_log == "info" { "warn" } else { &cfg.rust_log }, cfg.log_format);
    let only = match Kind::parse_list(args.only.as_deref()) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let opts = validate::Options {
        only,
        source: args.source.as_deref().map(|s| {
            if s == "postgres" {
                validate::Side::Postgres
            } else {
                validate::Side::Json
            }
        }),
        repair: args.repair,
        wait_outbox: args.wait_outbox.map(|s| std::time::Duration::from_secs(s.into())),
        max_details: args.max_details,
        json_pending: Some(Box::new(fluxstudio::store::json::outbox::pending_ids_on_disk)),
    };
    let store = match migrate::connect(&cfg).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let report = validate::run(&store, &cfg.data_dir, &opts).await;
    store.close().await;
    match report {
        Ok(r) => {
            if args.json {
                print_json(&r);
            } else {
                print!("{}", r.text());
            }
            r.exit_code()
        }
        Err(e) => fail(e),
    }
}

/// `fluxstudio rollback` (cli.md §5).
async fn rollback_cmd(cfg: Config, args: RollbackArgs) -> i32 {
    let _ = telemetry::init(if cfg.rust_log == "info" { "warn" } else { &cfg.rust_log }, cfg.log_format);
    let store = match migrate::connect(&cfg).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let opts = rollback::Options { force: args.force, backup_dir: args.backup_dir.clone(), dry_run: args.dry_run };
    let mut conn = match store.pool().acquire().await {
        Ok(c) => c,
        Err(e) => return fail(migrate::db_failure(e)),
    };
    let report = rollback::run(&mut conn, &cfg.data_dir, &opts).await;
    drop(conn);
    store.close().await;
    match report {
        Ok(r) => {
            if args.json {
                print_json(&r);
            } else {
                print!("{}", r.text());
            }
            0
        }
        Err(e) => fail(e),
    }
}
