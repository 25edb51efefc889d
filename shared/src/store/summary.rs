//! Counters: per-status counts and totals of an organization, of each of its sessions and of
//! each hour attempts were created in, kept by the summarizer from the table's stream
//! ([`super::summarize`]). Each is split over shards that a summary adds up, so that
//! summarizers running at once rarely write the same item.

use std::str::FromStr;

use aws_sdk_dynamodb::types::{AttributeValue, Update};
use rust_decimal::Decimal;

use super::item::{corrupt, s};
use super::keys::{session_summary_pk, summary_pk};
use super::schema::{PARTITION_KEY, SORT_KEY};
use super::transact::classify;
use super::{AttemptStore, StoreError};
use crate::attempt::{Attempt, Status};
use crate::id::OrganizationId;
use crate::summary::{Summary, SummaryScope, HOUR_MS};

impl AttemptStore {
    /// Counts and totals per status, from the counters: one read for a session or the whole
    /// organization, one Query over hourly counters for a time range.
    pub async fn summary(&self, org: &OrganizationId, scope: &SummaryScope) -> Result<Summary, StoreError> {
        let (partition_key, low, high) = match scope {
            SummaryScope::Session(session) => (session_summary_pk(org, session), "0".to_owned(), "~".to_owned()),
            SummaryScope::Organization { hours: None } => {
                (summary_pk(org), format!("{ORG_COUNTER}#"), format!("{ORG_COUNTER}#~"))
            }
            SummaryScope::Organization { hours: Some((from, to)) } => {
                (summary_pk(org), format!("{HOUR_COUNTER}#{from:010}#"), format!("{HOUR_COUNTER}#{to:010}#~"))
            }
        };
        let mut summary = Summary::default();
        let mut start_key = None;
        loop {
            let request = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
                .expression_attribute_names("#pk", PARTITION_KEY)
                .expression_attribute_names("#sk", SORT_KEY)
                .expression_attribute_values(":pk", s(partition_key.clone()))
                .expression_attribute_values(":low", s(low.clone()))
                .expression_attribute_values(":high", s(high.clone()))
                .set_exclusive_start_key(start_key.take())
                .send();
            let out = self.call(request).await?.map_err(classify)?;
            for item in out.items() {
                for status in Status::ALL {
                    let number = |prefix: &str| -> Result<Option<Decimal>, StoreError> {
                        let value = item.get(&format!("{prefix}_{status}")).and_then(|v| v.as_n().ok());
                        value.map(|n| Decimal::from_str(n).map_err(|_| corrupt("counter"))).transpose()
                    };
                    let count = number("count")?.unwrap_or_default();
                    let count = i64::try_from(count).map_err(|_| corrupt("counter"))?;
                    summary.add(status, count, number("amount_usd")?.unwrap_or_default());
                }
            }
            start_key = out.last_evaluated_key;
            if start_key.is_none() {
                return Ok(summary);
            }
        }
    }

    /// `ADD count_<status> ±n, amount_usd_<status> ±amount` on one counter item.
    pub(super) fn count_update(&self, counter: &CounterKey, moves: &Summary) -> Result<Update, StoreError> {
        let moves: Vec<(Status, i64, Decimal)> =
            moves.nonzero().into_iter().map(|(status, totals)| (status, totals.count, totals.amount_usd)).collect();
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(counter.partition_key.clone()))
            .key(SORT_KEY, s(counter.sort_key.clone()));
        let mut clauses = Vec::new();
        for (i, (status, count, amount)) in moves.iter().enumerate() {
            clauses.push(format!("#c{i} :c{i}, #a{i} :a{i}"));
            update = update
                .expression_attribute_names(format!("#c{i}"), format!("count_{status}"))
                .expression_attribute_names(format!("#a{i}"), format!("amount_usd_{status}"))
                .expression_attribute_values(format!(":c{i}"), AttributeValue::N(count.to_string()))
                .expression_attribute_values(format!(":a{i}"), AttributeValue::N(amount.normalize().to_string()));
        }
        update
            .update_expression(format!("ADD {}", clauses.join(", ")))
            .build()
            .map_err(|e| StoreError::Other(e.to_string()))
    }
}

const ORG_COUNTER: &str = "ORG";
const HOUR_COUNTER: &str = "HR";
/// Shards of each counter; a summary adds them up.
const COUNTER_SHARDS: u8 = 8;

/// One counter item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct CounterKey {
    partition_key: String,
    sort_key: String,
}

/// A counter shard for one summarizer transaction, picked at random: concurrent
/// summarizers then rarely meet on an item.
pub(super) fn counter_shard() -> u8 {
    uuid::Uuid::now_v7().as_bytes()[15] % COUNTER_SHARDS
}

/// The counters an attempt counts in (their `shard`): its organization's, the hour it was
/// created in, and its session's.
pub(super) fn counter_keys(attempt: &Attempt, shard: u8) -> Vec<CounterKey> {
    let org = &attempt.organization_id;
    let hour = attempt.created_at.unix_millis().div_euclid(HOUR_MS);
    let mut keys = vec![
        CounterKey { partition_key: summary_pk(org), sort_key: format!("{ORG_COUNTER}#{shard}") },
        CounterKey { partition_key: summary_pk(org), sort_key: format!("{HOUR_COUNTER}#{hour:010}#{shard}") },
    ];
    keys.extend(
        attempt
            .session_id
            .as_ref()
            .map(|session| CounterKey { partition_key: session_summary_pk(org, session), sort_key: shard.to_string() }),
    );
    keys
}
