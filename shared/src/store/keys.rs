//! Key formats: the organization leads every partition key.

use crate::id::{AttemptId, OrganizationId, SessionId};

/// Attempts sort by `ATT#<id>` in the organization's partition.
pub(super) const ATTEMPT_SK_PREFIX: &str = "ATT#";

pub(super) fn org_key(org: &OrganizationId) -> String {
    format!("ORG#{org}")
}

pub(super) fn session_key(org: &OrganizationId, session: &SessionId) -> String {
    format!("ORG#{org}#SES#{session}")
}

pub(super) fn attempt_sk(id: &AttemptId) -> String {
    format!("{ATTEMPT_SK_PREFIX}{id}")
}

pub(super) fn key_sk(key: &str) -> String {
    format!("IDEM#{key}")
}

pub(super) fn guard_sk(hash: &str) -> String {
    format!("HASH#{hash}")
}
