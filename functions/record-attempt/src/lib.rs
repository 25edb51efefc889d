//! `POST /v1/payments/attempts`: records a payment attempt, whatever its outcome.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use payment_attempts::api::{self, ApiError};
use payment_attempts::command::NewAttempt;
use payment_attempts::runtime::Settings;
use payment_attempts::time::Timestamp;
use payment_attempts::validation::InvalidRequest;
use payment_attempts::AttemptStore;

pub async fn handle(
    store: &AttemptStore,
    settings: &Settings,
    req: Request,
) -> Result<Response<Body>, Error> {
    Ok(api::serve(&req, record(store, settings, &req)).await)
}

async fn record(
    store: &AttemptStore,
    settings: &Settings,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let org = api::organization(req, settings)?;
    let command = NewAttempt::from_json(api::json_body(req)?)?;
    if command.organization_id.is_some() {
        return Err(InvalidRequest::invalid(
            "organization_id",
            "organization_id comes from your credentials and cannot be set in the body.",
        )
        .into());
    }
    let attempt = command.into_attempt(org, Timestamp::now());
    store.insert(&attempt).await?;
    tracing::info!(
        organization_id = %attempt.organization_id,
        attempt_id = %attempt.id,
        status = %attempt.status,
        "recorded payment attempt"
    );
    Ok(api::attempt_response(StatusCode::CREATED, &attempt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use payment_attempts::testing::{json, unreachable_store, with_org};

    #[tokio::test]
    async fn without_a_verified_organization_it_is_401_before_any_storage_call() {
        for req in [Request::default(), with_org(Request::default(), "acme")] {
            let response = handle(&unreachable_store(), &Settings::new("unused"), req)
                .await
                .unwrap();
            assert_eq!(response.status(), 401);
            assert!(response.headers().contains_key("request-id"));
        }
    }

    #[tokio::test]
    async fn invalid_body_is_400_naming_the_parameter() {
        let body = r#"{"capability": "c", "operation": "o", "amount_usd": 1e-7, "target_url": "https://x.example/"}"#;
        let req = with_org(Request::new(lambda_http::Body::from(body)), "org_acme");
        let response = handle(&unreachable_store(), &Settings::new("unused"), req)
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(json(&response)["error"]["param"], "amount_usd");
    }
}
