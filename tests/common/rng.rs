//! Randomness for the stress tests that can be replayed: a failing schedule prints its seed.

/// A small deterministic generator (SplitMix64), so a failing schedule can be replayed.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `LIVEFEED_TEST_SEED`, else the clock; the seed is printed.
    pub fn from_env() -> Rng {
        let seed = std::env::var("LIVEFEED_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("LIVEFEED_TEST_SEED={seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}
