#!/usr/bin/env bash
# Builds the fuzz targets and replays the committed corpus through each of them, on the stable
# toolchain: the targets are plain libFuzzer binaries (libfuzzer-sys links libFuzzer's main),
# so without `cargo fuzz`'s coverage instrumentation they still run every corpus file once
# (`-runs=0`) and fail on any crash. `cargo test` replays the same corpus too
# (tests/fuzz_corpus.rs); this script additionally proves the targets build.
#
# To fuzz for real (needs cargo-fuzz; -Z flags, hence RUSTC_BOOTSTRAP on stable):
#   cargo install cargo-fuzz
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none normalise /tmp/fz/normalise \
#       corpus/normalise -- -max_total_time=600
# (new inputs go to the first directory; copy the ones worth keeping, and every input that
# failed once, into corpus/<target>/.)
set -euo pipefail
cd "$(dirname "$0")"

targets=(normalise manifest live_query log_record route)

printf '==> cargo build (fuzz targets)\n'
cargo build --quiet --bins

for t in "${targets[@]}"; do
    printf '==> replay corpus/%s (%s files)\n' "$t" "$(find "corpus/$t" -type f | wc -l)"
    "${CARGO_TARGET_DIR:-target}/debug/$t" -runs=0 "corpus/$t" 2>&1 | tail -n 1
done
printf '==> every corpus file passed\n'
