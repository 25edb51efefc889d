//! Prefixed public identifiers. Every id that ends up in a DynamoDB key is validated here,
//! so no caller-supplied text can carry a key separator (`#`) into a key.

use std::fmt;

use time::OffsetDateTime;
use uuid::{NoContext, Timestamp as UuidTimestamp, Uuid};

use crate::time::Timestamp;

const ATTEMPT_PREFIX: &str = "payatt_";
/// UUIDv7 keeps the time in 48 bits of milliseconds.
const MAX_MS: i64 = (1 << 48) - 1;
/// What every id type offers the parsers of requests: its parser, and how it is written.
pub trait Id: Sized {
    /// What a valid id looks like, as error messages say it.
    const FORMAT: &'static str;
    fn parse(text: &str) -> Option<Self>;
}

/// `payatt_` + the 32 lowercase hex digits of a UUIDv7: ids sort by creation time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttemptId(String);

impl AttemptId {
    /// A new id whose embedded time is `at`, to the millisecond.
    pub fn new_at(at: Timestamp) -> Self {
        let nanos = at.as_offset().unix_timestamp_nanos();
        let secs = nanos.div_euclid(1_000_000_000) as u64;
        let sub = nanos.rem_euclid(1_000_000_000) as u32;
        // Random bits after the millisecond keep ids from different Lambda instances distinct;
        // the last of them picks the shard ([`AttemptId::spread`]). Random, not a counter: a
        // counter would let the gap between two of a tenant's ids count other tenants' creates.
        let uuid = Uuid::new_v7(UuidTimestamp::from_unix(NoContext, secs, sub));
        AttemptId(format!("{ATTEMPT_PREFIX}{}", uuid.simple()))
    }

    /// The creation instant the id carries, in milliseconds since the epoch.
    pub fn created_ms(&self) -> i64 {
        i64::from_str_radix(&self.0[ATTEMPT_PREFIX.len()..ATTEMPT_PREFIX.len() + 12], 16).unwrap_or(0)
    }

    /// The id's last byte: what the store picks the attempt's shard with.
    pub fn spread(&self) -> u8 {
        u8::from_str_radix(&self.0[self.0.len() - 2..], 16).unwrap_or(0)
    }

    /// The id right before this one in the id order (an exclusive bound as an inclusive one).
    pub fn predecessor(&self) -> Self {
        Self::from_bits(self.bits().saturating_sub(1))
    }

    /// The id right after this one in the id order.
    pub fn successor(&self) -> Self {
        Self::from_bits(self.bits().saturating_add(1))
    }

    fn bits(&self) -> u128 {
        u128::from_str_radix(&self.0[ATTEMPT_PREFIX.len()..], 16).unwrap_or(0)
    }

    fn from_bits(bits: u128) -> Self {
        AttemptId(format!("{ATTEMPT_PREFIX}{bits:032x}"))
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
        <Self as Id>::parse(text)
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

impl Id for AttemptId {
    const FORMAT: &'static str = "payatt_ and 32 lowercase hex digits";

    fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix(ATTEMPT_PREFIX)?;
        let ok = hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| AttemptId(text.to_owned()))
    }
}

/// Defines an id of the form `<prefix><1..=64 ASCII letters or digits>`.
macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Option<Self> {
                <Self as Id>::parse(text)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Id for $name {
            const FORMAT: &'static str = concat!("`", $prefix, "` followed by 1 to 64 letters or digits");

            fn parse(text: &str) -> Option<Self> {
                let rest = text.strip_prefix($prefix)?;
                let ok = (1..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric());
                ok.then(|| $name(text.to_owned()))
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
    fn the_last_byte_is_random() {
        let at = Timestamp::now();
        let spreads: Vec<u8> = (0..1024).map(|_| AttemptId::new_at(at).spread()).collect();
        // Not a constant: 1,024 random draws of 256 values leave about 251 distinct (fewer than
        // 200 has a chance below 1e-20).
        let distinct = spreads.iter().collect::<std::collections::BTreeSet<_>>().len();
        assert!(distinct >= 200, "{distinct} distinct last bytes");
        // Not a counter: one step in 256 follows its predecessor by one, about 4 here (100 has
        // a chance below 1e-60); a counter makes all 1,023 do.
        let steps = spreads.windows(2).filter(|w| w[1] == w[0].wrapping_add(1)).count();
        assert!(steps < 100, "{steps} of 1,023 ids follow their predecessor by one");
    }

    #[test]
    fn neighbours_are_adjacent_in_the_id_order() {
        let id = AttemptId::parse("payatt_019a0000000070008000000000000100").unwrap();
        assert_eq!(id.predecessor().as_str(), "payatt_019a00000000700080000000000000ff");
        assert_eq!(id.successor().as_str(), "payatt_019a0000000070008000000000000101");
        assert!(id.predecessor() < id && id < id.successor());
        let top = AttemptId::highest_at_ms(MAX_MS);
        assert_eq!(AttemptId::parse(top.successor().as_str()), Some(top.successor()));
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
