//! Key formats. The organization leads every partition key, and each kind of item has
//! partition keys of its own, so that one organization's writes spread over many keys:
//!
//! | item | `pk` | `sk` |
//! |---|---|---|
//! | attempt | `ORG#<org>#ATT#<shard>` (one of the organization's shards, by id) | `ATT#<id>` |
//! | layout (its shards over time) | `ORG#<org>#LAYOUT` | `LAYOUT` |
//! | idempotency record | `ORG#<org>#IDEM#<key>` | `IDEM` |
//! | replay guard | `ORG#<org>#HASH#<request_hash>` | `HASH` |
//! | summarized version | `ORG#<org>#SUMD#<id>` | `SUMD` |
//! | organization and hourly counters | `ORG#<org>#SUM` | `ORG#<n>`, `HR#<hour>#<n>` |
//! | session counters | `ORG#<org>#SUM#SES#<session>` | `<n>` |
//!
//! Session index rows: `session_pk = ORG#<org>#SES#<session>`, sort key `id`. Ids, sessions and
//! organizations never contain `#` (`crate::id`), so no text can reach another key's space.

use crate::id::{AttemptId, OrganizationId, SessionId};
use crate::layout::Layout;

/// Attempts sort by `ATT#<id>` in their shard; the stream filter matches this prefix too.
pub(super) const ATTEMPT_SK_PREFIX: &str = "ATT#";
pub(super) const KEY_SK: &str = "IDEM";
pub(super) const GUARD_SK: &str = "HASH";
pub(super) const SUMMARIZED_SK: &str = "SUMD";
pub(super) const LAYOUT_SK: &str = "LAYOUT";

pub(super) fn shard_pk(org: &OrganizationId, shard: u16) -> String {
    format!("ORG#{org}#ATT#{shard:03}")
}

/// The attempt's shard: its id's last byte, modulo the shards in force when it was created.
pub(super) fn attempt_pk(org: &OrganizationId, id: &AttemptId, layout: &Layout) -> String {
    shard_pk(org, layout.shard(id.created_ms(), id.spread()))
}

pub(super) fn layout_pk(org: &OrganizationId) -> String {
    format!("ORG#{org}#LAYOUT")
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
