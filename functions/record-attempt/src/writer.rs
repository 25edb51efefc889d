//! Writes an attempt or a status change, with Stripe-style idempotency, for any caller.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use payment_attempts::api::{self, ApiError, Caller};
use payment_attempts::command::{NewAttempt, StatusUpdate};
use payment_attempts::idempotency::{self, IdempotencyRecord};
use payment_attempts::time::Timestamp;
use payment_attempts::{AttemptId, AttemptStore, OrganizationId, StoreError};

/// Re-reads after losing a race before answering 409: the winner's change decides the answer.
const UPDATE_ATTEMPTS: usize = 3;

pub struct Writer<'a> {
    store: &'a AttemptStore,
    caller: Caller,
    key: Option<String>,
}

impl<'a> Writer<'a> {
    pub fn new(store: &'a AttemptStore, caller: Caller, idempotency_key: Option<String>) -> Self {
        Writer { store, caller, key: idempotency_key }
    }

    /// Records a new attempt: 201 with it.
    pub async fn create(&self, body: &[u8]) -> Result<Response<Body>, ApiError> {
        let command = NewAttempt::from_json(body)?;
        let org = self.caller.organization_for(command.organization_id.clone())?;
        let fingerprint = idempotency::fingerprint("create", body);
        if let Some(replayed) = self.replay(&org, &fingerprint).await? {
            return Ok(replayed);
        }
        let now = Timestamp::now();
        let attempt = command.into_attempt(org.clone(), now);
        let response = api::attempt_response(StatusCode::CREATED, &attempt);
        let record = self.record(&fingerprint, &response, now);
        match self.store.create(&attempt, record.as_ref()).await {
            Ok(()) => {
                tracing::info!(organization_id = %org, attempt_id = %attempt.id, status = %attempt.status, "recorded payment attempt");
                Ok(response)
            }
            Err(e) => self.lost_race(&org, e, &fingerprint).await,
        }
    }

    /// Moves an attempt along its lifecycle: 200 with it.
    pub async fn update(&self, id: &AttemptId, body: &[u8]) -> Result<Response<Body>, ApiError> {
        let update = StatusUpdate::from_json(body)?;
        let org = self.caller.organization_for(update.organization_id.clone())?;
        let fingerprint = idempotency::fingerprint(&format!("update {id}"), body);
        if let Some(replayed) = self.replay(&org, &fingerprint).await? {
            return Ok(replayed);
        }
        for _ in 0..UPDATE_ATTEMPTS {
            let before = self.store.get(&org, id).await?.ok_or_else(|| ApiError::not_found(id.as_str()))?;
            let now = Timestamp::now();
            let after = update.clone().apply(&before, now).map_err(ApiError::invalid_transition)?;
            let response = api::attempt_response(StatusCode::OK, &after);
            let record = self.record(&fingerprint, &response, now);
            match self.store.update(&before, &after, record.as_ref()).await {
                Ok(()) => {
                    tracing::info!(organization_id = %org, attempt_id = %id, from = %before.status, to = %after.status, "payment attempt status changed");
                    return Ok(response);
                }
                // Someone else changed it first. If that was this request's own first try under
                // the same key, answer as it did; else read again, and the lifecycle answers.
                Err(StoreError::VersionConflict) => {
                    if let Some(replayed) = self.replay(&org, &fingerprint).await? {
                        return Ok(replayed);
                    }
                }
                Err(e) => return self.lost_race(&org, e, &fingerprint).await,
            }
        }
        Err(ApiError::concurrent_update())
    }

    /// The stored response if this key was already used for this very request.
    async fn replay(&self, org: &OrganizationId, fingerprint: &str) -> Result<Option<Response<Body>>, ApiError> {
        let Some(key) = &self.key else { return Ok(None) };
        match self.store.idempotency_record(org, key, Timestamp::now()).await? {
            Some(record) => api::replay(&record, fingerprint).map(Some),
            None => Ok(None),
        }
    }

    fn record(&self, fingerprint: &str, response: &Response<Body>, now: Timestamp) -> Option<IdempotencyRecord> {
        let key = self.key.as_deref()?;
        Some(IdempotencyRecord::new(key, fingerprint, response.status().as_u16(), api::body_text(response), now))
    }

    /// A concurrent request with the same key committed first: answer as a retry would.
    async fn lost_race(
        &self,
        org: &OrganizationId,
        e: StoreError,
        fingerprint: &str,
    ) -> Result<Response<Body>, ApiError> {
        match e {
            StoreError::IdempotencyKeyTaken => {
                self.replay(org, fingerprint).await?.ok_or_else(ApiError::idempotency_key_in_use)
            }
            other => Err(other.into()),
        }
    }
}
