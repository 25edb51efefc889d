//! Record-attempt for payment authorities: transitions, races, idempotent retries and the
//! replay guard, against DynamoDB Local.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use common::{attempt_body, service, Service};
use serde_json::{json, Value};

const ORG: &str = "org_acme";
const LIST: &str = "/v1/payments/attempts";
const STATUSES: [&str; 6] = ["active", "disabled", "pending", "succeeded", "failed", "released"];

fn create_body(status: &str, hash: Option<&str>) -> Value {
    let mut body = attempt_body(Some("session_s1"), "0.5");
    body["status"] = json!(status);
    if status == "failed" {
        body["error_message"] = json!("rail.declined");
    }
    if let Some(hash) = hash {
        body["request_hash"] = json!(hash);
    }
    body
}

fn update_body(status: &str) -> Value {
    let mut body = json!({"status": status, "status_details": {"reason": "settled", "source": "rail", "code": "r1"}});
    if status == "failed" {
        body["error_message"] = json!("rail.insufficient_funds: settled balance below minimum");
    }
    body
}

fn hash(n: u32) -> String {
    format!("sha256:{:064x}", n)
}

async fn history_len(svc: &Service, org: &str, id: &str) -> usize {
    svc.get(org, &format!("{LIST}/{id}")).await.json()["status_history"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn every_legal_and_illegal_transition() {
    let svc = service().await;
    for from in ["pending", "succeeded", "failed"] {
        for to in STATUSES {
            let created = svc.record(ORG, &create_body(from, None)).await;
            let id = created["id"].as_str().unwrap();
            let reply = svc.post(ORG, &format!("{LIST}/{id}"), &update_body(to)).await;
            let legal = from == "pending" && ["succeeded", "failed", "released"].contains(&to);
            if legal {
                assert_eq!(reply.status, 200, "{from} -> {to}: {}", reply.text);
                let moved = reply.json();
                assert_eq!(moved["status"], to);
                assert_eq!(moved["created_at"], created["created_at"]);
                let history = moved["status_history"].as_array().unwrap();
                assert_eq!(history.len(), 2);
                assert_eq!(
                    (history[1]["previous_status"].clone(), history[1]["status"].clone()),
                    (json!(from), json!(to))
                );
                assert_eq!(moved["status_details"]["reason"], "settled");
                assert_eq!(moved["status_details"]["changed_at"], history[1]["changed_at"]);
                assert_eq!(svc.get(ORG, &format!("{LIST}/{id}")).await.json(), moved, "retrieve shows the move");
            } else if to == "active" || to == "disabled" {
                assert_eq!((reply.status, reply.error().1.as_deref()), (400, Some("status")), "{from} -> {to}");
            } else {
                assert_eq!(reply.status, 409, "{from} -> {to}: {}", reply.text);
                assert_eq!(reply.error().0, "invalid_state_transition");
                let message = reply.json()["error"]["message"].as_str().unwrap().to_owned();
                assert!(message.contains(&format!("`{from}`")) && message.contains(&format!("`{to}`")), "{message}");
                assert_eq!(
                    svc.get(ORG, &format!("{LIST}/{id}")).await.json(),
                    created,
                    "a refused move changes nothing"
                );
            }
        }
    }
    // Another organization's attempt cannot be moved: it does not exist for them.
    let created = svc.record(ORG, &create_body("pending", None)).await;
    let id = created["id"].as_str().unwrap();
    let reply = svc.post("org_other", &format!("{LIST}/{id}"), &update_body("succeeded")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(history_len(&svc, ORG, id).await, 1);
    let reply = svc.post(ORG, &format!("{LIST}/{id}"), &json!({"status": "failed"})).await;
    assert_eq!((reply.status, reply.error().1.as_deref()), (400, Some("error_message")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_twenty_racing_updates_exactly_one_wins() {
    let svc = Arc::new(service().await);
    let rounds = 50;
    let racers = 20;
    let mut losers_by_code: HashMap<String, usize> = HashMap::new();
    for round in 0..rounds {
        let created = svc.record(ORG, &create_body("pending", None)).await;
        let id = created["id"].as_str().unwrap().to_owned();
        let tasks: Vec<_> = (0..racers)
            .map(|i| {
                let (svc, id) = (svc.clone(), id.clone());
                let to = ["succeeded", "failed", "released"][i % 3];
                tokio::spawn(async move { (to, svc.post(ORG, &format!("{LIST}/{id}"), &update_body(to)).await) })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (to, reply) = task.await.unwrap();
            match reply.status {
                200 => winners.push(to),
                409 => *losers_by_code.entry(reply.error().0).or_default() += 1,
                other => panic!("round {round}: unexpected {other}: {}", reply.text),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let stored = svc.get(ORG, &format!("{LIST}/{id}")).await.json();
        assert_eq!(stored["status"], winners[0], "round {round}: the winner's status is kept");
        assert_eq!(stored["status_history"].as_array().unwrap().len(), 2, "round {round}: one change recorded");
    }
    let losers: usize = losers_by_code.values().sum();
    assert_eq!(losers, rounds * (racers - 1));
    println!(
        "races: {rounds} rounds x {racers} updates: {rounds} winners, {losers} refused with 409 {losers_by_code:?}"
    );
}

#[tokio::test]
async fn idempotent_retries_replay_the_first_response() {
    let svc = service().await;
    let body = create_body("pending", Some(&hash(1))).to_string();
    let first = svc.post_keyed(ORG, LIST, &body, "key-1").await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let retry = svc.post_keyed(ORG, LIST, &body, "key-1").await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.text, first.text, "byte-identical replay");
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let page = svc.get(ORG, LIST).await.json();
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "the retry recorded nothing");

    let other_body = create_body("pending", Some(&hash(2))).to_string();
    let mismatch = svc.post_keyed(ORG, LIST, &other_body, "key-1").await;
    assert_eq!(mismatch.status, 400, "{}", mismatch.text);
    assert_eq!(mismatch.json()["error"]["type"], "idempotency_error");
    // Keys belong to an organization: another one may use the same key freely.
    assert_eq!(svc.post_keyed("org_other", LIST, &other_body, "key-1").await.status, 201);

    // Transitions too: the retry replays, the history does not grow.
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let update = update_body("succeeded").to_string();
    let moved = svc.post_keyed(ORG, &format!("{LIST}/{id}"), &update, "key-2").await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    let again = svc.post_keyed(ORG, &format!("{LIST}/{id}"), &update, "key-2").await;
    assert_eq!((again.status, again.text.as_str()), (200, moved.text.as_str()));
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(history_len(&svc, ORG, &id).await, 2);
    // The same key on another request is refused, even on another route.
    let reused = svc.post_keyed(ORG, LIST, &body, "key-2").await;
    assert_eq!((reused.status, reused.json()["error"]["type"].clone()), (400, json!("idempotency_error")));
    let bad_key = svc.post_keyed(ORG, LIST, &body, "a key with spaces").await;
    assert_eq!((bad_key.status, bad_key.error().1.as_deref()), (400, Some("Idempotency-Key")));
}

#[tokio::test]
async fn keys_expire_after_24_hours_through_the_ttl_attribute() {
    let svc = service().await;
    let body = create_body("pending", None).to_string();
    assert_eq!(svc.post_keyed(ORG, LIST, &body, "key-ttl").await.status, 201);
    let key = HashMap::from([
        ("pk".to_owned(), AttributeValue::S(format!("ORG#{ORG}#IDEM#key-ttl"))),
        ("sk".to_owned(), AttributeValue::S("IDEM".to_owned())),
    ]);
    let ttl = common::template().ttl_attribute().unwrap().to_owned();
    let item =
        svc.client.get_item().table_name(&svc.table).set_key(Some(key.clone())).send().await.unwrap().item.unwrap();
    let expires_at: i64 = item[&ttl].as_n().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((expires_at - now - 24 * 3600).abs() < 60, "expires in 24 h: {expires_at} vs now {now}");

    // Past its expiry (before DynamoDB's TTL sweep deletes it) the key is free again.
    svc.client
        .update_item()
        .table_name(&svc.table)
        .set_key(Some(key))
        .update_expression("SET #ttl = :past")
        .expression_attribute_names("#ttl", &ttl)
        .expression_attribute_values(":past", AttributeValue::N((now - 1).to_string()))
        .send()
        .await
        .unwrap();
    let other = create_body("succeeded", None).to_string();
    let reply = svc.post_keyed(ORG, LIST, &other, "key-ttl").await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert!(reply.headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn a_held_request_hash_refuses_replays_until_released() {
    let svc = service().await;
    let h = hash(7);
    let first = svc.record(ORG, &create_body("pending", Some(&h))).await;
    let first_id = first["id"].as_str().unwrap();
    for status in ["pending", "succeeded", "failed"] {
        let replay = svc.post(ORG, LIST, &create_body(status, Some(&h))).await;
        assert_eq!((replay.status, replay.error().0.as_str()), (409, "duplicate_request"), "{status}");
        assert_eq!(replay.json()["error"]["payment_attempt"], first_id);
        assert!(replay.json()["error"]["message"].as_str().unwrap().contains(first_id));
    }
    // Same hash, other organization: not a replay of theirs.
    svc.record("org_other", &create_body("pending", Some(&h))).await;

    // Once the holder failed, the same request may be attempted again.
    let failed = svc.post(ORG, &format!("{LIST}/{first_id}"), &update_body("failed")).await;
    assert_eq!(failed.status, 200);
    let second = svc.record(ORG, &create_body("pending", Some(&h))).await;
    let second_id = second["id"].as_str().unwrap();
    // A succeeded holder keeps the hash for good.
    assert_eq!(svc.post(ORG, &format!("{LIST}/{second_id}"), &update_body("succeeded")).await.status, 200);
    let replay = svc.post(ORG, LIST, &create_body("pending", Some(&h))).await;
    assert_eq!((replay.status, replay.json()["error"]["payment_attempt"].clone()), (409, json!(second_id)));

    // Released also lets go; an attempt created failed never holds the hash.
    let h2 = hash(8);
    let third = svc.record(ORG, &create_body("pending", Some(&h2))).await;
    let third_id = third["id"].as_str().unwrap();
    assert_eq!(svc.post(ORG, &format!("{LIST}/{third_id}"), &update_body("released")).await.status, 200);
    svc.record(ORG, &create_body("failed", Some(&h2))).await;
    svc.record(ORG, &create_body("succeeded", Some(&h2))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_racing_creates_with_one_hash_exactly_one_is_recorded() {
    let svc = Arc::new(service().await);
    for round in 0..20 {
        let h = hash(1000 + round);
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let (svc, body) = (svc.clone(), create_body("pending", Some(&h)));
                tokio::spawn(async move { svc.post(ORG, LIST, &body).await })
            })
            .collect();
        let mut statuses = Vec::new();
        for task in tasks {
            let reply = task.await.unwrap();
            if reply.status == 409 {
                assert_eq!(reply.error().0, "duplicate_request");
            }
            statuses.push(reply.status);
        }
        statuses.sort();
        assert_eq!(statuses, vec![201, 409], "round {round}");
    }
    let page = svc.get(ORG, &format!("{LIST}?limit=100")).await.json();
    assert_eq!(page["data"].as_array().unwrap().len(), 20);
}

/// 50 rounds of 20 concurrent identical keyed creates: never a 5xx, one attempt per key; a
/// duplicate replays, or hears 409 while the first one's transaction holds the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_key_at_once_records_once() {
    let svc = Arc::new(service().await);
    let body = create_body("pending", None).to_string();
    let (rounds, clients) = (50, 20);
    let (mut replayed, mut in_use) = (0, 0);
    for round in 0..rounds {
        let key = format!("key-race-{round}");
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (svc, body, key) = (svc.clone(), body.clone(), key.clone());
                tokio::spawn(async move { svc.post_keyed(ORG, LIST, &body, &key).await })
            })
            .collect();
        let mut first = Vec::new();
        for task in tasks {
            let reply = task.await.unwrap();
            match (reply.status, reply.headers.contains_key("idempotent-replayed")) {
                (201, false) => first.push(reply.text),
                (201, true) => replayed += 1,
                (409, _) => {
                    assert_eq!(reply.error().0, "idempotency_key_in_use");
                    in_use += 1
                }
                other => panic!("round {round}: {other:?}: {}", reply.text),
            }
        }
        assert_eq!(first.len(), 1, "round {round}: one request ran");
        let again = svc.post_keyed(ORG, LIST, &body, &key).await;
        assert_eq!(again.text, first[0], "round {round}");
    }
    let page = svc.get(ORG, &format!("{LIST}?limit=100")).await.json();
    assert_eq!(page["data"].as_array().unwrap().len(), rounds, "one attempt per key");
    println!(
        "same key x{clients} at once, {rounds} rounds: {rounds} ran, {replayed} replayed, {in_use} told it is in use, no 5xx, {rounds} attempts stored"
    );
}

#[tokio::test]
async fn a_refusal_after_the_key_was_taken_is_kept_under_it() {
    let svc = service().await;
    let missing = format!("{LIST}/payatt_{}", "0".repeat(32));
    let update = update_body("succeeded").to_string();
    let first = svc.post_keyed(ORG, &missing, &update, "key-404").await;
    assert_eq!(first.status, 404);
    let again = svc.post_keyed(ORG, &missing, &update, "key-404").await;
    assert_eq!((again.status, again.text.as_str()), (404, first.text.as_str()));
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other = svc.post_keyed(ORG, &missing, &update_body("released").to_string(), "key-404").await;
    assert_eq!((other.status, other.json()["error"]["type"].clone()), (400, json!("idempotency_error")));
    // A body refused before it ran (invalid) does not take the key.
    let invalid = svc.post_keyed(ORG, LIST, r#"{"capability": 1}"#, "key-valid-later").await;
    assert_eq!(invalid.status, 400);
    let valid = svc.post_keyed(ORG, LIST, &create_body("pending", None).to_string(), "key-valid-later").await;
    assert_eq!(valid.status, 201, "{}", valid.text);
}
