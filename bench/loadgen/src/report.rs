//! Turns the result lines of one `bench/run` into BENCHMARKS.md and results.json: for each
//! scenario, livefeed and its peer side by side, the median over rounds with the spread
//! (min–max), the ratio, and each goal marked met or not. Also checks the harness's health: every
//! scenario measured for both systems, no lost, duplicated or reordered event at livefeed, every
//! acknowledged publish stored. Exit status 1 when a health check fails.

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Result lines (JSON objects, one per line) from the loadgen runs.
    #[arg(long)]
    pub raw: PathBuf,
    /// The machine description written by bench/run.
    #[arg(long)]
    pub machine: PathBuf,
    #[arg(long)]
    pub md: PathBuf,
    #[arg(long)]
    pub json: PathBuf,
    /// Extra Markdown appended after the tables (analysis of the goals missed).
    #[arg(long)]
    pub notes: Option<PathBuf>,
}

type Rows = Vec<Map<String, Value>>;

/// Results of one scenario variant, by system.
#[derive(Default)]
struct Group {
    by_system: BTreeMap<String, Rows>,
}

fn num(row: &Map<String, Value>, key: &str) -> Option<f64> {
    row.get(key).and_then(Value::as_f64)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Median, min, max of a metric over rounds.
fn agg(rows: &Rows, key: &str) -> Option<(f64, f64, f64)> {
    let v: Vec<f64> = rows.iter().filter_map(|r| num(r, key)).collect();
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    median(v).map(|m| (m, min, max))
}

fn sum(rows: &Rows, key: &str) -> f64 {
    rows.iter().filter_map(|r| num(r, key)).sum()
}

fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn fmt_val(x: f64, unit: &str) -> String {
    match unit {
        "int" => thousands(x),
        "ms" => {
            if x >= 100.0 {
                format!("{x:.0}")
            } else if x >= 10.0 {
                format!("{x:.1}")
            } else {
                format!("{x:.2}")
            }
        }
        "s" => format!("{x:.2}"),
        "kib" => format!("{x:.1}"),
        "mib" => format!("{:.1}", x / 1024.0),
        _ => format!("{x}"),
    }
}

/// `median (min–max)`, or just the value for one round.
fn cell(rows: Option<&Rows>, key: &str, unit: &str) -> String {
    let Some((m, lo, hi)) = rows.and_then(|r| agg(r, key)) else {
        return "—".into();
    };
    let n = rows.map_or(0, Vec::len);
    if n <= 1 || (fmt_val(lo, unit) == fmt_val(hi, unit)) {
        fmt_val(m, unit)
    } else {
        format!(
            "{} ({}–{})",
            fmt_val(m, unit),
            fmt_val(lo, unit),
            fmt_val(hi, unit)
        )
    }
}

fn med(rows: Option<&Rows>, key: &str) -> Option<f64> {
    rows.and_then(|r| agg(r, key)).map(|a| a.0)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.2}×"))
}

fn mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "—",
    }
}

struct Goal {
    name: String,
    target: String,
    measured: String,
    met: Option<bool>,
}

pub fn run(args: &ReportArgs) -> Result<i32> {
    let raw = std::fs::read_to_string(&args.raw)
        .with_context(|| format!("cannot read {}", args.raw.display()))?;
    let machine: Value = serde_json::from_str(
        &std::fs::read_to_string(&args.machine)
            .with_context(|| format!("cannot read {}", args.machine.display()))?,
    )?;
    let mut lines: Vec<Map<String, Value>> = Vec::new();
    for (i, l) in raw.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(m)) => lines.push(m),
            _ => anyhow::bail!("{}:{}: not a JSON object", args.raw.display(), i + 1),
        }
    }
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for l in &lines {
        let s = |k: &str| match l.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        };
        groups
            .entry((s("scenario"), s("variant")))
            .or_default()
            .by_system
            .entry(s("system"))
            .or_default()
            .push(l.clone());
    }
    let quick = machine["mode"] == "quick";
    let mut problems: Vec<String> = Vec::new();
    let mut goals: Vec<Goal> = Vec::new();
    let mut md = String::new();
    let mut summary = Map::new();
    let get = |sc: &str, var: &str, sys: &str| -> Option<&Rows> {
        groups
            .get(&(sc.to_string(), var.to_string()))
            .and_then(|g| g.by_system.get(sys))
    };
    let variants = |sc: &str| -> Vec<String> {
        let mut v: Vec<String> = groups
            .keys()
            .filter(|(s, _)| s == sc)
            .map(|(_, v)| v.clone())
            .collect();
        // Numeric variants in numeric order; feed GET as plain, gzip, 304.
        let rank = |x: &str| match x {
            "plain" => 0,
            "gzip" => 1,
            "304" => 2,
            n => n.parse::<u64>().map_or(u64::MAX, |n| n + 3),
        };
        v.sort_by_key(|x| (rank(x), x.clone()));
        v
    };

    let m = |k: &str| {
        machine[k]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| machine[k].to_string())
    };
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `bench/run{}` on {}. livefeed and each peer run on the same machine, on \
         loopback, one after the other in alternating order, {} round(s) per scenario; each cell \
         is the **median** over rounds with the spread (min–max) in brackets. Ratios compare \
         medians. Raw numbers: `{}`.\n",
        if quick { " --quick" } else { "" },
        m("date"),
        m("rounds"),
        if quick {
            "target/bench-quick/results.json"
        } else {
            "bench/results.json"
        },
    );
    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    for (label, key) in [
        ("CPU", "cpu_model"),
        ("cores (nproc)", "nproc"),
        ("RAM", "ram"),
        ("kernel", "kernel"),
        ("OS", "os"),
        ("disk (fsync target)", "disk"),
        ("load average before / after", "load"),
        ("other processes", "shared"),
        ("livefeed", "livefeed"),
        ("nginx / Nchan", "nginx"),
        ("Redis", "redis"),
        ("wrk", "wrk"),
        ("Python / feedgen", "python"),
        ("kernel limits", "limits"),
    ] {
        if !machine[key].is_null() {
            let _ = writeln!(md, "| {label} | {} |", m(key).replace('|', "\\|"));
        }
    }
    let _ = writeln!(md);

    // ---- Feed GET
    let _ = writeln!(
        md,
        "## Feed GET: `GET /feeds/all.atom`, keep-alive, 64 connections (wrk)\n\n\
         Peer: nginx serving the file `livefeed build` wrote (`sendfile`, `open_file_cache`, \
         `gzip_static` with a `.gz` made at the same level livefeed uses). \"304\" sends \
         `If-None-Match` with each server's own ETag.\n"
    );
    let _ = writeln!(
        md,
        "| variant | livefeed req/s | nginx req/s | ratio | livefeed p99 ms | nginx p99 ms | bytes/response (livefeed / nginx) |\n|---|---|---|---|---|---|---|"
    );
    for var in variants("feed_get") {
        let (l, n) = (
            get("feed_get", &var, "livefeed"),
            get("feed_get", &var, "nginx"),
        );
        let r = ratio(med(l, "requests_per_s"), med(n, "requests_per_s"));
        let _ = writeln!(
            md,
            "| {var} | {} | {} | {} | {} | {} | {} / {} |",
            cell(l, "requests_per_s", "int"),
            cell(n, "requests_per_s", "int"),
            fmt_ratio(r),
            cell(l, "p99_ms", "ms"),
            cell(n, "p99_ms", "ms"),
            cell(l, "bytes_per_response", "int"),
            cell(n, "bytes_per_response", "int"),
        );
        goals.push(Goal {
            name: format!("Feed GET `all.atom`, 64 connections, {var}"),
            target: "≥ 1.2× nginx req/s".into(),
            measured: fmt_ratio(r),
            met: r.map(|r| r >= 1.2),
        });
        summary.insert(format!("feed_get/{var}/ratio"), json!(r));
        for (sys, rows) in [("livefeed", l), ("nginx", n)] {
            match rows {
                None => problems.push(format!("feed GET {var}: no result for {sys}")),
                Some(rows) => {
                    if sum(rows, "socket_errors") + sum(rows, "bad_status") > 0.0 {
                        problems.push(format!(
                            "feed GET {var}: {sys} had socket errors or bad statuses"
                        ));
                    }
                    if sum(rows, "requests") == 0.0 {
                        problems.push(format!("feed GET {var}: {sys} answered no request"));
                    }
                }
            }
        }
    }
    let _ = writeln!(md);

    // ---- Fan-out
    for (sc, title) in [
        ("longpoll", "Long-poll fan-out"),
        ("sse", "SSE (EventSource) fan-out"),
    ] {
        let vars = variants(sc);
        let rate = vars
            .first()
            .and_then(|v| get(sc, v, "livefeed"))
            .and_then(|r| med(Some(r), "rate"))
            .unwrap_or(0.0);
        let events = vars
            .first()
            .and_then(|v| get(sc, v, "livefeed"))
            .and_then(|r| med(Some(r), "events"))
            .unwrap_or(0.0);
        let _ = writeln!(
            md,
            "## {title}\n\nN subscribers wait; {events:.0} publishes follow at {rate} per second; \
             latency is from sending the publish to each subscriber reading the event \
             (every subscriber × every event is one sample). \"reach all\" is the time until the \
             last subscriber had an event. livefeed acknowledges a publish only after fsync, Nchan \
             keeps messages in memory. Memory is the server's PSS (nginx: master + workers) with \
             N waiting, minus before they connected, over N. CPU is server user+system seconds \
             for the whole run (connects, publishes, deliveries).\n"
        );
        let _ = writeln!(
            md,
            "| N | system | p50 ms | p99 ms | max ms | reach all p99 ms | lost / dup / out of order | KiB per waiting subscriber | server PSS with N waiting MiB | server CPU s |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for var in &vars {
            for sys in ["livefeed", "nchan"] {
                let rows = get(sc, var, sys);
                let Some(r) = rows else {
                    problems.push(format!("{sc} N={var}: no result for {sys}"));
                    continue;
                };
                let (lost, dup, ooo, foreign) = (
                    sum(r, "lost"),
                    sum(r, "duplicated"),
                    sum(r, "out_of_order"),
                    sum(r, "foreign"),
                );
                let _ = writeln!(
                    md,
                    "| {} | {sys} | {} | {} | {} | {} | {lost:.0} / {dup:.0} / {ooo:.0} | {} | {} | {} |",
                    thousands(var.parse::<f64>().unwrap_or(0.0)),
                    cell(rows, "p50_ms", "ms"),
                    cell(rows, "p99_ms", "ms"),
                    cell(rows, "max_ms", "ms"),
                    cell(rows, "all_p99_ms", "ms"),
                    cell(rows, "mem_per_subscriber_kib", "kib"),
                    cell(rows, "mem_waiting_kib", "mib"),
                    cell(rows, "server_cpu_s", "s"),
                );
                if r.iter().any(|x| x.get("ready") != Some(&json!(true))) {
                    problems.push(format!(
                        "{sc} N={var}: {sys} did not hold every subscriber before publishing"
                    ));
                }
                if sys == "livefeed" && lost + dup + ooo + foreign > 0.0 {
                    problems.push(format!(
                        "{sc} N={var}: livefeed lost {lost}, duplicated {dup}, reordered {ooo}, foreign {foreign}"
                    ));
                }
                if sys != "livefeed" && sum(r, "delivered") == 0.0 {
                    problems.push(format!("{sc} N={var}: {sys} delivered nothing"));
                }
            }
        }
        let _ = writeln!(md);
        if let Some(top) = vars.last() {
            let (l, n) = (get(sc, top, "livefeed"), get(sc, top, "nchan"));
            let (lp, np) = (med(l, "p99_ms"), med(n, "p99_ms"));
            let lost = l.map_or(1.0, |r| {
                sum(r, "lost") + sum(r, "duplicated") + sum(r, "out_of_order")
            });
            let (lm, nm) = (
                med(l, "mem_per_subscriber_kib"),
                med(n, "mem_per_subscriber_kib"),
            );
            let (label, p99_max, kib_max) = if sc == "longpoll" {
                ("Long-poll", 200.0, 8.0)
            } else {
                ("SSE", 100.0, 5.0)
            };
            let what = if sc == "longpoll" {
                "waiting subscriber"
            } else {
                "stream"
            };
            goals.push(Goal {
                name: format!(
                    "{label} fan-out, {} waiting, {events:.0} publishes at {rate}/s",
                    thousands(top.parse().unwrap_or(0.0))
                ),
                target: format!("p99 < {p99_max:.0} ms, 0 lost/dup/out of order"),
                measured: format!(
                    "p99 {} ms (Nchan {} ms), {lost:.0} lost/dup/out of order",
                    lp.map_or("—".into(), |x| fmt_val(x, "ms")),
                    np.map_or("—".into(), |x| fmt_val(x, "ms"))
                ),
                met: lp.map(|a| a < p99_max && lost == 0.0),
            });
            goals.push(Goal {
                name: format!("{label} memory per {what}"),
                target: format!("≤ {kib_max:.0} KiB"),
                measured: format!(
                    "{} KiB (Nchan {} KiB)",
                    lm.map_or("—".into(), |x| fmt_val(x, "kib")),
                    nm.map_or("—".into(), |x| fmt_val(x, "kib"))
                ),
                met: lm.map(|a| a <= kib_max),
            });
            summary.insert(
                format!("{sc}/{top}/p99_ms"),
                json!({ "livefeed": lp, "nchan": np }),
            );
            summary.insert(
                format!("{sc}/{top}/mem_per_subscriber_kib"),
                json!({ "livefeed": lm, "nchan": nm }),
            );
        }
    }

    // ---- Durable publishing
    let _ = writeln!(
        md,
        "## Durable publishing\n\nP publishers, each on its own connection, each sending its next \
         publish as soon as the last is acknowledged. livefeed: `POST /stories/…/entries`, \
         answered after the group-committed `fdatasync`. Redis: `XADD` with `appendonly yes`, \
         `appendfsync always`. The same JSON entry (title + ~300 characters) is the payload of \
         both. \"stored\" checks that the log head (XLEN) grew by exactly the acknowledged count.\n"
    );
    let _ = writeln!(
        md,
        "| publishers | livefeed acks/s | Redis acks/s | ratio | livefeed p99 ms | Redis p99 ms | stored = acked |\n|---|---|---|---|---|---|---|"
    );
    let pvars = variants("publish");
    for var in &pvars {
        let (l, r) = (
            get("publish", var, "livefeed"),
            get("publish", var, "redis"),
        );
        let rt = ratio(med(l, "acks_per_s"), med(r, "acks_per_s"));
        let stored_ok = |rows: Option<&Rows>| {
            rows.is_some_and(|rows| {
                rows.iter()
                    .all(|x| x.get("stored_matches_acks") == Some(&json!(true)))
            })
        };
        let _ = writeln!(
            md,
            "| {var} | {} | {} | {} | {} | {} | {} / {} |",
            cell(l, "acks_per_s", "int"),
            cell(r, "acks_per_s", "int"),
            fmt_ratio(rt),
            cell(l, "p99_ms", "ms"),
            cell(r, "p99_ms", "ms"),
            if stored_ok(l) { "yes" } else { "NO" },
            if stored_ok(r) { "yes" } else { "NO" },
        );
        for (sys, rows) in [("livefeed", l), ("redis", r)] {
            match rows {
                None => problems.push(format!("publish P={var}: no result for {sys}")),
                Some(rows) => {
                    if !stored_ok(Some(rows)) {
                        problems.push(format!(
                            "publish P={var}: {sys} stored a different number of events than it acknowledged"
                        ));
                    }
                    if sum(rows, "acks") == 0.0 || sum(rows, "errors") > 0.0 {
                        problems.push(format!(
                            "publish P={var}: {sys} acknowledged nothing or had errors"
                        ));
                    }
                }
            }
        }
        summary.insert(format!("publish/{var}/ratio"), json!(rt));
        // Issue 13: at 16 and 64 publishers; measured (no target) at 1.
        let targeted = var.parse::<u64>().is_ok_and(|p| p >= 16);
        goals.push(Goal {
            name: format!("Durable publishing, {var} publisher(s)"),
            target: if targeted {
                "≥ 1.0× Redis `XADD` acks/s, `appendfsync always`".into()
            } else {
                "measured (no target)".into()
            },
            measured: format!(
                "{} ({} vs {} acks/s)",
                fmt_ratio(rt),
                cell(l, "acks_per_s", "int"),
                cell(r, "acks_per_s", "int")
            ),
            met: if targeted { rt.map(|r| r >= 1.0) } else { None },
        });
    }
    let _ = writeln!(md);

    // ---- Static build
    let _ = writeln!(
        md,
        "## Static build, like for like\n\nOne synthetic live page of N entries (the page \
         `cargo bench --bench build` uses); both sides write the RSS and the Atom feed of that \
         one story, every entry in one file, to disk, as a whole process. livefeed: \
         `livefeed build --feed-entries N --only feeds/big.rss --only feeds/big.atom`: it reads \
         and normalises the report text itself (timed) and renders only those two files (plus \
         its small `.livefeed-build` marker). feedgen: a Python process \
         (`bench/feedgen_build.py`) that loads the same entries already normalised \
         (`livefeed items`, JSON lines, made beforehand and not timed) and writes RSS and Atom \
         with feedgen. So livefeed does a little more (parsing the report). Peak memory is the \
         process's max RSS.\n"
    );
    let _ = writeln!(
        md,
        "| entries | livefeed s | feedgen s | speed-up | livefeed peak MiB | feedgen peak MiB |\n|---|---|---|---|---|---|"
    );
    let bvars = variants("build");
    for var in &bvars {
        let (l, f) = (get("build", var, "livefeed"), get("build", var, "feedgen"));
        let r = ratio(med(f, "seconds"), med(l, "seconds"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            thousands(var.parse().unwrap_or(0.0)),
            cell(l, "seconds", "s"),
            cell(f, "seconds", "s"),
            fmt_ratio(r),
            cell(l, "peak_rss_kib", "mib"),
            cell(f, "peak_rss_kib", "mib"),
        );
        for (sys, rows) in [("livefeed", l), ("feedgen", f)] {
            if rows.is_none() {
                problems.push(format!("build {var}: no result for {sys}"));
            }
        }
        summary.insert(format!("build/{var}/speedup"), json!(r));
        let (lm, fm) = (med(l, "peak_rss_kib"), med(f, "peak_rss_kib"));
        goals.push(Goal {
            name: format!(
                "Static build like for like, {} entries",
                thousands(var.parse().unwrap_or(0.0))
            ),
            target: "≥ 20× feedgen, peak memory ≤ feedgen's".into(),
            measured: format!(
                "{}, {} vs {} MiB",
                fmt_ratio(r),
                lm.map_or("—".into(), |x| fmt_val(x, "mib")),
                fm.map_or("—".into(), |x| fmt_val(x, "mib"))
            ),
            met: match (r, lm, fm) {
                (Some(r), Some(a), Some(b)) => Some(r >= 20.0 && a <= b),
                _ => None,
            },
        });
    }
    let _ = writeln!(md);

    // ---- Restart
    let _ = writeln!(
        md,
        "## Restart\n\nStart-up of the relay over a log of N events (`benches/startup.rs`, run \
         by `bench/run` in the same build profile): the events are creates until each story \
         holds 2,000 entries, then edits, deletes and creates, so the stories stay the size of \
         a long live page while the log grows. Each start is a process of its own; its peak \
         memory is its own max RSS. \"full replay\" starts without a snapshot (how every start \
         worked before snapshots); \"snapshot + tail\" starts from a snapshot 9,999 events \
         behind the head (a tenth of a small log), the most a server that snapshots every \
         10,000 events leaves behind, and reads only the log after it (\"events read\").\n"
    );
    let _ = writeln!(
        md,
        "| events | log MB | full replay s | full replay peak MiB | snapshot + tail s | snapshot + tail peak MiB | events read |\n|---|---|---|---|---|---|---|"
    );
    let rvars = variants("restart");
    for var in &rvars {
        let l = get("restart", var, "livefeed");
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            thousands(var.parse().unwrap_or(0.0)),
            cell(l, "log_mb", "kib"),
            cell(l, "full_replay_s", "s"),
            cell(l, "full_replay_rss_kib", "mib"),
            cell(l, "seconds", "s"),
            cell(l, "peak_rss_kib", "mib"),
            cell(l, "events_read", "int"),
        );
        if l.is_none() {
            problems.push(format!("restart {var}: no result"));
        }
        summary.insert(format!("restart/{var}/seconds"), json!(med(l, "seconds")));
    }
    if let Some(top) = rvars.last() {
        let secs = med(get("restart", top, "livefeed"), "seconds");
        goals.push(Goal {
            name: format!(
                "Restart with {} events in the log",
                thousands(top.parse().unwrap_or(0.0))
            ),
            target: "start-up ≤ 1 s (snapshot + tail)".into(),
            measured: format!(
                "{} s (full replay {} s)",
                secs.map_or("—".into(), |x| fmt_val(x, "s")),
                med(get("restart", top, "livefeed"), "full_replay_s")
                    .map_or("—".into(), |x| fmt_val(x, "s"))
            ),
            met: secs.map(|x| x <= 1.0),
        });
    } else {
        problems.push("restart: no result".into());
    }
    let _ = writeln!(md);

    // ---- Redis engine: publishing
    let _ = writeln!(
        md,
        "## Redis engine: publishing\n\nOne `redis-server` (`appendonly yes`, `appendfsync \
         always`, a fresh one for every measurement, on a free port). \"1 node\" / \"3 nodes\": \
         `livefeed serve --store redis://…`, P publishers as in *Durable publishing*, spread \
         over the nodes in turn; a publish is acknowledged after Redis acknowledged the append. \
         \"embedded\": the default file log, from *Durable publishing* at the same P. \
         \"redis-benchmark\": `redis-benchmark -c P -n … XADD key * entry <the same JSON \
         entry>` on the same kind of Redis: what the engine alone does. \"stored\" checks that \
         the log (or stream) grew by exactly the acknowledged count. A publish answered `503` (a \
         batch that lost the append race to another node too often) is sent again, as a \
         publisher honouring `Retry-After` would; those are counted, summed over rounds.\n"
    );
    let _ = writeln!(
        md,
        "| publishers | 1 node acks/s | 3 nodes acks/s | embedded acks/s | redis-benchmark XADD acks/s | 1 node / redis-benchmark | 3 nodes / redis-benchmark | p99 ms (1 node / 3 nodes / redis-benchmark) | 503s sent again (1 node / 3 nodes) | stored = acked |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    let rpvars = variants("redis_publish");
    for var in &rpvars {
        let (one, three, rb) = (
            get("redis_publish", var, "nodes-1"),
            get("redis_publish", var, "nodes-3"),
            get("redis_publish", var, "redis-benchmark"),
        );
        let embedded = get("publish", var, "livefeed");
        let (r1, r3) = (
            ratio(med(one, "acks_per_s"), med(rb, "acks_per_s")),
            ratio(med(three, "acks_per_s"), med(rb, "acks_per_s")),
        );
        let stored_ok = |rows: Option<&Rows>| {
            rows.is_some_and(|rows| {
                rows.iter()
                    .all(|x| x.get("stored_matches_acks") == Some(&json!(true)))
            })
        };
        let _ = writeln!(
            md,
            "| {var} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {:.0} / {:.0} | {} |",
            cell(one, "acks_per_s", "int"),
            cell(three, "acks_per_s", "int"),
            cell(embedded, "acks_per_s", "int"),
            cell(rb, "acks_per_s", "int"),
            fmt_ratio(r1),
            fmt_ratio(r3),
            cell(one, "p99_ms", "ms"),
            cell(three, "p99_ms", "ms"),
            cell(rb, "p99_ms", "ms"),
            one.map_or(0.0, |r| sum(r, "refused_503")),
            three.map_or(0.0, |r| sum(r, "refused_503")),
            if [one, three, rb].into_iter().all(stored_ok) {
                "yes"
            } else {
                "NO"
            },
        );
        for (sys, rows) in [("1 node", one), ("3 nodes", three), ("redis-benchmark", rb)] {
            match rows {
                None => problems.push(format!("Redis publish P={var}: no result for {sys}")),
                Some(rows) => {
                    if !stored_ok(Some(rows)) {
                        problems.push(format!(
                            "Redis publish P={var}: {sys} stored a different number of events than it acknowledged"
                        ));
                    }
                    if sum(rows, "acks") == 0.0 || sum(rows, "errors") > 0.0 {
                        problems.push(format!(
                            "Redis publish P={var}: {sys} acknowledged nothing or had errors"
                        ));
                    }
                }
            }
        }
        for (nodes, r) in [("1 node", r1), ("3 nodes", r3)] {
            goals.push(Goal {
                name: format!("Redis engine, {nodes}: publish acks/s, {var} publishers"),
                target: "≥ 0.5× `redis-benchmark` `XADD` on the same Redis".into(),
                measured: fmt_ratio(r),
                met: r.map(|r| r >= 0.5),
            });
        }
        summary.insert(
            format!("redis_publish/{var}/ratio"),
            json!({ "nodes-1": r1, "nodes-3": r3 }),
        );
    }
    if rpvars.is_empty() {
        problems.push("Redis publish: no result".into());
    }
    let _ = writeln!(md);

    // ---- Redis engine: fan-out
    for (sc, title) in [("redis_longpoll", "long-poll"), ("redis_sse", "SSE")] {
        let _ = writeln!(
            md,
            "## Redis engine: {title} fan-out, 1 node against 3\n\nThe same total of N \
             subscribers, on one node or spread over three in turn (all on one `redis-server`, \
             `appendfsync always`); the publishes go through the first node, and reach the \
             others through Redis (`XREAD BLOCK`). Publishes, latency and memory as in the \
             fan-out tables above; memory is the nodes' PSS together.\n"
        );
        let _ = writeln!(
            md,
            "| N | nodes | p50 ms | p99 ms | max ms | reach all p99 ms | lost / dup / out of order | KiB per subscriber (all nodes) | server CPU s |\n|---|---|---|---|---|---|---|---|---|"
        );
        let vars = variants(sc);
        for var in &vars {
            for (sys, nodes) in [("nodes-1", 1), ("nodes-3", 3)] {
                let Some(r) = get(sc, var, sys) else {
                    problems.push(format!("{sc} N={var}: no result for {nodes} node(s)"));
                    continue;
                };
                let rows = Some(r);
                let (lost, dup, ooo, foreign) = (
                    sum(r, "lost"),
                    sum(r, "duplicated"),
                    sum(r, "out_of_order"),
                    sum(r, "foreign"),
                );
                let _ = writeln!(
                    md,
                    "| {} | {nodes} | {} | {} | {} | {} | {lost:.0} / {dup:.0} / {ooo:.0} | {} | {} |",
                    thousands(var.parse::<f64>().unwrap_or(0.0)),
                    cell(rows, "p50_ms", "ms"),
                    cell(rows, "p99_ms", "ms"),
                    cell(rows, "max_ms", "ms"),
                    cell(rows, "all_p99_ms", "ms"),
                    cell(rows, "mem_per_subscriber_kib", "kib"),
                    cell(rows, "server_cpu_s", "s"),
                );
                if r.iter().any(|x| x.get("ready") != Some(&json!(true))) {
                    problems.push(format!(
                        "{sc} N={var}: {nodes} node(s) did not hold every subscriber before publishing"
                    ));
                }
                if lost + dup + ooo + foreign > 0.0 {
                    problems.push(format!(
                        "{sc} N={var}, {nodes} node(s): lost {lost}, duplicated {dup}, reordered {ooo}, foreign {foreign}"
                    ));
                }
            }
        }
        if let Some(top) = vars.last() {
            let (one, three) = (get(sc, top, "nodes-1"), get(sc, top, "nodes-3"));
            let (p1, p3) = (med(one, "p99_ms"), med(three, "p99_ms"));
            let bad = [one, three]
                .into_iter()
                .flatten()
                .map(|r| sum(r, "lost") + sum(r, "duplicated") + sum(r, "out_of_order"))
                .sum::<f64>();
            let r = ratio(p3, p1);
            goals.push(Goal {
                name: format!(
                    "Redis engine, {title} fan-out to {}: 3 nodes against 1",
                    thousands(top.parse().unwrap_or(0.0))
                ),
                target: "3 nodes' p99 ≤ 1.5× one node's, 0 lost".into(),
                measured: format!(
                    "{} ({} vs {} ms), {bad:.0} lost/dup/out of order",
                    fmt_ratio(r),
                    p3.map_or("—".into(), |x| fmt_val(x, "ms")),
                    p1.map_or("—".into(), |x| fmt_val(x, "ms"))
                ),
                met: r.map(|r| r <= 1.5 && bad == 0.0),
            });
            summary.insert(format!("{sc}/{top}/p99_ratio_3_to_1"), json!(r));
        } else {
            problems.push(format!("{sc}: no result"));
        }
        let _ = writeln!(md);
    }

    // ---- Goals first: build the final document with them on top.
    let mut head = String::new();
    let _ = writeln!(head, "## Goals\n");
    if quick {
        let _ = writeln!(
            head,
            "*Quick run: tiny sizes and one short round; the marks below say nothing about \
             performance. Run `bench/run` for the real numbers.*\n"
        );
    }
    let _ = writeln!(
        head,
        "| goal | target | measured | | what limits it |\n|---|---|---|---|---|"
    );
    for g in &goals {
        let _ = writeln!(
            head,
            "| {} | {} | {} | {} | {} |",
            g.name,
            g.target,
            g.measured,
            mark(g.met),
            if g.met == Some(false) {
                "see *What limits the goals not met* below"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(head);
    let split = md.find("## Machine").unwrap_or(0);
    md.insert_str(split, &head);
    if let Some(text) = args
        .notes
        .as_ref()
        .and_then(|n| std::fs::read_to_string(n).ok())
    {
        md.push_str(&text);
        if !text.ends_with('\n') {
            md.push('\n');
        }
    }
    if !problems.is_empty() {
        let _ = writeln!(md, "## Harness problems in this run\n");
        for p in &problems {
            let _ = writeln!(md, "- {p}");
        }
    }
    std::fs::write(&args.md, &md).with_context(|| format!("cannot write {}", args.md.display()))?;
    let goals_json: Vec<Value> = goals
        .iter()
        .map(
            |g| json!({ "goal": g.name, "target": g.target, "measured": g.measured, "met": g.met }),
        )
        .collect();
    let out = json!({
        "machine": machine,
        "goals": goals_json,
        "summary": summary,
        "health_problems": problems,
        "results": lines,
    });
    std::fs::write(&args.json, serde_json::to_string_pretty(&out)? + "\n")
        .with_context(|| format!("cannot write {}", args.json.display()))?;
    for g in &goals {
        eprintln!("goal: {:<45} {:<40} {}", g.name, g.measured, mark(g.met));
    }
    if problems.is_empty() {
        eprintln!("harness health: ok ({} results)", lines.len());
        Ok(0)
    } else {
        for p in &problems {
            eprintln!("harness problem: {p}");
        }
        Ok(1)
    }
}
