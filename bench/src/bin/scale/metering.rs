//! A metering proxy on loopback between the service and DynamoDB Local: it forwards every
//! request and charges it as DynamoDB bills, per partition key (`make scale`).
//!
//! - Writes: 1 WCU per started KB of the item written (a put's item as sent; an update,
//!   delete or condition check is charged its key's item at 1 KB, which covers this table's
//!   counters, guards and claims), twice inside `TransactWriteItems`. A put that carries the
//!   session index's key also writes the index (all attributes projected), once.
//! - Reads: strongly consistent, 1 RCU per started 4 KB of what a call read (for a Query, the
//!   rows it read before its filter: `ScannedCount` rows of the returned rows' mean size).
//!
//! Item sizes follow DynamoDB's rules: attribute names plus values, numbers at about one byte
//! per two digits, maps and lists 3 bytes plus 1 per element.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// What the proxy charged so far.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    /// Write units per partition key (`pk` of the table, `session_pk` of the index).
    pub wcu_by_key: HashMap<String, f64>,
    pub rcu: f64,
    /// Calls per operation (`TransactWriteItems`, `Query`, ...).
    pub calls: HashMap<String, u64>,
    /// Rows read by Query calls, before their filters.
    pub rows_read: u64,
    /// The bytes of each item as last put, by (`pk`, `sk`); index copies by
    /// (`index <session_pk>`, `sk`). Updated counters are not sized.
    pub stored: HashMap<(String, String), usize>,
}

impl Meter {
    pub fn total_wcu(&self) -> f64 {
        self.wcu_by_key.values().sum()
    }

    /// The partition key charged the most, and its units.
    pub fn hottest(&self) -> Option<(&str, f64)> {
        self.wcu_by_key.iter().map(|(k, v)| (k.as_str(), *v)).max_by(|a, b| a.1.total_cmp(&b.1))
    }

    pub fn calls(&self, operation: &str) -> u64 {
        self.calls.get(operation).copied().unwrap_or(0)
    }

    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }
}

pub struct MeteringProxy {
    endpoint: String,
    meter: Arc<Mutex<Meter>>,
    server: tokio::task::JoinHandle<()>,
}

impl MeteringProxy {
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let meter = Arc::new(Mutex::new(Meter::default()));
        let state = meter.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (upstream, meter) = (upstream.clone(), state.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| forward(upstream.clone(), meter.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(MeteringProxy { endpoint, meter, server })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// What was charged since the last reset.
    pub fn meter(&self) -> Meter {
        self.meter.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn reset(&self) {
        if let Ok(mut m) = self.meter.lock() {
            *m = Meter::default();
        }
    }
}

impl Drop for MeteringProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type ProxyError = Box<dyn std::error::Error + Send + Sync>;

async fn forward(
    upstream: String,
    meter: Arc<Mutex<Meter>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ProxyError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let operation = payment_attempts_local::dynamodb_local::operation(&parts.headers);
    let mut request = Request::builder().method(parts.method).uri(parts.uri);
    for (name, value) in &parts.headers {
        request = request.header(name, value);
    }
    let stream = tokio::net::TcpStream::connect(&upstream).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let answer = sender.send_request(request.body(Full::new(body.clone()))?).await?;
    let (parts, answer_body) = answer.into_parts();
    let answer_body = answer_body.collect().await?.to_bytes();
    if parts.status.is_success() {
        let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let got: Value = serde_json::from_slice(&answer_body).unwrap_or(Value::Null);
        if let Ok(mut meter) = meter.lock() {
            charge(&mut meter, &operation, &sent, &got);
        }
    }
    Ok(Response::from_parts(parts, Full::new(answer_body)))
}

const TABLE_KEY: &str = "pk";
const INDEX_KEY: &str = "session_pk";

fn charge(meter: &mut Meter, operation: &str, sent: &Value, got: &Value) {
    *meter.calls.entry(operation.to_owned()).or_default() += 1;
    match operation {
        "PutItem" => put(meter, &sent["Item"], 1.0),
        "UpdateItem" | "DeleteItem" => small_write(meter, &sent["Key"], 1.0),
        "TransactWriteItems" => {
            for write in sent["TransactItems"].as_array().into_iter().flatten() {
                if write["Put"].is_object() {
                    put(meter, &write["Put"]["Item"], 2.0);
                }
                for kind in ["Update", "Delete", "ConditionCheck"] {
                    if write[kind].is_object() {
                        small_write(meter, &write[kind]["Key"], 2.0);
                    }
                }
            }
        }
        "GetItem" => meter.rcu += (item_size(&got["Item"]) as f64 / 4096.0).ceil().max(1.0),
        "Query" => {
            let rows = got["Items"].as_array().map(Vec::as_slice).unwrap_or_default();
            let scanned = got["ScannedCount"].as_u64().unwrap_or(rows.len() as u64);
            let mean = if rows.is_empty() { 0 } else { rows.iter().map(item_size).sum::<usize>() / rows.len() };
            let read = (scanned as usize * mean) as f64 / 4096.0;
            // Global secondary indexes only read eventually consistent: half a unit.
            let consistent = sent["ConsistentRead"].as_bool().unwrap_or(false);
            meter.rcu += read.ceil().max(1.0) * if consistent { 1.0 } else { 0.5 };
            meter.rows_read += scanned;
        }
        _ => {}
    }
}

fn key_of(item: &Value, name: &str) -> Option<String> {
    item[name]["S"].as_str().map(str::to_owned)
}

fn put(meter: &mut Meter, item: &Value, factor: f64) {
    let size = item_size(item);
    let units = (size as f64 / 1024.0).ceil().max(1.0);
    let sk = key_of(item, "sk").unwrap_or_default();
    if let Some(pk) = key_of(item, TABLE_KEY) {
        *meter.wcu_by_key.entry(pk.clone()).or_default() += units * factor;
        meter.stored.insert((pk, sk.clone()), size);
    }
    if let Some(session) = key_of(item, INDEX_KEY) {
        let index = format!("index {session}");
        *meter.wcu_by_key.entry(index.clone()).or_default() += units;
        meter.stored.insert((index, sk), size);
    }
}

fn small_write(meter: &mut Meter, key: &Value, factor: f64) {
    if let Some(pk) = key_of(key, TABLE_KEY) {
        *meter.wcu_by_key.entry(pk).or_default() += factor;
    }
}

/// An item's size in bytes, by DynamoDB's rules.
pub fn item_size(item: &Value) -> usize {
    item.as_object().map_or(0, |attributes| attributes.iter().map(|(name, value)| name.len() + value_size(value)).sum())
}

fn value_size(value: &Value) -> usize {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else { return 0 };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        // Binary travels as base64 in the request, and is billed by its bytes.
        "B" => inner.as_str().map_or(0, |b64| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b64).map_or(b64.len(), |bytes| bytes.len())
        }),
        "N" => {
            let digits = inner.as_str().map_or(0, |n| n.chars().filter(char::is_ascii_digit).count());
            digits.div_ceil(2) + 1
        }
        "BOOL" | "NULL" => 1,
        "M" => 3 + inner.as_object().map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v) + 1).sum()),
        "L" => 3 + inner.as_array().map_or(0, |l| l.iter().map(|v| value_size(v) + 1).sum()),
        "SS" | "NS" | "BS" => inner.as_array().map_or(0, |l| l.iter().map(|v| v.as_str().map_or(0, str::len)).sum()),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_follow_dynamodbs_rules() {
        assert_eq!(item_size(&json!({"pk": {"S": "ORG#a"}})), 2 + 5);
        assert_eq!(item_size(&json!({"b": {"B": "AAECAwQ="}})), 1 + 5, "binary by its bytes, not its base64");
        assert_eq!(item_size(&json!({"n": {"N": "12345"}})), 1 + 4);
        assert_eq!(item_size(&json!({"m": {"M": {"a": {"S": "xy"}}}})), 1 + 3 + (1 + 2 + 1));
        assert_eq!(item_size(&json!({"l": {"L": [{"BOOL": true}]}})), 1 + 3 + 2);
    }

    #[test]
    fn transactions_are_charged_twice_per_item_and_the_index_once() {
        let mut meter = Meter::default();
        let attempt = json!({"pk": {"S": "ORG#a"}, "sk": {"S": "ATT#1"}, "session_pk": {"S": "ORG#a#SES#s"},
            "body": {"S": "x".repeat(1500)}});
        let sent = json!({"TransactItems": [
            {"Put": {"Item": attempt}},
            {"Update": {"Key": {"pk": {"S": "ORG#a"}, "sk": {"S": "SUM#ORG#1"}}}},
            {"ConditionCheck": {"Key": {"pk": {"S": "ORG#a"}, "sk": {"S": "HASH#h"}}}},
        ]});
        charge(&mut meter, "TransactWriteItems", &sent, &Value::Null);
        // The attempt: 2 KB, twice; the counter and the check: 1 KB, twice each.
        assert_eq!(meter.wcu_by_key["ORG#a"], 4.0 + 2.0 + 2.0);
        assert_eq!(meter.wcu_by_key["index ORG#a#SES#s"], 2.0);
        assert_eq!(meter.hottest(), Some(("ORG#a", 8.0)));
    }
}
