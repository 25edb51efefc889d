//! Writes an attempt or a status change, with Stripe-style idempotency, for any caller.
//!
//! With an `Idempotency-Key`, a request first claims the key (a retry meanwhile gets 409
//! `idempotency_key_in_use`), then writes its response under it in the same transaction as
//! the attempt. A final refusal after the claim (404, 409 `invalid_state_transition` or
//! `duplicate_request`) is kept too, so a retry gets the same answer. Any other failure (a
//! 503, a 409 that says to retry) is settled: the write may have committed although its
//! answer was lost, so the key is given back only if the write did not happen, by a delete
//! that also fences out a write still on its way; if the write did commit, its stored
//! answer is the answer.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use payment_attempts::budget::Deadline;
use payment_attempts::command::{NewAttempt, StatusUpdate};
use payment_attempts::http::{self, ApiError, Caller};
use payment_attempts::idempotency::{self, IdempotencyRecord, KeyClaim, KeyState};
use payment_attempts::metrics::Metric;
use payment_attempts::time::Timestamp;
use payment_attempts::{AttemptId, AttemptStore, OrganizationId, StoreError};

/// Re-reads after losing a race before answering 409: the winner's change decides the answer.
const UPDATE_ATTEMPTS: usize = 3;

pub struct Writer {
    /// Bounded to the request's work deadline.
    store: AttemptStore,
    /// Bounded to its settle deadline: settling a key runs after the work gave up.
    settle: AttemptStore,
    caller: Caller,
    key: Option<String>,
}

/// How a keyed request starts: it already has an answer, or it runs (holding the key if any).
enum Start {
    Replay(Response<Body>),
    Run(Option<KeyClaim>),
}

impl Writer {
    pub fn new(store: &AttemptStore, caller: Caller, idempotency_key: Option<String>, deadline: Deadline) -> Self {
        Writer { store: store.until(deadline.work), settle: store.until(deadline.settle), caller, key: idempotency_key }
    }

    /// Records a new attempt: 201 with it.
    pub async fn create(&self, body: &[u8]) -> Result<Response<Body>, ApiError> {
        let command = NewAttempt::from_json(body)?;
        let org = self.caller.organization_for(command.organization_id.clone())?;
        let claim = match self.start(&org, &idempotency::fingerprint("create", body)).await? {
            Start::Replay(response) => return Ok(response),
            Start::Run(claim) => claim,
        };
        let now = Timestamp::now();
        let attempt = command.into_attempt(org.clone(), now);
        let response = http::attempt_response(StatusCode::CREATED, &attempt);
        let outcome = match self.store.create(&attempt, record(claim.as_ref(), &response, now).as_ref()).await {
            Ok(()) => {
                tracing::info!(organization_id = %org, attempt_id = %attempt.id, status = %attempt.status, "recorded payment attempt");
                let (status, rail, amount_usd) = (attempt.status, attempt.rail.as_deref(), &attempt.amount_usd);
                Metric::AttemptRecorded { status, rail, amount_usd }.emit();
                Ok(response)
            }
            Err(e) => Err(e.into()),
        };
        self.finish(&org, claim, outcome).await
    }

    /// Moves an attempt along its lifecycle: 200 with it.
    pub async fn update(&self, id: &AttemptId, body: &[u8]) -> Result<Response<Body>, ApiError> {
        let update = StatusUpdate::from_json(body)?;
        let org = self.caller.organization_for(update.organization_id.clone())?;
        let claim = match self.start(&org, &idempotency::fingerprint(&format!("update {id}"), body)).await? {
            Start::Replay(response) => return Ok(response),
            Start::Run(claim) => claim,
        };
        let outcome = self.apply(&org, id, update, claim.as_ref()).await;
        self.finish(&org, claim, outcome).await
    }

    async fn apply(
        &self,
        org: &OrganizationId,
        id: &AttemptId,
        update: StatusUpdate,
        claim: Option<&KeyClaim>,
    ) -> Result<Response<Body>, ApiError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let before = self.store.get(org, id).await?.ok_or_else(|| ApiError::not_found(id.as_str()))?;
            let now = Timestamp::now();
            let after = update.clone().apply(&before, now).map_err(ApiError::invalid_transition)?;
            let response = http::attempt_response(StatusCode::OK, &after);
            match self.store.update(&before, &after, record(claim, &response, now).as_ref()).await {
                Ok(()) => {
                    tracing::info!(organization_id = %org, attempt_id = %id, from = %before.status, to = %after.status, "payment attempt status changed");
                    let (status, rail, amount_usd) = (after.status, after.rail.as_deref(), &after.amount_usd);
                    Metric::AttemptSettled { status, rail, amount_usd }.emit();
                    return Ok(response);
                }
                // Someone else changed it first: read again, and the lifecycle answers.
                Err(StoreError::VersionConflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::concurrent_update())
    }

    /// Replays the key's answer, refuses while it is in flight or used for another request,
    /// or claims it for this one.
    async fn start(&self, org: &OrganizationId, fingerprint: &str) -> Result<Start, ApiError> {
        let Some(key) = &self.key else { return Ok(Start::Run(None)) };
        // Twice at most: a claim lost to a concurrent request is followed by what it holds.
        for _ in 0..2 {
            let now = Timestamp::now();
            match self.store.key_state(org, key, now).await? {
                Some(KeyState::Done(record)) => return http::replay(&record, fingerprint).map(Start::Replay),
                Some(KeyState::InFlight { fingerprint: held }) if held == fingerprint => {
                    return Err(ApiError::idempotency_key_in_use())
                }
                Some(KeyState::InFlight { .. }) => return Err(ApiError::idempotency_mismatch()),
                None => {
                    let claim = KeyClaim::new(key, fingerprint);
                    match self.store.claim_key(org, &claim, now).await {
                        Ok(()) => return Ok(Start::Run(Some(claim))),
                        Err(StoreError::IdempotencyKeyTaken) => continue,
                        Err(e @ StoreError::Unavailable(_)) => {
                            // The claim may have landed without an answer: give it back.
                            if let Err(release) = self.give_back(org, &claim).await {
                                tracing::warn!(error = %release, "could not give an unanswered claim back");
                            }
                            return Err(e.into());
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Err(ApiError::idempotency_key_in_use())
    }

    /// Settles the claimed key with the outcome: a write or a final refusal keeps it (a write
    /// stored it already, in its own transaction); anything else gives it back, unless the
    /// write committed all the same, whose stored answer is then the answer.
    async fn finish(
        &self,
        org: &OrganizationId,
        claim: Option<KeyClaim>,
        outcome: Result<Response<Body>, ApiError>,
    ) -> Result<Response<Body>, ApiError> {
        let (Some(claim), Err(error)) = (claim, &outcome) else { return outcome };
        if error.is_final() {
            let refusal = http::error_response(error);
            let record =
                IdempotencyRecord::new(&claim, error.status.as_u16(), http::body_text(&refusal), Timestamp::now());
            if let Err(e) = self.settle.finish_key(org, &record).await {
                tracing::warn!(error = %e, "could not keep the refusal under its idempotency key");
            }
            return outcome;
        }
        match self.give_back(org, &claim).await {
            // The write had not happened, and cannot commit under this claim any more: a
            // retry runs.
            Ok(true) => outcome,
            // No longer in flight under this claim: did its write commit?
            Ok(false) => match self.settle.key_state(org, &claim.key, Timestamp::now()).await {
                Ok(Some(KeyState::Done(record))) if record.token == claim.token => {
                    tracing::info!("the write committed though its answer was lost: answering what it stored");
                    Ok(http::recorded_response(&record))
                }
                Ok(_) => outcome,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the idempotency key back");
                    outcome
                }
            },
            Err(e) => {
                // Unsettled: a retry gets 409 idempotency_key_in_use, or the stored answer if
                // the write committed, until the claim runs out (idempotency::CLAIM_SECONDS).
                tracing::warn!(error = %e, "could not settle the idempotency key");
                outcome
            }
        }
    }

    /// [`AttemptStore::release_key`] within the settle deadline, again while a transaction of
    /// this claim is still running inside DynamoDB (it conflicts with the delete).
    async fn give_back(&self, org: &OrganizationId, claim: &KeyClaim) -> Result<bool, StoreError> {
        let mut pause = std::time::Duration::from_millis(20);
        loop {
            match self.settle.release_key(org, claim).await {
                Err(StoreError::Contention) => {
                    self.settle.pause(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(320));
                }
                settled => return settled,
            }
        }
    }
}

/// The response kept under the claimed key, written with the attempt.
fn record(claim: Option<&KeyClaim>, response: &Response<Body>, now: Timestamp) -> Option<IdempotencyRecord> {
    claim.map(|claim| IdempotencyRecord::new(claim, response.status().as_u16(), http::body_text(response), now))
}
