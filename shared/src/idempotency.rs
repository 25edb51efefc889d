//! Stripe's idempotent requests: a key names one request; its response is kept 24 hours and
//! replayed to retries of the same request.

use sha2::{Digest, Sha256};

use crate::time::Timestamp;
use crate::validation::InvalidRequest;

pub const HEADER: &str = "Idempotency-Key";
/// How long a key and its response are kept.
pub const KEY_TTL_SECONDS: i64 = 24 * 60 * 60;
/// How long a request in flight holds its key: longer than the Lambda timeout, so an older
/// claim has no request behind it any more and a retry may take the key over.
pub const CLAIM_SECONDS: i64 = 15;

/// A key taken by the request now in flight; only its holder (by `token`) finishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaim {
    pub key: String,
    pub token: String,
    pub fingerprint: String,
}

impl KeyClaim {
    /// A claim on `key` with a token of its own, before it is written.
    pub fn new(key: &str, fingerprint: &str) -> Self {
        KeyClaim {
            key: key.to_owned(),
            token: uuid::Uuid::now_v7().simple().to_string(),
            fingerprint: fingerprint.to_owned(),
        }
    }
}

/// What a key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// A request with this key is being processed.
    InFlight { fingerprint: String },
    /// The response given to the request that first used the key.
    Done(IdempotencyRecord),
}
const MAX_KEY_LENGTH: usize = 255;

/// A response kept under an idempotency key, replayed to a retry of the same request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: String,
    /// The claim this record finishes.
    pub token: String,
    /// Identifies the request (operation and exact body) the key was first used with.
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
    /// Unix seconds; DynamoDB's TTL deletes the record some time after this.
    pub expires_at: i64,
}

impl IdempotencyRecord {
    pub fn new(claim: &KeyClaim, status: u16, body: &str, now: Timestamp) -> Self {
        IdempotencyRecord {
            key: claim.key.clone(),
            token: claim.token.clone(),
            fingerprint: claim.fingerprint.clone(),
            status,
            body: body.to_owned(),
            expires_at: now.unix_seconds() + KEY_TTL_SECONDS,
        }
    }
}

/// 1 to 255 visible ASCII characters, as Stripe allows (a UUID is the usual choice).
pub fn parse_key(header: &[u8]) -> Result<String, InvalidRequest> {
    let ok = (1..=MAX_KEY_LENGTH).contains(&header.len()) && header.iter().all(u8::is_ascii_graphic);
    if ok {
        Ok(String::from_utf8_lossy(header).into_owned())
    } else {
        Err(InvalidRequest::invalid(
            HEADER,
            "Invalid Idempotency-Key: use 1 to 255 visible ASCII characters, e.g. a UUID.",
        ))
    }
}

/// Identifies a request: the operation (which route, which attempt) and its exact body.
pub fn fingerprint(operation: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(operation.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(parse_key(b"0f8fad5b-d9cb-469f-a165-70867728950e").is_ok());
        for bad in ["", "has space", "tab\t", "é", &"k".repeat(256)] {
            assert_eq!(parse_key(bad.as_bytes()).unwrap_err().param.as_deref(), Some(HEADER), "{bad:?}");
        }
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let a = fingerprint("create", b"{}");
        assert_eq!(a.len(), 64);
        assert_eq!(a, fingerprint("create", b"{}"));
        assert_ne!(a, fingerprint("create", b"{ }"));
        assert_ne!(a, fingerprint("update payatt_1", b"{}"));
    }
}
