//! A stream function's event source mapping, run locally: reads the table's stream from
//! DynamoDB Local and hands each shard's records to the function (the summarizer or the
//! publisher) in order, as Lambda does with the template's `BatchSize` and `FilterCriteria`.
//! Each mapping reads the stream on its own, as Lambda's do. A batch that reports a failed
//! record is delivered again from that record; one that keeps failing stays pending and
//! `drain` says so, until it has failed `MaximumRetryAttempts` times more than once: then,
//! as Lambda does, it is parked (on Lambda: its description goes to the on-failure queue)
//! and reading goes on. A recount (`AttemptStore::recount`) counts what a parked batch held.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event, EventRecord, StreamRecord};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodbstreams::config::{Credentials, Region};
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use payment_attempts::budget::Deadline;
use payment_attempts::AttemptStore;
use publisher::Publisher;
use serde_json::Value;

use crate::template::{StreamMappingSpec, Template};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Deliveries of one batch in a row before `drain` gives up for now.
const TRIES: u32 = 3;

/// One stream shard: where reading goes on, and records read but not counted yet.
#[derive(Default)]
struct Shard {
    /// Read only once the parent is read to its end, as Lambda does.
    parent: Option<String>,
    iterator: Option<String>,
    /// The last record read, where a new iterator starts.
    last_read: Option<String>,
    closed: bool,
    pending: Vec<EventRecord>,
    /// Failed deliveries of the first pending batch, in a row.
    failures: u32,
}

/// The function a mapping delivers to, run in this process.
pub enum StreamFunction {
    Summarizer(AttemptStore),
    Publisher(Arc<Publisher>),
}

impl StreamFunction {
    /// Its cargo binary, as the template names it.
    fn binary(&self) -> &'static str {
        match self {
            StreamFunction::Summarizer(_) => "summarizer",
            StreamFunction::Publisher(_) => "publisher",
        }
    }

    async fn invoke(&self, event: &Event) -> DynamoDbEventResponse {
        match self {
            StreamFunction::Summarizer(store) => summarizer::summarize(store, event).await,
            StreamFunction::Publisher(publisher) => {
                let until = Deadline::for_invocation(None).work;
                publisher.publish(event, until.into()).await.0
            }
        }
    }
}

pub struct StreamMapping {
    streams: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    function: StreamFunction,
    spec: StreamMappingSpec,
    shards: tokio::sync::Mutex<BTreeMap<String, Shard>>,
    /// Records parked after their batch ran out of retries.
    parked: std::sync::atomic::AtomicUsize,
}

impl StreamMapping {
    /// The template's mapping of `table`'s stream (at `endpoint`) to the summarizer running on
    /// `store`.
    pub async fn new(template: &Template, endpoint: &str, table: &str, store: AttemptStore) -> Result<Self, Error> {
        Self::to(template, endpoint, table, StreamFunction::Summarizer(store)).await
    }

    /// The template's mapping of `table`'s stream (at `endpoint`) to `function`.
    pub async fn to(template: &Template, endpoint: &str, table: &str, function: StreamFunction) -> Result<Self, Error> {
        let spec = template.stream_mapping(function.binary()).cloned();
        let spec = spec.ok_or_else(|| format!("template.yaml maps no stream to {}", function.binary()))?;
        let dynamodb = crate::dynamodb_local::client(endpoint);
        let described = dynamodb.describe_table().table_name(table).send().await?;
        let stream_arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or_else(|| format!("table {table} has no stream"))?
            .to_owned();
        let config = aws_sdk_dynamodbstreams::Config::builder()
            .behavior_version(aws_sdk_dynamodbstreams::config::BehaviorVersion::latest())
            .http_client(payment_attempts::runtime::http_client())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "dynamodb-local"))
            .build();
        let streams = aws_sdk_dynamodbstreams::Client::from_conf(config);
        let shards = tokio::sync::Mutex::new(BTreeMap::new());
        Ok(StreamMapping { streams, stream_arn, function, spec, shards, parked: Default::default() })
    }

    /// Delivers every record written so far to the summarizer, shard by shard, in order.
    /// Returns the records delivered; an error if a batch still fails after [`TRIES`].
    pub async fn drain(&self) -> Result<usize, Error> {
        let mut shards = self.shards.lock().await;
        self.discover(&mut shards).await?;
        let mut delivered = 0;
        // Shard ids sort by creation, so a parent read to its end frees its children at once.
        let ids: Vec<String> = shards.keys().cloned().collect();
        for id in &ids {
            let parent = shards.get(id).and_then(|s| s.parent.as_ref()).and_then(|p| shards.get(p));
            if parent.is_some_and(|p| !p.closed || !p.pending.is_empty()) {
                continue;
            }
            if let Some(shard) = shards.get_mut(id) {
                delivered += self.read_to_end(id, shard).await?;
            }
        }
        Ok(delivered)
    }

    /// Adds the stream's shards not seen yet, each from its oldest record.
    async fn discover(&self, shards: &mut BTreeMap<String, Shard>) -> Result<(), Error> {
        let mut start = None;
        loop {
            let described = self
                .streams
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(start)
                .send()
                .await?;
            let description = described.stream_description();
            for shard in description.map(|d| d.shards()).unwrap_or_default() {
                let Some(id) = shard.shard_id() else { continue };
                if !shards.contains_key(id) {
                    let iterator = self.iterator(id, None).await?;
                    let parent = shard.parent_shard_id().map(str::to_owned);
                    shards.insert(id.to_owned(), Shard { parent, iterator, ..Shard::default() });
                }
            }
            start = description.and_then(|d| d.last_evaluated_shard_id()).map(str::to_owned);
            if start.is_none() {
                return Ok(());
            }
        }
    }

    /// Reads the shard and delivers its batches until a read finds nothing new.
    async fn read_to_end(&self, id: &str, shard: &mut Shard) -> Result<usize, Error> {
        let mut delivered = 0;
        loop {
            let read = self.read(id, shard).await?;
            while !shard.pending.is_empty() {
                delivered += self.deliver(shard).await?;
            }
            if read == 0 {
                return Ok(delivered);
            }
        }
    }

    /// One read of the shard into its pending records (those the mapping's filters deliver):
    /// how many records it read.
    async fn read(&self, id: &str, shard: &mut Shard) -> Result<usize, Error> {
        let mut refreshed = false;
        loop {
            let (Some(iterator), false) = (shard.iterator.clone(), shard.closed) else { return Ok(0) };
            let out = match self.streams.get_records().shard_iterator(iterator).send().await {
                Ok(out) => out,
                // DynamoDB Local expires an iterator taken on an empty shard once records
                // arrive; Lambda too takes a new one where it stopped.
                Err(e)
                    if !refreshed
                        && e.as_service_error().is_some_and(|e| {
                            e.is_trimmed_data_access_exception() || e.is_expired_iterator_exception()
                        }) =>
                {
                    shard.iterator = self.iterator(id, shard.last_read.as_deref()).await?;
                    refreshed = true;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let read = out.records().len();
            if let Some(last) = out.records().last().and_then(|r| r.dynamodb()?.sequence_number()) {
                shard.last_read = Some(last.to_owned());
            }
            let records = out.records().iter().map(|r| self.event_record(r));
            shard.pending.extend(records.filter(|r| self.delivers(r)));
            shard.closed = out.next_shard_iterator.is_none();
            shard.iterator = out.next_shard_iterator;
            return Ok(read);
        }
    }

    /// An iterator of the shard after `last_read`, or from its oldest record.
    async fn iterator(&self, shard: &str, last_read: Option<&str>) -> Result<Option<String>, Error> {
        let request = self.streams.get_shard_iterator().stream_arn(&self.stream_arn).shard_id(shard);
        let request = match last_read {
            Some(sequence) => {
                request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).sequence_number(sequence)
            }
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        Ok(request.send().await?.shard_iterator)
    }

    /// Records parked so far, after their batch ran out of retries.
    pub fn parked(&self) -> usize {
        self.parked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Delivers the shard's first pending batch, again from its failed record while it
    /// reports one; removes what was counted (or parked) and returns how many were counted.
    async fn deliver(&self, shard: &mut Shard) -> Result<usize, Error> {
        let mut counted = 0;
        for _ in 0..TRIES {
            let pending = &mut shard.pending;
            let batch = pending.len().min(self.spec.batch_size);
            let mut event = Event::default();
            event.records = pending[..batch].to_vec();
            let response = self.function.invoke(&event).await;
            let failed = response.batch_item_failures.first().and_then(|f| f.item_identifier.clone());
            let done = match &failed {
                None => batch,
                Some(sequence) => pending[..batch]
                    .iter()
                    .position(|r| r.change.sequence_number.as_ref() == Some(sequence))
                    .ok_or_else(|| format!("{} reported {sequence}, not in its batch", self.function.binary()))?,
            };
            pending.drain(..done);
            counted += done;
            if failed.is_none() {
                shard.failures = 0;
                return Ok(counted);
            }
            shard.failures += 1;
            if self.spec.maximum_retry_attempts.is_some_and(|retries| shard.failures > retries) {
                // Out of retries: Lambda sends the batch's description to the on-failure
                // destination and reads on; what the batch held is left out of the counters.
                let left = batch - done;
                pending.drain(..left);
                self.parked.fetch_add(left, std::sync::atomic::Ordering::SeqCst);
                shard.failures = 0;
                tracing::error!(
                    records = left,
                    function = self.function.binary(),
                    "stream mapping: batch parked after its retries"
                );
                return Ok(counted);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = shard.pending.len();
        Err(format!("a stream batch still fails after {TRIES} deliveries; {left} records pending").into())
    }

    /// Drains the stream every `every`, as Lambda polls it, until the task is aborted.
    pub fn spawn(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.drain().await {
                    tracing::warn!(error = ?error, function = self.function.binary(), "stream mapping: batch not taken yet");
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Whether the mapping's filters let the record through (any pattern matching it).
    fn delivers(&self, record: &EventRecord) -> bool {
        // A record that cannot be put as JSON is delivered, for the summarizer to judge.
        let Ok(record) = serde_json::to_value(record) else { return true };
        self.spec.filters.is_empty() || self.spec.filters.iter().any(|pattern| matches(pattern, &record))
    }

    /// The record as Lambda puts it in the event.
    fn event_record(&self, record: &Record) -> EventRecord {
        let mut event = EventRecord::default();
        event.event_id = record.event_id().unwrap_or_default().to_owned();
        event.event_name = record.event_name().map(|n| n.as_str().to_owned()).unwrap_or_default();
        event.event_source = record.event_source().map(str::to_owned);
        event.event_version = record.event_version().map(str::to_owned);
        event.aws_region = record.aws_region().unwrap_or_default().to_owned();
        event.event_source_arn = Some(self.stream_arn.clone());
        if let Some(change) = record.dynamodb() {
            let mut stream = StreamRecord::default();
            stream.keys = change.keys.clone().unwrap_or_default().into();
            stream.new_image = change.new_image.clone().unwrap_or_default().into();
            stream.old_image = change.old_image.clone().unwrap_or_default().into();
            stream.sequence_number = change.sequence_number.clone();
            stream.size_bytes = change.size_bytes.unwrap_or_default();
            event.change = stream;
        }
        event
    }
}

/// Lambda's event filtering, for what patterns use here: nested fields, and at a leaf a list
/// of values of which one must equal the field, or `{"prefix": ...}`.
fn matches(pattern: &Value, value: &Value) -> bool {
    match pattern {
        Value::Object(fields) => {
            fields.iter().all(|(name, pattern)| value.get(name).is_some_and(|v| matches(pattern, v)))
        }
        Value::Array(alternatives) => alternatives.iter().any(|alternative| match alternative {
            Value::Object(rule) => match (rule.get("prefix"), value) {
                (Some(Value::String(prefix)), Value::String(text)) => text.starts_with(prefix.as_str()),
                _ => false,
            },
            literal => literal == value,
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_match_nested_fields_by_value_or_prefix() {
        let pattern = json!({"dynamodb": {"Keys": {"sk": {"S": [{"prefix": "ATT#"}]}}}});
        let record =
            |sk: &str| json!({"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "ORG#o"}, "sk": {"S": sk}}}});
        assert!(matches(&pattern, &record("ATT#payatt_1")));
        assert!(!matches(&pattern, &record("IDEM")));
        assert!(!matches(&pattern, &json!({"dynamodb": {}})));
        assert!(matches(&json!({"eventName": ["INSERT", "MODIFY"]}), &record("x")));
        assert!(!matches(&json!({"eventName": ["REMOVE"]}), &record("x")));
    }
}
