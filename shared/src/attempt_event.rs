//! The event published for each change of an attempt: one home for its shape, which
//! `schemas/payment_attempt_event.json` describes to consumers.
//!
//! An attempt changes once when it is recorded and once when it settles; every change bumps
//! its `version`, so the attempt id and the version name the change. That pair is the
//! event's id: the same change published twice (a stream batch delivered again) carries the
//! same id, and consumers deduplicate on it, and order one attempt's events by `version`.

use serde::Serialize;

use crate::attempt::{Attempt, Status, View};
use crate::time::Timestamp;

/// What happened to the attempt: the event's `detail-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Created,
    Succeeded,
    Failed,
    Released,
}

impl EventType {
    pub const ALL: [EventType; 4] = [EventType::Created, EventType::Succeeded, EventType::Failed, EventType::Released];

    /// The change from `before` (none: the attempt was recorded) to `after`; `None` for a
    /// write that did not change the status, which publishes nothing.
    pub fn of_change(before: Option<Status>, after: Status) -> Option<EventType> {
        match (before, after) {
            (None, _) => Some(EventType::Created),
            (Some(before), after) if before == after => None,
            (Some(_), Status::Succeeded) => Some(EventType::Succeeded),
            (Some(_), Status::Failed) => Some(EventType::Failed),
            (Some(_), Status::Released) => Some(EventType::Released),
            (Some(_), Status::Pending) => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            EventType::Created => "payment_attempt.created",
            EventType::Succeeded => "payment_attempt.succeeded",
            EventType::Failed => "payment_attempt.failed",
            EventType::Released => "payment_attempt.released",
        }
    }
}

/// One change of an attempt, as published.
#[derive(Debug, Clone, Copy)]
pub struct AttemptEvent<'a> {
    pub event_type: EventType,
    /// The attempt after the change.
    pub attempt: &'a Attempt,
    pub previous_status: Option<Status>,
}

/// The event's `detail`.
#[derive(Serialize)]
struct Detail<A: Serialize> {
    id: String,
    #[serde(rename = "type")]
    event_type: &'static str,
    version: u64,
    changed_at: Timestamp,
    previous_status: Option<Status>,
    /// As a list row shows it: without the history (retrieve has it).
    attempt: A,
}

impl<'a> AttemptEvent<'a> {
    /// The event for the change from `before` to `after`, if it is one.
    pub fn of_change(before: Option<&Attempt>, after: &'a Attempt) -> Option<Self> {
        let previous_status = before.map(|b| b.status);
        let event_type = EventType::of_change(previous_status, after.status)?;
        Some(AttemptEvent { event_type, attempt: after, previous_status })
    }

    /// Stable per change: the attempt's id and version.
    pub fn id(&self) -> String {
        format!("{}.v{}", self.attempt.id, self.attempt.version)
    }

    /// When the change was made (the event's `time`).
    pub fn changed_at(&self) -> Timestamp {
        self.attempt.status_details.changed_at
    }

    /// The `detail` JSON.
    pub fn detail(&self) -> serde_json::Result<String> {
        serde_json::to_string(&Detail {
            id: self.id(),
            event_type: self.event_type.as_str(),
            version: self.attempt.version,
            changed_at: self.changed_at(),
            previous_status: self.previous_status,
            attempt: self.attempt.view(View::Row),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn a_recorded_attempt_is_created_whatever_its_status_and_a_move_names_its_outcome() {
        for status in Status::ALL {
            assert_eq!(EventType::of_change(None, status), Some(EventType::Created));
        }
        assert_eq!(EventType::of_change(Some(Pending), Succeeded), Some(EventType::Succeeded));
        assert_eq!(EventType::of_change(Some(Pending), Failed), Some(EventType::Failed));
        assert_eq!(EventType::of_change(Some(Pending), Released), Some(EventType::Released));
        for status in Status::ALL {
            assert_eq!(EventType::of_change(Some(status), status), None, "no change of status, no event");
        }
        let words: Vec<&str> = EventType::ALL.iter().map(EventType::as_str).collect();
        assert_eq!(
            words,
            [
                "payment_attempt.created",
                "payment_attempt.succeeded",
                "payment_attempt.failed",
                "payment_attempt.released"
            ]
        );
    }

    #[test]
    fn the_detail_names_the_change_and_shows_the_attempt_without_its_history() {
        use crate::command::{NewAttempt, StatusUpdate};
        use crate::idempotency::RequestToken;
        let body = br#"{"capability": "c", "operation": "o", "amount_usd": 0.25, "target_url": "https://x.example/"}"#;
        let org = crate::OrganizationId::parse("org_acme").unwrap();
        let created = NewAttempt::from_json(body).unwrap().into_attempt(org, Timestamp::now());
        let event = AttemptEvent::of_change(None, &created).unwrap();
        let detail: serde_json::Value = serde_json::from_str(&event.detail().unwrap()).unwrap();
        assert_eq!(detail["id"], format!("{}.v1", created.id));
        assert_eq!((detail["type"].as_str(), detail["version"].as_u64()), (Some("payment_attempt.created"), Some(1)));
        assert_eq!(detail["previous_status"], serde_json::Value::Null);
        assert_eq!(detail["attempt"]["id"], created.id.as_str());
        assert!(detail["attempt"].get("status_history").is_none());

        let update = StatusUpdate::from_json(br#"{"status": "succeeded"}"#).unwrap();
        let settled = update.apply(&created, Timestamp::now(), &RequestToken::new()).unwrap();
        let event = AttemptEvent::of_change(Some(&created), &settled).unwrap();
        let detail: serde_json::Value = serde_json::from_str(&event.detail().unwrap()).unwrap();
        assert_eq!((event.id(), event.event_type), (format!("{}.v2", created.id), EventType::Succeeded));
        assert_eq!(
            (detail["previous_status"].as_str(), detail["attempt"]["status"].as_str()),
            (Some("pending"), Some("succeeded"))
        );
        assert_eq!(detail["changed_at"], detail["attempt"]["status_details"]["changed_at"]);
    }
}
