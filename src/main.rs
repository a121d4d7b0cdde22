//! The `livefeed` command: a thin layer over the library that reports errors once, at the top.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use livefeed::build;
use livefeed::render;
use livefeed::site::Site;

#[derive(Parser)]
#[command(
    name = "livefeed",
    version,
    about = "News live-update reports to RSS, Atom and JSON feeds, relayed live"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the static feeds (and index.html) for every story, the same bytes every run.
    Build {
        /// The data directory: stories.toml and the report files.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// The output directory. A build replaces it whole, so it must be new, empty, or one
        /// an earlier build wrote (marked by `.livefeed-build`); never the data directory, a
        /// directory containing it, or the current directory.
        #[arg(long, default_value = "feeds")]
        out: PathBuf,
        /// The public address the feeds are published under (default: the manifest's base_url).
        #[arg(long)]
        base_url: Option<String>,
        /// Write nothing; exit 1 and name the stale files if the output differs from the data.
        #[arg(long)]
        check: bool,
        /// The event log to include, read only (default: DATA/log, when it has one).
        #[arg(long)]
        log_dir: Option<PathBuf>,
        /// Entries a current feed carries at least (fewer than twice as many); older ones are
        /// in RFC 5005 archive feeds, `feeds/{slug}/archive/{k}.{ext}`.
        #[arg(long, default_value_t = livefeed::render::DEFAULT_FEED_ENTRIES as u64, value_parser = clap::value_parser!(u64).range(1..))]
        feed_entries: u64,
    },
    /// Serve the feeds and relay live updates (long-poll, SSE, publishing).
    Serve(ServeArgs),
    /// Look at the event log (`check`) or cut it at its damage after saving a copy (`repair`).
    Log {
        #[command(subcommand)]
        action: LogAction,
    },
    /// Print normalised items as JSON lines. Given report FILEs, read them with no manifest.
    Items {
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Only this story.
        #[arg(long)]
        story: Option<String>,
        #[arg(long)]
        base_url: Option<String>,
        /// Report files to normalise directly.
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum LogAction {
    /// Report the records, the head seq and any damage (kind, byte offset, intact records
    /// after it). Changes nothing. Exit 1 when the log is damaged, a torn tail included.
    Check(LogArgs),
    /// Save the log aside as events.log.damaged-<offset> (never replacing a copy), then cut it
    /// at its first damage; print what was dropped. Refused while a server holds the log.
    Repair(LogArgs),
}

#[derive(clap::Args)]
struct LogArgs {
    /// The data directory (the log is DATA/log/events.log).
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Where the event log lives (default: DATA/log), as given to `serve`.
    #[arg(long)]
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
    use livefeed::relay::store::{self, Found, Scan};
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
            println!(
                "log: {} ({} bytes)",
                dir.join(store::LOG_FILE).display(),
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
    #[arg(long, default_value = "data")]
    data: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// The public address (default: http:// and the address it listens on).
    #[arg(long)]
    base_url: Option<String>,
    /// A file holding the publish token (else the LIVEFEED_TOKEN environment variable).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Where the event log lives (default: DATA/log).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_body: usize,
    /// Seconds a client has to send its request headers.
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Open connections; beyond it, new connections get a quick 503.
    #[arg(long, default_value_t = 20_000)]
    max_connections: usize,
    /// Waiting long-poll requests (and, separately, SSE streams); beyond it, 503.
    #[arg(long, default_value_t = 20_000)]
    max_waiters: usize,
    /// Events an SSE subscriber that is not reading may fall behind before it is dropped.
    #[arg(long, default_value_t = 1024)]
    sse_queue: usize,
    /// The same bound in bytes of event frames.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    sse_queue_bytes: usize,
    /// Events kept in memory for cursors; older cursors are read back from the log.
    #[arg(long, default_value_t = 1_000_000)]
    keep_events: usize,
    /// Bytes of events kept in memory for cursors (as SSE frames); older cursors are read
    /// back from the log.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    memory_bytes: usize,
    /// Where to write the access log, one line per request (level `info`, target
    /// `livefeed::access`, so `RUST_LOG` applies): `off`, `stderr`, or a FILE to append to.
    #[arg(long, value_name = "off|stderr|FILE", default_value = "stderr")]
    access_log: AccessLog,
    /// The format of log lines (the access log included): `text`, or `json` for log shippers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// An origin (`https://newsroom.example`) whose pages may publish: its CORS preflights pass.
    /// Repeat for more; reads are open to every origin regardless.
    #[arg(long, value_name = "ORIGIN", value_parser = origin)]
    cors_publish_origin: Vec<String>,
    /// Entries a current feed carries at least (fewer than twice as many); older ones are
    /// in RFC 5005 archive feeds, `feeds/{slug}/archive/{k}.{ext}`.
    #[arg(long, default_value_t = livefeed::render::DEFAULT_FEED_ENTRIES as u64, value_parser = clap::value_parser!(u64).range(1..))]
    feed_entries: u64,
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
    use livefeed::server::access::TARGET;
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

fn token(args: &ServeArgs) -> Result<Option<String>> {
    let raw = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        ),
        None => std::env::var("LIVEFEED_TOKEN").ok(),
    };
    let token = raw.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    if let Some(t) = &token {
        livefeed::server::publish::check_token(t)?;
    }
    Ok(token)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("signal received");
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    use livefeed::relay::{Relay, file_store};
    use livefeed::server::{self, Config};
    let token = token(&args)?;
    // Bound first: with no --base-url, links point at the address actually bound (port 0 too).
    let listener = std::net::TcpListener::bind(args.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    listener.set_nonblocking(true)?;
    let base_url = match &args.base_url {
        Some(base) => base.clone(),
        None => server::local_base_url(listener.local_addr()?),
    };
    let mut site = Site::load(&args.data, Some(&base_url))?;
    site.feed_entries = usize::try_from(args.feed_entries).unwrap_or(usize::MAX);
    let log_dir = args
        .log_dir
        .clone()
        .unwrap_or_else(|| args.data.join("log"));
    let memory = livefeed::relay::hub::Memory {
        events: args.keep_events,
        bytes: args.memory_bytes,
    };
    let relay = Relay::open(site, file_store(&log_dir), memory)?;
    let config = Config {
        token,
        max_body: args.max_body,
        header_timeout: std::time::Duration::from_secs(args.header_timeout),
        max_connections: args.max_connections,
        max_waiters: args.max_waiters,
        sse_queue: args.sse_queue.max(1),
        sse_queue_bytes: args.sse_queue_bytes.max(1),
        cors_publish_origins: args.cors_publish_origin.clone(),
        ..Config::default()
    };
    if config.token.is_none() {
        tracing::info!("publishing is off: set LIVEFEED_TOKEN (or --token-file) to turn it on");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tracing::info!(addr = %listener.local_addr()?, base_url = %base_url, head = relay.hub.head(), "livefeed serving");
        server::run(
            listener,
            relay,
            config,
            args.data,
            Some(base_url),
            shutdown_signal(),
        )
        .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The system allocator with page-aligned page-sized blocks: less memory per waiting subscriber
/// (see `livefeed::server::alloc`).
#[global_allocator]
static ALLOC: livefeed::server::alloc::PageAligned = livefeed::server::alloc::PageAligned;

fn main() -> ExitCode {
    let cli = Cli::parse();
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

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Build {
            data,
            out,
            base_url,
            check,
            log_dir,
            feed_entries,
        } => {
            let build::Input { mut site, seq, log } =
                build::load(&data, base_url.as_deref(), log_dir.as_deref())?;
            site.feed_entries = usize::try_from(feed_entries).unwrap_or(usize::MAX);
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
                eprintln!("{}: stale; run `livefeed build` to update:", out.display());
                for line in staleness.lines(&out) {
                    eprintln!("  {line}");
                }
                return Ok(ExitCode::FAILURE);
            }
            let count =
                render::with_files_parallel(&site, seq, |files| build::write(files, &out, &data))?;
            eprintln!("{}: wrote {count} files", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve(args),
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
                    anyhow::bail!("no story {slug:?} in {}", data.display());
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
