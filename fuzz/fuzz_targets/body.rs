//! Write bodies: any bytes are refused with a named reason or accepted into an attempt that
//! serializes, and accepted amounts keep their exact value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payment_attempts::command::{NewAttempt, StatusUpdate};
use payment_attempts::money::Amount;
use payment_attempts::time::Timestamp;
use payment_attempts::{OrganizationId, View};

fuzz_target!(|data: &[u8]| {
    if let Ok(command) = NewAttempt::from_json(data) {
        let amount = command.amount_usd;
        assert_eq!(Amount::parse_json_number(&amount.to_string()), Ok(amount));
        let org = OrganizationId::parse("org_fuzz").expect("valid organization");
        let attempt = command.into_attempt(org, Timestamp::now());
        let text = serde_json::to_string(&attempt.view(View::Full)).expect("an accepted attempt serializes");
        // Read back as text: through f64, 18 significant digits would round.
        let back: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_str(&text).expect("and is JSON");
        assert_eq!(back["amount_usd"].get(), amount.to_string());
    }
    let _ = StatusUpdate::from_json(data);
});
