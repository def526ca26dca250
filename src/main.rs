//! `fluxstudio`: parse the command line, set up logging, dispatch. The work happens in the library.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::sync::Arc;

use fluxstudio::app::{self, ServerOptions};
use fluxstudio::auth::password::Passwords;
use fluxstudio::cli::{Command, ServeArgs, UserCommand};
use fluxstudio::config::{self, Config};
use fluxstudio::store::json::lock::DataDirLock;
use fluxstudio::store::json::{JsonOptions, JsonStore};
use fluxstudio::store::DynStore;
use fluxstudio::usercmd::{self, UserRequest};
use fluxstudio::{control, telemetry};

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
    let code = runtime.block_on(async move {
        match cli.command {
            None => serve(cfg, ServeArgs::default()).await,
            Some(Command::Serve(args)) => serve(cfg, args).await,
            Some(Command::User(cmd)) => user(cfg, cmd).await,
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
    let reply = if DataDirLock::is_held(&cfg.data_dir) {
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
