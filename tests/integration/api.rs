//! Record, retrieve and list through the handlers, against DynamoDB Local.

use crate::common;

use common::{attempt_body, bearer, service};
use serde_json::{json, Value};

const ORG: &str = "org_acme";
const LIST: &str = "/v1/payments/attempts";

#[tokio::test]
async fn record_then_retrieve_then_list() {
    let svc = service().await;
    let body = json!({
        "session_id": "session_s1", "payment_account_id": "payacct_a1",
        "capability": "paid_search", "operation": "search.query", "rail": "mpp_tempo",
        "amount_usd": 0.014, "currency": "USD", "target_url": "https://api.example.com/v1/search",
        "request_hash": format!("sha256:{}", "9f".repeat(32)),
        "receipt": {"tx": "0x5e1f", "block": 123}, "metadata": {"order": "42"}
    });
    let reply = svc.post(ORG, LIST, &body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert!(reply.headers.contains_key("request-id"));
    let created = reply.json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("payatt_") && id.len() == 39);
    assert_eq!(created["object"], "payment_attempt");
    assert_eq!(created["organization_id"], ORG);
    assert_eq!(created["currency"], "USD");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["created_at"], created["updated_at"]);
    assert!(reply.text.contains(r#""amount_usd":0.014,"#), "{}", reply.text);

    let fetched = svc.get(ORG, &format!("{LIST}/{id}")).await;
    assert_eq!(fetched.status, 200, "{}", fetched.text);
    assert_eq!(fetched.json(), created, "retrieve shows exactly what record returned");
    assert_eq!(fetched.json()["status_history"].as_array().map(Vec::len), Some(1));

    let listed = svc.get(ORG, LIST).await;
    assert_eq!(listed.status, 200);
    let page = listed.json();
    assert_eq!(
        (page["object"].clone(), page["url"].clone(), page["has_more"].clone()),
        (json!("list"), json!(LIST), json!(false))
    );
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let row = &page["data"][0];
    assert_eq!(row["id"], id.as_str());
    assert!(row.get("status_history").is_none(), "list rows leave the history out");
    let mut without_history = created.clone();
    without_history.as_object_mut().unwrap().remove("status_history");
    assert_eq!(row, &without_history);
}

#[tokio::test]
async fn amounts_are_exact_end_to_end() {
    let svc = service().await;
    for amount in ["1000000.000001", "0.1", "999999999999.999999", "0"] {
        let text =
            attempt_body(None, "0").to_string().replace(r#""amount_usd":0"#, &format!(r#""amount_usd":{amount}"#));
        let reply =
            svc.request("POST", LIST, Some(&bearer(ORG)), Some(text.as_bytes()), Some("application/json")).await;
        assert_eq!(reply.status, 201, "{amount}: {}", reply.text);
        let id = reply.json()["id"].as_str().unwrap().to_owned();
        let fetched = svc.get(ORG, &format!("{LIST}/{id}")).await;
        assert!(fetched.text.contains(&format!(r#""amount_usd":{amount},"#)), "{amount}: {}", fetched.text);
    }
}

#[tokio::test]
async fn invalid_writes_name_the_param_and_write_nothing() {
    let svc = service().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"operation": "o", "amount_usd": 1, "target_url": "https://x.example/"}), "capability"),
        (attempt_body(None, "-0.01"), "amount_usd"),
        (attempt_body(None, "0.0000001"), "amount_usd"),
        (attempt_body(None, "\"0.01\""), "amount_usd"),
        (json!({"capability": "c", "operation": "o", "amount_usd": 1, "target_url": "nope"}), "target_url"),
        (
            json!({"capability": "c", "operation": "o", "amount_usd": 1, "target_url": "https://x.example/", "status": "active"}),
            "status",
        ),
        (
            json!({"capability": "c", "operation": "o", "amount_usd": 1, "target_url": "https://x.example/", "status": "disabled"}),
            "status",
        ),
        (
            json!({"capability": "c", "operation": "o", "amount_usd": 1, "target_url": "https://x.example/", "colour": "red"}),
            "colour",
        ),
        (
            json!({"capability": "c", "operation": "o", "amount_usd": 1, "target_url": "https://x.example/", "organization_id": "org_other"}),
            "organization_id",
        ),
    ];
    for (body, param) in cases {
        let reply = svc.post(ORG, LIST, &body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert_eq!(reply.error().1.as_deref(), Some(param), "{body}");
        assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    }
    let not_json = svc.request("POST", LIST, Some(&bearer(ORG)), Some(b"{not json"), Some("application/json")).await;
    assert_eq!((not_json.status, not_json.error().0.as_str()), (400, "body_invalid"));
    let bad_utf8 = svc
        .request("POST", LIST, Some(&bearer(ORG)), Some(b"{\"capability\": \"\xff\"}"), Some("application/json"))
        .await;
    assert_eq!(bad_utf8.status, 400, "{}", bad_utf8.text);
    let form = svc
        .request("POST", LIST, Some(&bearer(ORG)), Some(b"capability=x"), Some("application/x-www-form-urlencoded"))
        .await;
    assert_eq!(form.status, 415);
    let huge = vec![b' '; 65 * 1024];
    let too_big = svc.request("POST", LIST, Some(&bearer(ORG)), Some(&huge), Some("application/json")).await;
    assert_eq!((too_big.status, too_big.error().0.as_str()), (413, "body_too_large"));
    assert_eq!(svc.item_count().await, 0, "a refused request writes nothing");
}

#[tokio::test]
async fn list_and_retrieve_parameters_are_checked() {
    let svc = service().await;
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=5&limit=6", "limit"),
        ("session_id=sess_1", "session_id"),
        ("starting_after=payatt_123", "starting_after"),
        ("ending_before=nope", "ending_before"),
        ("starting_after=payatt_01933b5a000070008000000000000001&ending_before=payatt_01933b5a000070008000000000000002", "ending_before"),
        ("organization_id=org_other", "organization_id"),
        ("cursor=abc", "cursor"),
    ] {
        let reply = svc.get(ORG, &format!("{LIST}?{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
        assert_eq!(reply.error().1.as_deref(), Some(param), "{query}");
    }
    let reply = svc.get(ORG, &format!("{LIST}/payatt_nothex")).await;
    assert_eq!((reply.status, reply.error().1.as_deref()), (400, Some("id")));
    let reply = svc.get(ORG, &format!("{LIST}/payatt_01933b5a000070008000000000000001")).await;
    assert_eq!((reply.status, reply.error().0.as_str()), (404, "resource_missing"));
    let reply = svc.get(ORG, "/v1/payments/nothing").await;
    assert_eq!(reply.status, 404);
    let reply = svc.request("DELETE", LIST, Some(&bearer(ORG)), None, None).await;
    assert_eq!(reply.status, 404, "API Gateway has no such route");
}

#[tokio::test]
async fn no_identity_no_entry() {
    let svc = service().await;
    let token = |claims: serde_json::Value| format!("Bearer {}", payment_attempts_local::token::unsigned(&claims));
    // No readable bearer token: API Gateway's JWT authorizer answers, no function runs.
    let unreadable = [None, Some("Bearer"), Some("Basic dXNlcjpwdw=="), Some("Bearer not-a-jwt")];
    // A token the authorizer accepts whose organization claim is unusable: the handler's 401.
    let unusable = [
        token(json!({"sub": "user_1"})),
        token(json!({"org_id": ""})),
        token(json!({"org_id": "org_a#SES#b"})),
        token(json!({"org_id": 42})),
        token(json!({"org_id": ["org_a"]})),
    ];
    let auths = unreadable.iter().map(|a| (*a, true)).chain(unusable.iter().map(|a| (Some(a.as_str()), false)));
    let body = attempt_body(None, "1").to_string();
    for (auth, by_gateway) in auths {
        for (method, target, body) in [
            ("GET", LIST.to_owned(), None),
            ("GET", format!("{LIST}/summary"), None),
            ("GET", format!("{LIST}/payatt_01933b5a000070008000000000000001"), None),
            ("POST", LIST.to_owned(), Some(body.as_bytes())),
            ("POST", format!("{LIST}/payatt_01933b5a000070008000000000000001"), Some(body.as_bytes())),
        ] {
            let reply = svc.request(method, &target, auth, body, Some("application/json")).await;
            assert_eq!(reply.status, 401, "{method} {target} with {auth:?}: {}", reply.text);
            if by_gateway {
                assert_eq!(reply.json(), json!({"message": "Unauthorized"}), "{method} {target} with {auth:?}");
                assert!(!reply.headers.contains_key("request-id"), "no function ran");
            } else {
                assert_eq!(reply.error().0, "unauthenticated");
                assert!(reply.headers.contains_key("request-id"));
            }
        }
    }
    assert_eq!(svc.item_count().await, 0);
}

#[tokio::test]
async fn organizations_never_see_each_other() {
    let svc = service().await;
    let mine = svc.record("org_a", &attempt_body(Some("session_shared"), "1")).await;
    let theirs = svc.record("org_b", &attempt_body(Some("session_shared"), "2")).await;
    let (my_id, their_id) = (mine["id"].as_str().unwrap(), theirs["id"].as_str().unwrap());

    // Another organization's attempt is exactly as missing as one that does not exist.
    let stolen = svc.get("org_a", &format!("{LIST}/{their_id}")).await;
    let absent = svc.get("org_a", &format!("{LIST}/payatt_{}", "0".repeat(32))).await;
    assert_eq!((stolen.status, stolen.error()), (absent.status, absent.error().clone()));
    assert_eq!(stolen.status, 404);
    assert!(!stolen.text.contains(their_id) || stolen.json()["error"]["message"].as_str().unwrap().contains(their_id));

    for query in
        ["", "?session_id=session_shared", &format!("?starting_after={their_id}"), &format!("?ending_before={my_id}")]
    {
        let page = svc.get("org_a", &format!("{LIST}{query}")).await.json();
        for row in page["data"].as_array().unwrap() {
            assert_eq!(row["organization_id"], "org_a", "{query}: {row}");
        }
    }
    let page = svc.get("org_a", &format!("{LIST}?session_id=session_shared")).await.json();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    // A cursor taken from another organization only marks a point in time.
    let page = svc.get("org_b", &format!("{LIST}?ending_before={my_id}")).await.json();
    let ids: Vec<&str> = page["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![their_id]);
}

/// Walks every page newest-first with `starting_after`, then back with `ending_before`.
async fn walk(svc: &common::Service, org: &str, filter: &str, limit: usize) -> (Vec<String>, Vec<String>) {
    let ids = |page: &Value| -> Vec<String> {
        page["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
    };
    let mut forward = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = svc.get(org, &format!("{LIST}?limit={limit}{filter}{cursor}")).await.json();
        let page_ids = ids(&page);
        assert!(page_ids.len() <= limit);
        forward.extend(page_ids.iter().cloned());
        if page["has_more"] == json!(false) {
            break;
        }
        assert_eq!(page_ids.len(), limit, "a page with more after it is full");
        cursor = format!("&starting_after={}", page_ids.last().unwrap());
    }
    let mut backward: Vec<String> = forward.last().cloned().into_iter().collect();
    while let Some(newest) = backward.first().cloned() {
        let page = svc.get(org, &format!("{LIST}?limit={limit}{filter}&ending_before={newest}")).await.json();
        let mut page_ids = ids(&page);
        page_ids.extend(backward);
        backward = page_ids;
        if page["has_more"] == json!(false) {
            break;
        }
    }
    (forward, backward)
}

#[tokio::test]
async fn page_walks_see_every_attempt_once_newest_first() {
    let svc = service().await;
    let sessions = ["session_alpha", "session_beta", "session_gamma"];
    let mut all = Vec::new();
    let mut by_session: Vec<Vec<String>> = vec![Vec::new(); 3];
    for i in 0..250 {
        let attempt = svc.record(ORG, &attempt_body(Some(sessions[i % 3]), &format!("0.{:03}", i + 1))).await;
        let id = attempt["id"].as_str().unwrap().to_owned();
        by_session[i % 3].push(id.clone());
        all.push(id);
    }
    svc.record("org_other", &attempt_body(Some("session_alpha"), "9")).await;
    // Newest first is id order, descending (ids are UUIDv7).
    all.sort_unstable_by(|a, b| b.cmp(a));
    let (forward, backward) = walk(&svc, ORG, "", 7).await;
    assert_eq!(forward, all, "forward walk");
    assert_eq!(backward, all, "backward walk");
    for (session, mut ids) in sessions.iter().zip(by_session) {
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let (forward, backward) = walk(&svc, ORG, &format!("&session_id={session}"), 7).await;
        assert_eq!(forward, ids, "forward walk of {session}");
        assert_eq!(backward, ids, "backward walk of {session}");
    }
    // Defaults: 50 per page; the last page of an exact multiple says has_more: false.
    let page = svc.get(ORG, LIST).await.json();
    assert_eq!((page["data"].as_array().unwrap().len(), page["has_more"].clone()), (50, json!(true)));
    let page = svc.get(ORG, &format!("{LIST}?limit=50&starting_after={}", all[199])).await.json();
    assert_eq!((page["data"].as_array().unwrap().len(), page["has_more"].clone()), (50, json!(false)));
    let page = svc.get(ORG, &format!("{LIST}?session_id=session_nobody")).await.json();
    assert_eq!((page["data"].as_array().unwrap().len(), page["has_more"].clone()), (0, json!(false)));
}
