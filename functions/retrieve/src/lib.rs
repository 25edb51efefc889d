//! `GET /v1/payments/attempts/{id}`: one attempt of the caller's organization, with its history.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use payment_attempts::api::{self, ApiError};
use payment_attempts::runtime::Settings;
use payment_attempts::AttemptStore;

pub async fn handle(
    store: &AttemptStore,
    settings: &Settings,
    req: Request,
) -> Result<Response<Body>, Error> {
    Ok(api::serve(&req, retrieve(store, settings, &req)).await)
}

async fn retrieve(
    store: &AttemptStore,
    settings: &Settings,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let org = api::organization(req, settings)?;
    let id = api::attempt_id(req)?;
    // Another organization's attempt is under another partition key: it reads as missing.
    let attempt = store
        .get(&org, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(id.as_str()))?;
    tracing::info!(organization_id = %org, attempt_id = %id, "retrieved payment attempt");
    Ok(api::attempt_response(StatusCode::OK, &attempt))
}
