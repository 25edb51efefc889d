//! Writes an attempt or a status change, with Stripe-style idempotency, for any caller, and
//! answers with an [`Answer`] that HTTP and the worker each render.
//!
//! With an `Idempotency-Key`, the answer is written under the key in the same transaction as
//! the change, where the key is free; a final refusal (404, 409 `invalid_state_transition`
//! or `duplicate_request`) is kept by one conditional put. A duplicate request, concurrent
//! or a retry after a lost answer, finds the key taken and is given what it keeps (or a 400
//! if it was used for another request). What the store could not settle ([`Written::Unknown`])
//! is a 503: the retry, under the same key, finds the answer or writes it, once.

use payment_attempts::budget::Deadline;
use payment_attempts::command::{NewAttempt, StatusUpdate};
use payment_attempts::http::{self, ApiError, Caller};
use payment_attempts::idempotency::{Answer, IdempotencyKey, KeyedRequest};
use payment_attempts::metrics::Metric;
use payment_attempts::store::Written;
use payment_attempts::time::Timestamp;
use payment_attempts::{Attempt, AttemptId, AttemptStore, OrganizationId};

/// Tries of a status change that another request's change overtook: then the lifecycle
/// answers from the attempt as it now is.
const UPDATE_ATTEMPTS: usize = 3;

pub struct Writer {
    /// Bounded to the request's deadlines: work, then reading back a lost answer.
    store: AttemptStore,
    caller: Caller,
    key: Option<IdempotencyKey>,
}

impl Writer {
    pub fn new(store: &AttemptStore, caller: Caller, idempotency_key: Option<String>, deadline: Deadline) -> Self {
        // The caller's class names the key's namespace: members and trusted writers never
        // meet on a key.
        let key = idempotency_key.map(|text| IdempotencyKey::new(caller.key_namespace(), text));
        Writer { store: store.within(deadline), caller, key }
    }

    /// Records a new attempt: 201 with it.
    pub async fn create(&self, body: &[u8]) -> Result<Answer, ApiError> {
        let command = NewAttempt::from_json(body)?;
        let org = self.caller.organization_for(command.organization_id.clone())?;
        let request = KeyedRequest::new(self.key.clone(), "create", body);
        let now = Timestamp::now();
        let attempt = command.into_attempt(org.clone(), now);
        let answer = http::attempt_answer(201, &attempt);
        // Boxed, as every store write here: the request's future stays small on the stack.
        let written = Box::pin(self.store.create(&attempt, request.record(&answer, now).as_ref())).await?;
        match Box::pin(self.conclude(&org, &request, written, answer)).await? {
            Concluded::Answer(answer) => Ok(answer),
            Concluded::Applied(answer) => {
                tracing::info!(organization_id = %org, attempt_id = %attempt.id, status = %attempt.status, "recorded payment attempt");
                let (status, rail, amount_usd) = (attempt.status, attempt.rail.as_deref(), &attempt.amount_usd);
                Metric::AttemptRecorded { status, rail, amount_usd }.emit();
                Ok(answer)
            }
            Concluded::Moved(_) => Err(ApiError::internal()),
        }
    }

    /// Moves an attempt along its lifecycle: 200 with it.
    pub async fn update(&self, id: &AttemptId, body: &[u8]) -> Result<Answer, ApiError> {
        let update = StatusUpdate::from_json(body)?;
        let org = self.caller.organization_for(update.organization_id.clone())?;
        let request = KeyedRequest::new(self.key.clone(), &format!("update {id}"), body);
        let mut current = self.store.get(&org, id).await?;
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(before) = current.take() else {
                return Box::pin(self.refuse(&org, &request, ApiError::not_found(id.as_str()))).await;
            };
            let now = Timestamp::now();
            let after = match update.clone().apply(&before, now, &request.token) {
                Ok(after) => after,
                Err(invalid) => {
                    return Box::pin(self.refuse(&org, &request, ApiError::invalid_transition(invalid))).await
                }
            };
            let answer = http::attempt_answer(200, &after);
            let written = Box::pin(self.store.update(&before, &after, request.record(&answer, now).as_ref())).await?;
            match Box::pin(self.conclude(&org, &request, written, answer)).await? {
                Concluded::Answer(answer) => return Ok(answer),
                Concluded::Applied(answer) => {
                    tracing::info!(organization_id = %org, attempt_id = %id, from = %before.status, to = %after.status, "payment attempt status changed");
                    let (status, rail, amount_usd) = (after.status, after.rail.as_deref(), &after.amount_usd);
                    Metric::AttemptSettled { status, rail, amount_usd }.emit();
                    return Ok(answer);
                }
                // Another request's change came first: the lifecycle answers from it.
                Concluded::Moved(now) => current = Some(*now),
            }
        }
        Err(ApiError::concurrent_update())
    }

    /// The answer a store outcome gives.
    async fn conclude(
        &self,
        org: &OrganizationId,
        request: &KeyedRequest,
        written: Written,
        answer: Answer,
    ) -> Result<Concluded, ApiError> {
        match written {
            Written::Applied => Ok(Concluded::Applied(answer)),
            Written::Answered(record) if record.token == request.token => {
                // This request's own write, found after its answer was lost.
                tracing::info!("the write committed though its answer was lost: answering what it stored");
                Ok(Concluded::Applied(answer))
            }
            Written::Answered(record) => {
                request.answer_from(&record).map(Concluded::Answer).ok_or_else(ApiError::idempotency_mismatch)
            }
            Written::Duplicate(holder) => {
                Box::pin(self.refuse(org, request, ApiError::duplicate_request(&holder))).await.map(Concluded::Answer)
            }
            Written::Moved(now) => Ok(Concluded::Moved(now)),
            Written::Busy { on_key: true } => Err(ApiError::idempotency_key_in_use()),
            Written::Busy { on_key: false } => Err(ApiError::concurrent_update()),
            Written::Unknown(why) => Err(ApiError { cause: Some(why), ..ApiError::unavailable() }),
        }
    }

    /// A final refusal, kept under the request's key so that a retry gets it again, unless
    /// the key already keeps an answer: then that answer.
    async fn refuse(
        &self,
        org: &OrganizationId,
        request: &KeyedRequest,
        refusal: ApiError,
    ) -> Result<Answer, ApiError> {
        let Some(record) = request.record(&http::error_answer(&refusal), Timestamp::now()) else {
            return Err(refusal);
        };
        match Box::pin(self.store.keep_answer(org, &record)).await? {
            Written::Applied => Err(refusal),
            // What the key keeps is the answer: another request's, this refusal (its put's
            // answer was lost), or this request's own change, stored by a try whose answer
            // was lost before the refusal was computed.
            Written::Answered(kept) => request.answer_from(&kept).ok_or_else(ApiError::idempotency_mismatch),
            Written::Busy { .. } => Err(ApiError::idempotency_key_in_use()),
            // Not kept: a retry decides again.
            Written::Unknown(why) => Err(ApiError { cause: Some(why), ..ApiError::unavailable() }),
            Written::Duplicate(_) | Written::Moved(_) => Err(ApiError::internal()),
        }
    }
}

/// What a write came to, for the route to finish.
enum Concluded {
    /// This request's change is stored: its answer.
    Applied(Answer),
    /// Another request's answer under the same key.
    Answer(Answer),
    /// The attempt moved under this change: try again from here.
    Moved(Box<Attempt>),
}
