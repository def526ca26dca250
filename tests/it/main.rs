//! Integration tests through the public HTTP API (and the CLI binary) of a real server.

mod auth_api;
mod bad_input;
mod files_api;
#[path = "../support/google.rs"]
mod google_support;
mod http_hardening;
mod members_api;
mod openapi_api;
mod projects_api;
mod rate_limits;
mod support;
/// Tests of what only the JSON store has (journal, legacy files, control socket, file backups) and of whole-binary
/// behaviour that needs one run; the PostgreSQL conformance run skips them (`--skip json_only`).
mod json_only {
    mod backup;
    mod cli;
    mod dual_json;
    mod dual_postgres;
    mod durability;
    mod google_api;
    mod legacy_fixtures;
    mod migrate_cli;
    mod ops_api;
    mod postgres_outage;
    mod shutdown;
    mod socket_compat;
    mod two_instances;
}
mod tasks_api;
mod teams_api;
