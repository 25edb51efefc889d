//! A fault-injecting proxy on loopback between the service and DynamoDB Local (or the
//! EventBridge emulator): it forwards each request to the engine, and for the operations a
//! rule names it can hold the answer after the engine committed, drop the connection after
//! sending, never answer, answer an error of its choosing without forwarding, or refuse some
//! of a PutEvents call's entries (forwarding the others). In chaos mode ([`FaultProxy::chaos`]) it faults
//! a share of every call at random, from a seeded generator, and counts the faults by kind.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Debug, Clone)]
pub enum Fault {
    /// Forward untouched: a rule that lets the next requests of an operation through.
    Pass,
    /// Forward; once the engine answered, hold that answer this long (the client gives up).
    HoldAnswer(Duration),
    /// Forward; once the engine answered, close the connection without answering.
    DropAfterSend,
    /// Hold the request this long, then forward it (the client gave up meanwhile).
    DelayForward(Duration),
    /// Neither forward nor answer.
    NeverAnswer,
    /// Answer DynamoDB's error `code` with `status`, without forwarding.
    Error { status: u16, code: &'static str },
    /// Answer a cancelled transaction, with DynamoDB's reason code for each of its writes.
    Cancelled(&'static [&'static str]),
    /// Answer that another transaction holds an item: a transaction cancelled with a conflict
    /// on one of its writes (`TransactionConflictException` for a single-item write).
    Conflict,
    /// PutEvents: forward only some entries (each refused with a chance of one in two, drawn
    /// from this seed), and answer for the others as EventBridge does for an entry it refuses.
    RefuseEntries(u64),
}

/// Random faults for a share of all calls, drawn from a seeded generator.
struct Chaos {
    rate: f64,
    /// Held past this, an answer is lost to the client (longer than its try timeout).
    lost_after: Duration,
    rng: fastrand::Rng,
    /// Faults injected so far, by kind.
    counts: std::collections::BTreeMap<&'static str, usize>,
}

impl Chaos {
    fn draw(&mut self, operation: &str) -> Option<(&'static str, Fault)> {
        if self.rng.f64() >= self.rate {
            return None;
        }
        // Only writes meet other transactions; only PutEvents has entries to refuse.
        let writes = matches!(operation, "TransactWriteItems" | "PutItem" | "UpdateItem" | "DeleteItem");
        if operation == "PutEvents" && self.rng.bool() {
            *self.counts.entry("PutEvents entries refused").or_default() += 1;
            return Some(("PutEvents entries refused", Fault::RefuseEntries(self.rng.u64(..))));
        }
        let (kind, fault) = match self.rng.u8(0..if writes { 6 } else { 5 }) {
            0 => ("answer held past the try timeout", Fault::HoldAnswer(self.lost_after)),
            1 => ("connection dropped after the engine answered", Fault::DropAfterSend),
            2 => ("request delayed", Fault::DelayForward(Duration::from_millis(self.rng.u64(20..1_000)))),
            3 => ("500 InternalServerError", Fault::Error { status: 500, code: "InternalServerError" }),
            4 => ("throttled", Fault::Error { status: 400, code: "ProvisionedThroughputExceededException" }),
            _ => ("conflict with another transaction", Fault::Conflict),
        };
        *self.counts.entry(kind).or_default() += 1;
        Some((kind, fault))
    }
}

struct Rule {
    /// `TransactWriteItems`, `GetItem`, ...; `None` matches every operation.
    operation: Option<&'static str>,
    fault: Fault,
    /// Requests it still applies to; `None` for all.
    remaining: Option<usize>,
}

/// The rules, the operations of the requests forwarded so far, and chaos if it is on.
#[derive(Clone, Default)]
struct Rules(Arc<Mutex<Vec<Rule>>>, Arc<Mutex<Vec<String>>>, Arc<Mutex<Option<Chaos>>>);

impl Rules {
    /// The fault for one request of `operation`, counting it against its rule; else chaos's.
    fn take(&self, operation: &str) -> Option<Fault> {
        let mut rules = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(index) = rules.iter().position(|r| r.operation.is_none_or(|o| o == operation)) else {
            let mut chaos = self.2.lock().unwrap_or_else(|e| e.into_inner());
            return chaos.as_mut().and_then(|chaos| chaos.draw(operation)).map(|(_, fault)| fault);
        };
        let fault = rules[index].fault.clone();
        if let Some(left) = rules[index].remaining.as_mut() {
            *left -= 1;
            if *left == 0 {
                rules.remove(index);
            }
        }
        Some(fault)
    }
}

pub struct FaultProxy {
    endpoint: String,
    rules: Rules,
    server: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy in front of the engine at `upstream`, forwarding everything until told otherwise.
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let rules = Rules::default();
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let (upstream, state) = (upstream.to_owned(), rules.clone());
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, upstream, rules) = (client.clone(), upstream.clone(), state.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        forward(client.clone(), upstream.clone(), rules.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy { endpoint, rules, server }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// From now on, `fault` for the next `times` requests of `operation` (every operation with
    /// `None`; every request with `times` `None`). Earlier rules match first.
    pub fn inject(&self, operation: Option<&'static str>, fault: Fault, times: Option<usize>) {
        self.rules.0.lock().unwrap_or_else(|e| e.into_inner()).push(Rule { operation, fault, remaining: times });
    }

    /// How many requests of `operation` reached the engine so far.
    pub fn forwarded(&self, operation: &str) -> usize {
        self.rules.1.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|o| *o == operation).count()
    }

    /// Forwards everything again.
    pub fn heal(&self) {
        self.rules.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
        if let Some(chaos) = self.rules.2.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            chaos.rate = 0.0;
        }
    }

    /// From now on, a share `rate` of all requests (those no rule matches) gets a fault drawn
    /// at random from `seed`; an answer held is held `lost_after`.
    pub fn chaos(&self, seed: u64, rate: f64, lost_after: Duration) {
        let chaos = Chaos { rate, lost_after, rng: fastrand::Rng::with_seed(seed), counts: Default::default() };
        *self.rules.2.lock().unwrap_or_else(|e| e.into_inner()) = Some(chaos);
    }

    /// The faults chaos injected so far, by kind.
    pub fn chaos_counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        self.rules.2.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|c| c.counts.clone()).unwrap_or_default()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type ProxyError = Box<dyn std::error::Error + Send + Sync>;

fn refusal(code: &str, extra: String) -> String {
    format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected by the test proxy"{extra}}}"#)
}

/// DynamoDB's answer to a cancelled transaction, with a reason code for each of its writes.
fn cancelled(reasons: &[&str]) -> String {
    let reasons: Vec<String> = reasons.iter().map(|code| format!(r#"{{"Code":"{code}"}}"#)).collect();
    refusal("TransactionCanceledException", format!(r#","CancellationReasons":[{}]"#, reasons.join(",")))
}

async fn forward(
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: String,
    rules: Rules,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let mut body = body.collect().await?.to_bytes();
    let operation = payment_attempts_local::dynamodb_local::operation(&parts.headers);
    let fault = rules.take(&operation);
    let refused_entries = match &fault {
        Some(Fault::RefuseEntries(seed)) => {
            let (kept, refused) = refuse_entries(&body, *seed)?;
            body = kept;
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
            refused
        }
        _ => Vec::new(),
    };
    let refused = match &fault {
        Some(Fault::NeverAnswer) => std::future::pending().await,
        Some(Fault::DelayForward(_)) => None,
        Some(Fault::Error { status, code }) => Some((*status, refusal(code, String::new()))),
        Some(Fault::Cancelled(reasons)) => Some((400, cancelled(reasons))),
        Some(Fault::Conflict) if operation == "TransactWriteItems" => {
            // As many reasons as the transaction has writes, the conflict on one of them.
            let writes = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["TransactItems"].as_array().map(Vec::len))
                .unwrap_or(1);
            let on = fastrand::usize(0..writes.max(1));
            let reasons: Vec<&str> =
                (0..writes).map(|i| if i == on { "TransactionConflict" } else { "None" }).collect();
            Some((400, cancelled(&reasons)))
        }
        Some(Fault::Conflict) => Some((400, refusal("TransactionConflictException", String::new()))),
        _ => None,
    };
    if let Some((status, text)) = refused {
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = hyper::StatusCode::from_u16(status)?;
        response.headers_mut().insert("content-type", "application/x-amz-json-1.0".parse()?);
        return Ok(response);
    }
    let uri = format!("{upstream}{}", parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut request = Request::builder().method(parts.method).uri(uri);
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST {
            request = request.header(name, value);
        }
    }
    let request = request.body(Full::new(body))?;
    let delay = match fault {
        Some(Fault::DelayForward(delay)) => delay,
        _ => Duration::ZERO,
    };
    // On its own task: the request reaches the engine even after the client hung up.
    let sent = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        rules.1.lock().unwrap_or_else(|e| e.into_inner()).push(operation);
        let answer = client.request(request).await?;
        let (parts, body) = answer.into_parts();
        Ok::<_, ProxyError>((parts, body.collect().await?.to_bytes()))
    });
    let (mut parts, mut body) = sent.await??;
    match fault {
        Some(Fault::HoldAnswer(hold)) => tokio::time::sleep(hold).await,
        Some(Fault::DropAfterSend) => return Err("dropped after the engine answered".into()),
        Some(Fault::RefuseEntries(_)) if parts.status.is_success() => {
            body = answer_refused(&body, &refused_entries)?;
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
        }
        _ => {}
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// A PutEvents body without the entries it refuses (about one in two), and which it refused
/// (their places in the call).
fn refuse_entries(body: &Bytes, seed: u64) -> Result<(Bytes, Vec<bool>), ProxyError> {
    let mut request: serde_json::Value = serde_json::from_slice(body)?;
    let entries = request["Entries"].as_array_mut().ok_or("PutEvents without Entries")?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let refused: Vec<bool> = entries.iter().map(|_| rng.bool()).collect();
    let mut place = 0;
    entries.retain(|_| {
        place += 1;
        !refused[place - 1]
    });
    Ok((Bytes::from(serde_json::to_vec(&request)?), refused))
}

/// The engine's answer for the entries it was sent, with a refusal in each refused place.
fn answer_refused(body: &Bytes, refused: &[bool]) -> Result<Bytes, ProxyError> {
    let answer: serde_json::Value = serde_json::from_slice(body)?;
    let mut taken = answer["Entries"].as_array().cloned().unwrap_or_default().into_iter();
    let refusal = serde_json::json!({"ErrorCode": "ThrottlingException", "ErrorMessage": "injected by the test proxy"});
    let entries: Vec<serde_json::Value> = refused
        .iter()
        .map(|&refused| if refused { Some(refusal.clone()) } else { taken.next() })
        .collect::<Option<_>>()
        .ok_or("the engine answered fewer entries than it was sent")?;
    let failed = entries.iter().filter(|e| e.get("ErrorCode").is_some()).count();
    Ok(Bytes::from(serde_json::to_vec(&serde_json::json!({"FailedEntryCount": failed, "Entries": entries}))?))
}
