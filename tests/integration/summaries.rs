//! Summaries kept from the table's stream: each change counted exactly once, whether its
//! batch is delivered again, twice at once, or after a failure; and within the bound docs/design.md
//! states once the mapping runs.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proxy::{Fault, FaultProxy};
use common::{attempt_body, engine_endpoint, service_on, Service};
use payment_attempts::summary::{Summary, SummaryScope};
use payment_attempts::{ListQuery, OrganizationId};
use payment_attempts_local::stream_mapping::StreamMapping;
use serde_json::json;

const ORG: &str = "org_summaries";
const LIST: &str = "/v1/payments/attempts";

/// `count` attempts over 3 sessions, every other one settled (succeeded or failed).
async fn record(svc: &Service, count: usize) {
    for i in 0..count {
        let body = attempt_body(Some(&format!("session_s{}", i % 3)), &format!("0.{:03}", i + 1));
        let id = svc.record(ORG, &body).await["id"].as_str().unwrap().to_owned();
        if i % 2 == 0 {
            let to = if i % 4 == 0 {
                json!({"status": "succeeded"})
            } else {
                json!({"status": "failed", "error_message": "rail.declined"})
            };
            assert_eq!(svc.post(ORG, &format!("{LIST}/{id}"), &to).await.status, 200);
        }
    }
}

/// The organization's and each session's counted summary, against their page walks.
async fn assert_counted_once(svc: &Service, count: usize) {
    let org = OrganizationId::parse(ORG).unwrap();
    let mut walked = Vec::new();
    let mut query = ListQuery { limit: 100, ..ListQuery::default() };
    loop {
        let page = svc.store.list(&org, &query).await.unwrap();
        walked.extend(page.attempts.iter().cloned());
        match page.attempts.last().filter(|_| page.has_more) {
            Some(last) => query.cursor = Some(payment_attempts::Cursor::StartingAfter(last.id.clone())),
            None => break,
        }
    }
    assert_eq!(walked.len(), count);
    let counted = svc.store.summary(&org, &SummaryScope::Organization { hours: None }).await.unwrap();
    assert_eq!(counted, Summary::of(&walked), "organization");
    for s in 0..3 {
        let session = payment_attempts::id::SessionId::parse(&format!("session_s{s}")).unwrap();
        let mine: Vec<_> = walked.iter().filter(|a| a.session_id.as_ref() == Some(&session)).cloned().collect();
        let counted = svc.store.summary(&org, &SummaryScope::Session(session)).await.unwrap();
        assert_eq!(counted, Summary::of(&mine), "session_s{s}");
    }
}

#[tokio::test]
async fn batches_delivered_again_or_twice_at_once_count_once() {
    let svc = common::service().await;
    record(&svc, 120).await;
    let delivered = svc.summarize().await;
    assert!(delivered >= 180, "every create and settle reached the summarizer: {delivered}");
    assert_counted_once(&svc, 120).await;
    // The whole stream again from its start (as after a lost checkpoint), by two mappings at
    // once: every change is already counted, and the racing transactions count nothing twice.
    let endpoint = engine_endpoint();
    let template = common::template();
    let again = |_| StreamMapping::new(&template, &endpoint, &svc.table, svc.store.clone());
    let (a, b) = (again(0).await.unwrap(), again(1).await.unwrap());
    let (a, b) = tokio::join!(a.drain(), b.drain());
    assert!(a.unwrap() >= delivered && b.unwrap() >= delivered);
    assert_counted_once(&svc, 120).await;
    // New changes after a redelivery are counted as usual.
    record(&svc, 10).await;
    svc.summarize().await;
    let org = OrganizationId::parse(ORG).unwrap();
    let counted = svc.store.summary(&org, &SummaryScope::Organization { hours: None }).await.unwrap();
    assert_eq!(counted.total().count, 130);
}

#[tokio::test]
async fn a_batch_that_fails_is_delivered_again_from_its_failed_record() {
    let proxy = FaultProxy::start(&engine_endpoint()).await;
    let svc = service_on(proxy.endpoint()).await;
    record(&svc, 60).await;
    // The summarizer's first transaction fails outright (not retried by the SDK): the batch
    // reports its first record failed, and the mapping delivers it again.
    proxy.inject(Some("TransactWriteItems"), Fault::Error { status: 400, code: "ValidationException" }, Some(1));
    svc.summarize().await;
    assert_counted_once(&svc, 60).await;
    // An answer lost after DynamoDB committed: the SDK's retry of the same transaction (same
    // token) or the markers keep it counted once.
    record(&svc, 4).await;
    proxy.inject(Some("TransactWriteItems"), Fault::DropAfterSend, Some(1));
    svc.summarize().await;
    assert_counted_once(&svc, 64).await;
    // DynamoDB down for good: the batch stays pending, nothing is dropped, and it is counted
    // once DynamoDB is back.
    record(&svc, 2).await;
    proxy.inject(Some("TransactWriteItems"), Fault::Error { status: 400, code: "ValidationException" }, None);
    assert!(svc.mapping.drain().await.is_err(), "a batch that keeps failing is reported");
    proxy.heal();
    svc.summarize().await;
    assert_counted_once(&svc, 66).await;
}

/// The bound docs/design.md states: a summary includes a write about 1 to 2 s after it is acknowledged on
/// Lambda (4 polls a second, a 1 s batching window). The local mapping polls 4 times a second
/// without a window; the bound checked here is 5 s, so a slow machine cannot fail it.
#[tokio::test]
async fn a_running_mapping_counts_a_write_within_the_bound() {
    let svc = common::service().await;
    let mapping = Arc::new(
        StreamMapping::new(&common::template(), &engine_endpoint(), &svc.table, svc.store.clone()).await.unwrap(),
    );
    let running = mapping.clone().spawn(Duration::from_millis(250));
    let mut worst = Duration::ZERO;
    for i in 1..=5 {
        svc.record(ORG, &attempt_body(None, "1")).await;
        let acknowledged = Instant::now();
        loop {
            let summary = svc.get(ORG, &format!("{LIST}/summary")).await.json();
            if summary["count"] == json!(i) {
                break;
            }
            assert!(acknowledged.elapsed() < Duration::from_secs(5), "write {i} not counted within 5 s: {summary}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worst = worst.max(acknowledged.elapsed());
    }
    running.abort();
    println!(
        "summaries: a write counted at most {} ms after it was acknowledged (poll every 250 ms)",
        worst.as_millis()
    );
}

/// An attempt item that does not decode is left out (logged, and counted by a metric)
/// instead of blocking its shard: the batch's other changes are counted, none is retried.
#[tokio::test]
async fn a_record_that_does_not_decode_is_left_out_and_the_rest_counted() {
    let svc = common::service().await;
    let text = std::fs::read_to_string(std::path::Path::new(common::ROOT).join("events/stream.json")).unwrap();
    let mut event: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut broken = event["Records"][0].clone();
    // Another attempt, so that counting it would show.
    let other = "payatt_01933b5a000070008000000000000003";
    broken["dynamodb"]["NewImage"]["id"] = json!({"S": other});
    broken["dynamodb"]["Keys"]["sk"] = json!({"S": format!("ATT#{other}")});
    broken["dynamodb"]["NewImage"]["amount_usd"] = json!({"S": "not a number"});
    broken["dynamodb"]["SequenceNumber"] = json!("100000000000000000000");
    event["Records"].as_array_mut().unwrap().insert(0, broken);
    let event = serde_json::from_value(event).unwrap();
    let reply = summarizer::summarize(&svc.store, &event).await;
    assert!(reply.batch_item_failures.is_empty(), "{reply:?}");
    let org = OrganizationId::parse("org_events").unwrap();
    let counted = svc.store.summary(&org, &SummaryScope::Organization { hours: None }).await.unwrap();
    assert_eq!(counted.total().count, 1, "the settled attempt of the event, once: {counted:?}");
}

/// A batch that fails past the mapping's `MaximumRetryAttempts` is parked, as on Lambda, and
/// leaves the counters short; a later change of a parked attempt counts from what the
/// counters hold, and a recount counts the rest, once however often it runs.
#[tokio::test]
async fn a_parked_batch_is_counted_by_a_recount() {
    let proxy = FaultProxy::start(&engine_endpoint()).await;
    let svc = service_on(proxy.endpoint()).await;
    let org = OrganizationId::parse(ORG).unwrap();
    record(&svc, 20).await;
    // Every summarizer transaction fails until the batch runs out of retries.
    proxy.inject(Some("TransactWriteItems"), Fault::Error { status: 400, code: "ValidationException" }, None);
    for _ in 0..10 {
        if svc.mapping.parked() > 0 {
            break;
        }
        let _ = svc.mapping.drain().await;
    }
    proxy.heal();
    let parked = svc.mapping.parked();
    assert!(parked >= 20, "the batch was parked after its retries: {parked} records");
    let short = svc.store.summary(&org, &SummaryScope::Organization { hours: None }).await.unwrap();
    assert_eq!(short.total().count, 0, "nothing of the parked batch is counted");

    // A pending attempt whose create was parked is settled: its change counts from what the
    // counters hold (nothing), not from the change's before-image.
    let page = svc.get(ORG, &format!("{LIST}?limit=100&status=pending")).await.json();
    let pending = page["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(svc.post(ORG, &format!("{LIST}/{pending}"), &json!({"status": "released"})).await.status, 200);
    svc.summarize().await;
    let counted = svc.store.summary(&org, &SummaryScope::Organization { hours: None }).await.unwrap();
    assert_eq!((counted.total().count, counted.get(payment_attempts::Status::Pending).count), (1, 0));

    let recount = svc.store.recount(&org, None).await.unwrap();
    assert_eq!((recount.attempts, recount.caught_up), (20, 19), "all but the settled one were behind");
    assert_eq!(recount.counted, recount.walked, "the counters equal the attempts");
    assert_counted_once(&svc, 20).await;
    let again = svc.store.recount(&org, None).await.unwrap();
    assert_eq!((again.caught_up, again.counted == again.walked), (0, true), "a second recount changes nothing");
    // The stream delivered again from its start finds every marker ahead.
    let template = common::template();
    let mapping = StreamMapping::new(&template, proxy.endpoint(), &svc.table, svc.store.clone()).await.unwrap();
    mapping.drain().await.unwrap();
    assert_counted_once(&svc, 20).await;
}

/// A recount while writes go on and the mapping runs: once the writes stop and the stream
/// drains, the counters are exact (each catch-up is conditional on the marker it read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recount_during_writes_leaves_the_counters_exact() {
    let svc = Arc::new(common::service().await);
    let org = OrganizationId::parse(ORG).unwrap();
    record(&svc, 30).await;
    // Nothing is counted yet: the mapping (from the stream's start) and the recounts race to
    // count the same attempts while more are written and settled.
    let mapping = Arc::new(
        StreamMapping::new(&common::template(), &engine_endpoint(), &svc.table, svc.store.clone()).await.unwrap(),
    );
    let writer = {
        let svc = svc.clone();
        tokio::spawn(async move { record(&svc, 30).await })
    };
    let summarizer = mapping.clone().spawn(Duration::from_millis(100));
    let mut recounts = 0;
    while !writer.is_finished() {
        let recount = svc.store.recount(&org, None).await.unwrap();
        recounts += 1;
        assert!(recount.attempts <= 60);
    }
    writer.await.unwrap();
    summarizer.abort();
    mapping.drain().await.unwrap();
    assert_counted_once(&svc, 60).await;
    let session = payment_attempts::id::SessionId::parse("session_s1").unwrap();
    let recount = svc.store.recount(&org, Some(&session)).await.unwrap();
    assert_eq!((recount.caught_up, recount.counted == recount.walked), (0, true));
    println!("recount: {recounts} recounts during 30 creates and 15 settles; the counters equal the walk after");
}
