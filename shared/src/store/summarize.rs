//! Keeping the counters from the table's stream, and catching them up from the table.
//!
//! Each attempt has a marker on a key of its own (`ORG#<org>#SUMD#<id>`): the version of the
//! attempt the counters hold. A change is counted from the marker's version to the change's
//! version, in one transaction with the marker's move, conditional on the marker being what
//! was read. The status at any version is in the attempt's history (one entry per version),
//! so the counting is exact whatever came before:
//! - a batch delivered again (a retry, a lost answer) finds its markers ahead and counts
//!   nothing twice;
//! - a change that was never counted (its batch parked after its retries) is counted with
//!   the attempt's next change, or by a recount ([`AttemptStore::recount`]), which reads
//!   each attempt's marker and counts what it lacks. Markers never expire, so a recount can
//!   tell counted from uncounted at any age.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{corrupt, from_item, opt_s, s, Item};
use super::keys::{summarized_pk, ATTEMPT_SK_PREFIX, SUMMARIZED_SK};
use super::schema::*;
use super::summary::{counter_keys, counter_shard, CounterKey};
use super::transact::{conflicts_only, put, Reason, Transaction, Write};
use super::{AttemptStore, StoreError};
use crate::attempt::Attempt;
use crate::id::{OrganizationId, SessionId};
use crate::page::ListQuery;
use crate::summary::{Summary, SummaryScope};
use crate::time::Timestamp;

/// One attempt's change, as the table's stream tells it.
#[derive(Debug, Clone)]
pub struct AttemptChange {
    /// The stream record's sequence number: where a retry starts.
    pub sequence: String,
    /// The attempt before the change; none when it was created.
    pub before: Option<Attempt>,
    pub after: Attempt,
}

/// A batch the counters do not wholly hold yet: its changes from `from_sequence` on must be
/// delivered again (the ones before it are counted).
#[derive(Debug)]
pub struct Unsummarized {
    pub from_sequence: String,
    pub error: StoreError,
}

/// Items one transaction may write.
const TRANSACTION_ITEMS: usize = 100;

/// An organization's or a session's counters caught up from its attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct Recount {
    /// Attempts read.
    pub attempts: usize,
    /// Attempts whose changes the counters lacked, now counted.
    pub caught_up: usize,
    /// The totals of the attempts read.
    pub walked: Summary,
    /// The counters after catching up: equal to `walked` unless writes went on meanwhile.
    pub counted: Summary,
}

impl AttemptChange {
    /// The attempt change a stream record carries; `None` for any other item (keys, guards,
    /// counters, markers) and for deletions (attempts are never deleted).
    pub fn from_record(record: &EventRecord) -> Result<Option<Self>, StoreError> {
        let change = &record.change;
        let keys: Item = change.keys.clone().into();
        if !opt_s(&keys, SORT_KEY).is_some_and(|sk| sk.starts_with(ATTEMPT_SK_PREFIX)) {
            return Ok(None);
        }
        let after: Item = change.new_image.clone().into();
        if after.is_empty() {
            return Ok(None);
        }
        let before: Item = change.old_image.clone().into();
        Ok(Some(AttemptChange {
            sequence: change.sequence_number.clone().ok_or_else(|| corrupt("stream record sequence number"))?,
            before: (!before.is_empty()).then(|| from_item(&before)).transpose()?,
            after: from_item(&after)?,
        }))
    }
}

/// One attempt's counting to do: from the version the counters hold to its latest.
struct Catchup<'a> {
    latest: &'a Attempt,
    /// The version the counters are taken to hold (its marker's; 0 for none).
    from: u64,
    /// Where the stream must start again if this fails (none for a recount).
    sequence: Option<&'a str>,
}

impl Catchup<'_> {
    fn is_done(&self) -> bool {
        self.from >= self.latest.version
    }

    /// The status the counters hold the attempt in: its status at version `from`.
    fn counted_status(&self) -> Result<Option<crate::attempt::Status>, StoreError> {
        let Some(index) = self.from.checked_sub(1) else { return Ok(None) };
        let change = usize::try_from(index).ok().and_then(|i| self.latest.status_history.get(i));
        change.map(|c| Some(c.status)).ok_or_else(|| corrupt("status_history shorter than the version"))
    }
}

impl AttemptStore {
    /// Adds the changes to the counters, each exactly once however often it is delivered.
    pub async fn summarize(&self, changes: &[AttemptChange], now: Timestamp) -> Result<(), Unsummarized> {
        let mut catchups: Vec<Catchup> = Vec::new();
        let mut by_attempt = HashMap::new();
        for change in changes {
            let key = (&change.after.organization_id, &change.after.id);
            match by_attempt.get(&key) {
                Some(&index) => {
                    let catchup: &mut Catchup = &mut catchups[index];
                    catchup.latest = &change.after;
                }
                None => {
                    by_attempt.insert(key, catchups.len());
                    let from = change.before.as_ref().map_or(0, |before| before.version);
                    catchups.push(Catchup { latest: &change.after, from, sequence: Some(&change.sequence) });
                }
            }
        }
        self.count(catchups, now).await
    }

    /// Catches the counters of `org` (or of one of its sessions) up with its attempts: reads
    /// every attempt and its marker, and counts what the counters lack, as the summarizer
    /// would have. Idempotent, and safe while writes and the summarizer go on (each catch-up
    /// is conditional on the marker it read).
    pub async fn recount(&self, org: &OrganizationId, session: Option<&SessionId>) -> Result<Recount, StoreError> {
        let attempts = self.every(org, ListQuery { session_id: session.cloned(), ..ListQuery::default() }).await?;
        let mut walked = Summary::default();
        let mut catchups = Vec::new();
        for attempt in &attempts {
            walked.add(attempt.status, 1, attempt.amount_usd.as_decimal());
            let from = self.marker_version(attempt).await?;
            if from < attempt.version {
                catchups.push(Catchup { latest: attempt, from, sequence: None });
            }
        }
        let caught_up = catchups.len();
        self.count(catchups, Timestamp::now()).await.map_err(|e| e.error)?;
        let scope = match session {
            Some(session) => SummaryScope::Session(session.clone()),
            None => SummaryScope::Organization { hours: None },
        };
        let counted = self.summary(org, &scope).await?;
        Ok(Recount { attempts: attempts.len(), caught_up, walked, counted })
    }

    /// The version of `attempt` its marker says the counters hold; 0 for none.
    async fn marker_version(&self, attempt: &Attempt) -> Result<u64, StoreError> {
        let marker = self.read(summarized_pk(&attempt.organization_id, &attempt.id), SUMMARIZED_SK).await?;
        marker.as_ref().map_or(Some(0), marker_of).ok_or_else(|| corrupt("summarized marker version"))
    }

    /// Counts the catch-ups in transactions of whole attempts, in order, so that a failure can
    /// name where the batch must start again; each holds a marker per attempt and the
    /// counters its attempts share.
    async fn count(&self, catchups: Vec<Catchup<'_>>, now: Timestamp) -> Result<(), Unsummarized> {
        let mut chunk: Vec<Catchup> = Vec::new();
        let mut counters = BTreeSet::new();
        for catchup in catchups {
            let keys = counter_keys(catchup.latest, 0);
            let new_keys = keys.iter().filter(|k| !counters.contains(*k)).count();
            if chunk.len() + 1 + counters.len() + new_keys > TRANSACTION_ITEMS && !chunk.is_empty() {
                self.count_chunk(std::mem::take(&mut chunk), now).await?;
                counters.clear();
            }
            counters.extend(keys);
            chunk.push(catchup);
        }
        if !chunk.is_empty() {
            self.count_chunk(chunk, now).await?;
        }
        Ok(())
    }

    async fn count_chunk(&self, mut chunk: Vec<Catchup<'_>>, now: Timestamp) -> Result<(), Unsummarized> {
        // The chunk's first catch-up is where a stream retry starts.
        let from_sequence = chunk.first().and_then(|c| c.sequence).unwrap_or_default().to_owned();
        let fail = |error| Unsummarized { from_sequence: from_sequence.clone(), error };
        loop {
            chunk.retain(|c| !c.is_done());
            let (writes, markers) = self.chunk_writes(&chunk, now).map_err(fail)?;
            if writes.is_empty() {
                return Ok(());
            }
            let cancels = match self.transact(writes).await.map_err(fail)? {
                Transaction::Committed => return Ok(()),
                // Markers make a retry of this chunk exact, whatever the lost answer did.
                Transaction::Unanswered(why) => return Err(fail(StoreError::Unavailable(why))),
                Transaction::Cancelled { cancels, .. } => cancels,
            };
            // A marker not as read: count from where it is (ahead: a delivery again; behind:
            // a change never counted).
            let mut moved = false;
            for (cancel, &index) in cancels.iter().zip(&markers) {
                if cancel.reason == Reason::ConditionFailed {
                    let at = cancel.item.as_ref().map_or(Some(0), marker_of);
                    let at = at.ok_or_else(|| fail(corrupt("summarized marker version")))?;
                    // The marker is not where this try expected, so it has moved: the same
                    // place again would loop.
                    if at == chunk[index].from {
                        return Err(fail(corrupt("summarized marker failed its condition at its own version")));
                    }
                    chunk[index].from = at;
                    moved = true;
                }
            }
            if !moved {
                let busy = conflicts_only(&cancels) || cancels.iter().any(|c| c.reason == Reason::Throttled);
                let reasons: Vec<Reason> = cancels.iter().map(|c| c.reason).collect();
                let why = format!("counters' transaction cancelled: {reasons:?}");
                return Err(fail(if busy { StoreError::Unavailable(why) } else { StoreError::Other(why) }));
            }
        }
    }

    /// The marker and counter writes of a chunk (none if nothing moves), and for each of the
    /// first writes (the markers) the catch-up it belongs to.
    fn chunk_writes(&self, chunk: &[Catchup], now: Timestamp) -> Result<(Vec<Write>, Vec<usize>), StoreError> {
        let shard = counter_shard();
        let mut counters: BTreeMap<CounterKey, Summary> = BTreeMap::new();
        let (mut writes, mut markers) = (Vec::new(), Vec::new());
        for (index, catchup) in chunk.iter().enumerate() {
            let latest = catchup.latest;
            let amount = latest.amount_usd.as_decimal();
            for key in counter_keys(latest, shard) {
                let moves = counters.entry(key).or_default();
                if let Some(counted) = catchup.counted_status()? {
                    moves.add(counted, -1, -amount);
                }
                moves.add(latest.status, 1, amount);
            }
            writes.push(Write::Marker(self.marker(catchup, now)?));
            markers.push(index);
        }
        for (key, moves) in &counters {
            if !moves.nonzero().is_empty() {
                writes.push(Write::Counter(self.count_update(key, moves)?));
            }
        }
        Ok((writes, markers))
    }

    /// Moves the marker to the latest version, if it is still where the catch-up read it.
    fn marker(&self, catchup: &Catchup, now: Timestamp) -> Result<aws_sdk_dynamodb::types::Put, StoreError> {
        let latest = catchup.latest;
        let item = HashMap::from([
            (PARTITION_KEY.to_owned(), s(summarized_pk(&latest.organization_id, &latest.id))),
            (SORT_KEY.to_owned(), s(SUMMARIZED_SK)),
            ("attempt_id".to_owned(), s(latest.id.as_str())),
            ("version".to_owned(), AttributeValue::N(latest.version.to_string())),
            ("counted_at".to_owned(), s(now.to_string())),
        ]);
        if catchup.from == 0 {
            put(&self.table, item, "attribute_not_exists(#pk)", &[])
        } else {
            put(&self.table, item, "#version = :from", &[(":from", AttributeValue::N(catchup.from.to_string()))])
        }
    }
}

/// The version a marker item holds.
fn marker_of(item: &Item) -> Option<u64> {
    item.get("version").and_then(|v| v.as_n().ok()?.parse().ok())
}
