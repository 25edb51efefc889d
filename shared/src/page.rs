//! Key-based pagination: ids are time-ordered, so a cursor is just an attempt id.

use crate::attempt::{Attempt, Status};
use crate::id::{AttemptId, SessionId};

pub const DEFAULT_LIMIT: u16 = 50;
pub const MAX_LIMIT: u16 = 100;

/// Where a page starts, relative to an attempt id. Lists are newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// The page of attempts older than this one.
    StartingAfter(AttemptId),
    /// The page of attempts newer than this one, closest to it first in time.
    EndingBefore(AttemptId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub session_id: Option<SessionId>,
    /// 1..=MAX_LIMIT.
    pub limit: u16,
    pub cursor: Option<Cursor>,
    /// Any of these statuses; empty means any status.
    pub statuses: Vec<Status>,
    pub capability: Option<String>,
    pub created: CreatedRange,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            session_id: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
            statuses: Vec::new(),
            capability: None,
            created: CreatedRange::default(),
        }
    }
}

impl ListQuery {
    pub fn matches(&self, attempt: &Attempt) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&attempt.status))
            && self.capability.as_ref().is_none_or(|c| *c == attempt.capability)
            && self.session_id.as_ref().is_none_or(|s| attempt.session_id.as_ref() == Some(s))
            && self.created.contains_ms(attempt.created_at.unix_millis())
    }
}

/// Creation-time bounds in whole milliseconds, both inclusive: ids carry millisecond times,
/// so the bounds become a key range on the ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CreatedRange {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

impl CreatedRange {
    pub fn contains_ms(&self, ms: i64) -> bool {
        self.from_ms.is_none_or(|f| ms >= f) && self.to_ms.is_none_or(|t| ms <= t)
    }

    /// The lowest and highest attempt ids created within the range.
    pub fn id_bounds(&self) -> (AttemptId, AttemptId) {
        (AttemptId::lowest_at_ms(self.from_ms.unwrap_or(0)), AttemptId::highest_at_ms(self.to_ms.unwrap_or(i64::MAX)))
    }
}

/// One page, newest first. `has_more` says whether more lie beyond it in the direction walked.
#[derive(Debug, Clone)]
pub struct Page {
    pub attempts: Vec<Attempt>,
    pub has_more: bool,
    /// Set when a filtered page stopped at the read bound before it was full: where to go on.
    pub resume: Option<Cursor>,
    /// DynamoDB Query calls this page took, and the read units they were charged.
    pub reads: u32,
    pub read_units: f64,
    /// The direction walked: newest first (the first page, `starting_after`), or oldest
    /// first from an `ending_before` cursor (the rows are still shown newest first).
    pub newest_first: bool,
}
