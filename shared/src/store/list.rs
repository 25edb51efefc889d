//! Pages of attempts, newest first, with key-based cursors.
//!
//! A page is a lazy merge of lanes: the shards of the organization's layout that its range
//! overlaps (each from the step it exists from), or the one session partition
//! of the session index. Each lane is read in id order a few rows at a time, the lanes that
//! could still hold a row of the page in parallel, and a row is placed once every lane has
//! read past it. Cursors stay plain attempt ids: ids are unique and time-ordered across shards.

use std::collections::VecDeque;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};

use super::item::{corrupt, from_item, opt_s, s, Item};
use super::keys::{session_key, shard_pk, ATTEMPT_SK_PREFIX};
use super::schema::*;
use super::transact::classify;
use super::{AttemptStore, StoreError};
use crate::attempt::Attempt;
use crate::id::{AttemptId, OrganizationId};
use crate::page::{Cursor, ListQuery, Page};

/// Rows one filtered Query reads at most (about 1 MB of attempts).
const MAX_ROWS_PER_READ: usize = 1000;
/// Rounds of Query calls one list request makes at most (each round's calls run in parallel).
pub const DEFAULT_MAX_READS: u32 = 10;
/// Read units one list request may spend: 4 MB of strongly consistent reads, whatever its
/// filters and data, so that no request costs the table a thousand others.
pub const READ_UNITS_PER_REQUEST: f64 = 1024.0;
/// The read units of a row before a request has seen any: an attempt at the API's limits in
/// ASCII text, two receipts (the creation's, kept in its history, and the settlement's), full
/// metadata and the rest, in 4 KB units (a test stores such rows and reads them at 15).
/// Multi-byte text at every limit can make a row of about 23 units: then a first round over
/// 64 shards spends up to about 1,500 units once (BENCHMARKS.md).
pub const LARGEST_ROW_UNITS: f64 = ((2 * crate::validation::MAX_RECEIPT_BYTES + 50 * 540 + 4096) / 4096 + 1) as f64;
// A list's first round reads at least a row of each shard: with such rows it keeps to its budget.
const _: () = assert!(crate::layout::MAX_SHARDS as f64 * LARGEST_ROW_UNITS <= READ_UNITS_PER_REQUEST);
/// What a shard reads after its first read, unfiltered: the page rarely needs more of it.
const REFILL_ROWS: usize = 2;

/// One partition read in id order, a few rows at a time.
struct Lane {
    partition_key: String,
    /// The lowest sort key it can hold in the range (a shard exists from its step on).
    low: String,
    /// Rows read that match the filters and are not placed yet, in walk order.
    pending: VecDeque<Attempt>,
    /// The last row read (matching or not): the lane's unread rows all come after it.
    last_read: Option<AttemptId>,
    start_key: Option<Item>,
    done: bool,
    /// Rows the next read asks for, and how many reads there were.
    limit: usize,
    reads: u32,
}

/// Where one list request's Query calls go, and in which direction.
struct Walk<'a> {
    index: Option<&'static str>,
    partition_key_name: &'static str,
    sort_key_name: &'static str,
    sort_key_prefix: &'static str,
    high: String,
    newest_first: bool,
    filter: Option<String>,
    filter_values: Vec<(String, String)>,
    store: &'a AttemptStore,
}

impl AttemptStore {
    /// Every attempt `query` matches, newest first, page after page (its limit and cursor
    /// are the walk's): for operators' commands, not requests.
    pub async fn every(&self, org: &OrganizationId, mut query: ListQuery) -> Result<Vec<Attempt>, StoreError> {
        let mut attempts = Vec::new();
        query.limit = crate::page::MAX_LIMIT;
        query.cursor = None;
        loop {
            let page = self.list(org, &query).await?;
            let last = page.attempts.last().map(|a| Cursor::StartingAfter(a.id.clone()));
            attempts.extend(page.attempts);
            // A page cut short by its read budget says where to go on.
            match page.resume.or(last).filter(|_| page.has_more) {
                Some(cursor) => query.cursor = Some(cursor),
                None => return Ok(attempts),
            }
        }
    }

    /// A page of the organization's attempts (of one session if asked), newest first.
    ///
    /// Session and creation-time bounds are key conditions; status and capability filter the
    /// rows read, and reading goes on until the page is full or the range ends, for at most
    /// `max_reads` rounds of Query calls and [`READ_UNITS_PER_REQUEST`] read units (then
    /// `resume` says where to go on). Each round's row limits are cut to what the units left
    /// can pay for, at twice a row's average cost: this request's once it has read, else the
    /// organization's last list's here, else the largest row's.
    pub async fn list(&self, org: &OrganizationId, query: &ListQuery) -> Result<Page, StoreError> {
        let (low, high, newest_first) = id_range(query);
        let mut page =
            Page { attempts: Vec::new(), has_more: false, resume: None, reads: 0, read_units: 0.0, newest_first };
        if low > high {
            return Ok(page);
        }
        let (walk, partitions) = self.walk(org, query, &low, &high, newest_first).await?;
        let wanted = usize::from(query.limit) + 1;
        // Each lane first reads its share of the page and one more.
        let first = if partitions.len() == 1 { wanted } else { wanted.div_ceil(partitions.len()) + 1 };
        let mut lanes: Vec<Lane> = partitions.into_iter().map(|(key, low)| Lane::new(key, low, first)).collect();
        let single = lanes.len() == 1;
        let (mut rounds, mut spent, mut rows_read) = (0, 0.0, 0usize);
        // What a row of this organization cost in its last list here; the largest row's cost
        // before any.
        let costs = (org.clone(), walk.index.is_some());
        let learned = self.row_units.get(&costs);
        loop {
            place(&mut lanes, &mut page.attempts, wanted, newest_first);
            if page.attempts.len() == wanted {
                break;
            }
            let needed = lanes_needed(&lanes, wanted - page.attempts.len(), newest_first);
            if needed.is_empty() {
                break;
            }
            let per_row = match (rows_read, learned) {
                (0, None) => LARGEST_ROW_UNITS,
                (0, Some(units)) => (2.0 * units).clamp(0.5, LARGEST_ROW_UNITS),
                _ => (2.0 * spent / rows_read as f64).max(0.5),
            };
            // Every lane reads at least one row first (the page needs a row of each, and a cursor
            // where each stopped); after that, a round that cannot afford a row a lane waits
            // for the next page.
            let affordable = ((READ_UNITS_PER_REQUEST - spent) / needed.len() as f64 / per_row).floor();
            let affordable = if rounds == 0 { affordable.max(1.0) } else { affordable };
            if rounds == self.max_reads || affordable < 1.0 {
                page.resume = Some(resume_after(&lanes, newest_first)?);
                page.has_more = true;
                break;
            }
            let reads = needed.iter().map(|&i| walk.read(&lanes[i], lanes[i].limit.min(affordable as usize)));
            let results = futures_util::future::join_all(reads).await;
            rounds += 1;
            for (i, result) in needed.into_iter().zip(results) {
                let read = result?;
                page.reads += 1;
                page.read_units += read.units;
                spent += read.units;
                rows_read += read.rows_read;
                lanes[i].take(read, &walk)?;
                // Filtered reads widen while the filter keeps the page from filling; a shard
                // rarely holds many rows of one page, so it reads a few more, then more.
                let lane = &mut lanes[i];
                lane.limit = match (&walk.filter, single) {
                    (Some(_), _) => (lane.limit * 2).min(MAX_ROWS_PER_READ),
                    (None, true) => wanted.saturating_sub(page.attempts.len() + lane.pending.len()),
                    (None, false) => (REFILL_ROWS << (lane.reads - 1).min(8)).min(MAX_ROWS_PER_READ),
                };
            }
        }
        if rows_read > 0 {
            self.row_units.set(costs, spent / rows_read as f64);
        }
        page.has_more |= page.attempts.len() > usize::from(query.limit);
        page.attempts.truncate(usize::from(query.limit));
        if !newest_first {
            page.attempts.reverse();
        }
        Ok(page)
    }

    /// Where the list's Query calls go, and the partitions to merge, each from the first id
    /// of the range it can hold: a session's one partition, or the shards of the
    /// organization's layout in force over the range.
    async fn walk(
        &self,
        org: &OrganizationId,
        query: &ListQuery,
        low: &AttemptId,
        high: &AttemptId,
        newest_first: bool,
    ) -> Result<(Walk<'_>, Vec<(String, String)>), StoreError> {
        let (filter, filter_values) = filter_expression(query);
        // Table rows sort by `ATT#<id>`, index rows by `<id>`.
        let (index, partition_key_name, sort_key_name, sort_key_prefix, partitions) = match &query.session_id {
            Some(session) => (
                Some(SESSION_INDEX),
                SESSION_PARTITION_KEY,
                SESSION_SORT_KEY,
                "",
                vec![(session_key(org, session), low.to_string())],
            ),
            None => {
                let layout = self.layout(org).await?;
                // No attempt is created later than now (give or take the clocks): a step that
                // starts after that has no rows yet.
                let until = high.created_ms().min(crate::time::Timestamp::now().unix_millis() + self.layout_ttl_ms());
                let lanes = layout.lanes(low.created_ms(), until).into_iter().map(|(shard, from_ms)| {
                    let from = low.clone().max(AttemptId::lowest_at_ms(from_ms));
                    (shard_pk(org, shard), format!("{ATTEMPT_SK_PREFIX}{from}"))
                });
                (None, PARTITION_KEY, SORT_KEY, ATTEMPT_SK_PREFIX, lanes.collect())
            }
        };
        let walk = Walk {
            index,
            partition_key_name,
            sort_key_name,
            sort_key_prefix,
            high: format!("{sort_key_prefix}{high}"),
            newest_first,
            filter,
            filter_values,
            store: self,
        };
        Ok((walk, partitions))
    }
}

/// The ids the page may hold, and its direction. The cursor's own row is excluded by the key
/// range: ids are adjacent in hex.
fn id_range(query: &ListQuery) -> (AttemptId, AttemptId, bool) {
    let (low, high) = query.created.id_bounds();
    match &query.cursor {
        None => (low, high, true),
        Some(Cursor::StartingAfter(id)) => (low, high.min(id.predecessor()), true),
        Some(Cursor::EndingBefore(id)) => (low.max(id.successor()), high, false),
    }
}

/// Where a page stopped short of full goes on: after the last row every lane has read.
fn resume_after(lanes: &[Lane], newest_first: bool) -> Result<Cursor, StoreError> {
    let read_through = lanes.iter().filter(|l| !l.done).filter_map(|l| l.last_read.clone());
    let resume = if newest_first { read_through.max() } else { read_through.min() };
    let resume = resume.ok_or_else(|| corrupt("lane without a read"))?;
    Ok(if newest_first { Cursor::StartingAfter(resume) } else { Cursor::EndingBefore(resume) })
}

impl Lane {
    fn new(partition_key: String, low: String, limit: usize) -> Self {
        Lane {
            partition_key,
            low,
            pending: VecDeque::new(),
            last_read: None,
            start_key: None,
            done: false,
            limit,
            reads: 0,
        }
    }

    /// Takes in one read's rows and where it stopped.
    fn take(&mut self, read: Read, walk: &Walk<'_>) -> Result<(), StoreError> {
        if let Some(key) = &read.start_key {
            let last = opt_s(key, walk.sort_key_name).map(|k| k.trim_start_matches(walk.sort_key_prefix));
            self.last_read = Some(last.and_then(AttemptId::parse).ok_or_else(|| corrupt("last evaluated key"))?);
        }
        self.done = read.start_key.is_none();
        self.start_key = read.start_key;
        self.pending.extend(read.rows);
        self.reads += 1;
        Ok(())
    }
}

/// `a` comes before `b` in the order the page walks.
fn ahead(a: &AttemptId, b: &AttemptId, newest_first: bool) -> bool {
    if newest_first {
        a > b
    } else {
        a < b
    }
}

/// Moves rows to the page, in walk order, while every lane has read past the next one.
fn place(lanes: &mut [Lane], page: &mut Vec<Attempt>, wanted: usize, newest_first: bool) {
    while page.len() < wanted {
        let next = lanes
            .iter()
            .enumerate()
            .filter_map(|(i, lane)| lane.pending.front().map(|row| (i, &row.id)))
            .reduce(|best, other| if ahead(other.1, best.1, newest_first) { other } else { best });
        let Some((lane, id)) = next else { return };
        let settled = lanes
            .iter()
            .filter(|l| !l.done)
            .all(|l| l.last_read.as_ref().is_some_and(|last| !ahead(last, id, newest_first)));
        if !settled {
            return;
        }
        page.extend(lanes[lane].pending.pop_front());
    }
}

/// The lanes whose unread rows could still be among the `missing` next rows of the page.
fn lanes_needed(lanes: &[Lane], missing: usize, newest_first: bool) -> Vec<usize> {
    let mut pending: Vec<&AttemptId> = lanes.iter().flat_map(|l| l.pending.iter().map(|a| &a.id)).collect();
    // The missing-th row already read: a lane that has read past it cannot add to the page.
    let threshold = (pending.len() >= missing).then(|| {
        pending.sort_unstable_by(|a, b| if newest_first { b.cmp(a) } else { a.cmp(b) });
        pending[missing - 1]
    });
    lanes
        .iter()
        .enumerate()
        .filter(|(_, lane)| !lane.done)
        .filter(|(_, lane)| match (&lane.last_read, threshold) {
            (Some(last), Some(threshold)) => ahead(last, threshold, newest_first),
            _ => true,
        })
        .map(|(i, _)| i)
        .collect()
}

/// One Query's rows that match the filters, where its reading stopped, the rows it read
/// before the filter, and the read units DynamoDB charged.
struct Read {
    rows: Vec<Attempt>,
    start_key: Option<Item>,
    rows_read: usize,
    units: f64,
}

impl Walk<'_> {
    /// The lane's next `limit` rows (counted before the filter) that match the filters.
    async fn read(&self, lane: &Lane, limit: usize) -> Result<Read, StoreError> {
        let store = self.store;
        let mut request = store
            .client
            .query()
            .table_name(&store.table)
            .set_index_name(self.index.map(str::to_owned))
            // Reads on the table are strong, so a list right after a write shows it;
            // global indexes only offer eventual consistency.
            .set_consistent_read(self.index.is_none().then_some(true))
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
            .expression_attribute_names("#pk", self.partition_key_name)
            .expression_attribute_names("#sk", self.sort_key_name)
            .expression_attribute_values(":pk", s(lane.partition_key.clone()))
            .expression_attribute_values(":low", s(lane.low.clone()))
            .expression_attribute_values(":high", s(self.high.clone()))
            .set_filter_expression(self.filter.clone())
            .scan_index_forward(!self.newest_first)
            // Limit counts rows read before the filter.
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .set_exclusive_start_key(lane.start_key.clone());
        for (placeholder, attribute) in [("#status", "status"), ("#capability", "capability")] {
            if self.filter.as_deref().is_some_and(|f| f.contains(placeholder)) {
                request = request.expression_attribute_names(placeholder, attribute);
            }
        }
        for (name, value) in &self.filter_values {
            request = request.expression_attribute_values(name.as_str(), AttributeValue::S(value.clone()));
        }
        let out = store.call(request.send()).await?.map_err(classify)?;
        let rows = out.items().iter().map(from_item).collect::<Result<_, _>>()?;
        let units = out.consumed_capacity().and_then(|c| c.capacity_units()).unwrap_or(0.0);
        let rows_read = usize::try_from(out.scanned_count()).unwrap_or(0);
        Ok(Read { rows, start_key: out.last_evaluated_key, rows_read, units })
    }
}

/// `#status IN (...) AND #capability = :capability`, for the filters the query has.
fn filter_expression(query: &ListQuery) -> (Option<String>, Vec<(String, String)>) {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    if !query.statuses.is_empty() {
        let names: Vec<String> = (0..query.statuses.len()).map(|i| format!(":status{i}")).collect();
        clauses.push(format!("#status IN ({})", names.join(", ")));
        values.extend(names.into_iter().zip(query.statuses.iter().map(|s| s.as_str().to_owned())));
    }
    if let Some(capability) = &query.capability {
        clauses.push("#capability = :capability".to_owned());
        values.push((":capability".to_owned(), capability.clone()));
    }
    ((!clauses.is_empty()).then(|| clauses.join(" AND ")), values)
}

/// What a row cost, on average, in each organization's last list in this process, on the
/// table or on the session index (read at half the price).
#[derive(Debug, Default)]
pub(super) struct RowUnits(std::sync::Mutex<std::collections::HashMap<(OrganizationId, bool), f64>>);

impl RowUnits {
    fn get(&self, costs: &(OrganizationId, bool)) -> Option<f64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(costs).copied()
    }

    fn set(&self, costs: (OrganizationId, bool), units: f64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(costs, units);
    }
}
