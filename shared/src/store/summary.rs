//! Counters: each write moves its attempt's amount between per-status totals of its
//! organization, its session and the hour it was created in, inside the write's transaction.

use std::str::FromStr;

use aws_sdk_dynamodb::types::{AttributeValue, Update};
use rust_decimal::Decimal;

use super::item::{corrupt, s};
use super::keys::org_key;
use super::schema::{PARTITION_KEY, SORT_KEY};
use super::transact::classify;
use super::{AttemptStore, StoreError};
use crate::attempt::{Attempt, Status};
use crate::id::{OrganizationId, SessionId};
use crate::summary::{Summary, SummaryScope, ATTEMPT_STATUSES, HOUR_MS};

impl AttemptStore {
    /// Counts and totals per status, from the counters: one read for a session or the whole
    /// organization, one Query over hourly counters for a time range.
    pub async fn summary(&self, org: &OrganizationId, scope: &SummaryScope) -> Result<Summary, StoreError> {
        let (low, high) = match scope {
            SummaryScope::Session(session) => {
                let key = session_counter(session);
                (format!("{key}#"), format!("{key}#~"))
            }
            SummaryScope::Organization { hours: None } => (format!("{ORG_COUNTER}#"), format!("{ORG_COUNTER}#~")),
            SummaryScope::Organization { hours: Some((from, to)) } => {
                (format!("{HOUR_COUNTER}#{from:010}#"), format!("{HOUR_COUNTER}#{to:010}#~"))
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
                .expression_attribute_values(":pk", s(org_key(org)))
                .expression_attribute_values(":low", s(low.clone()))
                .expression_attribute_values(":high", s(high.clone()))
                .set_exclusive_start_key(start_key.take())
                .send();
            let out = self.call(request).await?.map_err(classify)?;
            for item in out.items() {
                for status in ATTEMPT_STATUSES {
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

    /// `ADD count_<status> ±1, amount_usd_<status> ±amount` on one counter item.
    pub(super) fn count(
        &self,
        org: &OrganizationId,
        counter: &str,
        moves: &[(Status, i64, Decimal)],
    ) -> Result<Update, StoreError> {
        let mut update =
            Update::builder().table_name(&self.table).key(PARTITION_KEY, s(org_key(org))).key(SORT_KEY, s(counter));
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

const ORG_COUNTER: &str = "SUM#ORG";
const HOUR_COUNTER: &str = "SUM#HR";
/// Counters are split over shards (picked by the attempt id) so that concurrent writes rarely
/// meet on one item; a summary adds the shards up.
const COUNTER_SHARDS: u32 = 4;

fn session_counter(session: &SessionId) -> String {
    format!("SUM#SES#{session}")
}

/// The counters an attempt counts in: a shard of its session's, of its organization's, and of
/// the hour it was created in.
pub(super) fn counter_keys(attempt: &Attempt) -> Vec<String> {
    let shard = attempt.id.as_str().bytes().last().map_or(0, |b| u32::from(b) % COUNTER_SHARDS);
    let hour = attempt.created_at.unix_millis().div_euclid(HOUR_MS);
    let mut keys = vec![format!("{ORG_COUNTER}#{shard}"), format!("{HOUR_COUNTER}#{hour:010}#{shard}")];
    keys.extend(attempt.session_id.as_ref().map(|session| format!("{}#{shard}", session_counter(session))));
    keys
}
