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
    async fn bad_query_is_400_naming_the_parameter() {
        let req = with_org(Request::default(), "org_acme").with_query_string_parameters(
            std::collections::HashMap::from([("limit".to_owned(), "0".to_owned())]),
        );
        let response = handle(&unreachable_store(), &Settings::new("unused"), req)
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert!(format!("{:?}", response.body()).contains(r#"\"param\":\"limit\""#));
    }
}
