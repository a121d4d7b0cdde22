//! A long-poll query string: `LiveQuery::parse` and `percent_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livefeed_fuzz::live_query(data));
