//! Logging and metrics. Logs: tracing to stderr, human text or JSON lines (`FLUX_LOG_FORMAT`). Metrics: the
//! `metrics` facade with a Prometheus recorder, rendered by `/metrics` (http-api.md §14); the exporter opens no
//! listener of its own, so exposure is decided by our routes alone.

use std::sync::OnceLock;

use metrics::Unit;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogFormat, StoreMode};

pub fn init(filter: &str, format: LogFormat) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("RUST_LOG={filter:?}: {e}"))?;
    // Colours only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).with_ansi(ansi);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| e.to_string())
}

/// Latency buckets in seconds: the legacy alert thresholds (100 ms target, 500 ms alert) fall on bucket edges.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use. The `metrics` facade has one global recorder,
/// so servers started in one process (the tests) share it.
pub fn metrics_handle() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let builder = PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS).expect("the bucket list is not empty");
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            Err(e) => {
                // Another recorder is already global (an embedding program): render an empty one.
                tracing::warn!(error = %e, "cannot install the Prometheus recorder; /metrics stays empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        };
        describe();
        handle
    })
}

/// The Prometheus text, after folding recent histogram samples in.
pub fn render_metrics() -> String {
    let handle = metrics_handle();
    handle.run_upkeep();
    handle.render()
}

fn describe() {
    metrics::describe_counter!("http_requests_total", "HTTP requests by method, route template and status");
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method and route template"
    );
    metrics::describe_gauge!("flux_store_mode", "1 for the live store mode, 0 for the others");
    metrics::describe_histogram!(
        "flux_store_operation_duration_seconds",
        Unit::Seconds,
        "Store operation latency by backend and operation (json: write = until the journal fsync, compact)"
    );
    metrics::describe_counter!("flux_store_errors_total", "Store operations that failed (unavailable, I/O)");
    metrics::describe_counter!("flux_rate_limited_total", "Requests refused with 429, by limiter");
    metrics::describe_counter!("flux_login_failures_total", "Failed sign-ins by method and reason");
    metrics::describe_gauge!("flux_socket_connections", "Open Socket.IO connections");
    metrics::describe_gauge!(
        "flux_db_pool_connections",
        "PostgreSQL pool connections by pool and state (in_use, idle)"
    );
    metrics::describe_gauge!("flux_db_pool_max_connections", "PostgreSQL pool size limit by pool");
    metrics::describe_counter!(
        "flux_fanout_notifications_total",
        "Realtime fan-out notifications between instances (postgres mode), by direction (sent, received, invalid)"
    );
    metrics::describe_counter!(
        "flux_fanout_dropped_total",
        "Realtime events and presence messages committed here but not published to the other instances"
    );
    metrics::describe_gauge!("flux_outbox_depth", "Dual-write outbox entries not yet applied to the secondary");
    metrics::describe_gauge!("flux_outbox_oldest_age_seconds", "Age of the oldest pending outbox entry");
}

/// Registers the series that must exist from the start (a scrape should see 0, not nothing) without resetting
/// values another server in the same process may have recorded.
pub fn register_baseline(mode: StoreMode, limiters: &[&'static str]) {
    metrics_handle();
    set_store_mode(mode);
    metrics::gauge!("flux_socket_connections").increment(0.0);
    metrics::gauge!("flux_outbox_depth").increment(0.0);
    metrics::gauge!("flux_outbox_oldest_age_seconds").increment(0.0);
    for l in limiters {
        metrics::counter!("flux_rate_limited_total", "limiter" => *l).increment(0);
    }
}

/// `flux_store_mode{mode}`: 1 for the live mode. Called at start and by a mode switch.
pub fn set_store_mode(mode: StoreMode) {
    for m in StoreMode::ALL {
        metrics::gauge!("flux_store_mode", "mode" => m.as_str()).set(if m == mode { 1.0 } else { 0.0 });
    }
}
