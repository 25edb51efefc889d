//! `republish <organization_id> [<from> [<to>]]`: publishes again every change of the
//! organization's attempts created from `from` to `to` (RFC 3339 or Unix seconds, inclusive;
//! default: all), each version rebuilt from the attempt's history. For changes whose stream
//! batch the publisher gave up on (`PublisherFailuresAlarm`, docs/operations.md): their
//! events are published with the ids they would have had, so consumers that saw some of them
//! deduplicate the rest. Safe to run again.
//!
//! Takes `TABLE_NAME`, `EVENT_BUS_NAME`, `EVENT_SOURCE` and the AWS region and credentials as
//! the functions do (`AWS_ENDPOINT_URL_DYNAMODB` and `AWS_ENDPOINT_URL_EVENTBRIDGE` point it
//! at local engines). Prints one JSON line; exits 1 if some events could not be published.

use std::time::Duration;

use payment_attempts::page::{CreatedRange, ListQuery};
use payment_attempts::runtime::{self, Settings};
use payment_attempts::OrganizationId;
use publisher::Publisher;

type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: republish <organization_id> [<from> [<to>]]  (times: RFC 3339 or Unix seconds)";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (org, from, to) = match args.as_slice() {
        [org, rest @ ..] if rest.len() <= 2 => (org, rest.first(), rest.get(1)),
        _ => return Err(USAGE.into()),
    };
    let org = OrganizationId::parse(org).ok_or("invalid organization_id")?;
    let instant = |text: &String| {
        let nanos = payment_attempts::time::parse_instant_nanos(text).ok_or("invalid time")?;
        i64::try_from(nanos / 1_000_000).map_err(|_| "invalid time")
    };
    let created = CreatedRange { from_ms: from.map(instant).transpose()?, to_ms: to.map(instant).transpose()? };
    let store = runtime::store(&Settings::from_env()?).await?;
    let config = runtime::sdk_config(runtime::config_loader()).await?;
    let publisher = Publisher::from_env(aws_sdk_eventbridge::Client::new(&config))?;
    let attempts = store.every(&org, ListQuery { created, ..ListQuery::default() }).await?;
    let until = tokio::time::Instant::now() + Duration::from_secs(15 * 60);
    let done = publisher.republish(&attempts, until).await;
    println!(
        "{}",
        serde_json::json!({
            "organization_id": org, "attempts": attempts.len(), "events": done.events,
            "put_events_calls": done.calls, "unpublished": done.unpublished,
        })
    );
    if done.unpublished > 0 {
        eprintln!("republish: {} events not published; run it again", done.unpublished);
        std::process::exit(1);
    }
    Ok(())
}
