//! What a Lambda builds once at init: the DynamoDB client and JSON logging.
//!
//! Region and credentials come from aws-config's default chain (Lambda's environment
//! variables first, then profiles, web identity, container credentials, ...), which refreshes
//! credentials that expire, as a long-lived Managed Instances environment needs. It runs on
//! the project's own HTTP client, so aws-config neither builds its default client nor reads
//! the system's root store (two thirds of the cold start on the bench machine: Debian, 440
//! files); that client trusts only the Amazon Trust Services roots that DynamoDB's
//! certificates chain to (BENCHMARKS.md).

use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, SharedHttpClient};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use tracing_subscriber::filter::Targets;

pub use crate::settings::Settings;
use crate::store::AttemptStore;

/// Amazon Root CA 1-4 and Starfield Services Root CA G2 (which cross-signs them), as
/// published at amazontrust.com/repository. DynamoDB serves ATS certificates in every
/// commercial region.
const AMAZON_TRUST_SERVICES_ROOTS: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

/// rustls on ring, trusting the bundled roots only: the HTTP client of every AWS client here.
pub fn http_client() -> SharedHttpClient {
    let trust = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES_ROOTS))
        .build()
        // Infallible in aws-smithy-http-client 1.x; a default would quietly trust the system roots.
        .expect("a TLS context from a trust store");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(trust)
        .build_https()
}

/// Bounded timeouts, so an outage answers 503 well inside the Lambda timeout (with the
/// per-request deadline of `budget`), and standard retries with backoff for throttling.
fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(3)
}

fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(6))
        .build()
}

/// The client config for local runs (DynamoDB Local), on the functions' HTTP client, retries
/// and timeouts. Region, credentials and endpoint are the caller's.
pub fn dynamodb_config() -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http_client())
        .retry_config(retry_config())
        .timeout_config(timeout_config())
}

/// The functions' client: region, credentials and endpoint (`AWS_ENDPOINT_URL_DYNAMODB` points
/// it at DynamoDB Local) from `loader`'s chain, on the functions' HTTP client. Without a
/// region, init fails at once rather than every request later.
pub async fn dynamodb_client(loader: aws_config::ConfigLoader) -> Result<Client, String> {
    Ok(Client::new(&sdk_config(loader).await?))
}

/// The functions' default config loader.
pub fn config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
}

/// Every AWS client's config: region, credentials and endpoints (`AWS_ENDPOINT_URL_<SERVICE>`
/// points a client at a local engine) from `loader`'s chain, on the functions' HTTP client,
/// retries and timeouts. Without a region, init fails at once rather than every request later.
pub async fn sdk_config(loader: aws_config::ConfigLoader) -> Result<aws_config::SdkConfig, String> {
    let shared =
        loader.http_client(http_client()).retry_config(retry_config()).timeout_config(timeout_config()).load().await;
    if shared.region().is_none() {
        return Err("no AWS region: set AWS_REGION (Lambda sets it)".to_owned());
    }
    Ok(shared)
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
    let client = dynamodb_client(config_loader()).await?;
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

/// Crates that log raw payloads at `trace`: the runtime the whole event (bearer token and
/// receipts included), the SDK's HTTP stack what goes over the wire.
const RAW_PAYLOAD_TARGETS: [&str; 6] = [
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "hyper",
];

/// The `RUST_LOG` directives; `info` when unset or unreadable. Whatever they say, the crates
/// that log raw payloads, and every module of theirs, log at `debug` at most.
fn log_filter(directives: Option<&str>) -> Targets {
    use tracing::level_filters::LevelFilter;
    let given =
        directives.and_then(|d| d.parse().ok()).unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let raw = |target: &str| {
        RAW_PAYLOAD_TARGETS.iter().any(|r| target == *r || target.strip_prefix(r).is_some_and(|t| t.starts_with("::")))
    };
    let mut capped = match given.default_level() {
        Some(level) => Targets::new().with_default(level),
        None => Targets::new(),
    };
    for (target, level) in given.iter() {
        capped = capped.with_target(target, if raw(target) { level.min(LevelFilter::DEBUG) } else { level });
    }
    for target in RAW_PAYLOAD_TARGETS {
        if capped.would_enable(target, &tracing::Level::TRACE) {
            capped = capped.with_target(target, LevelFilter::DEBUG);
        }
    }
    capped
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::config::Region;

    #[tokio::test]
    async fn the_client_takes_its_region_from_the_chain() {
        let loader = aws_config::defaults(BehaviorVersion::latest()).empty_test_environment();
        // Building the client also builds its TLS config from the bundled roots.
        let client = dynamodb_client(loader.region(Region::new("eu-west-3"))).await.expect("client");
        assert_eq!(client.config().region().map(|r| r.as_ref()), Some("eu-west-3"));
    }

    #[tokio::test]
    async fn without_a_region_init_fails_and_says_why() {
        let loader = aws_config::defaults(BehaviorVersion::latest()).empty_test_environment();
        let err = dynamodb_client(loader).await.err().unwrap_or_default();
        assert!(err.contains("AWS_REGION"), "{err}");
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
        // `trace` everywhere, or on a module of theirs, still leaves out the raw event and what
        // goes over the wire.
        for directives in ["trace", "lambda_runtime::layers=trace,aws_smithy_runtime::client=trace,hyper::proto=trace"]
        {
            let filter = log_filter(Some(directives));
            for target in ["lambda_runtime::layers::api_response", "aws_smithy_runtime::client", "hyper::proto"] {
                assert!(!filter.would_enable(target, &tracing::Level::TRACE), "{directives}: {target}");
                assert!(filter.would_enable(target, &tracing::Level::DEBUG), "{directives}: {target}");
            }
        }
        assert!(log_filter(Some("trace")).would_enable("payment_attempts", &tracing::Level::TRACE));
        assert!(!log_filter(Some("warn")).would_enable("lambda_runtime", &tracing::Level::INFO));
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
