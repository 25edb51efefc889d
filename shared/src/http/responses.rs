//! Answers: the attempt, Stripe's list envelope, summaries, and replays of stored answers.

use lambda_http::http::header::{HeaderValue, CONTENT_TYPE};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde::Serialize;

use super::*;
use crate::attempt::{Attempt, View};
use crate::id::SessionId;
use crate::idempotency::Answer;
use crate::metrics::Metric;
use crate::page::{Cursor, Page};
use crate::summary::{Summary, SummaryScope, HOUR_MS};

pub const LIST_URL: &str = "/v1/payments/attempts";
/// Bodies are small JSON commands; receipts are capped well below this.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn summary_response(scope: &SummaryScope, summary: &Summary) -> Response<Body> {
    #[derive(Serialize)]
    struct Envelope<'a> {
        object: &'static str,
        session_id: Option<&'a SessionId>,
        created: Option<serde_json::Value>,
        #[serde(flatten)]
        summary: &'a Summary,
    }
    let hour = |h: i64| crate::time::Timestamp::from_unix_millis(h * HOUR_MS).map(|t| t.to_string());
    let (session_id, created) = match scope {
        SummaryScope::Session(session) => (Some(session), None),
        SummaryScope::Organization { hours } => {
            (None, hours.map(|(from, to)| serde_json::json!({ "gte": hour(from), "lt": hour(to + 1) })))
        }
    };
    json_response(StatusCode::OK, &Envelope { object: "payment_attempt_summary", session_id, created, summary })
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    match serde_json::to_string(body) {
        Ok(text) => {
            let mut response = Response::new(Body::Text(text));
            *response.status_mut() = status;
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "response serialization failed");
            error_response(&ApiError::internal())
        }
    }
}

pub fn attempt_response(status: StatusCode, attempt: &Attempt) -> Response<Body> {
    json_response(status, &attempt.view(View::Full))
}

/// A write's answer as an HTTP response, byte for byte; a replay says so.
pub fn answer_response(answer: &Answer) -> Response<Body> {
    let mut response = Response::new(Body::Text(answer.body.clone()));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if answer.replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
        Metric::IdempotentReplay.emit();
    }
    response
}

/// The attempt as a write answers it.
pub fn attempt_answer(status: u16, attempt: &Attempt) -> Answer {
    match serde_json::to_string(&attempt.view(View::Full)) {
        Ok(body) => Answer::new(status, body),
        Err(e) => {
            tracing::error!(error = %e, "response serialization failed");
            error_answer(&ApiError::internal())
        }
    }
}

/// Stripe's list envelope around seed 000's objects. A filtered page that stopped at the read
/// bound before filling also says where to go on, in `next_page`.
pub fn list_response(page: &Page) -> Response<Body> {
    #[derive(Serialize)]
    struct Envelope<T: Serialize> {
        object: &'static str,
        url: &'static str,
        has_more: bool,
        data: Vec<T>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_page: Option<serde_json::Value>,
    }
    let next_page = page.resume.as_ref().map(|cursor| match cursor {
        Cursor::StartingAfter(id) => serde_json::json!({ "starting_after": id }),
        Cursor::EndingBefore(id) => serde_json::json!({ "ending_before": id }),
    });
    let data = page.attempts.iter().map(|a| a.view(View::Row)).collect();
    json_response(StatusCode::OK, &Envelope { object: "list", url: LIST_URL, has_more: page.has_more, data, next_page })
}
