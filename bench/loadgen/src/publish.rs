//! Durable publishing: P concurrent publishers, each on its own keep-alive connection, each
//! sending the next publish as soon as the previous one is acknowledged, for a fixed time.
//! livefeed acknowledges after its group-committed fsync; Redis (`appendonly yes`,
//! `appendfsync always`) answers `XADD` after writing and fsyncing its AOF.

use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::fanout::{filler, livefeed_head, round3};
use crate::stats;
use h1client::Conn;

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Target {
    Livefeed,
    Redis,
}

#[derive(clap::Args, Debug, Clone)]
pub struct PublishArgs {
    #[arg(long, value_enum)]
    pub target: Target,
    /// The server; given more than once (livefeed nodes on one shared log), publisher p
    /// publishes through the (p mod count)-th.
    #[arg(long = "addr", required = true)]
    pub addrs: Vec<SocketAddr>,
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[arg(long, default_value = "disputes-over-syria-summit-plan")]
    pub story: String,
    /// Redis stream key.
    #[arg(long, default_value = "bench")]
    pub stream: String,
    #[arg(long, default_value_t = 300)]
    pub payload: usize,
}

pub fn entry_json(p: usize, i: usize, chars: usize) -> String {
    json!({ "title": format!("publisher {p} entry {i}"), "body": filler(chars, p * 31 + i) })
        .to_string()
}

fn request(args: &PublishArgs, addr: SocketAddr, token: &str, p: usize, i: usize) -> Vec<u8> {
    let body = entry_json(p, i, args.payload);
    match args.target {
        Target::Livefeed => format!(
            "POST /stories/{}/entries HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            args.story,
            addr,
            body.len()
        )
        .into_bytes(),
        Target::Redis => {
            let parts: [&[u8]; 5] = [
                b"XADD",
                args.stream.as_bytes(),
                b"*",
                b"entry",
                body.as_bytes(),
            ];
            let mut out = format!("*{}\r\n", parts.len()).into_bytes();
            for part in parts {
                out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
                out.extend_from_slice(part);
                out.extend_from_slice(b"\r\n");
            }
            out
        }
    }
}

/// Sends one Redis command and reads its reply; `Ok(false)` for an error reply.
pub async fn redis_roundtrip(c: &mut Conn, request: &[u8]) -> std::io::Result<(bool, Vec<u8>)> {
    c.send(request).await?;
    let line = c.read_line().await?;
    match line.first() {
        Some(b'$') => {
            let n: i64 = std::str::from_utf8(&line[1..])
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(-1);
            if n < 0 {
                return Ok((true, Vec::new()));
            }
            let mut data = c.read_exact_bytes(n as usize + 2).await?;
            data.truncate(n as usize);
            Ok((true, data))
        }
        Some(b'+') | Some(b':') => Ok((true, line[1..].to_vec())),
        _ => Ok((false, line)),
    }
}

async fn one_publisher(
    args: &PublishArgs,
    token: &str,
    p: usize,
    deadline: Instant,
) -> (Vec<u64>, u64, u64) {
    let mut lat = Vec::new();
    let (mut errors, mut refused) = (0u64, 0u64);
    let addr = args.addrs[p % args.addrs.len()];
    let Ok(mut c) = Conn::connect(addr).await else {
        return (lat, 1, 0);
    };
    let mut i = 0;
    'run: while Instant::now() < deadline {
        let req = request(args, addr, token, p, i);
        i += 1;
        let t0 = Instant::now();
        let ok = match args.target {
            // A 503 (several nodes: a batch that lost the append race too often; or a store
            // outage) is sent again, as a publisher honouring `Retry-After` would, and counted
            // apart: it is the server's answer, not the load generator's error. The harness
            // checks that the log holds exactly the acknowledged publishes, so a retry that
            // appended twice would show.
            Target::Livefeed => loop {
                match c.roundtrip(&req).await {
                    Ok(res) if res.head.status == 503 => {
                        refused += 1;
                        if Instant::now() >= deadline {
                            break 'run;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Ok(res) => break res.head.status == 201,
                    Err(_) => {
                        errors += 1;
                        break 'run;
                    }
                }
            },
            Target::Redis => match redis_roundtrip(&mut c, &req).await {
                Ok((ok, _)) => ok,
                Err(_) => {
                    errors += 1;
                    break;
                }
            },
        };
        if ok {
            lat.push(t0.elapsed().as_nanos() as u64);
        } else {
            errors += 1;
        }
    }
    (lat, errors, refused)
}

async fn stored_count(args: &PublishArgs) -> anyhow::Result<u64> {
    match args.target {
        Target::Livefeed => livefeed_head(args.addrs[0]).await,
        Target::Redis => xlen(args.addrs[0], &args.stream).await,
    }
}

/// The length of a Redis stream.
pub async fn xlen(addr: SocketAddr, key: &str) -> anyhow::Result<u64> {
    let mut c = Conn::connect(addr).await?;
    let key = key.as_bytes();
    let mut req = format!("*2\r\n$4\r\nXLEN\r\n${}\r\n", key.len()).into_bytes();
    req.extend_from_slice(key);
    req.extend_from_slice(b"\r\n");
    let (_, v) = redis_roundtrip(&mut c, &req).await?;
    Ok(std::str::from_utf8(&v)?.trim().parse()?)
}

/// The log head as the first node sees it once it has caught up with `want` (other nodes'
/// acknowledged publishes reach it through the shared log), or after a few seconds.
async fn settled_count(args: &PublishArgs, want: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = stored_count(args).await?;
        if n >= want || Instant::now() >= deadline {
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn run(args: PublishArgs) -> anyhow::Result<Map<String, Value>> {
    let token = std::env::var("LIVEFEED_TOKEN").unwrap_or_default();
    let before = stored_count(&args).await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let mut tasks = Vec::new();
    for p in 0..args.publishers {
        let (a, t) = (args.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            one_publisher(&a, &t, p, deadline).await
        }));
    }
    let mut lat = Vec::new();
    let (mut errors, mut refused) = (0, 0);
    for t in tasks {
        let (l, e, r) = t.await?;
        lat.extend(l);
        errors += e;
        refused += r;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let acks = lat.len() as u64;
    let after = settled_count(&args, before + acks).await?;
    let mut out = Map::new();
    out.insert(
        "target".into(),
        json!(match args.target {
            Target::Livefeed => "livefeed",
            Target::Redis => "redis",
        }),
    );
    out.insert("publishers".into(), json!(args.publishers));
    out.insert("nodes".into(), json!(args.addrs.len()));
    out.insert("acks".into(), json!(acks));
    out.insert("seconds".into(), json!(round3(elapsed)));
    out.insert("acks_per_s".into(), json!(round3(acks as f64 / elapsed)));
    out.insert("errors".into(), json!(errors));
    out.insert("refused_503".into(), json!(refused));
    // Every acknowledged publish is in the log (or stream), and nothing else.
    out.insert("stored".into(), json!(after.saturating_sub(before)));
    out.insert("stored_matches_acks".into(), json!(after - before == acks));
    for (k, v) in stats::summary(&mut lat, "") {
        out.insert(k, v);
    }
    Ok(out)
}
