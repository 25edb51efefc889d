//! Payment attempts: the durable record of every paid outbound call.
//!
//! - [`attempt`], [`money`], [`id`], [`time`], [`command`], [`validation`], [`page`]: the
//!   domain, pure code with no AWS types;
//! - [`store`]: the one place that knows the DynamoDB table;
//! - [`api`]: identity, query parsing, errors and envelopes for API Gateway;
//! - [`runtime`]: what every Lambda builds once at init (config, client, logging).

pub mod api;
pub mod attempt;
pub mod command;
pub mod id;
pub mod idempotency;
pub mod money;
pub mod page;
pub mod runtime;
pub mod store;
pub mod summary;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod validation;

pub use attempt::{Attempt, Status, StatusTransition, View};
pub use id::{AttemptId, OrganizationId};
pub use page::{Cursor, ListQuery, Page};
pub use store::{AttemptStore, StoreError};
