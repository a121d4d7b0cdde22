//! Percentiles over latency samples (nanoseconds), reported in milliseconds.

use serde_json::{Value, json};

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(nanos: u64) -> f64 {
    (nanos as f64 / 1e6 * 1000.0).round() / 1000.0
}

/// `{prefix}_p50_ms`, `_p99_ms`, `_max_ms`, `_mean_ms` of the samples (sorted in place).
pub fn summary(samples: &mut [u64], prefix: &str) -> Vec<(String, Value)> {
    samples.sort_unstable();
    let mean = if samples.is_empty() {
        0
    } else {
        (samples.iter().map(|&s| s as u128).sum::<u128>() / samples.len() as u128) as u64
    };
    vec![
        (
            format!("{prefix}p50_ms"),
            json!(ms(percentile(samples, 50.0))),
        ),
        (
            format!("{prefix}p99_ms"),
            json!(ms(percentile(samples, 99.0))),
        ),
        (
            format!("{prefix}max_ms"),
            json!(ms(samples.last().copied().unwrap_or(0))),
        ),
        (format!("{prefix}mean_ms"), json!(ms(mean))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 99.0), 0);
    }
}
