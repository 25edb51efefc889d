//! Timestamps as the API shows them: RFC 3339, UTC, milliseconds.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Now, truncated to the millisecond so that it equals the time inside a new attempt id.
    pub fn now() -> Self {
        Self::from(OffsetDateTime::now_utc())
    }

    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        OffsetDateTime::parse(text, &Rfc3339).ok().map(Self::from)
    }

    pub fn as_offset(&self) -> OffsetDateTime {
        self.0
    }

    pub fn unix_seconds(&self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn unix_millis(&self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }

    pub fn from_unix_millis(ms: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok().map(Timestamp)
    }
}

/// An instant as nanoseconds since the epoch, from RFC 3339 text or whole Unix seconds.
pub fn parse_instant_nanos(text: &str) -> Option<i128> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok().map(|s| i128::from(s) * 1_000_000_000);
    }
    OffsetDateTime::parse(text, &Rfc3339).ok().map(|t| t.unix_timestamp_nanos())
}

impl From<OffsetDateTime> for Timestamp {
    fn from(at: OffsetDateTime) -> Self {
        let at = at.to_offset(UtcOffset::UTC);
        let millis = at.millisecond();
        Timestamp(at.replace_nanosecond(u32::from(millis) * 1_000_000).unwrap_or(at))
    }
}

impl fmt::Display for Timestamp {
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, written digit by digit: a page shows some 150 of these, and
    /// the generic formatter was 5% of a list's CPU (callgrind, BENCHMARKS.md).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (date, time) = (self.0.date(), self.0.time());
        let Some(year) = u16::try_from(date.year()).ok().filter(|y| *y <= 9999) else {
            // A year no id or request can carry (the time crate allows -9999): its own Display.
            return write!(f, "{}", self.0);
        };
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let fields = [
            (0, 4, u32::from(year)),
            (5, 2, u32::from(u8::from(date.month()))),
            (8, 2, u32::from(date.day())),
            (11, 2, u32::from(time.hour())),
            (14, 2, u32::from(time.minute())),
            (17, 2, u32::from(time.second())),
            (20, 3, u32::from(time.millisecond())),
        ];
        for (at, width, mut value) in fields {
            for digit in out[at..at + width].iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_milliseconds() {
        let t = Timestamp::parse_rfc3339("2026-05-25T12:14:00.123456+02:00").unwrap();
        assert_eq!(t.to_string(), "2026-05-25T10:14:00.123Z");
        // Digit by digit, as the time crate's formatter writes them, over centuries of instants.
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        let mut ms: i64 = 0;
        while ms < 253_402_300_799_999 {
            let t = Timestamp::from_unix_millis(ms).unwrap();
            assert_eq!(t.to_string(), t.as_offset().format(&format).unwrap());
            ms += 7_777_777_777;
        }
        assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Some(t));
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn instants_from_rfc3339_or_unix_seconds() {
        assert_eq!(parse_instant_nanos("0"), Some(0));
        assert_eq!(parse_instant_nanos("1779704040"), Some(1_779_704_040_000_000_000));
        assert_eq!(parse_instant_nanos("2026-05-25T10:14:00.5Z"), Some(1_779_704_040_500_000_000));
        for bad in ["", "-1", "1.5", "12abc", "2026-05-25", "99999999999999999999"] {
            assert_eq!(parse_instant_nanos(bad), None, "{bad}");
        }
    }
}
