//! A corpus of malformed requests: each gets its status and the `param` it names, and none
//! writes anything.

use crate::common;

use common::{attempt_body, bearer, service};
use serde_json::{json, Value};

const LIST: &str = "/v1/payments/attempts";
const ID: &str = "payatt_01933b5a000070008000000000000001";

struct Case {
    what: String,
    method: &'static str,
    target: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    param: Option<String>,
}

fn json_post(target: &str, body: Vec<u8>, status: u16, param: Option<&str>, what: String) -> Case {
    Case {
        what,
        method: "POST",
        target: target.to_owned(),
        headers: vec![("content-type", "application/json".to_owned())],
        body,
        status,
        param: param.map(str::to_owned),
    }
}

fn get(target: String, status: u16, param: Option<&str>) -> Case {
    Case {
        what: target.clone(),
        method: "GET",
        target,
        headers: vec![],
        body: vec![],
        status,
        param: param.map(str::to_owned),
    }
}

fn with_field(field: &str, value: Value) -> Vec<u8> {
    let mut body = attempt_body(Some("session_c"), "1");
    body[field] = value;
    body.to_string().into_bytes()
}

fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    let create_fields: Vec<(&str, Vec<Value>)> = vec![
        (
            "session_id",
            vec![
                json!(""),
                json!("session_"),
                json!("sess_1"),
                json!("session_a#b"),
                json!("session_ä"),
                json!(1),
                json!(["session_a"]),
            ],
        ),
        ("payment_account_id", vec![json!("acct_1"), json!("payacct_"), json!(true)]),
        (
            "capability",
            vec![json!(""), json!(" "), json!("paid search"), json!("a".repeat(129)), json!(null), json!(7), json!({})],
        ),
        ("operation", vec![json!(""), json!("op\u{0}"), json!(["x"]), json!(null)]),
        ("rail", vec![json!(""), json!("MPP"), json!("mpp-tempo"), json!("r".repeat(65)), json!(0)]),
        (
            "amount_usd",
            vec![
                json!("1"),
                json!(-0.01),
                json!(0.0000001),
                json!(1e13),
                json!(null),
                json!(true),
                json!([1]),
                json!({"value": 1}),
            ],
        ),
        ("currency", vec![json!("usd"), json!("XXY"), json!("US"), json!("USDT"), json!(840)]),
        (
            "target_url",
            vec![
                json!(""),
                json!("/relative"),
                json!("ftp://x.example/"),
                json!("https://user:pw@x.example/"),
                json!("https://"),
                json!("javascript:alert(1)"),
                json!(format!("https://x.example/{}", "a".repeat(2048))),
                json!(null),
            ],
        ),
        (
            "request_hash",
            vec![
                json!("sha256:"),
                json!("sha1:abc"),
                json!(format!("sha256:{}", "G".repeat(64))),
                json!(format!("sha256:{}", "a".repeat(63))),
            ],
        ),
        ("status", vec![json!("active"), json!("disabled"), json!("released"), json!("PENDING"), json!(""), json!(1)]),
        ("error_message", vec![json!("not failed"), json!(""), json!("e".repeat(1001))]),
        (
            "status_details",
            vec![
                json!("x"),
                json!([]),
                json!({"reason": 1}),
                json!({"when": "now"}),
                json!({"reason": "r".repeat(101)}),
            ],
        ),
        ("receipt", vec![json!("0xabc"), json!([1]), json!(1), json!(true)]),
        (
            "metadata",
            vec![json!("x"), json!({"k": 1}), json!({"": "v"}), json!({"k[0]": "v"}), json!({"k": "v".repeat(501)})],
        ),
        ("id", vec![json!(ID)]),
        ("object", vec![json!("payment_attempt")]),
        ("created_at", vec![json!("2026-05-25T10:14:00Z")]),
        ("organization_id", vec![json!("org_other"), json!("org_a#b")]),
        ("unknown_field", vec![json!(1)]),
    ];
    for (field, values) in create_fields {
        for value in values {
            let status_details_param = field == "status_details" && value.is_object();
            let metadata_param = field == "metadata" && value.is_object();
            let param = if status_details_param || metadata_param { None } else { Some(field) };
            let mut case =
                json_post(LIST, with_field(field, value.clone()), 400, param, format!("create {field}={value}"));
            // Nested params are named `field[key]`: checked by prefix below.
            if param.is_none() {
                case.param = Some(format!("{field}["));
            }
            cases.push(case);
        }
    }
    for required in ["capability", "operation", "amount_usd", "target_url"] {
        let mut body = attempt_body(None, "1");
        body.as_object_mut().unwrap().remove(required);
        cases.push(json_post(
            LIST,
            body.to_string().into_bytes(),
            400,
            Some(required),
            format!("create without {required}"),
        ));
    }
    let mut failed = attempt_body(None, "1");
    failed["status"] = json!("failed");
    cases.push(json_post(
        LIST,
        failed.to_string().into_bytes(),
        400,
        Some("error_message"),
        "failed without error_message".into(),
    ));
    let deep = format!(
        r#"{{"capability":"c","operation":"o","amount_usd":1,"target_url":"https://x.example/","receipt":{}1{}}}"#,
        r#"{"a":"#.repeat(40),
        "}".repeat(40)
    );
    cases.push(json_post(LIST, deep.into_bytes(), 400, Some("receipt"), "receipt 40 levels deep".into()));
    let wide = with_field("receipt", json!({"blob": "x".repeat(20_000)}));
    cases.push(json_post(LIST, wide, 400, Some("receipt"), "receipt over 16 KiB".into()));
    for (what, body) in [
        ("empty body", b"".to_vec()),
        ("not JSON", b"capability=paid_search".to_vec()),
        ("truncated JSON", br#"{"capability": "#.to_vec()),
        ("JSON array", b"[]".to_vec()),
        ("JSON null", b"null".to_vec()),
        ("JSON string", br#""{}""#.to_vec()),
        ("trailing data", br#"{} {}"#.to_vec()),
        ("invalid UTF-8", b"{\"capability\": \"\xc3\x28\"}".to_vec()),
        ("nesting past the parser's limit", format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes()),
    ] {
        cases.push(json_post(LIST, body, 400, None, what.to_owned()));
    }
    cases.push(json_post(
        LIST,
        br#"{"capability": "a", "capability": "b"}"#.to_vec(),
        400,
        Some("capability"),
        "duplicate key".into(),
    ));
    cases.push(json_post(
        LIST,
        br#"{"capability": "\ud800"}"#.to_vec(),
        400,
        Some("capability"),
        "lone surrogate".into(),
    ));
    cases.push(json_post(LIST, vec![b' '; 70 * 1024], 413, None, "body over 64 KiB".into()));
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
    ] {
        let mut case = json_post(
            LIST,
            attempt_body(None, "1").to_string().into_bytes(),
            415,
            None,
            format!("content-type {content_type}"),
        );
        case.headers = vec![("content-type", content_type.to_owned())];
        cases.push(case);
    }
    let mut bare = json_post(
        LIST,
        attempt_body(None, "1").to_string().into_bytes(),
        415,
        None,
        "body without content-type".into(),
    );
    bare.headers.clear();
    cases.push(bare);
    cases.push(get(format!("{LIST}/{ID}?organization_id=org_other"), 400, Some("organization_id")));
    cases.push(json_post(
        &format!("{LIST}?expand=x"),
        attempt_body(None, "1").to_string().into_bytes(),
        400,
        Some("expand"),
        "query on create".into(),
    ));
    cases.push(json_post(
        &format!("{LIST}/{ID}?org=x"),
        json!({"status": "released"}).to_string().into_bytes(),
        400,
        Some("org"),
        "query on update".into(),
    ));
    for key in ["", "with space", "ключ", &"k".repeat(256)] {
        let mut case = json_post(
            LIST,
            attempt_body(None, "1").to_string().into_bytes(),
            400,
            Some("Idempotency-Key"),
            format!("Idempotency-Key {key:?}"),
        );
        case.headers.push(("idempotency-key", key.to_owned()));
        cases.push(case);
    }
    // Updates.
    let update = format!("{LIST}/{ID}");
    for (body, param) in [
        (json!({}), Some("status")),
        (json!({"status": "active"}), Some("status")),
        (json!({"status": "bogus"}), Some("status")),
        (json!({"status": "failed"}), Some("error_message")),
        (json!({"status": "released", "error_message": "x"}), Some("error_message")),
        (json!({"status": "succeeded", "amount_usd": 2}), Some("amount_usd")),
        (json!({"status": "succeeded", "receipt": "x"}), Some("receipt")),
        (json!({"status": "succeeded", "organization_id": "org_other"}), Some("organization_id")),
    ] {
        cases.push(json_post(&update, body.to_string().into_bytes(), 400, param, format!("update {body}")));
    }
    for bad_id in [
        "payatt_",
        "payatt_XYZ",
        "pay_01933b5a000070008000000000000001",
        "payatt_01933b5a00007000800000000000001",
        "..%2F..%2Fetc",
    ] {
        cases.push(get(format!("{LIST}/{bad_id}"), 400, Some("id")));
        cases.push(json_post(
            &format!("{LIST}/{bad_id}"),
            json!({"status": "released"}).to_string().into_bytes(),
            400,
            Some("id"),
            format!("update {bad_id}"),
        ));
    }
    // Queries.
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=1e2", "limit"),
        ("limit=", "limit"),
        ("limit=1&limit=2", "limit"),
        ("session_id=", "session_id"),
        ("session_id=sess", "session_id"),
        ("session_id=session_a%23b", "session_id"),
        ("starting_after=", "starting_after"),
        ("starting_after=payatt_zz", "starting_after"),
        ("ending_before=org_acme", "ending_before"),
        (&format!("starting_after={ID}&ending_before={ID}"), "ending_before"),
        ("status=active", "status"),
        ("status=pending,nope", "status"),
        ("status=", "status"),
        ("capability=a%20b", "capability"),
        ("created[gte]=yesterday", "created[gte]"),
        ("created[lt]=2026-13-01T00:00:00Z", "created[lt]"),
        ("created[gt]=1&created[gte]=1", "created[gte]"),
        ("created[gte]=1779704041&created[lte]=1779704040", "created[gte]"),
        ("created=1", "created"),
        ("expand[]=data", "expand[]"),
        ("organization_id=org_other", "organization_id"),
        ("org_id=org_other", "org_id"),
    ] {
        cases.push(get(format!("{LIST}?{query}"), 400, Some(param)));
    }
    for (query, param) in [
        ("session_id=x", "session_id"),
        ("status=failed", "status"),
        ("created[gte]=2026-05-25T02:30:00Z&created[lt]=2026-05-25T04:00:00Z", "created[gte]"),
        ("created[gte]=2026-05-25T02:00:00Z", "created[lt]"),
        ("created[gte]=2026-01-01T00:00:00Z&created[lt]=2026-03-01T00:00:00Z", "created[gte]"),
        ("session_id=session_a&created[gte]=2026-05-25T02:00:00Z&created[lt]=2026-05-25T03:00:00Z", "created[gte]"),
    ] {
        cases.push(get(format!("{LIST}/summary?{query}"), 400, Some(param)));
    }
    cases
}

#[tokio::test]
async fn malformed_requests_are_refused_by_name_and_write_nothing() {
    let svc = service().await;
    // One attempt to aim updates at; the corpus must leave the table exactly as it is.
    let body = attempt_body(Some("session_c"), "1");
    let mut seeded =
        payment_attempts::command::NewAttempt::from_json(body.to_string().as_bytes()).unwrap().into_attempt(
            payment_attempts::OrganizationId::parse("org_acme").unwrap(),
            payment_attempts::time::Timestamp::now(),
        );
    seeded.id = payment_attempts::AttemptId::parse(ID).unwrap();
    svc.store.create(&seeded, None).await.unwrap();
    let before = svc.item_count().await;
    let cases = corpus();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let auth = bearer("org_acme");
    for case in &cases {
        let mut headers: Vec<(&str, &str)> = vec![("authorization", auth.as_str())];
        headers.extend(case.headers.iter().map(|(k, v)| (*k, v.as_str())));
        let reply = svc.request_with(case.method, &case.target, &headers, &case.body).await;
        assert_eq!(reply.status, case.status, "{}: {}", case.what, reply.text);
        assert!(reply.headers.contains_key("request-id"), "{}", case.what);
        let (_, param) = reply.error();
        match (&case.param, param) {
            (None, param) => assert_eq!(param, None, "{}", case.what),
            (Some(expected), Some(param)) if expected.ends_with('[') => {
                assert!(param.starts_with(expected.as_str()), "{}: {param}", case.what)
            }
            (Some(expected), param) => assert_eq!(param.as_deref(), Some(expected.as_str()), "{}", case.what),
        }
    }
    assert_eq!(svc.item_count().await, before, "no malformed request wrote anything");
    let fetched = svc.get("org_acme", &format!("{LIST}/{ID}")).await.json();
    assert_eq!(fetched["status"], "pending", "no malformed update moved the attempt");
    println!("corpus: {} malformed requests refused, nothing written", cases.len());
}
