//! Record-attempt: every way payment attempts are written.
//!
//! - HTTP (`handle`): `POST /v1/payments/attempts` records an attempt, whatever its outcome;
//!   `POST /v1/payments/attempts/{id}` moves a pending one to succeeded, failed or released.
//!   Members write for the organization of their JWT; on the IAM-authorized `/internal` routes,
//!   trusted AWS writers name the organization in the body. Both honor `Idempotency-Key`.
//! - SQS and direct invoke ([`worker`]): the same commands as JSON, from trusted writers.
//!
//! All paths share one [`writer::Writer`]: the same validation and the same store code.

pub mod worker;
pub mod writer;

use lambda_http::{Body, Error, Request, RequestExt, Response};
use payment_attempts::http::{self, ApiError, Caller};
use payment_attempts::idempotency::Answer;
use payment_attempts::runtime::Settings;
use payment_attempts::AttemptStore;

use crate::writer::Writer;

pub async fn handle(store: &AttemptStore, settings: &Settings, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::serve(&req, write(store, settings, &req)).await)
}

async fn write(store: &AttemptStore, settings: &Settings, req: &Request) -> Result<Response<Body>, ApiError> {
    let answer = answer(store, settings, req).await?;
    Ok(http::answer_response(&answer))
}

async fn answer(store: &AttemptStore, settings: &Settings, req: &Request) -> Result<Answer, ApiError> {
    let caller = Caller::from_request(req, settings)?;
    http::no_query(req)?;
    let body = http::json_body(req)?;
    let writer = Writer::new(store, caller, http::idempotency_key(req)?, http::deadline(req));
    if req.path_parameters_ref().is_some_and(|p| p.first("id").is_some()) {
        writer.update(&http::attempt_id(req)?, body).await
    } else {
        writer.create(body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payment_attempts::testing::{assert_requires_organization, json, unreachable_store, with_org};

    #[tokio::test]
    async fn without_a_verified_organization_it_is_401_before_any_storage_call() {
        let (store, settings) = (&unreachable_store(), &Settings::new("unused"));
        assert_requires_organization(move |req| handle(store, settings, req)).await;
    }

    #[tokio::test]
    async fn invalid_body_is_400_naming_the_parameter() {
        let body = r#"{"capability": "c", "operation": "o", "amount_usd": 1e-7, "target_url": "https://x.example/"}"#;
        let mut req = with_org(Request::new(lambda_http::Body::from(body)), "org_acme");
        req.headers_mut().insert("content-type", lambda_http::http::HeaderValue::from_static("application/json"));
        let response = handle(&unreachable_store(), &Settings::new("unused"), req).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(json(&response)["error"]["param"], "amount_usd");
    }
}
