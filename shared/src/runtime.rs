//! What a Lambda builds once at init: the DynamoDB client and JSON logging.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

pub use crate::settings::Settings;
use crate::store::AttemptStore;

/// The shared SDK config: rustls on ring, bounded timeouts so an outage answers 503 well
/// inside the Lambda timeout, standard retries with backoff for throttling.
/// `AWS_ENDPOINT_URL_DYNAMODB` points it at DynamoDB Local.
pub async fn sdk_config() -> aws_config::SdkConfig {
    sdk_config_loader().load().await
}

/// The loader behind [`sdk_config`], for local runs that add an endpoint and credentials.
pub fn sdk_config_loader() -> aws_config::ConfigLoader {
    let http_client =
        aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(6))
                .build(),
        )
}

/// The store every handler uses, built once at init.
pub async fn store(settings: &Settings) -> AttemptStore {
    AttemptStore::new(Client::new(&sdk_config().await), &settings.table_name)
}

/// JSON lines on stdout for CloudWatch; `RUST_LOG` filters (default `info`). Logs name the
/// request, organization and attempt, never receipts, tokens or bodies.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(true)
        .with_target(false)
        .try_init();
}
