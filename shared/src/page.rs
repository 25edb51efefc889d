//! Key-based pagination: ids are time-ordered, so a cursor is just an attempt id.

use crate::attempt::Attempt;
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
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery { session_id: None, limit: DEFAULT_LIMIT, cursor: None }
    }
}

/// One page, newest first. `has_more` says whether more lie beyond it in the direction walked.
#[derive(Debug, Clone)]
pub struct Page {
    pub attempts: Vec<Attempt>,
    pub has_more: bool,
}
