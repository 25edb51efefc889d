//! `GET /v1/payments/attempts`: a page of the caller's organization's attempts, newest first.

use lambda_http::{Body, Error, Request, Response};
use payment_attempts::api::{self, ApiError};
use payment_attempts::runtime::Settings;
use payment_attempts::AttemptStore;

pub async fn handle(
    store: &AttemptStore,
    settings: &Settings,
    req: Request,
) -> Result<Response<Body>, Error> {
    Ok(api::serve(&req, list(store, settings, &req)).await)
}

async fn list(
    store: &AttemptStore,
    settings: &Settings,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let org = api::organization(req, settings)?;
    let query = api::list_query(req)?;
    let page = store.list(&org, &query).await?;
    tracing::info!(organization_id = %org, count = page.attempts.len(), has_more = page.has_more, "listed payment attempts");
    Ok(api::list_response(&page))
}
