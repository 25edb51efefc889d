//! The operators' commands, on the table the functions use:
//!
//! - `admin recount <organization_id> [session_id]`: catches an organization's (or one
//!   session's) summary counters up with its attempts, for what the summarizer left out (a
//!   batch parked in `SummarizerFailureQueue` after its retries, or a change reported by
//!   `ChangesLeftOutOfSummaries`). It reads every attempt of the scope and its marker, counts
//!   what the counters lack in the summarizer's own transactions, then compares the counters
//!   with the attempts' totals. Idempotent, and safe while writes go on: run it again if
//!   writes made the comparison differ. Exits 1 if the counters still differ.
//! - `admin layout <organization_id>`: the organization's layout, its steps of shards.
//! - `admin grow <organization_id> <shards>`: spreads the organization's new attempts over
//!   `shards` (up to 64) from two layout lifetimes from now (about 2 minutes) on; nothing
//!   stored moves.
//!
//! Takes `TABLE_NAME` and the AWS region and credentials as the functions do
//! (`AWS_ENDPOINT_URL_DYNAMODB` points it at DynamoDB Local). Prints one JSON line.

use payment_attempts::id::SessionId;
use payment_attempts::runtime::{self, Settings};
use payment_attempts::OrganizationId;
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str =
    "usage: admin recount <organization_id> [session_id] | admin layout <organization_id> | admin grow <organization_id> <shards>";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let org = |text: &str| OrganizationId::parse(text).ok_or("invalid organization_id");
    let store = runtime::store(&Settings::from_env()?).await?;
    match args.as_slice() {
        ["recount", org_id, rest @ ..] if rest.len() <= 1 => {
            let org = org(org_id)?;
            let session = rest.first().map(|s| SessionId::parse(s).ok_or("invalid session_id")).transpose()?;
            let recount = store.recount(&org, session.as_ref()).await?;
            let equal = recount.counted == recount.walked;
            println!(
                "{}",
                json!({
                    "organization_id": org, "session_id": session,
                    "attempts": recount.attempts, "caught_up": recount.caught_up,
                    "counters_equal_attempts": equal, "attempts_total": recount.walked, "counters": recount.counted,
                })
            );
            if !equal {
                eprintln!(
                    "recount: the counters still differ from the attempts (writes went on meanwhile?); run it again"
                );
                std::process::exit(1);
            }
        }
        ["layout", org_id] => print_layout(&org(org_id)?, &store.layout(&org(org_id)?).await?),
        ["grow", org_id, shards] => {
            let shards: u16 = shards.parse().map_err(|_| "shards: a number from 2 to 64")?;
            print_layout(&org(org_id)?, &store.grow(&org(org_id)?, shards).await?);
        }
        _ => return Err(USAGE.into()),
    }
    Ok(())
}

fn print_layout(org: &OrganizationId, layout: &payment_attempts::layout::Layout) {
    let steps: Vec<_> = layout.steps().iter().map(|s| json!({"from_ms": s.from_ms, "shards": s.shards})).collect();
    println!("{}", json!({"organization_id": org, "steps": steps}));
}
