//! Keeping the counters from the table's stream.
//!
//! A batch of attempt changes becomes a few transactions. Each adds its attempts' net moves to
//! the counters they count in and records, per attempt, the last version counted (a marker on
//! a key of its own, `ORG#<org>#SUMD#<id>`, conditional on holding an older one). A batch
//! delivered again (a retry, a lost answer) finds its markers ahead, leaves those changes out
//! and counts nothing twice; an attempt's changes reach the stream in order, so counting
//! from its marker on is exact.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{corrupt, from_item, opt_s, s, Item};
use super::keys::{summarized_pk, ATTEMPT_SK_PREFIX, SUMMARIZED_SK};
use super::schema::*;
use super::summary::{counter_keys, counter_shard, CounterKey};
use super::transact::{put, Write};
use super::{AttemptStore, StoreError};
use crate::attempt::Attempt;
use crate::summary::Summary;
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
/// Markers outlive the stream's 24 h retention, so no record can come back after its marker.
const MARKER_SECONDS: i64 = 2 * 24 * 3600;

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

/// One attempt's changes in a batch, from the first not counted yet.
struct Tally<'a> {
    changes: Vec<&'a AttemptChange>,
}

impl Tally<'_> {
    /// Leaves out the changes up to `version`, already counted.
    fn counted_through(&mut self, version: u64) {
        self.changes.retain(|c| c.after.version > version);
    }

    /// What the counters move by: the attempt's state before its first change leaves its
    /// status, its state after its last change enters one.
    fn moves(&self) -> Option<(Option<&Attempt>, &Attempt)> {
        let (first, last) = (self.changes.first()?, self.changes.last()?);
        Some((first.before.as_ref(), &last.after))
    }
}

impl AttemptStore {
    /// Adds the changes to the counters, each exactly once however often it is delivered.
    pub async fn summarize(&self, changes: &[AttemptChange], now: Timestamp) -> Result<(), Unsummarized> {
        let mut tallies: Vec<Tally> = Vec::new();
        let mut by_attempt = HashMap::new();
        for change in changes {
            let key = (&change.after.organization_id, &change.after.id);
            let index = *by_attempt.entry(key).or_insert_with(|| {
                tallies.push(Tally { changes: Vec::new() });
                tallies.len() - 1
            });
            tallies[index].changes.push(change);
        }
        // Transactions of whole attempts, in the order of their first change, so that a
        // failure can name where the batch must start again; each holds a marker per attempt
        // and the counters its attempts share.
        let mut chunk: Vec<Tally> = Vec::new();
        let mut counters = BTreeSet::new();
        for tally in tallies {
            let keys = tally.changes.first().map(|c| counter_keys(&c.after, 0)).unwrap_or_default();
            let new_keys = keys.iter().filter(|k| !counters.contains(*k)).count();
            if chunk.len() + 1 + counters.len() + new_keys > TRANSACTION_ITEMS && !chunk.is_empty() {
                self.count_chunk(std::mem::take(&mut chunk), now).await?;
                counters.clear();
            }
            counters.extend(keys);
            chunk.push(tally);
        }
        if !chunk.is_empty() {
            self.count_chunk(chunk, now).await?;
        }
        Ok(())
    }

    async fn count_chunk(&self, mut chunk: Vec<Tally<'_>>, now: Timestamp) -> Result<(), Unsummarized> {
        // Tallies are in the order of their first change: the chunk's first is where it starts.
        let from_sequence = chunk.first().and_then(|t| t.changes.first()).map(|c| c.sequence.clone());
        let from_sequence = from_sequence.unwrap_or_default();
        let fail = |error| Unsummarized { from_sequence: from_sequence.clone(), error };
        loop {
            let writes = self.chunk_writes(&chunk, now).map_err(fail)?;
            if writes.is_empty() {
                return Ok(());
            }
            match self.transact(writes).await {
                Ok(()) => return Ok(()),
                // Delivered again: leave out what the counters hold, and count the rest.
                Err(StoreError::Counted(counted)) => {
                    for (id, version) in counted {
                        let of_attempt = |t: &&mut Tally| t.changes.first().is_some_and(|c| c.after.id == id);
                        chunk.iter_mut().filter(of_attempt).for_each(|t| t.counted_through(version));
                    }
                    chunk.retain(|t| !t.changes.is_empty());
                }
                Err(error) => return Err(fail(error)),
            }
        }
    }

    /// The counter updates and markers of a chunk; none if nothing moves.
    fn chunk_writes(&self, chunk: &[Tally], now: Timestamp) -> Result<Vec<Write>, StoreError> {
        let shard = counter_shard();
        let mut counters: BTreeMap<CounterKey, Summary> = BTreeMap::new();
        let mut writes = Vec::new();
        for tally in chunk {
            let Some((before, after)) = tally.moves() else { continue };
            if let Some(before) = before {
                for key in counter_keys(before, shard) {
                    counters.entry(key).or_default().add(before.status, -1, -before.amount_usd.as_decimal());
                }
            }
            for key in counter_keys(after, shard) {
                counters.entry(key).or_default().add(after.status, 1, after.amount_usd.as_decimal());
            }
            writes.push(Write::Marker(self.marker(tally, after, now)?));
        }
        for (key, moves) in &counters {
            if !moves.nonzero().is_empty() {
                writes.push(Write::Counter(self.count(key, moves)?));
            }
        }
        Ok(writes)
    }

    /// Records `after.version` as counted, unless a version from this tally on already is.
    fn marker(
        &self,
        tally: &Tally,
        after: &Attempt,
        now: Timestamp,
    ) -> Result<aws_sdk_dynamodb::types::Put, StoreError> {
        let first = tally.changes.first().map_or(after.version, |c| c.after.version);
        let item = HashMap::from([
            (PARTITION_KEY.to_owned(), s(summarized_pk(&after.organization_id, &after.id))),
            (SORT_KEY.to_owned(), s(SUMMARIZED_SK)),
            ("attempt_id".to_owned(), s(after.id.as_str())),
            ("version".to_owned(), AttributeValue::N(after.version.to_string())),
            (TTL_ATTRIBUTE.to_owned(), AttributeValue::N((now.unix_seconds() + MARKER_SECONDS).to_string())),
        ]);
        put(
            &self.table,
            item,
            "attribute_not_exists(#pk) OR #version < :first",
            &[(":first", AttributeValue::N(first.to_string()))],
        )
    }
}
