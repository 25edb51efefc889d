//! `local-api`: the payment attempts API on loopback, without Docker or AWS.
//!
//! - `local-api` (or `local-api serve`): starts DynamoDB Local (or uses
//!   `AWS_ENDPOINT_URL_DYNAMODB`), creates the table from `template.yaml`, serves the
//!   template's routes on `127.0.0.1:${PORT:-3000}`, runs the summarizer on the table's
//!   stream, and the publisher, which puts every change on the template's bus in an
//!   EventBridge emulator (moto's; or `AWS_ENDPOINT_URL_EVENTBRIDGE`), where a subscribed
//!   queue prints each event as it arrives.
//! - `local-api token <org_id>`: prints an unsigned bearer token for that organization.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use payment_attempts::runtime::{self, Settings};
use payment_attempts::AttemptStore;
use payment_attempts_local::dynamodb_local::{self, DynamoDbLocal};
use payment_attempts_local::eventbridge_local::{self, EventBridgeLocal, Subscription};
use payment_attempts_local::local_api::LocalApi;
use payment_attempts_local::stream_mapping::{StreamFunction, StreamMapping};
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
    let (emulator, events_endpoint) = match std::env::var("AWS_ENDPOINT_URL_EVENTBRIDGE") {
        Ok(endpoint) => (None, endpoint),
        Err(_) => {
            let emulator = EventBridgeLocal::start()?;
            let endpoint = emulator.endpoint();
            (Some(emulator), endpoint)
        }
    };
    let client = dynamodb_local::client(&endpoint);
    template.create_table(&client, &settings.table_name).await?;
    let bus = &template.events.bus_name;
    eventbridge_local::create_bus(&events_endpoint, &template.events, bus).await?;
    // A rule and queue of this server's own: another server may share the emulator and bus.
    let tail_name = format!("{}-tail", settings.table_name);
    let tail = Subscription::create(&events_endpoint, &template.events, bus, &tail_name).await?;
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::warn!("local only: JWT claims are read from the bearer token WITHOUT verifying its signature");
    eprintln!(
        "payment attempts API on http://127.0.0.1:{port} (DynamoDB at {endpoint}, table {}, {} routes)\n\
         events on bus {bus} at {events_endpoint} (EventBridge emulator), printed below as they arrive\n\
         token: TOKEN=$(make -s token ORG=org_acme)",
        settings.table_name,
        template.routes.len()
    );
    let store = AttemptStore::new(client, &settings.table_name);
    // Summaries follow the stream as on Lambda: the mapping polls it 4 times a second.
    let mapping = Arc::new(StreamMapping::new(&template, &endpoint, &settings.table_name, store.clone()).await?);
    let summarizer = mapping.spawn(std::time::Duration::from_millis(250));
    // The publisher too, on its own mapping, putting on the bus.
    let events = eventbridge_local::client(&events_endpoint);
    let publisher = Arc::new(publisher::Publisher::new(events, bus, &template.events.source));
    let function = StreamFunction::Publisher(publisher);
    let mapping = Arc::new(StreamMapping::to(&template, &endpoint, &settings.table_name, function).await?);
    let publishing = mapping.spawn(std::time::Duration::from_millis(250));
    let printing = tokio::spawn(print_events(tail));
    let api = Arc::new(LocalApi::new(&template, store, settings));
    tokio::select! {
        served = api.serve(listener) => served?,
        _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
    }
    summarizer.abort();
    publishing.abort();
    printing.abort();
    drop(engine);
    drop(emulator);
    Ok(())
}

/// One line per event the subscribed queue receives.
async fn print_events(tail: Subscription) {
    let mut printed = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let Ok(delivered) = tail.delivered_since(printed).await else { continue };
        printed += delivered.len();
        for event in delivered.iter().map(|d| &d.event) {
            let detail = &event["detail"];
            let attempt = &detail["attempt"];
            eprintln!(
                "event {} {} {} {} {}",
                event["detail-type"].as_str().unwrap_or_default(),
                detail["id"].as_str().unwrap_or_default(),
                attempt["organization_id"].as_str().unwrap_or_default(),
                attempt["status"].as_str().unwrap_or_default(),
                attempt["amount_usd"],
            );
        }
    }
}
