//! The summarizer: keeps the summary counters from the table's stream, through an event source
//! mapping that reports batch item failures. Every change is counted exactly once however often
//! its batch is delivered (`AttemptStore::summarize`); a batch it cannot count wholly names
//! the first record to deliver again, and the records before it are done. A record that does
//! not decode is logged and left out: blocking the shard on it would, once the mapping gives
//! up, leave out every record after it in the batch too.

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_http::lambda_runtime::LambdaEvent;
use payment_attempts::budget::Deadline;
use payment_attempts::metrics::Metric;
use payment_attempts::store::AttemptChange;
use payment_attempts::time::Timestamp;
use payment_attempts::AttemptStore;

/// Counts one batch, within the invocation's time.
pub async fn handle(
    store: &AttemptStore,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, std::convert::Infallible> {
    let deadline = Deadline::for_invocation(Some(event.context.deadline));
    Ok(summarize(&store.until(deadline.settle), &event.payload).await)
}

/// Counts the batch's attempt changes; what it could not count is reported from its first
/// record on, as Lambda's `ReportBatchItemFailures` expects.
pub async fn summarize(store: &AttemptStore, event: &Event) -> DynamoDbEventResponse {
    let (mut changes, mut left_out) = (Vec::new(), 0);
    for record in &event.records {
        match AttemptChange::from_record(record) {
            Ok(Some(change)) => changes.push(change),
            Ok(None) => {}
            // A bug or a hand edit: the summaries miss this change; the log says which, and
            // `SummariesIncompleteAlarm` counts it.
            Err(error) => {
                left_out += 1;
                tracing::error!(
                    %error,
                    event_id = %record.event_id,
                    sequence = record.change.sequence_number.as_deref().unwrap_or_default(),
                    "stream record does not decode; left out of the summaries"
                );
            }
        }
    }
    let failed_from = match store.summarize(&changes, Timestamp::now()).await {
        Ok(()) => {
            Metric::SummarizerBatch { counted: changes.len(), left_out }.emit();
            grow_busy_organizations(store, &changes).await;
            None
        }
        Err(unsummarized) => {
            tracing::warn!(error = %unsummarized.error, from = %unsummarized.from_sequence, "batch not wholly counted");
            Some(unsummarized.from_sequence)
        }
    };
    let mut response = DynamoDbEventResponse::default();
    if let Some(sequence) = failed_from {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(sequence);
        response.batch_item_failures.push(failure);
    } else {
        tracing::info!(records = event.records.len(), changes = changes.len(), "batch counted");
    }
    response
}

/// Grows the layout of each organization whose changes in this batch came at a sustained
/// rate near its shards' capacity (`AttemptStore::grow_if_busy`). Best effort: the batch is
/// counted either way, and an operator can grow a layout too (`admin grow`).
async fn grow_busy_organizations(store: &AttemptStore, changes: &[AttemptChange]) {
    for (org, grown) in store.grow_if_busy(changes).await {
        match grown {
            Ok(layout) => tracing::info!(organization_id = %org, steps = ?layout.steps(), "organization layout grown"),
            Err(error) => tracing::warn!(organization_id = %org, %error, "organization layout not grown"),
        }
    }
}
