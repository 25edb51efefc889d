//! The DynamoDB table: the only module that knows its keys and item layout.
//!
//! One organization's writes spread over many partition keys ([`keys`]): attempts over the
//! shards of its layout ([`crate::layout`]), picked by their id (retrieve stays one GetItem;
//! a layout grows without moving data), idempotency records
//! and replay guards each on a key of their own, written in the same transaction as the
//! attempt so that one never exists without the other. Summary counters are not in that
//! transaction: the summarizer keeps them from the table's stream ([`summary`]). The
//! organization is in every key, so no request can reach another tenant's items.
//!
//! - [`keys`]: key formats; [`item`]: attempts to items and back;
//! - [`transact`]: transactions and what DynamoDB's answers say; [`write`]: creates, status
//!   changes and refusals judged into a [`Written`]; [`idempotency`]: keys and guards;
//! - [`list`]: pages, merged across shards; [`summary`]: counters, and keeping them.

mod idempotency;
mod item;
pub mod keys;
mod layout;
mod list;
mod summarize;
mod summary;
mod transact;
mod write;

use std::future::Future;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::Client;
use tokio::time::Instant;

use crate::attempt::{Attempt, Status};
use crate::budget::Deadline;
use crate::id::{AttemptId, OrganizationId};
use item::{from_item, s, Item};
use keys::{attempt_pk, attempt_sk};
pub use layout::LAYOUT_TTL;
pub use list::{DEFAULT_MAX_READS, LARGEST_ROW_UNITS, READ_UNITS_PER_REQUEST};
pub use summarize::{AttemptChange, Recount, Unsummarized};
use transact::classify;
pub use write::Written;

/// Key attribute and index names, as declared in `template.yaml`.
pub mod schema {
    pub const PARTITION_KEY: &str = "pk";
    pub const SORT_KEY: &str = "sk";
    pub const SESSION_INDEX: &str = "by_session";
    pub const SESSION_PARTITION_KEY: &str = "session_pk";
    pub const SESSION_SORT_KEY: &str = "id";
    pub const TTL_ATTRIBUTE: &str = "expires_at";
}
use schema::*;

/// How long init waits for [`AttemptStore::warm_up`].
pub const WARM_UP_BOUND: std::time::Duration = std::time::Duration::from_secs(1);

/// A call that failed. What became of a write is a [`Written`], not an error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttled after the SDK's retries, unreachable, timed out or failing on AWS's side: the
    /// caller may retry. For a write, its outcome is unknown.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// DynamoDB answered that another transaction was writing the item: this call wrote
    /// nothing, and a retry may pass.
    #[error("another transaction is writing the item")]
    Contention,
    /// An item that does not decode: a bug or a hand edit, never the caller's fault.
    #[error("stored item is malformed: {0}")]
    Corrupt(String),
    #[error("storage request failed: {0}")]
    Other(String),
}

#[derive(Clone, Debug)]
pub struct AttemptStore {
    client: Client,
    table: String,
    /// The organizations' layouts as this process read them (shared by its clones).
    layouts: std::sync::Arc<layout::Layouts>,
    /// What a row of each organization cost in its last list (shared by its clones).
    row_units: std::sync::Arc<list::RowUnits>,
    max_reads: u32,
    /// When set, every call gives up at this instant (the request's time budget).
    deadline: Option<Instant>,
    /// When set, reading back a write whose answer was lost may go on until this instant.
    settle: Option<Instant>,
}

impl AttemptStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        AttemptStore {
            client,
            table: table.into(),
            layouts: std::sync::Arc::new(layout::Layouts::new(LAYOUT_TTL)),
            row_units: Default::default(),
            max_reads: DEFAULT_MAX_READS,
            deadline: None,
            settle: None,
        }
    }

    /// Trusts a copy of a layout for `ttl` (default [`LAYOUT_TTL`]); a layout grows two of
    /// them after it is written. Tests and benches grow organizations in a blink with it.
    pub fn with_layout_ttl(self, ttl: std::time::Duration) -> Self {
        AttemptStore { layouts: std::sync::Arc::new(layout::Layouts::new(ttl)), ..self }
    }

    /// Bounds the Query calls of one list request (default [`DEFAULT_MAX_READS`]).
    pub fn with_max_reads(self, max_reads: u32) -> Self {
        AttemptStore { max_reads: max_reads.max(1), ..self }
    }

    /// The same store for one request: every call made through it, SDK retries included,
    /// ends by `deadline` ([`StoreError::Unavailable`] if DynamoDB has not answered).
    pub fn until(&self, deadline: std::time::Instant) -> Self {
        AttemptStore { deadline: Some(Instant::from_std(deadline)), ..self.clone() }
    }

    /// The same store for one write: its calls end by the work deadline, and reading back a
    /// write whose answer was lost by the settle deadline.
    pub fn within(&self, deadline: Deadline) -> Self {
        AttemptStore {
            deadline: Some(Instant::from_std(deadline.work)),
            settle: Some(Instant::from_std(deadline.settle)),
            ..self.clone()
        }
    }

    /// This store for reading back, until the settle deadline.
    fn settling(&self) -> Self {
        AttemptStore { deadline: self.settle.or(self.deadline), ..self.clone() }
    }

    /// Sends one request within the deadline; the SDK's own error is left to the caller.
    async fn call<T, E>(
        &self,
        request: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<Result<T, SdkError<E, HttpResponse>>, StoreError> {
        match self.deadline {
            None => Ok(request.await),
            Some(deadline) => tokio::time::timeout_at(deadline, request)
                .await
                .map_err(|_| StoreError::Unavailable("no answer within the request's time budget".to_owned())),
        }
    }

    /// Waits `pause`, or until the deadline if that comes first.
    pub async fn pause(&self, pause: std::time::Duration) {
        let until = Instant::now() + pause;
        tokio::time::sleep_until(self.deadline.map_or(until, |deadline| deadline.min(until))).await;
    }

    /// Strongly consistent: an attempt just recorded is always found.
    pub async fn get(&self, org: &OrganizationId, id: &AttemptId) -> Result<Option<Attempt>, StoreError> {
        let layout = self.layout(org).await?;
        self.read(attempt_pk(org, id, &layout), &attempt_sk(id)).await?.map(|item| from_item(&item)).transpose()
    }

    /// Reads a key no item ever has, so that the connection (DNS, TCP, TLS), the credentials
    /// and the request path are ready before the first event. Bounded to one second so an
    /// outage cannot hold init; errors are only logged, as the first request reports them.
    pub async fn warm_up(&self) {
        let read =
            self.client.get_item().table_name(&self.table).key(PARTITION_KEY, s("WARMUP")).key(SORT_KEY, s("WARMUP"));
        match tokio::time::timeout(WARM_UP_BOUND, read.send()).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(error = %classify(err), "DynamoDB warm-up failed"),
            Err(_) => tracing::warn!("DynamoDB warm-up timed out"),
        }
    }

    /// One item, strongly consistent.
    async fn read(&self, partition_key: String, sort_key: &str) -> Result<Option<Item>, StoreError> {
        let request = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(partition_key))
            .key(SORT_KEY, s(sort_key))
            .consistent_read(true)
            .send();
        Ok(self.call(request).await?.map_err(classify)?.item)
    }
}

/// A pending or succeeded attempt holds its request hash; failed and released ones let go.
pub(super) fn holds_guard(status: Status) -> bool {
    matches!(status, Status::Pending | Status::Succeeded)
}
