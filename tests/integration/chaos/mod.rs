//! A seeded, randomized fault campaign, Jepsen style. A proxy between the service and
//! DynamoDB Local faults a share of every DynamoDB call the service makes, the summarizer's
//! included (answers held past the client's try timeout or dropped after the engine
//! committed, delays, 500s, throttles, transaction conflicts), and some invocations crash in
//! the middle (their future is dropped at a random instant, all their state lost, as when the
//! process is killed; what they sent still reaches the engine). Meanwhile clients record and
//! settle attempts for one organization over every route (JWT, IAM, SQS, direct invoke), and
//! retry as their callers would: keyed writes with the same key and bytes until a final
//! answer, SQS by redelivering the message, Lambda by invoking again under the same request
//! id; unkeyed writes are tried once. Every answer goes into a history, which is checked
//! against what is stored once the faults stop:
//! - every acknowledged write is stored once, with its content;
//! - all the answers under one key name one result;
//! - no final answer contradicts what is stored (a refused write is not there);
//! - a settle is applied at most once, and one refused by a competing settle never applies;
//! - the summaries equal the page walk once the stream drains;
//! - every stored change has its event on the bus, once by id after deduplication, in
//!   version order, as the attempt was at that version (the publisher reads the stream
//!   through the faults, and a second proxy faults its PutEvents calls at the same rate:
//!   answers held or dropped, delays, errors, and entries refused one by one);
//! - no 5xx but 503 (with `Retry-After`).
//!
//! `CHAOS_SEED`, `CHAOS_FAULT_RATE` (0.4), `CHAOS_CRASH_RATE` (0.05), `CHAOS_CLIENTS` (8) and
//! `CHAOS_SECONDS` (20) set a run; `make chaos` runs for minutes. A failing run prints its
//! seed: the same seed draws the same faults and operations (the interleaving of concurrent
//! clients still varies).

mod check;
mod clients;
mod history;

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{Credentials, Region};
use common::proxy::FaultProxy;
use common::{attempt_body, engine_endpoint, service_with_client, Service, TRUSTED_ROLE};
use lambda_http::{Context, LambdaEvent};
use payment_attempts::summary::{Summary, SummaryScope};
use payment_attempts::{OrganizationId, Status};
use payment_attempts_local::local_api::LOCAL_CALLER_ARN_HEADER;
use payment_attempts_local::stream_mapping::StreamMapping;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use check::{check, check_events, walk};
use clients::{next_op, run};
use history::{created_pending, Op, Route, Write};

const ORG: &str = "org_chaos";
const LIST: &str = "/v1/payments/attempts";
const INTERNAL: &str = "/internal/v1/payments/attempts";
/// The campaign's client gives up on a try after this; a held answer is held longer.
const TRY_TIMEOUT: Duration = Duration::from_millis(400);
/// Tries of one keyed write before the client gives up (the write stays unresolved).
const MAX_TRIES: usize = 40;
/// Receives of one SQS message before it goes to the dead-letter queue (`maxReceiveCount`).
const MAX_RECEIVES: usize = 5;

struct Config {
    seed: u64,
    fault_rate: f64,
    crash_rate: f64,
    clients: usize,
    duration: Duration,
}

impl Config {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let seed = var("CHAOS_SEED").and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
        });
        Config {
            seed,
            fault_rate: var("CHAOS_FAULT_RATE").and_then(|s| s.parse().ok()).unwrap_or(0.4),
            crash_rate: var("CHAOS_CRASH_RATE").and_then(|s| s.parse().ok()).unwrap_or(0.05),
            clients: var("CHAOS_CLIENTS").and_then(|s| s.parse().ok()).unwrap_or(8),
            duration: Duration::from_secs(var("CHAOS_SECONDS").and_then(|s| s.parse().ok()).unwrap_or(20)),
        }
    }
}

/// Shared by the clients: attempts acknowledged pending (to settle), and the history.
#[derive(Default)]
pub struct World {
    pub pending: Vec<String>,
    pub history: Vec<Op>,
    pub crashes: usize,
    pub tries: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_randomized_fault_campaign_finds_no_violation() {
    let config = Config::from_env();
    println!(
        "chaos: seed {} (CHAOS_SEED={} to reproduce), fault rate {}, crash rate {}, {} clients, {:?}",
        config.seed, config.seed, config.fault_rate, config.crash_rate, config.clients, config.duration
    );
    let proxy = FaultProxy::start(&engine_endpoint()).await;
    let svc = Arc::new(service_with_client(proxy.endpoint(), campaign_client(proxy.endpoint())).await);
    let mapping = Arc::new(
        StreamMapping::new(&common::template(), proxy.endpoint(), &svc.table, svc.store.clone()).await.unwrap(),
    );
    proxy.chaos(config.seed, config.fault_rate, TRY_TIMEOUT + Duration::from_millis(200));
    // The summarizer runs all along, through the faults, as Lambda's mapping would; so does
    // the publisher, its PutEvents faulted too.
    let summarizer = mapping.clone().spawn(Duration::from_millis(250));
    let events_proxy = FaultProxy::start(&common::events::events_endpoint()).await;
    let events = svc.events_with_client(proxy.endpoint(), campaign_events_client(events_proxy.endpoint())).await;
    events_proxy.chaos(config.seed.wrapping_add(1), config.fault_rate, TRY_TIMEOUT + Duration::from_millis(200));
    let publisher = events.mapping.clone().spawn(Duration::from_millis(250));
    let world = Arc::new(Mutex::new(World::default()));
    let started = Instant::now();
    let clients: Vec<_> = (0..config.clients)
        .map(|c| {
            let (svc, world) = (svc.clone(), world.clone());
            let mut rng = fastrand::Rng::with_seed(config.seed.wrapping_add(c as u64 * 7919));
            let (duration, crash_rate) = (config.duration, config.crash_rate);
            tokio::spawn(async move {
                let mut n = 0;
                while started.elapsed() < duration {
                    let op = next_op(&mut rng, &world, c, n);
                    let op = Box::pin(run(&svc, &world, &mut rng, crash_rate, op)).await;
                    let mut world = world.lock().unwrap();
                    if let (Write::Create, true) = (&op.write, op.acknowledged()) {
                        if let Some(id) = created_pending(&op) {
                            world.pending.push(id);
                        }
                    }
                    world.history.push(op);
                    n += 1;
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let ran_for = started.elapsed();
    // The faults stop; let every write still on its way land, and the stream drain.
    proxy.heal();
    events_proxy.heal();
    tokio::time::sleep(Duration::from_secs(3)).await;
    summarizer.abort();
    publisher.abort();
    while mapping.drain().await.unwrap() > 0 {}
    while events.publish().await > 0 {}

    let world = std::mem::take(&mut *world.lock().unwrap());
    // A batch that failed through all its retries is parked, as on Lambda: the recount is the
    // remedy, and it must make the summaries exact.
    let parked = mapping.parked();
    if parked > 0 {
        // With the production client: the campaign's 400 ms tries are for the faults, now over.
        let store = payment_attempts::AttemptStore::new(
            payment_attempts_local::dynamodb_local::client(&engine_endpoint()),
            &svc.table,
        );
        let recount = store.recount(&OrganizationId::parse(ORG).unwrap(), None).await.unwrap();
        println!("chaos: {parked} stream records parked; a recount caught up {} attempts", recount.caught_up);
    }
    let stored = walk(&svc).await;
    let mut violations = check(&world.history, &stored, &svc).await;
    let delivered = events.delivered().await;
    violations.extend(check_events(&world.history, &stored, &delivered));
    let faults = proxy.chaos_counts();
    let event_faults = events_proxy.chaos_counts();
    let (creates, settles) = world.history.iter().fold((0, 0), |(c, s), op| match op.write {
        Write::Create => (c + 1, s),
        Write::Settle { .. } => (c, s + 1),
    });
    let acknowledged = world.history.iter().filter(|op| op.acknowledged()).count();
    // SQS tells a refusal from an outage only by the dead-letter queue: both are reported.
    let dead_lettered = world.history.iter().filter(|op| op.route == Route::Sqs && !op.acknowledged()).count();
    let unresolved = world
        .history
        .iter()
        .filter(|op| op.route.keyed() && op.route != Route::Sqs && op.final_answer().is_none())
        .count();
    println!(
        "chaos: {} logical writes in {ran_for:.1?} ({creates} creates, {settles} settles; {acknowledged} acknowledged, {dead_lettered} SQS messages dead-lettered, {unresolved} keyed writes without a final answer), {} tries ({} retries), {} crashes, {} attempts stored",
        world.history.len(),
        world.tries,
        world.tries - world.history.len(),
        world.crashes,
        stored.len()
    );
    println!("chaos: {} faults injected: {faults:?}", faults.values().sum::<usize>());
    println!(
        "chaos: {} events delivered for {} changes; {} PutEvents faults injected: {event_faults:?}; {} stream records parked from the publisher",
        delivered.len(),
        stored.values().map(|a| a["status_history"].as_array().map_or(0, Vec::len)).sum::<usize>(),
        event_faults.values().sum::<usize>(),
        events.mapping.parked()
    );
    println!("chaos: {} violations (seed {})", violations.len(), config.seed);
    for violation in &violations {
        println!("  violation: {violation}");
    }
    assert!(violations.is_empty(), "{} violations; rerun with CHAOS_SEED={}", violations.len(), config.seed);
    assert!(faults.values().sum::<usize>() > 0 || config.fault_rate == 0.0, "no fault was injected");
}

/// The publisher's EventBridge client, with the campaign's short tries.
fn campaign_events_client(endpoint: &str) -> aws_sdk_eventbridge::Client {
    let local = payment_attempts_local::eventbridge_local::client(endpoint);
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(TRY_TIMEOUT)
        .operation_timeout(TRY_TIMEOUT * 3 + Duration::from_millis(300))
        .build();
    let config = local.config().to_builder().timeout_config(timeouts).build();
    aws_sdk_eventbridge::Client::from_conf(config)
}

/// The production client's shape, with short tries so that a run covers many faults: a held
/// answer costs a fraction of a second, not two.
fn campaign_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = payment_attempts::runtime::dynamodb_config()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "dynamodb-local"))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(TRY_TIMEOUT)
                .operation_timeout(TRY_TIMEOUT * 3 + Duration::from_millis(300))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(20)))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}
