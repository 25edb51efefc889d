//! Init with each way of building the DynamoDB client, for `make bench` to compare in one run
//! (`BENCH_CLIENT`):
//! - `env`: built by hand from Lambda's variables (how the functions did it until 2026-12);
//! - `chain`: aws-config's default chain on the functions' HTTP client (`runtime::dynamodb_client`,
//!   how they do it now);
//! - `webpki`: the same chain, trusting the Mozilla roots compiled in (webpki-root-certs)
//!   instead of the five bundled Amazon roots.
//!
//! Each connects as the functions do (the warm-up GetItem), then answers like hello.
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use base64::Engine;
use lambda_http::lambda_runtime::{self, service_fn, LambdaEvent};
use lambda_http::Error;
use payment_attempts::runtime;
use payment_attempts::AttemptStore;
use serde_json::{json, Value};

async fn client(variant: &str) -> Result<aws_sdk_dynamodb::Client, Error> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Ok(match variant {
        "env" => {
            let required = |name: &str| var(name).ok_or(format!("{name} is not set"));
            let credentials = Credentials::new(
                required("AWS_ACCESS_KEY_ID")?,
                required("AWS_SECRET_ACCESS_KEY")?,
                var("AWS_SESSION_TOKEN"),
                None,
                "lambda",
            );
            let mut config = runtime::dynamodb_config()
                .region(Region::new(required("AWS_REGION")?))
                .credentials_provider(credentials);
            if let Some(endpoint) = var("AWS_ENDPOINT_URL_DYNAMODB") {
                config = config.endpoint_url(endpoint);
            }
            aws_sdk_dynamodb::Client::from_conf(config.build())
        }
        "chain" => runtime::dynamodb_client(aws_config::defaults(BehaviorVersion::latest())).await?,
        "webpki" => {
            let mut pem = String::new();
            for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
                let body = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
                pem.push_str("-----BEGIN CERTIFICATE-----\n");
                for line in body.as_bytes().chunks(64) {
                    pem.push_str(std::str::from_utf8(line)?);
                    pem.push('\n');
                }
                pem.push_str("-----END CERTIFICATE-----\n");
            }
            let trust = TlsContext::builder()
                .with_trust_store(TrustStore::empty().with_pem_certificate(pem.as_bytes()))
                .build()?;
            let http = aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                .tls_context(trust)
                .build_https();
            let shared = aws_config::defaults(BehaviorVersion::latest()).http_client(http).load().await;
            aws_sdk_dynamodb::Client::new(&shared)
        }
        other => return Err(format!("BENCH_CLIENT={other}: env, chain or webpki").into()),
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let variant = std::env::var("BENCH_CLIENT").unwrap_or_default();
    AttemptStore::new(client(&variant).await?, "bench").warm_up().await;
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async {
        Ok::<_, Error>(json!({"statusCode": 200, "body": "hello"}))
    }))
    .await
}
