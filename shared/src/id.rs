//! Prefixed public identifiers. Every id that ends up in a DynamoDB key is validated here,
//! so no caller-supplied text can carry a key separator (`#`) into a key.

use std::fmt;

use time::OffsetDateTime;
use uuid::{NoContext, Timestamp as UuidTimestamp, Uuid};

use crate::time::Timestamp;

const ATTEMPT_PREFIX: &str = "payatt_";
/// UUIDv7 keeps the time in 48 bits of milliseconds.
const MAX_MS: i64 = (1 << 48) - 1;

/// `payatt_` + the 32 lowercase hex digits of a UUIDv7: ids sort by creation time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttemptId(String);

impl AttemptId {
    /// A new id whose embedded time is `at`, to the millisecond.
    pub fn new_at(at: Timestamp) -> Self {
        let nanos = at.as_offset().unix_timestamp_nanos();
        let secs = nanos.div_euclid(1_000_000_000) as u64;
        let sub = nanos.rem_euclid(1_000_000_000) as u32;
        // Random bits after the millisecond keep ids from different Lambda instances distinct.
        let uuid = Uuid::new_v7(UuidTimestamp::from_unix(NoContext, secs, sub));
        AttemptId(format!("{ATTEMPT_PREFIX}{}", uuid.simple()))
    }

    /// Sorts before every id created at or after `ms` (milliseconds since the epoch).
    pub fn lowest_at_ms(ms: i64) -> Self {
        AttemptId(format!("{ATTEMPT_PREFIX}{:012x}{}", ms.clamp(0, MAX_MS), "0".repeat(20)))
    }

    /// Sorts after every id created at or before `ms`.
    pub fn highest_at_ms(ms: i64) -> Self {
        AttemptId(format!("{ATTEMPT_PREFIX}{:012x}{}", ms.clamp(0, MAX_MS), "f".repeat(20)))
    }

    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix(ATTEMPT_PREFIX)?;
        let ok = hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| AttemptId(text.to_owned()))
    }

    /// The creation time a UUIDv7 id carries (millisecond precision).
    pub fn timestamp(&self) -> Option<Timestamp> {
        let uuid = Uuid::parse_str(&self.0[ATTEMPT_PREFIX.len()..]).ok()?;
        let (secs, nanos) = uuid.get_timestamp()?.to_unix();
        let at = OffsetDateTime::from_unix_timestamp(secs as i64).ok()? + time::Duration::nanoseconds(nanos as i64);
        Some(Timestamp::from(at))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for AttemptId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Defines an id of the form `<prefix><1..=64 ASCII letters or digits>`.
macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn parse(text: &str) -> Option<Self> {
                let rest = text.strip_prefix($prefix)?;
                let ok = (1..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric());
                ok.then(|| $name(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// The tenant. Comes only from the caller's verified identity.
    OrganizationId,
    "org_"
);
prefixed_id!(
    /// The session that initiated a paid call.
    SessionId,
    "session_"
);
prefixed_id!(
    /// The payment account that was charged.
    PaymentAccountId,
    "payacct_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_ids_are_prefixed_uuid_v7_hex() {
        let at = Timestamp::parse_rfc3339("2026-05-25T10:14:00.123Z").unwrap();
        let id = AttemptId::new_at(at);
        assert!(id.as_str().starts_with("payatt_"));
        assert_eq!(id.as_str().len(), 7 + 32);
        assert_eq!(AttemptId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(id.timestamp(), Some(at));
        let uuid = Uuid::parse_str(&id.as_str()[7..]).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
    }

    #[test]
    fn attempt_ids_sort_by_time() {
        let early = AttemptId::new_at(Timestamp::parse_rfc3339("2026-05-25T10:14:00.001Z").unwrap());
        let late = AttemptId::new_at(Timestamp::parse_rfc3339("2026-05-25T10:14:00.002Z").unwrap());
        assert!(early < late);
    }

    #[test]
    fn time_bounds_enclose_the_ids_of_their_millisecond() {
        let at = Timestamp::parse_rfc3339("2026-05-25T10:14:00.123Z").unwrap();
        let ms = at.unix_millis();
        let id = AttemptId::new_at(at);
        assert!(AttemptId::lowest_at_ms(ms) < id && id < AttemptId::highest_at_ms(ms));
        assert!(AttemptId::highest_at_ms(ms - 1) < id && id < AttemptId::lowest_at_ms(ms + 1));
        assert!(AttemptId::parse(AttemptId::highest_at_ms(i64::MAX).as_str()).is_some());
        assert!(AttemptId::parse(AttemptId::lowest_at_ms(-5).as_str()).is_some());
    }

    #[test]
    fn malformed_attempt_ids_are_rejected() {
        for bad in [
            "",
            "payatt_",
            "payatt_01933b5a00007000800000000000001", // 31 digits, as in the seed example
            "payatt_01933B5A000070008000000000000001", // upper case
            "payatt_01933b5a00007000800000000000000g",
            "payatt_01933b5a0000700080000000000000011",
            "pay_01933b5a000070008000000000000001",
            "PAYATT_01933b5a000070008000000000000001",
            "payatt_01933b5a00007000800000000000#001",
        ] {
            assert_eq!(AttemptId::parse(bad), None, "{bad:?}");
        }
        assert!(AttemptId::parse("payatt_01933b5a000070008000000000000001").is_some());
    }

    #[test]
    fn prefixed_ids_allow_no_separators() {
        assert!(OrganizationId::parse("org_01933b5a000070008000000000000001").is_some());
        assert!(OrganizationId::parse("org_acme").is_some());
        for bad in ["org_", "org_a#b", "org_a b", "org_é", "acme", "ORG_acme", &format!("org_{}", "a".repeat(65))] {
            assert_eq!(OrganizationId::parse(bad), None, "{bad:?}");
        }
        assert!(SessionId::parse("session_01933b5a000070008000000000000001").is_some());
        assert!(SessionId::parse("session_x#SES#y").is_none());
        assert!(PaymentAccountId::parse("payacct_abc").is_some());
        assert!(PaymentAccountId::parse("payment_abc").is_none());
    }
}
