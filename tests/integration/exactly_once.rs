//! Exactly once when DynamoDB's answer is lost: a fault-injecting proxy between the service
//! and DynamoDB Local lets writes commit and loses their answers, hangs, or refuses; a retry
//! with the same key must replay what was committed, and nothing is recorded twice.

use crate::common;

use std::time::{Duration, Instant};

use common::proxy::{Fault, FaultProxy};
use common::{attempt_body, engine_endpoint, service_on, Reply, Service, TRUSTED_ROLE};
use lambda_http::{Context, LambdaEvent};
use payment_attempts::budget::{FUNCTION_TIMEOUT, RESPONSE_MARGIN};
use payment_attempts_local::local_api::LOCAL_CALLER_ARN_HEADER;
use serde_json::value::RawValue;
use serde_json::{json, Value};

const LIST: &str = "/v1/payments/attempts";
const INTERNAL: &str = "/internal/v1/payments/attempts";
const ORG: &str = "org_acme";
/// Longer than any SDK attempt and operation timeout: the answer never comes in time.
const LOST: Fault = Fault::HoldAnswer(Duration::from_secs(30));
/// Every answer comes by the settle deadline (the timeout less the response margin); half the
/// margin is slack for a busy test machine.
fn answer_by() -> Duration {
    FUNCTION_TIMEOUT - RESPONSE_MARGIN / 2
}

async fn proxied() -> (FaultProxy, Service) {
    let proxy = FaultProxy::start(&engine_endpoint()).await;
    let svc = service_on(proxy.endpoint()).await;
    // The organization's layout is read before faults start, as a warm function has it.
    svc.store.layout(&payment_attempts::OrganizationId::parse(ORG).unwrap()).await.unwrap();
    (proxy, svc)
}

/// Every write's answer is lost, a refusal's too, and so is every read after the first
/// `reads` (a settle reads its attempt first): reading back cannot tell either.
fn lose_every_write_answer(proxy: &FaultProxy, reads: usize) {
    proxy.inject(Some("TransactWriteItems"), LOST, None);
    proxy.inject(Some("PutItem"), LOST, None);
    if reads > 0 {
        proxy.inject(Some("GetItem"), Fault::Pass, Some(reads));
    }
    proxy.inject(Some("GetItem"), LOST, None);
}

fn assert_503_in_time(reply: &Reply, took: Duration, what: &str) {
    assert_eq!(reply.status, 503, "{what}: {}", reply.text);
    assert_eq!(reply.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"), "{what}");
    assert_eq!(reply.error().0, "storage_unavailable", "{what}");
    assert!(
        took < answer_by(),
        "{what} answered in {took:?}, into the response margin of the {FUNCTION_TIMEOUT:?} timeout"
    );
}

fn assert_replayed(reply: &Reply, first: &str, status: u16) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(reply.text, first, "replayed byte for byte");
}

/// The organization's attempts (one page is enough here) and its summary count.
async fn stored(svc: &Service) -> (Vec<Value>, i64) {
    let page = svc.get(ORG, &format!("{LIST}?limit=100")).await.json();
    svc.summarize().await;
    let summary = svc.get(ORG, &format!("{LIST}/summary")).await.json();
    (page["data"].as_array().cloned().unwrap_or_default(), summary["count"].as_i64().unwrap_or(-1))
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_recorded_once_and_replayed() {
    let (proxy, svc) = proxied().await;
    let body = attempt_body(Some("session_s1"), "0.25").to_string();
    lose_every_write_answer(&proxy, 0);
    let started = Instant::now();
    let first = svc.post_keyed(ORG, LIST, &body, "create-k").await;
    assert_503_in_time(&first, started.elapsed(), "keyed create, answer lost");
    println!("exactly once: create with its answer lost answered 503 in {:?}", started.elapsed());
    proxy.heal();

    let retry = svc.post_keyed(ORG, LIST, &body, "create-k").await;
    let id = retry.json()["id"].as_str().unwrap().to_owned();
    // The committed attempt, as retrieve shows it, is what the retry replayed.
    let shown = svc.get(ORG, &format!("{LIST}/{id}")).await;
    assert_replayed(&retry, &shown.text, 201);
    assert_replayed(&svc.post_keyed(ORG, LIST, &body, "create-k").await, &retry.text, 201);
    let (attempts, counted) = stored(&svc).await;
    assert_eq!((attempts.len(), counted), (1, 1), "one attempt, counted once");
    assert_eq!(shown.json()["status_history"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_lost_answer_that_the_service_can_read_back_is_answered_at_once() {
    let (proxy, svc) = proxied().await;
    let body = attempt_body(None, "1").to_string();
    // Only the transaction's answer is lost: settling the key finds the write committed.
    proxy.inject(Some("TransactWriteItems"), Fault::DropAfterSend, None);
    let first = svc.post_keyed(ORG, LIST, &body, "read-back").await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert!(first.headers.get("idempotent-replayed").is_none(), "this is the request that wrote it");
    proxy.heal();
    assert_replayed(&svc.post_keyed(ORG, LIST, &body, "read-back").await, &first.text, 201);
    assert_eq!(stored(&svc).await.0.len(), 1);
}

#[tokio::test]
async fn a_settle_whose_answer_is_lost_is_applied_once_and_replayed() {
    let (proxy, svc) = proxied().await;
    let created = svc.record(ORG, &attempt_body(Some("session_s1"), "2")).await;
    let target = format!("{LIST}/{}", created["id"].as_str().unwrap());
    let settle = json!({"status": "succeeded", "receipt": {"settlement": "0xfeed"}}).to_string();
    lose_every_write_answer(&proxy, 1);
    let started = Instant::now();
    let first = svc.post_keyed(ORG, &target, &settle, "settle-k").await;
    assert_503_in_time(&first, started.elapsed(), "keyed settle, answer lost");
    proxy.heal();

    let retry = svc.post_keyed(ORG, &target, &settle, "settle-k").await;
    assert_eq!(retry.status, 200, "not a 409 invalid_state_transition: {}", retry.text);
    assert_eq!(retry.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    let shown = svc.get(ORG, &target).await;
    assert_eq!(shown.text, retry.text);
    let history = shown.json()["status_history"].as_array().cloned().unwrap();
    assert_eq!(history.len(), 2, "the change is in the history once");
    // Both receipts are kept: the one recorded at creation and the settlement's.
    assert_eq!(history[0]["receipt"], json!({"tx": "0x5e1f"}));
    assert_eq!(history[1]["receipt"], json!({"settlement": "0xfeed"}));
    assert_eq!(shown.json()["receipt"], json!({"settlement": "0xfeed"}));
    svc.summarize().await;
    let summary = svc.get(ORG, &format!("{LIST}/summary")).await.json();
    assert_eq!((summary["count"].as_i64(), summary["by_status"]["succeeded"]["count"].as_i64()), (Some(1), Some(1)));
    assert_eq!(summary["by_status"]["pending"]["count"].as_i64(), Some(0));
}

#[tokio::test]
async fn an_iam_write_whose_answer_is_lost_is_recorded_once() {
    let (proxy, svc) = proxied().await;
    let mut body = attempt_body(None, "3");
    body["organization_id"] = json!(ORG);
    let body = body.to_string();
    let headers =
        [("content-type", "application/json"), (LOCAL_CALLER_ARN_HEADER, TRUSTED_ROLE), ("idempotency-key", "iam-k")];
    let post = || svc.request_with("POST", INTERNAL, &headers, body.as_bytes());
    lose_every_write_answer(&proxy, 0);
    let started = Instant::now();
    let first = post().await;
    assert_503_in_time(&first, started.elapsed(), "IAM create, answer lost");
    proxy.heal();
    let retry = post().await;
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert_replayed(&post().await, &retry.text, 201);
    assert_eq!(stored(&svc).await, (vec![retry.json()].into_iter().map(row).collect(), 1));
}

/// A retrieved attempt as a list row shows it.
fn row(mut attempt: Value) -> Value {
    attempt.as_object_mut().map(|o| o.remove("status_history"));
    attempt
}

fn invoke(payload: &Value, request_id: &str) -> LambdaEvent<Box<RawValue>> {
    let mut context = Context::default();
    context.request_id = request_id.to_owned();
    LambdaEvent::new(RawValue::from_string(payload.to_string()).unwrap(), context)
}

async fn worker(svc: &Service, event: LambdaEvent<Box<RawValue>>) -> Value {
    serde_json::from_str(record_attempt::worker::handle(&svc.store, event).await.unwrap().get()).unwrap()
}

#[tokio::test]
async fn worker_writes_whose_answers_are_lost_are_recorded_once() {
    let (proxy, svc) = proxied().await;
    let mut body = attempt_body(None, "4");
    body["organization_id"] = json!(ORG);
    // A direct invoke without idempotency_key, retried by Lambda under the same request id.
    let command = json!({"action": "create", "body": body});
    lose_every_write_answer(&proxy, 0);
    // Not a final answer: the invoke fails, so that Lambda retries it (an asynchronous one).
    let first = record_attempt::worker::handle(&svc.store, invoke(&command, "invoke-1")).await;
    assert_eq!(first.map(|_| ()).map_err(|e| e.error_type), Err("storage_unavailable".to_owned()));
    proxy.heal();
    let retried = worker(&svc, invoke(&command, "invoke-1")).await;
    assert_eq!(retried["status"], 201, "{retried}");
    assert_eq!(worker(&svc, invoke(&command, "invoke-1")).await, retried, "the same answer again");
    // An SQS message: the batch reports it for redelivery, the redelivery records nothing twice.
    let message = json!({"Records": [{"messageId": "m-1", "receiptHandle": "r", "body": command.to_string(),
        "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs"}]});
    lose_every_write_answer(&proxy, 0);
    let first = worker(&svc, invoke(&message, "sqs-batch-1")).await;
    assert_eq!(first["batchItemFailures"][0]["itemIdentifier"], "m-1", "{first}");
    proxy.heal();
    let redelivered = worker(&svc, invoke(&message, "sqs-batch-2")).await;
    assert_eq!(redelivered["batchItemFailures"], json!([]), "{redelivered}");
    let (attempts, counted) = stored(&svc).await;
    assert_eq!((attempts.len(), counted), (2, 2), "one attempt per invoke and per message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_dynamodb_that_never_answers_every_route_answers_503_inside_the_timeout() {
    let (proxy, svc) = proxied().await;
    let created = svc.record(ORG, &attempt_body(Some("session_s1"), "1")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    proxy.inject(None, Fault::NeverAnswer, None);
    let body = attempt_body(None, "1").to_string();
    let mut internal = attempt_body(None, "1");
    internal["organization_id"] = json!(ORG);
    let internal = internal.to_string();
    let settle = json!({"status": "released"}).to_string();
    let target = format!("{LIST}/{id}");
    let (member, iam) =
        (common::bearer(ORG), [("content-type", "application/json"), (LOCAL_CALLER_ARN_HEADER, TRUSTED_ROLE)]);
    let unkeyed = [("authorization", member.as_str()), ("content-type", "application/json")];
    let started = Instant::now();
    let timed = |what: &'static str| move |reply: Reply| (what, reply, started.elapsed());
    // Boxed: eight whole requests on one test thread's stack overflow it in a debug build.
    let replies = tokio::join!(
        Box::pin(async { timed("list")(svc.get(ORG, LIST).await) }),
        Box::pin(async { timed("list by session")(svc.get(ORG, &format!("{LIST}?session_id=session_s1")).await) }),
        Box::pin(async { timed("summary")(svc.get(ORG, &format!("{LIST}/summary")).await) }),
        Box::pin(async { timed("retrieve")(svc.get(ORG, &target).await) }),
        Box::pin(async { timed("create")(svc.post_keyed(ORG, LIST, &body, "hang-create").await) }),
        Box::pin(async {
            timed("create without key")(svc.request_with("POST", LIST, &unkeyed, body.as_bytes()).await)
        }),
        Box::pin(async { timed("settle")(svc.post_keyed(ORG, &target, &settle, "hang-settle").await) }),
        Box::pin(async { timed("IAM create")(svc.request_with("POST", INTERNAL, &iam, internal.as_bytes()).await) }),
    );
    let replies = [replies.0, replies.1, replies.2, replies.3, replies.4, replies.5, replies.6, replies.7];
    let mut worst = Duration::ZERO;
    for (what, reply, took) in &replies {
        assert_503_in_time(reply, *took, what);
        worst = worst.max(*took);
    }
    let started = Instant::now();
    let command = json!({"action": "create", "body": serde_json::from_str::<Value>(&internal).unwrap()});
    let invoked = record_attempt::worker::handle(&svc.store, invoke(&command, "hang-invoke")).await;
    let took = started.elapsed();
    assert_eq!(invoked.map(|_| ()).map_err(|e| e.error_type), Err("storage_unavailable".to_owned()));
    assert!(took < answer_by(), "worker answered in {took:?}");
    worst = worst.max(took);
    println!(
        "time budget: DynamoDB never answering, {} routes and the worker each answered 503 + Retry-After; worst {worst:?} against the {FUNCTION_TIMEOUT:?} timeout",
        replies.len()
    );
}

#[tokio::test]
async fn a_transaction_conflict_is_a_retryable_409_that_is_not_kept() {
    let (proxy, svc) = proxied().await;
    // In the write's transaction (attempt, key), as DynamoDB reports it: a cancellation whose
    // reasons name the conflict. Once: the store's next round passes.
    let body = attempt_body(None, "6").to_string();
    proxy.inject(Some("TransactWriteItems"), Fault::Cancelled(&["None", "TransactionConflict"]), Some(1));
    let ran = svc.post_keyed(ORG, LIST, &body, "conflict-once").await;
    assert_eq!(ran.status, 201, "retried inside the store: {}", ran.text);
    // On the key in every round: a request with the same key is being written. Not kept: the
    // retry runs, then replays.
    let body = attempt_body(None, "7").to_string();
    proxy.inject(Some("TransactWriteItems"), Fault::Cancelled(&["None", "TransactionConflict"]), None);
    let refused = svc.post_keyed(ORG, LIST, &body, "conflict-key").await;
    assert_eq!((refused.status, refused.error().0.as_str()), (409, "idempotency_key_in_use"), "{}", refused.text);
    proxy.heal();
    let ran = svc.post_keyed(ORG, LIST, &body, "conflict-key").await;
    assert_eq!(ran.status, 201, "the temporary 409 was not kept: {}", ran.text);
    assert!(ran.headers.get("idempotent-replayed").is_none());
    assert_replayed(&svc.post_keyed(ORG, LIST, &body, "conflict-key").await, &ran.text, 201);
    // On the attempt, without a key (one PutItem): another transaction is writing it.
    let body = attempt_body(None, "8");
    proxy.inject(Some("PutItem"), Fault::Error { status: 400, code: "TransactionConflictException" }, None);
    let refused = svc.post(ORG, LIST, &body).await;
    assert_eq!((refused.status, refused.error().0.as_str()), (409, "concurrent_update"), "{}", refused.text);
    proxy.heal();
    assert_eq!(stored(&svc).await.0.len(), 2);
}

/// The issue's reproduction: a transaction commits but its answer is lost (the connection
/// drops after sending), then the SDK's retry of it, and every later round, is cancelled by
/// a conflict or throttled. The request that made the change must not be refused for it.
#[tokio::test]
async fn a_change_whose_answer_was_lost_is_never_refused_by_a_later_try() {
    let (proxy, svc) = proxied().await;
    let after_the_commit: [(&str, Fault); 2] = [
        ("conflict", Fault::Cancelled(&["TransactionConflict", "None"])),
        ("throttled", Fault::Cancelled(&["ThrottlingError", "None"])),
    ];
    for (what, fault) in after_the_commit {
        let created = svc.record(ORG, &attempt_body(None, "2")).await;
        let target = format!("{LIST}/{}", created["id"].as_str().unwrap());
        let settle = json!({"status": "succeeded"}).to_string();
        proxy.inject(Some("TransactWriteItems"), Fault::DropAfterSend, Some(1));
        proxy.inject(Some("TransactWriteItems"), fault.clone(), None);
        let keyed = svc.post_keyed(ORG, &target, &settle, &format!("settle-{what}")).await;
        proxy.heal();
        assert_eq!(keyed.status, 200, "keyed settle, then {what}: {}", keyed.text);
        assert!(keyed.headers.get("idempotent-replayed").is_none(), "the request that made the change");
        let shown = svc.get(ORG, &target).await;
        assert_eq!(keyed.text, shown.text, "{what}: it answers the stored attempt");
        assert_eq!(shown.json()["status_history"].as_array().map(Vec::len), Some(2));

        // Without a key: the request finds its own token in the attempt's history.
        let created = svc.record(ORG, &attempt_body(None, "3")).await;
        let target = format!("{LIST}/{}", created["id"].as_str().unwrap());
        proxy.inject(Some("TransactWriteItems"), Fault::DropAfterSend, Some(1));
        proxy.inject(Some("TransactWriteItems"), fault.clone(), None);
        let unkeyed = svc.post(ORG, &target, &json!({"status": "failed", "error_message": "rail.declined"})).await;
        proxy.heal();
        assert_eq!(unkeyed.status, 200, "unkeyed settle, then {what}: {}", unkeyed.text);
        assert_eq!(unkeyed.text, svc.get(ORG, &target).await.text);
    }
    // A create without a key or hash is one PutItem: its attempt's id is its own.
    let after_the_put: [(&str, Fault); 2] = [
        ("conflict", Fault::Error { status: 400, code: "TransactionConflictException" }),
        ("throttled", Fault::Error { status: 400, code: "ProvisionedThroughputExceededException" }),
    ];
    for (what, fault) in after_the_put {
        proxy.inject(Some("PutItem"), Fault::DropAfterSend, Some(1));
        proxy.inject(Some("PutItem"), fault, None);
        let made = svc.post(ORG, LIST, &attempt_body(None, "4")).await;
        proxy.heal();
        assert_eq!(made.status, 201, "unkeyed create, then {what}: {}", made.text);
        let shown = svc.get(ORG, &format!("{LIST}/{}", made.json()["id"].as_str().unwrap())).await;
        assert_eq!(made.text, shown.text);
    }
    assert_eq!(stored(&svc).await.0.len(), 6, "four recorded by hand, two by the faulted creates");
}

/// A transaction that reaches DynamoDB only after its request answered 503 commits at most
/// once with its retry: the key's condition lets one of them in.
#[tokio::test]
async fn a_write_still_on_its_way_after_its_503_commits_at_most_once() {
    let (proxy, svc) = proxied().await;
    let body = attempt_body(None, "8").to_string();
    // Every try of the transaction reaches the engine 8 s late: after the request answered.
    let late = Duration::from_secs(8);
    proxy.inject(Some("TransactWriteItems"), Fault::DelayForward(late), None);
    let started = Instant::now();
    let first = svc.post_keyed(ORG, LIST, &body, "late").await;
    assert_503_in_time(&first, started.elapsed(), "keyed create, transaction delayed");
    proxy.heal();
    // The retry, before the late tries land, records it.
    let retry = svc.post_keyed(ORG, LIST, &body, "late").await;
    assert_eq!(retry.status, 201, "{}", retry.text);
    // Let the delayed tries land (the last was sent before the 6 s operation timeout).
    tokio::time::sleep(late.saturating_sub(started.elapsed()) + Duration::from_secs(6)).await;
    assert!(proxy.forwarded("TransactWriteItems") >= 2, "the late transaction did reach the engine");
    assert_eq!(stored(&svc).await.0.len(), 1, "the late transaction found the key taken");
    assert_replayed(&svc.post_keyed(ORG, LIST, &body, "late").await, &retry.text, 201);
}

#[tokio::test]
async fn a_final_409_is_kept_and_replayed() {
    let svc = common::service().await;
    let created = svc.record(ORG, &attempt_body(None, "7")).await;
    let target = format!("{LIST}/{}", created["id"].as_str().unwrap());
    svc.post(ORG, &target, &json!({"status": "succeeded"})).await;
    let late = json!({"status": "released"}).to_string();
    let refused = svc.post_keyed(ORG, &target, &late, "late-release").await;
    assert_eq!((refused.status, refused.error().0.as_str()), (409, "invalid_state_transition"));
    assert_replayed(&svc.post_keyed(ORG, &target, &late, "late-release").await, &refused.text, 409);
}

/// Every transition, on both HTTP routes and the worker, with its answer lost: one change each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_whose_answer_is_lost_is_applied_once_on_every_route() {
    let (proxy, svc) = proxied().await;
    let moves = [
        json!({"status": "succeeded", "receipt": {"settled": "0x1"}}),
        json!({"status": "failed", "error_message": "rail.declined"}),
        json!({"status": "released"}),
    ];
    // (route, move): JWT and IAM for each move, then the worker for each.
    let mut ids = Vec::new();
    for _ in 0..moves.len() * 3 {
        ids.push(svc.record(ORG, &attempt_body(None, "1")).await["id"].as_str().unwrap().to_owned());
    }
    let (svc, moves) = (&svc, &moves);
    // (status, body, replayed) of one try of move `i`.
    let send = |i: usize, id: String| {
        let key = format!("move-{i}");
        let mut body = moves[i % moves.len()].clone();
        async move {
            match i / moves.len() {
                0 => {
                    let reply = svc.post_keyed(ORG, &format!("{LIST}/{id}"), &body.to_string(), &key).await;
                    (reply.status, reply.text.clone(), reply.headers.contains_key("idempotent-replayed"))
                }
                1 => {
                    body["organization_id"] = json!(ORG);
                    let headers = [
                        ("content-type", "application/json"),
                        (LOCAL_CALLER_ARN_HEADER, TRUSTED_ROLE),
                        ("idempotency-key", key.as_str()),
                    ];
                    let target = format!("{INTERNAL}/{id}");
                    let reply = svc.request_with("POST", &target, &headers, body.to_string().as_bytes()).await;
                    (reply.status, reply.text.clone(), reply.headers.contains_key("idempotent-replayed"))
                }
                _ => {
                    body["organization_id"] = json!(ORG);
                    // No idempotency_key: the invocation's request id is the key.
                    let command = json!({"action": "update", "attempt_id": id, "body": body});
                    match record_attempt::worker::handle(&svc.store, invoke(&command, &key)).await {
                        Ok(reply) => {
                            let reply: Value = serde_json::from_str(reply.get()).unwrap();
                            (reply["status"].as_u64().unwrap_or(0) as u16, reply["body"].to_string(), false)
                        }
                        // A failed invoke, for Lambda to retry: its message is the error body.
                        Err(e) if e.error_type == "storage_unavailable" => (503, e.error_message, false),
                        Err(e) => (0, format!("{e:?}"), false),
                    }
                }
            }
        }
    };
    lose_every_write_answer(&proxy, ids.len());
    let started = Instant::now();
    let first = futures_util::future::join_all(ids.iter().cloned().enumerate().map(|(i, id)| send(i, id))).await;
    let took = started.elapsed();
    for (i, (status, text, _)) in first.iter().enumerate() {
        assert_eq!(*status, 503, "move {i}: {text}");
        assert!(text.contains("storage_unavailable"), "move {i}: {text}");
    }
    assert!(took < answer_by(), "{took:?}");
    proxy.heal();
    let mut replayed = 0;
    for (i, id) in ids.iter().enumerate() {
        let (status, text, was_replayed) = send(i, id.clone()).await;
        assert_eq!(status, 200, "move {i}: {text}");
        let shown = svc.get(ORG, &format!("{LIST}/{id}")).await.json();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), shown, "move {i}: the committed attempt");
        assert_eq!(shown["status_history"].as_array().map(Vec::len), Some(2), "move {i}: one change");
        assert_eq!(shown["status"], moves[i % moves.len()]["status"]);
        if i / moves.len() < 2 {
            assert!(was_replayed, "move {i}: Idempotent-Replayed");
            replayed += 1;
        }
    }
    svc.summarize().await;
    let summary = svc.get(ORG, &format!("{LIST}/summary")).await.json();
    assert_eq!(summary["count"].as_i64(), Some(ids.len() as i64));
    assert_eq!(summary["by_status"]["pending"]["count"].as_i64(), Some(0));
    for status in ["succeeded", "failed", "released"] {
        assert_eq!(summary["by_status"][status]["count"].as_i64(), Some(3), "{status}: counted once per route");
    }
    println!(
        "exactly once: {} transitions (3 moves x JWT, IAM, worker) lost their answers, all answered 503 within {took:?}; every retry got the committed attempt ({replayed} HTTP ones with Idempotent-Replayed), each changed once",
        ids.len()
    );
}
