//! The DynamoDB table: the only module that knows its keys and item layout.
//!
//! Attempt item: `pk = ORG#<org>`, `sk = ATT#<id>`. Session index (`by_session`, sparse):
//! `session_pk = ORG#<org>#SES#<session>`, sort key `id`. Beside the attempts, in the same
//! organization partition: idempotency records (`sk = IDEM#<key>`, expiring through the TTL
//! attribute) and replay guards (`sk = HASH#<request_hash>`, naming the attempt that holds the
//! hash). They are written in the same transaction as the attempt, so one never exists
//! without the other. The organization is in every key, so no request can reach another
//! tenant's items.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use serde_json::value::RawValue;

use crate::attempt::{Attempt, Status, StatusChange, StatusDetails};
use crate::id::{AttemptId, OrganizationId, PaymentAccountId, SessionId};
use crate::idempotency::{IdempotencyRecord, KeyClaim, KeyState, CLAIM_SECONDS};
use crate::money::{Amount, Currency};
use crate::page::{Cursor, ListQuery, Page};
use crate::summary::{Summary, SummaryScope, ATTEMPT_STATUSES, HOUR_MS};
use crate::time::Timestamp;
use rust_decimal::Decimal;

/// Key attribute and index names, as declared in `template.yaml`.
pub mod schema {
    pub const PARTITION_KEY: &str = "pk";
    pub const SORT_KEY: &str = "sk";
    pub const SESSION_INDEX: &str = "by_session";
    pub const SESSION_PARTITION_KEY: &str = "session_pk";
    pub const SESSION_SORT_KEY: &str = "id";
    pub const TTL_ATTRIBUTE: &str = "expires_at";
}
use schema::*;

const ATTEMPT_SK_PREFIX: &str = "ATT#";
/// How long init waits for [`AttemptStore::warm_up`].
pub const WARM_UP_BOUND: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttled after the SDK's retries, unreachable, timed out or failing on AWS's side: the
    /// caller may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// An item that does not decode: a bug or a hand edit, never the caller's fault.
    #[error("stored item is malformed: {0}")]
    Corrupt(String),
    #[error("storage request failed: {0}")]
    Other(String),
    /// A pending or succeeded attempt of the organization already holds this request hash.
    #[error("request_hash already held by {0}")]
    DuplicateRequest(AttemptId),
    /// Another request holds or has used this idempotency key.
    #[error("idempotency key held by another request")]
    IdempotencyKeyTaken,
    /// A concurrent transaction is writing this idempotency key right now.
    #[error("idempotency key in use by a request in flight")]
    IdempotencyKeyInUse,
    /// The attempt changed since it was read.
    #[error("attempt changed since it was read")]
    VersionConflict,
    /// Another transaction held a shared item (a counter); retried inside the store.
    #[error("transaction conflict on a shared item")]
    Contention,
}

#[derive(Clone, Debug)]
pub struct AttemptStore {
    client: Client,
    table: String,
    max_reads: u32,
}

impl AttemptStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        AttemptStore { client, table: table.into(), max_reads: DEFAULT_MAX_READS }
    }

    /// Bounds the Query calls of one list request (default [`DEFAULT_MAX_READS`]).
    pub fn with_max_reads(self, max_reads: u32) -> Self {
        AttemptStore { max_reads: max_reads.max(1), ..self }
    }

    /// Writes a new attempt, its replay guard and its idempotency record in one transaction;
    /// never overwrites an attempt.
    pub async fn create(&self, attempt: &Attempt, key: Option<&IdempotencyRecord>) -> Result<(), StoreError> {
        let mut writes = vec![Write::Attempt(put(&self.table, to_item(attempt), "attribute_not_exists(#pk)", &[])?)];
        if let Some(hash) = attempt.request_hash.as_deref() {
            let org = &attempt.organization_id;
            // A held hash refuses any new attempt; only a pending or succeeded one takes it.
            writes.push(if holds_guard(attempt.status) {
                Write::Guard(self.put_guard(org, hash, &attempt.id)?)
            } else {
                Write::GuardFree(self.guard_free(org, hash)?)
            });
        }
        if let Some(key) = key {
            writes.push(Write::Key(self.put_key(&attempt.organization_id, key)?));
        }
        let amount = attempt.amount_usd.as_decimal();
        for counter in counter_keys(attempt) {
            writes.push(Write::Counter(self.count(
                &attempt.organization_id,
                &counter,
                &[(attempt.status, 1, amount)],
            )?));
        }
        self.transact(writes).await
    }

    /// Replaces `before` by `after` if nobody changed it in between (same version), releasing
    /// the replay guard when the attempt stops holding it, with the idempotency record.
    pub async fn update(
        &self,
        before: &Attempt,
        after: &Attempt,
        key: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let version = AttributeValue::N(before.version.to_string());
        let condition = put(&self.table, to_item(after), "#version = :version", &[(":version", version)])?;
        let mut writes = vec![Write::Attempt(condition)];
        if let Some(hash) = after.request_hash.as_deref() {
            if holds_guard(before.status) && !holds_guard(after.status) {
                writes.push(Write::ReleaseGuard(self.delete_guard(&after.organization_id, hash, &after.id)?));
            }
        }
        if let Some(key) = key {
            writes.push(Write::Key(self.put_key(&after.organization_id, key)?));
        }
        if before.status != after.status {
            let amount = after.amount_usd.as_decimal();
            let moves = [(before.status, -1, -amount), (after.status, 1, amount)];
            for counter in counter_keys(after) {
                writes.push(Write::Counter(self.count(&after.organization_id, &counter, &moves)?));
            }
        }
        self.transact(writes).await
    }

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
            let out = self
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
                .send()
                .await
                .map_err(classify)?;
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
    fn count(
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

    /// What `key` holds, unless it has expired (TTL deletion lags behind).
    pub async fn key_state(
        &self,
        org: &OrganizationId,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<KeyState>, StoreError> {
        let Some(item) = self.read(org, key_sk(key)).await? else { return Ok(None) };
        let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
        let expires_at = number(TTL_ATTRIBUTE).ok_or_else(|| corrupt(TTL_ATTRIBUTE))?;
        if expires_at <= now.unix_seconds() {
            return Ok(None);
        }
        let fingerprint = get_s(&item, "fingerprint")?.to_owned();
        if get_s(&item, "state")? == "in_flight" {
            return Ok(Some(KeyState::InFlight { fingerprint }));
        }
        Ok(Some(KeyState::Done(IdempotencyRecord {
            key: key.to_owned(),
            token: get_s(&item, "claim")?.to_owned(),
            fingerprint,
            status: number("status").and_then(|n| u16::try_from(n).ok()).ok_or_else(|| corrupt("status"))?,
            body: get_s(&item, "body")?.to_owned(),
            expires_at,
        })))
    }

    /// Takes `key` for a request now in flight, unless another holds it (or held it and has
    /// not expired): then [`StoreError::IdempotencyKeyTaken`].
    pub async fn claim_key(
        &self,
        org: &OrganizationId,
        key: &str,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<KeyClaim, StoreError> {
        let claim = KeyClaim {
            key: key.to_owned(),
            token: uuid::Uuid::now_v7().simple().to_string(),
            fingerprint: fingerprint.to_owned(),
        };
        let item = HashMap::from([
            (PARTITION_KEY.to_owned(), s(org_key(org))),
            (SORT_KEY.to_owned(), s(key_sk(key))),
            ("state".to_owned(), s("in_flight")),
            ("claim".to_owned(), s(&claim.token)),
            ("fingerprint".to_owned(), s(fingerprint)),
            (TTL_ATTRIBUTE.to_owned(), AttributeValue::N((now.unix_seconds() + CLAIM_SECONDS).to_string())),
        ]);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(format!("attribute_not_exists(#pk) OR {TTL_ATTRIBUTE} < :now"))
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_values(":now", AttributeValue::N(now.unix_seconds().to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(claim),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Err(StoreError::IdempotencyKeyTaken)
            }
            Err(err) => Err(classify(err)),
        }
    }

    /// Keeps an outcome that was not a write (a refusal) under its claimed key.
    pub async fn finish_key(&self, org: &OrganizationId, record: &IdempotencyRecord) -> Result<(), StoreError> {
        self.transact(vec![Write::Key(self.put_key(org, record)?)]).await
    }

    /// Gives a claimed key back, so a retry of a request that failed for want of storage runs.
    pub async fn release_key(&self, org: &OrganizationId, claim: &KeyClaim) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(org_key(org)))
            .key(SORT_KEY, s(key_sk(&claim.key)))
            .condition_expression("claim = :token")
            .expression_attribute_values(":token", s(&claim.token))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    fn put_guard(&self, org: &OrganizationId, hash: &str, id: &AttemptId) -> Result<Put, StoreError> {
        let item = HashMap::from([
            (PARTITION_KEY.to_owned(), s(org_key(org))),
            (SORT_KEY.to_owned(), s(guard_sk(hash))),
            ("attempt_id".to_owned(), s(id.as_str())),
        ]);
        put(&self.table, item, "attribute_not_exists(#pk)", &[])
    }

    fn guard_free(&self, org: &OrganizationId, hash: &str) -> Result<ConditionCheck, StoreError> {
        ConditionCheck::builder()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(org_key(org)))
            .key(SORT_KEY, s(guard_sk(hash)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| StoreError::Other(e.to_string()))
    }

    fn delete_guard(&self, org: &OrganizationId, hash: &str, id: &AttemptId) -> Result<Delete, StoreError> {
        Delete::builder()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(org_key(org)))
            .key(SORT_KEY, s(guard_sk(hash)))
            // Only this attempt's own guard; none at all is fine (nothing to release).
            .condition_expression("attribute_not_exists(#pk) OR attempt_id = :id")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_values(":id", s(id.as_str()))
            .build()
            .map_err(|e| StoreError::Other(e.to_string()))
    }

    /// The finished record, written only by the holder of the claim.
    fn put_key(&self, org: &OrganizationId, key: &IdempotencyRecord) -> Result<Put, StoreError> {
        let item = HashMap::from([
            (PARTITION_KEY.to_owned(), s(org_key(org))),
            (SORT_KEY.to_owned(), s(key_sk(&key.key))),
            ("state".to_owned(), s("done")),
            ("claim".to_owned(), s(&key.token)),
            ("fingerprint".to_owned(), s(&key.fingerprint)),
            ("status".to_owned(), AttributeValue::N(key.status.to_string())),
            ("body".to_owned(), s(&key.body)),
            (TTL_ATTRIBUTE.to_owned(), AttributeValue::N(key.expires_at.to_string())),
        ]);
        put(&self.table, item, "claim = :token", &[(":token", s(&key.token))])
    }

    /// Runs the writes as one transaction. Its request token makes the SDK's own retries of it
    /// idempotent: a retry after a lost response is answered as the first try was.
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let kinds: Vec<WriteKind> = writes.iter().map(Write::kind).collect();
        let items: Vec<TransactWriteItem> = writes.into_iter().map(Write::into_item).collect();
        for round in 0..CONTENTION_RETRIES {
            // A fresh token each round: a cancelled transaction wrote nothing.
            let token = uuid::Uuid::now_v7().simple().to_string();
            let request = self.client.transact_write_items().set_transact_items(Some(items.clone()));
            let err = match request.client_request_token(token).send().await {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            let reasons = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e)) => e.cancellation_reasons().to_vec(),
                _ => return Err(classify(err)),
            };
            match cancelled(&kinds, &reasons) {
                // Shared counters were busy with another transaction: wait a little and retry.
                StoreError::Contention => {
                    let jitter = u64::from(uuid::Uuid::now_v7().as_bytes()[15] % 16);
                    tokio::time::sleep(std::time::Duration::from_millis((5 + jitter) << round)).await;
                }
                other => return Err(other),
            }
        }
        Err(StoreError::Unavailable("transactions kept conflicting on shared counters".to_owned()))
    }

    /// Strongly consistent: an attempt just recorded is always found.
    pub async fn get(&self, org: &OrganizationId, id: &AttemptId) -> Result<Option<Attempt>, StoreError> {
        self.read(org, attempt_sk(id)).await?.map(|item| from_item(&item)).transpose()
    }

    /// Reads a key no item ever has, so that the connection (DNS, TCP, TLS), the credentials
    /// and the request path are ready before the first event. Bounded to one second so an
    /// outage cannot hold init; errors are only logged, as the first request reports them.
    pub async fn warm_up(&self) {
        let read =
            self.client.get_item().table_name(&self.table).key(PARTITION_KEY, s("WARMUP")).key(SORT_KEY, s("WARMUP"));
        match tokio::time::timeout(WARM_UP_BOUND, read.send()).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(error = %classify(err), "DynamoDB warm-up failed"),
            Err(_) => tracing::warn!("DynamoDB warm-up timed out"),
        }
    }

    /// One item of the organization's partition, strongly consistent.
    async fn read(&self, org: &OrganizationId, sort_key: String) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(org_key(org)))
            .key(SORT_KEY, s(sort_key))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(out.item)
    }

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
            let out = request.send().await.map_err(classify)?;
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

fn org_key(org: &OrganizationId) -> String {
    format!("ORG#{org}")
}

fn session_key(org: &OrganizationId, session: &SessionId) -> String {
    format!("ORG#{org}#SES#{session}")
}

fn attempt_sk(id: &AttemptId) -> String {
    format!("{ATTEMPT_SK_PREFIX}{id}")
}

fn key_sk(key: &str) -> String {
    format!("IDEM#{key}")
}

fn guard_sk(hash: &str) -> String {
    format!("HASH#{hash}")
}

const ORG_COUNTER: &str = "SUM#ORG";
const HOUR_COUNTER: &str = "SUM#HR";
/// Counters are split over shards (picked by the attempt id) so that concurrent writes rarely
/// meet on one item; a summary adds the shards up.
const COUNTER_SHARDS: u32 = 4;
/// Rounds a transaction is tried while shared counters are busy.
const CONTENTION_RETRIES: u32 = 6;

fn session_counter(session: &SessionId) -> String {
    format!("SUM#SES#{session}")
}

/// The counters an attempt counts in: a shard of its session's, of its organization's, and of
/// the hour it was created in.
fn counter_keys(attempt: &Attempt) -> Vec<String> {
    let shard = attempt.id.as_str().bytes().last().map_or(0, |b| u32::from(b) % COUNTER_SHARDS);
    let hour = attempt.created_at.unix_millis().div_euclid(HOUR_MS);
    let mut keys = vec![format!("{ORG_COUNTER}#{shard}"), format!("{HOUR_COUNTER}#{hour:010}#{shard}")];
    keys.extend(attempt.session_id.as_ref().map(|session| format!("{}#{shard}", session_counter(session))));
    keys
}

/// A pending or succeeded attempt holds its request hash; failed and released ones let go.
fn holds_guard(status: Status) -> bool {
    matches!(status, Status::Pending | Status::Succeeded)
}

fn put(table: &str, item: Item, condition: &str, values: &[(&str, AttributeValue)]) -> Result<Put, StoreError> {
    let mut put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    for (name, attribute) in [("#pk", PARTITION_KEY), ("#version", "version")] {
        if condition.contains(name) {
            put = put.expression_attribute_names(name, attribute);
        }
    }
    for (name, value) in values {
        put = put.expression_attribute_values(*name, value.clone());
    }
    put.build().map_err(|e| StoreError::Other(e.to_string()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Attempt,
    Guard,
    Key,
    Counter,
}

/// One write of a transaction, named for what its failure means.
enum Write {
    Attempt(Put),
    Guard(Put),
    GuardFree(ConditionCheck),
    ReleaseGuard(Delete),
    Key(Put),
    Counter(Update),
}

impl Write {
    fn kind(&self) -> WriteKind {
        match self {
            Write::Attempt(_) => WriteKind::Attempt,
            Write::Guard(_) | Write::GuardFree(_) | Write::ReleaseGuard(_) => WriteKind::Guard,
            Write::Key(_) => WriteKind::Key,
            Write::Counter(_) => WriteKind::Counter,
        }
    }

    fn into_item(self) -> TransactWriteItem {
        match self {
            Write::Attempt(p) | Write::Guard(p) | Write::Key(p) => TransactWriteItem::builder().put(p).build(),
            Write::GuardFree(c) => TransactWriteItem::builder().condition_check(c).build(),
            Write::ReleaseGuard(d) => TransactWriteItem::builder().delete(d).build(),
            Write::Counter(u) => TransactWriteItem::builder().update(u).build(),
        }
    }
}

/// Why a transaction was cancelled, from the reason DynamoDB gives for each of its writes.
fn cancelled(kinds: &[WriteKind], reasons: &[CancellationReason]) -> StoreError {
    // The idempotency key speaks first: if a request with this key already committed, this
    // one is its retry, whatever else its own writes ran into.
    for (kind, reason) in kinds.iter().zip(reasons) {
        match (kind, reason.code().unwrap_or("None")) {
            (WriteKind::Key, "ConditionalCheckFailed") => return StoreError::IdempotencyKeyTaken,
            (WriteKind::Key, "TransactionConflict") => return StoreError::IdempotencyKeyInUse,
            _ => {}
        }
    }
    let mut contention = false;
    for (kind, reason) in kinds.iter().zip(reasons) {
        match (kind, reason.code().unwrap_or("None")) {
            (_, "None") => {}
            (WriteKind::Attempt, "ConditionalCheckFailed") => return StoreError::VersionConflict,
            (WriteKind::Guard, "ConditionalCheckFailed") => {
                let holder = reason.item().and_then(|item| opt_s(item, "attempt_id")).and_then(AttemptId::parse);
                return match holder {
                    Some(id) => StoreError::DuplicateRequest(id),
                    None => StoreError::Corrupt("replay guard without attempt_id".to_owned()),
                };
            }
            // The attempt itself is being written by someone else: the caller re-reads.
            (WriteKind::Attempt, "TransactionConflict") => return StoreError::VersionConflict,
            (_, "TransactionConflict") => contention = true,
            (_, "ThrottlingError" | "ProvisionedThroughputExceeded" | "RequestLimitExceeded") => {
                return StoreError::Unavailable(format!("transaction throttled on {kind:?}"))
            }
            (_, code) => return StoreError::Other(format!("transaction cancelled on {kind:?}: {code}")),
        }
    }
    if contention {
        StoreError::Contention
    } else {
        StoreError::Other("transaction cancelled without a reason".to_owned())
    }
}

/// Maps an SDK failure to what the caller can do about it.
fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(err: SdkError<E, HttpResponse>) -> StoreError {
    const RETRYABLE: [&str; 6] = [
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    ];
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(format!("{err:?}"))
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("");
            if service.raw().status().is_server_error() || RETRYABLE.contains(&code) {
                StoreError::Unavailable(code.to_owned())
            } else {
                StoreError::Other(format!("{code}: {}", service.err().message().unwrap_or("")))
            }
        }
        _ => StoreError::Other(format!("{err:?}")),
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn put_opt(item: &mut HashMap<String, AttributeValue>, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        item.insert(name.to_owned(), s(v));
    }
}

fn details_map(d: &StatusDetails) -> HashMap<String, AttributeValue> {
    let mut m = HashMap::from([("changed_at".to_owned(), s(d.changed_at.to_string()))]);
    put_opt(&mut m, "reason", d.reason.as_deref());
    put_opt(&mut m, "message", d.message.as_deref());
    put_opt(&mut m, "source", d.source.as_deref());
    put_opt(&mut m, "code", d.code.as_deref());
    m
}

fn change_item(c: &StatusChange) -> AttributeValue {
    let mut m = details_map(&c.details());
    m.insert("status".to_owned(), s(c.status.as_str()));
    put_opt(&mut m, "previous_status", c.previous_status.map(|p| p.as_str()));
    AttributeValue::M(m)
}

fn to_item(a: &Attempt) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (PARTITION_KEY.to_owned(), s(org_key(&a.organization_id))),
        (SORT_KEY.to_owned(), s(attempt_sk(&a.id))),
        ("id".to_owned(), s(a.id.as_str())),
        ("organization_id".to_owned(), s(a.organization_id.as_str())),
        ("capability".to_owned(), s(&a.capability)),
        ("operation".to_owned(), s(&a.operation)),
        // A DynamoDB number holds the exact decimal text.
        ("amount_usd".to_owned(), AttributeValue::N(a.amount_usd.to_string())),
        ("currency".to_owned(), s(a.currency.as_str())),
        ("target_url".to_owned(), s(&a.target_url)),
        ("status".to_owned(), s(a.status.as_str())),
        ("status_details".to_owned(), AttributeValue::M(details_map(&a.status_details))),
        // Kept as JSON text so that the caller's numbers keep every digit.
        ("receipt".to_owned(), s(a.receipt.get())),
        ("metadata".to_owned(), AttributeValue::M(a.metadata.iter().map(|(k, v)| (k.clone(), s(v))).collect())),
        ("status_history".to_owned(), AttributeValue::L(a.status_history.iter().map(change_item).collect())),
        ("created_at".to_owned(), s(a.created_at.to_string())),
        ("updated_at".to_owned(), s(a.updated_at.to_string())),
        ("version".to_owned(), AttributeValue::N(a.version.to_string())),
    ]);
    if let Some(session) = &a.session_id {
        item.insert(SESSION_PARTITION_KEY.to_owned(), s(session_key(&a.organization_id, session)));
        item.insert("session_id".to_owned(), s(session.as_str()));
    }
    put_opt(&mut item, "payment_account_id", a.payment_account_id.as_ref().map(|p| p.as_str()));
    put_opt(&mut item, "rail", a.rail.as_deref());
    put_opt(&mut item, "request_hash", a.request_hash.as_deref());
    put_opt(&mut item, "error_message", a.error_message.as_deref());
    item
}

type Item = HashMap<String, AttributeValue>;

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    opt_s(item, name).ok_or_else(|| corrupt(name))
}

fn opt_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn parse_with<T>(item: &Item, name: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(get_s(item, name)?).ok_or_else(|| corrupt(name))
}

fn opt_parse<T>(item: &Item, name: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>, StoreError> {
    opt_s(item, name).map(|v| parse(v).ok_or_else(|| corrupt(name))).transpose()
}

fn opt_string(item: &Item, name: &str) -> Option<String> {
    opt_s(item, name).map(str::to_owned)
}

fn details_from(item: &Item) -> Result<StatusDetails, StoreError> {
    Ok(StatusDetails {
        changed_at: parse_with(item, "changed_at", Timestamp::parse_rfc3339)?,
        reason: opt_string(item, "reason"),
        message: opt_string(item, "message"),
        source: opt_string(item, "source"),
        code: opt_string(item, "code"),
    })
}

fn change_from(item: &Item) -> Result<StatusChange, StoreError> {
    let StatusDetails { changed_at, reason, message, source, code } = details_from(item)?;
    Ok(StatusChange {
        status: parse_with(item, "status", Status::parse)?,
        previous_status: opt_parse(item, "previous_status", Status::parse)?,
        changed_at,
        reason,
        message,
        source,
        code,
    })
}

fn from_item(item: &Item) -> Result<Attempt, StoreError> {
    let details = item.get("status_details").and_then(|v| v.as_m().ok()).ok_or_else(|| corrupt("status_details"))?;
    let history = item.get("status_history").and_then(|v| v.as_l().ok()).map(Vec::as_slice).unwrap_or_default();
    let metadata = item.get("metadata").and_then(|v| v.as_m().ok());
    let amount = item.get("amount_usd").and_then(|v| v.as_n().ok()).ok_or_else(|| corrupt("amount_usd"))?;
    Ok(Attempt {
        id: parse_with(item, "id", AttemptId::parse)?,
        organization_id: parse_with(item, "organization_id", OrganizationId::parse)?,
        session_id: opt_parse(item, "session_id", SessionId::parse)?,
        payment_account_id: opt_parse(item, "payment_account_id", PaymentAccountId::parse)?,
        capability: get_s(item, "capability")?.to_owned(),
        operation: get_s(item, "operation")?.to_owned(),
        rail: opt_string(item, "rail"),
        amount_usd: Amount::from_str(amount).map_err(|_| corrupt("amount_usd"))?,
        currency: parse_with(item, "currency", Currency::parse)?,
        target_url: get_s(item, "target_url")?.to_owned(),
        request_hash: opt_string(item, "request_hash"),
        status: parse_with(item, "status", Status::parse)?,
        status_details: details_from(details)?,
        error_message: opt_string(item, "error_message"),
        receipt: RawValue::from_string(get_s(item, "receipt")?.to_owned()).map_err(|_| corrupt("receipt"))?,
        metadata: metadata
            .map(|m| {
                m.iter().map(|(k, v)| Ok((k.clone(), v.as_s().map_err(|_| corrupt("metadata"))?.clone()))).collect()
            })
            .transpose()?
            .unwrap_or_else(BTreeMap::new),
        status_history: history
            .iter()
            .map(|c| c.as_m().map_err(|_| corrupt("status_history")).and_then(change_from))
            .collect::<Result<_, _>>()?,
        created_at: parse_with(item, "created_at", Timestamp::parse_rfc3339)?,
        updated_at: parse_with(item, "updated_at", Timestamp::parse_rfc3339)?,
        version: item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| corrupt("version"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::NewAttempt;

    #[test]
    fn items_round_trip_every_field() {
        let body = serde_json::json!({
            "session_id": "session_s1", "payment_account_id": "payacct_a1",
            "capability": "paid_search", "operation": "search.query", "rail": "mpp_tempo",
            "amount_usd": 1000000.000001, "currency": "EUR", "target_url": "https://api.example.com/v1/search",
            "request_hash": format!("sha256:{}", "0".repeat(64)), "status": "failed",
            "error_message": "rail.insufficient_funds", "status_details": {"reason": "funds", "source": "rail"},
            "receipt": {"tx": "0xabc", "n": 1}, "metadata": {"k": "v"}
        });
        let org = OrganizationId::parse("org_acme").unwrap();
        let a = NewAttempt::from_json(body.to_string().as_bytes()).unwrap().into_attempt(org, Timestamp::now());
        let item = to_item(&a);
        assert_eq!(item["pk"].as_s().unwrap(), "ORG#org_acme");
        assert_eq!(item["sk"].as_s().unwrap(), &format!("ATT#{}", a.id));
        assert_eq!(item["session_pk"].as_s().unwrap(), "ORG#org_acme#SES#session_s1");
        assert_eq!(item["amount_usd"].as_n().unwrap(), "1000000.000001");
        let back = from_item(&item).unwrap();
        let json = |a: &Attempt| serde_json::to_string(&a.view(crate::View::Full)).unwrap();
        assert_eq!(json(&back), json(&a));
    }

    #[test]
    fn attempts_without_session_stay_out_of_the_session_index() {
        let body = serde_json::json!({"capability": "c", "operation": "o", "amount_usd": 1, "target_url": "https://x.example/"});
        let org = OrganizationId::parse("org_acme").unwrap();
        let a = NewAttempt::from_json(body.to_string().as_bytes()).unwrap().into_attempt(org, Timestamp::now());
        assert!(!to_item(&a).contains_key(SESSION_PARTITION_KEY));
    }

    mod faults {
        use super::*;
        use aws_sdk_dynamodb::error::ErrorMetadata;
        use aws_sdk_dynamodb::operation::get_item::GetItemError;
        use aws_sdk_dynamodb::types::error::{ProvisionedThroughputExceededException, ResourceNotFoundException};
        use aws_smithy_mocks::{mock, mock_client, RuleMode};

        fn throttled() -> GetItemError {
            let meta =
                ErrorMetadata::builder().code("ProvisionedThroughputExceededException").message("slow down").build();
            GetItemError::ProvisionedThroughputExceededException(
                ProvisionedThroughputExceededException::builder().message("slow down").meta(meta).build(),
            )
        }

        async fn get(store: &AttemptStore) -> Result<Option<Attempt>, StoreError> {
            let org = OrganizationId::parse("org_acme").unwrap();
            store.get(&org, &AttemptId::parse(&format!("payatt_{}", "0".repeat(32))).unwrap()).await
        }

        #[tokio::test]
        async fn throttling_that_outlasts_the_retries_is_unavailable() {
            let rule = mock!(Client::get_item).sequence().error(throttled).times(3).build();
            let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, &[&rule], |c| c
                .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(3)));
            let store = AttemptStore::new(client, "t");
            assert!(matches!(get(&store).await, Err(StoreError::Unavailable(_))));
            assert_eq!(rule.num_calls(), 3, "the SDK retried before giving up");
        }

        #[tokio::test]
        async fn throttling_the_retries_absorb_is_invisible() {
            let rule = mock!(Client::get_item)
                .sequence()
                .error(throttled)
                .output(|| aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder().build())
                .build();
            let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, &[&rule], |c| c
                .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(3)));
            assert!(matches!(get(&AttemptStore::new(client, "t")).await, Ok(None)));
        }

        #[tokio::test]
        async fn a_missing_table_is_not_a_retryable_outage() {
            let rule = mock!(Client::get_item)
                .then_error(|| GetItemError::ResourceNotFoundException(ResourceNotFoundException::builder().build()));
            let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, &[&rule]);
            assert!(matches!(get(&AttemptStore::new(client, "t")).await, Err(StoreError::Other(_))));
        }
    }
}
