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
    },
    /// Serve the feeds and relay live updates (long-poll, SSE, publishing).
    Serve(ServeArgs),
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

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, default_value = "data")]
    data: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// The public address (default: the manifest's base_url).
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
    /// Events queued for one SSE subscriber before it is dropped as too slow.
    #[arg(long, default_value_t = 1024)]
    sse_queue: usize,
    /// Events kept in memory for cursors; older cursors get 410.
    #[arg(long, default_value_t = 1_000_000)]
    keep_events: usize,
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
        if t.len() < 16 {
            anyhow::bail!("the publish token must be at least 16 characters");
        }
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
    let site = Site::load(&args.data, args.base_url.as_deref())?;
    let log_dir = args
        .log_dir
        .clone()
        .unwrap_or_else(|| args.data.join("log"));
    let relay = Relay::open(site, file_store(&log_dir), args.keep_events)?;
    let config = Config {
        token,
        max_body: args.max_body,
        header_timeout: std::time::Duration::from_secs(args.header_timeout),
        max_connections: args.max_connections,
        max_waiters: args.max_waiters,
        sse_queue: args.sse_queue.max(1),
        ..Config::default()
    };
    if config.token.is_none() {
        tracing::info!("publishing is off: set LIVEFEED_TOKEN (or --token-file) to turn it on");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
        tracing::info!(addr = %listener.local_addr()?, head = relay.hub.head(), "livefeed serving");
        server::run(
            listener,
            relay,
            config,
            args.data,
            args.base_url,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()) {
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
        } => {
            let site = Site::load(&data, base_url.as_deref())?;
            if check {
                let staleness =
                    render::with_files_parallel(&site, |files| build::check(files, &out))?;
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
                render::with_files_parallel(&site, |files| build::write(files, &out, &data))?;
            eprintln!("{}: wrote {count} files", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve(args),
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
