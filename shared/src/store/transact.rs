//! Transactions, and what DynamoDB's answers to them say.
//!
//! A transaction's outcome is known only from DynamoDB's answer to the last try that could
//! have committed. The SDK retries a try whose answer was lost (a timeout, a dropped
//! connection, a 5xx) under the same `ClientRequestToken`; real DynamoDB answers such a retry
//! as it answered the first try for ten minutes, but a retry can still be cancelled, throttled
//! or time out while the first try committed. So a cancellation is reported with its reasons
//! for the caller to judge (a condition that failed on this request's own earlier change says
//! it is stored), and anything else that is not a commit is [`Transaction::Unanswered`]: the
//! caller reads back before it answers.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

use super::item::Item;
use super::schema::PARTITION_KEY;
use super::{AttemptStore, StoreError};
use crate::metrics::Metric;

/// Rounds a transaction is tried while other transactions hold its items.
const CONTENTION_RETRIES: u32 = 6;
/// Tries of one round under its token, when an answer does not come or says to retry.
const TRIES_PER_ROUND: u32 = 3;

/// What DynamoDB said of a transaction.
pub(super) enum Transaction {
    Committed,
    /// DynamoDB answered the last try: it was cancelled, with a reason for each write. A
    /// round of conflicts only is tried again, up to [`CONTENTION_RETRIES`] rounds, unless an
    /// earlier try's answer was lost: then `after_lost_answer`, and that earlier try may
    /// still commit, so only what the reasons show of this request's own change is known.
    Cancelled {
        cancels: Vec<Cancel>,
        after_lost_answer: bool,
    },
    /// No answer to the last try that could have committed: a timeout, a dropped connection,
    /// a 5xx, `TransactionInProgressException`, or throttling through every try.
    Unanswered(String),
}

/// Why one write of a cancelled transaction failed, as DynamoDB reports it.
pub(super) struct Cancel {
    pub kind: WriteKind,
    pub reason: Reason,
    /// The item as it was, when its condition failed.
    pub item: Option<Item>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    /// This write was fine; another one failed.
    None,
    ConditionFailed,
    /// Another transaction was writing the item.
    Conflict,
    Throttled,
    /// A reason that means a bug (a validation error, an item too large).
    Other,
}

impl Cancel {
    fn from(kind: WriteKind, reason: &CancellationReason) -> Self {
        let code = reason.code().unwrap_or("None");
        let reason_kind = match code {
            "None" => Reason::None,
            "ConditionalCheckFailed" => Reason::ConditionFailed,
            "TransactionConflict" => Reason::Conflict,
            "ThrottlingError" | "ProvisionedThroughputExceeded" | "RequestLimitExceeded" => Reason::Throttled,
            _ => Reason::Other,
        };
        Cancel { kind, reason: reason_kind, item: reason.item().cloned() }
    }
}

/// Only conflicts (and writes that were fine): another round may pass.
pub(super) fn conflicts_only(cancels: &[Cancel]) -> bool {
    cancels.iter().all(|c| matches!(c.reason, Reason::None | Reason::Conflict))
        && cancels.iter().any(|c| c.reason == Reason::Conflict)
}

/// The failed condition of the first write of `kind`, with the item it found.
pub(super) fn condition_failed(cancels: &[Cancel], kind: WriteKind) -> Option<&Cancel> {
    cancels.iter().find(|c| c.kind == kind && c.reason == Reason::ConditionFailed)
}

impl AttemptStore {
    /// Runs the writes as one transaction, again while only conflicts with other transactions
    /// cancel it. Each round has a request token of its own, and its tries carry it, so that
    /// DynamoDB answers a try after a lost answer as it answered the first. The SDK does not
    /// retry transactions itself: the store must know whether an answer was lost.
    pub(super) async fn transact(&self, writes: Vec<Write>) -> Result<Transaction, StoreError> {
        let kinds: Vec<WriteKind> = writes.iter().map(Write::kind).collect();
        let items: Vec<TransactWriteItem> = writes.into_iter().map(Write::into_item).collect();
        let mut lost: Option<String> = None;
        let mut round = 0;
        loop {
            let token = uuid::Uuid::now_v7().simple().to_string();
            let mut tries = 0;
            let reasons = loop {
                let request = self
                    .client
                    .transact_write_items()
                    .set_transact_items(Some(items.clone()))
                    .client_request_token(&token)
                    .customize()
                    .config_override(aws_sdk_dynamodb::config::Builder::new().retry_config(RetryConfig::disabled()));
                let err = match self.call(request.send()).await {
                    Ok(Ok(_)) => return Ok(Transaction::Committed),
                    Ok(Err(err)) => err,
                    // Out of time: whatever is on its way may still commit.
                    Err(StoreError::Unavailable(why)) => return Ok(Transaction::Unanswered(lost.unwrap_or(why))),
                    Err(other) => return Err(other),
                };
                if let Some(TransactWriteItemsError::TransactionCanceledException(e)) = err.as_service_error() {
                    break e.cancellation_reasons().to_vec();
                }
                // Throttled as a whole: DynamoDB did not run it. Anything else may have committed.
                let throttled = err.code().is_some_and(|code| THROTTLED.contains(&code));
                let why = match classify(err) {
                    StoreError::Unavailable(why) => why,
                    other => return Err(other),
                };
                if !throttled {
                    lost = Some(why.clone());
                }
                tries += 1;
                if tries == TRIES_PER_ROUND {
                    return Ok(Transaction::Unanswered(lost.unwrap_or(why)));
                }
                let jitter = u64::from(uuid::Uuid::now_v7().as_bytes()[15] % 16);
                self.pause(std::time::Duration::from_millis((20 + jitter) << tries)).await;
            };
            let cancels: Vec<Cancel> = kinds.iter().zip(&reasons).map(|(kind, r)| Cancel::from(*kind, r)).collect();
            if cancels.iter().any(|c| c.reason == Reason::Conflict) {
                Metric::DynamoDbConflict.emit();
            }
            if cancels.iter().any(|c| c.reason == Reason::Throttled) {
                Metric::DynamoDbThrottled.emit();
            }
            // After a lost answer no new round starts: its try may still commit, and the
            // caller must judge this cancellation knowing that.
            let after_lost_answer = lost.is_some();
            if after_lost_answer || !conflicts_only(&cancels) || round + 1 >= CONTENTION_RETRIES {
                return Ok(Transaction::Cancelled { cancels, after_lost_answer });
            }
            let jitter = u64::from(uuid::Uuid::now_v7().as_bytes()[15] % 16);
            self.pause(std::time::Duration::from_millis((5 + jitter) << round)).await;
            round += 1;
        }
    }
}

/// What DynamoDB said of one conditional put sent alone.
pub(super) enum Single {
    Written,
    /// The condition failed; the item as it was, if there was one.
    ConditionFailed(Option<Item>),
    /// A transaction was writing the item: nothing was written.
    Conflict,
    /// No answer to a try that could have written it.
    Unanswered(String),
}

impl AttemptStore {
    /// Sends one conditional put on its own (a PutItem: half a transaction's write units).
    pub(super) async fn put_alone(&self, put: Put) -> Result<Single, StoreError> {
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(put.item))
            .set_condition_expression(put.condition_expression)
            .set_expression_attribute_names(put.expression_attribute_names)
            .set_expression_attribute_values(put.expression_attribute_values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send();
        let err = match self.call(request).await {
            Ok(Ok(_)) => return Ok(Single::Written),
            Ok(Err(err)) => err,
            Err(StoreError::Unavailable(why)) => return Ok(Single::Unanswered(why)),
            Err(other) => return Err(other),
        };
        if let Some(PutItemError::ConditionalCheckFailedException(failed)) = err.as_service_error() {
            return Ok(Single::ConditionFailed(failed.item().cloned()));
        }
        match classify(err) {
            StoreError::Unavailable(why) => Ok(Single::Unanswered(why)),
            StoreError::Contention => Ok(Single::Conflict),
            other => Err(other),
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
pub(super) enum WriteKind {
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

/// Maps an SDK failure to what the caller can do about it.
const THROTTLED: [&str; 3] = ["ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded"];

pub(super) fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: SdkError<E, HttpResponse>,
) -> StoreError {
    // Unavailable: retryable, and for a write, of unknown outcome. A retry of a transaction
    // while its first try still runs is `TransactionInProgressException`; a token that meets
    // other parameters (`IdempotentParameterMismatchException`) does not say what its first
    // use did either: both are resolved by reading back.
    const UNKNOWN: [&str; 7] = [
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
        "IdempotentParameterMismatchException",
    ];
    if err.code() == Some("TransactionConflictException") {
        Metric::DynamoDbConflict.emit();
        return StoreError::Contention;
    }
    match &err {
        // The error and its causes, never the raw response (its body would reach the logs).
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(aws_sdk_dynamodb::error::DisplayErrorContext(&err).to_string())
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("");
            if THROTTLED.contains(&code) {
                Metric::DynamoDbThrottled.emit();
            }
            if service.raw().status().is_server_error() || UNKNOWN.contains(&code) {
                StoreError::Unavailable(code.to_owned())
            } else {
                StoreError::Other(format!("{code}: {}", service.err().message().unwrap_or("")))
            }
        }
        _ => StoreError::Other(aws_sdk_dynamodb::error::DisplayErrorContext(&err).to_string()),
    }
}

#[cfg(test)]
mod faults {
    use super::*;
    use crate::attempt::Attempt;
    use crate::id::{AttemptId, OrganizationId};
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
            // The organization's layout (none: one shard), then the attempt (none).
            .output(|| aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder().build())
            .times(2)
            .build();
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, &[&rule], |c| c
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(3)));
        assert!(matches!(get(&AttemptStore::new(client, "t")).await, Ok(None)));
        assert_eq!(rule.num_calls(), 3);
    }

    #[tokio::test]
    async fn a_missing_table_is_not_a_retryable_outage() {
        let rule = mock!(Client::get_item)
            .then_error(|| GetItemError::ResourceNotFoundException(ResourceNotFoundException::builder().build()));
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, &[&rule]);
        assert!(matches!(get(&AttemptStore::new(client, "t")).await, Err(StoreError::Other(_))));
    }

    /// What real DynamoDB adds and DynamoDB Local does not show: a retry meeting its first try
    /// still running, or a request token met with other parameters. Neither says whether the
    /// write committed: the create reads its key back, and answers what it finds.
    #[tokio::test]
    async fn a_transaction_in_progress_or_a_token_mismatch_is_read_back() {
        use crate::command::NewAttempt;
        use crate::idempotency::{Answer, IdempotencyKey, KeyNamespace, KeyedRequest};
        use crate::store::Written;
        use crate::time::Timestamp;
        use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
        use aws_sdk_dynamodb::types::error::{IdempotentParameterMismatchException, TransactionInProgressException};

        let in_progress = || {
            let meta = ErrorMetadata::builder().code("TransactionInProgressException").build();
            E::TransactionInProgressException(TransactionInProgressException::builder().meta(meta).build())
        };
        let mismatch = || {
            let meta = ErrorMetadata::builder().code("IdempotentParameterMismatchException").build();
            E::IdempotentParameterMismatchException(IdempotentParameterMismatchException::builder().meta(meta).build())
        };
        let body = br#"{"capability": "c", "operation": "o", "amount_usd": 1, "target_url": "https://x.example/"}"#;
        let org = OrganizationId::parse("org_acme").unwrap();
        let now = Timestamp::now();
        let attempt = NewAttempt::from_json(body).unwrap().into_attempt(org.clone(), now);
        let request =
            KeyedRequest::new(Some(IdempotencyKey::new(KeyNamespace::Member, "k".to_owned())), "create", body);
        let record = request.record(&Answer::new(201, "{}".to_owned()), now).unwrap();
        for (what, error) in [("in progress", in_progress as fn() -> E), ("mismatch", mismatch)] {
            // Not found on reading back: unknown, a 503 to retry under the key.
            let write = mock!(Client::transact_write_items).sequence().error(error).times(3).build();
            let read = mock!(Client::get_item).then_output(|| GetItemOutput::builder().build());
            let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[&write, &read]);
            let written = AttemptStore::new(client, "t").create(&attempt, Some(&record)).await.unwrap();
            assert!(matches!(written, Written::Unknown(_)), "{what}: {written:?}");
            assert_eq!(read.num_calls(), 2, "{what}: the layout, then the key read back once");
            // Found under this request's token: the change is stored.
            let item = super::super::item::Item::from([
                ("token".to_owned(), AttributeValue::S(record.token.as_str().to_owned())),
                ("fingerprint".to_owned(), AttributeValue::S(record.fingerprint.clone())),
                ("status".to_owned(), AttributeValue::N("201".to_owned())),
                ("body".to_owned(), AttributeValue::S("{}".to_owned())),
                ("expires_at".to_owned(), AttributeValue::N(record.expires_at.to_string())),
            ]);
            let write = mock!(Client::transact_write_items).sequence().error(error).times(3).build();
            let layout = mock!(Client::get_item)
                .match_requests(|r| r.key().and_then(|k| k.get("sk")) == Some(&AttributeValue::S("LAYOUT".to_owned())))
                .then_output(|| GetItemOutput::builder().build());
            let read = mock!(Client::get_item)
                .then_output(move || GetItemOutput::builder().set_item(Some(item.clone())).build());
            let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[&write, &layout, &read]);
            let written = AttemptStore::new(client, "t").create(&attempt, Some(&record)).await.unwrap();
            assert!(matches!(&written, Written::Answered(kept) if kept.token == record.token), "{what}: {written:?}");
        }
    }
}
