//! Payment attempts: the durable record of every paid outbound call.
//!
//! - [`attempt`], [`attempt_event`], [`money`], [`id`], [`time`], [`command`], [`validation`], [`page`]: the
//!   domain, pure code with no AWS types;
//! - [`store`]: the one place that knows the DynamoDB table (feature `dynamodb`, on by
//!   default; without it the domain and HTTP mapping build alone, as the fuzzers use them);
//! - [`http`]: identity, query parsing, errors and envelopes for API Gateway; [`metrics`]:
//!   CloudWatch metrics as Embedded Metric Format lines;
//! - [`settings`], [`runtime`]: configuration, and what every Lambda builds once at init;
//!   [`budget`]: the time one invocation may take.

pub mod attempt;
pub mod attempt_event;
pub mod budget;
pub mod command;
pub mod http;
pub mod id;
pub mod idempotency;
pub mod layout;
pub mod metrics;
pub mod money;
pub mod page;
#[cfg(feature = "dynamodb")]
pub mod runtime;
pub mod settings;
#[cfg(feature = "dynamodb")]
pub mod store;
pub mod summary;
#[cfg(all(feature = "testing", feature = "dynamodb"))]
pub mod testing;
pub mod time;
pub mod validation;

pub use attempt::{Attempt, Status, StatusTransition, View};
pub use id::{AttemptId, OrganizationId};
pub use page::{Cursor, ListQuery, Page};
#[cfg(feature = "dynamodb")]
pub use store::{AttemptStore, StoreError};
