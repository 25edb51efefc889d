//! Helpers for the handlers' unit tests (feature `testing`).

use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

use crate::AttemptStore;

/// A store that must not be reached: its client has no endpoint or credentials.
pub fn unreachable_store() -> AttemptStore {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .build();
    AttemptStore::new(aws_sdk_dynamodb::Client::from_conf(config), "unused")
}

/// `req` as API Gateway passes it after its JWT authorizer accepted a token with `org_id: org`.
pub fn with_org(req: Request, org: &str) -> Request {
    let context: Result<ApiGatewayV2httpRequestContext, _> = serde_json::from_value(serde_json::json!({
        "requestId": "req-unit", "http": {"method": "GET"},
        "authorizer": {"jwt": {"claims": {"org_id": org}, "scopes": null}}
    }));
    match context {
        Ok(context) => req.with_request_context(RequestContext::ApiGatewayV2(context)),
        Err(e) => panic!("request context: {e}"),
    }
}

/// Asserts that `handle` answers 401, with a Request-Id, to a request without a verified
/// organization (none at all, or a malformed claim), before touching storage.
pub async fn assert_requires_organization<F, Fut>(handle: F)
where
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = Result<Response<Body>, lambda_http::Error>>,
{
    for req in [Request::default(), with_org(Request::default(), "acme")] {
        let response = match handle(req).await {
            Ok(response) => response,
            Err(e) => panic!("handler failed: {e}"),
        };
        assert_eq!(response.status(), 401);
        assert!(response.headers().contains_key("request-id"));
    }
}

/// The JSON body of a handler's response.
pub fn json(response: &Response<Body>) -> serde_json::Value {
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap_or_default(),
        _ => serde_json::Value::Null,
    }
}
