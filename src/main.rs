//! The `livefeed` command: a thin layer over the library that checks its input up front and
//! reports errors once, at the top.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use livefeed::build;
use livefeed::ingest::site::Site;
use livefeed::render;

#[derive(Parser)]
#[command(
    name = "livefeed",
    version,
    about = "News live-update reports to RSS, Atom and JSON feeds, relayed live",
    after_help = "ENVIRONMENT:\n  \
        RUST_LOG        Log filter (default: info), e.g. RUST_LOG=livefeed=debug\n  \
        LIVEFEED_TOKEN  The publish token itself, for `serve` (see --token-file)\n  \
        Every flag of an operator's unit file also has a LIVEFEED_* form: see each command's --help.\n\n\
        EXAMPLES:\n  \
        livefeed build --data data --out feeds\n  \
        livefeed build --check\n  \
        LIVEFEED_TOKEN=$(cat token) livefeed serve --listen localhost:8080\n  \
        livefeed items --story my-story | jq .title\n  \
        livefeed log check --data /var/lib/livefeed"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const BUILD_EXAMPLES: &str = "EXAMPLES:\n  \
    livefeed build                                  # data/ -> feeds/\n  \
    livefeed build --data data --out public/feeds --base-url https://news.example.org\n  \
    livefeed build --check                          # in CI: exit 1 if feeds/ is stale";

const SERVE_EXAMPLES: &str = "ENVIRONMENT:\n  \
    LIVEFEED_TOKEN  The publish token itself (at least 16 visible ASCII characters), read at\n                  \
    start when --token-file is not given. Without either, publishing is off.\n  \
    RUST_LOG        Log filter (default: info).\n\n\
    SIGNALS:\n  \
    SIGHUP          Re-read data/stories.toml (stories added or removed) and the token file.\n  \
    SIGTERM, ^C     Stop gracefully: answer waiting requests, flush the event log.\n\n\
    EXAMPLES:\n  \
    LIVEFEED_TOKEN=$(cat token) livefeed serve\n  \
    livefeed serve --data /var/lib/livefeed --listen 0.0.0.0:8080 \\\n      \
    --base-url https://news.example.org --token-file /run/credentials/livefeed.service/token\n  \
    LIVEFEED_DATA=/srv/data LIVEFEED_LISTEN=localhost:9000 livefeed serve";

const ITEMS_EXAMPLES: &str = "EXAMPLES:\n  \
    livefeed items | jq -r .title\n  \
    livefeed items --story my-story\n  \
    livefeed items page-1.txt page-2.txt --base-url https://news.example.org";

const LOG_EXAMPLES: &str = "EXAMPLES:\n  \
    livefeed log check --data /var/lib/livefeed\n  \
    livefeed log repair --log-dir /var/lib/livefeed/log   # with the server stopped";

/// `--base-url`: an absolute http(s) URL with a host, no query or fragment; kept without a
/// trailing slash.
fn base_url(s: &str) -> Result<String, String> {
    livefeed::ingest::manifest::check_base_url(s).map_err(|why| {
        format!("{why}; expected an absolute http(s) URL like https://news.example.org")
    })?;
    Ok(s.trim_end_matches('/').to_string())
}

/// An absolute http(s) URL (`--websub-hub`), kept as given.
fn absolute_url(s: &str) -> Result<String, String> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(s.to_string()),
        _ => Err("expected an absolute http(s) URL like https://news.example.org/websub".into()),
    }
}

/// `--websub`: `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// `--listen`: `HOST:PORT`, the host a name or an address (resolved at start).
fn listen_addr(s: &str) -> Result<String, String> {
    let expected = "expected HOST:PORT, like 127.0.0.1:8080, [::1]:8080 or localhost:8080";
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(s.to_string());
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("no port; {expected}"));
    };
    if host.is_empty() || host.contains([':', '/', ' ']) {
        return Err(format!("{host:?} is not a host name; {expected}"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("{port:?} is not a port number (0 to 65535); {expected}"))?;
    Ok(s.to_string())
}

#[derive(Subcommand)]
enum Command {
    /// Write the static feeds (and index.html) for every story, the same bytes every run.
    #[command(after_help = BUILD_EXAMPLES)]
    Build {
        /// The data directory: stories.toml and the report files.
        #[arg(
            long,
            value_name = "DIR",
            env = "LIVEFEED_DATA",
            default_value = "data"
        )]
        data: PathBuf,
        /// The output directory. A build replaces it whole, so it must be new, empty, or one
        /// an earlier build wrote (marked by `.livefeed-build`); never the data directory, a
        /// directory containing it, or the current directory.
        #[arg(
            long,
            value_name = "DIR",
            env = "LIVEFEED_OUT",
            default_value = "feeds"
        )]
        out: PathBuf,
        /// The public address the feeds are published under, an absolute http(s) URL
        /// [default: the manifest's site.base_url].
        #[arg(long, value_name = "URL", env = "LIVEFEED_BASE_URL", value_parser = base_url)]
        base_url: Option<String>,
        /// Write nothing; exit 1, name the stale files and print the command that rebuilds
        /// them if the output differs from the data.
        #[arg(long)]
        check: bool,
        /// The event log to include, read only (default: DATA/log, when it has one).
        #[arg(long)]
        log_dir: Option<PathBuf>,
        /// Entries a current feed carries at least (fewer than twice as many); older ones are
        /// in RFC 5005 archive feeds, `feeds/{slug}/archive/{k}.{ext}`.
        #[arg(long, value_name = "N", env = "LIVEFEED_FEED_ENTRIES",
              default_value_t = livefeed::render::DEFAULT_FEED_ENTRIES as u64,
              value_parser = clap::value_parser!(u64).range(1..))]
        feed_entries: u64,
        /// A WebSub hub for the current feeds to advertise (`rel="hub"`, JSON Feed `hubs`),
        /// such as the `/websub` of the `livefeed serve` behind --base-url [default: none].
        #[arg(long, value_name = "URL", env = "LIVEFEED_WEBSUB_HUB", value_parser = absolute_url)]
        websub_hub: Option<String>,
        /// Write only this file of the build, a path under --out such as `feeds/{slug}.rss`
        /// (repeat for more); the others are not rendered [default: every file].
        #[arg(long, value_name = "FILE", conflicts_with = "check")]
        only: Vec<String>,
    },
    /// Serve the feeds and relay live updates (long-poll, SSE, publishing).
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(Box<ServeArgs>),
    /// Look at the event log (`check`) or cut it at its damage after saving a copy (`repair`).
    #[command(after_help = LOG_EXAMPLES)]
    Log {
        #[command(subcommand)]
        action: LogAction,
    },
    /// Print normalised items as JSON lines. Given report FILEs, read them with no manifest.
    #[command(after_help = ITEMS_EXAMPLES)]
    Items {
        /// The data directory: stories.toml and the report files (unused with FILEs).
        #[arg(
            long,
            value_name = "DIR",
            env = "LIVEFEED_DATA",
            default_value = "data"
        )]
        data: PathBuf,
        /// Only this story (its slug in stories.toml).
        #[arg(long, value_name = "SLUG")]
        story: Option<String>,
        /// The public address entries' links are made under, an absolute http(s) URL
        /// [default: the manifest's site.base_url; with FILEs, http://127.0.0.1:8080].
        #[arg(long, value_name = "URL", env = "LIVEFEED_BASE_URL", value_parser = base_url)]
        base_url: Option<String>,
        /// Report files to normalise directly, without a manifest.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum LogAction {
    /// Report the records, the head seq and any damage (kind, byte offset, intact records
    /// after it). Changes nothing. Exit 1 when the log is damaged, a torn tail included.
    #[command(after_help = LOG_EXAMPLES)]
    Check(LogArgs),
    /// Save the log aside as events.log.damaged-<offset> (never replacing a copy), then cut it
    /// at its first damage; print what was dropped. Refused while a server holds the log.
    #[command(after_help = LOG_EXAMPLES)]
    Repair(LogArgs),
}

#[derive(clap::Args)]
struct LogArgs {
    /// The data directory (the log is DATA/log/events.log).
    #[arg(
        long,
        value_name = "DIR",
        env = "LIVEFEED_DATA",
        default_value = "data"
    )]
    data: PathBuf,
    /// Where the event log lives, as given to `serve` [default: DATA/log].
    #[arg(long, value_name = "DIR", env = "LIVEFEED_LOG_DIR")]
    log_dir: Option<PathBuf>,
}

impl LogArgs {
    fn dir(&self) -> PathBuf {
        self.log_dir
            .clone()
            .unwrap_or_else(|| self.data.join("log"))
    }
}

/// `livefeed log check|repair`.
fn log_command(action: LogAction) -> Result<ExitCode> {
    use livefeed::log::store::{self, Found, Scan};
    let describe = |scan: &Scan| {
        println!(
            "records: {} intact, head seq {}",
            scan.events.len(),
            scan.head()
        );
    };
    let after = |f: &Found| match f.seqs_after {
        Some((a, b)) => format!(
            "{} intact records follow it (seq {a} to {b}, from byte {})",
            f.intact_after,
            f.next_intact.unwrap_or(f.offset)
        ),
        None => "nothing intact follows it: a torn tail".to_string(),
    };
    match action {
        LogAction::Check(args) => {
            let dir = args.dir();
            let scan = store::inspect(&dir)?;
            // The segment appended to: the only one a torn write can be in.
            println!(
                "log: {} ({} bytes)",
                store::last_segment(&dir)?.1.display(),
                scan.len
            );
            describe(&scan);
            let Some(found) = &scan.damage else {
                println!("damage: none");
                return Ok(ExitCode::SUCCESS);
            };
            println!(
                "damage: {:?} at byte {}; {}",
                found.kind,
                found.offset,
                after(found)
            );
            if found.torn_tail() {
                println!(
                    "`livefeed serve` cuts a torn tail at start ({} bytes)",
                    scan.len - found.offset
                );
            } else {
                println!(
                    "`livefeed serve` refuses this log. `livefeed log repair --log-dir {}` saves \
                     it aside and cuts it at byte {}, dropping the damaged bytes and the {} \
                     records after them",
                    dir.display(),
                    found.offset,
                    found.intact_after
                );
            }
            Ok(ExitCode::FAILURE)
        }
        LogAction::Repair(args) => {
            let dir = args.dir();
            let done = store::repair(&dir)?;
            let scan = &done.scan;
            let (Some(found), Some(copy)) = (&scan.damage, &done.saved_copy) else {
                describe(scan);
                println!("damage: none; nothing to repair");
                return Ok(ExitCode::SUCCESS);
            };
            println!("saved the original as {}", copy.display());
            let head = scan.head();
            let dropped = match found.seqs_after {
                // The seqs between the kept head and the first intact record were in the
                // damaged bytes.
                Some((a, b)) if a > head + 1 => format!(
                    "the damaged record(s) (seq {} to {}) and {} intact records (seq {a} to {b})",
                    head + 1,
                    a - 1,
                    found.intact_after
                ),
                Some((a, b)) => format!("{} intact records (seq {a} to {b})", found.intact_after),
                None => "the damaged tail, no intact record".to_string(),
            };
            println!(
                "cut at byte {} ({:?}): dropped {} bytes: {dropped}",
                found.offset,
                found.kind,
                scan.len - found.offset
            );
            describe(scan);
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The data directory: stories.toml and the report files, watched for changes.
    #[arg(
        long,
        value_name = "DIR",
        env = "LIVEFEED_DATA",
        default_value = "data"
    )]
    data: PathBuf,
    /// The address to listen on, HOST:PORT; a host name is resolved (localhost:8080 works).
    #[arg(long, value_name = "ADDR", env = "LIVEFEED_LISTEN", default_value = "127.0.0.1:8080",
          value_parser = listen_addr)]
    listen: String,
    /// The public address, an absolute http(s) URL [default: http:// and the address it
    /// listens on, so every link works on this server].
    #[arg(long, value_name = "URL", env = "LIVEFEED_BASE_URL", value_parser = base_url)]
    base_url: Option<String>,
    /// A file holding the publish token, re-read on SIGHUP [default: the token in the
    /// LIVEFEED_TOKEN environment variable; neither: publishing is off].
    #[arg(long, value_name = "FILE", env = "LIVEFEED_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Where the event log lives [default: DATA/log].
    #[arg(long, value_name = "DIR", env = "LIVEFEED_LOG_DIR")]
    log_dir: Option<PathBuf>,
    /// The event log's engine: `file:DIR` (the embedded log, the default, in --log-dir), or
    /// `redis://HOST:PORT[/DB]` for a log in Redis Streams that several nodes share (see
    /// "Running several nodes" in the README).
    #[arg(long, value_name = "URL", env = "LIVEFEED_STORE",
          value_parser = store_spec, conflicts_with = "log_dir")]
    store: Option<StoreSpec>,
    /// With a Redis store: the prefix of its keys, which share one hash tag ({PREFIX}:events,
    /// {PREFIX}:epoch, {PREFIX}:key:*), so one Redis or Redis Cluster holds several logs.
    #[arg(long, value_name = "PREFIX", env = "LIVEFEED_REDIS_PREFIX", default_value = "livefeed",
          value_parser = redis_prefix)]
    redis_prefix: String,
    /// With a Redis store: replicas that must confirm each append (WAIT; WAITAOF, their fsync,
    /// on Redis 7.2+) before it is acknowledged; 0 acknowledges once the primary has it.
    #[arg(
        long,
        value_name = "N",
        env = "LIVEFEED_REDIS_WAIT_REPLICAS",
        default_value_t = 0
    )]
    redis_wait_replicas: u32,
    /// Largest request body, in bytes.
    #[arg(long, value_name = "BYTES", env = "LIVEFEED_MAX_BODY", default_value_t = 1024 * 1024)]
    max_body: usize,
    /// Seconds a client has to send its request headers.
    #[arg(
        long,
        value_name = "SECS",
        env = "LIVEFEED_HEADER_TIMEOUT",
        default_value_t = 10
    )]
    header_timeout: u64,
    /// Open connections; beyond it, new connections get a quick 503.
    #[arg(
        long,
        value_name = "N",
        env = "LIVEFEED_MAX_CONNECTIONS",
        default_value_t = 20_000
    )]
    max_connections: usize,
    /// Waiting long-poll requests (and, separately, SSE streams); beyond it, 503.
    #[arg(
        long,
        value_name = "N",
        env = "LIVEFEED_MAX_WAITERS",
        default_value_t = 20_000
    )]
    max_waiters: usize,
    /// Serve connections on N threads, each with its own single-threaded runtime, so a request
    /// never crosses threads (0: on the shared runtime). About 10 % less CPU per feed GET, but
    /// about 50 % more memory per waiting long-poll or SSE stream; for servers that mostly
    /// serve feeds.
    #[arg(long, value_name = "N", env = "LIVEFEED_WORKERS", default_value_t = 0)]
    workers: usize,
    /// Events an SSE subscriber that is not reading may fall behind before it is dropped.
    #[arg(
        long,
        value_name = "N",
        env = "LIVEFEED_SSE_QUEUE",
        default_value_t = 1024
    )]
    sse_queue: usize,
    /// The same bound in bytes of event frames.
    #[arg(long, value_name = "BYTES", env = "LIVEFEED_SSE_QUEUE_BYTES",
          default_value_t = 4 * 1024 * 1024)]
    sse_queue_bytes: usize,
    /// Events the log retains behind its head: older ones are compacted away once a snapshot
    /// covers them (the file log deletes whole segments, Redis trims its stream), and a cursor
    /// older than what is retained gets 410 with `oldest`. Memory holds at most this many too.
    #[arg(
        long,
        value_name = "N",
        env = "LIVEFEED_KEEP_EVENTS",
        default_value_t = 1_000_000
    )]
    keep_events: usize,
    /// The embedded log rolls to a new segment file once the current one holds this many
    /// bytes; compaction deletes whole segments.
    #[arg(long, value_name = "BYTES", env = "LIVEFEED_SEGMENT_BYTES",
          default_value_t = livefeed::log::store::DEFAULT_SEGMENT_BYTES)]
    segment_bytes: u64,
    /// Bytes of events kept in memory for cursors (as SSE frames); older cursors are read
    /// back from the log.
    #[arg(long, value_name = "BYTES", env = "LIVEFEED_MEMORY_BYTES",
          default_value_t = 64 * 1024 * 1024)]
    memory_bytes: usize,
    /// Write a snapshot of the stories every N events (and when stopping), so a start reads
    /// the snapshot and the log after it instead of all history.
    #[arg(
        long,
        value_name = "N",
        env = "LIVEFEED_SNAPSHOT_EVERY",
        default_value_t = livefeed::log::snapshot::DEFAULT_EVERY
    )]
    snapshot_every: u64,
    /// Where to write the access log, one line per request (level `info`, target
    /// `livefeed::access`, so `RUST_LOG` applies): `off`, `stderr`, or a FILE to append to.
    #[arg(
        long,
        value_name = "off|stderr|FILE",
        env = "LIVEFEED_ACCESS_LOG",
        default_value = "stderr"
    )]
    access_log: AccessLog,
    /// The format of log lines (the access log included): `text`, or `json` for log shippers.
    #[arg(long, value_enum, env = "LIVEFEED_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// An origin (`https://newsroom.example`) whose pages may publish: its CORS preflights pass.
    /// Repeat for more; reads are open to every origin regardless.
    #[arg(long, value_name = "ORIGIN", env = "LIVEFEED_CORS_PUBLISH_ORIGIN", value_delimiter = ',',
          value_parser = origin)]
    cors_publish_origin: Vec<String>,
    /// Entries a current feed carries at least (fewer than twice as many); older ones are
    /// in RFC 5005 archive feeds, `feeds/{slug}/archive/{k}.{ext}`.
    #[arg(long, value_name = "N", env = "LIVEFEED_FEED_ENTRIES",
          default_value_t = livefeed::render::DEFAULT_FEED_ENTRIES as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    feed_entries: u64,
    /// The WebSub hub at /websub, advertised by every current feed (`rel="hub"` links, `Link`
    /// headers, JSON Feed `hubs`); subscriptions are kept in LOG_DIR/websub.json.
    #[arg(long, value_enum, value_name = "on|off", env = "LIVEFEED_WEBSUB", default_value_t = OnOff::On)]
    websub: OnOff,
    /// A network (CIDR, such as 10.0.0.0/8 or 127.0.0.0/8) WebSub callbacks may be in besides
    /// public addresses: loopback, private, link-local and other special addresses are refused
    /// otherwise. Repeat for more.
    #[arg(
        long,
        value_name = "CIDR",
        env = "LIVEFEED_WEBSUB_ALLOW_NETWORK",
        value_delimiter = ','
    )]
    websub_allow_network: Vec<ipnet::IpNet>,
    /// WebSub subscriptions the hub holds at most.
    #[arg(
        long,
        value_name = "N",
        env = "LIVEFEED_WEBSUB_MAX_SUBSCRIPTIONS",
        default_value_t = 10_000
    )]
    websub_max_subscriptions: usize,
    /// WebSub subscriptions whose callbacks share one host, at most.
    #[arg(
        long,
        value_name = "N",
        env = "LIVEFEED_WEBSUB_MAX_PER_HOST",
        default_value_t = 1_000
    )]
    websub_max_per_host: usize,
    /// Shortest WebSub lease granted, in seconds (shorter requests get this).
    #[arg(
        long,
        value_name = "SECS",
        env = "LIVEFEED_WEBSUB_MIN_LEASE",
        default_value_t = 300
    )]
    websub_min_lease: u64,
    /// Longest WebSub lease granted, in seconds (the default lease is 10 days, within these).
    #[arg(long, value_name = "SECS", env = "LIVEFEED_WEBSUB_MAX_LEASE", default_value_t = 30 * 86_400)]
    websub_max_lease: u64,
    /// A WebSub subscriber whose deliveries keep failing for this many seconds is dropped.
    #[arg(
        long,
        value_name = "SECS",
        env = "LIVEFEED_WEBSUB_GIVE_UP",
        default_value_t = 86_400
    )]
    websub_give_up: u64,
    /// Seconds a WebSub callback has to connect, and separately to answer a request.
    #[arg(long, value_name = "SECS", env = "LIVEFEED_WEBSUB_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    websub_timeout: u64,
}

/// Where `serve` keeps the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoreSpec {
    File(PathBuf),
    Redis(String),
}

/// A Redis URL for messages: `redis://:PASSWORD@HOST` with the password as `***`.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "the Redis URL".to_string(),
    }
}

fn store_spec(s: &str) -> Result<StoreSpec, String> {
    if let Some(dir) = s.strip_prefix("file:") {
        if dir.is_empty() {
            return Err("file: needs a directory, as in file:/var/lib/livefeed/log".into());
        }
        return Ok(StoreSpec::File(PathBuf::from(dir)));
    }
    if s.starts_with("redis://") || s.starts_with("rediss://") {
        let url = url::Url::parse(s).map_err(|e| format!("not a Redis URL: {e}"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err("expected redis://HOST:PORT[/DB]".into());
        }
        return Ok(StoreSpec::Redis(s.to_string()));
    }
    Err("expected file:DIR or redis://HOST:PORT[/DB]".into())
}

fn redis_prefix(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(['{', '}']) || s.chars().any(|c| c.is_control() || c == ' ') {
        return Err(
            "expected a non-empty prefix without braces, spaces or control characters".into(),
        );
    }
    Ok(s.to_string())
}

/// An origin as browsers send it in `Origin`: `scheme://host[:port]`, nothing after.
fn origin(s: &str) -> Result<String, String> {
    let expected =
        "expected an origin such as https://newsroom.example (scheme://host[:port], no path)";
    let uri: hyper::Uri = s.parse().map_err(|_| expected.to_string())?;
    let web = matches!(uri.scheme_str(), Some("http" | "https"));
    let bare = uri.path() == "/" && !s.ends_with('/') && uri.query().is_none();
    match uri.authority() {
        Some(a) if web && bare && !a.as_str().contains('@') => Ok(s.to_string()),
        _ => Err(expected.to_string()),
    }
}

/// `--access-log`.
#[derive(Clone, Debug)]
enum AccessLog {
    Off,
    Stderr,
    File(PathBuf),
}

impl std::str::FromStr for AccessLog {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<AccessLog, Self::Err> {
        Ok(match s {
            "off" => AccessLog::Off,
            "stderr" => AccessLog::Stderr,
            path => AccessLog::File(PathBuf::from(path)),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr at `RUST_LOG` (default `info`), as text or JSON. Access lines (target
/// `livefeed::access`, level `info`) follow `RUST_LOG` too, and go where `--access-log` says.
fn init_logging(format: LogFormat, access: &AccessLog) -> Result<()> {
    use livefeed::http::access::TARGET;
    use tracing_subscriber::filter::{LevelFilter, Targets, filter_fn};
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, Layer, Registry, fmt};
    type Boxed = Box<dyn Layer<Registry> + Send + Sync>;
    fn layer<W>(format: LogFormat, writer: W, ansi: bool) -> Boxed
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let layer = fmt::layer().with_writer(writer).with_ansi(ansi);
        match format {
            LogFormat::Text => layer.boxed(),
            LogFormat::Json => layer.json().flatten_event(true).boxed(),
        }
    }
    let ansi = format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let env = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let to_stderr = matches!(access, AccessLog::Stderr);
    let mut layers: Vec<Boxed> = vec![
        layer(format, std::io::stderr, ansi)
            .with_filter(filter_fn(move |m| to_stderr || m.target() != TARGET))
            .with_filter(env())
            .boxed(),
    ];
    if let AccessLog::File(path) = access {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("--access-log {}: {e}", path.display()))?;
        layers.push(
            layer(format, std::sync::Mutex::new(file), false)
                .with_filter(Targets::new().with_target(TARGET, LevelFilter::INFO))
                .with_filter(env())
                .boxed(),
        );
    }
    tracing_subscriber::registry().with(layers).init();
    Ok(())
}

/// The publish token: the token file's content, else `LIVEFEED_TOKEN`, trimmed; checked.
/// Errors say where the token came from and never echo it.
fn read_token(token_file: Option<&Path>) -> Result<Option<String>> {
    let (raw, from) = match token_file {
        Some(path) => (
            Some(std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!(
                    "token file {}: cannot be read (--token-file): {e}",
                    path.display()
                )
            })?),
            format!("token file {}", path.display()),
        ),
        None => (
            std::env::var("LIVEFEED_TOKEN").ok(),
            "LIVEFEED_TOKEN".to_string(),
        ),
    };
    let token = raw.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    match (&token, token_file) {
        (Some(t), _) => {
            livefeed::http::publish::check_token(t).map_err(|e| anyhow::anyhow!("{from}: {e}"))?
        }
        (None, Some(path)) => anyhow::bail!(
            "token file {}: is empty; put the publish token in it, or leave out --token-file \
             to turn publishing off",
            path.display()
        ),
        (None, None) => {}
    }
    Ok(token)
}

/// Re-reads the token file on every SIGHUP into `cell`; a file that cannot be used keeps the
/// token in force, with an error in the log.
#[cfg(unix)]
fn reload_token_on_sighup(path: PathBuf, cell: livefeed::http::SharedToken) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup =
        signal(SignalKind::hangup()).map_err(|e| anyhow::anyhow!("cannot handle SIGHUP: {e}"))?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match read_token(Some(&path)) {
                Ok(token) => {
                    let on = token.is_some();
                    *cell.write().unwrap_or_else(|p| p.into_inner()) = token;
                    tracing::info!(file = %path.display(), publishing = on, "SIGHUP: publish token re-read");
                }
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: keeping the publish token in force")
                }
            }
        }
    });
    Ok(())
}

/// Connections the kernel may queue for `accept` (it caps this at `net.core.somaxconn`). When
/// a node restarts or the network blinks, every subscriber reconnects at once; a short queue
/// drops their SYNs, which they send again only after 1 s, then 3 s. tokio's `bind` listens
/// with 1,024; the nginx peers in bench/ listen with 4,096.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` as tokio's `TcpListener::bind` does (`SO_REUSEADDR`: a restart need not wait
/// out the old sockets' TIME_WAIT; a port another process listens on is still refused), with
/// a longer accept queue ([`LISTEN_BACKLOG`]).
fn listen_on(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Resolves `--listen` and binds the first address that takes it.
async fn bind(listen: &str) -> Result<tokio::net::TcpListener> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {listen}: cannot resolve the host name: {e}"))?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match listen_on(*addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some((addr, e)),
        }
    }
    match last {
        Some((addr, e)) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "--listen {listen}: cannot listen on {addr}: the address is in use (is another \
             livefeed running?); choose another port with --listen"
        ),
        Some((addr, e)) => anyhow::bail!("--listen {listen}: cannot listen on {addr}: {e}"),
        None => anyhow::bail!("--listen {listen}: the host name resolves to no address"),
    }
}

/// The address a person opens: a wildcard bind is reached through the loopback address.
fn open_url(addr: std::net::SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}/")
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    use livefeed::http::{self, Config};
    use livefeed::log::{Relay, store};
    // Everything is checked, and the address bound, before anything is written.
    let token = read_token(args.token_file.as_deref())?;
    if !args.data.is_dir() {
        // Said before binding, so a mistyped --data is not reported as a port problem.
        Site::load(&args.data, None)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(bind(&args.listen))?;
    let addr = listener.local_addr()?;
    // With no --base-url, links point at the address actually bound (port 0 too).
    let base_url = match &args.base_url {
        Some(base) => base.clone(),
        None => http::local_base_url(addr),
    };
    let mut site = Site::load(&args.data, Some(&base_url))?;
    site.feed_entries = usize::try_from(args.feed_entries).unwrap_or(usize::MAX);
    let log_dir = args
        .log_dir
        .clone()
        .unwrap_or_else(|| args.data.join("log"));
    let websub = (args.websub == OnOff::On).then(|| {
        use std::time::Duration;
        let mut s = http::websub::Settings::new(&site.base_url, log_dir.join(http::websub::FILE));
        s.policy.allow = args.websub_allow_network.clone();
        s.max_subscriptions = args.websub_max_subscriptions;
        s.max_per_host = args.websub_max_per_host;
        s.min_lease = Duration::from_secs(args.websub_min_lease);
        s.max_lease = Duration::from_secs(args.websub_max_lease.max(args.websub_min_lease));
        s.default_lease = s.default_lease.clamp(s.min_lease, s.max_lease);
        s.give_up = Duration::from_secs(args.websub_give_up);
        s.timeout = Duration::from_secs(args.websub_timeout);
        s
    });
    site.websub_hub = websub.as_ref().map(http::websub::Settings::hub_url);
    let (store, log_shown): (Box<dyn store::Store>, String) = match &args.store {
        Some(StoreSpec::Redis(url)) => {
            // No local log, so no directory lock: several nodes may share the data directory.
            // The password never reaches a log line or an error.
            let shown = redacted(url);
            let store = livefeed::log::redis::RedisStore::new(
                url,
                &args.redis_prefix,
                args.redis_wait_replicas,
            )
            .map_err(|e| anyhow::anyhow!("--store {shown}: {e}"))?;
            (
                Box::new(store),
                format!("{shown} ({{{}}}:events)", args.redis_prefix),
            )
        }
        Some(StoreSpec::File(dir)) => (
            Box::new(store::FileStore::new(dir).segment_bytes(args.segment_bytes)),
            dir.join(store::LOG_FILE).display().to_string(),
        ),
        None => (
            Box::new(store::FileStore::new(&log_dir).segment_bytes(args.segment_bytes)),
            log_dir.join(store::LOG_FILE).display().to_string(),
        ),
    };
    let (stories, base) = (site.stories.len(), site.base_url.clone());
    let memory = livefeed::log::hub::Memory {
        events: args.keep_events,
        bytes: args.memory_bytes,
    };
    let options = livefeed::log::Options {
        memory,
        snapshot_every: args.snapshot_every,
        keep_events: Some(args.keep_events.max(1) as u64),
    };
    let relay = Relay::open_with(site, store, options).map_err(|e| match &args.store {
        // Redis unreachable at start: say which flag named it.
        Some(StoreSpec::Redis(url)) => anyhow::anyhow!("--store {}: {e}", redacted(url)),
        _ => e.into(),
    })?;
    let shared = http::SharedToken::default();
    *shared.write().unwrap_or_else(|p| p.into_inner()) = token.clone();
    let publishing = token.is_some();
    let config = Config {
        token,
        reloadable_token: Some(shared.clone()),
        max_body: args.max_body,
        header_timeout: std::time::Duration::from_secs(args.header_timeout),
        max_connections: args.max_connections,
        max_waiters: args.max_waiters,
        sse_queue: args.sse_queue.max(1),
        sse_queue_bytes: args.sse_queue_bytes.max(1),
        cors_publish_origins: args.cors_publish_origin.clone(),
        websub,
        workers: args.workers,
        ..Config::default()
    };
    runtime.block_on(async move {
        let stop = shutdown_signal()?;
        #[cfg(unix)]
        if let Some(path) = args.token_file.clone() {
            reload_token_on_sighup(path, shared)?;
        }
        if !publishing {
            tracing::info!("publishing is off: set LIVEFEED_TOKEN (or --token-file) to turn it on");
        }
        tracing::info!(
            addr = %addr,
            open = %open_url(addr),
            stories,
            data = %args.data.display(),
            log = %log_shown,
            base_url = %base,
            publishing = %if publishing { "on" } else { "off" },
            head = relay.hub.head(),
            "livefeed serving"
        );
        http::run(listener, relay, config, args.data, Some(base_url), stop).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The signals that stop the server (SIGTERM, SIGINT), registered now: the "livefeed serving"
/// line promises a server that a signal stops cleanly, so no signal may find the default
/// disposition after it. SIGHUP is taken over here too (the data watcher and the token reload
/// act on it), so it never kills the process.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        drop(signal(SignalKind::hangup())?);
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            tracing::info!("signal received");
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("signal received");
    })
}

/// jemalloc: its slabs keep their free lists outside the blocks, so the untouched parts of
/// hyper's 8 KiB connection buffers cost no resident memory. Measured side by side (release,
/// `loadgen fanout`, 2,000 waiting subscribers, KiB per subscriber): long-poll 9.2–10.4 against
/// 15.0–17.7 for the page-aligning allocator this replaces, 15.3 for glibc and 15.9–16.0 for
/// mimalloc; SSE 15.8–16.2 against 20.1–20.7, 18.2 and 18.5.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // Bad input exits 1 like every other error (clap's own default is 2); help and version 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let logging = match &cli.command {
        Command::Serve(args) => init_logging(args.log_format, &args.access_log),
        _ => init_logging(LogFormat::Text, &AccessLog::Off),
    };
    if let Err(e) = logging {
        eprintln!("livefeed: error: {e}");
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("livefeed: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `livefeed build` command line that rebuilds `out` from `data`, quoted for a POSIX shell.
fn rebuild_command(
    data: &Path,
    out: &Path,
    base_url: Option<&str>,
    websub_hub: Option<&str>,
) -> String {
    let (data, out) = (data.to_string_lossy(), out.to_string_lossy());
    let mut words = vec!["livefeed", "build", "--data", &data, "--out", &out];
    if let Some(url) = base_url {
        words.extend(["--base-url", url]);
    }
    if let Some(url) = websub_hub {
        words.extend(["--websub-hub", url]);
    }
    // A NUL cannot be in a path or an argument, so quoting cannot fail; plain words if it does.
    shlex::try_join(words.iter().copied()).unwrap_or_else(|_| words.join(" "))
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Build {
            data,
            out,
            base_url,
            check,
            log_dir,
            feed_entries,
            websub_hub,
            only,
        } => {
            let build::Input { mut site, seq, log } =
                build::load(&data, base_url.as_deref(), log_dir.as_deref())?;
            site.feed_entries = usize::try_from(feed_entries).unwrap_or(usize::MAX);
            site.websub_hub = websub_hub.clone();
            for line in log.iter().flat_map(build::LogRead::lines) {
                eprintln!("{line}");
            }
            if check {
                let staleness =
                    render::with_files_parallel(&site, seq, |files| build::check(files, &out))?;
                if staleness.is_fresh() {
                    eprintln!("{}: up to date", out.display());
                    return Ok(ExitCode::SUCCESS);
                }
                eprintln!("{}: stale:", out.display());
                // Missing, then stale, then extra files, each sorted by name.
                for line in staleness.lines(&out) {
                    eprintln!("  {line}");
                }
                eprintln!(
                    "rebuild with:\n  {}",
                    rebuild_command(&data, &out, base_url.as_deref(), websub_hub.as_deref())
                );
                return Ok(ExitCode::FAILURE);
            }
            let only: std::collections::BTreeSet<String> = only.into_iter().collect();
            let mut written = std::collections::BTreeSet::new();
            let count = render::with_some_files_parallel(
                &site,
                seq,
                |name| only.is_empty() || only.contains(name),
                |files| {
                    build::write(
                        files.inspect(|(name, _)| _ = written.insert(name.clone())),
                        &out,
                        &data,
                    )
                },
            )?;
            if let Some(missing) = only.difference(&written).next() {
                anyhow::bail!("--only {missing}: the build has no such file (e.g. feeds/all.rss)");
            }
            eprintln!("{}: wrote {count} files", out.display());
            // The process ends here: freeing every entry one by one first is a tenth of a
            // large build's time, for memory the exit returns anyway.
            std::mem::forget(site);
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve(*args),
        Command::Log { action } => log_command(action),
        Command::Items {
            data,
            story,
            base_url,
            files,
        } => {
            let site = if files.is_empty() {
                Site::load(&data, base_url.as_deref())?
            } else {
                Site::from_files(&files, base_url.as_deref().unwrap_or(DEFAULT_FILES_BASE))?
            };
            if let Some(slug) = &story {
                if site.story(slug).is_none() {
                    let known: Vec<&str> = site.stories.iter().map(|s| s.slug.as_str()).collect();
                    anyhow::bail!(
                        "--story {slug}: no such story in {}; the stories are: {}",
                        data.display(),
                        known.join(", ")
                    );
                }
            }
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for s in site
                .stories
                .iter()
                .filter(|s| story.as_ref().is_none_or(|w| *w == s.slug))
            {
                for e in &s.entries {
                    serde_json::to_writer(&mut out, &ItemLine::from(e))?;
                    out.write_all(b"\n")?;
                }
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The base URL for report files read without a manifest.
const DEFAULT_FILES_BASE: &str = "http://127.0.0.1:8080";

/// One line of `livefeed items`.
#[derive(serde::Serialize)]
struct ItemLine<'a> {
    story: &'a str,
    id: &'a str,
    title: &'a str,
    title_derived: bool,
    authors: &'a [String],
    published: String,
    updated: String,
    time_inferred: bool,
    summary: &'a str,
    content_html: &'a str,
    url: &'a str,
}

impl<'a> From<&'a livefeed::model::Entry> for ItemLine<'a> {
    fn from(e: &'a livefeed::model::Entry) -> Self {
        let t =
            |d: chrono::DateTime<chrono::Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        ItemLine {
            story: &e.story,
            id: &e.id,
            title: &e.title,
            title_derived: e.title_derived,
            authors: &e.authors,
            published: t(e.published),
            updated: t(e.updated),
            time_inferred: e.time_inferred,
            summary: &e.summary,
            content_html: &e.content_html,
            url: &e.url,
        }
    }
}
