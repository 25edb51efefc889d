//! Stripe's idempotent requests: a key names one request; its answer is kept 24 hours, in the
//! same DynamoDB transaction as the change it answers, and replayed to retries of the same
//! request.

use sha2::{Digest, Sha256};

use crate::time::Timestamp;
use crate::validation::InvalidRequest;

pub const HEADER: &str = "Idempotency-Key";
/// How long a key and its response are kept.
pub const KEY_TTL_SECONDS: i64 = 24 * 60 * 60;
const MAX_KEY_LENGTH: usize = 255;

/// Names one request's write, so that the request can tell its own change from another's
/// when DynamoDB's answer to it was lost: kept in the status change it writes and in the
/// answer it keeps under its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestToken(String);

impl RequestToken {
    pub fn new() -> Self {
        RequestToken(uuid::Uuid::now_v7().simple().to_string())
    }

    /// A token as stored.
    pub fn from_stored(text: &str) -> Self {
        RequestToken(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RequestToken {
    fn default() -> Self {
        Self::new()
    }
}

/// A write's answer, whatever carries it: HTTP renders it as a response, the worker as its
/// result. What a key keeps, and replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// Given before, to the request that first used the key.
    pub replayed: bool,
}

impl Answer {
    pub fn new(status: u16, body: String) -> Self {
        Answer { status, body, replayed: false }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A response kept under an idempotency key, replayed to a retry of the same request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: IdempotencyKey,
    /// The request that wrote it.
    pub token: RequestToken,
    /// Identifies the request (operation and exact body) the key was first used with.
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
    /// Unix seconds; DynamoDB's TTL deletes the record some time after this.
    pub expires_at: i64,
}

/// Whose keys a key is among. Members (a JWT) and trusted writers (the IAM routes, SQS,
/// direct invokes) never share one: a trusted writer's key can be known in advance (`sqs:`
/// and a message id, or one derived from its own data), and a member who claimed it first
/// with another body would turn the writer's command into a final refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyNamespace {
    Member,
    TrustedWriter,
}

/// A caller's `Idempotency-Key`, in its caller class's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub namespace: KeyNamespace,
    /// As the caller gave it ([`parse_key`]).
    pub text: String,
}

impl IdempotencyKey {
    pub fn new(namespace: KeyNamespace, text: String) -> Self {
        IdempotencyKey { namespace, text }
    }
}

/// A request that may keep its answer under a key: who it is, and what it asks.
#[derive(Debug, Clone)]
pub struct KeyedRequest {
    pub token: RequestToken,
    /// The caller's `Idempotency-Key`, if any.
    pub key: Option<IdempotencyKey>,
    pub fingerprint: String,
}

impl KeyedRequest {
    pub fn new(key: Option<IdempotencyKey>, operation: &str, body: &[u8]) -> Self {
        KeyedRequest { token: RequestToken::new(), key, fingerprint: fingerprint(operation, body) }
    }

    /// The record keeping `answer` under the key, if the request has one.
    pub fn record(&self, answer: &Answer, now: Timestamp) -> Option<IdempotencyRecord> {
        self.key.as_ref().map(|key| IdempotencyRecord {
            key: key.clone(),
            token: self.token.clone(),
            fingerprint: self.fingerprint.clone(),
            status: answer.status,
            body: answer.body.clone(),
            expires_at: now.unix_seconds() + KEY_TTL_SECONDS,
        })
    }

    /// What a key's record answers this request: its own answer if this request wrote it
    /// (its reply was lost, and reading back found it), a replay if an earlier request with
    /// the same body did, and `None` if the key was first used for another request.
    pub fn answer_from(&self, record: &IdempotencyRecord) -> Option<Answer> {
        if record.fingerprint != self.fingerprint {
            return None;
        }
        Some(Answer { status: record.status, body: record.body.clone(), replayed: record.token != self.token })
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
