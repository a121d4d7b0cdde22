//! Process-wide counters, exposed at `GET /metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Publish-latency histogram bounds, in seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Statuses counted for feed responses.
const STATUSES: [u16; 5] = [200, 304, 404, 406, 503];

#[derive(Default)]
pub struct Metrics {
    pub events_appended: AtomicU64,
    pub batches: AtomicU64,
    pub longpoll_waiting: AtomicU64,
    pub sse_connected: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_refused: AtomicU64,
    /// Bytes of SSE frames handed to connections and not yet written to their sockets.
    pub sse_held_bytes: AtomicU64,
    /// SSE subscribers closed because they stopped reading.
    pub sse_dropped: AtomicU64,
    append_seconds_sum_us: AtomicU64,
    append_buckets: [AtomicU64; BUCKETS.len()],
    feed_status: [AtomicU64; STATUSES.len()],
    feed_status_other: AtomicU64,
}

/// The metrics of this process.
pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::default)
}

/// Decrements a gauge when dropped, so every exit path of a waiter is counted.
pub struct GaugeGuard(&'static AtomicU64);

impl GaugeGuard {
    pub fn new(gauge: &'static AtomicU64) -> GaugeGuard {
        gauge.fetch_add(1, Relaxed);
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    /// One durable append of `n` events (one sync) that took `took`.
    pub fn record_append(&self, n: usize, took: Duration) {
        self.events_appended.fetch_add(n as u64, Relaxed);
        self.batches.fetch_add(1, Relaxed);
        self.append_seconds_sum_us
            .fetch_add(took.as_micros() as u64, Relaxed);
        let secs = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.append_buckets[i].fetch_add(1, Relaxed);
            }
        }
    }

    pub fn record_feed_status(&self, status: u16) {
        match STATUSES.iter().position(|s| *s == status) {
            Some(i) => self.feed_status[i].fetch_add(1, Relaxed),
            None => self.feed_status_other.fetch_add(1, Relaxed),
        };
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let g = |a: &AtomicU64| a.load(Relaxed);
        let _ = writeln!(
            out,
            "# HELP livefeed_events_appended_total Events made durable in the log."
        );
        let _ = writeln!(out, "# TYPE livefeed_events_appended_total counter");
        let _ = writeln!(
            out,
            "livefeed_events_appended_total {}",
            g(&self.events_appended)
        );
        let _ = writeln!(
            out,
            "# HELP livefeed_waiting_subscribers Subscribers waiting, by transport."
        );
        let _ = writeln!(out, "# TYPE livefeed_waiting_subscribers gauge");
        let _ = writeln!(
            out,
            "livefeed_waiting_subscribers{{transport=\"longpoll\"}} {}",
            g(&self.longpoll_waiting)
        );
        let _ = writeln!(
            out,
            "livefeed_waiting_subscribers{{transport=\"sse\"}} {}",
            g(&self.sse_connected)
        );
        let _ = writeln!(
            out,
            "# HELP livefeed_connections_open Open HTTP connections."
        );
        let _ = writeln!(out, "# TYPE livefeed_connections_open gauge");
        let _ = writeln!(
            out,
            "livefeed_connections_open {}",
            g(&self.connections_open)
        );
        let _ = writeln!(
            out,
            "# HELP livefeed_connections_refused_total Connections refused at the cap."
        );
        let _ = writeln!(out, "# TYPE livefeed_connections_refused_total counter");
        let _ = writeln!(
            out,
            "livefeed_connections_refused_total {}",
            g(&self.connections_refused)
        );
        let _ = writeln!(
            out,
            "# HELP livefeed_sse_held_bytes Bytes of SSE frames handed to connections, not yet written to their sockets."
        );
        let _ = writeln!(out, "# TYPE livefeed_sse_held_bytes gauge");
        let _ = writeln!(out, "livefeed_sse_held_bytes {}", g(&self.sse_held_bytes));
        let _ = writeln!(
            out,
            "# HELP livefeed_sse_dropped_total SSE subscribers closed because they stopped reading."
        );
        let _ = writeln!(out, "# TYPE livefeed_sse_dropped_total counter");
        let _ = writeln!(out, "livefeed_sse_dropped_total {}", g(&self.sse_dropped));
        let _ = writeln!(
            out,
            "# HELP livefeed_publish_sync_seconds Time to write and sync one batch of events."
        );
        let _ = writeln!(out, "# TYPE livefeed_publish_sync_seconds histogram");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "livefeed_publish_sync_seconds_bucket{{le=\"{bound}\"}} {}",
                g(&self.append_buckets[i])
            );
        }
        let batches = g(&self.batches);
        let _ = writeln!(
            out,
            "livefeed_publish_sync_seconds_bucket{{le=\"+Inf\"}} {batches}"
        );
        let sum = g(&self.append_seconds_sum_us) as f64 / 1e6;
        let _ = writeln!(out, "livefeed_publish_sync_seconds_sum {sum}");
        let _ = writeln!(out, "livefeed_publish_sync_seconds_count {batches}");
        let _ = writeln!(
            out,
            "# HELP livefeed_feed_responses_total Feed and page responses, by status."
        );
        let _ = writeln!(out, "# TYPE livefeed_feed_responses_total counter");
        for (i, status) in STATUSES.iter().enumerate() {
            let _ = writeln!(
                out,
                "livefeed_feed_responses_total{{status=\"{status}\"}} {}",
                g(&self.feed_status[i])
            );
        }
        let _ = writeln!(
            out,
            "livefeed_feed_responses_total{{status=\"other\"}} {}",
            g(&self.feed_status_other)
        );
        out
    }
}
