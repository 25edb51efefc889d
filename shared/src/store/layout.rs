//! Organizations' layouts ([`crate::layout`]): one item each, `ORG#<org>#LAYOUT`, read once
//! per time to live per process and grown by a conditional put.
//!
//! A copy of a layout read at `r` holds for every attempt created before `r + ttl` (by the
//! writer's clock), because a new step starts at least two times to live after it is written:
//! a writer refreshes a copy older than its time to live before it places an attempt, so none
//! places one by a layout that does not hold for it, also after its environment was frozen
//! (the age is wall-clock time, as ids are).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{s, Item};
use super::keys::{layout_pk, LAYOUT_SK};
use super::schema::*;
use super::transact::{put, Single};
use super::{AttemptChange, AttemptStore, StoreError};
use crate::id::OrganizationId;
use crate::layout::{Layout, Step};
use crate::time::Timestamp;

/// How long a process trusts its copy of a layout.
pub const LAYOUT_TTL: Duration = Duration::from_secs(60);

/// The layouts this process has read, each with the instant (Unix ms) it was read at; and
/// the changes it has seen of each organization since its rate was last judged.
#[derive(Debug)]
pub(super) struct Layouts {
    pub ttl: Duration,
    read: Mutex<HashMap<OrganizationId, (Layout, i64)>>,
    seen: Mutex<HashMap<OrganizationId, Seen>>,
}

/// Changes of one organization, and the first and last instant they were made at.
#[derive(Debug, Clone, Copy)]
struct Seen {
    changes: usize,
    first_ms: i64,
    last_ms: i64,
}

/// How long a span of changes a rate is judged over: stream batches are small (100 records,
/// a fraction of a second at the rates that matter), so the window runs across batches.
const RATE_WINDOW_MS: i64 = 1_000;

impl Layouts {
    pub fn new(ttl: Duration) -> Self {
        Layouts { ttl, read: Mutex::new(HashMap::new()), seen: Mutex::new(HashMap::new()) }
    }

    /// Adds a batch's changes of `org`; once they span a window, takes them to be judged.
    fn judge(&self, org: &OrganizationId, batch: Seen) -> Option<Seen> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let window = seen.entry(org.clone()).or_insert(Seen { changes: 0, ..batch });
        *window = Seen {
            changes: window.changes + batch.changes,
            first_ms: window.first_ms.min(batch.first_ms),
            last_ms: window.last_ms.max(batch.last_ms),
        };
        let full = window.last_ms - window.first_ms >= RATE_WINDOW_MS;
        full.then(|| seen.remove(org)).flatten()
    }

    fn fresh(&self, org: &OrganizationId, now_ms: i64) -> Option<Layout> {
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        read.get(org).filter(|(_, at)| (0..ttl_ms).contains(&(now_ms - at))).map(|(layout, _)| layout.clone())
    }

    fn keep(&self, org: &OrganizationId, layout: Layout, read_ms: i64) {
        self.read.lock().unwrap_or_else(|e| e.into_inner()).insert(org.clone(), (layout, read_ms));
    }
}

impl AttemptStore {
    /// How long this process trusts a copy of a layout, in milliseconds.
    pub(super) fn layout_ttl_ms(&self) -> i64 {
        i64::try_from(self.layouts.ttl.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// The organization's layout: this process's copy while it is fresh, else read again.
    pub async fn layout(&self, org: &OrganizationId) -> Result<Layout, StoreError> {
        let now_ms = Timestamp::now().unix_millis();
        if let Some(layout) = self.layouts.fresh(org, now_ms) {
            return Ok(layout);
        }
        let (layout, _) = self.read_layout(org).await?;
        // Stamped with the instant before the read: the copy is never taken for fresher.
        self.layouts.keep(org, layout.clone(), now_ms);
        Ok(layout)
    }

    /// Spreads the organization's new attempts over `shards` (up to 64) from two times to
    /// live from now on; the earlier ones stay where they are. A layout that already has as
    /// many is left as it is. Returns the layout now stored.
    pub async fn grow(&self, org: &OrganizationId, shards: u16) -> Result<Layout, StoreError> {
        for _ in 0..3 {
            let now = Timestamp::now().unix_millis();
            let (stored, steps_stored) = self.read_layout(org).await?;
            let from_ms = now + 2 * i64::try_from(self.layouts.ttl.as_millis()).unwrap_or(i64::MAX / 4);
            let Some(grown) = stored.grown(shards.min(crate::layout::MAX_SHARDS), from_ms) else { return Ok(stored) };
            let item = encode(org, &grown);
            // Only over the layout this was computed from.
            let condition = match steps_stored {
                0 => put(&self.table, item, "attribute_not_exists(#pk)", &[])?,
                n => put(&self.table, item, "step_count = :n", &[(":n", AttributeValue::N(n.to_string()))])?,
            };
            match self.put_alone(condition).await? {
                Single::Written => {
                    self.layouts.keep(org, grown.clone(), now);
                    return Ok(grown);
                }
                Single::ConditionFailed(_) | Single::Conflict => continue,
                Single::Unanswered(why) => return Err(StoreError::Unavailable(why)),
            }
        }
        Err(StoreError::Contention)
    }

    /// Grows the layout of each organization whose changes, as this process sees them batch
    /// after batch (by their `updated_at`), came at a sustained rate near its shards' capacity
    /// ([`Layout::wanted`]), judged over windows of a second or more. A stream shard holds
    /// some of an organization's partitions, so the rate seen is at most the organization's.
    /// Returns the organizations it grew (or failed to).
    pub async fn grow_if_busy(&self, changes: &[AttemptChange]) -> Vec<(OrganizationId, Result<Layout, StoreError>)> {
        let mut batch: BTreeMap<&OrganizationId, Seen> = BTreeMap::new();
        for change in changes {
            let at = change.after.updated_at.unix_millis();
            let seen =
                batch.entry(&change.after.organization_id).or_insert(Seen { changes: 0, first_ms: at, last_ms: at });
            *seen = Seen { changes: seen.changes + 1, first_ms: seen.first_ms.min(at), last_ms: seen.last_ms.max(at) };
        }
        let mut grown = Vec::new();
        for (org, seen) in batch {
            let Some(window) = self.layouts.judge(org, seen) else { continue };
            let wanted = match self.layout(org).await {
                Ok(layout) => layout.wanted(window.changes, window.last_ms - window.first_ms),
                Err(error) => {
                    grown.push((org.clone(), Err(error)));
                    continue;
                }
            };
            if let Some(shards) = wanted {
                grown.push((org.clone(), self.grow(org, shards).await));
            }
        }
        grown
    }

    /// The stored layout (one shard if none is), and how many steps its item holds.
    async fn read_layout(&self, org: &OrganizationId) -> Result<(Layout, usize), StoreError> {
        let Some(item) = self.read(layout_pk(org), LAYOUT_SK).await? else { return Ok((Layout::default(), 0)) };
        let steps = decode(&item).ok_or_else(|| StoreError::Corrupt("organization layout".to_owned()))?;
        let count = steps.len();
        Ok((Layout::from_steps(steps).ok_or_else(|| StoreError::Corrupt("organization layout".to_owned()))?, count))
    }
}

#[cfg(feature = "testing")]
impl AttemptStore {
    /// Sets an organization's layout, steps in the past included. Tests only: a writer's copy
    /// of the layout it replaces would place attempts where this one does not look.
    pub async fn set_layout_for_tests(&self, org: &OrganizationId, layout: &Layout) -> Result<(), StoreError> {
        let put = put(&self.table, encode(org, layout), "attribute_not_exists(#pk) OR attribute_exists(#pk)", &[])?;
        match self.put_alone(put).await? {
            Single::Written => {
                self.layouts.keep(org, layout.clone(), Timestamp::now().unix_millis());
                Ok(())
            }
            _ => Err(StoreError::Other("the layout was not written".to_owned())),
        }
    }
}

fn encode(org: &OrganizationId, layout: &Layout) -> Item {
    let steps: Vec<AttributeValue> = layout
        .steps()
        .iter()
        .map(|step| {
            AttributeValue::M(HashMap::from([
                ("from_ms".to_owned(), AttributeValue::N(step.from_ms.to_string())),
                ("shards".to_owned(), AttributeValue::N(step.shards.to_string())),
            ]))
        })
        .collect();
    HashMap::from([
        (PARTITION_KEY.to_owned(), s(layout_pk(org))),
        (SORT_KEY.to_owned(), s(LAYOUT_SK)),
        ("steps".to_owned(), AttributeValue::L(steps)),
        ("step_count".to_owned(), AttributeValue::N(layout.steps().len().to_string())),
    ])
}

fn decode(item: &Item) -> Option<Vec<Step>> {
    let number = |m: &HashMap<String, AttributeValue>, name: &str| m.get(name)?.as_n().ok()?.parse::<i64>().ok();
    item.get("steps")?
        .as_l()
        .ok()?
        .iter()
        .map(|step| {
            let m = step.as_m().ok()?;
            Some(Step { from_ms: number(m, "from_ms")?, shards: u16::try_from(number(m, "shards")?).ok()? })
        })
        .collect()
}
