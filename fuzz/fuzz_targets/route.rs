//! The router: a request line (and a preflight's method) through `http::route::route`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livefeed_fuzz::route(data));
