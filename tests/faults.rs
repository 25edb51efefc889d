//! Storage outages: DynamoDB Local stopped under the service, then started again.

mod common;

use common::{attempt_body, service_on};
use payment_attempts_local::dynamodb_local::DynamoDbLocal;

const LIST: &str = "/v1/payments/attempts";

#[tokio::test]
async fn an_outage_is_a_503_with_retry_after_and_the_service_recovers() {
    let mut engine = DynamoDbLocal::start().expect("DynamoDB Local starts");
    let port = engine.port();
    let svc = service_on(&engine.endpoint()).await;
    let kept = svc.record("org_acme", &attempt_body(None, "1")).await;

    engine.stop();
    let id = kept["id"].as_str().unwrap();
    let body = attempt_body(None, "2");
    let during = [
        svc.post("org_acme", LIST, &body).await,
        svc.get("org_acme", LIST).await,
        svc.get("org_acme", &format!("{LIST}/{id}")).await,
    ];
    for reply in &during {
        assert_eq!(reply.status, 503, "{}", reply.text);
        assert_eq!(reply.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
        assert_eq!(reply.error().0, "storage_unavailable");
        assert_eq!(reply.json()["error"]["type"], "api_error");
        assert!(
            !reply.text.contains("Dispatch") && !reply.text.contains("127.0.0.1"),
            "no internals leak: {}",
            reply.text
        );
    }

    // The same service (same client, same handlers) serves again once storage is back. The
    // in-memory engine comes back empty, so the table is created again.
    let _engine = DynamoDbLocal::start_on(port).expect("DynamoDB Local restarts on its port");
    common::template().create_table(&svc.client, &svc.table).await.unwrap();
    let after = svc.post("org_acme", LIST, &body).await;
    assert_eq!(after.status, 201, "{}", after.text);
}
