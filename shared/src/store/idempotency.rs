//! Idempotency records and replay guards, each on a partition key of its own (derived from the
//! key or the hash, the organization first).
//!
//! A key's record is written once, with the answer, conditional on the key being free (or
//! expired): in the same transaction as the change it answers, or alone for a refusal. A
//! duplicate request, concurrent or a retry, fails that condition and is given the record as
//! it stands (DynamoDB returns it with the cancellation), so there is no claim to take, give
//! back or fence: the change and its answer commit together or not at all.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure};

use super::item::{corrupt, get_s, s, Item};
use super::keys::{guard_pk, key_pk, GUARD_SK, KEY_SK};
use super::schema::*;
use super::transact::put;
use super::{AttemptStore, StoreError};
use crate::id::{AttemptId, OrganizationId};
use crate::idempotency::{IdempotencyKey, IdempotencyRecord, RequestToken};
use crate::time::Timestamp;

/// The key is free: never written, or expired (TTL deletion lags behind).
const KEY_FREE: &str = "attribute_not_exists(#pk) OR expires_at < :now";

impl AttemptStore {
    /// What `key` keeps, unless it has expired.
    pub async fn read_key(
        &self,
        org: &OrganizationId,
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let Some(item) = self.read(key_pk(org, key), KEY_SK).await? else { return Ok(None) };
        let record = record_from(&item, key)?;
        // Expired as `KEY_FREE` sees it, to the second.
        Ok((record.expires_at >= now.unix_seconds()).then_some(record))
    }

    /// The record as a write of the key: only where the key is free.
    pub(super) fn put_key(&self, org: &OrganizationId, key: &IdempotencyRecord) -> Result<Put, StoreError> {
        let item = HashMap::from([
            (PARTITION_KEY.to_owned(), s(key_pk(org, &key.key))),
            (SORT_KEY.to_owned(), s(KEY_SK)),
            ("token".to_owned(), s(key.token.as_str())),
            ("fingerprint".to_owned(), s(&key.fingerprint)),
            ("status".to_owned(), AttributeValue::N(key.status.to_string())),
            body_attribute(&key.body),
            (TTL_ATTRIBUTE.to_owned(), AttributeValue::N(key.expires_at.to_string())),
        ]);
        let now = AttributeValue::N(Timestamp::now().unix_seconds().to_string());
        put(&self.table, item, KEY_FREE, &[(":now", now)])
    }

    pub(super) fn put_guard(&self, org: &OrganizationId, hash: &str, id: &AttemptId) -> Result<Put, StoreError> {
        let item = HashMap::from([
            (PARTITION_KEY.to_owned(), s(guard_pk(org, hash))),
            (SORT_KEY.to_owned(), s(GUARD_SK)),
            ("attempt_id".to_owned(), s(id.as_str())),
        ]);
        put(&self.table, item, "attribute_not_exists(#pk)", &[])
    }

    pub(super) fn guard_free(&self, org: &OrganizationId, hash: &str) -> Result<ConditionCheck, StoreError> {
        ConditionCheck::builder()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(guard_pk(org, hash)))
            .key(SORT_KEY, s(GUARD_SK))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| StoreError::Other(e.to_string()))
    }

    pub(super) fn delete_guard(&self, org: &OrganizationId, hash: &str, id: &AttemptId) -> Result<Delete, StoreError> {
        Delete::builder()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(guard_pk(org, hash)))
            .key(SORT_KEY, s(GUARD_SK))
            // Only this attempt's own guard; none at all is fine (nothing to release).
            .condition_expression("attribute_not_exists(#pk) OR attempt_id = :id")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_values(":id", s(id.as_str()))
            .build()
            .map_err(|e| StoreError::Other(e.to_string()))
    }
}

/// A key's record as stored; `key` is the caller's key it was read under.
pub(super) fn record_from(item: &Item, key: &IdempotencyKey) -> Result<IdempotencyRecord, StoreError> {
    let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
    Ok(IdempotencyRecord {
        key: key.clone(),
        token: RequestToken::from_stored(get_s(item, "token")?),
        fingerprint: get_s(item, "fingerprint")?.to_owned(),
        status: number("status").and_then(|n| u16::try_from(n).ok()).ok_or_else(|| corrupt("status"))?,
        body: body_from(item)?,
        expires_at: number(TTL_ATTRIBUTE).ok_or_else(|| corrupt(TTL_ATTRIBUTE))?,
    })
}

/// Past this many bytes an answer is kept deflated: an attempt's JSON shrinks by half or more,
/// and a record under 1 KB costs the transaction half the write units.
const DEFLATE_FROM: usize = 512;
/// The most an answer can inflate to: a write's answer is one attempt, well under this.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The answer as kept: `body` as text, or `body_z` deflated, whichever is smaller.
fn body_attribute(body: &str) -> (String, AttributeValue) {
    if body.len() > DEFLATE_FROM {
        let deflated = miniz_oxide::deflate::compress_to_vec(body.as_bytes(), 6);
        if deflated.len() < body.len() {
            return ("body_z".to_owned(), AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(deflated)));
        }
    }
    ("body".to_owned(), s(body))
}

/// The answer a record keeps, byte for byte.
fn body_from(item: &Item) -> Result<String, StoreError> {
    match item.get("body_z").and_then(|v| v.as_b().ok()) {
        Some(deflated) => {
            let bytes = miniz_oxide::inflate::decompress_to_vec_with_limit(deflated.as_ref(), MAX_ANSWER_BYTES)
                .map_err(|_| corrupt("body_z"))?;
            String::from_utf8(bytes).map_err(|_| corrupt("body_z"))
        }
        None => Ok(get_s(item, "body")?.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_come_back_byte_for_byte_smaller_when_large() {
        let small = r#"{"error":{"code":"resource_missing"}}"#;
        let large = format!(r#"{{"id":"payatt_1","receipt":{{"tx":"{}"}},"metadata":{{}}}}"#, "0x5e1f".repeat(200));
        for body in [small.to_owned(), large.clone(), "é\"\\".repeat(300)] {
            let (name, value) = body_attribute(&body);
            let item = Item::from([(name.clone(), value)]);
            assert_eq!(body_from(&item).unwrap(), body, "{name}");
        }
        let (name, value) = body_attribute(&large);
        assert_eq!(name, "body_z");
        assert!(value.as_b().unwrap().as_ref().len() * 4 < large.len(), "deflated to under a quarter");
        assert_eq!(body_attribute(small).0, "body");
    }
}
