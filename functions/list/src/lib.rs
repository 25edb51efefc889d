//! The operators' audit view: `GET /v1/payments/attempts`, a page of the caller's
//! organization's attempts, newest first, filtered from keys; and
//! `GET /v1/payments/attempts/summary`, counts and totals per status from counters.

use lambda_http::{Body, Error, Request, RequestExt, Response};
use payment_attempts::http::{self, ApiError};
use payment_attempts::metrics::Metric;
use payment_attempts::runtime::Settings;
use payment_attempts::AttemptStore;

pub async fn handle(store: &AttemptStore, settings: &Settings, req: Request) -> Result<Response<Body>, Error> {
    // A read has nothing to settle afterwards: it may use the settle reserve too.
    let store = &store.until(http::deadline(&req).settle);
    if req.raw_http_path().ends_with("/summary") {
        Ok(http::serve(&req, summary(store, settings, &req)).await)
    } else {
        Ok(http::serve(&req, list(store, settings, &req)).await)
    }
}

async fn summary(store: &AttemptStore, settings: &Settings, req: &Request) -> Result<Response<Body>, ApiError> {
    let org = http::organization(req, settings)?;
    let scope = http::summary_query(req)?;
    let summary = store.summary(&org, &scope).await?;
    tracing::info!(organization_id = %org, "summarized payment attempts");
    Ok(http::summary_response(&scope, &summary))
}

async fn list(store: &AttemptStore, settings: &Settings, req: &Request) -> Result<Response<Body>, ApiError> {
    let org = http::organization(req, settings)?;
    let query = http::list_query(req)?;
    let page = store.list(&org, &query).await?;
    Metric::ListPage { reads: page.reads, rows: page.attempts.len() }.emit();
    tracing::info!(organization_id = %org, count = page.attempts.len(), has_more = page.has_more, "listed payment attempts");
    Ok(http::list_response(&page))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::RequestExt;
    use payment_attempts::testing::{assert_requires_organization, json, unreachable_store, with_org};
    use std::collections::HashMap;

    #[tokio::test]
    async fn without_a_verified_organization_it_is_401_before_any_storage_call() {
        let (store, settings) = (&unreachable_store(), &Settings::new("unused"));
        assert_requires_organization(move |req| handle(store, settings, req)).await;
    }

    #[tokio::test]
    async fn bad_query_is_400_naming_the_parameter() {
        let query = HashMap::from([("limit".to_owned(), "0".to_owned())]);
        let req = with_org(Request::default(), "org_acme").with_query_string_parameters(query);
        let response = handle(&unreachable_store(), &Settings::new("unused"), req).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(json(&response)["error"]["param"], "limit");
    }
}
