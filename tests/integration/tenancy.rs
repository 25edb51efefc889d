//! Tenancy attacks: with another organization's ids, sessions, cursors, keys and hashes, every
//! route returns nothing of theirs and reveals nothing about them.

use crate::common;

use common::{attempt_body, service};
use serde_json::{json, Value};

const LIST: &str = "/v1/payments/attempts";

fn ids(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn another_organizations_ids_sessions_cursors_keys_and_hashes_reach_nothing() {
    let svc = service().await;
    let hash = format!("sha256:{}", "ab".repeat(32));
    let mut victim_ids = Vec::new();
    for i in 0..5 {
        let mut body = attempt_body(Some("session_shared"), "3");
        if i == 0 {
            body["request_hash"] = json!(hash);
        }
        victim_ids.push(svc.record("org_victim", &body).await["id"].as_str().unwrap().to_owned());
    }
    let own =
        svc.record("org_attacker", &attempt_body(Some("session_mine"), "1")).await["id"].as_str().unwrap().to_owned();

    for id in &victim_ids {
        let stolen = svc.get("org_attacker", &format!("{LIST}/{id}")).await;
        assert_eq!((stolen.status, stolen.error().0.as_str()), (404, "resource_missing"));
        let moved = svc.post("org_attacker", &format!("{LIST}/{id}"), &json!({"status": "released"})).await;
        assert_eq!(moved.status, 404);
        for cursor in ["starting_after", "ending_before"] {
            let page = svc.get("org_attacker", &format!("{LIST}?{cursor}={id}&limit=100")).await.json();
            assert!(ids(&page).iter().all(|i| *i == own), "{cursor}={id}: {page}");
        }
    }
    // Guessed ids: neighbours of a victim id in time.
    let guess = format!("{}{}", &victim_ids[0][..victim_ids[0].len() - 4], "0000");
    assert_eq!(svc.get("org_attacker", &format!("{LIST}/{guess}")).await.status, 404);

    // The victim's session name, in the list and the summary.
    svc.summarize().await;
    let page = svc.get("org_attacker", &format!("{LIST}?session_id=session_shared")).await.json();
    assert_eq!(ids(&page), Vec::<String>::new());
    let summary = svc.get("org_attacker", &format!("{LIST}/summary?session_id=session_shared")).await.json();
    assert_eq!((summary["count"].clone(), summary["amount_usd"].clone()), (json!(0), json!(0)));
    let summary = svc.get("org_attacker", &format!("{LIST}/summary")).await.json();
    assert_eq!((summary["count"].clone(), summary["amount_usd"].clone()), (json!(1), json!(1)));

    // The victim's request hash is no replay for the attacker, and reveals no attempt id.
    let mut body = attempt_body(None, "1");
    body["request_hash"] = json!(hash);
    let reply = svc.post("org_attacker", LIST, &body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert!(!victim_ids.iter().any(|id| reply.text.contains(id.as_str())));

    // The victim's idempotency key replays nothing of theirs.
    let victim_body = attempt_body(None, "5").to_string();
    let first = svc.post_keyed("org_victim", LIST, &victim_body, "shared-key").await;
    assert_eq!(first.status, 201);
    let attacker = svc.post_keyed("org_attacker", LIST, &victim_body, "shared-key").await;
    assert_eq!(attacker.status, 201);
    assert!(attacker.headers.get("idempotent-replayed").is_none());
    assert_ne!(attacker.json()["id"], first.json()["id"]);
    assert_eq!(attacker.json()["organization_id"], "org_attacker");

    // And the victim still sees exactly their own.
    let page = svc.get("org_victim", &format!("{LIST}?limit=100")).await.json();
    assert_eq!(ids(&page).len(), 6);
    assert!(page["data"].as_array().unwrap().iter().all(|r| r["organization_id"] == "org_victim"));
}

#[tokio::test]
async fn tokens_without_a_usable_organization_claim_are_401() {
    let svc = service().await;
    let token = |claims: Value| format!("Bearer {}", payment_attempts_local::token::unsigned(&claims));
    let auths = [
        token(json!({"sub": "user_1"})),
        token(json!({"org_id": ""})),
        token(json!({"org_id": "acme"})),
        token(json!({"org_id": "org_"})),
        token(json!({"org_id": "org_a b"})),
        token(json!({"org_id": "org_a#SES#session_b"})),
        token(json!({"org_id": 42})),
        token(json!({"org_id": true})),
        token(json!({"org_id": null})),
        token(json!({"org_id": ["org_a"]})),
        token(json!({"org_id": {"id": "org_a"}})),
        token(json!({"ORG_ID": "org_a"})),
        "Bearer not.a.jwt".to_owned(),
        "Basic b3JnX2E6".to_owned(),
        String::new(),
    ];
    for auth in &auths {
        for (method, target) in [
            ("GET", LIST.to_owned()),
            ("GET", format!("{LIST}/summary")),
            ("GET", format!("{LIST}/payatt_{}", "0".repeat(32))),
            ("POST", LIST.to_owned()),
        ] {
            let body = attempt_body(None, "1").to_string();
            let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
            let reply = svc.request_with(method, &target, &headers, body.as_bytes()).await;
            assert_eq!(reply.status, 401, "{method} {target} with {auth}: {}", reply.text);
        }
    }
    assert_eq!(svc.item_count().await, 0);
}
