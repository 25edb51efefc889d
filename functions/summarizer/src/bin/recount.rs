//! `recount <organization_id> [session_id]`: catches an organization's (or one session's)
//! summary counters up with its attempts, for what the summarizer left out (a batch parked
//! in `SummarizerFailureQueue` after its retries, or a change reported by
//! `ChangesLeftOutOfSummaries`). It reads every attempt of the scope and its marker, counts
//! what the counters lack in the summarizer's own transactions, then compares the counters
//! with the attempts' totals. Idempotent, and safe to run while writes go on: run it again
//! if writes made the comparison differ.
//!
//! Takes `TABLE_NAME`, `ATTEMPT_SHARDS` and the AWS region and credentials as the functions
//! do (`AWS_ENDPOINT_URL_DYNAMODB` points it at DynamoDB Local). Prints one JSON line; exits
//! 1 if the counters still differ from the attempts.

use payment_attempts::id::SessionId;
use payment_attempts::runtime::{self, Settings};
use payment_attempts::OrganizationId;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: recount <organization_id> [session_id]";
    let (org, session) = match args.as_slice() {
        [org] => (org, None),
        [org, session] => (org, Some(session)),
        _ => return Err(usage.into()),
    };
    let org = OrganizationId::parse(org).ok_or("invalid organization_id")?;
    let session = session.map(|s| SessionId::parse(s).ok_or("invalid session_id")).transpose()?;
    let store = runtime::store(&Settings::from_env()?).await?;
    let recount = store.recount(&org, session.as_ref()).await?;
    let equal = recount.counted == recount.walked;
    let report = serde_json::json!({
        "organization_id": org, "session_id": session,
        "attempts": recount.attempts, "caught_up": recount.caught_up,
        "counters_equal_attempts": equal, "attempts_total": recount.walked, "counters": recount.counted,
    });
    println!("{report}");
    if !equal {
        eprintln!("recount: the counters still differ from the attempts (writes went on meanwhile?); run it again");
        std::process::exit(1);
    }
    Ok(())
}
