//! SQS batches and direct invokes: the HTTP routes' commands, from trusted AWS writers.
//!
//! A command is `{"action": "create", "body": {...}}` or
//! `{"action": "update", "attempt_id": "payatt_...", "body": {...}}`, with an optional
//! `idempotency_key`; `body` is what the HTTP route takes, `organization_id` included.
//! From SQS, the key defaults to the message id, so a redelivered message records nothing
//! twice; a message that fails is reported in `batchItemFailures`, retried by SQS, and moved
//! to the dead-letter queue after `maxReceiveCount` receives. A direct invoke's key defaults
//! to its Lambda request id, which Lambda keeps when it retries an asynchronous invoke (AWS:
//! "duplicate invocations that have the same request ID indicate that the Lambda service
//! retried the function"); a caller that invokes again by itself gets a new request id and
//! passes `idempotency_key` to be recorded once.

use lambda_http::lambda_runtime::Diagnostic;
use lambda_http::{Body, Error, LambdaEvent, Response};
use payment_attempts::budget::Deadline;
use payment_attempts::http::{self, ApiError, Caller};
use payment_attempts::idempotency;
use payment_attempts::validation::{self as v, InvalidRequest, JsonFields};
use payment_attempts::{AttemptId, AttemptStore};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tracing::Instrument;

use crate::writer::Writer;

#[derive(Deserialize)]
struct SqsBatch {
    #[serde(rename = "Records")]
    records: Vec<SqsMessage>,
}

#[derive(Deserialize)]
struct SqsMessage {
    #[serde(rename = "messageId")]
    message_id: String,
    body: String,
}

#[derive(Serialize, Default)]
pub struct BatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<BatchItemFailure>,
}

#[derive(Serialize)]
pub struct BatchItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// What a direct invoke returns: the HTTP status and body the same command gets over HTTP.
#[derive(Serialize)]
pub struct CommandResult {
    pub status: u16,
    pub body: Box<RawValue>,
}

/// Handles an SQS event or a direct invoke; the payload stays raw so amounts keep their digits.
/// A failed invoke's `errorType` is the error's code (`storage_unavailable`, ...), which
/// callers (Step Functions retriers, say) can match.
pub async fn handle(store: &AttemptStore, event: LambdaEvent<Box<RawValue>>) -> Result<Box<RawValue>, Diagnostic> {
    let LambdaEvent { payload, context } = event;
    // One budget for the whole invocation: messages left when it runs out fail fast and are
    // reported for retry.
    let deadline = Deadline::for_invocation(Some(context.deadline));
    let internal = |e: serde_json::Error| Diagnostic::from(Error::from(e));
    let reply = match serde_json::from_str::<SqsBatch>(payload.get()) {
        Ok(batch) => serde_json::to_string(&sqs_batch(store, batch, deadline).await).map_err(internal)?,
        Err(_) => {
            let key = Some(format!("invoke:{}", context.request_id)).filter(|_| !context.request_id.is_empty());
            let response = match execute(store, payload.get().as_bytes(), key, deadline).await {
                // Lambda retries an asynchronous invoke only when the function fails, under the
                // same request id (so the same key): the retry replays or runs, once. A caller
                // invoking synchronously gets the error body as the function error's message.
                Err(error) if !error.is_final() => {
                    let error_message = http::body_text(&http::error_response(&error)).to_owned();
                    return Err(Diagnostic { error_type: error.code.to_owned(), error_message });
                }
                outcome => outcome.unwrap_or_else(|error| http::error_response(&error)),
            };
            let body = RawValue::from_string(http::body_text(&response).to_owned()).map_err(internal)?;
            serde_json::to_string(&CommandResult { status: response.status().as_u16(), body }).map_err(internal)?
        }
    };
    RawValue::from_string(reply).map_err(internal)
}

async fn sqs_batch(store: &AttemptStore, batch: SqsBatch, deadline: Deadline) -> BatchResponse {
    let mut failures = Vec::new();
    for message in batch.records {
        let span = tracing::info_span!("message", message_id = %message.message_id);
        let key = format!("sqs:{}", message.message_id);
        let response = execute(store, message.body.as_bytes(), Some(key), deadline)
            .instrument(span.clone())
            .await
            .unwrap_or_else(|error| http::error_response(&error));
        if !response.status().is_success() {
            // The error body names the rule that failed; it never holds receipts or tokens.
            span.in_scope(|| {
                tracing::warn!(
                    status = response.status().as_u16(),
                    reason = http::body_text(&response),
                    "message not recorded: reported for retry, then the dead-letter queue"
                )
            });
            failures.push(BatchItemFailure { item_identifier: message.message_id });
        }
    }
    BatchResponse { batch_item_failures: failures }
}

/// Runs one command, as the HTTP route would.
async fn execute(
    store: &AttemptStore,
    command: &[u8],
    default_key: Option<String>,
    deadline: Deadline,
) -> Result<Response<Body>, ApiError> {
    // Boxed: the whole write's future is deep enough to overflow the compiler's layout limit.
    Box::pin(run(store, command, default_key, deadline)).await
}

async fn run(
    store: &AttemptStore,
    command: &[u8],
    default_key: Option<String>,
    deadline: Deadline,
) -> Result<Response<Body>, ApiError> {
    let mut fields = JsonFields::parse(command)?;
    let action = fields.take("action").ok_or_else(|| InvalidRequest::missing("action"))?;
    let key = v::optional_string(fields.take("idempotency_key"), "idempotency_key", 255)?;
    let key = key.map(|k| idempotency::parse_key(k.as_bytes())).transpose()?.or(default_key);
    let attempt_id = v::optional_string(fields.take("attempt_id"), "attempt_id", 64)?;
    let body = fields.take("body").ok_or_else(|| InvalidRequest::missing("body"))?;
    fields.reject_unknown(None)?;
    // Whoever could invoke this function or send to its queue passed IAM: a trusted writer.
    let writer = Writer::new(store, Caller::TrustedWriter { role: "lambda-invoke".to_owned() }, key, deadline);
    match (v::string(&action, "action", 16)?.as_str(), attempt_id) {
        ("create", None) => writer.create(body.get().as_bytes()).await,
        ("update", Some(id)) => {
            let id =
                AttemptId::parse(&id).ok_or_else(|| InvalidRequest::invalid("attempt_id", "Invalid attempt_id."))?;
            writer.update(&id, body.get().as_bytes()).await
        }
        ("create", Some(_)) => Err(InvalidRequest::unknown("attempt_id").into()),
        ("update", None) => Err(InvalidRequest::missing("attempt_id").into()),
        _ => Err(InvalidRequest::invalid("action", "Invalid action: must be `create` or `update`.").into()),
    }
}
