//! A minimal Lambda Runtime API on loopback: it hands events to one function process and
//! collects its responses, noting when the process first asks for work (the end of its init).
//! Several `/next` polls may wait at once, as under Lambda Managed Instances
//! (`AWS_LAMBDA_MAX_CONCURRENCY`); each invocation gets its own request id and trace id.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

const PREFIX: &str = "/2018-06-01/runtime";

pub struct RuntimeApi {
    pub addr: SocketAddr,
    events: mpsc::Sender<(String, Bytes)>,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

struct State {
    queue: Mutex<mpsc::Receiver<(String, Bytes)>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Result<Bytes, String>>>>,
    first_next: Mutex<Option<Instant>>,
    asked: Notify,
    /// Invocations handed out and not answered yet, and the most there ever were.
    in_flight: std::sync::Mutex<(usize, usize)>,
}

impl RuntimeApi {
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (events, queue) = mpsc::channel(1);
        let state = Arc::new(State {
            queue: Mutex::new(queue),
            pending: Mutex::new(HashMap::new()),
            first_next: Mutex::new(None),
            in_flight: std::sync::Mutex::new((0, 0)),
            asked: Notify::new(),
        });
        let served = state.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(RuntimeApi { addr, events, state, server })
    }

    /// When the function first asked for an event: the end of its init.
    pub async fn wait_first_next(&self) -> Instant {
        loop {
            let notified = self.state.asked.notified();
            if let Some(at) = *self.state.first_next.lock().await {
                return at;
            }
            notified.await;
        }
    }

    /// The most invocations the function was running at once.
    pub fn most_in_flight(&self) -> usize {
        self.state.in_flight.lock().map_or(0, |n| n.1)
    }

    /// The trace id the invocation `request_id` gets.
    pub fn trace_id(request_id: &str) -> String {
        format!("Root=1-00000000-{request_id}")
    }

    /// Hands `event` to the function and waits for its response.
    pub async fn invoke(&self, request_id: &str, event: Bytes) -> Result<Bytes, String> {
        let (done, answer) = oneshot::channel();
        self.state.pending.lock().await.insert(request_id.to_owned(), done);
        self.events.send((request_id.to_owned(), event)).await.map_err(|_| "runtime API closed".to_owned())?;
        answer.await.map_err(|_| "no response".to_owned())?
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

async fn answer(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if path == format!("{PREFIX}/invocation/next") {
        state.first_next.lock().await.get_or_insert_with(Instant::now);
        state.asked.notify_waiters();
        let Some((id, event)) = state.queue.lock().await.recv().await else {
            return reply(StatusCode::GONE, Bytes::new());
        };
        if let Ok(mut n) = state.in_flight.lock() {
            n.0 += 1;
            n.1 = n.1.max(n.0);
        }
        let trace = RuntimeApi::trace_id(&id);
        let mut response = reply(StatusCode::OK, event);
        let headers = response.headers_mut();
        let deadline =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() + 10_000;
        for (name, value) in [
            ("lambda-runtime-aws-request-id", id),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:000000000000:function:bench".to_owned()),
            ("lambda-runtime-trace-id", trace),
        ] {
            if let Ok(value) = value.parse() {
                headers.insert(name, value);
            }
        }
        return response;
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let rest = path.strip_prefix(&format!("{PREFIX}/invocation/")).unwrap_or("");
    let (id, outcome) = match rest.split_once('/') {
        Some((id, "response")) => (id, Ok(body)),
        Some((id, "error")) => (id, Err(String::from_utf8_lossy(&body).into_owned())),
        _ => return reply(StatusCode::ACCEPTED, Bytes::new()), // init errors and the rest: noted by the caller's timeout
    };
    if let Some(done) = state.pending.lock().await.remove(id) {
        if let Ok(mut n) = state.in_flight.lock() {
            n.0 = n.0.saturating_sub(1);
        }
        let _ = done.send(outcome);
    }
    reply(StatusCode::ACCEPTED, Bytes::new())
}
