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

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
    use lambda_http::request::RequestContext;
    use lambda_http::RequestExt;

    /// A store that must not be reached: its client has no endpoint or credentials.
    fn unreachable_store() -> AttemptStore {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        AttemptStore::new(aws_sdk_dynamodb::Client::from_conf(config), "unused")
    }

    fn with_org(req: Request, org: &str) -> Request {
        let context: ApiGatewayV2httpRequestContext = serde_json::from_value(serde_json::json!({
            "requestId": "req-unit", "http": {"method": "GET"},
            "authorizer": {"jwt": {"claims": {"org_id": org}, "scopes": null}}
        }))
        .unwrap();
        req.with_request_context(RequestContext::ApiGatewayV2(context))
    }

    #[tokio::test]
    async fn no_identity_is_401_before_any_storage_call() {
        let response = handle(
            &unreachable_store(),
            &Settings::new("unused"),
            Request::default(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 401);
        assert!(response.headers().contains_key("request-id"));
    }

    #[tokio::test]
    async fn an_identity_with_a_malformed_organization_is_401() {
        let req = with_org(Request::default(), "acme");
        let response = handle(&unreachable_store(), &Settings::new("unused"), req)
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["request-id"], "req-unit");
    }

    #[tokio::test]
    async fn malformed_id_is_400_naming_the_parameter() {
        let req = with_org(Request::default(), "org_acme").with_path_parameters(
            std::collections::HashMap::from([("id".to_owned(), "payatt_XYZ".to_owned())]),
        );
        let response = handle(&unreachable_store(), &Settings::new("unused"), req)
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert!(format!("{:?}", response.body()).contains(r#"\"param\":\"id\""#));
    }
}
