//! `GET /v1/payments/attempts/{id}`: one attempt of the caller's organization, with its history.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use payment_attempts::http::{self, ApiError};
use payment_attempts::runtime::Settings;
use payment_attempts::AttemptStore;

pub async fn handle(store: &AttemptStore, settings: &Settings, req: Request) -> Result<Response<Body>, Error> {
    // A read has nothing to settle afterwards: it may use the settle reserve too.
    let store = &store.until(http::deadline(&req).settle);
    Ok(http::serve(&req, retrieve(store, settings, &req)).await)
}

async fn retrieve(store: &AttemptStore, settings: &Settings, req: &Request) -> Result<Response<Body>, ApiError> {
    let org = http::organization(req, settings)?;
    http::no_query(req)?;
    let id = http::attempt_id(req)?;
    // Another organization's attempt is under another partition key: it reads as missing.
    let attempt = store.get(&org, &id).await?.ok_or_else(|| ApiError::not_found(id.as_str()))?;
    tracing::info!(organization_id = %org, attempt_id = %id, "retrieved payment attempt");
    Ok(http::attempt_response(StatusCode::OK, &attempt))
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
    async fn malformed_id_is_400_naming_the_parameter() {
        let path = HashMap::from([("id".to_owned(), "payatt_XYZ".to_owned())]);
        let req = with_org(Request::default(), "org_acme").with_path_parameters(path);
        let response = handle(&unreachable_store(), &Settings::new("unused"), req).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(json(&response)["error"]["param"], "id");
    }
}
