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

/// The most a page's body may take, counted as Lambda carries it: the body is a JSON string
/// inside the response payload, so every `"` and `\` in it takes a byte more. Lambda's
/// synchronous payload is 6 MB (6,291,456 bytes); the rest is room for the envelope's own
/// fields and the headers.
pub const PAGE_BYTES: usize = 6_000_000;

/// Stripe's list envelope around the attempts' rows. A filtered page that stopped at its read
/// budget before filling also says where to go on, in `next_page`. A page whose rows would
/// not fit in [`PAGE_BYTES`] ends early with `has_more`: the rows nearest the cursor are
/// kept, and the next page starts after the last one shown, as any page.
pub fn list_response(page: &Page) -> Response<Body> {
    // Nearest where the walk started first: the front for newest-first walks, else the back.
    let mut walked: Vec<&Attempt> = page.attempts.iter().collect();
    if !page.newest_first {
        walked.reverse();
    }
    let (mut rows, mut bytes, mut cut) = (Vec::with_capacity(walked.len()), 0, false);
    for attempt in walked {
        let row = match serde_json::to_string(&attempt.view(View::Row)) {
            Ok(row) => row,
            Err(e) => {
                tracing::error!(error = %e, "response serialization failed");
                return error_response(&ApiError::internal());
            }
        };
        let size = escaped_len(&row) + 1;
        if !rows.is_empty() && bytes + size > PAGE_BYTES {
            cut = true;
            break;
        }
        bytes += size;
        rows.push(row);
    }
    if !page.newest_first {
        rows.reverse();
    }
    let next_page = page.resume.as_ref().filter(|_| !cut).map(|cursor| match cursor {
        Cursor::StartingAfter(id) => serde_json::json!({ "starting_after": id }),
        Cursor::EndingBefore(id) => serde_json::json!({ "ending_before": id }),
    });
    let mut text = format!(
        r#"{{"object":"list","url":"{LIST_URL}","has_more":{},"data":[{}]"#,
        page.has_more || cut,
        rows.join(",")
    );
    if let Some(next_page) = next_page {
        text.push_str(&format!(r#","next_page":{next_page}"#));
    }
    text.push('}');
    let mut response = Response::new(Body::Text(text));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The bytes `json` takes once escaped again as a JSON string.
fn escaped_len(json: &str) -> usize {
    json.len() + json.bytes().filter(|b| matches!(b, b'"' | b'\\')).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::NewAttempt;
    use crate::id::OrganizationId;
    use crate::time::Timestamp;

    fn body_text(response: &Response<Body>) -> &str {
        match response.body() {
            Body::Text(text) => text,
            other => panic!("{other:?}"),
        }
    }

    /// An attempt as large as the API takes, its receipt and metadata all quotes.
    fn heavy() -> Attempt {
        let quotes = "\"".repeat(8_000);
        let metadata: serde_json::Map<String, serde_json::Value> =
            (0..50).map(|i| (format!("k{i}"), serde_json::Value::String("\"".repeat(500)))).collect();
        let body = serde_json::json!({"capability": "c", "operation": "o", "amount_usd": 1,
            "target_url": "https://x.example/", "receipt": {"q": quotes}, "metadata": metadata});
        let org = OrganizationId::parse("org_acme").unwrap();
        NewAttempt::from_json(body.to_string().as_bytes()).unwrap().into_attempt(org, Timestamp::now())
    }

    #[test]
    fn a_page_of_large_rows_ends_early_within_lambdas_payload() {
        for newest_first in [true, false] {
            let attempts: Vec<Attempt> = (0..200).map(|_| heavy()).collect();
            let page = Page { attempts, has_more: false, resume: None, reads: 1, read_units: 1.0, newest_first };
            let response = list_response(&page);
            let text = body_text(&response);
            assert!(escaped_len(text) <= PAGE_BYTES + 200, "{} bytes as a Lambda payload", escaped_len(text));
            let json: serde_json::Value = serde_json::from_str(text).unwrap();
            let shown = json["data"].as_array().unwrap().len();
            assert!((10..200).contains(&shown), "{shown} rows");
            assert_eq!(json["has_more"], true, "the rest is on the next page");
            assert!(json.get("next_page").is_none());
        }
        // A page that fits is whole.
        let page = Page {
            attempts: vec![heavy(); 3],
            has_more: false,
            resume: None,
            reads: 1,
            read_units: 1.0,
            newest_first: true,
        };
        let json: serde_json::Value = serde_json::from_str(body_text(&list_response(&page))).unwrap();
        assert_eq!((json["data"].as_array().unwrap().len(), json["has_more"].clone()), (3, serde_json::json!(false)));
    }
}
