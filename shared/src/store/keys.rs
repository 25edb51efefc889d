//! Key formats. The organization leads every partition key, and each kind of item has
//! partition keys of its own, so that one organization's writes spread over many keys:
//!
//! | item | `pk` | `sk` |
//! |---|---|---|
//! | attempt | `ORG#<org>#ATT#<shard>` (one of the organization's shards, by id) | `ATT#<id>` |
//! | idempotency record | `ORG#<org>#IDEM#<key>` | `IDEM` |
//! | replay guard | `ORG#<org>#HASH#<request_hash>` | `HASH` |
//! | summarized version | `ORG#<org>#SUMD#<id>` | `SUMD` |
//! | organization and hourly counters | `ORG#<org>#SUM` | `ORG#<n>`, `HR#<hour>#<n>` |
//! | session counters | `ORG#<org>#SUM#SES#<session>` | `<n>` |
//!
//! Session index rows: `session_pk = ORG#<org>#SES#<session>`, sort key `id`. Ids, sessions and
//! organizations never contain `#` (`crate::id`), so no text can reach another key's space.

use crate::id::{AttemptId, OrganizationId, SessionId};

/// Attempts sort by `ATT#<id>` in their shard; the stream filter matches this prefix too.
pub(super) const ATTEMPT_SK_PREFIX: &str = "ATT#";
pub(super) const KEY_SK: &str = "IDEM";
pub(super) const GUARD_SK: &str = "HASH";
pub(super) const SUMMARIZED_SK: &str = "SUMD";

/// Attempts are spread over this many partition keys per organization unless set otherwise.
pub const DEFAULT_SHARDS: u16 = 16;
/// The most shards an organization can have: an attempt's shard comes from one byte of its id.
pub const MAX_SHARDS: u16 = 256;

/// Which of `shards` holds the attempt: its id's last byte, which ids take in turns.
pub(super) fn shard_of(id: &AttemptId, shards: u16) -> u16 {
    u16::from(id.spread()) % shards.clamp(1, MAX_SHARDS)
}

pub(super) fn shard_pk(org: &OrganizationId, shard: u16) -> String {
    format!("ORG#{org}#ATT#{shard:03}")
}

pub(super) fn attempt_pk(org: &OrganizationId, id: &AttemptId, shards: u16) -> String {
    shard_pk(org, shard_of(id, shards))
}

pub(super) fn attempt_sk(id: &AttemptId) -> String {
    format!("{ATTEMPT_SK_PREFIX}{id}")
}

pub(super) fn session_key(org: &OrganizationId, session: &SessionId) -> String {
    format!("ORG#{org}#SES#{session}")
}

pub(super) fn key_pk(org: &OrganizationId, key: &str) -> String {
    format!("ORG#{org}#IDEM#{key}")
}

pub(super) fn guard_pk(org: &OrganizationId, hash: &str) -> String {
    format!("ORG#{org}#HASH#{hash}")
}

pub(super) fn summarized_pk(org: &OrganizationId, id: &AttemptId) -> String {
    format!("ORG#{org}#SUMD#{id}")
}

pub(super) fn summary_pk(org: &OrganizationId) -> String {
    format!("ORG#{org}#SUM")
}

pub(super) fn session_summary_pk(org: &OrganizationId, session: &SessionId) -> String {
    format!("ORG#{org}#SUM#SES#{session}")
}
