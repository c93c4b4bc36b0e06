//! Black-box tests of the whole service over HTTP. Every test in a module
//! that ends with `both_backends!` runs once on PostgreSQL and once on SQLite.

#[macro_use]
mod helpers;

mod action_keys;
mod auth;
mod database_roles;
mod database_tls;
mod ends;
mod events;
mod events_contract;
mod fakes;
mod faults;
mod framework;
mod health;
mod idempotency;
mod lifecycle;
mod metrics;
mod migrate;
mod openapi;
mod operator;
mod orders_create;
mod orders_list;
mod orders_read;
mod orders_update;
mod pg_pool;
mod proxy;
mod query_plans;
mod traces;
mod upstreams;
