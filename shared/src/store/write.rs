//! The write path: a new attempt, a status change, or a refusal kept under its key, each
//! judged from DynamoDB's answers into a [`Written`], reading back when an answer was lost.
//!
//! One rule: a write is reported stored or not only when DynamoDB answered the last try that
//! could have committed, or when reading back finds it. A request recognises its own change
//! by what only it writes: its key's record (under its token), its new attempt's id, or its
//! token in the status change it made.

use aws_sdk_dynamodb::types::AttributeValue;

use super::idempotency::record_from;
use super::item::{from_item, opt_s, to_item};
use super::transact::{condition_failed, conflicts_only, put, Cancel, Reason, Single, Transaction, Write, WriteKind};
use super::{holds_guard, AttemptStore, StoreError};
use crate::attempt::Attempt;
use crate::id::{AttemptId, OrganizationId};
use crate::idempotency::{IdempotencyRecord, RequestToken};
use crate::time::Timestamp;

/// What became of a write, once DynamoDB's answers (and reading back, where one was lost)
/// tell. Only [`Written::Unknown`] leaves the question open.
#[derive(Debug)]
pub enum Written {
    /// This request's change is stored.
    Applied,
    /// The key already keeps an answer: this request's own (its token), or an earlier
    /// request's. Nothing of this request was written.
    Answered(IdempotencyRecord),
    /// A pending or succeeded attempt already holds the request hash; nothing was written.
    Duplicate(AttemptId),
    /// The attempt is no longer as it was read (another request changed it); this is how it
    /// is now. Nothing was written.
    Moved(Box<Attempt>),
    /// Other transactions held the items through every round, and reading back found
    /// nothing of this request. `on_key`: a request with the same key is being written.
    Busy { on_key: bool },
    /// DynamoDB's answer was lost and reading back could not tell: the change may be stored.
    Unknown(String),
}

/// What this request writes that no other does, to find its change by reading back.
#[derive(Clone, Copy)]
enum Mark<'a> {
    Key(&'a OrganizationId, &'a IdempotencyRecord),
    Created(&'a Attempt),
    Changed(&'a Attempt, &'a RequestToken),
}

impl AttemptStore {
    /// Writes a new attempt, its replay guard and its key's answer in one transaction (alone,
    /// one conditional put); never overwrites an attempt.
    pub async fn create(&self, attempt: &Attempt, key: Option<&IdempotencyRecord>) -> Result<Written, StoreError> {
        let layout = self.layout(&attempt.organization_id).await?;
        let item = to_item(attempt, &layout);
        let attempt_put = put(&self.table, item, "attribute_not_exists(#pk)", &[])?;
        let mut others = Vec::new();
        if let Some(hash) = attempt.request_hash.as_deref() {
            let org = &attempt.organization_id;
            // A held hash refuses any new attempt; only a pending or succeeded one takes it.
            others.push(if holds_guard(attempt.status) {
                Write::Guard(self.put_guard(org, hash, &attempt.id)?)
            } else {
                Write::GuardFree(self.guard_free(org, hash)?)
            });
        }
        if let Some(key) = key {
            others.push(Write::Key(self.put_key(&attempt.organization_id, key)?));
        }
        let mark = key.map_or(Mark::Created(attempt), |key| Mark::Key(&attempt.organization_id, key));
        if others.is_empty() {
            // Nothing else to write: one conditional put. The id is this request's own, so a
            // failed condition means an earlier try of it wrote the attempt.
            return match self.put_alone(attempt_put).await? {
                Single::Written | Single::ConditionFailed(_) => Ok(Written::Applied),
                Single::Conflict => self.read_back(mark, Written::Busy { on_key: false }).await,
                Single::Unanswered(why) => self.read_back(mark, Written::Unknown(why)).await,
            };
        }
        let mut writes = vec![Write::Attempt(attempt_put)];
        writes.extend(others);
        let (cancels, after_lost_answer) = match self.transact_keyed(writes, key, mark).await? {
            Judged::Settled(written) => return Ok(written),
            Judged::Cancelled(cancels, after_lost_answer) => (cancels, after_lost_answer),
        };
        // This request's own attempt id: if it is stored, this request wrote it.
        if condition_failed(&cancels, WriteKind::Attempt).is_some() {
            return Ok(Written::Applied);
        }
        if let Some(held) = condition_failed(&cancels, WriteKind::Guard) {
            let holder = held.item.as_ref().and_then(|item| opt_s(item, "attempt_id")).and_then(AttemptId::parse);
            return match holder {
                Some(id) if id == attempt.id => Ok(Written::Applied),
                // A try whose answer was lost may still commit once the holder lets go: not
                // a refusal yet.
                Some(_) if after_lost_answer => {
                    self.read_back(mark, Written::Unknown("after a lost answer".to_owned())).await
                }
                Some(id) => Ok(Written::Duplicate(id)),
                None => Err(StoreError::Corrupt("replay guard without attempt_id".to_owned())),
            };
        }
        self.unsettled(&cancels, after_lost_answer, mark).await
    }

    /// Replaces `before` by `after` if nobody changed it in between (same version), releasing
    /// the replay guard when the attempt stops holding it, with the key's answer. `after`'s
    /// last status change names the request making it.
    pub async fn update(
        &self,
        before: &Attempt,
        after: &Attempt,
        key: Option<&IdempotencyRecord>,
    ) -> Result<Written, StoreError> {
        let by = after
            .status_history
            .last()
            .and_then(|change| change.written_by.as_ref())
            .ok_or_else(|| StoreError::Other("a status change must name its request".to_owned()))?;
        let version = AttributeValue::N(before.version.to_string());
        let layout = self.layout(&after.organization_id).await?;
        let condition = put(&self.table, to_item(after, &layout), "#version = :version", &[(":version", version)])?;
        let mut writes = vec![Write::Attempt(condition)];
        if let Some(hash) = after.request_hash.as_deref() {
            if holds_guard(before.status) && !holds_guard(after.status) {
                writes.push(Write::ReleaseGuard(self.delete_guard(&after.organization_id, hash, &after.id)?));
            }
        }
        if let Some(key) = key {
            writes.push(Write::Key(self.put_key(&after.organization_id, key)?));
        }
        let mark = key.map_or(Mark::Changed(after, by), |key| Mark::Key(&after.organization_id, key));
        let (cancels, after_lost_answer) = match self.transact_keyed(writes, key, mark).await? {
            Judged::Settled(written) => return Ok(written),
            Judged::Cancelled(cancels, after_lost_answer) => (cancels, after_lost_answer),
        };
        if let Some(moved) = condition_failed(&cancels, WriteKind::Attempt) {
            let now = moved.item.as_ref().ok_or_else(|| StoreError::Corrupt("a moved attempt's item".to_owned()))?;
            let now = from_item(now)?;
            // Moved by this very request: an earlier try of it committed, its answer lost.
            // Moved by another: no try of this request can commit any more (its version is
            // gone), so the lifecycle may answer from the attempt as it now is.
            return Ok(if now.changed_by(by) { Written::Applied } else { Written::Moved(Box::new(now)) });
        }
        self.unsettled(&cancels, after_lost_answer, mark).await
    }

    /// Runs a write's transaction, and settles what needs no judging of the write's own: a
    /// commit, a lost answer (read back), or the key's answer (it speaks first: if it is
    /// taken, this try wrote nothing, or an earlier one did, under this request's token).
    async fn transact_keyed(
        &self,
        writes: Vec<Write>,
        key: Option<&IdempotencyRecord>,
        mark: Mark<'_>,
    ) -> Result<Judged, StoreError> {
        let (cancels, after_lost_answer) = match self.transact(writes).await? {
            Transaction::Committed => return Ok(Judged::Settled(Written::Applied)),
            Transaction::Unanswered(why) => {
                return self.read_back(mark, Written::Unknown(why)).await.map(Judged::Settled)
            }
            Transaction::Cancelled { cancels, after_lost_answer } => (cancels, after_lost_answer),
        };
        match key_answer(&cancels, key)? {
            Some(written) => Ok(Judged::Settled(written)),
            None => Ok(Judged::Cancelled(cancels, after_lost_answer)),
        }
    }

    /// Keeps a refusal under its key, where the key is free: one conditional put. A key
    /// already used answers with what it keeps.
    pub async fn keep_answer(&self, org: &OrganizationId, record: &IdempotencyRecord) -> Result<Written, StoreError> {
        let mark = Mark::Key(org, record);
        match self.put_alone(self.put_key(org, record)?).await? {
            Single::Written => Ok(Written::Applied),
            Single::ConditionFailed(Some(item)) => Ok(Written::Answered(record_from(&item, &record.key)?)),
            Single::ConditionFailed(None) => Err(StoreError::Corrupt("a used key without its record".to_owned())),
            // A duplicate's transaction is writing the key right now.
            Single::Conflict => self.read_back(mark, Written::Busy { on_key: true }).await,
            Single::Unanswered(why) => self.read_back(mark, Written::Unknown(why)).await,
        }
    }

    /// A cancellation that does not say whether this request's change is stored (conflicts
    /// through every round, throttling, or anything after a lost answer): read back.
    async fn unsettled(
        &self,
        cancels: &[Cancel],
        after_lost_answer: bool,
        mark: Mark<'_>,
    ) -> Result<Written, StoreError> {
        // A reason that means a bug, or a condition no rule expects to fail (a guard's release).
        let unexpected = |c: &&Cancel| matches!(c.reason, Reason::Other | Reason::ConditionFailed);
        if let Some(other) = cancels.iter().find(unexpected) {
            return Err(StoreError::Other(format!("transaction cancelled on {:?}: {:?}", other.kind, other.reason)));
        }
        let otherwise = if after_lost_answer {
            Written::Unknown("a transaction cancelled after a lost answer".to_owned())
        } else if conflicts_only(cancels) {
            let on_key = cancels.iter().any(|c| c.kind == WriteKind::Key && c.reason == Reason::Conflict);
            Written::Busy { on_key }
        } else {
            Written::Unknown("transaction throttled".to_owned())
        };
        self.read_back(mark, otherwise).await
    }

    /// Looks for this request's change, within the settle deadline: `otherwise` if it is not
    /// there, [`Written::Unknown`] if the read fails too.
    async fn read_back(&self, mark: Mark<'_>, otherwise: Written) -> Result<Written, StoreError> {
        let store = self.settling();
        let found = match mark {
            Mark::Key(org, record) => {
                store.read_key(org, &record.key, Timestamp::now()).await.map(|kept| kept.map(Written::Answered))
            }
            Mark::Created(attempt) => {
                store.get(&attempt.organization_id, &attempt.id).await.map(|stored| stored.map(|_| Written::Applied))
            }
            Mark::Changed(after, by) => store
                .get(&after.organization_id, &after.id)
                .await
                .map(|stored| stored.filter(|a| a.changed_by(by)).map(|_| Written::Applied)),
        };
        match found {
            Ok(Some(written)) => Ok(written),
            Ok(None) => Ok(otherwise),
            Err(StoreError::Unavailable(why)) => Ok(Written::Unknown(why)),
            Err(other) => Err(other),
        }
    }
}

/// A transaction's outcome once what needs no judging is settled.
enum Judged {
    Settled(Written),
    /// Cancelled, the key free: the write judges the reasons (after a lost answer or not).
    Cancelled(Vec<Cancel>, bool),
}

/// The answer a taken key keeps.
fn key_answer(cancels: &[Cancel], key: Option<&IdempotencyRecord>) -> Result<Option<Written>, StoreError> {
    let (Some(key), Some(taken)) = (key, condition_failed(cancels, WriteKind::Key)) else { return Ok(None) };
    let item = taken.item.as_ref().ok_or_else(|| StoreError::Corrupt("a used key's record".to_owned()))?;
    Ok(Some(Written::Answered(record_from(item, &key.key)?)))
}
