//! The time one invocation may take, so that every route answers inside the function timeout
//! (a 503 with `Retry-After` when DynamoDB is slow or silent), never with the gateway's own
//! timeout, and a write whose answer was lost can still be settled before the end.
//!
//! From the deadline Lambda gives each invocation (or, without one, [`FUNCTION_TIMEOUT`]),
//! [`RESPONSE_MARGIN`] is kept for answering; storage work ([`Deadline::work`]) ends
//! [`SETTLE_RESERVE`] before that, leaving time to read back a write whose answer was lost
//! until [`Deadline::settle`]; reads, with nothing to read back, may go on until then too. Every DynamoDB call, the SDK's own retries and the
//! pauses between contended tries included, is cut at these instants, so the worst case is
//! bounded by construction, whatever the number of calls: with the 10 s timeout, 7 s of
//! work, 2 s to settle, 1 s to answer.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `Globals.Function.Timeout` in `template.yaml` (a test pins the two together).
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Kept at the end of every invocation to build and send the answer.
pub const RESPONSE_MARGIN: Duration = Duration::from_secs(1);
/// Kept after the work to read back a write whose answer was lost: one read.
pub const SETTLE_RESERVE: Duration = Duration::from_secs(2);

/// When a request's storage work and its settling must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub work: Instant,
    pub settle: Instant,
}

impl Deadline {
    /// From Lambda's deadline (Unix milliseconds; `None` or 0 when there is none, as in unit
    /// tests), never more than [`FUNCTION_TIMEOUT`] away.
    pub fn for_invocation(lambda_deadline_ms: Option<u64>) -> Self {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Self::at(Instant::now(), now_ms, lambda_deadline_ms)
    }

    fn at(now: Instant, now_ms: u128, lambda_deadline_ms: Option<u64>) -> Self {
        let left = match lambda_deadline_ms.filter(|&ms| ms > 0) {
            Some(ms) => Duration::from_millis(u64::try_from(u128::from(ms).saturating_sub(now_ms)).unwrap_or(0)),
            None => FUNCTION_TIMEOUT,
        }
        .min(FUNCTION_TIMEOUT);
        let settle = now + left.saturating_sub(RESPONSE_MARGIN);
        let work = now + left.saturating_sub(RESPONSE_MARGIN + SETTLE_RESERVE);
        Deadline { work, settle }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_and_the_settling_end_before_the_timeout() {
        let now = Instant::now();
        let d = Deadline::at(now, 1_000_000, None);
        assert_eq!(d.work - now, Duration::from_secs(7));
        assert_eq!(d.settle - now, Duration::from_secs(9));
        // Lambda's own deadline, 4 s away.
        let d = Deadline::at(now, 1_000_000, Some(1_004_000));
        assert_eq!((d.work - now, d.settle - now), (Duration::from_secs(1), Duration::from_secs(3)));
        // Never beyond the function timeout, never before now.
        assert_eq!(Deadline::at(now, 1_000_000, Some(9_000_000)), Deadline::at(now, 1_000_000, None));
        let late = Deadline::at(now, 1_000_000, Some(999_000));
        assert_eq!((late.work, late.settle), (now, now));
    }
}
