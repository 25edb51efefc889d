//! Key formats. The organization leads every partition key, and each kind of item has
//! partition keys of its own, so that one organization's writes spread over many keys:
//!
//! | item | `pk` | `sk` |
//! |---|---|---|
//! | attempt | `ORG#<org>#ATT#<shard>` (one of the organization's shards, by id) | `ATT#<id>` |
//! | layout (its shards over time) | `ORG#<org>#LAYOUT` | `LAYOUT` |
//! | idempotency record | `ORG#<org>#IDEM#<key>` (a member's), `ORG#<org>#WIDEM#<key>` (a trusted writer's) | `IDEM` |
//! | replay guard | `ORG#<org>#HASH#<request_hash>` | `HASH` |
//! | summarized version | `ORG#<org>#SUMD#<id>` | `SUMD` |
//! | organization and hourly counters | `ORG#<org>#SUM` | `ORG#<n>`, `HR#<hour>#<n>` |
//! | session counters | `ORG#<org>#SUM#SES#<session>` | `<n>` |
//!
//! Session index rows: `session_pk = ORG#<org>#SES#<session>`, sort key `id`. Ids, sessions and
//! organizations never contain `#` (`crate::id`), so no text can reach another key's space.

use crate::id::{AttemptId, OrganizationId, SessionId};
use crate::idempotency::{IdempotencyKey, KeyNamespace};
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

/// Each caller class's keys in a space of their own: the text before the key differs, and a
/// key's text cannot reach back before it.
pub(super) fn key_pk(org: &OrganizationId, key: &IdempotencyKey) -> String {
    let space = match key.namespace {
        KeyNamespace::Member => "IDEM",
        KeyNamespace::TrustedWriter => "WIDEM",
    };
    format!("ORG#{org}#{space}#{}", key.text)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_members_key_is_a_trusted_writers() {
        let org = OrganizationId::parse("org_acme").unwrap();
        let writer = key_pk(&org, &IdempotencyKey::new(KeyNamespace::TrustedWriter, "sqs:m".to_owned()));
        assert_eq!(writer, "ORG#org_acme#WIDEM#sqs:m");
        // Whatever a member's key says, its partition key starts with the member's space.
        for text in ["sqs:m", "#WIDEM#sqs:m", "WIDEM#sqs:m", "../WIDEM#sqs:m"] {
            let member = key_pk(&org, &IdempotencyKey::new(KeyNamespace::Member, text.to_owned()));
            assert!(member.starts_with("ORG#org_acme#IDEM#") && member != writer, "{text}");
        }
    }
}
