//! The request wrapper every handler runs in: its id, time budget, body and key, and the
//! span and `Request-Id` header of its answer.

use lambda_http::http::header::{HeaderValue, CONTENT_TYPE};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use std::future::Future;
use tracing::Instrument;

use super::*;
use crate::budget::Deadline;
use crate::idempotency::{self};
use crate::metrics::Metric;

/// API Gateway's request id when there is one, so logs and the header agree.
pub fn request_id(req: &Request) -> String {
    let from_gateway = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    from_gateway
        .or_else(|| req.lambda_context_ref().map(|c| c.request_id.clone()).filter(|id| !id.is_empty()))
        .unwrap_or_else(|| format!("req_{}", uuid::Uuid::now_v7().simple()))
}

/// The JSON body of a write, within size and media-type limits.
pub fn json_body(req: &Request) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    let content_type = req.headers().get(CONTENT_TYPE);
    if content_type.is_some() || !bytes.is_empty() {
        let content_type = content_type.and_then(|c| c.to_str().ok()).unwrap_or("");
        let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if media != "application/json" {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "Send the body as JSON with Content-Type: application/json.",
            ));
        }
    }
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
        ));
    }
    Ok(bytes)
}

/// The `Idempotency-Key` header, if the caller sent one.
pub fn idempotency_key(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(idempotency::HEADER) else { return Ok(None) };
    Ok(Some(idempotency::parse_key(value.as_bytes())?))
}

/// The request's time budget, from the invocation's deadline ([`Deadline`]).
pub fn deadline(req: &Request) -> Deadline {
    Deadline::for_invocation(req.lambda_context_ref().map(|c| c.deadline))
}

/// Runs a handler's work inside a span naming the request, and finishes its response: the
/// error body if it failed, and the `Request-Id` header always.
pub async fn serve(req: &Request, work: impl Future<Output = Result<Response<Body>, ApiError>>) -> Response<Body> {
    let request_id = request_id(req);
    let span = tracing::info_span!("request", request_id = %request_id);
    let result = work.instrument(span.clone()).await;
    span.in_scope(|| respond(&request_id, result))
}

fn respond(request_id: &str, result: Result<Response<Body>, ApiError>) -> Response<Body> {
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            let (status, code) = (error.status().as_u16(), error.code.as_str());
            Metric::ErrorAnswer { status, code }.emit();
            if error.status().is_server_error() {
                tracing::warn!(status, code, cause = error.cause.as_deref(), "request failed");
            } else {
                tracing::info!(status, code, param = error.param.as_deref(), "request refused");
            }
            error_response(&error)
        }
    };
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("request-id", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::InvalidRequest;
    use lambda_http::http::StatusCode;
    #[test]
    fn errors_render_stripe_style_with_retry_after_on_503() {
        let r = respond("req_1", Err(ApiError::unavailable()));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["request-id"], "req_1");
        let body: serde_json::Value = match r.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(body["error"]["type"], "api_error");
        assert_eq!(body["error"]["code"], "storage_unavailable");
        let r = respond("req_2", Err(InvalidRequest::invalid("limit", "Invalid limit.").into()));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.headers().get("retry-after").is_none());
    }
}
