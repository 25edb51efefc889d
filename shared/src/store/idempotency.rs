//! Idempotency records and replay guards, each on a partition key of its own (derived from the
//! key or the hash, the organization first), written in the attempt's transaction.
//!
//! A key record is `in_flight` while its claim's request runs, then `done` with the response,
//! written in the same transaction as the attempt. Every write to it is conditional on the
//! claim token *and* on the record still being in flight, so a finished record is never
//! changed again, and giving a key back also fences out a transaction still on its way:
//! whichever of the two reaches the record first decides, and the other one fails.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure};

use super::item::{corrupt, get_s, s};
use super::keys::{guard_pk, key_pk, GUARD_SK, KEY_SK};
use super::schema::*;
use super::transact::{classify, put, Write};
use super::{AttemptStore, StoreError};
use crate::id::{AttemptId, OrganizationId};
use crate::idempotency::{IdempotencyRecord, KeyClaim, KeyState, CLAIM_SECONDS};
use crate::time::Timestamp;

const IN_FLIGHT: &str = "in_flight";
const DONE: &str = "done";
/// Only the holder of the claim, and only while it is in flight.
const HELD: &str = "claim = :token AND #state = :in_flight";

impl AttemptStore {
    /// What `key` holds, unless it has expired (TTL deletion lags behind).
    pub async fn key_state(
        &self,
        org: &OrganizationId,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<KeyState>, StoreError> {
        let Some(item) = self.read(key_pk(org, key), KEY_SK).await? else { return Ok(None) };
        let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
        let expires_at = number(TTL_ATTRIBUTE).ok_or_else(|| corrupt(TTL_ATTRIBUTE))?;
        // Expired as `claim_key` sees it, to the second.
        if expires_at < now.unix_seconds() {
            return Ok(None);
        }
        let fingerprint = get_s(&item, "fingerprint")?.to_owned();
        if get_s(&item, "state")? == IN_FLIGHT {
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

    /// Takes the claim's key for a request now in flight, unless another holds it (or held it
    /// and has not expired): then [`StoreError::IdempotencyKeyTaken`]. A transaction writing
    /// the key at this moment is [`StoreError::IdempotencyKeyInUse`]. The claim may already
    /// be there under its own token: the SDK's retry of a put whose answer was lost.
    pub async fn claim_key(&self, org: &OrganizationId, claim: &KeyClaim, now: Timestamp) -> Result<(), StoreError> {
        let item = HashMap::from([
            (PARTITION_KEY.to_owned(), s(key_pk(org, &claim.key))),
            (SORT_KEY.to_owned(), s(KEY_SK)),
            ("state".to_owned(), s(IN_FLIGHT)),
            ("claim".to_owned(), s(&claim.token)),
            ("fingerprint".to_owned(), s(&claim.fingerprint)),
            (TTL_ATTRIBUTE.to_owned(), AttributeValue::N((now.unix_seconds() + CLAIM_SECONDS).to_string())),
        ]);
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(format!("attribute_not_exists(#pk) OR {TTL_ATTRIBUTE} < :now OR ({HELD})"))
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now", AttributeValue::N(now.unix_seconds().to_string()))
            .expression_attribute_values(":token", s(&claim.token))
            .expression_attribute_values(":in_flight", s(IN_FLIGHT))
            .send();
        match self.call(request).await? {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Err(StoreError::IdempotencyKeyTaken)
            }
            Err(err) => match classify(err) {
                StoreError::Contention => Err(StoreError::IdempotencyKeyInUse),
                other => Err(other),
            },
        }
    }

    /// Keeps an outcome that was not a write (a refusal) under its claimed key.
    pub async fn finish_key(&self, org: &OrganizationId, record: &IdempotencyRecord) -> Result<(), StoreError> {
        self.transact(vec![Write::Key(self.put_key(org, record)?)]).await
    }

    /// Gives a claimed key back if its write has not happened, so that the write cannot commit
    /// afterwards under this claim: `Ok(true)`. `Ok(false)` if the claim is no longer in
    /// flight: its write committed (the record is `done` under this claim's token) or another
    /// request took the key over. A transaction of this claim still running inside DynamoDB
    /// makes it [`StoreError::Contention`]: try again.
    pub async fn release_key(&self, org: &OrganizationId, claim: &KeyClaim) -> Result<bool, StoreError> {
        let request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(key_pk(org, &claim.key)))
            .key(SORT_KEY, s(KEY_SK))
            .condition_expression(HELD)
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":token", s(&claim.token))
            .expression_attribute_values(":in_flight", s(IN_FLIGHT))
            .send();
        match self.call(request).await? {
            Ok(_) => Ok(true),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(err) => Err(classify(err)),
        }
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

    /// The finished record, written only by the holder of the claim while it is in flight.
    pub(super) fn put_key(&self, org: &OrganizationId, key: &IdempotencyRecord) -> Result<Put, StoreError> {
        let item = HashMap::from([
            (PARTITION_KEY.to_owned(), s(key_pk(org, &key.key))),
            (SORT_KEY.to_owned(), s(KEY_SK)),
            ("state".to_owned(), s(DONE)),
            ("claim".to_owned(), s(&key.token)),
            ("fingerprint".to_owned(), s(&key.fingerprint)),
            ("status".to_owned(), AttributeValue::N(key.status.to_string())),
            ("body".to_owned(), s(&key.body)),
            (TTL_ATTRIBUTE.to_owned(), AttributeValue::N(key.expires_at.to_string())),
        ]);
        put(&self.table, item, HELD, &[(":token", s(&key.token)), (":in_flight", s(IN_FLIGHT))])
    }
}
