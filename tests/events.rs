//! Every API Gateway event in `events/` (the ones `sam local invoke` and `cargo lambda invoke`
//! use) goes through its handler and gets the expected status.

mod common;

use std::path::Path;

use payment_attempts::command::NewAttempt;
use payment_attempts::time::Timestamp;
use payment_attempts::{AttemptId, OrganizationId};

/// `(file, function, status)`; every file in `events/` must be listed.
const EXPECTED: &[(&str, &str, u16)] = &[
    ("list.json", "list", 200),
    ("list-by-session.json", "list", 200),
    ("list-invalid-limit.json", "list", 400),
    ("retrieve.json", "retrieve", 200),
    ("retrieve-missing.json", "retrieve", 404),
    ("record.json", "record-attempt", 201),
    ("record-invalid.json", "record-attempt", 400),
    ("record-unauthenticated.json", "record-attempt", 401),
    ("record-internal.json", "record-attempt", 201),
];

/// Events for the worker (SQS, direct invoke): `(file, what it must answer)`.
const WORKER: &[(&str, &str)] =
    &[("worker-sqs.json", r#"{"batchItemFailures":[]}"#), ("worker-invoke.json", r#"{"status":201,"#)];

/// The attempt `events/retrieve.json` asks for.
const SEEDED: &str = "payatt_01933b5a000070008000000000000001";

#[tokio::test]
async fn every_event_gets_its_status_from_its_handler() {
    let svc = common::service().await;
    let body = common::attempt_body(Some("session_01933b5a000070008000000000000001"), "0.014").to_string();
    let mut seeded = NewAttempt::from_json(body.as_bytes())
        .unwrap()
        .into_attempt(OrganizationId::parse("org_events").unwrap(), Timestamp::now());
    seeded.id = AttemptId::parse(SEEDED).unwrap();
    svc.store.create(&seeded, None).await.unwrap();

    let dir = Path::new(common::ROOT).join("events");
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    let mut listed: Vec<String> =
        EXPECTED.iter().map(|(f, _, _)| f.to_string()).chain(WORKER.iter().map(|(f, _)| f.to_string())).collect();
    listed.sort();
    assert_eq!(files, listed, "every event file has an expected status here");

    let routes = svc.api.routes().to_vec();
    for (file, function, status) in EXPECTED {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let event: serde_json::Value = serde_json::from_str(&text).unwrap();
        let route_key = event["routeKey"].as_str().unwrap();
        let route = routes
            .iter()
            .find(|r| format!("{} {}", r.method, r.path) == route_key)
            .unwrap_or_else(|| panic!("{file}: no route {route_key} in template.yaml"));
        assert_eq!(route.function, *function, "{file}");
        let request = lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let response = svc.api.invoke(function, request).await.unwrap();
        let body = match response.body() {
            lambda_http::Body::Text(t) => t.clone(),
            other => panic!("{file}: body {other:?}"),
        };
        assert_eq!(response.status().as_u16(), *status, "{file}: {body}");
        assert!(response.headers().contains_key("request-id"), "{file}");
        if *status == 200 && *function == "retrieve" {
            assert!(body.contains(SEEDED));
        }
        if *status == 200 && *function == "list" {
            assert!(body.contains(SEEDED), "{file}: {body}");
        }
    }
    for (file, expected) in WORKER {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let payload = serde_json::value::RawValue::from_string(text).unwrap();
        let event = lambda_http::LambdaEvent::new(payload, lambda_http::Context::default());
        let reply = record_attempt::worker::handle(&svc.store, event).await.unwrap();
        assert!(reply.get().starts_with(expected), "{file}: {}", reply.get());
    }
}
