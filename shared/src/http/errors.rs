//! Errors as the API shows them, Stripe style: `{"error": {"type", "code", "message", "param"}}`.

use lambda_http::http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde::Serialize;

use crate::attempt::InvalidTransition;
use crate::id::AttemptId;
use crate::idempotency::{self, Answer};
#[cfg(feature = "dynamodb")]
use crate::store::StoreError;
use crate::validation::InvalidRequest;

/// Seconds a caller should wait after a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// Every error the API answers: its code owns its HTTP status, its Stripe type, and whether
/// it is final (the same request would get it again, so it is kept under the request's
/// Idempotency-Key) or says to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A parameter the request got wrong: validation's code (`parameter_missing`, ...).
    Invalid(&'static str),
    UnsupportedMediaType,
    BodyTooLarge,
    Unauthenticated,
    Forbidden,
    ResourceMissing,
    InvalidStateTransition,
    DuplicateRequest,
    IdempotencyKeyReused,
    IdempotencyKeyInUse,
    ConcurrentUpdate,
    StorageUnavailable,
    InternalError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Invalid(code) => code,
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::ResourceMissing => "resource_missing",
            ErrorCode::InvalidStateTransition => "invalid_state_transition",
            ErrorCode::DuplicateRequest => "duplicate_request",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::IdempotencyKeyInUse => "idempotency_key_in_use",
            ErrorCode::ConcurrentUpdate => "concurrent_update",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::InternalError => "internal_error",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Invalid(_) | ErrorCode::IdempotencyKeyReused => StatusCode::BAD_REQUEST,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::ResourceMissing => StatusCode::NOT_FOUND,
            ErrorCode::InvalidStateTransition
            | ErrorCode::DuplicateRequest
            | ErrorCode::IdempotencyKeyInUse
            | ErrorCode::ConcurrentUpdate => StatusCode::CONFLICT,
            ErrorCode::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stripe's error type.
    pub fn kind(self) -> &'static str {
        match self {
            ErrorCode::StorageUnavailable | ErrorCode::InternalError => "api_error",
            ErrorCode::IdempotencyKeyReused => "idempotency_error",
            _ => "invalid_request_error",
        }
    }

    /// A refusal the same request would get again. A 5xx, or a 409 that says another request
    /// is writing the same records, is not: the retry runs.
    pub fn is_final(self) -> bool {
        self.status().is_client_error() && !matches!(self, ErrorCode::IdempotencyKeyInUse | ErrorCode::ConcurrentUpdate)
    }
}

/// An error as the API shows it: `{"error": {"type", "code", "message", "param"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<String>,
    /// The attempt the error is about, when it is another one than asked for.
    pub payment_attempt: Option<String>,
    /// What went wrong inside, for the log; never shown to the caller.
    pub cause: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), param: None, payment_attempt: None, cause: None }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn is_final(&self) -> bool {
        self.code.is_final()
    }

    pub fn invalid_transition(e: InvalidTransition) -> Self {
        ApiError {
            param: Some("status".to_owned()),
            ..Self::new(
                ErrorCode::InvalidStateTransition,
                format!("{e}; only a pending attempt moves, to succeeded, failed or released."),
            )
        }
    }

    pub fn duplicate_request(holder: &AttemptId) -> Self {
        ApiError {
            param: Some("request_hash".to_owned()),
            payment_attempt: Some(holder.to_string()),
            ..Self::new(
                ErrorCode::DuplicateRequest,
                format!("This request_hash is already held by payment attempt {holder}, which is pending or succeeded: the call is a replay."),
            )
        }
    }

    pub fn idempotency_mismatch() -> Self {
        ApiError {
            param: Some(idempotency::HEADER.to_owned()),
            ..Self::new(
                ErrorCode::IdempotencyKeyReused,
                "Keys for idempotent requests can only be used with the same request they were first used with.",
            )
        }
    }

    pub fn idempotency_key_in_use() -> Self {
        ApiError {
            param: Some(idempotency::HEADER.to_owned()),
            ..Self::new(
                ErrorCode::IdempotencyKeyInUse,
                "A request with this Idempotency-Key is still being processed; retry shortly.",
            )
        }
    }

    pub fn concurrent_update() -> Self {
        Self::new(ErrorCode::ConcurrentUpdate, "Another request is writing the same records right now; retry shortly.")
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            ErrorCode::Unauthenticated,
            "No valid identity: send a bearer token whose claims name your organization.",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(ErrorCode::Forbidden, "This IAM role is not allowed to write payment attempts.")
    }

    pub fn not_found(id: &str) -> Self {
        ApiError {
            param: Some("id".to_owned()),
            ..Self::new(ErrorCode::ResourceMissing, format!("No such payment attempt: '{id}'"))
        }
    }

    /// A write that fails this way may or may not have been stored (its answer was lost):
    /// a retry with the same Idempotency-Key settles it without recording anything twice.
    pub fn unavailable() -> Self {
        Self::new(
            ErrorCode::StorageUnavailable,
            "Storage is temporarily unavailable. Retry after the Retry-After delay; retry writes with the same Idempotency-Key so that none is recorded twice.",
        )
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalError, "An internal error occurred; it has been logged.")
    }
}

impl From<InvalidRequest> for ApiError {
    fn from(e: InvalidRequest) -> Self {
        ApiError { param: e.param, ..Self::new(ErrorCode::Invalid(e.code), e.message) }
    }
}

/// A failed storage call: a 503 to retry, or a 500 for what a retry would not mend. Logged
/// where the answer is rendered, with the rest of the request's outcome.
#[cfg(feature = "dynamodb")]
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let cause = Some(e.to_string());
        let error = match e {
            StoreError::Unavailable(_) => Self::unavailable(),
            StoreError::Contention => Self::concurrent_update(),
            StoreError::Corrupt(_) | StoreError::Other(_) => Self::internal(),
        };
        ApiError { cause, ..error }
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

/// The error's body, Stripe style.
pub fn error_text(error: &ApiError) -> String {
    let body = ErrorBody {
        error: ErrorFields {
            kind: error.code.kind(),
            code: error.code.as_str(),
            message: &error.message,
            param: error.param.as_deref(),
            payment_attempt: error.payment_attempt.as_deref(),
        },
    };
    serde_json::to_string(&body).unwrap_or_else(|_| {
        r#"{"error":{"type":"api_error","code":"internal_error","message":"An internal error occurred."}}"#.to_owned()
    })
}

/// The error as a write's answer (what a key keeps of a final refusal).
pub fn error_answer(error: &ApiError) -> Answer {
    Answer::new(error.status().as_u16(), error_text(error))
}

pub fn error_response(error: &ApiError) -> Response<Body> {
    let mut response = Response::new(Body::Text(error_text(error)));
    *response.status_mut() = error.status();
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if error.status() == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    response
}
