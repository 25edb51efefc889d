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
//! - no 5xx but 503 (with `Retry-After`).
//!
//! `CHAOS_SEED`, `CHAOS_FAULT_RATE` (0.4), `CHAOS_CRASH_RATE` (0.05), `CHAOS_CLIENTS` (8) and
//! `CHAOS_SECONDS` (20) set a run; `make chaos` runs for minutes. A failing run prints its
//! seed: the same seed draws the same faults and operations (the interleaving of concurrent
//! clients still varies).

mod common;

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

/// The way a write reaches the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// A member's JWT, with an `Idempotency-Key` or without one.
    Member { keyed: bool },
    /// A trusted role on the IAM-authorized route, keyed.
    Iam,
    /// An SQS message: its id is the key; redelivered while reported failed.
    Sqs,
    /// A direct invoke: its request id is the key; invoked again while it fails.
    Invoke,
}

impl Route {
    fn keyed(self) -> bool {
        self != Route::Member { keyed: false }
    }
}

#[derive(Debug, Clone)]
enum Write {
    Create,
    Settle { attempt: String, to: Status },
}

/// What one try got back.
#[derive(Debug, Clone)]
enum Reply {
    /// An answer: status and body (SQS only says whether the message was recorded).
    Answer { status: u16, body: String, retry_after: bool },
    /// SQS: the message was reported failed.
    Reported,
    /// The invocation crashed before answering.
    Crashed,
}

/// One logical write and everything its tries got.
#[derive(Debug, Clone)]
struct Op {
    /// In the attempt's metadata (creates) or its status change's reason (settles).
    tag: String,
    write: Write,
    route: Route,
    replies: Vec<Reply>,
}

impl Op {
    /// The final answer, if one came: 2xx, or a refusal the same request would get again.
    fn final_answer(&self) -> Option<(u16, &str)> {
        self.replies.iter().rev().find_map(|reply| match reply {
            Reply::Answer { status, body, .. } if is_final(*status, body) => Some((*status, body.as_str())),
            _ => None,
        })
    }

    /// Acknowledged: a 2xx answer, or an SQS message not reported failed.
    fn acknowledged(&self) -> bool {
        self.final_answer().is_some_and(|(status, _)| (200..300).contains(&status))
    }
}

fn is_final(status: u16, body: &str) -> bool {
    let retry = ["idempotency_key_in_use", "concurrent_update"].iter().any(|code| body.contains(code));
    (200..300).contains(&status) || ((400..500).contains(&status) && !retry)
}

/// Shared by the clients: attempts acknowledged pending (to settle), and the history.
#[derive(Default)]
struct World {
    pending: Vec<String>,
    history: Vec<Op>,
    crashes: usize,
    tries: usize,
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
    // The summarizer runs all along, through the faults, as Lambda's mapping would.
    let summarizer = mapping.clone().spawn(Duration::from_millis(250));
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
    tokio::time::sleep(Duration::from_secs(3)).await;
    summarizer.abort();
    while mapping.drain().await.unwrap() > 0 {}

    let world = std::mem::take(&mut *world.lock().unwrap());
    // A batch that failed through all its retries is parked, as on Lambda: the recount is the
    // remedy, and it must make the summaries exact.
    let parked = mapping.parked();
    if parked > 0 {
        let recount = svc.store.recount(&OrganizationId::parse(ORG).unwrap(), None).await.unwrap();
        println!("chaos: {parked} stream records parked; a recount caught up {} attempts", recount.caught_up);
    }
    let stored = walk(&svc).await;
    let violations = check(&world.history, &stored, &svc).await;
    let faults = proxy.chaos_counts();
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
    println!("chaos: {} violations (seed {})", violations.len(), config.seed);
    for violation in &violations {
        println!("  violation: {violation}");
    }
    assert!(violations.is_empty(), "{} violations; rerun with CHAOS_SEED={}", violations.len(), config.seed);
    assert!(faults.values().sum::<usize>() > 0 || config.fault_rate == 0.0, "no fault was injected");
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

fn next_op(rng: &mut fastrand::Rng, world: &Mutex<World>, client: usize, n: usize) -> Op {
    let tag = format!("c{client}-{n}");
    let route = match rng.u8(0..10) {
        0..=1 => Route::Member { keyed: true },
        2..=3 => Route::Member { keyed: false },
        4..=5 => Route::Iam,
        6..=7 => Route::Sqs,
        _ => Route::Invoke,
    };
    let pending = world.lock().unwrap().pending.clone();
    // Settles pick any client's attempt, so settles under different keys compete.
    let write = if !pending.is_empty() && rng.bool() {
        let attempt = pending[rng.usize(0..pending.len())].clone();
        let to = [Status::Succeeded, Status::Failed, Status::Released][rng.usize(0..3)];
        Write::Settle { attempt, to }
    } else {
        Write::Create
    };
    Op { tag, write, route, replies: Vec::new() }
}

/// The body of a try: the same bytes on every retry.
fn body(op: &Op, rng_hash: Option<usize>) -> String {
    let mut body = match &op.write {
        Write::Create => {
            let session = op.tag.bytes().map(usize::from).sum::<usize>() % 4;
            let mut body = attempt_body(Some(&format!("session_s{session}")), "0.125");
            body["metadata"] = json!({ "op": op.tag });
            if let Some(hash) = rng_hash {
                // A small shared pool, so that creates meet each other's replay guards.
                body["request_hash"] = json!(format!("sha256:{hash:064x}"));
            }
            body
        }
        Write::Settle { to, .. } => {
            let mut body = json!({"status": to.as_str(), "status_details": {"reason": op.tag}});
            if *to == Status::Failed {
                body["error_message"] = json!("rail.declined");
            }
            body
        }
    };
    if op.route != (Route::Member { keyed: true }) && op.route != (Route::Member { keyed: false }) {
        body["organization_id"] = json!(ORG);
    }
    body.to_string()
}

/// Runs one logical write to a final answer, as its caller would retry it.
async fn run(svc: &Service, world: &Mutex<World>, rng: &mut fastrand::Rng, crash_rate: f64, mut op: Op) -> Op {
    let hash = (matches!(op.write, Write::Create) && rng.u8(0..4) == 0).then(|| rng.usize(0..12));
    let body = body(&op, hash);
    let key = format!("key-{}", op.tag);
    let tries = match op.route {
        Route::Member { keyed: false } => 1,
        Route::Sqs => MAX_RECEIVES,
        _ => MAX_TRIES,
    };
    for _ in 0..tries {
        // A crash drops the invocation at a random instant, if it has not answered by then.
        let crash_after = (rng.f64() < crash_rate).then(|| Duration::from_millis(rng.u64(0..250)));
        let attempt = Box::pin(one_try(svc, &op, &key, &body));
        let reply = match crash_after {
            Some(after) => tokio::time::timeout(after, attempt).await.unwrap_or(Reply::Crashed),
            None => attempt.await,
        };
        {
            let mut world = world.lock().unwrap();
            world.tries += 1;
            world.crashes += usize::from(matches!(reply, Reply::Crashed));
        }
        let done = match &reply {
            Reply::Answer { status, body, .. } => is_final(*status, body),
            Reply::Reported | Reply::Crashed => false,
        };
        op.replies.push(reply);
        if done {
            // The caller asks once more, as a retry whose answer was lost would: under a key,
            // the same answer again (checked below).
            if op.route.keyed() {
                let again = Box::pin(one_try(svc, &op, &key, &body)).await;
                world.lock().unwrap().tries += 1;
                op.replies.push(again);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(10..60))).await;
    }
    op
}

async fn one_try(svc: &Service, op: &Op, key: &str, body: &str) -> Reply {
    let target = match &op.write {
        Write::Create => String::new(),
        Write::Settle { attempt, .. } => format!("/{attempt}"),
    };
    let http = |reply: common::Reply| Reply::Answer {
        status: reply.status,
        retry_after: reply.headers.contains_key("retry-after"),
        body: reply.text,
    };
    match op.route {
        Route::Member { keyed: true } => http(svc.post_keyed(ORG, &format!("{LIST}{target}"), body, key).await),
        Route::Member { keyed: false } => {
            let auth = common::bearer(ORG);
            let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
            http(svc.request_with("POST", &format!("{LIST}{target}"), &headers, body.as_bytes()).await)
        }
        Route::Iam => {
            let headers = [
                ("content-type", "application/json"),
                (LOCAL_CALLER_ARN_HEADER, TRUSTED_ROLE),
                ("idempotency-key", key),
            ];
            http(svc.request_with("POST", &format!("{INTERNAL}{target}"), &headers, body.as_bytes()).await)
        }
        Route::Sqs | Route::Invoke => {
            let command = match &op.write {
                Write::Create => json!({"action": "create", "body": serde_json::from_str::<Value>(body).unwrap()}),
                Write::Settle { attempt, .. } => json!({"action": "update", "attempt_id": attempt,
                    "body": serde_json::from_str::<Value>(body).unwrap()}),
            };
            let mut context = Context::default();
            let payload = if op.route == Route::Sqs {
                context.request_id = format!("batch-{}", uuid::Uuid::now_v7());
                json!({"Records": [{"messageId": key, "receiptHandle": "r", "body": command.to_string(),
                    "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs"}]})
            } else {
                context.request_id = key.to_owned();
                command
            };
            let event = LambdaEvent::new(RawValue::from_string(payload.to_string()).unwrap(), context);
            match record_attempt::worker::handle(&svc.store, event).await {
                Ok(reply) if op.route == Route::Sqs => {
                    let reply: Value = serde_json::from_str(reply.get()).unwrap();
                    match reply["batchItemFailures"].as_array().map(Vec::len) {
                        Some(0) => Reply::Answer { status: 200, body: String::new(), retry_after: false },
                        _ => Reply::Reported,
                    }
                }
                Ok(reply) => {
                    let reply: Value = serde_json::from_str(reply.get()).unwrap();
                    let status = reply["status"].as_u64().unwrap_or(0) as u16;
                    Reply::Answer { status, body: reply["body"].to_string(), retry_after: false }
                }
                // A failed invoke, for Lambda to retry: its message is the error body.
                Err(e) => {
                    let status = match e.error_type.as_str() {
                        "storage_unavailable" => 503,
                        "idempotency_key_in_use" | "concurrent_update" => 409,
                        _ => 500,
                    };
                    Reply::Answer { status, body: e.error_message, retry_after: true }
                }
            }
        }
    }
}

/// The id of an attempt a create's answer shows pending.
fn created_pending(op: &Op) -> Option<String> {
    let (_, body) = op.final_answer()?;
    let body: Value = serde_json::from_str(body).ok()?;
    (body["status"] == "pending").then(|| body["id"].as_str().map(str::to_owned)).flatten()
}

/// Every stored attempt of the organization, whole (retrieve), by id, from a page walk.
async fn walk(svc: &Service) -> BTreeMap<String, Value> {
    let mut stored = BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let page = svc.get(ORG, &format!("{LIST}?limit=100{cursor}")).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let page = page.json();
        let mut last = None;
        for row in page["data"].as_array().unwrap() {
            let id = row["id"].as_str().unwrap().to_owned();
            let whole = svc.get(ORG, &format!("{LIST}/{id}")).await;
            assert_eq!(whole.status, 200, "{}", whole.text);
            assert!(stored.insert(id.clone(), whole.json()).is_none(), "{id} listed twice");
            last = Some(id);
        }
        if page["has_more"] != json!(true) {
            return stored;
        }
        // A page cut short by its read budget says where to go on.
        cursor = match page["next_page"]["starting_after"].as_str() {
            Some(after) => format!("&starting_after={after}"),
            None => format!("&starting_after={}", last.expect("a page with more has rows")),
        };
    }
}

/// The history against what is stored: every violation, in words.
async fn check(history: &[Op], stored: &BTreeMap<String, Value>, svc: &Service) -> Vec<String> {
    let mut violations = Vec::new();
    let mut by_tag: HashMap<&str, Vec<&Value>> = HashMap::new();
    for attempt in stored.values() {
        match attempt["metadata"]["op"].as_str() {
            Some(tag) => by_tag.entry(tag).or_default().push(attempt),
            None => violations.push(format!("stored attempt {} was never asked for", attempt["id"])),
        }
    }
    let asked: std::collections::HashSet<&str> = history.iter().map(|op| op.tag.as_str()).collect();
    for tag in by_tag.keys().filter(|tag| !asked.contains(*tag)) {
        violations.push(format!("stored attempt tagged {tag} matches no write"));
    }
    for op in history {
        let answers: Vec<(u16, &str)> = op
            .replies
            .iter()
            .filter_map(|reply| match reply {
                Reply::Answer { status, body, .. } => Some((*status, body.as_str())),
                _ => None,
            })
            .collect();
        for (status, body) in &answers {
            if *status >= 500 && *status != 503 {
                violations.push(format!("{}: a {status} answer: {body}", op.tag));
            }
        }
        for reply in &op.replies {
            if let Reply::Answer { status: 503, retry_after: false, .. } = reply {
                violations.push(format!("{}: a 503 without Retry-After", op.tag));
            }
        }
        // Under one key, every final answer is the same answer, byte for byte.
        let finals: Vec<&(u16, &str)> = answers.iter().filter(|(s, b)| is_final(*s, b)).collect();
        if op.route.keyed() && finals.windows(2).any(|pair| pair[0] != pair[1]) {
            violations.push(format!("{}: different final answers under one key: {finals:?}", op.tag));
        }
        let last_final = op.final_answer();
        match &op.write {
            Write::Create => {
                let found = by_tag.get(op.tag.as_str()).map_or(&[][..], Vec::as_slice);
                if found.len() > 1 {
                    violations.push(format!("{}: stored {} times", op.tag, found.len()));
                }
                match last_final {
                    Some((status, body)) if (200..300).contains(&status) => {
                        if found.len() != 1 {
                            violations.push(format!("{}: acknowledged but stored {} times", op.tag, found.len()));
                        } else if op.route != Route::Sqs {
                            let answered: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                            if let Some(difference) = created_differently(&answered, found[0]) {
                                violations
                                    .push(format!("{}: stored differently from its answer: {difference}", op.tag));
                            }
                        }
                    }
                    Some((status, body)) if !found.is_empty() => {
                        violations.push(format!("{}: refused ({status} {body}) yet stored", op.tag))
                    }
                    _ => {}
                }
            }
            Write::Settle { attempt, to } => {
                let Some(stored) = stored.get(attempt) else {
                    violations.push(format!("{}: settles {attempt}, which is not stored", op.tag));
                    continue;
                };
                let history = stored["status_history"].as_array().cloned().unwrap_or_default();
                if history.len() > 2 {
                    violations.push(format!("{attempt}: {} status changes", history.len()));
                }
                let applied = history.iter().filter(|change| change["reason"] == json!(op.tag)).count();
                if applied > 1 {
                    violations.push(format!("{}: applied {applied} times", op.tag));
                }
                match last_final {
                    Some((status, body)) if (200..300).contains(&status) => {
                        if applied != 1 || stored["status"] != json!(to.as_str()) {
                            violations.push(format!(
                                "{}: acknowledged, but {attempt} shows it applied {applied} times, status {}",
                                op.tag, stored["status"]
                            ));
                        } else if op.route != Route::Sqs
                            && serde_json::from_str::<Value>(body).ok().as_ref() != Some(stored)
                        {
                            violations.push(format!("{}: answered {body}, stored {stored}", op.tag));
                        }
                    }
                    Some((status, body)) if applied > 0 => {
                        violations.push(format!("{}: refused ({status} {body}) yet applied", op.tag))
                    }
                    _ => {}
                }
            }
        }
    }
    // Summaries: the organization's and each session's equal the walk's totals.
    let org = OrganizationId::parse(ORG).unwrap();
    let mut walked: BTreeMap<Option<String>, Summary> = BTreeMap::new();
    for attempt in stored.values() {
        let status = Status::parse(attempt["status"].as_str().unwrap_or_default()).unwrap_or(Status::Pending);
        let amount: rust_decimal::Decimal = attempt["amount_usd"].to_string().parse().unwrap_or_default();
        walked.entry(None).or_default().add(status, 1, amount);
        if let Some(session) = attempt["session_id"].as_str() {
            walked.entry(Some(session.to_owned())).or_default().add(status, 1, amount);
        }
    }
    for (session, expected) in &walked {
        let scope = match session {
            None => SummaryScope::Organization { hours: None },
            Some(session) => SummaryScope::Session(payment_attempts::id::SessionId::parse(session).unwrap()),
        };
        let counted = svc.store.summary(&org, &scope).await.unwrap();
        if &counted != expected {
            violations.push(format!("summary of {session:?}: counted {counted:?}, walked {expected:?}"));
        }
    }
    violations
}

/// How a stored attempt differs from the create's answer, in what a later settle leaves alone.
fn created_differently(answered: &Value, stored: &Value) -> Option<String> {
    let fields = [
        "id",
        "organization_id",
        "session_id",
        "capability",
        "operation",
        "amount_usd",
        "target_url",
        "request_hash",
        "metadata",
        "created_at",
    ];
    for field in fields {
        if answered[field] != stored[field] {
            return Some(format!("{field}: {} vs {}", answered[field], stored[field]));
        }
    }
    let first = |a: &Value| a["status_history"][0].clone();
    (first(answered) != first(stored)).then(|| format!("first status change: {} vs {}", first(answered), first(stored)))
}
