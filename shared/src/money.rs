//! Money as exact decimals: amounts are parsed from the JSON text itself, never through `f64`.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

/// Smallest unit the service records: a micro-dollar.
pub const MAX_DECIMAL_PLACES: u32 = 6;

/// An amount of money, exact, non-negative, with at most six decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(Decimal);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("must be a number")]
    NotANumber,
    #[error("must not be negative")]
    Negative,
    #[error("must have at most 6 decimal places")]
    TooPrecise,
    #[error("must be at most 999999999999.999999")]
    TooLarge,
}

impl Amount {
    /// The largest amount accepted: twelve integer digits keep every sum exact in a `Decimal`
    /// and well inside DynamoDB's 38-digit numbers.
    pub fn max() -> Self {
        Amount(Decimal::new(999_999_999_999_999_999, MAX_DECIMAL_PLACES))
    }

    /// Parses the literal text of a JSON number (`0.014`, `1e-3`, `15`) exactly, from its
    /// digits: never through `f64`, and never through a rounding multiplication.
    pub fn parse_json_number(text: &str) -> Result<Self, AmountError> {
        let text = text.trim();
        if let Some(unsigned) = text.strip_prefix('-') {
            // The sign is the reason users need to hear, when the rest is a number.
            return match unsigned.chars().next() {
                Some(c) if c.is_ascii_digit() => Err(AmountError::Negative),
                _ => Err(AmountError::NotANumber),
            };
        }
        let (mantissa, exponent) = match text.split_once(['e', 'E']) {
            Some((m, e)) => (m, Some(e)),
            None => (text, None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !all_digits(int) || !all_digits(frac) {
            return Err(AmountError::NotANumber);
        }
        let digits = format!("{int}{}", frac.trim_end_matches('0'));
        let digits = digits.trim_start_matches('0');
        if digits.is_empty() {
            return Ok(Amount(Decimal::ZERO));
        }
        let exponent = match exponent {
            None => 0,
            Some(e) => match e.parse::<i64>() {
                Ok(e) => e,
                // An exponent beyond i64 gives no amount we keep: say which way it is out.
                Err(_)
                    if all_digits(e.trim_start_matches(['+', '-'])) && !e.trim_start_matches(['+', '-']).is_empty() =>
                {
                    return Err(if e.starts_with('-') { AmountError::TooPrecise } else { AmountError::TooLarge });
                }
                Err(_) => return Err(AmountError::NotANumber),
            },
        };
        // value = significant * 10^-scale, with no trailing zeros left in `significant`.
        let significant = digits.trim_end_matches('0');
        let trailing_zeros = (digits.len() - significant.len()) as i64;
        let frac_len = frac.trim_end_matches('0').len() as i64;
        let scale = frac_len.saturating_sub(exponent).saturating_sub(trailing_zeros);
        if scale > i64::from(MAX_DECIMAL_PLACES) {
            return Err(AmountError::TooPrecise);
        }
        if (significant.len() as i64).saturating_sub(scale) > 12 {
            return Err(AmountError::TooLarge);
        }
        // At most 18 significant digits and a shift of at most 12 places now: exact in i128.
        let significant: i128 = significant.parse().map_err(|_| AmountError::NotANumber)?;
        let (mantissa, scale) =
            if scale < 0 { (significant * 10_i128.pow(scale.unsigned_abs() as u32), 0) } else { (significant, scale) };
        let value = Decimal::try_from_i128_with_scale(mantissa, scale as u32).map_err(|_| AmountError::TooLarge)?;
        Self::from_decimal(value)
    }

    /// Validates a decimal (as read back from storage, or computed) as an amount.
    pub fn from_decimal(value: Decimal) -> Result<Self, AmountError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(AmountError::Negative);
        }
        let value = value.normalize();
        if value.scale() > MAX_DECIMAL_PLACES {
            return Err(AmountError::TooPrecise);
        }
        if value > Self::max().0 {
            return Err(AmountError::TooLarge);
        }
        // `normalize` keeps the sign of -0; an amount has none.
        Ok(Amount(value.abs()))
    }

    pub fn as_decimal(&self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Amount {
    type Err = AmountError;
    /// Reads the decimal string DynamoDB returns for a number attribute.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_json_number(s)
    }
}

impl serde::Serialize for Amount {
    /// Written as a JSON number with exactly the stored digits (no trip through `f64`).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw = serde_json::value::RawValue::from_string(self.0.to_string()).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// ISO 4217 alphabetic codes in current use.
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF", "BMD",
    "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP",
    "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD",
    "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB",
    "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL",
    "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES", "VND",
    "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// An ISO 4217 currency code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(&'static str);

impl Currency {
    pub const USD: Currency = Currency("USD");

    /// An upper-case code, as the API writes it (`USD`).
    pub fn parse(code: &str) -> Option<Self> {
        ISO_4217.iter().find(|c| **c == code).map(|c| Currency(c))
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> String {
        Amount::parse_json_number(text).map(|a| a.to_string()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(ok("0.1"), "0.1");
        assert_eq!(ok("0.014"), "0.014");
        assert_eq!(ok("1000000.000001"), "1000000.000001");
        assert_eq!(ok("0"), "0");
        assert_eq!(ok("0.0"), "0");
        assert_eq!(ok("15"), "15");
        assert_eq!(ok("0.0140"), "0.014");
        assert_eq!(ok("1.5e2"), "150");
        assert_eq!(ok("14e-3"), "0.014");
        assert_eq!(ok("1E-6"), "0.000001");
        assert_eq!(ok("999999999999.999999"), "999999999999.999999");
        assert_eq!(ok("0e400"), "0");
        assert_eq!(ok("0.100000000000000000000000000000000000"), "0.1");
        assert_eq!(ok("100e-8"), "0.000001");
        assert_eq!(ok("0.00000100000e0"), "0.000001");
        assert_eq!(ok("1e11"), "100000000000");
        assert_eq!(ok("12e+2"), "1200");
        assert_eq!(ok("000123.4500"), "123.45");
    }

    #[test]
    fn sums_stay_exact() {
        let a = Amount::parse_json_number("0.1").unwrap().as_decimal();
        let b = Amount::parse_json_number("0.2").unwrap().as_decimal();
        assert_eq!((a + b).to_string(), "0.3");
    }

    #[test]
    fn rejects_what_is_not_an_amount() {
        use AmountError::*;
        let err = |t: &str| Amount::parse_json_number(t).unwrap_err();
        assert_eq!(err("1e-7"), TooPrecise);
        assert_eq!(err("0.0000001"), TooPrecise);
        assert_eq!(err("0.0140000000000000001"), TooPrecise);
        assert_eq!(err("-0.01"), Negative);
        assert_eq!(err("-0"), Negative);
        assert_eq!(err("1000000000000"), TooLarge);
        assert_eq!(err("1e13"), TooLarge);
        assert_eq!(err("1e400"), TooLarge);
        assert_eq!(err("1e-400"), TooPrecise);
        assert_eq!(err("123456789012345678901234567890"), TooLarge);
        assert_eq!(err("1.0000000000000000000000000001e-1"), TooPrecise);
        assert_eq!(err("1e99999999999999999999"), TooLarge);
        assert_eq!(err("1e-99999999999999999999"), TooPrecise);
        assert_eq!(err("\"0.1\""), NotANumber);
        assert_eq!(err(".5"), NotANumber);
        assert_eq!(err("1e"), NotANumber);
        assert_eq!(err("0x10"), NotANumber);
        assert_eq!(err("null"), NotANumber);
        assert_eq!(err("true"), NotANumber);
    }

    #[test]
    fn serializes_as_exact_json_number() {
        let a = Amount::parse_json_number("1000000.000001").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "1000000.000001");
    }

    #[test]
    fn currency_codes() {
        assert_eq!(Currency::parse("USD"), Some(Currency::USD));
        assert_eq!(Currency::parse("usd"), None);
        assert_eq!(Currency::parse("EUR").map(|c| c.as_str()), Some("EUR"));
        assert_eq!(Currency::parse("XYZ"), None);
        assert_eq!(Currency::parse("US"), None);
    }
}
