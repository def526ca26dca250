//! Integration tests through the public HTTP API (and the CLI binary) of a real server.

mod auth_api;
mod backup;
mod bad_input;
mod cli;
mod durability;
mod files_api;
mod google_api;
#[path = "../support/google.rs"]
mod google_support;
mod http_hardening;
mod legacy_fixtures;
mod members_api;
mod ops_api;
mod projects_api;
mod rate_limits;
mod shutdown;
mod socket_compat;
mod support;
mod tasks_api;
mod teams_api;
