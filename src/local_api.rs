//! The API on loopback: each request becomes the API Gateway v2 event API Gateway would send
//! (JWT claims read from the bearer token, unverified) and goes through the same handler a
//! Lambda runs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use lambda_http::{Body, RequestExt};
use payment_attempts::runtime::Settings;
use payment_attempts::AttemptStore;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

use crate::template::{match_path, Route, Template};
use crate::token;

/// Local stand-in for a SigV4 signature on IAM-authorized routes: the caller's role ARN.
pub const LOCAL_CALLER_ARN_HEADER: &str = "x-local-caller-arn";

/// The API's contract, served at `/openapi.yaml`.
pub const OPENAPI: &str = include_str!("../openapi.yaml");

/// API Gateway's payload limit for HTTP APIs.
const MAX_PAYLOAD_BYTES: usize = 10 * 1024 * 1024;

pub struct LocalApi {
    routes: Vec<Route>,
    /// Each invocation's deadline is this far away, as Lambda sets it from the timeout.
    function_timeout: Duration,
    store: AttemptStore,
    settings: Settings,
}

impl LocalApi {
    /// The API `template` declares, its functions running on `store`.
    pub fn new(template: &Template, store: AttemptStore, settings: Settings) -> Self {
        LocalApi { routes: template.routes.clone(), function_timeout: template.function_timeout, store, settings }
    }

    /// Serves connections until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, peer) = listener.accept().await?;
            let api = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let api = api.clone();
                    async move { Ok::<_, Infallible>(api.answer(req, peer).await) }
                });
                if let Err(e) =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
                {
                    tracing::debug!(error = %e, "connection closed");
                }
            });
        }
    }

    async fn answer(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        if parts.method == hyper::Method::GET && parts.uri.path() == "/openapi.yaml" {
            let mut response = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
            return response;
        }
        let body = match Limited::new(body, MAX_PAYLOAD_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
        };
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        let request = GatewayRequest {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            headers,
            body: body.to_vec(),
            source_ip: peer.ip().to_string(),
        };
        self.call(&request).await
    }

    /// What API Gateway would answer: routes the request, builds its event, invokes the function.
    pub async fn call(&self, request: &GatewayRequest) -> Response<Full<Bytes>> {
        // API Gateway answers a Host no URL can hold itself (the function's runtime would fail
        // to build the request from it).
        if request.header("host").is_some_and(|host| url::Url::parse(&format!("http://{host}/")).is_err()) {
            return gateway_error(StatusCode::BAD_REQUEST, "Bad Request");
        }
        // As API Gateway does, a literal segment beats a `{parameter}`: fewest parameters wins.
        let matched = self
            .routes
            .iter()
            .filter(|route| route.method == request.method)
            .filter_map(|route| Some((route, match_path(&route.path, &request.path)?)))
            .min_by_key(|(_, params)| params.len());
        // API Gateway answers unknown routes itself, without calling a function.
        let Some((route, params)) = matched else {
            return gateway_error(StatusCode::NOT_FOUND, "Not Found");
        };
        // Routed on the path as sent (`%2F` stays inside its segment); HTTP APIs then hand the
        // function the path percent-decoded, in `rawPath` and in the path parameters alike
        // (REST APIs and function URLs keep it encoded).
        let params: Vec<(String, String)> = params.into_iter().map(|(k, v)| (k, percent_decode(&v))).collect();
        let request = &GatewayRequest { path: percent_decode(&request.path), ..request.clone() };
        // The authorizers answer before any function runs: an IAM route needs a signature (here,
        // the caller's role in a header), a JWT route a bearer token it can read.
        if route.iam {
            if request.header(LOCAL_CALLER_ARN_HEADER).is_none() {
                return gateway_error(StatusCode::FORBIDDEN, "Forbidden");
            }
        } else if request.header("authorization").and_then(token::claims).is_none() {
            return gateway_error(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
        let event = request.to_event(route, &params);
        let lambda_request = match lambda_http::request::from_str(&event.to_string()) {
            Ok(lambda_request) => lambda_request,
            Err(e) => {
                tracing::error!(error = %e, "could not build the API Gateway event");
                return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
        };
        match self.invoke(&route.function, lambda_request).await {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let bytes = match body {
                    Body::Text(text) => Bytes::from(text),
                    Body::Binary(bytes) => Bytes::from(bytes),
                    _ => Bytes::new(),
                };
                Response::from_parts(parts, Full::new(bytes))
            }
            // A Lambda that returns an error is a 500 from API Gateway.
            Err(e) => {
                tracing::error!(error = %e, "function failed");
                gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }

    /// Runs the handler of the function named in `template.yaml`, as its Lambda would.
    pub async fn invoke(
        &self,
        function: &str,
        request: lambda_http::Request,
    ) -> Result<lambda_http::Response<Body>, lambda_http::Error> {
        let request = request.with_lambda_context(self.context());
        let (store, settings) = (&self.store, &self.settings);
        match function {
            "list" => list::handle(store, settings, request).await,
            "retrieve" => retrieve::handle(store, settings, request).await,
            "record-attempt" => record_attempt::handle(store, settings, request).await,
            other => Err(format!("template.yaml routes to `{other}`, which the local server does not know").into()),
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The invocation context Lambda gives a function: its request id and deadline.
    fn context(&self) -> lambda_http::Context {
        let mut context = lambda_http::Context::default();
        context.request_id = uuid::Uuid::now_v7().hyphenated().to_string();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        context.deadline = u64::try_from((now + self.function_timeout).as_millis()).unwrap_or(u64::MAX);
        context
    }
}

/// An HTTP request as API Gateway receives it.
#[derive(Debug, Clone, Default)]
pub struct GatewayRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub source_ip: String,
}

fn gateway_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(json!({ "message": message }).to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

impl GatewayRequest {
    /// A request from a client on loopback; `target` is the path with an optional query.
    pub fn from_loopback(method: &str, target: &str, headers: Vec<(String, String)>, body: Vec<u8>) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        GatewayRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
            body,
            source_ip: "127.0.0.1".to_owned(),
        }
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The payload format 2.0 event API Gateway sends for this request on `route`.
    pub fn to_event(&self, route: &Route, path_params: &[(String, String)]) -> Value {
        let headers = self.gateway_headers();
        let route_key = format!("{} {}", route.method, route.path);
        let mut event = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": self.path,
            "rawQueryString": self.query,
            "requestContext": self.request_context(route, &route_key, &headers),
            "headers": headers,
            "isBase64Encoded": false,
        });
        if !path_params.is_empty() {
            let params: Map<String, Value> =
                path_params.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            event["pathParameters"] = params.into();
        }
        if !self.body.is_empty() {
            event["body"] = match std::str::from_utf8(&self.body) {
                Ok(text) => Value::String(text.to_owned()),
                Err(_) => {
                    use base64::Engine;
                    event["isBase64Encoded"] = Value::Bool(true);
                    Value::String(base64::engine::general_purpose::STANDARD.encode(&self.body))
                }
            };
        }
        event
    }

    /// The headers as payload 2.0 carries them: names lower-cased, repeats joined by commas,
    /// and the forwarding headers the gateway sets whatever the client sent.
    fn gateway_headers(&self) -> Map<String, Value> {
        let mut headers = Map::new();
        for (name, value) in &self.headers {
            let name = name.to_ascii_lowercase();
            match headers.get_mut(&name) {
                Some(Value::String(existing)) => {
                    existing.push(',');
                    existing.push_str(value);
                }
                _ => {
                    headers.insert(name, Value::String(value.clone()));
                }
            }
        }
        // The local server speaks plain HTTP.
        headers.insert("x-forwarded-proto".to_owned(), Value::String("http".to_owned()));
        headers.insert("x-forwarded-for".to_owned(), Value::String(self.source_ip.clone()));
        headers
    }

    /// `requestContext`, with the caller's identity as the route's authorizer reports it.
    fn request_context(&self, route: &Route, route_key: &str, headers: &Map<String, Value>) -> Value {
        let now = time::OffsetDateTime::now_utc();
        let mut context = json!({
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": self.method,
                "path": self.path,
                "protocol": "HTTP/1.1",
                "sourceIp": self.source_ip,
                "userAgent": headers.get("user-agent").cloned().unwrap_or(Value::String(String::new())),
            },
            "requestId": format!("local-{}", uuid::Uuid::now_v7().simple()),
            "routeKey": route_key,
            "stage": "$default",
            "timeEpoch": now.unix_timestamp() * 1000 + i64::from(now.millisecond()),
        });
        if route.iam {
            // Locally the caller's role is taken from a header; API Gateway checks the SigV4
            // signature and reports the signer's ARN.
            if let Some(arn) = headers.get(LOCAL_CALLER_ARN_HEADER).and_then(Value::as_str) {
                let account = arn.split(':').nth(4).unwrap_or_default();
                context["authorizer"] = json!({ "iam": { "userArn": arn, "accountId": account, "callerId": "LOCAL" } });
            }
        } else {
            // Locally the token's claims are taken as they are; API Gateway verifies the signature first.
            let authorization = headers.get("authorization").and_then(Value::as_str);
            if let Some(claims) = authorization.and_then(token::claims) {
                context["authorizer"] = json!({ "jwt": { "claims": claims, "scopes": null } });
            }
        }
        context
    }
}

/// `%XX` sequences decoded; invalid UTF-8 after decoding is replaced, as text must be.
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn paths_are_percent_decoded() {
        assert_eq!(percent_decode("/v1/payments/attempts/payatt_%30%61"), "/v1/payments/attempts/payatt_0a");
        assert_eq!(percent_decode("/a%20b/%2F/%zz/%4"), "/a b///%zz/%4");
        assert_eq!(percent_decode("/%FF"), "/\u{fffd}");
    }
}
