//! `loadgen`: the measuring half of `bench/run`. Each subcommand runs one measurement and prints
//! one JSON object on stdout (with the `--tag key=value` pairs it was given); `report` turns the
//! collected lines into BENCHMARKS.md and bench/results.json.

mod fanout;
mod procstat;
mod publish;
mod report;
mod stats;
mod synth;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Load generator for livefeed's side-by-side benchmarks (bench/run)")]
struct Cli {
    /// `key=value` added to the JSON result (scenario, round, …).
    #[arg(long = "tag", global = true)]
    tags: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Long-poll or SSE fan-out: N waiting subscribers, E publishes at a steady rate.
    Fanout(fanout::FanoutArgs),
    /// Durable publishing: P concurrent publishers for a fixed time.
    Publish(publish::PublishArgs),
    /// Runs wrk (with bench/wrk.lua) and reports its numbers as JSON.
    Wrk(WrkArgs),
    /// Runs a command; reports wall time and peak memory (max RSS of the child).
    Exec(ExecArgs),
    /// Runs `redis-benchmark … XADD` (the engine alone, what livefeed's Redis store sits on)
    /// and reports its numbers as JSON, with the stream's growth checked.
    RedisBenchmark(RedisBenchArgs),
    /// One HTTP request: waits for a server, checks a status, prints a header or compares a body.
    Probe(ProbeArgs),
    /// Writes a synthetic data directory of one live page with N entries.
    Synth(synth::SynthArgs),
    /// Aggregates result lines into BENCHMARKS.md and results.json.
    Report(report::ReportArgs),
}

#[derive(Args)]
struct WrkArgs {
    /// The wrk command line (include `-s bench/wrk.lua`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct ExecArgs {
    /// Where the command's stdout goes (default: discarded).
    #[arg(long)]
    stdout: Option<PathBuf>,
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct RedisBenchArgs {
    #[arg(long)]
    addr: std::net::SocketAddr,
    /// Clients at once (`redis-benchmark -c`), as publishers.
    #[arg(long)]
    publishers: usize,
    /// XADDs in all (`redis-benchmark -n`).
    #[arg(long)]
    requests: u64,
    #[arg(long, default_value = "bench-xadd")]
    stream: String,
    /// Characters of body text in the entry (the JSON `publish` sends).
    #[arg(long, default_value_t = 300)]
    payload: usize,
}

#[derive(Args)]
struct ProbeArgs {
    /// `http://HOST:PORT/PATH`
    #[arg(long)]
    url: String,
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Keep trying to connect for this long.
    #[arg(long, default_value_t = 0.0)]
    wait_secs: f64,
    #[arg(long)]
    expect_status: Option<u16>,
    /// Print this response header's value (raw, not JSON) and nothing else.
    #[arg(long)]
    print_header: Option<String>,
    /// Fail unless the response body equals this file.
    #[arg(long)]
    body_equals: Option<PathBuf>,
}

fn tags(list: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for t in list {
        let (k, v) = t
            .split_once('=')
            .with_context(|| format!("--tag {t:?}: expected key=value"))?;
        let value = match v.parse::<f64>() {
            Ok(n) if v.parse::<i64>().is_ok() => json!(n as i64),
            Ok(n) => json!(n),
            Err(_) => json!(v),
        };
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

fn emit(tags: Map<String, Value>, result: Map<String, Value>) {
    let mut all = tags;
    all.extend(result);
    println!("{}", Value::Object(all));
}

fn run_wrk(args: &WrkArgs) -> Result<Map<String, Value>> {
    let out = std::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .output()
        .with_context(|| format!("cannot run {}", args.command[0]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed: {}\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("WRKJSON "))
        .with_context(|| {
            format!("no WRKJSON line in wrk's output (is -s bench/wrk.lua given?)\n{text}")
        })?;
    let w: Value = serde_json::from_str(line)?;
    let f = |k: &str| w[k].as_f64().unwrap_or(0.0);
    let secs = f("duration_us") / 1e6;
    let mut m = Map::new();
    m.insert("requests".into(), json!(f("requests") as u64));
    m.insert(
        "requests_per_s".into(),
        json!(fanout::round3(f("requests") / secs.max(1e-9))),
    );
    m.insert("p50_ms".into(), json!(f("p50_us") / 1000.0));
    m.insert("p99_ms".into(), json!(f("p99_us") / 1000.0));
    m.insert("max_ms".into(), json!(f("max_us") / 1000.0));
    m.insert(
        "bytes_per_response".into(),
        json!((f("bytes") / f("requests").max(1.0)).round()),
    );
    let errors = f("errors_connect") + f("errors_read") + f("errors_write") + f("errors_timeout");
    m.insert("socket_errors".into(), json!(errors as u64));
    m.insert("bad_status".into(), json!(f("errors_status") as u64));
    Ok(m)
}

/// `redis-benchmark` has no XADD test of its own: it is given the command, with the same entry
/// `publish` sends, and `-c` clients for the publishers.
async fn run_redis_benchmark(args: &RedisBenchArgs) -> Result<Map<String, Value>> {
    let before = publish::xlen(args.addr, &args.stream).await?;
    let entry = publish::entry_json(0, 0, args.payload);
    let out = std::process::Command::new("redis-benchmark")
        .args(["-h", &args.addr.ip().to_string()])
        .args(["-p", &args.addr.port().to_string()])
        .args(["-c", &args.publishers.to_string()])
        .args(["-n", &args.requests.to_string()])
        .args(["--csv", "XADD", &args.stream, "*", "entry", &entry])
        .output()
        .context("cannot run redis-benchmark (Debian package redis-tools)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "redis-benchmark failed: {}\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // `"test","rps","avg_latency_ms",…` then one row.
    let rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| l.starts_with('"'))
        .map(|l| {
            l.split(',')
                .map(|f| f.trim_matches('"').to_string())
                .collect()
        })
        .collect();
    let (header, row) = match rows.as_slice() {
        [h, r, ..] if h.first().is_some_and(|f| f == "test") => (h, r),
        _ => bail!("no CSV header and row in redis-benchmark's output:\n{text}"),
    };
    // The test's name (the command line, commas and quotes in it) is the first column: the
    // numbers are counted from the end.
    let field = |name: &str| -> Result<f64> {
        let i = header
            .iter()
            .position(|h| h == name)
            .filter(|&i| i > 0)
            .with_context(|| format!("no {name} column in redis-benchmark's output:\n{text}"))?;
        (row.len() + i)
            .checked_sub(header.len())
            .and_then(|at| row.get(at))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} is not a number in:\n{text}"))
    };
    let after = publish::xlen(args.addr, &args.stream).await?;
    let mut m = Map::new();
    m.insert("target".into(), json!("redis-benchmark"));
    m.insert("publishers".into(), json!(args.publishers));
    m.insert("acks".into(), json!(args.requests));
    m.insert("acks_per_s".into(), json!(field("rps")?));
    m.insert("p50_ms".into(), json!(field("p50_latency_ms")?));
    m.insert("p99_ms".into(), json!(field("p99_latency_ms")?));
    m.insert("max_ms".into(), json!(field("max_latency_ms")?));
    m.insert("errors".into(), json!(0));
    m.insert("stored".into(), json!(after.saturating_sub(before)));
    m.insert(
        "stored_matches_acks".into(),
        json!(after.saturating_sub(before) == args.requests),
    );
    Ok(m)
}

fn run_exec(args: &ExecArgs) -> Result<Map<String, Value>> {
    let stdout = match &args.stdout {
        Some(p) => std::process::Stdio::from(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => std::process::Stdio::null(),
    };
    let start = Instant::now();
    let status = std::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .stdout(stdout)
        .status()
        .with_context(|| format!("cannot run {}", args.command[0]))?;
    let wall = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{:?} failed: {status}", args.command);
    }
    // SAFETY: getrusage fills a local struct.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    };
    let cpu = usage.ru_utime.tv_sec as f64
        + usage.ru_utime.tv_usec as f64 / 1e6
        + usage.ru_stime.tv_sec as f64
        + usage.ru_stime.tv_usec as f64 / 1e6;
    let mut m = Map::new();
    m.insert("seconds".into(), json!(fanout::round3(wall)));
    m.insert("cpu_s".into(), json!(fanout::round3(cpu)));
    m.insert("peak_rss_kib".into(), json!(usage.ru_maxrss));
    Ok(m)
}

async fn run_probe(args: &ProbeArgs) -> Result<Option<Map<String, Value>>> {
    let rest = args
        .url
        .strip_prefix("http://")
        .context("--url must start with http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: std::net::SocketAddr = hostport.parse().context("--url needs IP:PORT")?;
    let deadline = Instant::now() + std::time::Duration::from_secs_f64(args.wait_secs);
    let mut conn = loop {
        match h1client::Conn::connect(addr).await {
            Ok(c) => break c,
            Err(e) if Instant::now() >= deadline => bail!("{}: {e}", args.url),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n");
    for h in &args.headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let res = conn.roundtrip(req.as_bytes()).await?;
    if let Some(want) = args.expect_status.filter(|w| *w != res.head.status) {
        bail!(
            "{}: status {} where {want} was expected",
            args.url,
            res.head.status
        );
    }
    if let Some(file) = &args.body_equals {
        let want = std::fs::read(file).with_context(|| format!("{}", file.display()))?;
        if want != res.body {
            bail!(
                "{}: body ({} bytes) differs from {} ({} bytes)",
                args.url,
                res.body.len(),
                file.display(),
                want.len()
            );
        }
    }
    if let Some(name) = &args.print_header {
        println!("{}", res.head.header(name).unwrap_or(""));
        return Ok(None);
    }
    let mut m = Map::new();
    m.insert("status".into(), json!(res.head.status));
    m.insert("body_bytes".into(), json!(res.body.len()));
    Ok(Some(m))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let tags = tags(&cli.tags)?;
    let nofile = procstat::raise_nofile(1 << 20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Fanout(a) => {
            if a.subscribers + 64 > nofile as usize {
                bail!(
                    "{} subscribers need more descriptors than RLIMIT_NOFILE allows ({nofile}); raise the hard limit (ulimit -Hn) first",
                    a.subscribers
                );
            }
            let mut r = runtime.block_on(fanout::run(a))?;
            r.insert("loadgen_nofile".into(), json!(nofile));
            emit(tags, r);
        }
        Command::Publish(a) => emit(tags, runtime.block_on(publish::run(a))?),
        Command::Wrk(a) => emit(tags, run_wrk(&a)?),
        Command::Exec(a) => emit(tags, run_exec(&a)?),
        Command::RedisBenchmark(a) => emit(tags, runtime.block_on(run_redis_benchmark(&a))?),
        Command::Probe(a) => {
            if let Some(r) = runtime.block_on(run_probe(&a))? {
                emit(tags, r);
            }
        }
        Command::Synth(a) => synth::write(&a)?,
        Command::Report(a) => std::process::exit(report::run(&a)?),
    }
    Ok(())
}
