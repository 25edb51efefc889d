//! `POST /v1/payments/attempts` records a payment attempt, whatever its outcome;
//! `POST /v1/payments/attempts/{id}` moves a pending one to succeeded, failed or released.
//! Both honor `Idempotency-Key`.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use payment_attempts::api::{self, ApiError};
use payment_attempts::command::{NewAttempt, StatusUpdate};
use payment_attempts::idempotency::{self, IdempotencyRecord};
use payment_attempts::runtime::Settings;
use payment_attempts::time::Timestamp;
use payment_attempts::validation::InvalidRequest;
use payment_attempts::{AttemptStore, OrganizationId, StoreError};

/// Re-reads after losing a race before answering 409: the winner's change decides the answer.
const UPDATE_ATTEMPTS: usize = 3;

pub async fn handle(store: &AttemptStore, settings: &Settings, req: Request) -> Result<Response<Body>, Error> {
    Ok(api::serve(&req, write(store, settings, &req)).await)
}

async fn write(store: &AttemptStore, settings: &Settings, req: &Request) -> Result<Response<Body>, ApiError> {
    let org = api::organization(req, settings)?;
    let body = api::json_body(req)?;
    let key = api::idempotency_key(req)?;
    let has_id = lambda_http::RequestExt::path_parameters_ref(req).is_some_and(|p| p.first("id").is_some());
    let writer = Writer { store, org, key };
    if has_id {
        let id = api::attempt_id(req)?;
        writer.update(&id, body).await
    } else {
        writer.create(body).await
    }
}

/// One organization's write, under an optional idempotency key.
struct Writer<'a> {
    store: &'a AttemptStore,
    org: OrganizationId,
    key: Option<String>,
}

impl Writer<'_> {
    async fn create(&self, body: &[u8]) -> Result<Response<Body>, ApiError> {
        let fingerprint = idempotency::fingerprint("create", body);
        if let Some(replayed) = self.replay(&fingerprint).await? {
            return Ok(replayed);
        }
        let command = NewAttempt::from_json(body)?;
        refuse_organization_in_body(command.organization_id.is_some())?;
        let now = Timestamp::now();
        let attempt = command.into_attempt(self.org.clone(), now);
        let response = api::attempt_response(StatusCode::CREATED, &attempt);
        let record = self.record(&fingerprint, &response, now);
        match self.store.create(&attempt, record.as_ref()).await {
            Ok(()) => {
                tracing::info!(organization_id = %self.org, attempt_id = %attempt.id, status = %attempt.status, "recorded payment attempt");
                Ok(response)
            }
            Err(e) => self.lost_race(e, &fingerprint).await,
        }
    }

    async fn update(&self, id: &payment_attempts::AttemptId, body: &[u8]) -> Result<Response<Body>, ApiError> {
        let fingerprint = idempotency::fingerprint(&format!("update {id}"), body);
        if let Some(replayed) = self.replay(&fingerprint).await? {
            return Ok(replayed);
        }
        let update = StatusUpdate::from_json(body)?;
        refuse_organization_in_body(update.organization_id.is_some())?;
        for _ in 0..UPDATE_ATTEMPTS {
            let before = self.store.get(&self.org, id).await?.ok_or_else(|| ApiError::not_found(id.as_str()))?;
            let now = Timestamp::now();
            let after = update.clone().apply(&before, now).map_err(ApiError::invalid_transition)?;
            let response = api::attempt_response(StatusCode::OK, &after);
            let record = self.record(&fingerprint, &response, now);
            match self.store.update(&before, &after, record.as_ref()).await {
                Ok(()) => {
                    tracing::info!(organization_id = %self.org, attempt_id = %id, from = %before.status, to = %after.status, "payment attempt status changed");
                    return Ok(response);
                }
                // Someone else changed it first: read again, and the lifecycle answers.
                Err(StoreError::VersionConflict) => continue,
                Err(e) => return self.lost_race(e, &fingerprint).await,
            }
        }
        Err(ApiError::concurrent_update())
    }

    /// The stored response if this key was already used for this very request.
    async fn replay(&self, fingerprint: &str) -> Result<Option<Response<Body>>, ApiError> {
        let Some(key) = &self.key else { return Ok(None) };
        match self.store.idempotency_record(&self.org, key, Timestamp::now()).await? {
            Some(record) => api::replay(&record, fingerprint).map(Some),
            None => Ok(None),
        }
    }

    fn record(&self, fingerprint: &str, response: &Response<Body>, now: Timestamp) -> Option<IdempotencyRecord> {
        let key = self.key.as_deref()?;
        Some(IdempotencyRecord::new(key, fingerprint, response.status().as_u16(), api::body_text(response), now))
    }

    /// A concurrent request with the same key committed first: answer as a retry would.
    async fn lost_race(&self, e: StoreError, fingerprint: &str) -> Result<Response<Body>, ApiError> {
        match e {
            StoreError::IdempotencyKeyTaken => {
                self.replay(fingerprint).await?.ok_or_else(ApiError::idempotency_key_in_use)
            }
            other => Err(other.into()),
        }
    }
}

/// On the JWT routes the organization is the caller's; a body cannot choose another.
fn refuse_organization_in_body(named: bool) -> Result<(), ApiError> {
    if named {
        return Err(InvalidRequest::invalid(
            "organization_id",
            "organization_id comes from your credentials and cannot be set in the body.",
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use payment_attempts::testing::{json, unreachable_store, with_org};

    #[tokio::test]
    async fn without_a_verified_organization_it_is_401_before_any_storage_call() {
        for req in [Request::default(), with_org(Request::default(), "acme")] {
            let response = handle(&unreachable_store(), &Settings::new("unused"), req).await.unwrap();
            assert_eq!(response.status(), 401);
            assert!(response.headers().contains_key("request-id"));
        }
    }

    #[tokio::test]
    async fn invalid_body_is_400_naming_the_parameter() {
        let body = r#"{"capability": "c", "operation": "o", "amount_usd": 1e-7, "target_url": "https://x.example/"}"#;
        let req = with_org(Request::new(lambda_http::Body::from(body)), "org_acme");
        let response = handle(&unreachable_store(), &Settings::new("unused"), req).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(json(&response)["error"]["param"], "amount_usd");
    }
}
