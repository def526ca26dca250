//! Typed configuration (configuration.md): flags, environment, `.env`, defaults, validation, the
//! generated JWT secret and the redacted start-up report.
//!
//! Everything is resolved once by [`parse_args`]. The core ([`parse_with_env`]) takes the
//! environment as a map so that tests never touch the process environment.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::Cli;

// -------------------------------------------------------------------------------------------------
// Public types
// -------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StoreMode {
    Json,
    DualJson,
    DualPostgres,
    Postgres,
}

impl StoreMode {
    pub const ALL: [StoreMode; 4] =
        [StoreMode::Json, StoreMode::DualJson, StoreMode::DualPostgres, StoreMode::Postgres];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreMode::Json => "json",
            StoreMode::DualJson => "dual-json",
            StoreMode::DualPostgres => "dual-postgres",
            StoreMode::Postgres => "postgres",
        }
    }

    pub fn parse(s: &str) -> Option<StoreMode> {
        let s = s.trim();
        StoreMode::ALL.into_iter().find(|m| m.as_str().eq_ignore_ascii_case(s))
    }

    /// Every mode except `json` has PostgreSQL as primary or secondary.
    pub fn needs_database(self) -> bool {
        self != StoreMode::Json
    }
}

impl fmt::Display for StoreMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Where a setting's value came from, as shown in the start-up report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    DotEnv,
    Default,
    Generated,
    LegacyPair,
    Persisted,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::DotEnv => ".env",
            Source::Default => "default",
            Source::Generated => "generated",
            Source::LegacyPair => "legacy pair",
            Source::Persisted => "persisted",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration error: one line, printed by the caller, which then exits 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// `FLUX_TRUST_PROXY`: whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustProxy {
    None,
    /// Only a TCP peer in 127.0.0.0/8 or ::1.
    Loopback,
    /// Network address and prefix length.
    Cidrs(Vec<(IpAddr, u8)>),
}

impl TrustProxy {
    /// Whether a TCP peer at `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        match self {
            TrustProxy::None => false,
            TrustProxy::Loopback => ip.is_loopback(),
            TrustProxy::Cidrs(list) => list.iter().any(|&(net, len)| cidr_contains(net, len, ip)),
        }
    }
}

impl fmt::Display for TrustProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustProxy::None => f.write_str("none"),
            TrustProxy::Loopback => f.write_str("loopback"),
            TrustProxy::Cidrs(list) => {
                let parts: Vec<String> = list.iter().map(|(ip, len)| format!("{ip}/{len}")).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

/// PostgreSQL pool settings (configuration.md §3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbPoolConfig {
    pub max: u32,
    pub min: u32,
    pub idle_timeout: Duration,
    pub acquire_timeout: Duration,
    /// Zero disables `statement_timeout`.
    pub statement_timeout: Duration,
    pub max_lifetime: Duration,
}

/// The whole configuration. `Debug` is implemented by hand so that secrets never reach a log line.
#[derive(Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub static_dir: PathBuf,
    pub upload_dir: PathBuf,
    pub store_mode: StoreMode,
    /// `DATABASE_URL`, or assembled from `DB_*` (password percent-encoded).
    pub database_url: Option<String>,
    pub database_read_url: Option<String>,
    /// `JWT_SECRET` from env/.env, already validated; `None` = use the data-dir file
    /// ([`resolve_jwt_secret`]).
    pub jwt_secret_env: Option<String>,
    pub bcrypt_cost: u32,
    pub google_client_ids: Vec<String>,
    pub google_jwks_url: String,
    pub cors_origins: Vec<String>,
    pub body_limit: usize,
    pub upload_max_file: u64,
    pub upload_max_files: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub json_compact_bytes: u64,
    pub json_compact_seconds: u64,
    pub log_format: LogFormat,
    /// Log filter: `RUST_LOG`, or `debug` with `-v`, `warn` with `-q`.
    pub rust_log: String,
    pub instance_id: String,
    pub rate_limit_enabled: bool,
    /// Key = variable name (`FLUX_RATE_GLOBAL`, ...); `None` = that limiter is off.
    pub rates: BTreeMap<String, Option<(u32, Duration)>>,
    /// For the caller to log at `warn` after the report.
    pub warnings: Vec<String>,
    /// For the caller to log at `info` after the report.
    pub infos: Vec<String>,
    /// Variable name -> where its value came from.
    pub sources: BTreeMap<&'static str, Source>,

    // Settings beyond the first version's interface; read and validated so the report and later
    // features have them.
    pub metrics_addr: Option<SocketAddr>,
    pub store_force: bool,
    pub shadow_read_rate: f64,
    /// `DATABASE_CA_CERT` as given: a path or the PEM text.
    pub database_ca_cert: Option<String>,
    /// True when `database_url` was assembled from `DB_*`.
    pub database_url_assembled: bool,
    pub db_password_set: bool,
    pub db_pool: DbPoolConfig,
    pub outbox_interval: Duration,
    pub trust_proxy: TrustProxy,
    pub socket_max_payload: usize,
    pub socket_ping_interval: Duration,
    pub socket_ping_timeout: Duration,
    /// Cross-instance presence (realtime.md §8): how often an instance republishes its snapshot, and how long
    /// another instance's entries live without word from it. Fixed by the spec (15 s, 45 s), not configurable
    /// from outside; tests shorten them.
    pub presence_snapshot_interval: Duration,
    pub presence_expiry: Duration,
    /// The `.env` file that was loaded, if any.
    pub env_file: Option<PathBuf>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("static_dir", &self.static_dir)
            .field("upload_dir", &self.upload_dir)
            .field("store_mode", &self.store_mode)
            .field("database_url", &self.database_url.as_deref().map(redact_url))
            .field("database_read_url", &self.database_read_url.as_deref().map(redact_url))
            .field("jwt_secret_env", &self.jwt_secret_env.as_ref().map(|s| format!("<{} bytes>", s.len())))
            .field("bcrypt_cost", &self.bcrypt_cost)
            .field("google_client_ids", &self.google_client_ids)
            .field("google_jwks_url", &self.google_jwks_url)
            .field("cors_origins", &self.cors_origins)
            .field("body_limit", &self.body_limit)
            .field("upload_max_file", &self.upload_max_file)
            .field("upload_max_files", &self.upload_max_files)
            .field("request_timeout", &self.request_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("json_compact_bytes", &self.json_compact_bytes)
            .field("json_compact_seconds", &self.json_compact_seconds)
            .field("log_format", &self.log_format)
            .field("rust_log", &self.rust_log)
            .field("instance_id", &self.instance_id)
            .field("rate_limit_enabled", &self.rate_limit_enabled)
            .field("rates", &self.rates)
            .field("warnings", &self.warnings)
            .field("infos", &self.infos)
            .field("sources", &self.sources)
            .field("metrics_addr", &self.metrics_addr)
            .field("store_force", &self.store_force)
            .field("shadow_read_rate", &self.shadow_read_rate)
            .field("database_ca_cert", &self.database_ca_cert.as_ref().map(|_| "<set>"))
            .field("database_url_assembled", &self.database_url_assembled)
            .field("db_password_set", &self.db_password_set)
            .field("db_pool", &self.db_pool)
            .field("outbox_interval", &self.outbox_interval)
            .field("trust_proxy", &self.trust_proxy)
            .field("socket_max_payload", &self.socket_max_payload)
            .field("socket_ping_interval", &self.socket_ping_interval)
            .field("socket_ping_timeout", &self.socket_ping_timeout)
            .field("env_file", &self.env_file)
            .finish()
    }
}

// -------------------------------------------------------------------------------------------------
// Defaults (configuration.md §3)
// -------------------------------------------------------------------------------------------------

pub const DEFAULT_PORT: u16 = 3001;
pub const DEFAULT_HOST: &str = "0.0.0.0";
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_ENV_FILE: &str = "./.env";
pub const DEFAULT_STATIC_DIR: &str = "./build";
pub const DEFAULT_GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
pub const DEFAULT_CORS_ORIGINS: &str = "http://localhost:3000,http://localhost:5173,https://fluxstudio.art";
/// Rate-limit variables and their defaults, in report order.
pub const RATE_DEFAULTS: &[(&str, &str)] = &[
    ("FLUX_RATE_GLOBAL", "1000/15m"),
    ("FLUX_RATE_SIGNUP", "10/15m"),
    ("FLUX_RATE_LOGIN", "10/15m"),
    ("FLUX_RATE_LOGIN_ACCOUNT", "10/15m"),
    ("FLUX_RATE_GOOGLE", "10/15m"),
    ("FLUX_RATE_PROJECT_CREATE", "10/1h"),
    ("FLUX_RATE_PROJECT_UPDATE", "30/15m"),
    ("FLUX_RATE_TASK_CREATE", "50/1h"),
    ("FLUX_RATE_SOCKET_EVENTS", "50/10s"),
];
/// Name of the generated secret inside the data dir (configuration.md §5).
pub const JWT_SECRET_FILE: &str = ".jwt-secret";

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const SECRET_ADVICE: &str = "generate a new one with `openssl rand -hex 32` (a new secret signs everybody out once)";

// -------------------------------------------------------------------------------------------------
// Entry point
// -------------------------------------------------------------------------------------------------

type Env = HashMap<String, String>;

/// Parse argv (plus env and `.env`) into [`Cli`] and [`Config`].
///
/// The `.env` file (FLUX_ENV_FILE / `--env-file` / `--no-env-file`) is loaded into the process
/// environment without overriding variables already there. Precedence is flag > env > .env >
/// default; `Config::sources` says which won. A clap usage error, `--help` and `--version` print
/// and exit the process as `Cli::parse` would (2, 0, 0).
pub fn parse_args<I, T>(args: I) -> Result<(Cli, Config), ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let env: Env = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect();
    match parse_with_env(args, &env, false) {
        Ok(parsed) => {
            for (key, value) in &parsed.dotenv {
                // SAFETY: the caller runs parse_args at the start of main, before any thread
                // exists, so nothing can read the environment concurrently. Keys come from the
                // dotenvy grammar and values were checked for NUL, so set_var cannot panic.
                unsafe { std::env::set_var(key, value) };
            }
            Ok((parsed.cli, parsed.config))
        }
        Err(ParseFailure::Clap(e)) => e.exit(),
        Err(ParseFailure::Config(e)) => Err(e),
    }
}

/// What [`parse_with_env`] produced.
#[derive(Debug)]
pub struct Parsed {
    pub cli: Cli,
    pub config: Config,
    /// Variables taken from the `.env` file (absent from the given environment), in file order.
    pub dotenv: Vec<(String, String)>,
}

#[derive(Debug)]
pub enum ParseFailure {
    Clap(clap::Error),
    Config(ConfigError),
}

impl From<ConfigError> for ParseFailure {
    fn from(e: ConfigError) -> Self {
        ParseFailure::Config(e)
    }
}

/// The testable core of [`parse_args`]: `env` stands for the process environment and nothing here
/// reads or writes the real one, except that with `hermetic == false` clap also sees it (needed so
/// `--help` shows current values).
///
/// Clap parses first: flags never depend on the `.env` file, and a bad `.env` must not break
/// `--help`.
pub fn parse_with_env(args: Vec<OsString>, env: &Env, hermetic: bool) -> Result<Parsed, ParseFailure> {
    // `definition` maps arguments to their variables; in hermetic mode the parser is a copy that
    // ignores the process environment.
    let definition = Cli::command();
    let parser = if hermetic { without_env(definition.clone()) } else { definition.clone() };
    let matches = parser.try_get_matches_from(args.iter().cloned()).map_err(ParseFailure::Clap)?;
    let first = Cli::from_arg_matches(&matches).map_err(ParseFailure::Clap)?;

    let mut flags = HashMap::new();
    command_line_flags(&definition, &matches, &mut flags);

    let mut warnings = Vec::new();
    let mut sources = BTreeMap::new();
    let env_choice = choose_env_file(first.global.no_env_file, &flags, env, &mut sources);
    let loaded = match &env_choice {
        Some(choice) => load_env_file(choice)?,
        None => None,
    };
    let mut merged = env.clone();
    let mut dotenv_keys = HashSet::new();
    let mut dotenv = Vec::new();
    let mut env_file = None;
    if let Some(file) = loaded {
        let mut first_line: HashMap<String, usize> = HashMap::new();
        for entry in file.entries {
            if let Some(line) = first_line.get(&entry.key) {
                warnings.push(format!(
                    "{}: {} is set on line {line} and again on line {}; line {line} is used",
                    file.path.display(),
                    entry.key,
                    entry.line
                ));
                continue;
            }
            first_line.insert(entry.key.clone(), entry.line);
            if !merged.contains_key(&entry.key) {
                merged.insert(entry.key.clone(), entry.value.clone());
                dotenv_keys.insert(entry.key.clone());
                dotenv.push((entry.key, entry.value));
            }
        }
        env_file = Some(file.path);
    }

    let mut r = Resolver {
        flags,
        env: &merged,
        dotenv_keys: &dotenv_keys,
        env_file: env_file.clone(),
        sources,
        warnings,
        infos: Vec::new(),
    };
    let config = resolve(&mut r, first.global.quiet, first.global.verbose, env_file)?;

    // The returned Cli shows what clap would have produced had the `.env` values been in its
    // environment; re-parsing with the values appended as flags keeps that generic over every
    // argument.
    let mut argv = args;
    env_backfill(&definition, &matches, &merged, &mut argv);
    let cli = without_env(Cli::command())
        .try_get_matches_from(argv)
        .ok()
        .and_then(|m| Cli::from_arg_matches(&m).ok())
        .unwrap_or(first);

    Ok(Parsed { cli, config, dotenv })
}

/// A copy of `cmd` whose arguments do not read the process environment.
fn without_env(mut cmd: clap::Command) -> clap::Command {
    let ids: Vec<clap::Id> =
        cmd.get_arguments().filter(|a| a.get_env().is_some()).map(|a| a.get_id().clone()).collect();
    for id in ids {
        cmd = cmd.mut_arg(id, |a| a.env(None::<&'static str>));
    }
    let subs: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    for name in subs {
        cmd = cmd.mut_subcommand(name, without_env);
    }
    cmd
}

/// Values given on the command line, keyed by the environment variable of their flag, with the
/// flag's long name.
fn command_line_flags(cmd: &clap::Command, m: &ArgMatches, out: &mut HashMap<String, (String, String)>) {
    for arg in cmd.get_arguments() {
        let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let id = arg.get_id().as_str();
        if m.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        if let Some(value) = m.get_raw(id).and_then(|mut v| v.next()) {
            out.insert(var.to_string_lossy().into_owned(), (long.to_owned(), value.to_string_lossy().into_owned()));
        }
    }
    if let Some((name, sub_m)) = m.subcommand() {
        if let Some(sub) = cmd.find_subcommand(name) {
            command_line_flags(sub, sub_m, out);
        }
    }
}

/// `--flag=value` for every env-backed argument of the chosen (sub)commands not given on the
/// command line.
fn env_backfill(cmd: &clap::Command, m: &ArgMatches, env: &Env, out: &mut Vec<OsString>) {
    for arg in cmd.get_arguments() {
        let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        if m.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        if let Some(value) = env_value(env, &var.to_string_lossy()) {
            out.push(format!("--{long}={value}").into());
        }
    }
    if let Some((name, sub_m)) = m.subcommand() {
        if let Some(sub) = cmd.find_subcommand(name) {
            env_backfill(sub, sub_m, env, out);
        }
    }
}

/// An environment value, with empty meaning unset: legacy `.env` templates ship lines such as
/// `DATABASE_URL=`, and the legacy server (`process.env.X || default`) treated those as absent.
fn env_value<'a>(env: &'a Env, var: &str) -> Option<&'a str> {
    env.get(var).map(String::as_str).filter(|v| !v.is_empty())
}

// -------------------------------------------------------------------------------------------------
// .env loading (configuration.md §2)
// -------------------------------------------------------------------------------------------------

struct EnvFileChoice {
    path: PathBuf,
    /// Flag or variable that named the file; `None` for the default `./.env`, whose absence is
    /// fine.
    named_by: Option<String>,
}

struct EnvFileEntry {
    key: String,
    value: String,
    line: usize,
}

struct LoadedEnvFile {
    path: PathBuf,
    entries: Vec<EnvFileEntry>,
}

fn choose_env_file(
    no_env_file: bool,
    flags: &HashMap<String, (String, String)>,
    env: &Env,
    sources: &mut BTreeMap<&'static str, Source>,
) -> Option<EnvFileChoice> {
    if no_env_file {
        sources.insert("FLUX_ENV_FILE", Source::Flag);
        return None;
    }
    if let Some((long, value)) = flags.get("FLUX_ENV_FILE") {
        sources.insert("FLUX_ENV_FILE", Source::Flag);
        return Some(EnvFileChoice { path: PathBuf::from(value), named_by: Some(format!("--{long}")) });
    }
    if let Some(value) = env_value(env, "FLUX_ENV_FILE") {
        sources.insert("FLUX_ENV_FILE", Source::Env);
        return Some(EnvFileChoice { path: PathBuf::from(value), named_by: Some("FLUX_ENV_FILE".to_owned()) });
    }
    sources.insert("FLUX_ENV_FILE", Source::Default);
    Some(EnvFileChoice { path: PathBuf::from(DEFAULT_ENV_FILE), named_by: None })
}

fn load_env_file(choice: &EnvFileChoice) -> Result<Option<LoadedEnvFile>, ConfigError> {
    let shown = choice.path.display();
    let bytes = match std::fs::read(&choice.path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match &choice.named_by {
                Some(by) => Err(ConfigError(format!("{by}='{shown}': the .env file does not exist"))),
                None => Ok(None),
            };
        }
        Err(e) => return Err(ConfigError(format!("cannot read the .env file {shown}: {e}"))),
    };
    let text =
        String::from_utf8(bytes).map_err(|_| ConfigError(format!("the .env file {shown} is not valid UTF-8")))?;
    let entries = parse_env_text(&shown.to_string(), &text)?;
    Ok(Some(LoadedEnvFile { path: choice.path.clone(), entries }))
}

/// Parses `.env` text with dotenvy, one logical line at a time, so that errors can name the line
/// number, and rejects `$` outside single quotes.
///
/// dotenvy expands `$NAME` in unquoted and double-quoted values where Node's dotenv kept the text;
/// refusing the `$` (even an escaped `\$`, which Node would also have kept verbatim) makes every
/// accepted value mean the same to both. Since no accepted value contains a substitution, parsing
/// the logical lines separately gives the same values as parsing the whole file.
fn parse_env_text(file: &str, text: &str) -> Result<Vec<EnvFileEntry>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // dotenvy rejects a last line that ends in a blank or a backslash when no newline follows it; a
    // missing final newline is not worth a start-up failure.
    let text: std::borrow::Cow<'_, str> =
        if text.is_empty() || text.ends_with('\n') { text.into() } else { format!("{text}\n").into() };

    let mut entries = Vec::new();
    for logical in logical_lines(&text) {
        let logical = logical.map_err(|line| {
            ConfigError(format!("{file}:{line}: cannot parse this line: a quote opened here is never closed"))
        })?;
        // Checked before dotenvy parses: it fails on some `$` values (`"a$b"` loses its closing
        // quote), and the advice to single-quote is the useful message for those.
        if let Some((key, raw_value)) = logical.text.split_once('=') {
            let key = key.trim();
            let key = key
                .strip_prefix("export")
                .filter(|rest| rest.starts_with(char::is_whitespace))
                .map_or(key, str::trim_start);
            let key_ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if key_ok && has_unprotected_dollar(raw_value.trim()) {
                return Err(ConfigError(format!(
                    "{file}:{}: the value of {key} contains '$', which dotenvy would expand as a variable \
                     reference; put the value in single quotes ({key}='...')",
                    logical.line
                )));
            }
        }
        let mut items = dotenvy::from_read_iter(logical.raw.as_bytes());
        let (key, value) = match items.next() {
            None => continue,
            Some(Ok(kv)) => kv,
            Some(Err(_)) => {
                return Err(ConfigError(format!(
                    "{file}:{}: cannot parse this line (expected KEY=value, KEY='value' or KEY=\"value\")",
                    logical.line
                )))
            }
        };
        if value.contains('\0') {
            return Err(ConfigError(format!("{file}:{}: the value of {key} contains a NUL character", logical.line)));
        }
        entries.push(EnvFileEntry { key, value, line: logical.line });
    }
    Ok(entries)
}

struct LogicalLine {
    /// 1-based number of the first physical line.
    line: usize,
    /// The physical lines as read, for dotenvy.
    raw: String,
    /// What dotenvy's line reader hands to its parser (comment cut off, newline removed).
    text: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    Complete,
    Escape,
    StrongOpen,
    StrongOpenEscape,
    WeakOpen,
    WeakOpenEscape,
    Comment,
    WhiteSpace,
}

/// Mirror of dotenvy 0.15's `eval_end_state`, which decides where a (possibly multi-line) entry
/// ends.
fn eval_end_state(prev: QuoteState, buf: &str) -> (usize, QuoteState) {
    use QuoteState::*;
    let mut state = prev;
    let mut cur_pos = 0;
    for (pos, c) in buf.char_indices() {
        cur_pos = pos;
        state = match state {
            WhiteSpace => match c {
                '#' => return (cur_pos, Comment),
                '\\' => Escape,
                '"' => WeakOpen,
                '\'' => StrongOpen,
                _ => Complete,
            },
            Escape => Complete,
            Complete => match c {
                c if c.is_whitespace() && c != '\n' && c != '\r' => WhiteSpace,
                '\\' => Escape,
                '"' => WeakOpen,
                '\'' => StrongOpen,
                _ => Complete,
            },
            WeakOpen => match c {
                '\\' => WeakOpenEscape,
                '"' => Complete,
                _ => WeakOpen,
            },
            WeakOpenEscape => WeakOpen,
            StrongOpen => match c {
                '\\' => StrongOpenEscape,
                '\'' => Complete,
                _ => StrongOpen,
            },
            StrongOpenEscape => StrongOpen,
            Comment => unreachable!("returned when entered"),
        };
    }
    (cur_pos, state)
}

/// Splits like dotenvy's `QuotedLines`; `Err(line)` for an entry still open at the end of the file.
fn logical_lines(text: &str) -> Vec<Result<LogicalLine, usize>> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut state = QuoteState::Complete;
    let mut start = 0;
    for (index, physical) in text.split_inclusive('\n').enumerate() {
        if buf.is_empty() {
            start = index + 1;
            state = QuoteState::Complete;
        }
        let buf_pos = buf.len();
        buf.push_str(physical);
        if buf.trim_start().starts_with('#') {
            buf.clear();
            continue;
        }
        let (cur_pos, next) = eval_end_state(state, &buf[buf_pos..]);
        state = next;
        let text = match state {
            QuoteState::Complete => {
                let mut t = buf.clone();
                if t.ends_with('\n') {
                    t.pop();
                    if t.ends_with('\r') {
                        t.pop();
                    }
                }
                t
            }
            QuoteState::Comment => buf[..buf_pos + cur_pos].to_owned(),
            _ => continue,
        };
        out.push(Ok(LogicalLine { line: start, raw: std::mem::take(&mut buf), text }));
    }
    if !buf.is_empty() {
        out.push(Err(start));
    }
    out
}

/// Whether an unquoted or double-quoted part of a `.env` value contains `$` (mirrors dotenvy's
/// `parse_value`).
fn has_unprotected_dollar(value: &str) -> bool {
    let (mut strong, mut weak, mut escaped) = (false, false, false);
    for c in value.chars() {
        if escaped {
            escaped = false;
            if c == '$' {
                return true;
            }
            continue;
        }
        if strong {
            if c == '\'' {
                strong = false;
            }
            continue;
        }
        match c {
            '$' => return true,
            '\\' => escaped = true,
            '"' => weak = !weak,
            '\'' if !weak => strong = true,
            // An unquoted blank ends the value; dotenvy accepted the line, so only a comment can
            // follow.
            ' ' | '\t' if !weak => return false,
            _ => {}
        }
    }
    false
}

// -------------------------------------------------------------------------------------------------
// Resolution and validation (configuration.md §3, §4, §5, §7)
// -------------------------------------------------------------------------------------------------

struct Resolver<'a> {
    /// Command-line values by environment variable name: (long flag, value).
    flags: HashMap<String, (String, String)>,
    /// Process environment plus the `.env` variables it lacked.
    env: &'a Env,
    dotenv_keys: &'a HashSet<String>,
    env_file: Option<PathBuf>,
    sources: BTreeMap<&'static str, Source>,
    warnings: Vec<String>,
    infos: Vec<String>,
}

/// One value and where it came from. `label` is what error messages name: `--port` or `PORT`.
#[derive(Clone)]
struct Raw {
    value: String,
    source: Source,
    label: String,
}

impl Resolver<'_> {
    /// The environment (or `.env`) value of `var`, without recording a source.
    fn env_raw(&self, var: &str) -> Option<Raw> {
        let value = env_value(self.env, var)?;
        Some(Raw {
            value: value.to_owned(),
            source: if self.dotenv_keys.contains(var) { Source::DotEnv } else { Source::Env },
            label: var.to_owned(),
        })
    }

    /// Flag, else env, else `.env`; records the source (`default` when none gives a value).
    fn raw(&mut self, var: &'static str) -> Option<Raw> {
        let raw = match self.flags.get(var) {
            Some((long, value)) => Some(Raw { value: value.clone(), source: Source::Flag, label: format!("--{long}") }),
            None => self.env_raw(var),
        };
        self.sources.insert(var, raw.as_ref().map_or(Source::Default, |r| r.source));
        raw
    }

    fn value<T>(
        &mut self,
        var: &'static str,
        default: &str,
        parse: impl Fn(&str) -> Option<T>,
        rule: &str,
    ) -> Result<T, ConfigError> {
        match self.raw(var) {
            Some(raw) => parse(raw.value.trim()).ok_or_else(|| self.invalid(&raw, rule)),
            None => Ok(parse(default).expect("built-in defaults are valid")),
        }
    }

    fn opt_value<T>(
        &mut self,
        var: &'static str,
        parse: impl Fn(&str) -> Option<T>,
        rule: &str,
    ) -> Result<Option<T>, ConfigError> {
        match self.raw(var) {
            Some(raw) => parse(raw.value.trim()).map(Some).ok_or_else(|| self.invalid(&raw, rule)),
            None => Ok(None),
        }
    }

    fn invalid(&self, raw: &Raw, rule: &str) -> ConfigError {
        self.invalid_shown(raw, &raw.value, rule)
    }

    /// Like `invalid`, with the value shown as `shown` (redacted for secrets).
    fn invalid_shown(&self, raw: &Raw, shown: &str, rule: &str) -> ConfigError {
        ConfigError(format!("{}='{}': {}{}", raw.label, shown.escape_debug(), rule, self.origin(raw.source)))
    }

    /// Where a `.env` value was set, appended to messages so the operator knows which file to edit.
    fn origin(&self, source: Source) -> String {
        match (&self.env_file, source) {
            (Some(file), Source::DotEnv) => format!(" (set in {})", file.display()),
            _ => String::new(),
        }
    }

    fn is_set(&self, var: &str) -> bool {
        env_value(self.env, var).is_some()
    }
}

fn resolve(r: &mut Resolver<'_>, quiet: bool, verbose: bool, env_file: Option<PathBuf>) -> Result<Config, ConfigError> {
    // Legacy names that are deliberately not read (§3.1, §3.3, §3.7).
    if r.is_set("NODE_ENV") {
        r.infos.push("NODE_ENV is set but ignored: the server behaves the same in every environment".to_owned());
    }
    if r.is_set("JWT_EXPIRES_IN") {
        r.warnings.push(
            "JWT_EXPIRES_IN is set but ignored, as it was by the legacy server: tokens always last 7 days".to_owned(),
        );
    }
    for (legacy, replacement) in
        [("AUTH_PORT", "PORT"), ("UPLOAD_DIR", "FLUX_UPLOAD_DIR"), ("MAX_FILE_SIZE", "FLUX_UPLOAD_MAX_FILE")]
    {
        if r.is_set(legacy) {
            r.warnings.push(format!(
                "{legacy} is set but ignored (the legacy server never used it); use {replacement} instead"
            ));
        }
    }

    // Listener and process.
    let port = r.value("PORT", &DEFAULT_PORT.to_string(), |s| s.parse::<u16>().ok(), "must be an integer 0-65535")?;
    let host = r.value(
        "HOST",
        DEFAULT_HOST,
        |s| {
            if s.eq_ignore_ascii_case("localhost") {
                Some("localhost".to_owned())
            } else {
                s.parse::<IpAddr>().ok().map(|_| s.to_owned())
            }
        },
        "must be an IP address or localhost",
    )?;
    let data_dir = path_setting(r, "FLUX_DATA_DIR", DEFAULT_DATA_DIR)?;
    let static_dir = r.value("FLUX_STATIC_DIR", DEFAULT_STATIC_DIR, |s| Some(PathBuf::from(s)), "must be a path")?;
    let shutdown_grace = r.value(
        "FLUX_SHUTDOWN_GRACE",
        "10s",
        duration_in(Duration::ZERO, mins(5)),
        "must be a duration (500ms, 30s, 15m, 1h, 7d) between 0 and 5m",
    )?;
    let metrics_addr = r.opt_value(
        "FLUX_METRICS_ADDR",
        |s| s.parse::<SocketAddr>().ok(),
        "must be a socket address such as 0.0.0.0:9100, 127.0.0.1:9100 or [::]:9100",
    )?;
    if let Some(addr) = metrics_addr {
        if port != 0 && addr.port() == port && same_bind_ip(&host, addr.ip()) {
            let raw = r.raw("FLUX_METRICS_ADDR").expect("it was just read");
            return Err(r.invalid(&raw, &format!("must differ from HOST:PORT ({host}:{port})")));
        }
    }
    let request_timeout = r.value(
        "FLUX_REQUEST_TIMEOUT",
        "30s",
        duration_in(secs(1), mins(10)),
        "must be a duration (500ms, 30s, 15m, 1h, 7d) between 1s and 10m",
    )?;
    let mut rust_log = r.value(
        "RUST_LOG",
        "info",
        |s| valid_log_filter(s).then(|| s.to_owned()),
        "must be a log filter such as `info` or `info,fluxstudio=debug` (levels: trace, debug, info, warn, error, off)",
    )?;
    if verbose || quiet {
        rust_log = if verbose { "debug" } else { "warn" }.to_owned();
        r.sources.insert("RUST_LOG", Source::Flag);
    }
    let log_format = r.value(
        "FLUX_LOG_FORMAT",
        "text",
        |s| match s.to_ascii_lowercase().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        },
        "must be text or json",
    )?;

    // Database.
    let (database_url, database_url_assembled) = database_url(r)?;
    let db_password_set = r.is_set("DB_PASSWORD");
    let database_read_url = match r.raw("DATABASE_READ_URL") {
        Some(raw) => {
            check_postgres_url(r, &raw)?;
            Some(raw.value.trim().to_owned())
        }
        None => None,
    };
    let database_ca_cert = match r.raw("DATABASE_CA_CERT") {
        Some(raw) => {
            check_ca_cert(r, &raw)?;
            Some(raw.value)
        }
        None => None,
    };
    let pool_max = r.value("FLUX_DB_POOL_MAX", "20", int_in(1, 500), "must be an integer 1-500")? as u32;
    let pool_min = r.value(
        "FLUX_DB_POOL_MIN",
        "0",
        int_in(0, u64::from(pool_max)),
        &format!("must be an integer between 0 and FLUX_DB_POOL_MAX ({pool_max})"),
    )? as u32;
    let db_pool = DbPoolConfig {
        max: pool_max,
        min: pool_min,
        idle_timeout: r.value(
            "FLUX_DB_IDLE_TIMEOUT",
            "30s",
            duration_in(secs(1), hours(1)),
            "must be a duration between 1s and 1h",
        )?,
        acquire_timeout: r.value(
            "FLUX_DB_ACQUIRE_TIMEOUT",
            "2s",
            duration_in(Duration::from_millis(100), secs(60)),
            "must be a duration between 100ms and 60s",
        )?,
        statement_timeout: r.value(
            "FLUX_DB_STATEMENT_TIMEOUT",
            "30s",
            duration_in(Duration::ZERO, hours(1)),
            "must be a duration between 0 (off) and 1h",
        )?,
        max_lifetime: r.value(
            "FLUX_DB_MAX_LIFETIME",
            "30m",
            duration_in(mins(1), hours(24)),
            "must be a duration between 1m and 24h",
        )?,
    };
    let outbox_interval = r.value(
        "FLUX_OUTBOX_INTERVAL",
        "1s",
        duration_in(Duration::from_millis(100), mins(1)),
        "must be a duration between 100ms and 1m",
    )?;
    let shadow_read_rate = r.value(
        "FLUX_SHADOW_READ_RATE",
        "0",
        |s| s.parse::<f64>().ok().filter(|v| (0.0..=1.0).contains(v)),
        "must be a number between 0.0 and 1.0",
    )?;
    let json_compact_bytes = r.value(
        "FLUX_JSON_COMPACT_BYTES",
        "64MiB",
        size_in(MIB, 16 * GIB),
        "must be a size (bytes, or a number with KiB, MiB, GiB, KB, MB, GB) between 1MiB and 16GiB",
    )?;
    let json_compact_seconds = r.value(
        "FLUX_JSON_COMPACT_SECONDS",
        "300",
        |s| {
            let secs = match s.parse::<u64>() {
                Ok(n) => n,
                Err(_) => {
                    let d = parse_duration(s)?;
                    if d.subsec_nanos() != 0 {
                        return None;
                    }
                    d.as_secs()
                }
            };
            (1..=86_400).contains(&secs).then_some(secs)
        },
        "must be an integer 1-86400 (seconds) or a whole-second duration such as 5m",
    )?;
    let store_force = r.value("FLUX_STORE_FORCE", "0", parse_bool, "must be 1, 0, true or false")?;
    if store_force {
        r.warnings.push(
            "FLUX_STORE_FORCE is on: the start-up store mode wins over the persisted one (meant for recovery only)"
                .to_owned(),
        );
    }
    let store_mode = store_mode(r, database_url.is_some())?;

    // Identity.
    let jwt_secret_env = jwt_secret(r)?;
    let bcrypt_cost = r.value("FLUX_BCRYPT_COST", "10", int_in(4, 15), "must be an integer 4-15")? as u32;
    if bcrypt_cost < 10 {
        r.warnings.push(format!(
            "FLUX_BCRYPT_COST={bcrypt_cost} is below 10, the cost of the legacy hashes; meant for tests only"
        ));
    }
    let google_client_ids = r
        .opt_value(
            "GOOGLE_CLIENT_ID",
            |s| {
                let ids: Vec<String> = s.split(',').map(|p| p.trim().to_owned()).collect();
                ids.iter().all(|id| !id.is_empty()).then_some(ids)
            },
            "must be one client id or a comma list of them, without empty entries",
        )?
        .unwrap_or_default();
    let google_jwks_url = r.value(
        "FLUX_GOOGLE_JWKS_URL",
        DEFAULT_GOOGLE_JWKS_URL,
        |s| valid_jwks_url(s).then(|| s.to_owned()),
        "must be an https:// URL, or an http:// URL to a loopback address",
    )?;

    // HTTP.
    let cors_origins = cors_origins(r)?;
    let trust_proxy = r.value(
        "FLUX_TRUST_PROXY",
        "loopback",
        parse_trust_proxy,
        "must be none, loopback or a comma list of CIDRs such as 10.0.0.0/8,fd00::/8",
    )?;
    let body_limit =
        r.value("FLUX_BODY_LIMIT", "10MiB", size_in(KIB, 100 * MIB), "must be a size between 1KiB and 100MiB")?
            as usize;
    let upload_max_file =
        r.value("FLUX_UPLOAD_MAX_FILE", "50MiB", size_in(KIB, 4 * GIB), "must be a size between 1KiB and 4GiB")?;
    let upload_max_files = r.value("FLUX_UPLOAD_MAX_FILES", "10", int_in(1, 100), "must be an integer 1-100")? as usize;
    let upload_dir = match r.raw("FLUX_UPLOAD_DIR") {
        Some(raw) => {
            let path = PathBuf::from(raw.value.trim());
            check_dir(r, &raw, &path)?;
            path
        }
        None => {
            // A file where the default upload dir would go is as fatal as a bad FLUX_UPLOAD_DIR.
            let path = data_dir.join("uploads");
            let raw =
                Raw { value: path.display().to_string(), source: Source::Default, label: "FLUX_UPLOAD_DIR".to_owned() };
            check_dir(r, &raw, &path)?;
            path
        }
    };
    let rate_limit_enabled = r.value(
        "FLUX_RATE_LIMIT",
        "on",
        |s| match s.to_ascii_lowercase().as_str() {
            "on" => Some(true),
            "off" => Some(false),
            _ => None,
        },
        "must be on or off",
    )?;
    if !rate_limit_enabled {
        r.warnings
            .push("FLUX_RATE_LIMIT=off: every rate limiter is disabled (meant for tests and benchmarks)".to_owned());
    }
    let mut rates = BTreeMap::new();
    for &(var, default) in RATE_DEFAULTS {
        let rate = r.value(
            var,
            default,
            parse_rate,
            "must be N/WINDOW with N 1-1000000 and a window between 1s and 24h (e.g. 10/15m), or off",
        )?;
        rates.insert(var.to_owned(), rate);
    }

    // Socket.IO and instance.
    let socket_max_payload = r.value(
        "FLUX_SOCKET_MAX_PAYLOAD",
        "1000000",
        size_in(KIB, 10_000_000),
        "must be an integer number of bytes between 1024 and 10000000",
    )? as usize;
    let socket_ping_interval = r.value(
        "FLUX_SOCKET_PING_INTERVAL",
        "25s",
        duration_in(secs(1), mins(5)),
        "must be a duration between 1s and 5m",
    )?;
    let socket_ping_timeout = r.value(
        "FLUX_SOCKET_PING_TIMEOUT",
        "20s",
        duration_in(secs(1), mins(5)),
        "must be a duration between 1s and 5m",
    )?;
    let instance_id = match r.opt_value(
        "FLUX_INSTANCE_ID",
        |s| valid_instance_id(s).then(|| s.to_owned()),
        "must be 1-64 characters from A-Z, a-z, 0-9, '.', '_' and '-'",
    )? {
        Some(id) => id,
        None => {
            r.sources.insert("FLUX_INSTANCE_ID", Source::Generated);
            format!("flux-{}", hex::encode(rand::random::<[u8; 4]>()))
        }
    };

    Ok(Config {
        host,
        port,
        data_dir,
        static_dir,
        upload_dir,
        store_mode,
        database_url,
        database_read_url,
        jwt_secret_env,
        bcrypt_cost,
        google_client_ids,
        google_jwks_url,
        cors_origins,
        body_limit,
        upload_max_file,
        upload_max_files,
        request_timeout,
        shutdown_grace,
        json_compact_bytes,
        json_compact_seconds,
        log_format,
        rust_log,
        instance_id,
        rate_limit_enabled,
        rates,
        warnings: std::mem::take(&mut r.warnings),
        infos: std::mem::take(&mut r.infos),
        sources: std::mem::take(&mut r.sources),
        metrics_addr,
        store_force,
        shadow_read_rate,
        database_ca_cert,
        database_url_assembled,
        db_password_set,
        db_pool,
        outbox_interval,
        trust_proxy,
        socket_max_payload,
        socket_ping_interval,
        socket_ping_timeout,
        presence_snapshot_interval: secs(15),
        presence_expiry: secs(45),
        env_file,
    })
}

fn path_setting(r: &mut Resolver<'_>, var: &'static str, default: &str) -> Result<PathBuf, ConfigError> {
    let raw =
        r.raw(var).unwrap_or_else(|| Raw { value: default.to_owned(), source: Source::Default, label: var.to_owned() });
    let path = PathBuf::from(raw.value.trim());
    check_dir(r, &raw, &path)?;
    Ok(path)
}

/// A directory the server will create and write: an existing one must be a writable directory, a
/// missing one must have a writable directory as its nearest existing ancestor. Nothing is created
/// here.
fn check_dir(r: &Resolver<'_>, raw: &Raw, path: &Path) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(r.invalid(raw, "must be a directory path"));
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            if writable(path) {
                Ok(())
            } else {
                Err(r.invalid(raw, "the directory is not writable by this user"))
            }
        }
        Ok(_) => Err(r.invalid(raw, "exists and is not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut ancestor = path.parent();
            while let Some(dir) = ancestor {
                let probe = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
                match std::fs::metadata(probe) {
                    Ok(meta) if meta.is_dir() && writable(probe) => return Ok(()),
                    Ok(_) => {
                        return Err(r.invalid(
                            raw,
                            &format!("cannot be created: {} is not a writable directory", probe.display()),
                        ))
                    }
                    Err(_) => ancestor = dir.parent(),
                }
            }
            Err(r.invalid(raw, "cannot be created"))
        }
        Err(e) => Err(r.invalid(raw, &format!("cannot be accessed: {e}"))),
    }
}

fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c_path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

fn same_bind_ip(host: &str, ip: IpAddr) -> bool {
    let host_ip = if host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => return false,
        }
    };
    host_ip == ip || host_ip.is_unspecified() || ip.is_unspecified()
}

/// `DATABASE_URL`, or a URL assembled from `DB_*` when at least one of them is set. Returns (url,
/// assembled).
fn database_url(r: &mut Resolver<'_>) -> Result<(Option<String>, bool), ConfigError> {
    if let Some(raw) = r.raw("DATABASE_URL") {
        check_postgres_url(r, &raw)?;
        return Ok((Some(raw.value.trim().to_owned()), false));
    }
    const DB_VARS: [&str; 5] = ["DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD"];
    let Some(first_source) = DB_VARS.iter().find_map(|v| r.env_raw(v).map(|raw| raw.source)) else {
        return Ok((None, false));
    };
    r.sources.insert("DATABASE_URL", first_source);

    let host =
        r.value("DB_HOST", "localhost", db_host_for_url, "must be a host name, an IP address or a socket directory")?;
    let port =
        r.value("DB_PORT", "5432", |s| s.parse::<u16>().ok().filter(|&p| p != 0), "must be an integer 1-65535")?;
    let name = r.value("DB_NAME", "fluxstudio", |s| Some(s.to_owned()), "")?;
    let user = r.raw("DB_USER").map(|raw| raw.value);
    // No flag, never echoed: only whether it is set.
    let password = r.raw("DB_PASSWORD").map(|raw| raw.value);

    let userinfo = match (user, password) {
        (None, None) => String::new(),
        (Some(u), None) => format!("{}@", percent_encode(&u)),
        (u, Some(p)) => {
            // A URL cannot carry a password without a user name; libpq's default is the OS user.
            let u = u.or_else(os_user_name).unwrap_or_default();
            format!("{}:{}@", percent_encode(&u), percent_encode(&p))
        }
    };
    Ok((Some(format!("postgres://{userinfo}{host}:{port}/{}", percent_encode(&name))), true))
}

/// The name of the effective user, as libpq would default it.
fn os_user_name() -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: an all-zero passwd is a valid value for getpwuid_r to overwrite.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to a live local of the stated size; getpwuid_r writes only within them.
    let rc = unsafe { libc::getpwuid_r(libc::geteuid(), &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`, which is still alive.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str().ok().map(str::to_owned)
}

fn db_host_for_url(s: &str) -> Option<String> {
    if s.starts_with('/') {
        return Some(percent_encode(s));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        });
    }
    let ok = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    ok.then(|| s.to_owned())
}

fn check_postgres_url(r: &mut Resolver<'_>, raw: &Raw) -> Result<(), ConfigError> {
    let value = raw.value.trim();
    if !valid_postgres_url(value) {
        return Err(r.invalid_shown(
            raw,
            &redact_url(value),
            "must be a URL of the form postgres://user:password@host:port/database (or postgresql://)",
        ));
    }
    if raw.source == Source::Flag && url_has_password(value) {
        r.warnings.push(format!(
            "{} contains a password, which every local user can read in the process list; \
             give it through DATABASE_URL or DB_PASSWORD in the environment or .env instead",
            raw.label
        ));
    }
    Ok(())
}

fn valid_postgres_url(s: &str) -> bool {
    let Some(rest) = strip_prefix_ci(s, "postgresql://").or_else(|| strip_prefix_ci(s, "postgres://")) else {
        return false;
    };
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    // libpq accepts several comma-separated hosts, each with an optional port, and an empty host
    // (socket).
    hosts.split(',').all(|hostport| {
        let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
            let Some((v6, after)) = inner.split_once(']') else {
                return false;
            };
            if v6.parse::<std::net::Ipv6Addr>().is_err() {
                return false;
            }
            match after {
                "" => ("x", None),
                p => match p.strip_prefix(':') {
                    Some(port) => ("x", Some(port)),
                    None => return false,
                },
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let host_ok = host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '%'));
        let port_ok = port.is_none_or(|p| p.is_empty() || p.parse::<u16>().is_ok_and(|n| n != 0));
        host_ok && port_ok
    })
}

fn url_has_password(url: &str) -> bool {
    redact_url(url) != url
}

fn check_ca_cert(r: &Resolver<'_>, raw: &Raw) -> Result<(), ConfigError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let value = raw.value.trim();
    if value.contains("-----BEGIN") {
        return if value.contains(BEGIN) && value.contains(END) {
            Ok(())
        } else {
            Err(r.invalid_shown(raw, "<PEM text>", "contains no PEM certificate"))
        };
    }
    match std::fs::read(value) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            if text.contains(BEGIN) && text.contains(END) {
                Ok(())
            } else {
                Err(r.invalid(raw, "the file contains no PEM certificate"))
            }
        }
        Err(e) => Err(r.invalid(raw, &format!("must be a readable PEM file or the PEM text itself ({e})"))),
    }
}

/// Store mode from `--store`/`FLUX_STORE`, else the legacy pair, else `json` (configuration.md §4,
/// steps 1-3; the persisted mode of step 0 is applied by the store layer).
fn store_mode(r: &mut Resolver<'_>, database_configured: bool) -> Result<StoreMode, ConfigError> {
    let explicit = match r.raw("FLUX_STORE") {
        Some(raw) => match StoreMode::parse(&raw.value) {
            Some(mode) => Some((mode, raw)),
            None => return Err(r.invalid(&raw, "must be one of json, dual-json, dual-postgres, postgres")),
        },
        None => None,
    };

    // Both members are validated whenever set, even when FLUX_STORE decides.
    let mut pair_member = |var: &'static str| -> Result<Option<bool>, ConfigError> {
        match r.raw(var) {
            Some(raw) => parse_bool(raw.value.trim())
                .map(Some)
                .ok_or_else(|| r.invalid(&raw, "must be true, false, 1 or 0 (any case)")),
            None => Ok(None),
        }
    };
    let use_postgres = pair_member("USE_POSTGRES")?;
    let dual_write = pair_member("DUAL_WRITE_ENABLED")?;
    let pair = if use_postgres.is_some() || dual_write.is_some() {
        let mode = match (use_postgres.unwrap_or(false), dual_write.unwrap_or(true)) {
            (false, false) => StoreMode::Json,
            (false, true) => StoreMode::DualJson,
            (true, true) => StoreMode::DualPostgres,
            (true, false) => StoreMode::Postgres,
        };
        Some((mode, describe_pair(use_postgres, dual_write)))
    } else {
        None
    };

    let (mode, label, source) = match (explicit, pair) {
        (Some((mode, raw)), pair) => {
            if let Some((pair_mode, pair_text)) = pair {
                if pair_mode != mode {
                    r.warnings.push(format!(
                        "{}={mode} wins over the legacy pair {pair_text}, which means {pair_mode}",
                        raw.label
                    ));
                }
            }
            (mode, format!("{}={}", raw.label, raw.value.trim()), raw.source)
        }
        (None, Some((mode, pair_text))) => {
            if mode == StoreMode::DualJson && !database_configured {
                r.warnings.push(format!(
                    "the legacy pair {pair_text} means dual-json, but no database is configured \
                     (DATABASE_URL or DB_*); running json, as the legacy server effectively did"
                ));
                r.sources.insert("FLUX_STORE", Source::LegacyPair);
                return Ok(StoreMode::Json);
            }
            (mode, format!("legacy pair {pair_text}"), Source::LegacyPair)
        }
        (None, None) => (StoreMode::Json, String::new(), Source::Default),
    };
    r.sources.insert("FLUX_STORE", source);

    if mode.needs_database() && !database_configured {
        return Err(ConfigError(format!(
            "{label}: store mode '{mode}' needs PostgreSQL; set DATABASE_URL (or DB_HOST, DB_PORT, DB_NAME, \
             DB_USER, DB_PASSWORD){}",
            r.origin(source)
        )));
    }
    Ok(mode)
}

fn describe_pair(use_postgres: Option<bool>, dual_write: Option<bool>) -> String {
    let member = |var: &str, value: Option<bool>, default: bool| match value {
        Some(v) => format!("{var}={v}"),
        None => format!("{var} unset (legacy default {default})"),
    };
    format!("{}, {}", member("USE_POSTGRES", use_postgres, false), member("DUAL_WRITE_ENABLED", dual_write, true))
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// `JWT_SECRET` from env/.env, validated (configuration.md §5). The value is never part of a
/// message.
fn jwt_secret(r: &mut Resolver<'_>) -> Result<Option<String>, ConfigError> {
    let Some(raw) = r.raw("JWT_SECRET") else {
        r.sources.insert("JWT_SECRET", Source::Generated);
        return Ok(None);
    };
    let origin = r.origin(raw.source);
    if let Some(why) = weak_secret_reason(&raw.value) {
        return Err(ConfigError(format!("JWT_SECRET is too weak: {why}{origin}; {SECRET_ADVICE}")));
    }
    Ok(Some(raw.value))
}

/// Why a secret is weak, or `None` when it is acceptable.
fn weak_secret_reason(secret: &str) -> Option<String> {
    const PLACEHOLDERS: &[&str] = &[
        "your-secret-key-change-in-production",
        "change-in-production",
        "change_in_production",
        "changeme",
        "change-me",
        "change-this",
        "your-secret",
        "your_secret",
    ];
    let lower = secret.to_lowercase();
    if PLACEHOLDERS.iter().any(|p| lower.contains(p)) {
        return Some("it is a known placeholder".to_owned());
    }
    let mut chars = secret.chars();
    if let Some(first) = chars.next() {
        if chars.all(|c| c == first) {
            return Some("it is one character repeated".to_owned());
        }
    }
    if secret.len() < 32 {
        return Some(format!("it is {} bytes long, at least 32 are required", secret.len()));
    }
    None
}

fn cors_origins(r: &mut Resolver<'_>) -> Result<Vec<String>, ConfigError> {
    let raw = r.raw("CORS_ORIGINS");
    let text = raw.as_ref().map_or(DEFAULT_CORS_ORIGINS, |raw| raw.value.as_str());
    // The default list is valid, so errors always concern a given value; the fallback only
    // satisfies the types.
    let raw = raw.clone().unwrap_or_else(|| Raw {
        value: text.to_owned(),
        source: Source::Default,
        label: "CORS_ORIGINS".to_owned(),
    });
    let raw = &raw;
    let mut origins: Vec<String> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry == "*" {
            return Err(
                r.invalid(raw, "'*' is not allowed because the API allows credentials; list the origins explicitly")
            );
        }
        let origin = match entry.strip_suffix('/') {
            Some(stripped) => {
                r.warnings.push(format!(
                    "CORS_ORIGINS entry '{entry}' ends with '/', which a browser's Origin never does; using \
                     '{stripped}'"
                ));
                stripped
            }
            None => entry,
        };
        if !valid_origin(origin) {
            return Err(r.invalid(raw, &format!("entry '{entry}' is not of the form scheme://host[:port]")));
        }
        if !origins.iter().any(|o| o == origin) {
            origins.push(origin.to_owned());
        }
    }
    Ok(origins)
}

fn valid_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    scheme_ok && valid_host_port(rest)
}

/// `host[:port]` with a DNS name, an IPv4 address or a bracketed IPv6 address, and nothing after
/// it.
fn valid_host_port(s: &str) -> bool {
    let (host_ok, port) = if let Some(inner) = s.strip_prefix('[') {
        match inner.split_once(']') {
            Some((v6, after)) => (
                v6.parse::<std::net::Ipv6Addr>().is_ok(),
                match after {
                    "" => None,
                    p => match p.strip_prefix(':') {
                        Some(port) => Some(port),
                        None => return false,
                    },
                },
            ),
            None => return false,
        }
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        (!host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')), port)
    };
    host_ok && port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && p.parse::<u16>().is_ok())
}

fn valid_jwks_url(s: &str) -> bool {
    let (rest, secure) = match strip_prefix_ci(s, "https://") {
        Some(rest) => (rest, true),
        None => match strip_prefix_ci(s, "http://") {
            Some(rest) => (rest, false),
            None => return false,
        },
    };
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.contains('@') || !valid_host_port(authority) {
        return false;
    }
    if secure {
        return true;
    }
    let host = match authority.strip_prefix('[') {
        Some(inner) => inner.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn parse_trust_proxy(s: &str) -> Option<TrustProxy> {
    match s.to_ascii_lowercase().as_str() {
        "none" => return Some(TrustProxy::None),
        "loopback" => return Some(TrustProxy::Loopback),
        _ => {}
    }
    let mut list = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (ip, len) = match part.split_once('/') {
            Some((ip, len)) => (ip.parse::<IpAddr>().ok()?, len.parse::<u8>().ok()?),
            None => {
                let ip = part.parse::<IpAddr>().ok()?;
                (ip, if ip.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if len > max {
            return None;
        }
        list.push((ip, len));
    }
    (!list.is_empty()).then_some(TrustProxy::Cidrs(list))
}

/// IPv4-mapped IPv6 peers (dual-stack listeners) compare as IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn cidr_contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (canonical_ip(net), ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

fn parse_rate(s: &str) -> Option<Option<(u32, Duration)>> {
    if s.eq_ignore_ascii_case("off") {
        return Some(None);
    }
    let (n, window) = s.split_once('/')?;
    let n: u32 = n.trim().parse().ok()?;
    let window = parse_duration(window)?;
    ((1..=1_000_000).contains(&n) && window >= secs(1) && window <= hours(24)).then_some(Some((n, window)))
}

fn valid_instance_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A syntax check of tracing's `EnvFilter` directives (`level`, `target`, `target=level`,
/// `target[span{f}]=level`); the logging set-up still parses the filter itself.
fn valid_log_filter(s: &str) -> bool {
    fn is_level(l: &str) -> bool {
        matches!(
            l.to_ascii_lowercase().as_str(),
            "trace" | "debug" | "info" | "warn" | "error" | "off" | "0" | "1" | "2" | "3" | "4" | "5"
        )
    }
    s.split(',').map(str::trim).all(|directive| {
        if directive.is_empty() {
            return true;
        }
        let (target, level) = match directive.rsplit_once('=') {
            // `=` can also occur inside a span field filter: `[span{field=value}]`.
            Some((t, l)) if !l.contains([']', '}']) => (t, Some(l)),
            _ => (directive, None),
        };
        let balanced = target.matches('[').count() == target.matches(']').count()
            && target.matches('{').count() == target.matches('}').count();
        let target_ok = !target.chars().any(char::is_whitespace) && balanced;
        match level {
            Some(l) => target_ok && !target.is_empty() && is_level(l.trim()),
            None => target_ok,
        }
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s.is_char_boundary(prefix.len()) && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
fn mins(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}
fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

fn duration_in(min: Duration, max: Duration) -> impl Fn(&str) -> Option<Duration> {
    move |s| parse_duration(s).filter(|d| *d >= min && *d <= max)
}

fn size_in(min: u64, max: u64) -> impl Fn(&str) -> Option<u64> {
    move |s| parse_size(s).filter(|n| (min..=max).contains(n))
}

fn int_in(min: u64, max: u64) -> impl Fn(&str) -> Option<u64> {
    move |s| s.parse::<u64>().ok().filter(|n| (min..=max).contains(n))
}

// -------------------------------------------------------------------------------------------------
// Public helpers
// -------------------------------------------------------------------------------------------------

/// `500ms`, `30s`, `15m`, `1h`, `7d`; a bare `0` is zero.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let millis_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(n.checked_mul(millis_per_unit)?))
}

/// Bytes, or a number with `KiB`/`MiB`/`GiB` (powers of 1024) or `KB`/`MB`/`GB` (powers of 1000);
/// units in any case.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => KIB,
        "mib" => MIB,
        "gib" => GIB,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// The URL with any password replaced by `***` (`postgres://flux:***@db:5432/flux`), including a
/// `password=` query parameter. Anything between `://` and the last `@` counts as user info, so an
/// unencoded `@`, `/` or `?` in a password cannot leak it; the price is over-redaction of malformed
/// URLs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let (head, rest) = url.split_at(scheme_end + 3);
    let mut out = String::from(head);
    let after_userinfo = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    match after_userinfo.split_once('?') {
        Some((before, query)) => {
            out.push_str(before);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(after_userinfo),
    }
    out
}

/// Reads or creates `<data_dir>/.jwt-secret` (configuration.md §5) unless `JWT_SECRET` was given.
///
/// Returns the secret, its source (`Env`/`DotEnv` for `JWT_SECRET`, else `Generated`) and warnings
/// for the caller to log. Creates the data dir when missing.
pub fn resolve_jwt_secret(cfg: &Config) -> Result<(String, Source, Vec<String>), ConfigError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    if let Some(secret) = &cfg.jwt_secret_env {
        return Ok((secret.clone(), cfg.source("JWT_SECRET"), Vec::new()));
    }
    let mut warnings = Vec::new();
    let path = cfg.data_dir.join(JWT_SECRET_FILE);
    let shown = path.display();
    let secret = match std::fs::read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|_| ConfigError(format!("{shown}: the JWT secret file is not valid UTF-8")))?;
            let secret = text.lines().next().unwrap_or("").to_owned();
            if secret.len() < 32 {
                return Err(ConfigError(format!(
                    "{shown}: the JWT secret in this file is {} bytes long, at least 32 are required; replace \
                     its line with the output of `openssl rand -hex 32`, or delete the file to generate a new \
                     one (either signs everybody out once)",
                    secret.len()
                )));
            }
            let mode = std::fs::metadata(&path).map(|m| m.permissions().mode()).unwrap_or(0);
            if mode & 0o077 != 0 {
                warnings.push(format!(
                    "{shown} is accessible by group or others (mode {:04o}); run `chmod 600 {shown}`",
                    mode & 0o7777
                ));
            }
            secret
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&cfg.data_dir)
                .map_err(|e| ConfigError(format!("cannot create the data dir {}: {e}", cfg.data_dir.display())))?;
            let secret = hex::encode(rand::random::<[u8; 32]>());
            let tmp = cfg.data_dir.join(format!(".{JWT_SECRET_FILE}.tmp-{}", hex::encode(rand::random::<[u8; 6]>())));
            let write = || -> std::io::Result<()> {
                let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
                // The umask cannot widen 0600, but an unusual one could narrow it below what we
                // need to read.
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                file.write_all(format!("{secret}\n").as_bytes())?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                if let Ok(dir) = std::fs::File::open(&cfg.data_dir) {
                    let _ = dir.sync_all();
                }
                Ok(())
            };
            if let Err(e) = write() {
                let _ = std::fs::remove_file(&tmp);
                return Err(ConfigError(format!("cannot write the JWT secret file {shown}: {e}")));
            }
            warnings.push(format!(
                "JWT_SECRET is not set: generated a new secret and stored it in {shown}; keep this file (deleting \
                 it signs everybody out)"
            ));
            secret
        }
        Err(e) => return Err(ConfigError(format!("cannot read the JWT secret file {shown}: {e}"))),
    };
    if cfg.store_mode == StoreMode::Postgres {
        warnings.push(format!(
            "postgres mode may run several instances, but the JWT secret was generated in {shown} on this machine: \
             give every instance the same JWT_SECRET, or tokens will only be valid on the instance that issued them"
        ));
    }
    Ok((secret, Source::Generated, warnings))
}

// -------------------------------------------------------------------------------------------------
// Start-up report (configuration.md §11)
// -------------------------------------------------------------------------------------------------

impl Config {
    /// Where the value of variable `var` came from (`Default` when it was never resolved).
    pub fn source(&self, var: &str) -> Source {
        self.sources.get(var).copied().unwrap_or(Source::Default)
    }

    /// Creates the data and upload directories (configuration.md §9: missing directories are
    /// created at start-up).
    pub fn create_dirs(&self) -> Result<(), ConfigError> {
        for (var, dir) in [("FLUX_DATA_DIR", &self.data_dir), ("FLUX_UPLOAD_DIR", &self.upload_dir)] {
            std::fs::create_dir_all(dir)
                .map_err(|e| ConfigError(format!("{var}='{}': cannot create the directory: {e}", dir.display())))?;
        }
        Ok(())
    }

    /// The redacted start-up block: version, instance id, then one line per group, each value with
    /// its source. `jwt` is the resolved secret and its source, when known. Warnings and infos are
    /// not included.
    pub fn report_lines(&self, jwt: Option<(&str, Source)>) -> Vec<String> {
        let s = |var: &str| self.source(var);
        let mut lines = vec![
            format!("fluxstudio {}", env!("CARGO_PKG_VERSION")),
            format!("instance id: {} ({})", self.instance_id, s("FLUX_INSTANCE_ID")),
        ];

        lines.push(format!(
            "listener: host {} ({}), port {} ({}), request timeout {} ({}), shutdown grace {} ({}), static files {} \
             ({}), log format {} ({}), log filter {} ({})",
            self.host,
            s("HOST"),
            self.port,
            s("PORT"),
            fmt_duration(self.request_timeout),
            s("FLUX_REQUEST_TIMEOUT"),
            fmt_duration(self.shutdown_grace),
            s("FLUX_SHUTDOWN_GRACE"),
            self.static_dir.display(),
            s("FLUX_STATIC_DIR"),
            self.log_format.as_str(),
            s("FLUX_LOG_FORMAT"),
            self.rust_log,
            s("RUST_LOG"),
        ));
        lines.push(match self.metrics_addr {
            Some(addr) => format!(
                "metrics listener: {addr} ({}); /metrics is not served on the main port",
                s("FLUX_METRICS_ADDR")
            ),
            None => "metrics listener: none (default); /metrics on the main port for loopback clients".to_owned(),
        });
        lines.push(format!(
            "data dir: {} ({}); .env file: {}",
            self.data_dir.display(),
            s("FLUX_DATA_DIR"),
            match &self.env_file {
                Some(path) => format!("{} (loaded)", path.display()),
                None => "none loaded".to_owned(),
            }
        ));
        lines.push(format!(
            "store mode: {} ({}){}; JSON journal compaction at {} ({}) or {}s ({})",
            self.store_mode,
            s("FLUX_STORE"),
            if self.store_force {
                format!(", forced over the persisted mode ({})", s("FLUX_STORE_FORCE"))
            } else {
                String::new()
            },
            fmt_size(self.json_compact_bytes),
            s("FLUX_JSON_COMPACT_BYTES"),
            self.json_compact_seconds,
            s("FLUX_JSON_COMPACT_SECONDS"),
        ));
        lines.push(match &self.database_url {
            Some(url) => {
                let mut line = format!(
                    "database: {} ({}{})",
                    redact_url(url),
                    s("DATABASE_URL"),
                    if self.database_url_assembled { ", assembled from DB_*" } else { "" }
                );
                if self.database_url_assembled {
                    line.push_str(if self.db_password_set { ", DB_PASSWORD set" } else { ", DB_PASSWORD unset" });
                }
                if self.database_ca_cert.is_some() {
                    line.push_str(&format!("; CA certificate set ({})", s("DATABASE_CA_CERT")));
                }
                if self.store_mode == StoreMode::Json {
                    line.push_str("; not contacted in json mode");
                }
                line
            }
            None => "database: not configured".to_owned(),
        });
        lines.push(match &self.database_read_url {
            Some(url) => format!("read replica: {} ({})", redact_url(url), s("DATABASE_READ_URL")),
            None => "read replica: not configured".to_owned(),
        });
        let p = &self.db_pool;
        lines.push(format!(
            "pool: max {} ({}), min {} ({}), idle timeout {} ({}), acquire timeout {} ({}), statement timeout {} \
             ({}), max lifetime {} ({}), outbox interval {} ({}), shadow read rate {} ({})",
            p.max,
            s("FLUX_DB_POOL_MAX"),
            p.min,
            s("FLUX_DB_POOL_MIN"),
            fmt_duration(p.idle_timeout),
            s("FLUX_DB_IDLE_TIMEOUT"),
            fmt_duration(p.acquire_timeout),
            s("FLUX_DB_ACQUIRE_TIMEOUT"),
            if p.statement_timeout.is_zero() { "off".to_owned() } else { fmt_duration(p.statement_timeout) },
            s("FLUX_DB_STATEMENT_TIMEOUT"),
            fmt_duration(p.max_lifetime),
            s("FLUX_DB_MAX_LIFETIME"),
            fmt_duration(self.outbox_interval),
            s("FLUX_OUTBOX_INTERVAL"),
            self.shadow_read_rate,
            s("FLUX_SHADOW_READ_RATE"),
        ));
        let secret_file = self.data_dir.join(JWT_SECRET_FILE);
        let jwt_text = match (jwt, &self.jwt_secret_env) {
            (Some((_, Source::Generated)), _) => {
                format!("generated, stored in {}", secret_file.display())
            }
            (Some((secret, source)), _) => format!("set, {} bytes ({source})", secret.len()),
            (None, Some(secret)) => {
                format!("set, {} bytes ({})", secret.len(), s("JWT_SECRET"))
            }
            (None, None) => format!("from {} (generated if missing)", secret_file.display()),
        };
        lines.push(format!("JWT secret: {jwt_text}; bcrypt cost {} ({})", self.bcrypt_cost, s("FLUX_BCRYPT_COST")));
        lines.push(if self.google_client_ids.is_empty() {
            "Google sign-in: disabled, GOOGLE_CLIENT_ID unset (default)".to_owned()
        } else {
            format!(
                "Google sign-in: client ids {} ({}), keys from {} ({})",
                self.google_client_ids.join(", "),
                s("GOOGLE_CLIENT_ID"),
                self.google_jwks_url,
                s("FLUX_GOOGLE_JWKS_URL"),
            )
        });
        lines.push(format!(
            "CORS: origins {} ({}); trusted proxies {} ({})",
            if self.cors_origins.is_empty() { "none".to_owned() } else { self.cors_origins.join(", ") },
            s("CORS_ORIGINS"),
            self.trust_proxy,
            s("FLUX_TRUST_PROXY"),
        ));
        let rates: Vec<String> = RATE_DEFAULTS
            .iter()
            .map(|(var, _)| {
                let name = var.trim_start_matches("FLUX_RATE_").to_ascii_lowercase().replace('_', " ");
                let value = match self.rates.get(*var).copied().flatten() {
                    Some((n, window)) => format!("{n}/{}", fmt_duration(window)),
                    None => "off".to_owned(),
                };
                format!("{name} {value} ({})", s(var))
            })
            .collect();
        lines.push(format!(
            "rate limits: {} ({}); {}",
            if self.rate_limit_enabled { "on" } else { "off" },
            s("FLUX_RATE_LIMIT"),
            rates.join(", ")
        ));
        lines.push(format!(
            "uploads: dir {} ({}), max file {} ({}), max files {} ({}); body limit {} ({}); socket payload {} ({}), \
             ping interval {} ({}), ping timeout {} ({})",
            self.upload_dir.display(),
            s("FLUX_UPLOAD_DIR"),
            fmt_size(self.upload_max_file),
            s("FLUX_UPLOAD_MAX_FILE"),
            self.upload_max_files,
            s("FLUX_UPLOAD_MAX_FILES"),
            fmt_size(self.body_limit as u64),
            s("FLUX_BODY_LIMIT"),
            fmt_size(self.socket_max_payload as u64),
            s("FLUX_SOCKET_MAX_PAYLOAD"),
            fmt_duration(self.socket_ping_interval),
            s("FLUX_SOCKET_PING_INTERVAL"),
            fmt_duration(self.socket_ping_timeout),
            s("FLUX_SOCKET_PING_TIMEOUT"),
        ));
        lines
    }
}

/// The largest unit that divides the duration exactly, in the syntax the variables accept.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The largest binary unit that divides the size exactly, else bytes.
pub fn fmt_size(n: u64) -> String {
    for (unit, size) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if n != 0 && n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
    }
    format!("{n} bytes")
}

// -------------------------------------------------------------------------------------------------
// Tests
// -------------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, UserCommand};

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Parsed, ParseFailure> {
        let argv = std::iter::once("fluxstudio").chain(args.iter().copied()).map(OsString::from).collect();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse_with_env(argv, &env, true)
    }

    /// Parses without any .env file.
    fn cfg(args: &[&str], env: &[(&str, &str)]) -> Config {
        let mut all = vec!["--no-env-file"];
        all.extend_from_slice(args);
        match run(&all, env) {
            Ok(p) => p.config,
            Err(e) => panic!("unexpected failure: {e:?}"),
        }
    }

    fn err_of(result: Result<Parsed, ParseFailure>) -> String {
        match result {
            Ok(p) => panic!("expected an error, got {:?}", p.config),
            Err(ParseFailure::Config(e)) => e.0,
            Err(ParseFailure::Clap(e)) => panic!("expected a config error, got clap: {e}"),
        }
    }

    fn err(args: &[&str], env: &[(&str, &str)]) -> String {
        let mut all = vec!["--no-env-file"];
        all.extend_from_slice(args);
        err_of(run(&all, env))
    }

    fn write_env(dir: &tempfile::TempDir, text: &str) -> String {
        let path = dir.path().join("test.env");
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    const GOOD_SECRET: &str = "3f9a1c0e5b7d2a4f6e8c0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a";

    #[test]
    fn defaults_match_the_spec() {
        let c = cfg(&[], &[]);
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.port, 3001);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.static_dir, PathBuf::from("./build"));
        assert_eq!(c.upload_dir, PathBuf::from("./data/uploads"));
        assert_eq!(c.store_mode, StoreMode::Json);
        assert_eq!(c.database_url, None);
        assert_eq!(c.database_read_url, None);
        assert_eq!(c.jwt_secret_env, None);
        assert_eq!(c.bcrypt_cost, 10);
        assert!(c.google_client_ids.is_empty());
        assert_eq!(c.google_jwks_url, DEFAULT_GOOGLE_JWKS_URL);
        assert_eq!(c.cors_origins, vec!["http://localhost:3000", "http://localhost:5173", "https://fluxstudio.art"]);
        assert_eq!(c.body_limit, 10 * 1024 * 1024);
        assert_eq!(c.upload_max_file, 50 * 1024 * 1024);
        assert_eq!(c.upload_max_files, 10);
        assert_eq!(c.request_timeout, secs(30));
        assert_eq!(c.shutdown_grace, secs(10));
        assert_eq!(c.json_compact_bytes, 64 * 1024 * 1024);
        assert_eq!(c.json_compact_seconds, 300);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.rust_log, "info");
        assert!(c.instance_id.starts_with("flux-") && c.instance_id.len() == 13);
        assert!(valid_instance_id(&c.instance_id));
        assert!(c.rate_limit_enabled);
        assert_eq!(c.rates["FLUX_RATE_GLOBAL"], Some((1000, mins(15))));
        assert_eq!(c.rates["FLUX_RATE_PROJECT_CREATE"], Some((10, hours(1))));
        assert_eq!(c.rates["FLUX_RATE_SOCKET_EVENTS"], Some((50, secs(10))));
        assert_eq!(c.rates.len(), 9);
        assert_eq!(c.metrics_addr, None);
        assert_eq!(c.trust_proxy, TrustProxy::Loopback);
        assert_eq!(c.db_pool.max, 20);
        assert_eq!(c.db_pool.min, 0);
        assert_eq!(c.db_pool.acquire_timeout, secs(2));
        assert_eq!(c.db_pool.max_lifetime, mins(30));
        assert_eq!(c.outbox_interval, secs(1));
        assert_eq!(c.shadow_read_rate, 0.0);
        assert_eq!(c.socket_max_payload, 1_000_000);
        assert_eq!(c.socket_ping_interval, secs(25));
        assert_eq!(c.socket_ping_timeout, secs(20));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert!(c.infos.is_empty());
        assert_eq!(c.source("PORT"), Source::Default);
        assert_eq!(c.source("FLUX_STORE"), Source::Default);
        assert_eq!(c.source("JWT_SECRET"), Source::Generated);
        assert_eq!(c.source("FLUX_INSTANCE_ID"), Source::Generated);
    }

    #[test]
    fn flag_beats_env_beats_dotenv_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_env(&dir, "PORT=1111\nHOST=127.0.0.1\nFLUX_BCRYPT_COST=11\nFLUX_LOG_FORMAT=json\n");
        let env = [("PORT", "2222"), ("HOST", "::1")];
        let p = run(&["--env-file", &file, "serve", "--port", "3333"], &env).unwrap();
        let c = &p.config;
        assert_eq!((c.port, c.source("PORT")), (3333, Source::Flag));
        assert_eq!((c.host.as_str(), c.source("HOST")), ("::1", Source::Env));
        assert_eq!((c.bcrypt_cost, c.source("FLUX_BCRYPT_COST")), (11, Source::DotEnv));
        assert_eq!((c.log_format, c.source("FLUX_LOG_FORMAT")), (LogFormat::Json, Source::DotEnv));
        assert_eq!((c.shutdown_grace, c.source("FLUX_SHUTDOWN_GRACE")), (secs(10), Source::Default));
        assert_eq!(c.source("FLUX_ENV_FILE"), Source::Flag);
        assert_eq!(c.env_file.as_deref(), Some(Path::new(&file)));

        // Only variables missing from the environment are taken from the file.
        let mut taken: Vec<&str> = p.dotenv.iter().map(|(k, _)| k.as_str()).collect();
        taken.sort();
        assert_eq!(taken, ["FLUX_BCRYPT_COST", "FLUX_LOG_FORMAT"]);

        // The returned Cli carries flag and env/.env values, as clap would with the .env file
        // loaded.
        match p.cli.command {
            Some(Command::Serve(s)) => {
                assert_eq!(s.port.as_deref(), Some("3333"));
                assert_eq!(s.host.as_deref(), Some("::1"));
                assert_eq!(s.bcrypt_cost.as_deref(), Some("11"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.cli.global.log_format.as_deref(), Some("json"));
    }

    #[test]
    fn global_flags_work_after_the_subcommand_and_env_reaches_user_commands() {
        let c = cfg(&["user", "grant-admin", "a@example.com", "--data-dir", "/tmp/x"], &[("FLUX_BCRYPT_COST", "12")]);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.source("FLUX_DATA_DIR"), Source::Flag);
        assert_eq!(c.bcrypt_cost, 12);
        let p = run(&["--no-env-file", "user", "create", "--email", "a@b.c", "--name", "A", "--admin"], &[]).unwrap();
        assert!(matches!(p.cli.command, Some(Command::User(UserCommand::Create { admin: true, .. }))));
    }

    #[test]
    fn flags_exist_for_every_serve_variable_and_are_read() {
        // Each env-backed serve flag must be consumed by the resolver under its variable name.
        let cmd = Cli::command();
        let serve = cmd.find_subcommand("serve").unwrap();
        for arg in serve.get_arguments() {
            let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            let var = var.to_str().unwrap();
            let flag = format!("--{long}");
            match run(&["--no-env-file", "serve", &flag, "zz-invalid"], &[]) {
                Ok(p) => assert_eq!(p.config.source(var), Source::Flag, "{flag}"),
                Err(ParseFailure::Config(e)) => assert!(e.0.contains(&flag), "{flag}: {e}"),
                Err(ParseFailure::Clap(e)) => panic!("{flag}: {e}"),
            }
        }
        assert!(serve.get_arguments().all(|a| a.get_env().is_none_or(|v| v != "JWT_SECRET" && v != "DB_PASSWORD")));
    }

    #[test]
    fn legacy_pair_rows() {
        let db = ("DATABASE_URL", "postgres://flux@localhost/flux");
        // false/false -> json.
        let c = cfg(&[], &[("USE_POSTGRES", "false"), ("DUAL_WRITE_ENABLED", "FALSE")]);
        assert_eq!((c.store_mode, c.source("FLUX_STORE")), (StoreMode::Json, Source::LegacyPair));
        // false/true -> dual-json with a database, json + warning without one.
        let c = cfg(&[], &[("USE_POSTGRES", "0"), ("DUAL_WRITE_ENABLED", "1"), db]);
        assert_eq!((c.store_mode, c.source("FLUX_STORE")), (StoreMode::DualJson, Source::LegacyPair));
        let c = cfg(&[], &[("USE_POSTGRES", "false"), ("DUAL_WRITE_ENABLED", "true")]);
        assert_eq!(c.store_mode, StoreMode::Json);
        assert!(c.warnings.iter().any(|w| w.contains("means dual-json") && w.contains("running json")));
        // true/true -> dual-postgres; true/false -> postgres.
        let c = cfg(&[], &[("USE_POSTGRES", "True"), ("DUAL_WRITE_ENABLED", "TRUE"), db]);
        assert_eq!((c.store_mode, c.source("FLUX_STORE")), (StoreMode::DualPostgres, Source::LegacyPair));
        let c = cfg(&[], &[("USE_POSTGRES", "1"), ("DUAL_WRITE_ENABLED", "0"), db]);
        assert_eq!((c.store_mode, c.source("FLUX_STORE")), (StoreMode::Postgres, Source::LegacyPair));
        // A missing member takes the legacy default: USE_POSTGRES false, DUAL_WRITE_ENABLED true.
        let c = cfg(&[], &[("DUAL_WRITE_ENABLED", "true")]);
        assert!(c.warnings.iter().any(|w| w.contains("USE_POSTGRES unset (legacy default false)")));
        let c = cfg(&[], &[("USE_POSTGRES", "true"), db]);
        assert_eq!(c.store_mode, StoreMode::DualPostgres);
        // Pair -> dual-json with DB_* configured counts as a database.
        let c = cfg(&[], &[("DUAL_WRITE_ENABLED", "true"), ("DB_HOST", "db")]);
        assert_eq!(c.store_mode, StoreMode::DualJson);
        // Booleans other than true/false/1/0 are errors, even when FLUX_STORE decides.
        let e = err(&[], &[("USE_POSTGRES", "yes"), ("FLUX_STORE", "json")]);
        assert_eq!(e, "USE_POSTGRES='yes': must be true, false, 1 or 0 (any case)");
    }

    #[test]
    fn flux_store_wins_over_the_pair_with_a_warning() {
        let c = cfg(&[], &[("FLUX_STORE", "json"), ("USE_POSTGRES", "true"), ("DUAL_WRITE_ENABLED", "true")]);
        assert_eq!((c.store_mode, c.source("FLUX_STORE")), (StoreMode::Json, Source::Env));
        assert!(
            c.warnings.iter().any(|w| w.contains("FLUX_STORE=json wins over the legacy pair")
                && w.contains("USE_POSTGRES=true, DUAL_WRITE_ENABLED=true")
                && w.contains("dual-postgres")),
            "{:?}",
            c.warnings
        );
        // Agreement is silent.
        let c = cfg(&["--store", "json"], &[("USE_POSTGRES", "false"), ("DUAL_WRITE_ENABLED", "false")]);
        assert_eq!(c.source("FLUX_STORE"), Source::Flag);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn every_mode_is_available_and_database_modes_need_a_database() {
        let db = ("DATABASE_URL", "postgres://flux@localhost/flux");
        assert_eq!(cfg(&[], &[("FLUX_STORE", "dual-postgres"), db]).store_mode, StoreMode::DualPostgres);
        assert_eq!(cfg(&[], &[("FLUX_STORE", "postgres"), db]).store_mode, StoreMode::Postgres);
        assert_eq!(cfg(&["--store", "dual-json"], &[db]).store_mode, StoreMode::DualJson);
        for mode in ["postgres", "dual-json", "dual-postgres"] {
            assert!(err(&[], &[("FLUX_STORE", mode)]).contains("needs PostgreSQL"), "{mode}");
        }
        assert_eq!(
            err(&[], &[("FLUX_STORE", "mongo")]),
            "FLUX_STORE='mongo': must be one of json, dual-json, dual-postgres, postgres"
        );
    }

    #[test]
    fn invalid_values_name_variable_value_and_rule() {
        assert_eq!(err(&[], &[("PORT", "abc")]), "PORT='abc': must be an integer 0-65535");
        assert_eq!(err(&["serve", "--port", "70000"], &[]), "--port='70000': must be an integer 0-65535");
        assert_eq!(cfg(&[], &[("PORT", "0")]).port, 0);
        assert!(err(&[], &[("HOST", "example.com")]).starts_with("HOST='example.com': "));
        assert!(err(&[], &[("FLUX_BCRYPT_COST", "16")]).contains("4-15"));
        assert!(err(&[], &[("FLUX_SHUTDOWN_GRACE", "6m")]).starts_with("FLUX_SHUTDOWN_GRACE='6m'"));
        assert!(err(&[], &[("FLUX_REQUEST_TIMEOUT", "30")]).starts_with("FLUX_REQUEST_TIMEOUT='30'"));
        assert!(err(&[], &[("FLUX_BODY_LIMIT", "200MiB")]).starts_with("FLUX_BODY_LIMIT='200MiB'"));
        assert!(err(&[], &[("FLUX_LOG_FORMAT", "xml")]).contains("text or json"));
        assert!(err(&[], &[("FLUX_RATE_LOGIN", "0/15m")]).starts_with("FLUX_RATE_LOGIN='0/15m'"));
        assert!(err(&[], &[("FLUX_RATE_LOGIN", "10/25h")]).starts_with("FLUX_RATE_LOGIN='10/25h'"));
        assert!(err(&[], &[("FLUX_INSTANCE_ID", "a b")]).starts_with("FLUX_INSTANCE_ID='a b'"));
        assert!(err(&[], &[("FLUX_DB_POOL_MIN", "30")]).contains("FLUX_DB_POOL_MAX (20)"));
        assert!(err(&[], &[("FLUX_SHADOW_READ_RATE", "1.5")]).contains("0.0 and 1.0"));
        assert!(err(&[], &[("FLUX_RATE_LIMIT", "maybe")]).contains("on or off"));
        assert!(err(&[], &[("RUST_LOG", "fluxstudio=loud")]).starts_with("RUST_LOG="));
        assert!(err(&[], &[("FLUX_TRUST_PROXY", "10.0.0.0/33")]).starts_with("FLUX_TRUST_PROXY="));
        assert!(err(&[], &[("FLUX_GOOGLE_JWKS_URL", "http://example.com/keys")]).contains("loopback"));
        assert!(err(&[], &[("GOOGLE_CLIENT_ID", "a,,b")]).starts_with("GOOGLE_CLIENT_ID="));
        let e = err(&[], &[("FLUX_METRICS_ADDR", "0.0.0.0:3001")]);
        assert!(e.contains("must differ from HOST:PORT"), "{e}");
        let e = err(&[], &[("DATABASE_URL", "mysql://u:hunter2@db/x")]);
        assert!(e.starts_with("DATABASE_URL='mysql://u:***@db/x': "), "{e}");
        assert!(!e.contains("hunter2"));
        let e = err(&[], &[("DB_PORT", "0")]);
        assert_eq!(e, "DB_PORT='0': must be an integer 1-65535");
    }

    #[test]
    fn valid_values_are_parsed() {
        let c = cfg(
            &["serve", "--json-compact-seconds", "5m"],
            &[
                ("GOOGLE_CLIENT_ID", " web.apps , mobile.apps "),
                ("FLUX_RATE_GOOGLE", "off"),
                ("FLUX_RATE_LIMIT", "OFF"),
                ("FLUX_TRUST_PROXY", "10.0.0.0/8, fd00::/8"),
                ("FLUX_METRICS_ADDR", "127.0.0.1:9100"),
                ("FLUX_GOOGLE_JWKS_URL", "http://127.0.0.1:4000/certs"),
                ("FLUX_UPLOAD_MAX_FILE", "5MB"),
                ("FLUX_DB_STATEMENT_TIMEOUT", "0"),
                ("HOST", "LOCALHOST"),
                ("RUST_LOG", "info,fluxstudio=debug,tower_http[req{id=1}]=trace"),
                ("NODE_ENV", "production"),
                ("JWT_EXPIRES_IN", "1h"),
                ("UPLOAD_DIR", "/srv/up"),
            ],
        );
        assert_eq!(c.json_compact_seconds, 300);
        assert_eq!(c.google_client_ids, ["web.apps", "mobile.apps"]);
        assert_eq!(c.rates["FLUX_RATE_GOOGLE"], None);
        assert!(!c.rate_limit_enabled);
        assert!(c.trust_proxy.trusts("10.1.2.3".parse().unwrap()));
        assert!(c.trust_proxy.trusts("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.trust_proxy.trusts("11.0.0.1".parse().unwrap()));
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(c.upload_max_file, 5_000_000);
        assert_eq!(c.db_pool.statement_timeout, Duration::ZERO);
        assert_eq!(c.host, "localhost");
        assert_eq!(c.infos.len(), 1);
        assert!(c.infos[0].contains("NODE_ENV"));
        assert!(c.warnings.iter().any(|w| w.contains("JWT_EXPIRES_IN")));
        assert!(c.warnings.iter().any(|w| w.contains("UPLOAD_DIR") && w.contains("FLUX_UPLOAD_DIR")));
        assert!(c.warnings.iter().any(|w| w.contains("FLUX_RATE_LIMIT=off")));
        assert_eq!(cfg(&["-v"], &[("RUST_LOG", "warn")]).rust_log, "debug");
        assert_eq!(cfg(&["-q"], &[]).rust_log, "warn");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = cfg(&[], &[("PORT", ""), ("DATABASE_URL", ""), ("JWT_SECRET", "")]);
        assert_eq!(c.port, 3001);
        assert_eq!(c.database_url, None);
        assert_eq!(c.jwt_secret_env, None);
    }

    #[test]
    fn cors_rules() {
        let e = err(&[], &[("CORS_ORIGINS", "*")]);
        assert!(e.starts_with("CORS_ORIGINS='*': "), "{e}");
        let c = cfg(&[], &[("CORS_ORIGINS", " https://a.example/ ,, http://localhost:3000,capacitor://localhost")]);
        assert_eq!(c.cors_origins, ["https://a.example", "http://localhost:3000", "capacitor://localhost"]);
        assert!(c.warnings.iter().any(|w| w.contains("'https://a.example/'")));
        assert!(err(&[], &[("CORS_ORIGINS", "https://a.example/app")]).contains("scheme://host[:port]"));
        assert!(err(&[], &[("CORS_ORIGINS", "a.example")]).contains("scheme://host[:port]"));
    }

    #[test]
    fn database_url_from_db_vars_and_password_warnings() {
        let c = cfg(
            &[],
            &[("DB_HOST", "db.internal"), ("DB_USER", "flux"), ("DB_PASSWORD", "p@ss:w/rd$"), ("DB_NAME", "app")],
        );
        assert_eq!(c.database_url.as_deref(), Some("postgres://flux:p%40ss%3Aw%2Frd%24@db.internal:5432/app"));
        assert!(c.database_url_assembled && c.db_password_set);
        assert_eq!(c.source("DATABASE_URL"), Source::Env);
        let c = cfg(&[], &[("DB_HOST", "::1")]);
        assert_eq!(c.database_url.as_deref(), Some("postgres://[::1]:5432/fluxstudio"));
        // DATABASE_URL wins over DB_*.
        let c = cfg(&[], &[("DATABASE_URL", "postgresql://a@h:5433/d?sslmode=require"), ("DB_HOST", "x")]);
        assert_eq!(c.database_url.as_deref(), Some("postgresql://a@h:5433/d?sslmode=require"));
        assert!(!c.database_url_assembled);
        // A password on the command line is visible to other users.
        let c = cfg(&["--database-url", "postgres://a:secret@h/d"], &[]);
        assert!(c.warnings.iter().any(|w| w.contains("--database-url contains a password")));
        assert!(c.warnings.iter().all(|w| !w.contains("secret@")));
        let c = cfg(&[], &[("DATABASE_URL", "postgres://a:secret@h/d")]);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn weak_secrets_are_refused_without_echo() {
        for weak in [
            "short-secret",
            "your-secret-key-change-in-production",
            "A-long-value-that-says-CHANGEME-somewhere-in-it!!",
            "prefix-Your_Secret-suffix-long-enough-to-pass-length",
            "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
        ] {
            let e = err(&[], &[("JWT_SECRET", weak)]);
            assert!(e.starts_with("JWT_SECRET is too weak"), "{e}");
            assert!(e.contains("openssl rand -hex 32"), "{e}");
            assert!(!e.contains(weak), "{e}");
        }
        assert!(err(&[], &[("JWT_SECRET", "short")]).contains("5 bytes"));
        assert!(err(&[], &[("JWT_SECRET", "your-secret-key-change-in-production")]).contains("placeholder"));
        assert!(err(&[], &[("JWT_SECRET", &"x".repeat(40))]).contains("repeated"));
        let c = cfg(&[], &[("JWT_SECRET", GOOD_SECRET)]);
        assert_eq!(c.jwt_secret_env.as_deref(), Some(GOOD_SECRET));
        assert_eq!(c.source("JWT_SECRET"), Source::Env);
        assert!(!format!("{c:?}").contains(GOOD_SECRET));
        assert!(c.report_lines(None).iter().all(|l| !l.contains(GOOD_SECRET)));
    }

    #[test]
    fn dotenv_syntax_and_dollar_rule() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_env(
            &dir,
            "# comment\n\nexport PORT=4000\nDB_PASSWORD='pa$$word'\nGOOGLE_CLIENT_ID=\"a\n\" # multi-line\nCORS_ORIGINS=http://x.example # trailing comment $x\nRUST_LOG=info",
        );
        let p = run(&["--env-file", &file], &[]).unwrap();
        assert_eq!(p.config.port, 4000);
        assert_eq!(p.config.source("PORT"), Source::DotEnv);
        assert!(p.dotenv.contains(&("DB_PASSWORD".to_owned(), "pa$$word".to_owned())));
        assert_eq!(p.config.google_client_ids, ["a"]);
        assert_eq!(p.config.cors_origins, ["http://x.example"]);
        assert_eq!(p.config.rust_log, "info");

        for (text, line) in [
            ("PORT=4000\nDB_PASSWORD=pa$word\n", 2),
            ("DB_PASSWORD=\"pa$word\"\n", 1),
            ("A=1\n\nDB_PASSWORD=\"x\ny$z\"\n", 3),
            ("DB_PASSWORD=pa\\$word\n", 1),
        ] {
            let file = write_env(&dir, text);
            let e = err_of(run(&["--env-file", &file], &[]));
            assert!(e.starts_with(&format!("{file}:{line}: the value of DB_PASSWORD contains '$'")), "{e}");
            assert!(e.contains("single quotes") && !e.contains("word"), "{e}");
        }
    }

    #[test]
    fn bad_dotenv_lines_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        for (text, line) in [
            ("PORT=1\nthis is not a line\n", 2),
            ("PORT=1\n\nJWT_SECRET=abc def\n", 3),
            ("A=1\nB=\"never closed\nC=2\n", 2),
            ("1BAD=x\n", 1),
        ] {
            let file = write_env(&dir, text);
            let e = err_of(run(&["--env-file", &file], &[]));
            assert!(e.starts_with(&format!("{file}:{line}: cannot parse this line")), "{text:?}: {e}");
            assert!(!e.contains("abc def"), "{e}");
        }
    }

    #[test]
    fn env_file_selection() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.env");
        let missing = missing.to_str().unwrap();
        let e = err_of(run(&["--env-file", missing], &[]));
        assert_eq!(e, format!("--env-file='{missing}': the .env file does not exist"));
        let e = err_of(run(&[], &[("FLUX_ENV_FILE", missing)]));
        assert!(e.starts_with("FLUX_ENV_FILE="), "{e}");
        // --no-env-file wins over FLUX_ENV_FILE.
        assert!(run(&["--no-env-file"], &[("FLUX_ENV_FILE", missing)]).is_ok());
        // The environment wins over the file.
        let file = write_env(&dir, "PORT=1234\nPORT=9999\n");
        let p = run(&[], &[("FLUX_ENV_FILE", &file), ("PORT", "4321")]).unwrap();
        assert_eq!((p.config.port, p.config.source("PORT")), (4321, Source::Env));
        assert!(p.dotenv.is_empty());
        // Duplicate keys: the first wins (dotenvy's rule), with a warning.
        let p = run(&["--env-file", &file], &[]).unwrap();
        assert_eq!(p.config.port, 1234);
        assert!(p.config.warnings.iter().any(|w| w.contains("line 1") && w.contains("line 2")));
    }

    #[test]
    fn clap_errors_stay_clap_errors() {
        assert!(matches!(run(&["frobnicate"], &[]), Err(ParseFailure::Clap(_))));
        assert!(matches!(run(&["serve", "--jwt-secret", "x"], &[]), Err(ParseFailure::Clap(_))));
        assert!(matches!(run(&["-q", "-v"], &[]), Err(ParseFailure::Clap(_))));
        match run(&["--help"], &[]) {
            Err(ParseFailure::Clap(e)) => assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn serve_help_lists_env_and_defaults() {
        let mut cmd = Cli::command();
        cmd.build();
        let help = cmd.find_subcommand_mut("serve").unwrap().render_long_help().to_string();
        for needle in ["env: PORT", "[default: 3001]", "env: FLUX_DATA_DIR", "env: FLUX_BCRYPT_COST", "--check-config"]
        {
            assert!(help.contains(needle), "{needle} missing from:\n{help}");
        }
    }

    #[test]
    fn jwt_secret_file_is_created_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let c = cfg(&["--data-dir", data.to_str().unwrap()], &[]);
        let (secret, source, warnings) = resolve_jwt_secret(&c).unwrap();
        assert_eq!(source, Source::Generated);
        assert_eq!(secret.len(), 64);
        assert!(secret.chars().all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase()));
        assert!(warnings.iter().any(|w| w.contains(".jwt-secret")));
        let path = data.join(".jwt-secret");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{secret}\n"));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(&data).unwrap().collect();
        assert_eq!(leftovers.len(), 1);

        let (again, _, warnings) = resolve_jwt_secret(&c).unwrap();
        assert_eq!(again, secret);
        assert!(warnings.is_empty());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, _, warnings) = resolve_jwt_secret(&c).unwrap();
        assert!(warnings.iter().any(|w| w.contains("chmod 600")));

        std::fs::write(&path, "tooshort\n").unwrap();
        let e = resolve_jwt_secret(&c).unwrap_err().0;
        assert!(e.contains("at least 32") && !e.contains("tooshort"), "{e}");

        let c = cfg(&["--data-dir", data.to_str().unwrap()], &[("JWT_SECRET", GOOD_SECRET)]);
        assert_eq!(resolve_jwt_secret(&c).unwrap(), (GOOD_SECRET.to_owned(), Source::Env, vec![]));
    }

    #[test]
    fn data_dir_that_is_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let e = err(&[], &[("FLUX_DATA_DIR", file.to_str().unwrap())]);
        assert!(e.contains("exists and is not a directory"), "{e}");
        let nested = dir.path().join("a/b/c");
        assert_eq!(cfg(&[], &[("FLUX_DATA_DIR", nested.to_str().unwrap())]).data_dir, nested);
    }

    #[test]
    fn duration_and_size_parsers() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(secs(30)));
        assert_eq!(parse_duration("15m"), Some(mins(15)));
        assert_eq!(parse_duration("1h"), Some(hours(1)));
        assert_eq!(parse_duration("7d"), Some(hours(24 * 7)));
        assert_eq!(parse_duration(" 2 s "), Some(secs(2)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "30", "s", "1.5s", "-1s", "10x", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("1KiB"), Some(1024));
        assert_eq!(parse_size("10MiB"), Some(10 << 20));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("1KB"), Some(1000));
        assert_eq!(parse_size("10mb"), Some(10_000_000));
        assert_eq!(parse_size("1GB"), Some(1_000_000_000));
        for bad in ["", "MiB", "1.5MiB", "1TiB", "-1", "99999999999GiB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(fmt_duration(mins(15)), "15m");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(fmt_size(64 << 20), "64MiB");
        assert_eq!(fmt_size(1_000_000), "1000000 bytes");
    }

    #[test]
    fn redact_url_hides_passwords() {
        assert_eq!(redact_url("postgres://flux:s3cret@db:5432/flux"), "postgres://flux:***@db:5432/flux");
        assert_eq!(redact_url("postgres://flux@db/flux"), "postgres://flux@db/flux");
        assert_eq!(redact_url("postgres://db/flux"), "postgres://db/flux");
        assert_eq!(redact_url("postgres://u:p@ss/w?rd@db/x"), "postgres://u:***@db/x");
        assert_eq!(
            redact_url("postgresql://db/x?sslmode=require&password=hunter2"),
            "postgresql://db/x?sslmode=require&password=***"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn report_shows_sources_and_no_secrets() {
        let c = cfg(
            &["serve", "--port", "8080"],
            &[("DB_PASSWORD", "hunter2"), ("DB_USER", "flux"), ("JWT_SECRET", GOOD_SECRET)],
        );
        let lines = c.report_lines(Some((GOOD_SECRET, Source::Env)));
        let text = lines.join("\n");
        assert!(lines[0].starts_with("fluxstudio "));
        assert!(lines[1].starts_with("instance id: flux-") && lines[1].ends_with("(generated)"));
        assert!(text.contains("port 8080 (flag)"), "{text}");
        assert!(text.contains("host 0.0.0.0 (default)"), "{text}");
        assert!(
            text.contains("postgres://flux:***@localhost:5432/fluxstudio (env, assembled from DB_*), DB_PASSWORD set")
        );
        assert!(text.contains("JWT secret: set, 64 bytes (env)"), "{text}");
        assert!(!text.contains("hunter2") && !text.contains(GOOD_SECRET));
        for group in [
            "listener:",
            "metrics listener:",
            "data dir:",
            "store mode: json (default)",
            "database:",
            "read replica:",
            "pool:",
            "JWT secret:",
            "Google sign-in:",
            "CORS:",
            "rate limits: on (default)",
            "uploads:",
        ] {
            assert!(text.contains(group), "{group} missing:\n{text}");
        }
        let lines = c.report_lines(Some(("x".repeat(64).as_str(), Source::Generated)));
        assert!(lines.iter().any(|l| l.contains("generated, stored in ./data/.jwt-secret")));
    }
}
