//! Ids, amounts, instants and role ARNs: parsers never panic, and what they accept prints back
//! to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payment_attempts::http::role_of;
use payment_attempts::id::{AttemptId, OrganizationId, SessionId};
use payment_attempts::money::Amount;
use payment_attempts::time::parse_instant_nanos;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(id) = AttemptId::parse(text) {
        assert_eq!(id.as_str(), text);
        let _ = id.timestamp();
    }
    if let Some(org) = OrganizationId::parse(text) {
        assert!(!org.as_str().contains('#'));
    }
    if let Some(session) = SessionId::parse(text) {
        assert!(!session.as_str().contains('#'));
    }
    if let Ok(amount) = Amount::parse_json_number(text) {
        assert_eq!(Amount::parse_json_number(&amount.to_string()), Ok(amount));
        assert!(amount <= Amount::max());
    }
    let _ = parse_instant_nanos(text);
    if let Some(role) = role_of(text) {
        assert_eq!(role_of(&role.to_string()), Some(role));
    }
});
