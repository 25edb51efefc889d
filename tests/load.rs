//! Load over loopback: concurrent clients create attempts through the local HTTP server and
//! settle every other one, while the summarizer counts them and the publisher puts their
//! events on the bus from the stream (as the local server runs them); then a full page walk
//! finds each attempt exactly once, once the summarizer has caught up the summary equals the
//! walk's totals, and once the publisher has caught up every acknowledged change has its
//! event. Bounded in count and time; prints throughput and latency percentiles, and events
//! per PutEvents call (moto shares the machine: the figures are the emulator's as much as
//! ours, BENCHMARKS.md). A second test, run by `make load`, writes at a steady rate and
//! prints the publish lag.
//! `LOAD_REQUESTS` (creates) and `LOAD_CLIENTS` change the first's size (`make load`).

// The load test uses only part of the harness that the integration tests share.
#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use payment_attempts::runtime::Settings;
use payment_attempts::summary::Summary;
use payment_attempts::Status;
use payment_attempts_local::local_api::LocalApi;
use payment_attempts_local::stream_mapping::StreamMapping;
use serde_json::Value;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_over_loopback_are_each_stored_once() {
    let (requests, clients) = (env_or("LOAD_REQUESTS", 600), env_or("LOAD_CLIENTS", 32));
    let svc = common::service().await;
    let api = Arc::new(LocalApi::new(&common::template(), svc.store.clone(), Settings::new(&svc.table)));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(api.serve(listener));
    let mapping = Arc::new(
        StreamMapping::new(&common::template(), &common::engine_endpoint(), &svc.table, svc.store.clone())
            .await
            .unwrap(),
    );
    let summarizer = mapping.clone().spawn(Duration::from_millis(250));
    // The publisher too, through a proxy that counts its PutEvents calls.
    let proxy = common::proxy::FaultProxy::start(&common::events::events_endpoint()).await;
    let events = svc.events_through(&common::engine_endpoint(), proxy.endpoint()).await;
    let publisher = events.mapping.clone().spawn(Duration::from_millis(250));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let auth = common::bearer("org_load");

    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, base, auth) = (client.clone(), base.clone(), auth.clone());
            let count = requests / clients + usize::from(c < requests % clients);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(count);
                // Each acknowledged change: its event's id, and when the answer came (Unix ms).
                let mut acks = Vec::with_capacity(count * 2);
                let now_ms = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
                let send = |request: hyper::Request<Full<Bytes>>, expected: u16| {
                    let client = client.clone();
                    async move {
                        let sent = Instant::now();
                        let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
                            .await
                            .expect("answered in time")
                            .expect("HTTP");
                        let status = response.status().as_u16();
                        let text = response.into_body().collect().await.unwrap().to_bytes();
                        let text = String::from_utf8_lossy(&text).into_owned();
                        assert_eq!(status, expected, "client {c}: {text}");
                        (sent.elapsed(), text)
                    }
                };
                for i in 0..count {
                    let body =
                        common::attempt_body(Some(&format!("session_l{}", c % 8)), &format!("0.{:04}", i % 10_000))
                            .to_string();
                    let request = hyper::Request::post(format!("{base}/v1/payments/attempts"))
                        .header("authorization", &auth)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                    let (latency, text) = send(request, 201).await;
                    latencies.push(latency);
                    let created: Value = serde_json::from_str(&text).unwrap();
                    acks.push((format!("{}.v1", created["id"].as_str().unwrap()), now_ms()));
                    if i % 2 == 0 {
                        let to = if i % 4 == 0 { "succeeded" } else { "released" };
                        let request = hyper::Request::post(format!(
                            "{base}/v1/payments/attempts/{}",
                            created["id"].as_str().unwrap()
                        ))
                        .header("authorization", &auth)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(format!(r#"{{"status": "{to}"}}"#))))
                        .unwrap();
                        latencies.push(send(request, 200).await.0);
                        acks.push((format!("{}.v2", created["id"].as_str().unwrap()), now_ms()));
                    }
                }
                (latencies, acks)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    let mut acks = HashMap::new();
    for task in tasks {
        let (task_latencies, task_acks) = task.await.unwrap();
        latencies.extend(task_latencies);
        acks.extend(task_acks);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];

    // Walk every page over HTTP: each attempt once, newest first.
    let mut seen = std::collections::HashSet::new();
    let mut walked = Summary::default();
    let mut previous: Option<String> = None;
    let mut cursor = String::new();
    loop {
        let request = hyper::Request::get(format!("{base}/v1/payments/attempts?limit=100{cursor}"))
            .header("authorization", &auth)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let page: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        for row in page["data"].as_array().unwrap() {
            let id = row["id"].as_str().unwrap().to_owned();
            assert!(previous.as_ref().is_none_or(|p| *p > id), "newest first");
            assert!(seen.insert(id.clone()), "{id} listed twice");
            let status = Status::parse(row["status"].as_str().unwrap()).unwrap();
            walked.add(status, 1, row["amount_usd"].to_string().parse().unwrap());
            previous = Some(id);
        }
        if page["has_more"] == Value::Bool(false) {
            break;
        }
        cursor = format!("&starting_after={}", previous.as_ref().unwrap());
    }
    assert_eq!(seen.len(), requests);
    // The summarizer ran during the load; once it has caught up, the summary is the walk's.
    summarizer.abort();
    let caught_up = Instant::now();
    mapping.drain().await.unwrap();
    let caught_up = caught_up.elapsed();
    let org = payment_attempts::OrganizationId::parse("org_load").unwrap();
    let scope = payment_attempts::summary::SummaryScope::Organization { hours: None };
    let counted = svc.store.summary(&org, &scope).await.unwrap();
    assert_eq!(counted, walked, "the summary equals the page walk");
    let settles = latencies.len() - requests;
    assert_eq!((walked.get(Status::Succeeded).count + walked.get(Status::Released).count) as usize, settles);
    server.abort();

    // Every acknowledged change has its event, once by id.
    let publishing = Instant::now();
    publisher.abort();
    events.publish().await;
    let publishing = publishing.elapsed();
    let delivered = events.delivered().await;
    let by_id = common::events::deduplicated(&delivered);
    assert_eq!(by_id.len(), acks.len(), "one event per acknowledged change");
    assert!(by_id.keys().all(|id| acks.contains_key(id)), "no event for a change nobody made");
    let calls = proxy.forwarded("PutEvents");
    println!(
        "events: {} changes published ({} deliveries) in {calls} PutEvents calls, {:.2} events per call; {:.1} s after the load to catch up",
        by_id.len(),
        delivered.len(),
        delivered.len() as f64 / calls as f64,
        publishing.as_secs_f64()
    );
    println!(
        "load: {requests} creates and {} settles from {clients} clients in {:.2} s: {:.0} writes/s, latency p50 {:?} p99 {:?} max {:?}; page walk found {} attempts, each once; summary equals the walk, {} ms after the load to catch up",
        settles,
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(0.50),
        percentile(0.99),
        latencies.last().unwrap(),
        seen.len(),
        caught_up.as_millis()
    );
}

/// Writes at a steady rate (`LAG_WRITES_PER_SECOND`, default 20, for `LAG_SECONDS`, default
/// 10) while the publisher polls the stream every 250 ms, as the local server runs it; prints
/// the lag from each acknowledgement to the event's delivery to the subscribed queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a figure, not a check the others lack: make load runs it"]
async fn every_change_is_published_and_the_lag_is_reported() {
    let (rate, seconds) = (env_or("LAG_WRITES_PER_SECOND", 20), env_or("LAG_SECONDS", 10));
    let svc = common::service().await;
    let events = svc.events().await;
    let publisher = events.mapping.clone().spawn(Duration::from_millis(250));
    let now_ms = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let mut acks = HashMap::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    for i in 0..rate * seconds {
        ticks.tick().await;
        let attempt = svc.record("org_lag", &common::attempt_body(None, &format!("0.{i:03}"))).await;
        acks.insert(format!("{}.v1", attempt["id"].as_str().unwrap()), now_ms());
    }
    // Whatever is still on its way, then the rest.
    tokio::time::sleep(Duration::from_secs(2)).await;
    publisher.abort();
    events.publish().await;
    let delivered = events.delivered().await;
    assert_eq!(common::events::deduplicated(&delivered).len(), acks.len(), "one event per acknowledged change");
    let mut lags: Vec<u64> = Vec::new();
    let mut first = std::collections::HashSet::new();
    for delivery in &delivered {
        let id = delivery.event["detail"]["id"].as_str().unwrap().to_owned();
        if first.insert(id.clone()) {
            lags.push(delivery.at_ms.saturating_sub(acks[&id]));
        }
    }
    lags.sort_unstable();
    let lag = |p: f64| lags[((lags.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "publish lag: {} changes at {rate}/s, acknowledgement to delivery p50 {} ms, p99 {} ms, max {} ms (stream polled every 250 ms)",
        lags.len(),
        lag(0.50),
        lag(0.99),
        lags.last().unwrap()
    );
}
