//! Storage outages: DynamoDB Local stopped under the service, then started again.

use crate::common;

use common::{attempt_body, service_on};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use payment_attempts_local::dynamodb_local::DynamoDbLocal;

const LIST: &str = "/v1/payments/attempts";

#[tokio::test]
async fn an_outage_is_a_503_with_retry_after_and_the_service_recovers() {
    let mut engine = DynamoDbLocal::start().expect("DynamoDB Local starts");
    let port = engine.port();
    let svc = service_on(&engine.endpoint()).await;
    let kept = svc.record("org_acme", &attempt_body(None, "1")).await;

    engine.stop();
    let id = kept["id"].as_str().unwrap();
    let body = attempt_body(None, "2");
    let during = [
        svc.post("org_acme", LIST, &body).await,
        svc.get("org_acme", LIST).await,
        svc.get("org_acme", &format!("{LIST}/{id}")).await,
    ];
    for reply in &during {
        assert_eq!(reply.status, 503, "{}", reply.text);
        assert_eq!(reply.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
        assert_eq!(reply.error().0, "storage_unavailable");
        assert_eq!(reply.json()["error"]["type"], "api_error");
        assert!(
            !reply.text.contains("Dispatch") && !reply.text.contains("127.0.0.1"),
            "no internals leak: {}",
            reply.text
        );
    }

    // The same service (same client, same handlers) serves again once storage is back. The
    // in-memory engine comes back empty, so the table is created again.
    let _engine = DynamoDbLocal::start_on(port).expect("DynamoDB Local restarts on its port");
    common::template().create_table(&svc.client, &svc.table).await.unwrap();
    let after = svc.post("org_acme", LIST, &body).await;
    assert_eq!(after.status, 201, "{}", after.text);
}

/// The engine stopped in the middle of a write load and started again on the same data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_write_load_an_outage_loses_no_acknowledged_attempt() {
    let data = std::env::temp_dir().join(format!("ddb-faults-{}", std::process::id()));
    std::fs::create_dir_all(&data).unwrap();
    let data_dir = data.clone();
    let port = payment_attempts_local::dynamodb_local::free_port().unwrap();
    let engine = DynamoDbLocal::start_persistent(port, &data).expect("DynamoDB Local starts");
    let svc = Arc::new(service_on(&engine.endpoint()).await);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let clients = 8;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (svc, acked, refused, running) = (svc.clone(), acked.clone(), refused.clone(), running.clone());
            tokio::spawn(async move {
                let mut sent = 0;
                while running.load(Ordering::SeqCst) {
                    // One logical write, retried with its key until it is acknowledged.
                    let body =
                        attempt_body(Some(&format!("session_c{c}")), &format!("0.{:03}", sent % 1000)).to_string();
                    let key = format!("client-{c}-write-{sent}");
                    let started = std::time::Instant::now();
                    loop {
                        let reply = svc.post_keyed("org_acme", LIST, &body, &key).await;
                        match reply.status {
                            201 => {
                                acked.lock().unwrap().push(reply.json()["id"].as_str().unwrap().to_owned());
                                break;
                            }
                            503 => {
                                assert_eq!(reply.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
                                assert_eq!(reply.error().0, "storage_unavailable");
                                refused.fetch_add(1, Ordering::SeqCst);
                            }
                            // A try of this write still running in DynamoDB holds the key.
                            409 => assert_eq!(reply.error().0, "idempotency_key_in_use"),
                            other => panic!("client {c} write {sent}: {other} {}", reply.text),
                        }
                        assert!(
                            started.elapsed() < Duration::from_secs(90),
                            "client {c} write {sent} never got through"
                        );
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let acked_count = || acked.lock().unwrap().len();
    let wait_for = |target: usize| async move {
        let started = std::time::Instant::now();
        while acked_count() < target {
            assert!(started.elapsed() < Duration::from_secs(60), "stuck below {target} acknowledged writes");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    // Let the load get going, pull the engine out from under it, bring it back, go on.
    wait_for(100).await;
    let mut engine = tokio::task::spawn_blocking(move || {
        let mut engine = engine;
        engine.stop();
        engine
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_restart = acked_count();
    engine = tokio::task::spawn_blocking(move || {
        drop(engine);
        DynamoDbLocal::start_persistent(port, &data_dir).expect("DynamoDB Local restarts on its data")
    })
    .await
    .unwrap();
    wait_for(before_restart + 100).await;
    running.store(false, Ordering::SeqCst);
    let mut sent = 0;
    for task in tasks {
        sent += task.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let refused = refused.load(Ordering::SeqCst);
    assert_eq!(acked.len(), sent, "every write was acknowledged in the end");
    assert!(refused > 0, "the outage refused some writes");
    assert!(acked.len() >= before_restart + 100, "the same service served again after the outage");
    // Every acknowledged attempt is there, once.
    let mut found = std::collections::HashSet::new();
    let mut cursor = String::new();
    loop {
        let page = svc.get("org_acme", &format!("{LIST}?limit=100{cursor}")).await.json();
        let rows = page["data"].as_array().unwrap();
        for row in rows {
            assert!(found.insert(row["id"].as_str().unwrap().to_owned()), "listed twice: {row}");
        }
        if page["has_more"] == serde_json::json!(false) {
            break;
        }
        cursor = format!("&starting_after={}", rows.last().unwrap()["id"].as_str().unwrap());
    }
    let missing: Vec<&String> = acked.iter().filter(|id| !found.contains(*id)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert_eq!(found.len(), sent, "retried with their keys, no write was recorded twice");
    println!(
        "faults: {} keyed writes under load, {} acknowledged ({} after the restart) and all present, {} tries refused with 503 + Retry-After, {} stored in all (none twice)",
        sent,
        acked.len(),
        acked.len() - before_restart,
        refused,
        found.len()
    );
    drop(engine);
    let _ = std::fs::remove_dir_all(&data);
}

/// The init warm-up cannot hold a cold start: a DynamoDB that accepts connections and never
/// answers would take the client's full retry budget (3 attempts of 2 s).
#[tokio::test]
async fn the_warm_up_gives_up_on_a_silent_dynamodb_within_its_bound() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let store = payment_attempts::AttemptStore::new(payment_attempts_local::dynamodb_local::client(&endpoint), "t");
    let started = std::time::Instant::now();
    store.warm_up().await;
    let took = started.elapsed();
    assert!(took >= payment_attempts::store::WARM_UP_BOUND, "it waited for an answer: {took:?}");
    assert!(took < payment_attempts::store::WARM_UP_BOUND + Duration::from_millis(500), "bounded: {took:?}");
    held.abort();
}
