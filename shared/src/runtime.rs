//! What a Lambda builds once at init: settings, the DynamoDB client, JSON logging.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::store::AttemptStore;

/// Configuration read from the environment, as `template.yaml` sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub table_name: String,
    /// The JWT claim that names the caller's organization.
    pub org_claim: String,
    /// IAM roles allowed to write attempts for any organization on the IAM-authorized routes.
    pub trusted_writer_roles: Vec<String>,
}

impl Settings {
    pub const DEFAULT_ORG_CLAIM: &'static str = "org_id";

    pub fn new(table_name: impl Into<String>) -> Self {
        Settings {
            table_name: table_name.into(),
            org_claim: Self::DEFAULT_ORG_CLAIM.to_owned(),
            trusted_writer_roles: Vec::new(),
        }
    }

    /// `TABLE_NAME` (required), `ORG_CLAIM` (default `org_id`) and `TRUSTED_WRITER_ROLE_ARNS`
    /// (comma-separated role ARNs, default none).
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`Settings::from_env`], from any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let table_name = var("TABLE_NAME").ok_or_else(|| "TABLE_NAME is not set".to_owned())?;
        let org_claim = var("ORG_CLAIM").filter(|c| !c.is_empty());
        Ok(Settings {
            org_claim: org_claim.unwrap_or_else(|| Self::DEFAULT_ORG_CLAIM.to_owned()),
            trusted_writer_roles: var("TRUSTED_WRITER_ROLE_ARNS")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            ..Self::new(table_name)
        })
    }
}

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
