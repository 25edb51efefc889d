//! Layouts that grow: an organization goes from 1 to 16 to 64 shards while writes go on, and
//! nothing moves: no write is lost or misplaced, every earlier id is retrieved with one
//! GetItem, and lists and summaries stay exact.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::proxy::FaultProxy;
use common::{attempt_body, engine_endpoint, service_with, Service};
use payment_attempts::summary::{Summary, SummaryScope};
use payment_attempts::{OrganizationId, Status};
use serde_json::{json, Value};

const ORG: &str = "org_growing";
const LIST: &str = "/v1/payments/attempts";
/// Short, so that a step starts (two of them after it is written) within the test.
const TTL: Duration = Duration::from_millis(200);

/// Every attempt of the organization (or of a session), newest first, by pages of 50.
async fn walk(svc: &Service, session: Option<&str>) -> Vec<Value> {
    let (mut rows, mut cursor) = (Vec::new(), String::new());
    let session = session.map(|s| format!("&session_id={s}")).unwrap_or_default();
    loop {
        let page = svc.get(ORG, &format!("{LIST}?limit=50{session}{cursor}")).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let page = page.json();
        let data = page["data"].as_array().unwrap().clone();
        rows.extend(data.iter().cloned());
        if page["has_more"] != json!(true) {
            return rows;
        }
        let after = page["next_page"]["starting_after"].as_str().map(str::to_owned);
        cursor = format!(
            "&starting_after={}",
            after.unwrap_or_else(|| data.last().unwrap()["id"].as_str().unwrap().to_owned())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_grows_from_1_to_16_to_64_shards_while_writes_go_on() {
    let proxy = FaultProxy::start(&engine_endpoint()).await;
    let client = payment_attempts_local::dynamodb_local::client(proxy.endpoint());
    let svc = Arc::new(service_with(proxy.endpoint(), client, |store| store.with_layout_ttl(TTL)).await);
    let org = OrganizationId::parse(ORG).unwrap();
    let acked = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (svc, acked, running) = (svc.clone(), acked.clone(), running.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while running.load(std::sync::atomic::Ordering::SeqCst) {
                    let body = attempt_body(Some(&format!("session_s{}", n % 3)), "0.25").to_string();
                    let created = svc.post_keyed(ORG, LIST, &body, &format!("w{w}-{n}")).await;
                    assert_eq!(created.status, 201, "{}", created.text);
                    let id = created.json()["id"].as_str().unwrap().to_owned();
                    if n % 2 == 0 {
                        let settle = json!({"status": "succeeded"}).to_string();
                        let settled =
                            svc.post_keyed(ORG, &format!("{LIST}/{id}"), &settle, &format!("w{w}-{n}-s")).await;
                        assert_eq!(settled.status, 200, "{}", settled.text);
                    }
                    acked.lock().unwrap().push((id, if n % 2 == 0 { "succeeded" } else { "pending" }.to_owned()));
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(TTL * 2).await;
    let grown = svc.store.grow(&org, 16).await.unwrap();
    assert_eq!(grown.latest(), 16);
    tokio::time::sleep(TTL * 4).await;
    svc.store.grow(&org, 64).await.unwrap();
    tokio::time::sleep(TTL * 4).await;
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let layout = svc.store.layout(&org).await.unwrap();
    assert_eq!(layout.steps().iter().map(|s| s.shards).collect::<Vec<_>>(), [1, 16, 64]);
    // Attempts were written in every step.
    let in_step = |shards: u16| {
        acked
            .iter()
            .filter(|(id, _)| {
                let id = payment_attempts::AttemptId::parse(id).unwrap();
                layout.shards_at(id.created_ms()) == shards
            })
            .count()
    };
    let per_step = [in_step(1), in_step(16), in_step(64)];
    assert!(per_step.iter().all(|&n| n > 0), "writes in every step: {per_step:?}");

    // Every acknowledged attempt is retrieved with one GetItem, by a store that read the
    // layout once (as a function's does, for its 60 s time to live), and shows its status.
    let reader = payment_attempts::AttemptStore::new(svc.client.clone(), &svc.table);
    reader.layout(&org).await.unwrap();
    let before = proxy.forwarded("GetItem");
    for (id, status) in &acked {
        let id = payment_attempts::AttemptId::parse(id).unwrap();
        let attempt = reader.get(&org, &id).await.unwrap().unwrap_or_else(|| panic!("{id} lost or misplaced"));
        assert_eq!(attempt.status.as_str(), status);
    }
    let reads = proxy.forwarded("GetItem") - before;
    assert_eq!(reads, acked.len(), "one GetItem per retrieve");

    // Lists: the organization's and each session's walk is exactly what was acknowledged.
    let mut expected: Vec<&String> = acked.iter().map(|(id, _)| id).collect();
    expected.sort_by(|a, b| b.cmp(a));
    let walked = walk(&svc, None).await;
    let ids: Vec<&str> = walked.iter().map(|row| row["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected.iter().map(|s| s.as_str()).collect::<Vec<_>>(), "the walk is every write, once, in order");
    let sessions: usize = futures_util::future::join_all((0..3).map(|s| {
        let svc = svc.clone();
        async move { walk(&svc, Some(&format!("session_s{s}"))).await.len() }
    }))
    .await
    .into_iter()
    .sum();
    assert_eq!(sessions, acked.len());

    // Summaries, counted from the stream, equal the walk.
    svc.summarize().await;
    let mut totals = Summary::default();
    for row in &walked {
        let status = Status::parse(row["status"].as_str().unwrap()).unwrap();
        totals.add(status, 1, row["amount_usd"].to_string().parse().unwrap());
    }
    let counted = svc.store.summary(&org, &SummaryScope::Organization { hours: None }).await.unwrap();
    assert_eq!(counted, totals);
    println!(
        "layouts: grown 1 -> 16 -> 64 shards under 4 writers: {} attempts ({per_step:?} created in each step), each retrieved with one GetItem ({reads} reads), walks and summary exact",
        acked.len()
    );
}

/// An organization whose changes come at a sustained rate past half its shards' capacity
/// grows by itself, as the summarizer sees its stream batches (100 records each, a fifth of a
/// second at this rate); a burst under a second does not grow it.
#[tokio::test]
async fn a_sustained_rate_near_capacity_grows_the_layout() {
    use payment_attempts::command::NewAttempt;
    use payment_attempts::store::AttemptChange;
    use payment_attempts::time::Timestamp;
    let svc = common::service().await;
    let body = attempt_body(None, "1").to_string();
    // 600 changes over `span_ms`, in batches of 100.
    let batches = |org: &OrganizationId, span_ms: i64| -> Vec<Vec<AttemptChange>> {
        let start = Timestamp::now().unix_millis();
        let changes: Vec<AttemptChange> = (0..600)
            .map(|i| {
                let at = Timestamp::from_unix_millis(start + span_ms * i / 599).unwrap();
                let after = NewAttempt::from_json(body.as_bytes()).unwrap().into_attempt(org.clone(), at);
                AttemptChange { sequence: i.to_string(), before: None, after }
            })
            .collect();
        changes.chunks(100).map(<[AttemptChange]>::to_vec).collect()
    };
    let (bursty, busy) = (OrganizationId::parse("org_bursty").unwrap(), OrganizationId::parse("org_busy").unwrap());
    for batch in batches(&bursty, 900) {
        assert!(svc.store.grow_if_busy(&batch).await.is_empty(), "a burst under a second");
    }
    assert_eq!(svc.store.layout(&bursty).await.unwrap().latest(), 1);
    // 600 changes over 1.2 s: 500 a second, past half of one shard's 500.
    let mut grown = Vec::new();
    for batch in batches(&busy, 1_200) {
        grown.extend(svc.store.grow_if_busy(&batch).await);
    }
    assert_eq!(grown.len(), 1, "judged once its changes span a second");
    let layout = grown[0].1.as_ref().unwrap();
    assert_eq!(layout.steps().iter().map(|s| s.shards).collect::<Vec<_>>(), [1, 4]);
    assert!(layout.steps()[1].from_ms > Timestamp::now().unix_millis() + 60_000, "two lifetimes ahead");
}
