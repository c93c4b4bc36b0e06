//! The CoffeeMesh orders service: place, change, pay for and cancel orders.
//!
//! `main.rs` and `bin/migrate.rs` are thin: everything lives here so that
//! tests build the same application the binaries run.

pub mod auth;
pub mod config;
pub mod db;
pub mod domain;
pub mod events;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod readiness;
pub mod repository;
pub mod startup;
pub mod telemetry;
pub mod trace_context;
pub mod upstream;
