//! Load over loopback: concurrent clients create attempts through the local HTTP server and
//! settle every other one, while the summarizer counts them from the stream (as the local
//! server runs it); then a full page walk finds each attempt exactly once, and once the
//! summarizer has caught up the summary equals the walk's totals. Bounded in count and time;
//! prints throughput and latency percentiles. `LOAD_REQUESTS` (creates) and `LOAD_CLIENTS`
//! change its size (`make load`).

// The load test uses only part of the harness that the integration tests share.
#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let (requests, clients) = (env_or("LOAD_REQUESTS", 1000), env_or("LOAD_CLIENTS", 32));
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
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let auth = common::bearer("org_load");

    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, base, auth) = (client.clone(), base.clone(), auth.clone());
            let count = requests / clients + usize::from(c < requests % clients);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(count);
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
                    if i % 2 == 0 {
                        let created: Value = serde_json::from_str(&text).unwrap();
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
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    for task in tasks {
        latencies.extend(task.await.unwrap());
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
