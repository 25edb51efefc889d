//! Transactions, and what DynamoDB's answer means for the caller.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

use super::item::{opt_s, Item};
use super::schema::PARTITION_KEY;
use super::{AttemptStore, StoreError};
use crate::id::AttemptId;
use crate::metrics::Metric;

/// Rounds a transaction is tried while shared counters are busy.
const CONTENTION_RETRIES: u32 = 6;

impl AttemptStore {
    /// Runs the writes as one transaction. Its request token makes the SDK's own retries of it
    /// idempotent: a retry after a lost response is answered as the first try was.
    pub(super) async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let kinds: Vec<WriteKind> = writes.iter().map(Write::kind).collect();
        let items: Vec<TransactWriteItem> = writes.into_iter().map(Write::into_item).collect();
        let mut round = 0;
        loop {
            // A fresh token each round: a cancelled transaction wrote nothing.
            let token = uuid::Uuid::now_v7().simple().to_string();
            let request = self.client.transact_write_items().set_transact_items(Some(items.clone()));
            let err = match self.call(request.client_request_token(token).send()).await? {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            let reasons = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e)) => e.cancellation_reasons().to_vec(),
                _ => return Err(classify(err)),
            };
            match cancelled(&kinds, &reasons) {
                // Shared counters were busy with another transaction: wait a little and retry.
                StoreError::Contention if round + 1 < CONTENTION_RETRIES => {
                    let jitter = u64::from(uuid::Uuid::now_v7().as_bytes()[15] % 16);
                    self.pause(std::time::Duration::from_millis((5 + jitter) << round)).await;
                    round += 1;
                }
                // The last round's contention too: the caller answers a 409 to retry.
                other => return Err(other),
            }
        }
    }
}

pub(super) fn put(
    table: &str,
    item: Item,
    condition: &str,
    values: &[(&str, AttributeValue)],
) -> Result<Put, StoreError> {
    let mut put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    for (name, attribute) in [("#pk", PARTITION_KEY), ("#version", "version"), ("#state", "state")] {
        if condition.contains(name) {
            put = put.expression_attribute_names(name, attribute);
        }
    }
    for (name, value) in values {
        put = put.expression_attribute_values(*name, value.clone());
    }
    put.build().map_err(|e| StoreError::Other(e.to_string()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Attempt,
    Guard,
    Key,
    Counter,
    Marker,
}

/// One write of a transaction, named for what its failure means.
pub(super) enum Write {
    Attempt(Put),
    Guard(Put),
    GuardFree(ConditionCheck),
    ReleaseGuard(Delete),
    Key(Put),
    Counter(Update),
    /// The last version of an attempt the counters hold.
    Marker(Put),
}

impl Write {
    fn kind(&self) -> WriteKind {
        match self {
            Write::Attempt(_) => WriteKind::Attempt,
            Write::Guard(_) | Write::GuardFree(_) | Write::ReleaseGuard(_) => WriteKind::Guard,
            Write::Key(_) => WriteKind::Key,
            Write::Counter(_) => WriteKind::Counter,
            Write::Marker(_) => WriteKind::Marker,
        }
    }

    fn into_item(self) -> TransactWriteItem {
        match self {
            Write::Attempt(p) | Write::Guard(p) | Write::Key(p) | Write::Marker(p) => {
                TransactWriteItem::builder().put(p).build()
            }
            Write::GuardFree(c) => TransactWriteItem::builder().condition_check(c).build(),
            Write::ReleaseGuard(d) => TransactWriteItem::builder().delete(d).build(),
            Write::Counter(u) => TransactWriteItem::builder().update(u).build(),
        }
    }
}

/// Why a transaction was cancelled, from the reason DynamoDB gives for each of its writes.
fn cancelled(kinds: &[WriteKind], reasons: &[CancellationReason]) -> StoreError {
    if reasons.iter().any(|r| r.code() == Some("TransactionConflict")) {
        Metric::DynamoDbConflict.emit();
    }
    // The idempotency key speaks first: if a request with this key already committed, this
    // one is its retry, whatever else its own writes ran into.
    let key_taken = kinds
        .iter()
        .zip(reasons)
        .any(|(kind, reason)| *kind == WriteKind::Key && reason.code() == Some("ConditionalCheckFailed"));
    if key_taken {
        return StoreError::IdempotencyKeyTaken;
    }
    let counted: Vec<_> = kinds
        .iter()
        .zip(reasons)
        .filter(|(kind, reason)| **kind == WriteKind::Marker && reason.code() == Some("ConditionalCheckFailed"))
        .map(|(_, reason)| {
            let item = reason.item();
            let id = item.and_then(|item| opt_s(item, "attempt_id")).and_then(AttemptId::parse);
            let version = item.and_then(|item| item.get("version")).and_then(|v| v.as_n().ok()?.parse().ok());
            id.zip(version)
        })
        .collect();
    if !counted.is_empty() {
        return counted.into_iter().collect::<Option<_>>().map_or_else(
            || StoreError::Corrupt("summarized marker without attempt_id or version".to_owned()),
            StoreError::Counted,
        );
    }
    let mut contention = false;
    for (kind, reason) in kinds.iter().zip(reasons) {
        match (kind, reason.code().unwrap_or("None")) {
            (_, "None") => {}
            (WriteKind::Attempt, "ConditionalCheckFailed") => return StoreError::VersionConflict,
            (WriteKind::Guard, "ConditionalCheckFailed") => {
                let holder = reason.item().and_then(|item| opt_s(item, "attempt_id")).and_then(AttemptId::parse);
                return match holder {
                    Some(id) => StoreError::DuplicateRequest(id),
                    None => StoreError::Corrupt("replay guard without attempt_id".to_owned()),
                };
            }
            // The attempt itself is being written by someone else: an update re-reads it (a new
            // attempt's item has no other writer).
            (WriteKind::Attempt, "TransactionConflict") => return StoreError::VersionConflict,
            // Anything else, the key included (only this claim's holder can write it): retry.
            (_, "TransactionConflict") => contention = true,
            (_, "ThrottlingError" | "ProvisionedThroughputExceeded" | "RequestLimitExceeded") => {
                Metric::DynamoDbThrottled.emit();
                return StoreError::Unavailable(format!("transaction throttled on {kind:?}"));
            }
            (_, code) => return StoreError::Other(format!("transaction cancelled on {kind:?}: {code}")),
        }
    }
    if contention {
        StoreError::Contention
    } else {
        StoreError::Other("transaction cancelled without a reason".to_owned())
    }
}

/// Maps an SDK failure to what the caller can do about it.
pub(super) fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(err: SdkError<E, HttpResponse>) -> StoreError {
    const THROTTLED: [&str; 3] =
        ["ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded"];
    const RETRYABLE: [&str; 6] = [
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    ];
    if err.code() == Some("TransactionConflictException") {
        Metric::DynamoDbConflict.emit();
        return StoreError::Contention;
    }
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(format!("{err:?}"))
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("");
            if THROTTLED.contains(&code) {
                Metric::DynamoDbThrottled.emit();
            }
            if service.raw().status().is_server_error() || RETRYABLE.contains(&code) {
                StoreError::Unavailable(code.to_owned())
            } else {
                StoreError::Other(format!("{code}: {}", service.err().message().unwrap_or("")))
            }
        }
        _ => StoreError::Other(format!("{err:?}")),
    }
}

#[cfg(test)]
mod faults {
    use super::*;
    use crate::attempt::Attempt;
    use crate::id::OrganizationId;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_sdk_dynamodb::types::error::{ProvisionedThroughputExceededException, ResourceNotFoundException};
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn throttled() -> GetItemError {
        let meta = ErrorMetadata::builder().code("ProvisionedThroughputExceededException").message("slow down").build();
        GetItemError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder().message("slow down").meta(meta).build(),
        )
    }

    async fn get(store: &AttemptStore) -> Result<Option<Attempt>, StoreError> {
        let org = OrganizationId::parse("org_acme").unwrap();
        store.get(&org, &AttemptId::parse(&format!("payatt_{}", "0".repeat(32))).unwrap()).await
    }

    #[tokio::test]
    async fn throttling_that_outlasts_the_retries_is_unavailable() {
        let rule = mock!(Client::get_item).sequence().error(throttled).times(3).build();
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, &[&rule], |c| c
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(3)));
        let store = AttemptStore::new(client, "t");
        assert!(matches!(get(&store).await, Err(StoreError::Unavailable(_))));
        assert_eq!(rule.num_calls(), 3, "the SDK retried before giving up");
    }

    #[tokio::test]
    async fn throttling_the_retries_absorb_is_invisible() {
        let rule = mock!(Client::get_item)
            .sequence()
            .error(throttled)
            .output(|| aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder().build())
            .build();
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, &[&rule], |c| c
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(3)));
        assert!(matches!(get(&AttemptStore::new(client, "t")).await, Ok(None)));
    }

    #[tokio::test]
    async fn a_missing_table_is_not_a_retryable_outage() {
        let rule = mock!(Client::get_item)
            .then_error(|| GetItemError::ResourceNotFoundException(ResourceNotFoundException::builder().build()));
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, &[&rule]);
        assert!(matches!(get(&AttemptStore::new(client, "t")).await, Err(StoreError::Other(_))));
    }
}
