//! The clients: what they write, and how they retry it, as their callers would.

use super::*;
use history::{is_final, Op, Reply, Route, Write};

pub fn next_op(rng: &mut fastrand::Rng, world: &Mutex<World>, client: usize, n: usize) -> Op {
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
pub fn body(op: &Op, rng_hash: Option<usize>) -> String {
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
pub async fn run(svc: &Service, world: &Mutex<World>, rng: &mut fastrand::Rng, crash_rate: f64, mut op: Op) -> Op {
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

pub async fn one_try(svc: &Service, op: &Op, key: &str, body: &str) -> Reply {
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
