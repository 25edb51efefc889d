//! Test harness: one DynamoDB Local per test binary (free loopback port, in memory), a fresh
//! table per test created from `template.yaml`, and requests sent the way API Gateway sends
//! them, through the same handlers the Lambdas run.

pub mod events;
pub mod proxy;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use aws_sdk_dynamodb::Client;
use hyper::body::Bytes;
use hyper::HeaderMap;
use payment_attempts::runtime::Settings;
use payment_attempts::AttemptStore;
use payment_attempts_local::dynamodb_local::{self, DynamoDbLocal};
use payment_attempts_local::local_api::{GatewayRequest, LocalApi};
use payment_attempts_local::stream_mapping::StreamMapping;
use payment_attempts_local::template::Template;
use payment_attempts_local::token;
use serde_json::{json, Value};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub fn template() -> Template {
    Template::load(&Path::new(ROOT).join("template.yaml")).expect("template.yaml loads")
}

/// The engine shared by the tests of one binary; it dies with the test process.
pub fn engine_endpoint() -> String {
    static ENGINE: OnceLock<Mutex<DynamoDbLocal>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| Mutex::new(DynamoDbLocal::start().expect("DynamoDB Local starts")));
    engine.lock().map(|e| e.endpoint()).unwrap_or_else(|e| e.into_inner().endpoint())
}

pub struct Service {
    pub api: LocalApi,
    pub store: AttemptStore,
    pub client: Client,
    pub table: String,
    /// The summarizer on the table's stream, run when a test asks ([`Service::summarize`]).
    pub mapping: StreamMapping,
}

/// The one IAM role the test services trust to write for any organization.
pub const TRUSTED_ROLE: &str = "arn:aws:iam::123456789012:role/payments-writer";

/// A service on its own new table in `endpoint`'s engine.
pub async fn service_on(endpoint: &str) -> Service {
    service_with_client(endpoint, dynamodb_local::client(endpoint)).await
}

/// A service on its own new table in `endpoint`'s engine, calling it through `client`.
pub async fn service_with_client(endpoint: &str, client: Client) -> Service {
    service_with(endpoint, client, |store| store).await
}

/// A service on its own new table, through `client`, its store set up by `configure`.
pub async fn service_with(
    endpoint: &str,
    client: Client,
    configure: impl FnOnce(AttemptStore) -> AttemptStore,
) -> Service {
    // Handlers log as JSON lines; cargo shows them for failing tests only.
    let _ = tracing_subscriber::fmt().json().with_test_writer().try_init();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let table = format!("attempts-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
    let template = template();
    template.create_table(&client, &table).await.expect("table created from template.yaml");
    let store = configure(AttemptStore::new(client.clone(), &table));
    let settings = Settings { trusted_writer_roles: vec![TRUSTED_ROLE.to_owned()], ..Settings::new(&table) };
    let api = LocalApi::new(&template, store.clone(), settings);
    let mapping = StreamMapping::new(&template, endpoint, &table, store.clone()).await.expect("the table has a stream");
    Service { api, store, client, table, mapping }
}

pub async fn service() -> Service {
    service_on(&engine_endpoint()).await
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// `(code, param)` of a Stripe-style error body.
    pub fn error(&self) -> (String, Option<String>) {
        let body = self.json();
        let error = &body["error"];
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "error without message: {body}");
        (error["code"].as_str().unwrap_or_default().to_owned(), error["param"].as_str().map(str::to_owned))
    }
}

pub fn bearer(org: &str) -> String {
    format!("Bearer {}", token::unsigned(&json!({ "org_id": org, "sub": "user_1" })))
}

impl Service {
    /// `target` is a path with an optional query; `auth` the whole Authorization header.
    pub async fn request(
        &self,
        method: &str,
        target: &str,
        auth: Option<&str>,
        body: Option<&[u8]>,
        content_type: Option<&str>,
    ) -> Reply {
        let mut headers = Vec::new();
        headers.extend(auth.map(|a| ("authorization", a)));
        headers.extend(content_type.map(|c| ("content-type", c)));
        self.request_with(method, target, &headers, body.unwrap_or_default()).await
    }

    pub async fn request_with(&self, method: &str, target: &str, extra_headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut headers = vec![("user-agent".to_owned(), "payment-attempts-tests".to_owned())];
        headers.extend(extra_headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let request = GatewayRequest::from_loopback(method, target, headers, body.to_vec());
        let response = self.api.call(&request).await;
        let (parts, body) = response.into_parts();
        let bytes: Bytes = http_body_util::BodyExt::collect(body).await.map(|c| c.to_bytes()).unwrap_or_default();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// A JSON POST with an `Idempotency-Key`.
    pub async fn post_keyed(&self, org: &str, target: &str, body: &str, key: &str) -> Reply {
        let auth = bearer(org);
        let headers =
            [("authorization", auth.as_str()), ("content-type", "application/json"), ("idempotency-key", key)];
        self.request_with("POST", target, &headers, body.as_bytes()).await
    }

    pub async fn get(&self, org: &str, target: &str) -> Reply {
        self.request("GET", target, Some(&bearer(org)), None, None).await
    }

    pub async fn post(&self, org: &str, target: &str, body: &Value) -> Reply {
        self.request("POST", target, Some(&bearer(org)), Some(body.to_string().as_bytes()), Some("application/json"))
            .await
    }

    /// Records an attempt and returns its JSON, asserting the 201.
    pub async fn record(&self, org: &str, body: &Value) -> Value {
        let reply = self.post(org, "/v1/payments/attempts", body).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.json()
    }

    /// Lets the summarizer count every change written so far, as Lambda's mapping would
    /// within about a second; returns how many stream records it delivered.
    pub async fn summarize(&self) -> usize {
        self.mapping.drain().await.expect("the summarizer counts the stream")
    }

    /// Every item in the table, for tests that check nothing was written (Scan: tests only).
    pub async fn item_count(&self) -> i32 {
        let out =
            self.client.scan().table_name(&self.table).select(aws_sdk_dynamodb::types::Select::Count).send().await;
        out.expect("scan").count
    }
}

pub fn attempt_body(session: Option<&str>, amount: &str) -> Value {
    let text = format!(
        r#"{{"capability": "paid_search", "operation": "search.query", "rail": "mpp_tempo", "amount_usd": {amount},
            "currency": "USD", "target_url": "https://api.example.com/v1/search", "receipt": {{"tx": "0x5e1f"}}}}"#
    );
    let mut body: Value = serde_json::from_str(&text).expect("valid body");
    if let Some(session) = session {
        body["session_id"] = json!(session);
    }
    body
}
