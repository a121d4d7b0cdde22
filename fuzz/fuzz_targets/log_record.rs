//! Event-log bytes: `store::decode` / `decode_all`, raw and with valid checksums.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livefeed_fuzz::log_record(data));
