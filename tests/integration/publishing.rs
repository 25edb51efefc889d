//! Events out: every change of an attempt reaches a queue subscribed to the bus through a rule
//! (in moto's EventBridge), once by id after deduplication, redeliveries and faults included,
//! in version order per attempt, each as retrieve showed the attempt at that version and valid
//! against `schemas/payment_attempt_event.json`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::common::events::deduplicated;
use crate::common::proxy::{Fault, FaultProxy};
use crate::common::{self, attempt_body, service, Service, ROOT};

/// The attempt as retrieve shows it, without its history: what its event at this version
/// carries.
async fn shown(svc: &Service, id: &str) -> Value {
    let reply = svc.get("org_acme", &format!("/v1/payments/attempts/{id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut attempt = reply.json();
    attempt.as_object_mut().unwrap().remove("status_history");
    attempt
}

/// What each change's event must say: `detail.id` -> (type, previous status, attempt).
type Expected = BTreeMap<String, (&'static str, Value, Value)>;

async fn create(svc: &Service, body: &Value, expected: &mut Expected) -> String {
    let id = svc.record("org_acme", body).await["id"].as_str().unwrap().to_owned();
    expected.insert(format!("{id}.v1"), ("payment_attempt.created", Value::Null, shown(svc, &id).await));
    id
}

async fn settle(svc: &Service, id: &str, body: Value, expected: &mut Expected) {
    let reply = svc.post("org_acme", &format!("/v1/payments/attempts/{id}"), &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let kind = match body["status"].as_str().unwrap() {
        "succeeded" => "payment_attempt.succeeded",
        "failed" => "payment_attempt.failed",
        _ => "payment_attempt.released",
    };
    expected.insert(format!("{id}.v2"), (kind, json!("pending"), shown(svc, id).await));
}

/// The settle of the `i`th attempt a test records: each outcome in turn, and every fourth
/// attempt left pending.
fn settle_body(i: usize) -> Option<Value> {
    match i % 4 {
        0 => Some(json!({"status": "succeeded", "receipt": {"tx": format!("0xsettle{i}")}})),
        1 => Some(json!({"status": "failed", "error_message": "card declined"})),
        2 => Some(json!({"status": "released"})),
        _ => None,
    }
}

fn assert_published(by_id: &BTreeMap<String, Value>, expected: &Expected) {
    let ids: Vec<&String> = by_id.keys().collect();
    assert_eq!(ids, expected.keys().collect::<Vec<_>>(), "every change, once by id, and nothing else");
    for (id, (kind, previous, attempt)) in expected {
        let detail = &by_id[id];
        assert_eq!((detail["type"].as_str(), &detail["previous_status"]), (Some(*kind), previous), "{id}");
        assert_eq!(&detail["attempt"], attempt, "{id}: as retrieve showed it at that version");
        assert_eq!(detail["changed_at"], attempt["status_details"]["changed_at"], "{id}");
    }
}

#[tokio::test]
async fn every_change_is_published_once_by_id_as_retrieve_showed_it() {
    let svc = service().await;
    let events = svc.events().await;
    let mut expected = Expected::new();
    for i in 0..12 {
        let session = (i % 2 == 0).then_some("session_events");
        let id = create(&svc, &attempt_body(session, &format!("0.0{i}")), &mut expected).await;
        if let Some(body) = settle_body(i) {
            settle(&svc, &id, body, &mut expected).await;
        }
    }
    // Recorded in its final status: one change, `created`.
    let mut failed = attempt_body(None, "0.5");
    failed["status"] = json!("failed");
    failed["error_message"] = json!("upstream 502");
    create(&svc, &failed, &mut expected).await;
    // A refused move changes nothing, so publishes nothing.
    let settled = expected.keys().find(|id| id.ends_with(".v2")).unwrap().trim_end_matches(".v2").to_owned();
    let body = json!({"status": "failed", "error_message": "too late"});
    let refused = svc.post("org_acme", &format!("/v1/payments/attempts/{settled}"), &body).await;
    assert_eq!(refused.status, 409, "{}", refused.text);

    events.publish().await;
    let first = events.delivered().await;
    assert_eq!(first.len(), expected.len(), "each change once, when every answer arrives");
    assert_published(&deduplicated(&first), &expected);

    // The whole stream delivered again (as after a function error): the same ids again.
    events.publish_again().await;
    let all = events.delivered().await;
    assert_eq!(all.len(), 2 * expected.len(), "every change published a second time");
    assert_published(&deduplicated(&all), &expected);
    // Keys, guards, counters and markers publish nothing: the summarizer's writes included.
    svc.summarize().await;
    events.publish().await;
    assert_eq!(events.delivered().await.len(), all.len());
}

#[tokio::test]
async fn refused_entries_failed_calls_and_lost_answers_still_publish_every_change() {
    let svc = service().await;
    let proxy = FaultProxy::start(&common::events::events_endpoint()).await;
    let events = svc.events_through(&common::engine_endpoint(), proxy.endpoint()).await;
    let mut expected = Expected::new();
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(create(&svc, &attempt_body(None, &format!("0.1{i}")), &mut expected).await);
    }
    // EventBridge refuses about half the entries of three calls, then fails seven tries
    // whole: more than the SDK's 3 tries of one call, so at least one call fails and its
    // entries wait for the next round. What it refused is put again, and only that.
    proxy.inject(Some("PutEvents"), Fault::RefuseEntries(7), Some(3));
    proxy.inject(Some("PutEvents"), Fault::Error { status: 500, code: "InternalException" }, Some(7));
    events.publish().await;
    let delivered = events.delivered().await;
    assert_published(&deduplicated(&delivered), &expected);
    assert_eq!(delivered.len(), 25, "a refused entry is put again; a taken one is not");
    assert!(proxy.forwarded("PutEvents") > 3, "calls of at most 10 entries, refusals put again");

    // A call whose answer is lost: its entries go out again, and deduplicate.
    for id in &ids[..10] {
        settle(&svc, id, json!({"status": "succeeded"}), &mut expected).await;
    }
    proxy.inject(Some("PutEvents"), Fault::DropAfterSend, Some(1));
    events.publish().await;
    let delivered = events.delivered().await;
    assert_published(&deduplicated(&delivered), &expected);
    assert_eq!(delivered.len(), 25 + 10 + 10, "the lost call's ten went out twice");

    // EventBridge down: the batch is reported failed and delivered again, until it is out.
    for id in &ids[10..15] {
        settle(&svc, id, json!({"status": "released"}), &mut expected).await;
    }
    proxy.inject(Some("PutEvents"), Fault::Error { status: 500, code: "InternalException" }, None);
    assert!(events.mapping.drain().await.is_err(), "the batch stays pending while EventBridge fails");
    assert_eq!(events.delivered().await.len(), 45, "nothing published meanwhile");
    proxy.heal();
    events.publish().await;
    let delivered = events.delivered().await;
    assert_published(&deduplicated(&delivered), &expected);
    assert_eq!(delivered.len(), 50);
}

#[tokio::test]
async fn the_stream_event_file_publishes_its_two_changes_each_time_it_is_delivered() {
    let svc = service().await;
    let events = svc.events().await;
    let text = std::fs::read_to_string(std::path::Path::new(ROOT).join("events/stream.json")).unwrap();
    for _ in 0..2 {
        let event =
            lambda_http::LambdaEvent::new(serde_json::from_str(&text).unwrap(), lambda_http::Context::default());
        let reply = publisher::handle(events.publisher(), event).await.unwrap();
        assert!(reply.batch_item_failures.is_empty(), "{reply:?}");
    }
    let delivered = events.delivered().await;
    let types: Vec<&str> = delivered.iter().map(|d| d.event["detail-type"].as_str().unwrap()).collect();
    let created_then_succeeded = ["payment_attempt.created", "payment_attempt.succeeded"];
    assert_eq!(types, [created_then_succeeded, created_then_succeeded].concat());
    assert_eq!(deduplicated(&delivered).len(), 2);
}

/// What an operator runs after `PublisherFailuresAlarm`: every change of the organization's
/// attempts published again from the table, each version rebuilt from the attempt's history,
/// with the ids and content the stream's events have.
#[tokio::test]
async fn republishing_from_the_table_gives_the_events_the_stream_gives() {
    let svc = service().await;
    let events = svc.events().await;
    let mut expected = Expected::new();
    for i in 0..8 {
        let id = create(&svc, &attempt_body(None, &format!("0.3{i}")), &mut expected).await;
        if let Some(body) = settle_body(i) {
            settle(&svc, &id, body, &mut expected).await;
        }
    }
    let org = payment_attempts::OrganizationId::parse("org_acme").unwrap();
    let attempts = svc.store.every(&org, payment_attempts::ListQuery::default()).await.unwrap();
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let done = events.publisher().republish(&attempts, until).await;
    assert_eq!((done.events, done.unpublished), (expected.len(), 0));
    let republished = events.delivered().await;
    assert_eq!(republished.len(), expected.len());
    assert_published(&deduplicated(&republished), &expected);
    // The stream's events for the same changes: the same ids and details (deduplication
    // checks that a change's deliveries agree).
    events.publish().await;
    let all = events.delivered().await;
    assert_eq!(all.len(), 2 * expected.len());
    assert_published(&deduplicated(&all), &expected);
}
