//! Events out, for tests: the EventBridge emulator shared by a test binary, a service's
//! publisher on its own bus with a subscribed queue, and the events as a consumer keeps them.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use payment_attempts_local::eventbridge_local::{self, Delivered, EventBridgeLocal, Subscription};
use payment_attempts_local::stream_mapping::{StreamFunction, StreamMapping};
use serde_json::Value;

use super::{engine_endpoint, template, Service, ROOT};

/// The EventBridge emulator shared by the tests of one binary; it dies with the test process.
pub fn events_endpoint() -> String {
    static EMULATOR: OnceLock<Mutex<EventBridgeLocal>> = OnceLock::new();
    let emulator =
        EMULATOR.get_or_init(|| Mutex::new(EventBridgeLocal::start().expect("the EventBridge emulator starts")));
    emulator.lock().map(|e| e.endpoint()).unwrap_or_else(|e| e.into_inner().endpoint())
}

/// A service's events: the publisher on its table's stream, putting on a bus of the
/// service's own, and a queue subscribed to the bus through a rule.
pub struct Events {
    pub mapping: std::sync::Arc<StreamMapping>,
    pub subscription: Subscription,
    publisher: std::sync::Arc<publisher::Publisher>,
    /// The table's engine (or a proxy before it) and name, for a mapping that reads again.
    dynamodb: String,
    table: String,
}

impl Events {
    /// Publishes every change written so far, as Lambda's mapping would within about a
    /// second; returns how many stream records it delivered.
    pub async fn publish(&self) -> usize {
        self.mapping.drain().await.expect("the publisher takes the stream")
    }

    /// Publishes the whole stream again from its start, as Lambda delivers batches again after
    /// a function error: every change so far, a second time.
    pub async fn publish_again(&self) -> usize {
        let function = StreamFunction::Publisher(self.publisher.clone());
        let again = StreamMapping::to(&template(), &self.dynamodb, &self.table, function).await;
        again.expect("the table has a stream").drain().await.expect("the publisher takes the stream")
    }

    pub fn publisher(&self) -> &publisher::Publisher {
        &self.publisher
    }

    /// Every event the subscription received so far, duplicates included, in arrival order.
    pub async fn delivered(&self) -> Vec<Delivered> {
        self.subscription.delivered().await.expect("the subscription's queue reads")
    }
}

impl Service {
    /// The service's events, its publisher putting through `endpoint` (the emulator, or a
    /// proxy before it) onto a bus of its own in the shared emulator.
    pub async fn events_through(&self, dynamodb: &str, endpoint: &str) -> Events {
        self.events_with_client(dynamodb, eventbridge_local::client(endpoint)).await
    }

    /// The service's events, its publisher reading the stream at `dynamodb` (the engine or a
    /// proxy) and putting through `client`.
    pub async fn events_with_client(&self, dynamodb: &str, client: aws_sdk_eventbridge::Client) -> Events {
        let template = template();
        let bus = format!("{}-bus", self.table);
        let emulator = events_endpoint();
        eventbridge_local::create_bus(&emulator, &template.events, &bus).await.expect("the bus is created");
        let subscription = Subscription::create(&emulator, &template.events, &bus, &format!("{}-sub", self.table))
            .await
            .expect("a queue is subscribed");
        let publisher = std::sync::Arc::new(publisher::Publisher::new(client, &bus, &template.events.source));
        let function = StreamFunction::Publisher(publisher.clone());
        let mapping =
            StreamMapping::to(&template, dynamodb, &self.table, function).await.expect("the table has a stream");
        let (dynamodb, table) = (dynamodb.to_owned(), self.table.clone());
        let mapping = std::sync::Arc::new(mapping);
        Events { mapping, subscription, publisher, dynamodb, table }
    }

    /// The service's events, straight to the emulator.
    pub async fn events(&self) -> Events {
        self.events_through(&engine_endpoint(), &events_endpoint()).await
    }
}

fn schema() -> &'static jsonschema::Validator {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let text = std::fs::read_to_string(std::path::Path::new(ROOT).join("schemas/payment_attempt_event.json"));
        let schema: Value = serde_json::from_str(&text.expect("the schema reads")).expect("the schema is JSON");
        jsonschema::validator_for(&schema).expect("the schema compiles")
    })
}

/// The events as a consumer keeps them: by `detail.id`, each valid against the schema. A
/// change delivered twice carries the same detail both times, and one attempt's changes
/// first arrive in version order.
pub fn try_deduplicated(delivered: &[Delivered]) -> Result<BTreeMap<String, Value>, String> {
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    let mut latest: BTreeMap<String, u64> = BTreeMap::new();
    for Delivered { event, .. } in delivered {
        if let Err(error) = schema().validate(event) {
            return Err(format!("an event the schema refuses ({error} at {}): {event}", error.instance_path()));
        }
        let detail = &event["detail"];
        // The schema holds these.
        let id = detail["id"].as_str().unwrap_or_default().to_owned();
        let (attempt, version) = (detail["attempt"]["id"].as_str().unwrap_or_default(), detail["version"].as_u64());
        if event["detail-type"] != detail["type"] {
            return Err(format!("detail-type and detail.type differ: {event}"));
        }
        if let Some(first) = by_id.get(&id) {
            if first != detail {
                return Err(format!("{id} published twice, differently: {first} and {detail}"));
            }
            continue;
        }
        let before = latest.insert(attempt.to_owned(), version.unwrap_or_default());
        if Some(before.map_or(1, |v| v + 1)) != version {
            return Err(format!("{id} first arrived after version {before:?} of its attempt"));
        }
        by_id.insert(id, detail.clone());
    }
    Ok(by_id)
}

/// [`try_deduplicated`], for tests that stop at the first problem.
pub fn deduplicated(delivered: &[Delivered]) -> BTreeMap<String, Value> {
    try_deduplicated(delivered).unwrap_or_else(|problem| panic!("{problem}"))
}
