//! The integration tests: one binary, one DynamoDB Local per run (shared by every test, each
//! on its own table), a module per area. `tests/load.rs` stays apart: it runs at its own
//! size (`make load`).

#[path = "../common/mod.rs"]
mod common;

mod api;
mod audit;
mod chaos;
mod corpus;
mod events;
mod exactly_once;
mod faults;
mod http;
mod infrastructure;
mod layouts;
mod lifecycle;
mod publishing;
mod summaries;
mod tenancy;
mod writers;
