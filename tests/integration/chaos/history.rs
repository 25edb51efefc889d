//! The history: each logical write, and what every try of it got.

use super::*;

/// The way a write reaches the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A member's JWT, with an `Idempotency-Key` or without one.
    Member { keyed: bool },
    /// A trusted role on the IAM-authorized route, keyed.
    Iam,
    /// An SQS message: its id is the key; redelivered while reported failed.
    Sqs,
    /// A direct invoke: its request id is the key; invoked again while it fails.
    Invoke,
}

impl Route {
    pub fn keyed(self) -> bool {
        self != Route::Member { keyed: false }
    }
}

#[derive(Debug, Clone)]
pub enum Write {
    Create,
    Settle { attempt: String, to: Status },
}

/// What one try got back.
#[derive(Debug, Clone)]
pub enum Reply {
    /// An answer: status and body (SQS only says whether the message was recorded).
    Answer { status: u16, body: String, retry_after: bool },
    /// SQS: the message was reported failed.
    Reported,
    /// The invocation crashed before answering.
    Crashed,
}

/// One logical write and everything its tries got.
#[derive(Debug, Clone)]
pub struct Op {
    /// In the attempt's metadata (creates) or its status change's reason (settles).
    pub tag: String,
    pub write: Write,
    pub route: Route,
    pub replies: Vec<Reply>,
}

impl Op {
    /// The final answer, if one came: 2xx, or a refusal the same request would get again.
    pub fn final_answer(&self) -> Option<(u16, &str)> {
        self.replies.iter().rev().find_map(|reply| match reply {
            Reply::Answer { status, body, .. } if is_final(*status, body) => Some((*status, body.as_str())),
            _ => None,
        })
    }

    /// Acknowledged: a 2xx answer, or an SQS message not reported failed.
    pub fn acknowledged(&self) -> bool {
        self.final_answer().is_some_and(|(status, _)| (200..300).contains(&status))
    }
}

pub fn is_final(status: u16, body: &str) -> bool {
    let retry = ["idempotency_key_in_use", "concurrent_update"].iter().any(|code| body.contains(code));
    (200..300).contains(&status) || ((400..500).contains(&status) && !retry)
}

/// The id of an attempt a create's answer shows pending.
pub fn created_pending(op: &Op) -> Option<String> {
    let (_, body) = op.final_answer()?;
    let body: Value = serde_json::from_str(body).ok()?;
    (body["status"] == "pending").then(|| body["id"].as_str().map(str::to_owned)).flatten()
}
