//! Spend summaries: count and exact total amount per status, kept as counters that every
//! create and transition updates in its own transaction, so a summary is one read.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::ser::SerializeMap;
use serde::Serialize;

use crate::attempt::{Attempt, Status};
use crate::id::SessionId;

pub const HOUR_MS: i64 = 3_600_000;
/// The longest time range an organization summary covers (31 days of hourly counters).
pub const MAX_RANGE_HOURS: i64 = 31 * 24;

/// What a summary covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SummaryScope {
    /// Every attempt of one session.
    Session(SessionId),
    /// Every attempt of the organization, or those created in whole hours `from..=to` (hours
    /// since the epoch).
    Organization { hours: Option<(i64, i64)> },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusTotals {
    pub count: i64,
    pub amount_usd: Decimal,
}

/// Counts and exact amounts per attempt status.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    totals: BTreeMap<&'static str, StatusTotals>,
}

impl Summary {
    pub fn add(&mut self, status: Status, count: i64, amount_usd: Decimal) {
        let totals = self.totals.entry(status.as_str()).or_default();
        totals.count += count;
        totals.amount_usd += amount_usd;
    }

    /// The summary of these attempts, computed directly (to check the counters against).
    pub fn of<'a>(attempts: impl IntoIterator<Item = &'a Attempt>) -> Self {
        let mut summary = Summary::default();
        for a in attempts {
            summary.add(a.status, 1, a.amount_usd.as_decimal());
        }
        summary
    }

    pub fn get(&self, status: Status) -> StatusTotals {
        let mut totals = self.totals.get(status.as_str()).copied().unwrap_or_default();
        totals.amount_usd = totals.amount_usd.normalize();
        totals
    }

    /// The statuses whose count or total is not zero, with their totals.
    pub fn nonzero(&self) -> Vec<(Status, StatusTotals)> {
        Status::ALL
            .iter()
            .map(|status| (*status, self.get(*status)))
            .filter(|(_, totals)| totals.count != 0 || !totals.amount_usd.is_zero())
            .collect()
    }

    pub fn total(&self) -> StatusTotals {
        Status::ALL.iter().map(|s| self.get(*s)).fold(StatusTotals::default(), |acc, t| StatusTotals {
            count: acc.count + t.count,
            amount_usd: (acc.amount_usd + t.amount_usd).normalize(),
        })
    }
}

/// An exact decimal as a JSON number.
/// Equal when every status has the same count and total (a status never seen is zero).
impl PartialEq for Summary {
    fn eq(&self, other: &Self) -> bool {
        Status::ALL.iter().all(|s| self.get(*s) == other.get(*s))
    }
}

impl Eq for Summary {}

struct Exact(Decimal);

impl Serialize for Exact {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.0.normalize().to_string();
        serde_json::value::RawValue::from_string(text).map_err(serde::ser::Error::custom)?.serialize(serializer)
    }
}

impl Serialize for StatusTotals {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("count", &self.count)?;
        map.serialize_entry("amount_usd", &Exact(self.amount_usd))?;
        map.end()
    }
}

impl Serialize for Summary {
    /// `{"count", "amount_usd", "by_status": {"pending": {"count", "amount_usd"}, ...}}`
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let total = self.total();
        let by_status: BTreeMap<&str, StatusTotals> = Status::ALL.iter().map(|s| (s.as_str(), self.get(*s))).collect();
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("count", &total.count)?;
        map.serialize_entry("amount_usd", &Exact(total.amount_usd))?;
        map.serialize_entry("by_status", &by_status)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn totals_stay_exact() {
        let mut s = Summary::default();
        for _ in 0..10 {
            s.add(Status::Succeeded, 1, Decimal::from_str("0.1").unwrap());
        }
        s.add(Status::Failed, 1, Decimal::from_str("0.000001").unwrap());
        s.add(Status::Pending, 1, Decimal::from_str("1000000.000001").unwrap());
        s.add(Status::Pending, -1, Decimal::from_str("-1000000.000001").unwrap());
        assert_eq!(s.get(Status::Succeeded), StatusTotals { count: 10, amount_usd: Decimal::from(1) });
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"count":11,"amount_usd":1.000001,"by_status":{"failed":{"count":1,"amount_usd":0.000001},"pending":{"count":0,"amount_usd":0},"released":{"count":0,"amount_usd":0},"succeeded":{"count":10,"amount_usd":1}}}"#
        );
    }
}
