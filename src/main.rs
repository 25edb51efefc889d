//! `local-api`: the payment attempts API on loopback, without Docker or AWS.
//!
//! - `local-api` (or `local-api serve`): starts DynamoDB Local (or uses
//!   `AWS_ENDPOINT_URL_DYNAMODB`), creates the table from `template.yaml`, serves the
//!   template's routes on `127.0.0.1:${PORT:-3000}`, and runs the summarizer on the table's
//!   stream.
//! - `local-api token <org_id>`: prints an unsigned bearer token for that organization.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use payment_attempts::runtime::{self, Settings};
use payment_attempts::AttemptStore;
use payment_attempts_local::dynamodb_local::{self, DynamoDbLocal};
use payment_attempts_local::local_api::LocalApi;
use payment_attempts_local::stream_mapping::StreamMapping;
use payment_attempts_local::template::Template;
use payment_attempts_local::token;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = settings()?;
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["serve"] => serve(settings).await,
        ["token", org] => {
            let claims =
                serde_json::json!({ settings.org_claim.clone(): org, "sub": "local-user", "iss": "local-api" });
            println!("{}", token::unsigned(&claims));
            Ok(())
        }
        _ => Err("usage: local-api [serve] | local-api token <org_id>".into()),
    }
}

/// The Lambdas' settings, with a default table name for local runs.
fn settings() -> Result<Settings> {
    let local_table = || Some("payment-attempts-local".to_owned());
    Ok(Settings::from_vars(|name| {
        std::env::var(name).ok().or_else(|| (name == "TABLE_NAME").then(local_table).flatten())
    })?)
}

async fn serve(settings: Settings) -> Result<()> {
    runtime::init_logging();
    let template = Template::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml"))?;
    let (engine, endpoint) = match std::env::var("AWS_ENDPOINT_URL_DYNAMODB") {
        Ok(endpoint) => (None, endpoint),
        Err(_) => {
            let engine = DynamoDbLocal::start()?;
            let endpoint = engine.endpoint();
            (Some(engine), endpoint)
        }
    };
    let client = dynamodb_local::client(&endpoint);
    template.create_table(&client, &settings.table_name).await?;
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::warn!("local only: JWT claims are read from the bearer token WITHOUT verifying its signature");
    eprintln!(
        "payment attempts API on http://127.0.0.1:{port} (DynamoDB at {endpoint}, table {}, {} routes)\n\
         token: TOKEN=$(make -s token ORG=org_acme)",
        settings.table_name,
        template.routes.len()
    );
    let store = AttemptStore::new(client, &settings.table_name);
    // Summaries follow the stream as on Lambda: the mapping polls it 4 times a second.
    let mapping = Arc::new(StreamMapping::new(&template, &endpoint, &settings.table_name, store.clone()).await?);
    let summarizer = mapping.spawn(std::time::Duration::from_millis(250));
    let api = Arc::new(LocalApi::new(&template, store, settings));
    tokio::select! {
        served = api.serve(listener) => served?,
        _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
    }
    summarizer.abort();
    drop(engine);
    Ok(())
}
