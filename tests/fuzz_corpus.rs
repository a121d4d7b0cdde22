//! The fuzz corpus, replayed in a plain `cargo test` (CI has no nightly toolchain for
//! `cargo fuzz`): every file of `fuzz/corpus/<target>/` goes through the same checks the fuzz
//! targets run (`fuzz/src/lib.rs`). The corpus holds the seed inputs and every input a fuzzer
//! once failed on, so a fixed finding stays fixed.

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        // A panic names the input that caused it.
        let outcome = std::panic::catch_unwind(|| check(&bytes));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
    }
}

#[test]
fn normalise_corpus() {
    replay("normalise", checks::normalise);
}

#[test]
fn manifest_corpus() {
    replay("manifest", checks::manifest);
}

#[test]
fn live_query_corpus() {
    replay("live_query", checks::live_query);
}

#[test]
fn log_record_corpus() {
    replay("log_record", checks::log_record);
}

#[test]
fn route_corpus() {
    replay("route", checks::route);
}
