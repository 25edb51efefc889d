//! Errors as the API shows them, Stripe style: `{"error": {"type", "code", "message", "param"}}`.

use lambda_http::http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde::Serialize;

use crate::attempt::InvalidTransition;
use crate::id::AttemptId;
use crate::idempotency::{self};
#[cfg(feature = "dynamodb")]
use crate::store::StoreError;
use crate::validation::InvalidRequest;

/// Seconds a caller should wait after a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// An error as the API shows it: `{"error": {"type", "code", "message", "param"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    /// The attempt the error is about, when it is another one than asked for.
    pub payment_attempt: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, code, message: message.into(), param: None, payment_attempt: None }
    }

    pub fn invalid_transition(e: InvalidTransition) -> Self {
        ApiError {
            param: Some("status".to_owned()),
            ..Self::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "invalid_state_transition",
                format!("{e}; only a pending attempt moves, to succeeded, failed or released."),
            )
        }
    }

    pub fn duplicate_request(holder: &AttemptId) -> Self {
        ApiError {
            param: Some("request_hash".to_owned()),
            payment_attempt: Some(holder.to_string()),
            ..Self::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "duplicate_request",
                format!("This request_hash is already held by payment attempt {holder}, which is pending or succeeded: the call is a replay."),
            )
        }
    }

    pub fn idempotency_mismatch() -> Self {
        ApiError {
            param: Some(idempotency::HEADER.to_owned()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                "idempotency_key_reused",
                "Keys for idempotent requests can only be used with the same request they were first used with.",
            )
        }
    }

    pub fn idempotency_key_in_use() -> Self {
        ApiError {
            param: Some(idempotency::HEADER.to_owned()),
            ..Self::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "idempotency_key_in_use",
                "A request with this Idempotency-Key is still being processed; retry shortly.",
            )
        }
    }

    pub fn concurrent_update() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "concurrent_update",
            "Another request is writing the same records right now; retry shortly.",
        )
    }

    /// A refusal the same request would get again: kept under its Idempotency-Key and
    /// replayed. A 5xx or a 409 that says "retry" is not final: the retry runs.
    pub fn is_final(&self) -> bool {
        self.status.is_client_error() && !matches!(self.code, "idempotency_key_in_use" | "concurrent_update")
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "unauthenticated",
            "No valid identity: send a bearer token whose claims name your organization.",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "forbidden",
            "This IAM role is not allowed to write payment attempts.",
        )
    }

    pub fn not_found(id: &str) -> Self {
        ApiError {
            param: Some("id".to_owned()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "resource_missing",
                format!("No such payment attempt: '{id}'"),
            )
        }
    }

    /// A write that fails this way may or may not have been stored (its answer was lost):
    /// a retry with the same Idempotency-Key settles it without recording anything twice.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "storage_unavailable",
            "Storage is temporarily unavailable. Retry after the Retry-After delay; retry writes with the same Idempotency-Key so that none is recorded twice.",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "internal_error",
            "An internal error occurred; it has been logged.",
        )
    }
}

impl From<InvalidRequest> for ApiError {
    fn from(e: InvalidRequest) -> Self {
        ApiError { param: e.param, ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", e.code, e.message) }
    }
}

#[cfg(feature = "dynamodb")]
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DuplicateRequest(holder) => Self::duplicate_request(&holder),
            StoreError::IdempotencyKeyInUse | StoreError::IdempotencyKeyTaken => Self::idempotency_key_in_use(),
            StoreError::VersionConflict | StoreError::Contention => Self::concurrent_update(),
            StoreError::Unavailable(why) => {
                tracing::warn!(error = %why, "storage unavailable");
                Self::unavailable()
            }
            other => {
                tracing::error!(error = %other, "storage failure");
                Self::internal()
            }
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_attempt: Option<&'a str>,
}

pub fn error_response(error: &ApiError) -> Response<Body> {
    let body = ErrorBody {
        error: ErrorFields {
            kind: error.kind,
            code: error.code,
            message: &error.message,
            param: error.param.as_deref(),
            payment_attempt: error.payment_attempt.as_deref(),
        },
    };
    let text = serde_json::to_string(&body).unwrap_or_else(|_| {
        r#"{"error":{"type":"api_error","code":"internal_error","message":"An internal error occurred."}}"#.to_owned()
    });
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = error.status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if error.status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    response
}
