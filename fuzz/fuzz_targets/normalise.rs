//! A report file's bytes: `normalise::decode`, then `normalise::normalise` three ways, then
//! the feeds rendered and parsed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livefeed_fuzz::normalise(data));
