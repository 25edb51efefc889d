//! AWS service writers: IAM-authorized routes, SQS batches and direct invokes share the HTTP
//! routes' validation and store code.

use crate::common;

use common::{attempt_body, service, Service, TRUSTED_ROLE};
use lambda_http::{Context, LambdaEvent};
use payment_attempts_local::local_api::LOCAL_CALLER_ARN_HEADER;
use serde_json::value::RawValue;
use serde_json::{json, Value};

const INTERNAL: &str = "/internal/v1/payments/attempts";
const ASSUMED: &str = "arn:aws:sts::123456789012:assumed-role/payments-writer/writer-session";

async fn internal_post(svc: &Service, target: &str, role_arn: Option<&str>, body: &Value) -> common::Reply {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(role_arn.map(|arn| (LOCAL_CALLER_ARN_HEADER, arn)));
    svc.request_with("POST", target, &headers, body.to_string().as_bytes()).await
}

fn for_org(org: &str, mut body: Value) -> Value {
    body["organization_id"] = json!(org);
    body
}

#[tokio::test]
async fn trusted_roles_write_for_the_organization_they_name() {
    let svc = service().await;
    for arn in [ASSUMED, TRUSTED_ROLE] {
        let reply = internal_post(&svc, INTERNAL, Some(arn), &for_org("org_acme", attempt_body(None, "1"))).await;
        assert_eq!(reply.status, 201, "{arn}: {}", reply.text);
        assert_eq!(reply.json()["organization_id"], "org_acme");
        let id = reply.json()["id"].as_str().unwrap().to_owned();
        let moved = internal_post(
            &svc,
            &format!("{INTERNAL}/{id}"),
            Some(arn),
            &json!({"organization_id": "org_acme", "status": "succeeded"}),
        )
        .await;
        assert_eq!(moved.status, 200, "{}", moved.text);
        // The member of that organization sees it; nobody else does.
        assert_eq!(svc.get("org_acme", &format!("/v1/payments/attempts/{id}")).await.status, 200);
        assert_eq!(svc.get("org_other", &format!("/v1/payments/attempts/{id}")).await.status, 404);
        // Moving it as another organization finds nothing.
        let elsewhere = internal_post(
            &svc,
            &format!("{INTERNAL}/{id}"),
            Some(arn),
            &json!({"organization_id": "org_other", "status": "failed", "error_message": "x"}),
        )
        .await;
        assert_eq!(elsewhere.status, 404);
    }
}

#[tokio::test]
async fn unknown_roles_are_403_and_the_organization_is_required() {
    let svc = service().await;
    let body = for_org("org_acme", attempt_body(None, "1"));
    for arn in
        ["arn:aws:sts::123456789012:assumed-role/someone-else/s", "arn:aws:iam::999999999999:role/payments-writer"]
    {
        let reply = internal_post(&svc, INTERNAL, Some(arn), &body).await;
        assert_eq!((reply.status, reply.error().0.as_str()), (403, "forbidden"), "{arn}");
    }
    let reply = internal_post(&svc, INTERNAL, Some("arn:aws:iam::123456789012:user/alice"), &body).await;
    assert_eq!(reply.status, 401, "a caller that is not a role has no writer identity");
    // Unsigned: API Gateway's IAM authorizer answers, no function runs.
    let reply = internal_post(&svc, INTERNAL, None, &body).await;
    assert_eq!((reply.status, reply.json()), (403, json!({"message": "Forbidden"})));
    let reply = internal_post(&svc, INTERNAL, Some(ASSUMED), &attempt_body(None, "1")).await;
    assert_eq!(
        (reply.status, reply.error()),
        (400, ("parameter_missing".to_owned(), Some("organization_id".to_owned())))
    );
    // A JWT caller cannot pick an organization, on the public routes.
    let reply = svc.post("org_acme", "/v1/payments/attempts", &for_org("org_other", attempt_body(None, "1"))).await;
    assert_eq!((reply.status, reply.error().1.as_deref()), (400, Some("organization_id")));
    assert_eq!(svc.item_count().await, 0);
}

fn sqs_event(messages: &[(String, String)]) -> LambdaEvent<Box<RawValue>> {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| json!({"messageId": id, "receiptHandle": "r", "body": body, "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs"}))
        .collect();
    let payload = RawValue::from_string(json!({"Records": records}).to_string()).unwrap();
    LambdaEvent::new(payload, Context::default())
}

async fn run_worker(svc: &Service, event: LambdaEvent<Box<RawValue>>) -> Value {
    let reply = record_attempt::worker::handle(&svc.store, event).await.unwrap();
    serde_json::from_str(reply.get()).unwrap()
}

#[tokio::test]
async fn an_sqs_batch_records_the_good_messages_once_and_reports_the_poison_ones() {
    let svc = service().await;
    let mut messages = Vec::new();
    for i in 0..10 {
        let body = match i {
            3 => json!({"action": "create", "body": for_org("org_acme", attempt_body(None, "-1"))}).to_string(),
            7 => "not json at all".to_owned(),
            _ => json!({"action": "create", "body": for_org("org_acme", attempt_body(Some("session_q"), &format!("0.00{i}")))}).to_string(),
        };
        messages.push((format!("msg-{i}"), body));
    }
    for delivery in 0..2 {
        let response = run_worker(&svc, sqs_event(&messages)).await;
        let failures: Vec<&str> = response["batchItemFailures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap())
            .collect();
        assert_eq!(failures, ["msg-3", "msg-7"], "delivery {delivery}");
        let page = svc.get("org_acme", "/v1/payments/attempts?limit=100").await.json();
        assert_eq!(page["data"].as_array().unwrap().len(), 8, "delivery {delivery}: 8 recorded, once");
    }
    // Amounts from a message keep their digits (the payload is never read as f64).
    let exact = json!({"action": "create", "body": for_org("org_acme", attempt_body(None, "0"))})
        .to_string()
        .replace(r#""amount_usd":0"#, r#""amount_usd":1000000.000001"#);
    let response = run_worker(&svc, sqs_event(&[("msg-exact".to_owned(), exact)])).await;
    assert_eq!(response["batchItemFailures"], json!([]));
    let page = svc.get("org_acme", "/v1/payments/attempts?limit=1").await;
    assert!(page.text.contains(r#""amount_usd":1000000.000001,"#), "{}", page.text);
}

#[tokio::test]
async fn direct_invokes_answer_like_the_http_route() {
    let svc = service().await;
    let invoke =
        |command: Value| LambdaEvent::new(RawValue::from_string(command.to_string()).unwrap(), Context::default());
    let created = run_worker(
        &svc,
        invoke(
            json!({"action": "create", "idempotency_key": "k1", "body": for_org("org_acme", attempt_body(None, "2"))}),
        ),
    )
    .await;
    assert_eq!(created["status"], 201, "{created}");
    let id = created["body"]["id"].as_str().unwrap().to_owned();
    let replayed = run_worker(
        &svc,
        invoke(
            json!({"action": "create", "idempotency_key": "k1", "body": for_org("org_acme", attempt_body(None, "2"))}),
        ),
    )
    .await;
    assert_eq!(replayed, created, "same key, same command: the same answer, nothing recorded twice");
    let moved = run_worker(&svc, invoke(json!({"action": "update", "attempt_id": id, "body": {"organization_id": "org_acme", "status": "released"}}))).await;
    assert_eq!((moved["status"].clone(), moved["body"]["status"].clone()), (json!(200), json!("released")));
    for (command, param) in [
        (json!({"action": "delete", "body": {}}), "action"),
        (json!({"action": "update", "body": {}}), "attempt_id"),
        (json!({"body": {}}), "action"),
        (json!({"action": "create"}), "body"),
        (json!({"action": "create", "body": attempt_body(None, "1")}), "organization_id"),
        (json!({"action": "create", "body": {}, "extra": 1}), "extra"),
    ] {
        let reply = run_worker(&svc, invoke(command.clone())).await;
        assert_eq!(reply["status"], 400, "{command}: {reply}");
        assert_eq!(reply["body"]["error"]["param"], param, "{command}");
    }
    let page = svc.get("org_acme", "/v1/payments/attempts").await.json();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
}

/// The abuse a caller can reach through the worker and the routes (a security review's
/// findings): bodies past 64 KiB, and caller text echoed back without bound.
#[tokio::test]
async fn oversized_commands_and_long_names_are_refused_with_a_bounded_echo() {
    let svc = service().await;
    let invoke =
        |command: Value| LambdaEvent::new(RawValue::from_string(command.to_string()).unwrap(), Context::default());
    // A worker body as large as no HTTP route takes: refused, finally, before it is read.
    let mut big = for_org("org_acme", attempt_body(None, "1"));
    big["metadata"] = json!({ "k": "v".repeat(400) });
    big["receipt"] = json!({ "pad": "x".repeat(70 * 1024) });
    let reply = run_worker(&svc, invoke(json!({"action": "create", "body": big}))).await;
    assert_eq!(
        (reply["status"].clone(), reply["body"]["error"]["code"].clone()),
        (json!(413), json!("body_too_large"))
    );
    // A field name of 60,000 characters with a right-to-left override in it: 64 printable
    // characters of it come back, through the worker and over HTTP alike.
    let name = format!("\u{202E}{}", "n".repeat(60_000));
    let mut body = for_org("org_acme", attempt_body(None, "1"));
    body[&name] = json!(1);
    let reply = run_worker(&svc, invoke(json!({"action": "create", "body": body}))).await;
    let param = reply["body"]["error"]["param"].as_str().unwrap().to_owned();
    assert_eq!(reply["status"], 400);
    assert!(param.starts_with('\u{FFFD}') && param.chars().count() == 64 + 3, "{param:?}");
    assert!(reply["body"]["error"]["message"].as_str().unwrap().chars().count() < 200);
    let mut body = attempt_body(None, "1");
    body[&name] = json!(1);
    let reply = svc.post("org_acme", "/v1/payments/attempts", &body).await;
    assert_eq!(reply.status, 400);
    assert!(reply.text.len() < 600, "{} bytes", reply.text.len());
    // Metadata values follow the rule of other text.
    let mut body = attempt_body(None, "1");
    body["metadata"] = json!({"note": "pay \u{202E}evil"});
    let reply = svc.post("org_acme", "/v1/payments/attempts", &body).await;
    assert_eq!((reply.status, reply.error().1.as_deref()), (400, Some("metadata[note]")));
    assert_eq!(svc.item_count().await, 0, "nothing refused was written");
}

#[tokio::test]
async fn a_members_key_never_meets_a_trusted_writers() {
    let svc = service().await;
    let attempts = "/v1/payments/attempts";
    // A member claims, with bodies of their own, the key the SQS worker derives from a message
    // id (the dead-letter runbook resends by it) and a key a writer derives from its data.
    let claimed = svc.post_keyed("org_acme", attempts, &attempt_body(None, "9").to_string(), "sqs:msg-claimed").await;
    assert_eq!(claimed.status, 201, "{}", claimed.text);
    let claimed_id = claimed.json()["id"].as_str().unwrap().to_owned();
    let settle_key = format!("settle-{claimed_id}");
    let settle = json!({"status": "failed", "error_message": "declined"}).to_string();
    let member_settle = svc.post_keyed("org_acme", &format!("{attempts}/{claimed_id}"), &settle, &settle_key).await;
    assert_eq!(member_settle.status, 200, "{}", member_settle.text);

    // The SQS command under that message id is recorded, once over two deliveries.
    let command = json!({"action": "create", "body": for_org("org_acme", attempt_body(Some("session_ns"), "1"))});
    for delivery in 0..2 {
        let response = run_worker(&svc, sqs_event(&[("msg-claimed".to_owned(), command.to_string())])).await;
        assert_eq!(response["batchItemFailures"], json!([]), "delivery {delivery}");
    }
    let page = svc.get("org_acme", &format!("{attempts}?session_id=session_ns")).await.json();
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "recorded once: {page}");
    let written_id = page["data"][0]["id"].as_str().unwrap().to_owned();

    // A trusted writer settles with the member's key and its own body: applied, then replayed.
    let body = json!({"organization_id": "org_acme", "status": "succeeded"});
    let target = format!("{INTERNAL}/{written_id}");
    for (round, replayed) in [(0, None), (1, Some("true"))] {
        let headers = [
            ("content-type", "application/json"),
            (LOCAL_CALLER_ARN_HEADER, ASSUMED),
            ("idempotency-key", settle_key.as_str()),
        ];
        let reply = svc.request_with("POST", &target, &headers, body.to_string().as_bytes()).await;
        assert_eq!(reply.status, 200, "round {round}: {}", reply.text);
        assert_eq!(reply.json()["status"], "succeeded");
        let header = reply.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok());
        assert_eq!(header, replayed, "round {round}");
    }

    // The member's keys still replay the member's own answers, and only theirs.
    let again = svc.post_keyed("org_acme", attempts, &attempt_body(None, "9").to_string(), "sqs:msg-claimed").await;
    assert_eq!((again.status, again.json()["id"].as_str()), (201, Some(claimed_id.as_str())));
    let again = svc.post_keyed("org_acme", &format!("{attempts}/{claimed_id}"), &settle, &settle_key).await;
    assert_eq!((again.status, again.json()["status"].as_str()), (200, Some("failed")));
    let other_body =
        svc.post_keyed("org_acme", attempts, &attempt_body(None, "8").to_string(), "sqs:msg-claimed").await;
    assert_eq!((other_body.status, other_body.error().1.as_deref()), (400, Some("Idempotency-Key")));
}
