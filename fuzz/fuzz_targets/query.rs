//! Query strings: any raw query is a list or summary query, or a 4xx naming a parameter.
#![no_main]

use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::{Request, RequestExt};
use libfuzzer_sys::fuzz_target;
use payment_attempts::http;
use payment_attempts::page::MAX_LIMIT;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(params) = raw.parse::<QueryMap>();
    let request = Request::default().with_query_string_parameters(params);
    match http::list_query(&request) {
        Ok(query) => {
            assert!((1..=MAX_LIMIT).contains(&query.limit));
            if let (Some(from), Some(to)) = (query.created.from_ms, query.created.to_ms) {
                assert!(from <= to);
            }
        }
        Err(error) => assert!(error.status().is_client_error() && error.param.is_some(), "{error:?}"),
    }
    if let Err(error) = http::summary_query(&request) {
        assert!(error.status().is_client_error() && error.param.is_some(), "{error:?}");
    }
});
