//! Command-line definitions (cli.md §1, §2, §8).
//!
//! Every value-taking flag is an `Option<String>` (or `Option<PathBuf>`) without a clap
//! `default_value`: the defaults and all validation live in `config.rs`, so that a bad value
//! produces our exit-2 message naming the variable, and so that `None` still means "not given" when
//! the precedence flag > env > .env > default is resolved. The defaults are therefore spelled out
//! in the help texts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "fluxstudio", version, about = "Flux Studio server")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// With no subcommand, `serve` runs with its defaults.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone, Default)]
// A heading of their own keeps the globals together in `serve --help`, where clap would otherwise
// interleave them with the serve flags.
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Data directory (JSON store, uploads, generated JWT secret) [default: ./data]
    #[arg(long, global = true, env = "FLUX_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// PostgreSQL URL; a password here is visible in the process list, prefer the environment
    /// [default: none, or assembled from DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD]
    // The environment value may hold a password, which `--help` must not print.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Store mode: json, dual-json, dual-postgres or postgres [default: json, or from the legacy
    /// USE_POSTGRES and DUAL_WRITE_ENABLED pair]
    #[arg(long, global = true, env = "FLUX_STORE", value_name = "MODE")]
    pub store: Option<String>,

    /// Log format: text or json [default: text]
    #[arg(long, global = true, env = "FLUX_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// The .env file to load [default: ./.env]
    #[arg(long, global = true, env = "FLUX_ENV_FILE", value_name = "PATH")]
    pub env_file: Option<PathBuf>,

    /// Do not load any .env file
    #[arg(long, global = true)]
    pub no_env_file: bool,

    /// Progress and info output off (log level warn)
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Debug logging on
    #[arg(short, global = true)]
    pub verbose: bool,
}

// `Command` is parsed once per process, so the size of the `Serve` variant costs nothing worth a
// `Box` (which would also change the type other modules match on).
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP + Socket.IO server (the default)
    Serve(ServeArgs),
    /// Manage user accounts
    #[command(subcommand)]
    User(UserCommand),
    /// PostgreSQL: check the connection and schema, apply migrations
    #[command(subcommand)]
    Db(DbCommand),
    /// Backfill the JSON files into PostgreSQL (insert-only unless --overwrite; resumable)
    Migrate(MigrateArgs),
    /// Compare the JSON files with PostgreSQL in both directions; exit 0 only at 100.0 %
    Validate(ValidateArgs),
    /// Export PostgreSQL into the legacy JSON files (server stopped)
    Rollback(RollbackArgs),
    /// The live store mode of a running server: status and switch
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    /// Read, map and check every row inside a transaction that is rolled back
    #[arg(long)]
    pub dry_run: bool,
    /// Rows per batch (one statement and one checkpoint each), 1-100000
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Comma list of entities: users, teams, team_members, projects, project_members, tasks, milestones, files,
    /// activities [default: all]
    #[arg(long, value_name = "ENTITIES")]
    pub only: Option<String>,
    /// Discard an interrupted run's checkpoints and start over
    #[arg(long)]
    pub restart: bool,
    /// Replace existing rows with the files' version (refused while a dual-mode server runs)
    #[arg(long)]
    pub overwrite: bool,
    /// What a reference to a missing user, team or project does: a row error, or set to null and listed
    #[arg(long, value_parser = ["error", "null"], default_value = "error")]
    pub on_dangling: String,
    /// Also migrate activity files whose project exists nowhere (with no project)
    #[arg(long)]
    pub include_orphans: bool,
    /// Print one JSON document instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ValidateArgs {
    /// Comma list of entities [default: all]
    #[arg(long, value_name = "ENTITIES")]
    pub only: Option<String>,
    /// Source of truth [default: the primary of the persisted mode]
    #[arg(long, value_parser = ["json", "postgres"])]
    pub source: Option<String>,
    /// Copy the source's version of each differing record to the other side, then validate again
    #[arg(long)]
    pub repair: bool,
    /// First wait up to this many seconds for the outbox to drain
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(0..=86_400))]
    pub wait_outbox: Option<u32>,
    /// Differences listed per entity in text output
    #[arg(long, default_value_t = 20)]
    pub max_details: usize,
    /// Print one JSON document instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RollbackArgs {
    /// Replace existing files that differ (they are backed up first)
    #[arg(long)]
    pub force: bool,
    /// Where the previous files are copied [default: <data dir>/backups/rollback-<UTC time>]
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<std::path::PathBuf>,
    /// Print what would be written; touch nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON document instead of text
    #[arg(long)]
    pub json: bool,
}

/// How `store status|switch` reach the server: the control socket when the data dir is on this host and a
/// server holds it, else HTTP with an admin token.
#[derive(Args, Debug, Clone, Default)]
pub struct ServerArgs {
    /// Server base URL [default: http://127.0.0.1:$PORT]
    #[arg(long, value_name = "ADDR")]
    pub server: Option<String>,
    /// Admin bearer token for HTTP [env: FLUX_ADMIN_TOKEN]
    #[arg(long, env = "FLUX_ADMIN_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Mode, epoch, primary and secondary, outbox depth and age, last replay error, last validation, instances
    Status {
        #[command(flatten)]
        server: ServerArgs,
        /// Print one JSON document instead of text
        #[arg(long)]
        json: bool,
    },
    /// Switch the live mode one step along json <-> dual-json <-> dual-postgres <-> postgres
    Switch {
        /// Target mode: json, dual-json, dual-postgres or postgres
        mode: String,
        #[command(flatten)]
        server: ServerArgs,
        /// dual-json -> json only: discard pending outbox entries and mark PostgreSQL stale
        #[arg(long)]
        force: bool,
        /// Seconds to wait for the outbox to drain and for the write pause, 1-600
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// No server is running: check the preconditions and change the persisted mode directly
        #[arg(long)]
        offline: bool,
    },
}

#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Address to bind (an IP address or localhost) [default: 0.0.0.0]
    #[arg(long, env = "HOST")]
    pub host: Option<String>,

    /// TCP port for HTTP and Socket.IO; 0 picks a free port [default: 3001]
    #[arg(long, env = "PORT")]
    pub port: Option<String>,

    /// Single-page-app build served at / when the directory exists [default: ./build]
    #[arg(long, env = "FLUX_STATIC_DIR", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,

    /// Where uploaded bytes are stored [default: <data dir>/uploads]
    #[arg(long, env = "FLUX_UPLOAD_DIR", value_name = "DIR")]
    pub upload_dir: Option<PathBuf>,

    /// Graceful shutdown limit, 0-5m [default: 10s]
    #[arg(long, env = "FLUX_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,

    /// Upper bound for one REST request, 1s-10m [default: 30s]
    #[arg(long, env = "FLUX_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub request_timeout: Option<String>,

    /// Separate host:port listener for /metrics [default: main port, loopback clients only]
    #[arg(long, env = "FLUX_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<String>,

    /// Log filter (tracing EnvFilter syntax) [default: info]
    #[arg(long, env = "RUST_LOG", value_name = "FILTER")]
    pub log_filter: Option<String>,

    /// Instance name in logs, metrics and cross-instance messages [default: random per start]
    #[arg(long, env = "FLUX_INSTANCE_ID", value_name = "ID")]
    pub instance_id: Option<String>,

    /// 1 makes the start-up store mode win over the persisted one (recovery only) [default: 0]
    #[arg(long, env = "FLUX_STORE_FORCE", value_name = "BOOL")]
    pub store_force: Option<String>,

    /// Read-replica URL for modes that read from PostgreSQL [default: none]
    #[arg(long, env = "DATABASE_READ_URL", hide_env_values = true, value_name = "URL")]
    pub database_read_url: Option<String>,

    /// CA certificate for TLS to PostgreSQL: a PEM file path or the PEM text [default: none]
    #[arg(long, env = "DATABASE_CA_CERT", hide_env_values = true, value_name = "PEM")]
    pub database_ca_cert: Option<String>,

    /// The primary's connections, 1-500 [default: 20]: half the sqlx pool, half the hot one-statement set
    #[arg(long, env = "FLUX_DB_POOL_MAX", value_name = "N")]
    pub db_pool_max: Option<String>,

    /// Connections kept open while idle [default: 0]
    #[arg(long, env = "FLUX_DB_POOL_MIN", value_name = "N")]
    pub db_pool_min: Option<String>,

    /// Idle connections above the minimum are closed after this, 1s-1h [default: 30s]
    #[arg(long, env = "FLUX_DB_IDLE_TIMEOUT", value_name = "DURATION")]
    pub db_idle_timeout: Option<String>,

    /// Wait for a pool connection before reporting the store unavailable, 100ms-60s [default: 2s]
    #[arg(long, env = "FLUX_DB_ACQUIRE_TIMEOUT", value_name = "DURATION")]
    pub db_acquire_timeout: Option<String>,

    /// PostgreSQL statement_timeout, 0 (off) to 1h [default: 30s]
    #[arg(long, env = "FLUX_DB_STATEMENT_TIMEOUT", value_name = "DURATION")]
    pub db_statement_timeout: Option<String>,

    /// Connections are recycled after this age, 1m-24h [default: 30m]
    #[arg(long, env = "FLUX_DB_MAX_LIFETIME", value_name = "DURATION")]
    pub db_max_lifetime: Option<String>,

    /// Outbox replay poll interval, 100ms-1m [default: 1s]
    #[arg(long, env = "FLUX_OUTBOX_INTERVAL", value_name = "DURATION")]
    pub outbox_interval: Option<String>,

    /// Share of reads repeated against the secondary in dual modes, 0.0-1.0 [default: 0]
    #[arg(long, env = "FLUX_SHADOW_READ_RATE", value_name = "RATE")]
    pub shadow_read_rate: Option<String>,

    /// Compact the JSON journal once it holds more than this, 1MiB-16GiB [default: 64MiB]
    #[arg(long, env = "FLUX_JSON_COMPACT_BYTES", value_name = "SIZE")]
    pub json_compact_bytes: Option<String>,

    /// ...or once its oldest record is older than this many seconds, 1-86400 [default: 300]
    #[arg(long, env = "FLUX_JSON_COMPACT_SECONDS", value_name = "SECONDS")]
    pub json_compact_seconds: Option<String>,

    /// bcrypt cost for new password hashes, 4-15 [default: 10]
    #[arg(long, env = "FLUX_BCRYPT_COST", value_name = "COST")]
    pub bcrypt_cost: Option<String>,

    /// Google OAuth client id(s), comma separated; unset disables Google sign-in [default: none]
    #[arg(long, env = "GOOGLE_CLIENT_ID", value_name = "IDS")]
    pub google_client_id: Option<String>,

    /// Where Google's signing keys are fetched [default:
    /// https://www.googleapis.com/oauth2/v3/certs]
    #[arg(long, env = "FLUX_GOOGLE_JWKS_URL", value_name = "URL")]
    pub google_jwks_url: Option<String>,

    /// Allowed CORS origins, comma separated [default:
    /// http://localhost:3000,http://localhost:5173,https://fluxstudio.art]
    #[arg(long, env = "CORS_ORIGINS", value_name = "ORIGINS")]
    pub cors_origins: Option<String>,

    /// Whose X-Forwarded-For is believed: none, loopback or a comma list of CIDRs [default:
    /// loopback]
    #[arg(long, env = "FLUX_TRUST_PROXY", value_name = "TRUST")]
    pub trust_proxy: Option<String>,

    /// Largest JSON or urlencoded request body, 1KiB-100MiB [default: 10MiB]
    #[arg(long, env = "FLUX_BODY_LIMIT", value_name = "SIZE")]
    pub body_limit: Option<String>,

    /// Largest single uploaded file, 1KiB-4GiB [default: 50MiB]
    #[arg(long, env = "FLUX_UPLOAD_MAX_FILE", value_name = "SIZE")]
    pub upload_max_file: Option<String>,

    /// Most files in one upload request, 1-100 [default: 10]
    #[arg(long, env = "FLUX_UPLOAD_MAX_FILES", value_name = "N")]
    pub upload_max_files: Option<String>,

    /// on, or off to disable every rate limiter [default: on]
    #[arg(long, env = "FLUX_RATE_LIMIT", value_name = "ON_OFF")]
    pub rate_limit: Option<String>,

    /// Per client IP, every REST request (N/WINDOW or off) [default: 1000/15m]
    #[arg(long, env = "FLUX_RATE_GLOBAL", value_name = "RATE")]
    pub rate_global: Option<String>,

    /// Per client IP, POST /api/auth/signup [default: 10/15m]
    #[arg(long, env = "FLUX_RATE_SIGNUP", value_name = "RATE")]
    pub rate_signup: Option<String>,

    /// Per client IP, POST /api/auth/login [default: 10/15m]
    #[arg(long, env = "FLUX_RATE_LOGIN", value_name = "RATE")]
    pub rate_login: Option<String>,

    /// Per e-mail address, failed logins [default: 10/15m]
    #[arg(long, env = "FLUX_RATE_LOGIN_ACCOUNT", value_name = "RATE")]
    pub rate_login_account: Option<String>,

    /// Per client IP, POST /api/auth/google [default: 10/15m]
    #[arg(long, env = "FLUX_RATE_GOOGLE", value_name = "RATE")]
    pub rate_google: Option<String>,

    /// Per account, POST /api/projects [default: 10/1h]
    #[arg(long, env = "FLUX_RATE_PROJECT_CREATE", value_name = "RATE")]
    pub rate_project_create: Option<String>,

    /// Per account, PUT /api/projects/:id [default: 30/15m]
    #[arg(long, env = "FLUX_RATE_PROJECT_UPDATE", value_name = "RATE")]
    pub rate_project_update: Option<String>,

    /// Per account, POST /api/projects/:projectId/tasks [default: 50/1h]
    #[arg(long, env = "FLUX_RATE_TASK_CREATE", value_name = "RATE")]
    pub rate_task_create: Option<String>,

    /// Per socket, client-to-server Socket.IO events [default: 50/10s]
    #[arg(long, env = "FLUX_RATE_SOCKET_EVENTS", value_name = "RATE")]
    pub rate_socket_events: Option<String>,

    /// Largest Engine.IO packet accepted, 1KiB-10MB [default: 1000000]
    #[arg(long, env = "FLUX_SOCKET_MAX_PAYLOAD", value_name = "BYTES")]
    pub socket_max_payload: Option<String>,

    /// Engine.IO ping interval, 1s-5m [default: 25s]
    #[arg(long, env = "FLUX_SOCKET_PING_INTERVAL", value_name = "DURATION")]
    pub socket_ping_interval: Option<String>,

    /// Engine.IO ping timeout, 1s-5m [default: 20s]
    #[arg(long, env = "FLUX_SOCKET_PING_TIMEOUT", value_name = "DURATION")]
    pub socket_ping_timeout: Option<String>,

    /// Print the configuration summary, run every validation and exit 0 (valid) or 2 (invalid)
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user (password from a hidden prompt, or stdin with --password-stdin)
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// User type [default: client]
        #[arg(long = "type", value_parser = ["client", "designer", "admin"])]
        user_type: Option<String>,
        /// Same as --type admin
        #[arg(long, conflicts_with = "user_type")]
        admin: bool,
        /// Read the password from stdin instead of a prompt
        #[arg(long, conflicts_with = "google_only")]
        password_stdin: bool,
        /// Create an account without a password (Google sign-in only)
        #[arg(long)]
        google_only: bool,
    },
    /// Set the user's type to admin
    GrantAdmin { email: String },
    /// Set the user's type back to client (or --type designer)
    RevokeAdmin {
        email: String,
        /// Type to set [default: client]
        #[arg(long = "type", value_parser = ["client", "designer"])]
        user_type: Option<String>,
    },
    /// Set a new password (hidden prompt asked twice, or stdin with --password-stdin)
    SetPassword {
        email: String,
        /// Read the password from stdin instead of a prompt
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable the account (logins 403, tokens 401)
    Disable { email: String },
    /// Enable the account again
    Enable { email: String },
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Connect, print server version, latency, TLS, schema version, the seed's 21 indexes and pool settings;
    /// exit 0 only when reachable and current (1 not current, 3 unreachable)
    Check {
        /// Print one JSON document instead of text
        #[arg(long)]
        json: bool,
    },
    /// Apply pending schema migrations (idempotent, safe with concurrent starts)
    Migrate {
        /// List what would run without applying it
        #[arg(long)]
        dry_run: bool,
    },
}
