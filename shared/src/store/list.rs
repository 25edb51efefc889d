//! Pages of an organization's attempts, newest first, with key-based cursors.

use super::item::{corrupt, from_item, opt_s, s, Item};
use super::keys::{org_key, session_key, ATTEMPT_SK_PREFIX};
use super::schema::*;
use super::transact::classify;
use super::{AttemptStore, StoreError};
use crate::id::{AttemptId, OrganizationId};
use crate::page::{Cursor, ListQuery, Page};

impl AttemptStore {
    /// A page of the organization's attempts (of one session if asked), newest first.
    ///
    /// Session and creation-time bounds are key conditions; status and capability filter the
    /// rows read, and reading goes on until the page is full or the range ends, for at most
    /// `max_reads` Query calls (then `resume` says where to go on).
    pub async fn list(&self, org: &OrganizationId, query: &ListQuery) -> Result<Page, StoreError> {
        // Table rows sort by `ATT#<id>`, index rows by `<id>`.
        let (index, pk_name, pk_value, sk_name, sk_prefix) = match &query.session_id {
            Some(session) => {
                (Some(SESSION_INDEX), SESSION_PARTITION_KEY, session_key(org, session), SESSION_SORT_KEY, "")
            }
            None => (None, PARTITION_KEY, org_key(org), SORT_KEY, ATTEMPT_SK_PREFIX),
        };
        // BETWEEN is inclusive, so the cursor's own row may come back: it is skipped below.
        let (mut low, mut high) = query.created.id_bounds();
        let (newest_first, skip) = match &query.cursor {
            None => (true, None),
            Some(Cursor::StartingAfter(id)) => {
                high = high.min(id.clone());
                (true, Some(id))
            }
            Some(Cursor::EndingBefore(id)) => {
                low = low.max(id.clone());
                (false, Some(id))
            }
        };
        let mut page = Page { attempts: Vec::new(), has_more: false, resume: None, reads: 0 };
        if low > high {
            return Ok(page);
        }
        let (filter, filter_values) = filter_expression(query);
        let wanted = usize::from(query.limit) + 1;
        let mut read_limit = wanted + 1;
        let mut start_key: Option<Item> = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_owned))
                // Reads on the table are strong, so a list right after a write shows it;
                // global indexes only offer eventual consistency.
                .set_consistent_read(index.is_none().then_some(true))
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
                .expression_attribute_names("#pk", pk_name)
                .expression_attribute_names("#sk", sk_name)
                .expression_attribute_values(":pk", s(pk_value.clone()))
                .expression_attribute_values(":low", s(format!("{sk_prefix}{low}")))
                .expression_attribute_values(":high", s(format!("{sk_prefix}{high}")))
                .set_filter_expression(filter.clone())
                .scan_index_forward(!newest_first)
                // Limit counts rows read before the filter: ask for what is missing, and
                // read wider each round while a filter keeps the page from filling.
                .limit(i32::try_from(read_limit).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start_key.take());
            for (placeholder, attribute) in [("#status", "status"), ("#capability", "capability")] {
                if filter.as_deref().is_some_and(|f| f.contains(placeholder)) {
                    request = request.expression_attribute_names(placeholder, attribute);
                }
            }
            for (name, value) in &filter_values {
                request = request.expression_attribute_values(name.as_str(), s(value.as_str()));
            }
            let out = self.call(request.send()).await?.map_err(classify)?;
            page.reads += 1;
            for item in out.items() {
                let attempt = from_item(item)?;
                if Some(&attempt.id) != skip && page.attempts.len() < wanted {
                    page.attempts.push(attempt);
                }
            }
            start_key = out.last_evaluated_key;
            let missing = wanted.saturating_sub(page.attempts.len());
            if missing == 0 || start_key.is_none() {
                break;
            }
            if page.reads >= self.max_reads {
                // Stopped short of a full page: go on from the last row read, not the last shown.
                let last = start_key.as_ref().and_then(|k| opt_s(k, sk_name)).map(|k| k.trim_start_matches(sk_prefix));
                let last = last.and_then(AttemptId::parse).ok_or_else(|| corrupt("last evaluated key"))?;
                page.resume = Some(if newest_first { Cursor::StartingAfter(last) } else { Cursor::EndingBefore(last) });
                page.has_more = true;
                break;
            }
            read_limit =
                if filter.is_some() { (read_limit * 2).clamp(missing + 1, MAX_ROWS_PER_READ) } else { missing + 1 };
        }
        page.has_more |= page.attempts.len() > usize::from(query.limit);
        page.attempts.truncate(usize::from(query.limit));
        if !newest_first {
            page.attempts.reverse();
        }
        Ok(page)
    }
}

/// Rows one filtered Query reads at most (about 1 MB of attempts).
const MAX_ROWS_PER_READ: usize = 1000;
/// Query calls one list request makes at most.
pub const DEFAULT_MAX_READS: u32 = 10;

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
