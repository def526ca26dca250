//! Flux Studio server: REST API over a journaled JSON store (PostgreSQL and the zero-downtime move come next).
//! See README.md for the architecture.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod domain;
pub mod error;
pub mod migrate;
pub mod ratelimit;
pub mod realtime;
pub mod store;
pub mod storecmd;
pub mod telemetry;
pub mod usercmd;
