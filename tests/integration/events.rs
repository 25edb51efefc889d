//! Every event in `events/` (the ones `sam local invoke` and `cargo lambda invoke` use) goes
//! through its handler and gets the expected answer.

use crate::common;

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

/// The stream batch for the summarizer and the publisher: an attempt created, then settled
/// (`succeeded`).
const STREAM: &str = "stream.json";

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
    listed.push(STREAM.to_owned());
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
    // The stream batch, twice (a redelivery): counted once, as one succeeded attempt.
    let text = std::fs::read_to_string(dir.join(STREAM)).unwrap();
    for _ in 0..2 {
        let event =
            lambda_http::LambdaEvent::new(serde_json::from_str(&text).unwrap(), lambda_http::Context::default());
        let reply = summarizer::handle(&svc.store, event).await.unwrap();
        assert!(reply.batch_item_failures.is_empty(), "{STREAM}: {reply:?}");
    }
    let org = OrganizationId::parse("org_events").unwrap();
    let scope = payment_attempts::summary::SummaryScope::Organization { hours: None };
    let summary = svc.store.summary(&org, &scope).await.unwrap();
    assert_eq!(
        serde_json::to_value(&summary).unwrap()["by_status"]["succeeded"],
        serde_json::json!({"count": 1, "amount_usd": 0.014})
    );
    assert_eq!(summary.total().count, 1, "{STREAM}: {summary:?}");
}

/// One `list` process with `AWS_LAMBDA_MAX_CONCURRENCY=8`, as Lambda Managed Instances run it,
/// under a loopback Runtime API: invokes overlap, and every log line names the invocation it
/// belongs to (request id and X-Ray trace id from the invocation context, and the API request
/// id), while each answer carries its own request id. Nothing per request is shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_invokes_keep_their_own_ids_in_every_log_line_and_answer() {
    use payment_attempts_local::local_api::GatewayRequest;
    use payment_attempts_local::runtime_api::RuntimeApi;
    use serde_json::{json, Value};

    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().and_then(Path::parent).unwrap().join("list");
    assert!(binary.exists(), "{}: make test builds the functions before testing", binary.display());
    let svc = common::service().await;
    let org = OrganizationId::parse("org_events").unwrap();
    for i in 0..20 {
        let body = common::attempt_body(None, &format!("0.{i:03}")).to_string();
        let attempt = NewAttempt::from_json(body.as_bytes()).unwrap().into_attempt(org.clone(), Timestamp::now());
        svc.store.create(&attempt, None).await.unwrap();
    }
    let api = RuntimeApi::start().await.unwrap();
    let mut child = tokio::process::Command::new(&binary)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
        .env("AWS_LAMBDA_MAX_CONCURRENCY", "8")
        .env("AWS_LAMBDA_FUNCTION_NAME", "list")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_ENDPOINT_URL_DYNAMODB", common::engine_endpoint())
        .env("TABLE_NAME", &svc.table)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), api.wait_first_next()).await.unwrap();

    let route = svc.api.routes().iter().find(|r| r.method == "GET" && r.path == "/v1/payments/attempts").unwrap();
    let invokes = 64;
    let answers = futures_util::future::join_all((0..invokes).map(|i| {
        let request = GatewayRequest::from_loopback(
            "GET",
            &format!("/v1/payments/attempts?limit={}", 1 + i % 20),
            vec![("authorization".to_owned(), common::bearer("org_events"))],
            Vec::new(),
        );
        let mut event = request.to_event(route, &[]);
        event["requestContext"]["requestId"] = json!(format!("gw-{i}"));
        let api = &api;
        async move { (i, api.invoke(&format!("inv-{i}"), event.to_string().into()).await) }
    }))
    .await;
    for (i, answer) in &answers {
        let answer: Value = serde_json::from_slice(answer.as_ref().unwrap()).unwrap();
        assert_eq!(answer["statusCode"], 200, "{answer}");
        assert_eq!(answer["headers"]["request-id"], format!("gw-{i}"), "each answer is its own");
        let page: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(page["data"].as_array().map(Vec::len), Some(1 + i % 20));
    }
    let overlap = api.most_in_flight();
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    let (mut checked, mut invocations, mut metrics) = (0, std::collections::HashSet::new(), 0);
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(log) = serde_json::from_str::<Value>(line) else { continue };
        // The list's metric, as an Embedded Metric Format line, once per invoke.
        if log["_aws"]["CloudWatchMetrics"][0]["Namespace"] == payment_attempts::metrics::NAMESPACE {
            assert!(log["ListReadsPerPage"].as_u64().is_some_and(|reads| reads >= 1), "{line}");
            metrics += 1;
            continue;
        }
        let Some(spans) = log["spans"].as_array() else { continue };
        let span = |name: &str| spans.iter().find(|s| s["name"] == name).cloned().unwrap_or(Value::Null);
        let (runtime, request) = (span("Lambda runtime invoke"), span("request"));
        if request.is_null() {
            continue;
        }
        let invocation = runtime["requestId"].as_str().unwrap_or_else(|| panic!("no invocation in {line}"));
        let n = invocation.strip_prefix("inv-").unwrap();
        assert_eq!(request["request_id"], format!("gw-{n}"), "{line}");
        assert_eq!(runtime["xrayTraceId"], RuntimeApi::trace_id(invocation), "{line}");
        invocations.insert(n.to_owned());
        checked += 1;
    }
    assert_eq!(invocations.len(), invokes, "every invocation logged");
    assert_eq!(metrics, invokes, "one ListPage metric line per invoke");
    assert!(overlap >= 2, "the invokes overlapped (at most {overlap} at once)");
    println!("concurrency: {invokes} invokes, up to {overlap} at once in one process; {checked} log lines, each with its own invocation's request and trace ids");
}
