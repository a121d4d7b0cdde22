//! A `stories.toml`: `Manifest::parse`, then each story's times driving time inference.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livefeed_fuzz::manifest(data));
