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

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_http::lambda_runtime::Diagnostic;
use lambda_http::{Error, LambdaEvent};
use payment_attempts::budget::Deadline;
use payment_attempts::http::{self, ApiError, Caller};
use payment_attempts::idempotency::{self, Answer};
use payment_attempts::metrics::Metric;
use payment_attempts::validation::{self as v, InvalidRequest, JsonFields};
use payment_attempts::{AttemptId, AttemptStore};
use serde::Serialize;
use serde_json::value::RawValue;
use tracing::Instrument;

use crate::writer::Writer;

/// The worker's two kinds of event.
enum WorkerEvent {
    /// A batch from the queue.
    Sqs(SqsEvent),
    /// A direct invoke: one command, kept raw so that amounts keep their digits.
    Command(Box<RawValue>),
}

impl WorkerEvent {
    fn from_payload(payload: Box<RawValue>) -> Self {
        match serde_json::from_str::<SqsEvent>(payload.get()) {
            Ok(batch) => WorkerEvent::Sqs(batch),
            Err(_) => WorkerEvent::Command(payload),
        }
    }
}

/// What a direct invoke returns: the HTTP status and body the same command gets over HTTP.
#[derive(Serialize)]
pub struct CommandResult {
    pub status: u16,
    pub body: Box<RawValue>,
}

/// Handles an SQS event or a direct invoke.
/// A failed invoke's `errorType` is the error's code (`storage_unavailable`, ...), which
/// callers (Step Functions retriers, say) can match.
pub async fn handle(store: &AttemptStore, event: LambdaEvent<Box<RawValue>>) -> Result<Box<RawValue>, Diagnostic> {
    let LambdaEvent { payload, context } = event;
    // One budget for the whole invocation: messages left when it runs out fail fast and are
    // reported for retry.
    let deadline = Deadline::for_invocation(Some(context.deadline));
    let internal = |e: serde_json::Error| Diagnostic::from(Error::from(e));
    let reply = match WorkerEvent::from_payload(payload) {
        WorkerEvent::Sqs(batch) => serde_json::to_string(&sqs_batch(store, batch, deadline).await).map_err(internal)?,
        WorkerEvent::Command(command) => {
            let key = Some(format!("invoke:{}", context.request_id)).filter(|_| !context.request_id.is_empty());
            let answer = match observed(execute(store, command.get().as_bytes(), key, deadline).await) {
                Ok(answer) => answer,
                // Lambda retries an asynchronous invoke only when the function fails, under the
                // same request id (so the same key): the retry replays or runs, once. A caller
                // invoking synchronously gets the error body as the function error's message.
                Err(error) if !error.is_final() => {
                    let error_message = http::error_text(&error);
                    return Err(Diagnostic { error_type: error.code.as_str().to_owned(), error_message });
                }
                Err(error) => http::error_answer(&error),
            };
            let body = RawValue::from_string(answer.body).map_err(internal)?;
            serde_json::to_string(&CommandResult { status: answer.status, body }).map_err(internal)?
        }
    };
    RawValue::from_string(reply).map_err(internal)
}

async fn sqs_batch(store: &AttemptStore, batch: SqsEvent, deadline: Deadline) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in batch.records {
        let SqsMessage { message_id, body, .. } = message;
        let message_id = message_id.unwrap_or_default();
        let span = tracing::info_span!("message", message_id = %message_id);
        let outcome = match body.filter(|_| !message_id.is_empty()) {
            Some(body) => {
                let key = format!("sqs:{message_id}");
                execute(store, body.as_bytes(), Some(key), deadline).instrument(span.clone()).await
            }
            None => Err(InvalidRequest::missing("body").into()),
        };
        match span.in_scope(|| observed(outcome)) {
            Ok(answer) if answer.is_success() => {}
            // What failed, by its code and parameter (bounded), never the body: an answer can
            // carry an attempt and its receipt.
            outcome => {
                let (status, code, param) = match &outcome {
                    Ok(answer) => (answer.status, None, None),
                    Err(error) => (error.status().as_u16(), Some(error.code.as_str()), error.param.clone()),
                };
                span.in_scope(|| {
                    tracing::warn!(
                        status,
                        code,
                        param,
                        "message not recorded: reported for retry, then the dead-letter queue"
                    )
                });
                response.add_failure(message_id);
            }
        }
    }
    response
}

/// Logs and counts one command's outcome, as the HTTP wrapper does for a request.
fn observed(outcome: Result<Answer, ApiError>) -> Result<Answer, ApiError> {
    match &outcome {
        Ok(answer) if answer.replayed => Metric::IdempotentReplay.emit(),
        Ok(_) => {}
        Err(error) => {
            let (status, code) = (error.status().as_u16(), error.code.as_str());
            Metric::ErrorAnswer { status, code }.emit();
            tracing::info!(status, code, cause = error.cause.as_deref(), "command refused");
        }
    }
    outcome
}

/// Runs one command, as the HTTP route would.
async fn execute(
    store: &AttemptStore,
    command: &[u8],
    default_key: Option<String>,
    deadline: Deadline,
) -> Result<Answer, ApiError> {
    // Boxed: the whole write's future is deep enough to overflow the compiler's layout limit.
    Box::pin(run(store, command, default_key, deadline)).await
}

async fn run(
    store: &AttemptStore,
    command: &[u8],
    default_key: Option<String>,
    deadline: Deadline,
) -> Result<Answer, ApiError> {
    let mut fields = JsonFields::parse(command)?;
    let action = fields.take("action").ok_or_else(|| InvalidRequest::missing("action"))?;
    let key = v::optional_string(fields.take("idempotency_key"), "idempotency_key", 255)?;
    let key = key.map(|k| idempotency::parse_key(k.as_bytes())).transpose()?.or(default_key);
    let attempt_id = v::optional_string(fields.take("attempt_id"), "attempt_id", 64)?;
    let body = fields.take("body").ok_or_else(|| InvalidRequest::missing("body"))?;
    fields.reject_unknown(None)?;
    // The bound HTTP bodies have.
    if body.get().len() > http::MAX_BODY_BYTES {
        let why = format!("The command's body is larger than {} bytes.", http::MAX_BODY_BYTES);
        return Err(ApiError::new(http::ErrorCode::BodyTooLarge, why));
    }
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
