//! Process-wide metrics, exposed at `GET /metrics` in the OpenMetrics text format by the
//! `prometheus-client` crate. Everything a Prometheus user looks for: requests by route and
//! status, latency histograms, the event log, the live transports, rendering, the report
//! watcher, the process and a `livefeed_build_info` gauge. None of these gauges is used to
//! enforce a limit: the caps are per-server semaphores (see `server::App`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::log::event::{Op, Source};

/// The `Content-Type` of `/metrics` for a scraper that asks for OpenMetrics…
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// …and for any other (the Prometheus text format, which `promtool check metrics` reads).
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Requests, by the route that answered and the status it answered with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppendLabels {
    pub op: &'static str,
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: &'static str,
}

/// A WebSub delivery attempt or verification, by what became of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    /// Time to answer a feed or page GET (including waiting for its render).
    pub feed_seconds: Histogram,
    /// Time to answer a publish (POST, PUT, DELETE), the log write and fsync included.
    pub publish_seconds: Histogram,
    /// Time from an append to the long-poll it woke answering.
    pub longpoll_wake_seconds: Histogram,
    /// Time to write and sync one batch of events.
    pub sync_seconds: Histogram,
    pub events_appended: Family<AppendLabels, Counter>,
    pub fsync_batches: Counter,
    pub fsync_batch_events: Histogram,
    /// Appends the store refused because another writer appended first (a shared log).
    pub store_conflicts: Counter,
    pub head_seq: Gauge,
    pub oldest_seq: Gauge,
    pub longpoll_waiting: Gauge,
    pub sse_connected: Gauge,
    pub delivered: Family<TransportLabels, Counter>,
    /// The family's two members, looked up once (an SSE fan-out counts every frame).
    pub delivered_longpoll: Counter,
    pub delivered_sse: Counter,
    pub connections_open: Gauge,
    pub connections_refused: Counter,
    /// Bytes of SSE frames handed to connections and not yet written to their sockets.
    pub sse_held_bytes: Gauge,
    /// SSE subscribers closed because they stopped reading.
    pub sse_dropped: Counter,
    pub rendered: Counter,
    pub render_seconds: Histogram,
    pub report_files_watched: Gauge,
    pub report_files_failing: Gauge,
    /// Active WebSub subscriptions (verified, lease not expired).
    pub websub_subscriptions: Gauge,
    /// WebSub content notifications: `delivered`, `retried` (an attempt failed, another
    /// follows), `failed` (attempts used up), `gave_up` (the subscriber failed too long and was
    /// dropped), `dropped` (the delivery queue was full), `superseded` (newer content queued).
    pub websub_deliveries: Family<OutcomeLabels, Counter>,
    /// WebSub intent verifications: `verified`, `refused` (wrong answer), `failed` (no answer).
    pub websub_verifications: Family<OutcomeLabels, Counter>,
    /// Time from a change being visible to readers to its notification being acknowledged.
    pub websub_delivery_seconds: Histogram,
    /// Settings of the store that can lose acknowledged appends (a Redis without
    /// `appendfsync always`), as `/healthz` lists them.
    pub store_warnings: Gauge,
    /// When the follower last made events visible to readers, in microseconds since `epoch`
    /// (0: never). Stamped there, not at the append: a waiter can be woken before the writer
    /// has recorded its append.
    last_visible_us: AtomicU64,
    epoch: Instant,
}

/// The metrics of this process.
pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// Latency buckets from 0.5 ms to about 16 s.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            feed_seconds: seconds(),
            publish_seconds: seconds(),
            longpoll_wake_seconds: seconds(),
            sync_seconds: seconds(),
            events_appended: Family::default(),
            fsync_batches: Counter::default(),
            store_conflicts: Counter::default(),
            fsync_batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            head_seq: Gauge::default(),
            oldest_seq: Gauge::default(),
            longpoll_waiting: Gauge::default(),
            sse_connected: Gauge::default(),
            delivered: Family::default(),
            delivered_longpoll: Counter::default(),
            delivered_sse: Counter::default(),
            connections_open: Gauge::default(),
            connections_refused: Counter::default(),
            sse_held_bytes: Gauge::default(),
            sse_dropped: Counter::default(),
            rendered: Counter::default(),
            render_seconds: seconds(),
            report_files_watched: Gauge::default(),
            report_files_failing: Gauge::default(),
            websub_subscriptions: Gauge::default(),
            websub_deliveries: Family::default(),
            websub_verifications: Family::default(),
            websub_delivery_seconds: seconds(),
            store_warnings: Gauge::default(),
            last_visible_us: AtomicU64::new(0),
            epoch: Instant::now(),
        };
        let delivered_longpoll = m
            .delivered
            .get_or_create(&TransportLabels {
                transport: "longpoll",
            })
            .clone();
        let delivered_sse = m
            .delivered
            .get_or_create(&TransportLabels { transport: "sse" })
            .clone();
        let m = Metrics {
            delivered_longpoll,
            delivered_sse,
            ..m
        };
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("livefeed");
        r.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            m.requests.clone(),
        );
        r.register_with_unit(
            "feed_request_duration",
            "Time to answer a feed or page GET",
            Unit::Seconds,
            m.feed_seconds.clone(),
        );
        r.register_with_unit(
            "publish_request_duration",
            "Time to answer a publish, the log write and fsync included",
            Unit::Seconds,
            m.publish_seconds.clone(),
        );
        r.register_with_unit(
            "longpoll_wake_delay",
            "Time from events made visible to readers to the long-poll they woke answering",
            Unit::Seconds,
            m.longpoll_wake_seconds.clone(),
        );
        r.register_with_unit(
            "publish_sync",
            "Time to write and sync one batch of events",
            Unit::Seconds,
            m.sync_seconds.clone(),
        );
        r.register(
            "events_appended",
            "Events made durable in the log, by op and source",
            m.events_appended.clone(),
        );
        r.register(
            "log_fsync_batches",
            "Batches of events written and synced",
            m.fsync_batches.clone(),
        );
        r.register(
            "store_conflicts",
            "Appends refused because another writer appended first (decided again)",
            m.store_conflicts.clone(),
        );
        r.register(
            "log_fsync_batch_events",
            "Events per synced batch",
            m.fsync_batch_events.clone(),
        );
        r.register(
            "log_head_seq",
            "Seq of the newest event",
            m.head_seq.clone(),
        );
        r.register(
            "log_oldest_seq",
            "Seq of the oldest event still served to cursors",
            m.oldest_seq.clone(),
        );
        r.register_collector(Box::new(Waiting {
            longpoll: m.longpoll_waiting.clone(),
            sse: m.sse_connected.clone(),
        }));
        r.register(
            "events_delivered",
            "Events sent to subscribers, by transport",
            m.delivered.clone(),
        );
        r.register(
            "connections_open",
            "Open HTTP connections",
            m.connections_open.clone(),
        );
        r.register(
            "connections_refused",
            "Connections refused at the connection cap",
            m.connections_refused.clone(),
        );
        r.register(
            "sse_held_bytes",
            "Bytes of SSE frames handed to connections, not yet written to their sockets",
            m.sse_held_bytes.clone(),
        );
        r.register(
            "sse_dropped",
            "SSE subscribers cut off because they stopped reading",
            m.sse_dropped.clone(),
        );
        r.register(
            "rendered_versions",
            "Renders of changed stories' files",
            m.rendered.clone(),
        );
        r.register_with_unit(
            "render",
            "Time to render the files of changed stories",
            Unit::Seconds,
            m.render_seconds.clone(),
        );
        r.register(
            "report_files_watched",
            "Report files in the watched data directory",
            m.report_files_watched.clone(),
        );
        r.register(
            "report_files_failing",
            "Report files that failed to load at the last change (the last good state is kept)",
            m.report_files_failing.clone(),
        );
        r.register(
            "websub_subscriptions",
            "Active WebSub subscriptions (verified, lease not expired)",
            m.websub_subscriptions.clone(),
        );
        r.register(
            "websub_deliveries",
            "WebSub content notifications, by outcome",
            m.websub_deliveries.clone(),
        );
        r.register(
            "websub_verifications",
            "WebSub intent verifications, by outcome",
            m.websub_verifications.clone(),
        );
        r.register_with_unit(
            "websub_delivery_delay",
            "Time from a change visible to readers to its WebSub notification acknowledged",
            Unit::Seconds,
            m.websub_delivery_seconds.clone(),
        );
        r.register(
            "store_warnings",
            "Settings of the event log's store that can lose acknowledged publishes (a Redis \
             without appendonly yes and appendfsync always); /healthz names them",
            m.store_warnings.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: env!("LIVEFEED_COMMIT"),
            })
            .set(1);
        r.register(
            "build_info",
            "The version and commit of this build (always 1)",
            build,
        );
        root.register_collector(Box::new(Process));
        Metrics {
            registry: root,
            ..m
        }
    }

    /// One durable append of `events` (one sync) that took `took`.
    pub fn record_append(&self, events: impl IntoIterator<Item = (Op, Source)>, took: Duration) {
        let mut n = 0u64;
        for (op, source) in events {
            n += 1;
            let source = match source {
                Source::Report => "report",
                Source::Api => "api",
            };
            self.events_appended
                .get_or_create(&AppendLabels {
                    op: op.as_str(),
                    source,
                })
                .inc();
        }
        self.fsync_batches.inc();
        self.fsync_batch_events.observe(n as f64);
        self.sync_seconds.observe(took.as_secs_f64());
    }

    /// The follower is about to make events visible to readers (and wake waiters).
    pub fn record_visible(&self) {
        let now = self.epoch.elapsed().as_micros() as u64;
        self.last_visible_us.store(now.max(1), Relaxed);
    }

    /// A long-poll woke with events: how long after they were made visible.
    pub fn record_wake(&self) {
        let last = self.last_visible_us.load(Relaxed);
        if last > 0 {
            let now = self.epoch.elapsed().as_micros() as u64;
            self.longpoll_wake_seconds
                .observe(now.saturating_sub(last) as f64 / 1e6);
        }
    }

    pub fn record_render(&self, took: Duration) {
        self.rendered.inc();
        self.render_seconds.observe(took.as_secs_f64());
    }

    /// The exposition, with the log's bounds as of now: OpenMetrics, or the Prometheus text
    /// format (see [`to_prometheus_text`]).
    pub fn render(&self, oldest: u64, head: u64, openmetrics: bool) -> String {
        self.oldest_seq.set(oldest as i64);
        self.head_seq.set(head as i64);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        if openmetrics {
            out
        } else {
            to_prometheus_text(&out)
        }
    }
}

/// The Prometheus text format (0.0.4) of an OpenMetrics exposition from `prometheus-client`,
/// which writes only OpenMetrics. The two differ, for what this crate emits, in three ways: a
/// counter family is named without `_total` in OpenMetrics but with it in the text format,
/// and the text format has no `# UNIT` and no `# EOF` line. Hand-written because no crate
/// converts between them; the samples themselves are the same.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `livefeed_waiting_subscribers{transport}`: one family over the two gauges the transports
/// move.
#[derive(Debug)]
struct Waiting {
    longpoll: Gauge,
    sse: Gauge,
}

impl Collector for Waiting {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family = Family::<TransportLabels, Gauge>::default();
        family
            .get_or_create(&TransportLabels {
                transport: "longpoll",
            })
            .set(self.longpoll.get());
        family
            .get_or_create(&TransportLabels { transport: "sse" })
            .set(self.sse.get());
        let metric = encoder.encode_descriptor(
            "waiting_subscribers",
            "Subscribers waiting, by transport",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}

/// The standard `process_*` metrics, read from `/proc/self` at each scrape (Linux only;
/// elsewhere, none). Hand-written: `prometheus-client` has no process collector, and the few
/// reads it takes do not justify another crate.
#[derive(Debug)]
struct Process;

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = process_stats() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        for (name, help, unit, value) in [
            (
                "process_resident_memory",
                "Resident memory size",
                Unit::Bytes,
                p.rss_bytes,
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Unit::Seconds,
                p.start_time,
            ),
        ] {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, Some(&unit), g.metric_type())?)?;
        }
        let fds = ConstGauge::new(p.open_fds);
        fds.encode(encoder.encode_descriptor(
            "process_open_fds",
            "Open file descriptors",
            None,
            fds.metric_type(),
        )?)?;
        Ok(())
    }
}

struct ProcessStats {
    cpu_seconds: f64,
    rss_bytes: f64,
    start_time: f64,
    open_fds: i64,
}

#[cfg(target_os = "linux")]
fn process_stats() -> Option<ProcessStats> {
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime, stime and starttime are fields 14, 15 and 22 of proc(5); `fields[0]` is field 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let cpu_seconds = (field(14)? + field(15)?) / ticks;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<f64>()
        .ok()?;
    let start_time = boot + field(22)? / ticks;
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<f64>()
        .ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
    Some(ProcessStats {
        cpu_seconds,
        rss_bytes: rss_kib * 1024.0,
        start_time,
        open_fds,
    })
}

#[cfg(not(target_os = "linux"))]
fn process_stats() -> Option<ProcessStats> {
    None
}

/// Increments a gauge, and decrements it when dropped, so every exit path of a waiter is
/// counted.
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    pub fn new(gauge: &Gauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_family_and_ends_with_eof() {
        let m = get();
        m.record_append([(Op::Create, Source::Api)], Duration::from_millis(2));
        let text = m.render(1, 7, true);
        for name in [
            "livefeed_events_appended_total{op=\"create\",source=\"api\"}",
            "livefeed_log_head_seq 7",
            "livefeed_waiting_subscribers{transport=\"sse\"}",
            "livefeed_build_info{version=",
            "process_cpu_seconds_total",
            "process_open_fds",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn the_text_format_names_counter_families_with_total_and_has_no_unit_or_eof() {
        let om = "# HELP a_seconds Time.\n# TYPE a_seconds histogram\n# UNIT a_seconds seconds\n\
                  a_seconds_sum 1.0\n# HELP b Bs.\n# TYPE b counter\nb_total 3\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_seconds Time.\n# TYPE a_seconds histogram\na_seconds_sum 1.0\n\
             # HELP b_total Bs.\n# TYPE b_total counter\nb_total 3\n"
        );
    }
}
