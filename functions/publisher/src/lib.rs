//! The publisher: puts one event per change of an attempt on the stack's EventBridge bus, from
//! the table's stream, through an event source mapping that reports batch item failures.
//!
//! Delivery is at least once. An event's id (`detail.id`: attempt id and version) is the same
//! however often its change is published, so consumers deduplicate on it. PutEvents takes at
//! most 10 entries a call and answers for each: the entries it refused are put again, with
//! backoff, while the invocation has time. One attempt's changes go out in version order: an
//! entry waits while an earlier change of its attempt is unpublished. What is still
//! unpublished at the end is reported from its first record, which Lambda delivers again
//! (with the records after it); after the mapping's retries, the batch goes to the on-failure
//! queue (docs/operations.md). A record that does not decode is logged and left out, as the
//! summarizer does: blocking the shard on it would lose every record after it too.

use std::collections::HashSet;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use lambda_http::lambda_runtime::LambdaEvent;
use payment_attempts::attempt_event::AttemptEvent;
use payment_attempts::budget::Deadline;
use payment_attempts::metrics::Metric;
use payment_attempts::store::AttemptChange;
use payment_attempts::time::Timestamp;
use payment_attempts::{Attempt, AttemptId, OrganizationId};
use tokio::time::Instant;

/// PutEvents' limits: entries per call, and a call's size as EventBridge counts it.
pub const MAX_ENTRIES_PER_CALL: usize = 10;
const MAX_CALL_BYTES: usize = 256 * 1024;
/// EventBridge counts an entry's `Time` as 14 bytes.
const TIME_BYTES: usize = 14;
/// Rounds of PutEvents for the entries refused so far, within the invocation.
const ROUNDS: u32 = 6;
/// Changes republished at a time: the stream mapping's `BatchSize`.
const BATCH_SIZE: usize = 100;

/// Where events go: the bus and the `source` they carry (template parameters).
pub struct Publisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
    source: String,
}

/// One change to publish: its stream record, its attempt (for order), and its entry.
struct Change {
    sequence: String,
    organization: OrganizationId,
    attempt: AttemptId,
    entry: PutEventsRequestEntry,
    bytes: usize,
}

/// What one invocation did, for the metric and the tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub events: usize,
    pub calls: usize,
    pub unpublished: usize,
    pub left_out: usize,
}

impl Publisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: &str, source: &str) -> Self {
        Publisher { client, bus: bus.to_owned(), source: source.to_owned() }
    }

    /// `EVENT_BUS_NAME` and `EVENT_SOURCE`, as the template sets them.
    pub fn from_env(client: aws_sdk_eventbridge::Client) -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
        Ok(Publisher::new(client, &var("EVENT_BUS_NAME")?, &var("EVENT_SOURCE")?))
    }

    /// Publishes the batch's changes until `until`; what is left is reported from its first
    /// record, as Lambda's `ReportBatchItemFailures` expects.
    pub async fn publish(&self, event: &Event, until: Instant) -> (DynamoDbEventResponse, Published) {
        let (pending, left_out) = self.changes(event);
        let (pending, mut done) = self.put_all(pending, until).await;
        done.left_out = left_out;
        let mut response = DynamoDbEventResponse::default();
        if let Some(first) = pending.first() {
            // What `republish` needs if the batch is given up on: whose, and since when.
            let organizations: std::collections::BTreeSet<&str> =
                pending.iter().map(|c| c.organization.as_str()).collect();
            let oldest = pending.iter().map(|c| c.attempt.created_ms()).min().and_then(Timestamp::from_unix_millis);
            tracing::warn!(
                unpublished = pending.len(),
                from = %first.sequence,
                ?organizations,
                oldest_created = %oldest.map(|t| t.to_string()).unwrap_or_default(),
                "batch not wholly published"
            );
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(first.sequence.clone());
            response.batch_item_failures.push(failure);
        }
        let Published { events: published, calls, unpublished, left_out } = done;
        Metric::PublisherBatch { published, calls, unpublished, left_out }.emit();
        (response, done)
    }

    /// Publishes again every change of `attempts` (each version rebuilt from its history),
    /// until `until`: for changes whose batch was given up on (`republish`). Consumers
    /// see the same events, ids included, as the stream's.
    pub async fn republish(&self, attempts: &[Attempt], until: Instant) -> Published {
        let (mut changes, mut unbuilt) = (Vec::new(), 0);
        for attempt in attempts {
            // Each version after the one before it: a version that cannot be rebuilt is
            // counted, and so is the next (it would pose as a creation).
            let mut before: Option<Attempt> = None;
            for version in 1..=attempt.version {
                let after = attempt.at_version(version);
                let event = match (&after, version) {
                    (Some(after), 1) => AttemptEvent::of_change(None, after),
                    (Some(after), _) => before.as_ref().and_then(|before| AttemptEvent::of_change(Some(before), after)),
                    (None, _) => None,
                };
                match event.and_then(|event| self.change(&event, String::new())) {
                    Some(change) => changes.push(change),
                    None => {
                        tracing::error!(attempt_id = %attempt.id, version, "version not rebuilt from the history");
                        unbuilt += 1;
                    }
                }
                before = after;
            }
        }
        // In stream-sized batches, one after the other, as the mapping would deliver them.
        let mut done = Published { unpublished: unbuilt, ..Published::default() };
        while !changes.is_empty() {
            let rest = changes.split_off(changes.len().min(BATCH_SIZE));
            let (_, batch) = self.put_all(std::mem::replace(&mut changes, rest), until).await;
            done.events += batch.events;
            done.calls += batch.calls;
            done.unpublished += batch.unpublished;
        }
        done
    }

    /// Puts `pending` until `until`, in rounds, again what was refused: what is still
    /// unpublished, in order, and what was done.
    async fn put_all(&self, mut pending: Vec<Change>, until: Instant) -> (Vec<Change>, Published) {
        let mut done = Published::default();
        for round in 0..ROUNDS {
            if pending.is_empty() || Instant::now() >= until {
                break;
            }
            if round > 0 {
                // 50 ms, 100 ms, ... for entries EventBridge refused (throttled, say).
                let pause = Duration::from_millis(50 << (round - 1));
                tokio::time::sleep_until((Instant::now() + pause).min(until)).await;
            }
            let calls = calls(&pending);
            done.calls += calls.len();
            let answers =
                futures_util::future::join_all(calls.iter().map(|call| self.put(&pending, call, until))).await;
            let mut published = HashSet::new();
            for (call, answer) in calls.iter().zip(answers) {
                published.extend(call.iter().zip(answer).filter(|(_, ok)| *ok).map(|(i, _)| *i));
            }
            done.events += published.len();
            let mut index = 0;
            pending.retain(|_| {
                index += 1;
                !published.contains(&(index - 1))
            });
        }
        done.unpublished = pending.len();
        (pending, done)
    }

    /// The batch's attempt changes as entries, in stream order, and how many records were
    /// left out.
    fn changes(&self, event: &Event) -> (Vec<Change>, usize) {
        let (mut changes, mut left_out) = (Vec::new(), 0);
        for record in &event.records {
            let change = match AttemptChange::from_record(record) {
                Ok(Some(change)) => change,
                Ok(None) => continue,
                Err(error) => {
                    // A bug or a hand edit: its event is lost; `EventsIncompleteAlarm` counts it.
                    left_out += 1;
                    tracing::error!(%error, event_id = %record.event_id, "stream record does not decode; no event published");
                    continue;
                }
            };
            let Some(published) = AttemptEvent::of_change(change.before.as_ref(), &change.after) else { continue };
            match self.change(&published, change.sequence) {
                Some(change) => changes.push(change),
                None => left_out += 1,
            }
        }
        (changes, left_out)
    }

    /// The entry that publishes `event`, found at `sequence` in the stream.
    fn change(&self, event: &AttemptEvent, sequence: String) -> Option<Change> {
        let detail = match event.detail() {
            Ok(detail) => detail,
            Err(error) => {
                tracing::error!(%error, attempt_id = %event.attempt.id, "event detail not serialized; no event published");
                return None;
            }
        };
        let detail_type = event.event_type.as_str();
        let bytes = TIME_BYTES + self.source.len() + detail_type.len() + detail.len();
        let time = DateTime::from_millis(event.changed_at().unix_millis());
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(&self.source)
            .detail_type(detail_type)
            .detail(detail)
            .time(time)
            .build();
        let (organization, attempt) = (event.attempt.organization_id.clone(), event.attempt.id.clone());
        Some(Change { sequence, organization, attempt, entry, bytes })
    }

    /// One PutEvents call of `call`'s entries: which EventBridge took (all refused if the
    /// call failed, or its answer does not account for every entry).
    async fn put(&self, pending: &[Change], call: &[usize], until: Instant) -> Vec<bool> {
        let entries = call.iter().map(|&i| pending[i].entry.clone()).collect();
        let sent = tokio::time::timeout_at(until, self.client.put_events().set_entries(Some(entries)).send()).await;
        match sent {
            Ok(Ok(out)) if out.entries().len() == call.len() => {
                let taken: Vec<bool> = out.entries().iter().map(|e| e.error_code().is_none()).collect();
                for refused in out.entries().iter().filter_map(|e| e.error_code()) {
                    tracing::info!(code = refused, "event refused by PutEvents; put again");
                }
                taken
            }
            Ok(Ok(out)) => {
                tracing::warn!(sent = call.len(), answered = out.entries().len(), "PutEvents answered another count");
                vec![false; call.len()]
            }
            Ok(Err(error)) => {
                let error = aws_sdk_eventbridge::error::DisplayErrorContext(error);
                tracing::warn!(%error, "PutEvents failed");
                vec![false; call.len()]
            }
            Err(_) => vec![false; call.len()],
        }
    }
}

/// This round's calls: the first unpublished change of each attempt (the later ones wait for
/// it), packed in stream order into calls within PutEvents' limits. Indexes into `pending`.
fn calls(pending: &[Change]) -> Vec<Vec<usize>> {
    let mut seen = HashSet::new();
    let mut calls: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, change) in pending.iter().enumerate() {
        if !seen.insert(&change.attempt) {
            continue;
        }
        let full =
            calls.last().is_none_or(|call| call.len() == MAX_ENTRIES_PER_CALL || bytes + change.bytes > MAX_CALL_BYTES);
        if full {
            calls.push(Vec::new());
            bytes = 0;
        }
        bytes += change.bytes;
        if let Some(call) = calls.last_mut() {
            call.push(i);
        }
    }
    calls
}

/// Publishes one batch, within the invocation's time.
pub async fn handle(
    publisher: &Publisher,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, std::convert::Infallible> {
    let deadline = Deadline::for_invocation(Some(event.context.deadline));
    let (response, _) = publisher.publish(&event.payload, deadline.work.into()).await;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(attempt: &str, bytes: usize) -> Change {
        let id = AttemptId::parse(&format!("payatt_{attempt:0>32}")).unwrap();
        let organization = OrganizationId::parse("org_acme").unwrap();
        Change {
            sequence: String::new(),
            organization,
            attempt: id,
            entry: PutEventsRequestEntry::builder().build(),
            bytes,
        }
    }

    #[test]
    fn calls_take_ten_entries_within_the_size_limit_and_one_change_per_attempt() {
        let pending: Vec<Change> = (0..25).map(|i| change(&format!("{i:x}"), 1_000)).collect();
        let sizes: Vec<usize> = calls(&pending).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);
        // 100 KB entries: two to a call.
        let large: Vec<Change> = (0..5).map(|i| change(&format!("{i:x}"), 100_000)).collect();
        assert_eq!(calls(&large), [vec![0, 1], vec![2, 3], vec![4]]);
        // The second change of attempt a waits for its first.
        let ordered = vec![change("a", 10), change("b", 10), change("a", 10), change("c", 10)];
        assert_eq!(calls(&ordered), [vec![0, 1, 3]]);
        assert!(calls(&[]).is_empty());
    }
}
