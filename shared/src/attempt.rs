//! The payment attempt and its status lifecycle.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::id::{AttemptId, OrganizationId, PaymentAccountId, SessionId};
use crate::idempotency::RequestToken;
use crate::money::{Amount, Currency};
use crate::time::Timestamp;

/// Where an attempt is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Succeeded,
    Failed,
    Released,
}

/// Words of the same vocabulary that describe payment accounts: recognised only to say so.
const ACCOUNT_STATUSES: [&str; 2] = ["active", "disabled"];

/// The attempt statuses, as error messages list them.
const STATUS_WORDS: &str = "pending, succeeded, failed, released";

/// Why a value is not an attempt status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAStatus {
    #[error("`{0}` describes payment accounts, never payment attempts")]
    AccountStatus(&'static str),
    #[error("`{0}` is not one of {STATUS_WORDS}")]
    Unknown(String),
    /// Not text at all (a number, an object).
    #[error("must be one of {STATUS_WORDS}")]
    NotText,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Pending, Status::Succeeded, Status::Failed, Status::Released];

    pub fn parse(text: &str) -> Result<Status, NotAStatus> {
        if let Some(status) = Status::ALL.into_iter().find(|s| s.as_str() == text) {
            return Ok(status);
        }
        match ACCOUNT_STATUSES.into_iter().find(|word| *word == text) {
            Some(word) => Err(NotAStatus::AccountStatus(word)),
            None => Err(NotAStatus::Unknown(crate::validation::echo(text))),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Released => "released",
        }
    }

    /// Statuses an attempt may be created in.
    pub fn is_initial(&self) -> bool {
        matches!(self, Status::Pending | Status::Succeeded | Status::Failed)
    }

    pub fn is_final(&self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Released)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A move along the lifecycle: only `pending -> succeeded | failed | released`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusTransition {
    pub from: Status,
    pub to: Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a payment attempt cannot move from `{from}` to `{to}`")]
pub struct InvalidTransition {
    pub from: Status,
    pub to: Status,
}

impl StatusTransition {
    pub fn new(from: Status, to: Status) -> Result<Self, InvalidTransition> {
        let legal = from == Status::Pending && matches!(to, Status::Succeeded | Status::Failed | Status::Released);
        if legal {
            Ok(StatusTransition { from, to })
        } else {
            Err(InvalidTransition { from, to })
        }
    }
}

/// Why a status was set, as its writer tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusNote {
    pub reason: Option<String>,
    pub message: Option<String>,
    pub source: Option<String>,
    pub code: Option<String>,
}

/// Why the status is what it is; mirrors the latest history entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusDetails {
    pub changed_at: Timestamp,
    #[serde(flatten)]
    pub note: StatusNote,
}

/// One entry of the append-only status history.
#[derive(Debug, Clone, Serialize)]
pub struct StatusChange {
    pub status: Status,
    pub previous_status: Option<Status>,
    pub changed_at: Timestamp,
    #[serde(flatten)]
    pub note: StatusNote,
    /// The receipt written with this change: always on creation, on a transition when it
    /// sent one. The attempt's `receipt` is the latest; these keep every earlier one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Box<RawValue>>,
    /// The request that made this change, so that it can recognise its own change when
    /// DynamoDB's answer was lost. Stored, never shown.
    #[serde(skip)]
    pub written_by: Option<RequestToken>,
}

impl StatusChange {
    /// `status_details` mirrors the latest change.
    pub fn details(&self) -> StatusDetails {
        StatusDetails { changed_at: self.changed_at, note: self.note.clone() }
    }
}

/// The durable record of one authorization + settlement cycle of a paid call.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: AttemptId,
    pub organization_id: OrganizationId,
    pub session_id: Option<SessionId>,
    pub payment_account_id: Option<PaymentAccountId>,
    pub capability: String,
    pub operation: String,
    pub rail: Option<String>,
    pub amount_usd: Amount,
    pub currency: Currency,
    pub target_url: String,
    pub request_hash: Option<String>,
    pub status: Status,
    pub status_details: StatusDetails,
    pub error_message: Option<String>,
    /// Rail-specific JSON object, kept as the caller's exact (minified) text.
    pub receipt: Box<RawValue>,
    pub metadata: BTreeMap<String, String>,
    pub status_history: Vec<StatusChange>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Bumped by every write; writes are conditional on the version they read.
    pub version: u64,
}

impl Attempt {
    /// Whether the request `token` names made one of this attempt's status changes.
    pub fn changed_by(&self, token: &RequestToken) -> bool {
        self.status_history.iter().any(|change| change.written_by.as_ref() == Some(token))
    }

    /// The attempt as it was after its `version`th change (1: as recorded), rebuilt from its
    /// history: each change is one version, and only a change's own fields move (status and
    /// its details, the receipt it sent, `updated_at`; `error_message` belongs to a failed
    /// attempt, which is always the last version). `None` past the current version.
    pub fn at_version(&self, version: u64) -> Option<Attempt> {
        let changes = usize::try_from(version).ok().filter(|&n| n >= 1 && n <= self.status_history.len())?;
        if changes == self.status_history.len() {
            return Some(self.clone());
        }
        let history = &self.status_history[..changes];
        let last = history.last()?;
        let mut then = self.clone();
        then.status = last.status;
        then.status_details = last.details();
        then.receipt = history.iter().rev().find_map(|change| change.receipt.clone())?;
        then.error_message = None;
        then.updated_at = last.changed_at;
        then.version = version;
        then.status_history = history.to_vec();
        Some(then)
    }
}

/// How much of an attempt a response shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Retrieve: the whole record, status history included.
    Full,
    /// List rows: without the history, to keep pages small.
    Row,
}

#[derive(Serialize)]
struct AttemptJson<'a> {
    id: &'a AttemptId,
    object: &'static str,
    organization_id: &'a OrganizationId,
    session_id: &'a Option<SessionId>,
    payment_account_id: &'a Option<PaymentAccountId>,
    capability: &'a str,
    operation: &'a str,
    rail: &'a Option<String>,
    amount_usd: &'a Amount,
    currency: &'a Currency,
    target_url: &'a str,
    request_hash: &'a Option<String>,
    status: Status,
    status_details: &'a StatusDetails,
    error_message: &'a Option<String>,
    receipt: &'a RawValue,
    metadata: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_history: Option<&'a [StatusChange]>,
    created_at: &'a Timestamp,
    updated_at: &'a Timestamp,
}

impl Attempt {
    pub const OBJECT: &'static str = "payment_attempt";

    /// The attempt as the API shows it.
    pub fn view(&self, view: View) -> impl Serialize + '_ {
        AttemptJson {
            id: &self.id,
            object: Self::OBJECT,
            organization_id: &self.organization_id,
            session_id: &self.session_id,
            payment_account_id: &self.payment_account_id,
            capability: &self.capability,
            operation: &self.operation,
            rail: &self.rail,
            amount_usd: &self.amount_usd,
            currency: &self.currency,
            target_url: &self.target_url,
            request_hash: &self.request_hash,
            status: self.status,
            status_details: &self.status_details,
            error_message: &self.error_message,
            receipt: &self.receipt,
            metadata: &self.metadata,
            status_history: (view == View::Full).then_some(self.status_history.as_slice()),
            created_at: &self.created_at,
            updated_at: &self.updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn only_pending_moves_and_only_to_an_outcome() {
        for from in Status::ALL {
            for to in Status::ALL {
                let legal = from == Pending && matches!(to, Succeeded | Failed | Released);
                assert_eq!(StatusTransition::new(from, to).is_ok(), legal, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn creation_statuses() {
        let initial: Vec<_> = Status::ALL.into_iter().filter(Status::is_initial).collect();
        assert_eq!(initial, vec![Pending, Succeeded, Failed]);
        assert_eq!(Status::parse("released"), Ok(Released));
        assert_eq!(Status::parse("active"), Err(NotAStatus::AccountStatus("active")));
        assert_eq!(Status::parse("Pending"), Err(NotAStatus::Unknown("Pending".to_owned())));
        assert!(!Pending.is_final() && Succeeded.is_final() && Failed.is_final() && Released.is_final());
    }

    #[test]
    fn statuses_round_trip_their_names() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!(Status::parse("PENDING").is_err());
    }

    #[test]
    fn an_attempt_at_each_version_is_as_it_was_then() {
        use crate::command::{NewAttempt, StatusUpdate};
        let shown = |a: &Attempt| (serde_json::to_value(a.view(View::Full)).unwrap(), a.version);
        let body = br#"{"capability": "c", "operation": "o", "amount_usd": 1, "target_url": "https://x.example/", "receipt": {"quote": 1}}"#;
        let org = crate::OrganizationId::parse("org_acme").unwrap();
        let settles: [&[u8]; 3] = [
            br#"{"status": "succeeded", "receipt": {"tx": "0x1"}, "status_details": {"reason": "paid"}}"#,
            br#"{"status": "failed", "error_message": "declined"}"#,
            br#"{"status": "released"}"#,
        ];
        for settle in settles {
            let created = NewAttempt::from_json(body).unwrap().into_attempt(org.clone(), Timestamp::now());
            let update = StatusUpdate::from_json(settle).unwrap();
            let settled = update.apply(&created, Timestamp::now(), &RequestToken::new()).unwrap();
            assert_eq!(shown(&settled.at_version(1).unwrap()), shown(&created));
            assert_eq!(shown(&settled.at_version(2).unwrap()), shown(&settled));
            assert!(settled.at_version(0).is_none() && settled.at_version(3).is_none());
            assert_eq!(shown(&created.at_version(1).unwrap()), shown(&created));
        }
    }
}
