//! What a Lambda builds once at init: the DynamoDB client and JSON logging.
//!
//! The client is built straight from the variables Lambda sets (region and the execution
//! role's credentials), without aws-config's provider chains, and it trusts only the Amazon
//! Trust Services roots that DynamoDB's certificates chain to. Reading and parsing the
//! system's roots was two thirds of the cold start on the bench machine (Debian, 440 files;
//! Lambda's al2023 has one bundle, so less there; BENCHMARKS.md).

use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use tracing_subscriber::filter::Targets;

pub use crate::settings::Settings;
use crate::store::AttemptStore;

/// Amazon Root CA 1-4 and Starfield Services Root CA G2 (which cross-signs them), as
/// published at amazontrust.com/repository. DynamoDB serves ATS certificates in every
/// commercial region.
const AMAZON_TRUST_SERVICES_ROOTS: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

/// The client config shared by the functions and local runs: rustls on ring, bounded timeouts
/// so an outage answers 503 well inside the Lambda timeout, standard retries with backoff for
/// throttling. Region, credentials and endpoint are the caller's.
pub fn dynamodb_config() -> aws_sdk_dynamodb::config::Builder {
    let trust = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES_ROOTS))
        .build()
        // Infallible in aws-smithy-http-client 1.x; a default would quietly trust the system roots.
        .expect("a TLS context from a trust store");
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(trust)
        .build_https();
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
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

/// The client from the variables Lambda sets: `AWS_REGION` and the execution role's
/// credentials. `AWS_ENDPOINT_URL_DYNAMODB` points it at DynamoDB Local.
pub fn dynamodb_client(env: impl Fn(&str) -> Option<String>) -> Result<Client, String> {
    let region = set(&env, "AWS_REGION").ok_or("AWS_REGION is not set")?;
    let mut config = dynamodb_config().region(Region::new(region)).credentials_provider(lambda_credentials(&env)?);
    if let Some(endpoint) = set(&env, "AWS_ENDPOINT_URL_DYNAMODB") {
        config = config.endpoint_url(endpoint);
    }
    Ok(Client::from_conf(config.build()))
}

/// The execution role's `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`,
/// which Lambda fixes for the life of the execution environment.
fn lambda_credentials(env: &impl Fn(&str) -> Option<String>) -> Result<Credentials, String> {
    let required = |name: &str| set(env, name).ok_or_else(|| format!("{name} is not set"));
    let (key, secret) = (required("AWS_ACCESS_KEY_ID")?, required("AWS_SECRET_ACCESS_KEY")?);
    Ok(Credentials::new(key, secret, set(env, "AWS_SESSION_TOKEN"), None, "lambda"))
}

/// A variable's value; empty is unset.
fn set(env: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// What every function builds once at init: logging, its settings and its store, kept for the
/// life of the process. They are read-only, so concurrent invokes (Managed Instances) share
/// them safely; nothing per request lives outside the request.
pub async fn init() -> Result<(&'static AttemptStore, &'static Settings), String> {
    init_logging();
    let settings = Settings::from_env()?;
    let store = store(&settings).await?;
    Ok((Box::leak(Box::new(store)), Box::leak(Box::new(settings))))
}

/// The store every handler uses, built once at init and connected before the first event:
/// on Lambda the TLS handshake then runs with init's full CPU rather than on the first
/// request. Against DynamoDB Local, which has no TLS, it adds about 2 ms to init (BENCHMARKS.md).
pub async fn store(settings: &Settings) -> Result<AttemptStore, String> {
    let client = dynamodb_client(|name| std::env::var(name).ok())?;
    let store = AttemptStore::new(client, &settings.table_name);
    store.warm_up().await;
    Ok(store)
}

/// JSON lines on stdout for CloudWatch. `RUST_LOG` filters by level and target
/// (`info,aws_smithy_runtime=debug`; default `info`). Logs name the request, organization
/// and attempt, never receipts, tokens or bodies.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_span_list(true)
        .with_target(false)
        .finish()
        .with(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
        .try_init();
}

/// The `RUST_LOG` directives; `info` when unset or unreadable.
fn log_filter(directives: Option<&str>) -> Targets {
    directives.and_then(|d| d.parse().ok()).unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lambda_vars() -> HashMap<&'static str, String> {
        [("AWS_REGION", "eu-west-3"), ("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "secret")]
            .into_iter()
            .map(|(k, v)| (k, v.to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn the_client_is_built_from_the_lambda_variables() {
        let vars = lambda_vars();
        // Building the client also builds its TLS config from the bundled roots.
        let client = dynamodb_client(|n| vars.get(n).cloned()).expect("client");
        assert_eq!(client.config().region().map(|r| r.as_ref()), Some("eu-west-3"));
    }

    #[test]
    fn an_empty_session_token_is_no_session_token() {
        let mut vars = lambda_vars();
        let credentials =
            |vars: &HashMap<_, String>| lambda_credentials(&|n: &str| vars.get(n).cloned()).expect("credentials");
        vars.insert("AWS_SESSION_TOKEN", "token".to_owned());
        assert_eq!(credentials(&vars).session_token(), Some("token"));
        vars.insert("AWS_SESSION_TOKEN", String::new());
        assert_eq!(credentials(&vars).session_token(), None);
        assert_eq!(credentials(&vars).access_key_id(), "AKID");
    }

    #[test]
    fn a_missing_variable_is_named() {
        for missing in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            let mut vars = lambda_vars();
            vars.remove(missing);
            let err = dynamodb_client(|n| vars.get(n).cloned()).err();
            assert_eq!(err, Some(format!("{missing} is not set")));
        }
    }

    #[test]
    fn rust_log_sets_levels_by_target() {
        use tracing::level_filters::LevelFilter;
        let filter = log_filter(Some("warn,payment_attempts=debug"));
        assert!(filter.would_enable("payment_attempts::store", &tracing::Level::DEBUG));
        assert!(!filter.would_enable("aws_smithy_runtime", &tracing::Level::INFO));
        for unset_or_unreadable in [None, Some("=!")] {
            let filter = log_filter(unset_or_unreadable);
            assert_eq!(filter.default_level(), Some(LevelFilter::INFO));
        }
    }

    #[test]
    fn the_bundled_roots_are_the_five_amazon_trust_services_roots() {
        let pem = std::str::from_utf8(AMAZON_TRUST_SERVICES_ROOTS).expect("ascii");
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 5);
        for name in
            ["Amazon_Root_CA_1", "Amazon_Root_CA_2", "Amazon_Root_CA_3", "Amazon_Root_CA_4", "Starfield_Services"]
        {
            assert!(pem.contains(name), "{name}");
        }
    }
}
