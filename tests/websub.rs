//! livefeed as a WebSub hub, end to end over real sockets: the real binary, and subscribers
//! that are small hyper servers in this process on 127.0.0.1 (allowed with
//! `--websub-allow-network 127.0.0.0/8`). Subscribe → verification with a challenge →
//! a signed notification after a publish; wrong secrets, wrong challenges, unsubscribing,
//! expired leases, restarts, failing subscribers and refused callbacks.

mod common;

use bytes::Bytes;
use common::process::{Proc, publish, serve_command};
use common::{TOKEN, client};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

/// The public base URL the servers here are given: topics are named under it.
const BASE: &str = "http://livefeed.test";
/// How long a notification may take to arrive.
const WAIT: Duration = Duration::from_secs(10);

/// How a test subscriber answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Echoes the challenge, takes notifications with 204.
    Good,
    /// Answers verifications with another string.
    WrongChallenge,
    /// Confirms verifications, then answers every notification with 500.
    Failing,
}

/// What a subscriber saw.
#[derive(Debug)]
enum Seen {
    Verify(HashMap<String, String>),
    Notify {
        headers: hyper::HeaderMap,
        body: Bytes,
    },
}

/// A WebSub subscriber: an HTTP server on 127.0.0.1 that reports every request it gets.
struct Subscriber {
    callback: String,
    rx: mpsc::UnboundedReceiver<Seen>,
}

impl Subscriber {
    async fn start(behaviour: Behaviour) -> Subscriber {
        Subscriber::start_on("127.0.0.1", behaviour).await
    }

    /// A subscriber on another loopback address (Linux routes all of 127.0.0.0/8 to lo).
    async fn start_on(ip: &str, behaviour: Behaviour) -> Subscriber {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(req, behaviour, tx).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Subscriber {
            callback: format!("http://{addr}/callback?id=1"),
            rx,
        }
    }

    /// The next thing seen, within [`WAIT`].
    async fn next(&mut self) -> Seen {
        match tokio::time::timeout(WAIT, self.rx.recv()).await {
            Ok(Some(seen)) => seen,
            _ => panic!("nothing reached the subscriber within {WAIT:?}"),
        }
    }

    async fn verification(&mut self) -> HashMap<String, String> {
        match self.next().await {
            Seen::Verify(q) => q,
            other => panic!("expected a verification, got {other:?}"),
        }
    }

    async fn notification(&mut self) -> (hyper::HeaderMap, Bytes) {
        match self.next().await {
            Seen::Notify { headers, body } => (headers, body),
            other => panic!("expected a notification, got {other:?}"),
        }
    }

    /// Whatever arrived so far, without waiting.
    fn nothing_more(&mut self) -> bool {
        self.rx.try_recv().is_err()
    }
}

async fn answer(
    req: Request<Incoming>,
    behaviour: Behaviour,
    tx: mpsc::UnboundedSender<Seen>,
) -> Response<Full<Bytes>> {
    let respond = |status: u16, body: String| {
        let mut res = Response::new(Full::new(Bytes::from(body)));
        *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        res
    };
    if req.method() == hyper::Method::GET {
        let query: HashMap<String, String> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let challenge = query.get("hub.challenge").cloned().unwrap_or_default();
        let _ = tx.send(Seen::Verify(query));
        return match behaviour {
            Behaviour::WrongChallenge => respond(200, format!("not-{challenge}")),
            _ => respond(200, challenge),
        };
    }
    let headers = req.headers().clone();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let _ = tx.send(Seen::Notify { headers, body });
    match behaviour {
        Behaviour::Failing => respond(500, "no".into()),
        _ => respond(204, String::new()),
    }
}

/// `serve` on a fresh copy of the data, publishing on, the hub at `{BASE}/websub`.
fn server(dir: &Path, extra: &[&str]) -> Proc {
    let data = common::copy_data(dir);
    server_on(&data, extra)
}

fn server_on(data: &Path, extra: &[&str]) -> Proc {
    let mut cmd = serve_command(data);
    cmd.env("LIVEFEED_TOKEN", TOKEN)
        .args(["--base-url", BASE])
        .args(extra);
    Proc::start(cmd)
}

const LOOPBACK: [&str; 2] = ["--websub-allow-network", "127.0.0.0/8"];

fn topic(file: &str) -> String {
    format!("{BASE}/feeds/{file}")
}

/// POSTs a subscription request to the hub; its status and body.
async fn hub_request(base: &str, params: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let res = client()
        .post(format!("{base}/websub"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

async fn subscribe(base: &str, file: &str, callback: &str, extra: &[(&str, &str)]) {
    let topic = topic(file);
    let mut params = vec![
        ("hub.mode", "subscribe"),
        ("hub.topic", topic.as_str()),
        ("hub.callback", callback),
    ];
    params.extend_from_slice(extra);
    let (status, body) = hub_request(base, &params).await;
    assert_eq!(status, 202, "{body}");
}

/// The value of an unlabelled metric, or of one labelled series.
async fn metric(base: &str, series: &str) -> f64 {
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits (within [`WAIT`]) until a metric reads `value`.
async fn wait_metric(base: &str, series: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if metric(base, series).await == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never read {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the hub holds `n` active subscriptions.
async fn wait_subscriptions(base: &str, n: f64) {
    wait_metric(base, "livefeed_websub_subscriptions", n).await;
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `X-Hub-Signature` is the HMAC-SHA256 of `body` under `secret`.
fn signed_with(headers: &hyper::HeaderMap, body: &[u8], secret: &str) -> bool {
    let header = headers
        .get("x-hub-signature")
        .expect("a notification to a subscriber with a secret is signed")
        .to_str()
        .unwrap();
    let (method, hex) = header.split_once('=').unwrap();
    assert_eq!(method, "sha256");
    hex == hmac_hex(secret, body)
}

#[tokio::test]
async fn a_subscriber_is_verified_then_gets_a_signed_notification_after_a_publish() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = server(dir.path(), &LOOPBACK);
    let base = proc.ready().await.unwrap();
    let mut sub = Subscriber::start(Behaviour::Good).await;
    let mut other = Subscriber::start(Behaviour::Good).await;
    let secret = "correct horse battery staple";
    subscribe(
        &base,
        "all.atom",
        &sub.callback,
        &[("hub.secret", secret), ("hub.lease_seconds", "3600")],
    )
    .await;
    let q = sub.verification().await;
    assert_eq!(q["hub.mode"], "subscribe");
    assert_eq!(q["hub.topic"], topic("all.atom"));
    assert_eq!(q["hub.lease_seconds"], "3600");
    assert!(q["hub.challenge"].len() >= 16, "{q:?}");
    assert_eq!(q["id"], "1", "the callback's own query is kept");
    // A second subscriber, to another format, whose secret the test then gets wrong.
    subscribe(
        &base,
        "all.json",
        &other.callback,
        &[("hub.secret", "right")],
    )
    .await;
    other.verification().await;
    wait_subscriptions(&base, 2.0).await;

    let http = client();
    assert_eq!(publish(&http, &base, "Hub news").await.status(), 201);
    let (headers, body) = sub.notification().await;
    assert!(
        String::from_utf8_lossy(&body).contains("Hub news"),
        "the notification carries the new feed"
    );
    assert_eq!(
        headers["content-type"],
        "application/atom+xml; charset=utf-8"
    );
    let link = headers["link"].to_str().unwrap();
    assert!(
        link.contains(&format!("<{BASE}/websub>; rel=\"hub\"")),
        "{link}"
    );
    assert!(
        link.contains(&format!("<{}>; rel=\"self\"", topic("all.atom"))),
        "{link}"
    );
    assert!(
        signed_with(&headers, &body, secret),
        "the signature verifies"
    );
    // The body is the feed as readers get it.
    let served = http
        .get(format!("{base}/feeds/all.atom"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(served, body);

    let (headers, body) = other.notification().await;
    assert_eq!(
        headers["content-type"],
        "application/feed+json; charset=utf-8"
    );
    assert!(signed_with(&headers, &body, "right"));
    assert!(
        !signed_with(&headers, &body, "wrong"),
        "a subscriber holding the wrong secret sees a mismatch"
    );
    // A tampered body does not verify either.
    let mut tampered = body.to_vec();
    tampered.push(b' ');
    assert!(!signed_with(&headers, &tampered, "right"));
    assert!(
        metric(
            &base,
            "livefeed_websub_deliveries_total{outcome=\"delivered\"}"
        )
        .await
            >= 2.0
    );
}

#[tokio::test]
async fn a_callback_that_echoes_a_wrong_challenge_never_gets_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = server(dir.path(), &LOOPBACK);
    let base = proc.ready().await.unwrap();
    let mut liar = Subscriber::start(Behaviour::WrongChallenge).await;
    let mut good = Subscriber::start(Behaviour::Good).await;
    subscribe(&base, "all.rss", &liar.callback, &[]).await;
    liar.verification().await;
    subscribe(&base, "all.rss", &good.callback, &[]).await;
    good.verification().await;
    wait_subscriptions(&base, 1.0).await;
    wait_metric(
        &base,
        "livefeed_websub_verifications_total{outcome=\"refused\"}",
        1.0,
    )
    .await;
    publish(&client(), &base, "Only for the honest").await;
    let (headers, _) = good.notification().await;
    assert!(
        headers.get("x-hub-signature").is_none(),
        "no secret, no signature"
    );
    // Deliveries run side by side: by now the liar would have had its own.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        liar.nothing_more(),
        "the unverified callback got a delivery"
    );
}

#[tokio::test]
async fn unsubscribing_stops_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = server(dir.path(), &LOOPBACK);
    let base = proc.ready().await.unwrap();
    let mut leaving = Subscriber::start(Behaviour::Good).await;
    let mut staying = Subscriber::start(Behaviour::Good).await;
    let live = format!("{}.atom", common::LIVE);
    for s in [&mut leaving, &mut staying] {
        subscribe(&base, &live, &s.callback, &[]).await;
        s.verification().await;
    }
    wait_subscriptions(&base, 2.0).await;
    let http = client();
    publish(&http, &base, "Before").await;
    leaving.notification().await;
    staying.notification().await;

    let t = topic(&live);
    let (status, _) = hub_request(
        &base,
        &[
            ("hub.mode", "unsubscribe"),
            ("hub.topic", &t),
            ("hub.callback", &leaving.callback),
        ],
    )
    .await;
    assert_eq!(status, 202);
    let q = leaving.verification().await;
    assert_eq!(q["hub.mode"], "unsubscribe");
    assert!(
        !q.contains_key("hub.lease_seconds"),
        "a lease is for subscriptions: {q:?}"
    );
    wait_subscriptions(&base, 1.0).await;
    publish(&http, &base, "After").await;
    let (_, body) = staying.notification().await;
    assert!(String::from_utf8_lossy(&body).contains("After"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        leaving.nothing_more(),
        "an unsubscribed callback got a delivery"
    );
}

#[tokio::test]
async fn an_expired_lease_stops_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = server(
        dir.path(),
        &[LOOPBACK[0], LOOPBACK[1], "--websub-min-lease", "1"],
    );
    let base = proc.ready().await.unwrap();
    let mut brief = Subscriber::start(Behaviour::Good).await;
    let mut lasting = Subscriber::start(Behaviour::Good).await;
    subscribe(
        &base,
        "all.atom",
        &brief.callback,
        &[("hub.lease_seconds", "1")],
    )
    .await;
    assert_eq!(brief.verification().await["hub.lease_seconds"], "1");
    subscribe(&base, "all.atom", &lasting.callback, &[]).await;
    assert_eq!(
        lasting.verification().await["hub.lease_seconds"],
        (10 * 86_400).to_string(),
        "the default lease"
    );
    // Both verified (the brief one may have expired already: no gauge to wait for).
    wait_metric(
        &base,
        "livefeed_websub_verifications_total{outcome=\"verified\"}",
        2.0,
    )
    .await;
    // Past the one-second lease (it runs from the next whole second).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    publish(&client(), &base, "After the lease").await;
    lasting.notification().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(brief.nothing_more(), "an expired lease got a delivery");
}

#[tokio::test]
async fn subscriptions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::copy_data(dir.path());
    let mut proc = server_on(&data, &LOOPBACK);
    let base = proc.ready().await.unwrap();
    let mut sub = Subscriber::start(Behaviour::Good).await;
    subscribe(&base, "all.atom", &sub.callback, &[("hub.secret", "kept")]).await;
    sub.verification().await;
    wait_subscriptions(&base, 1.0).await;
    assert!(proc.terminate(), "a clean stop:\n{}", proc.log());
    let kept = std::fs::read_to_string(data.join("log").join("websub.json")).unwrap();
    assert!(kept.contains(&sub.callback), "{kept}");

    let mut proc = server_on(&data, &LOOPBACK);
    let base = proc.ready().await.unwrap();
    assert_eq!(metric(&base, "livefeed_websub_subscriptions").await, 1.0);
    publish(&client(), &base, "After the restart").await;
    let (headers, body) = sub.notification().await;
    assert!(String::from_utf8_lossy(&body).contains("After the restart"));
    assert!(signed_with(&headers, &body, "kept"));
}

#[tokio::test]
async fn a_subscriber_that_keeps_failing_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = server(
        dir.path(),
        &[LOOPBACK[0], LOOPBACK[1], "--websub-give-up", "1"],
    );
    let base = proc.ready().await.unwrap();
    let mut sub = Subscriber::start(Behaviour::Failing).await;
    subscribe(&base, "all.atom", &sub.callback, &[]).await;
    sub.verification().await;
    wait_subscriptions(&base, 1.0).await;
    publish(&client(), &base, "Into the void").await;
    sub.notification().await;
    // Retried after a second with backoff, then dropped once failing for a second.
    sub.notification().await;
    wait_subscriptions(&base, 0.0).await;
    wait_metric(
        &base,
        "livefeed_websub_deliveries_total{outcome=\"gave_up\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn the_subscription_caps_hold() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = server(
        dir.path(),
        &[
            LOOPBACK[0],
            LOOPBACK[1],
            "--websub-max-subscriptions",
            "2",
            "--websub-max-per-host",
            "1",
        ],
    );
    let base = proc.ready().await.unwrap();
    let t = topic("all.atom");
    let mut first = Subscriber::start_on("127.0.0.1", Behaviour::Good).await;
    subscribe(&base, "all.atom", &first.callback, &[]).await;
    first.verification().await;
    wait_subscriptions(&base, 1.0).await;
    // A renewal of a held subscription always fits.
    subscribe(&base, "all.atom", &first.callback, &[]).await;
    first.verification().await;
    // Another callback on the same host: over the per-host cap.
    let same_host = Subscriber::start_on("127.0.0.1", Behaviour::Good).await;
    let (status, body) = hub_request(
        &base,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", &t),
            ("hub.callback", &same_host.callback),
        ],
    )
    .await;
    assert_eq!(status, 429, "{body}");
    let mut second = Subscriber::start_on("127.0.0.2", Behaviour::Good).await;
    subscribe(&base, "all.atom", &second.callback, &[]).await;
    second.verification().await;
    wait_subscriptions(&base, 2.0).await;
    // A third host: over the total cap.
    let third = Subscriber::start_on("127.0.0.3", Behaviour::Good).await;
    let (status, body) = hub_request(
        &base,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", &t),
            ("hub.callback", &third.callback),
        ],
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["limit"], 2);
}

#[tokio::test]
async fn bad_subscription_requests_are_refused_with_problems() {
    let dir = tempfile::tempdir().unwrap();
    // No --websub-allow-network: loopback callbacks are refused.
    let mut proc = server(dir.path(), &[]);
    let base = proc.ready().await.unwrap();
    let mut sub = Subscriber::start(Behaviour::Good).await;
    let t = topic("all.atom");
    let unknown = topic("no-such-story.atom");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &t),
                ("hub.callback", &sub.callback),
            ],
            "hub.callback",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &t),
                ("hub.callback", "http://localhost:8080/cb"),
            ],
            "hub.callback",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &t),
                ("hub.callback", "http://[::1]:8080/cb"),
            ],
            "hub.callback",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &t),
                ("hub.callback", "http://169.254.169.254/latest"),
            ],
            "hub.callback",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &t),
                ("hub.callback", "http://example.org:25/"),
            ],
            "hub.callback",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &t),
                ("hub.callback", "gopher://example.org/"),
            ],
            "hub.callback",
        ),
        (
            vec![
                ("hub.topic", &t),
                ("hub.callback", "https://example.org/cb"),
            ],
            "hub.mode",
        ),
        (
            vec![
                ("hub.mode", "publish"),
                ("hub.topic", &t),
                ("hub.callback", "https://example.org/cb"),
            ],
            "hub.mode",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", "http://elsewhere.example/feed"),
                ("hub.callback", "https://example.org/cb"),
            ],
            "hub.topic",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &unknown),
                ("hub.callback", "https://example.org/cb"),
            ],
            "hub.topic",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &t),
                ("hub.callback", "https://example.org/cb"),
                ("hub.lease_seconds", "soon"),
            ],
            "hub.lease_seconds",
        ),
    ];
    for (params, parameter) in &cases {
        let (status, body) = hub_request(&base, params).await;
        assert_eq!(status, 400, "{params:?}: {body}");
        assert_eq!(body["parameter"], *parameter, "{params:?}: {body}");
        assert_eq!(body["status"], 400);
    }
    let long = "x".repeat(200);
    let (status, body) = hub_request(
        &base,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", &t),
            ("hub.callback", "https://example.org/cb"),
            ("hub.secret", &long),
        ],
    )
    .await;
    assert_eq!((status, &body["parameter"]), (400, &"hub.secret".into()));
    let http = client();
    let res = http
        .post(format!("{base}/websub"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    let res = http.get(format!("{base}/websub")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sub.nothing_more(), "a refused callback was called");
    assert_eq!(metric(&base, "livefeed_websub_subscriptions").await, 0.0);
}

#[tokio::test]
async fn feeds_advertise_the_hub_in_links_headers_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::copy_data(dir.path());
    let mut proc = server_on(&data, &[]);
    let base = proc.ready().await.unwrap();
    let http = client();
    let hub = format!("{BASE}/websub");
    for file in [
        "all.atom",
        "all.rss",
        "all.json",
        &format!("{}.atom", common::LIVE),
    ] {
        let res = http
            .get(format!("{base}/feeds/{file}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let link = res.headers()["link"].to_str().unwrap().to_string();
        assert_eq!(
            link,
            format!("<{hub}>; rel=\"hub\", <{}>; rel=\"self\"", topic(file))
        );
        let body = res.text().await.unwrap();
        if file.ends_with(".json") {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                v["hubs"],
                serde_json::json!([{ "type": "WebSub", "url": hub }])
            );
        } else {
            let doc = roxmltree::Document::parse(&body).unwrap();
            let hubs: Vec<_> = doc
                .descendants()
                .filter(|n| {
                    n.tag_name().name() == "link"
                        && n.tag_name().namespace() == Some("http://www.w3.org/2005/Atom")
                        && n.attribute("rel") == Some("hub")
                })
                .map(|n| n.attribute("href").unwrap_or(""))
                .collect();
            assert_eq!(hubs, [hub.as_str()], "{file}");
        }
    }
    // The index and pages are no topics.
    let res = http.get(format!("{base}/")).send().await.unwrap();
    assert!(res.headers().get("link").is_none());
    drop(proc);

    // `--websub off`: no hub anywhere.
    let mut proc = server_on(&data, &["--websub", "off"]);
    let base = proc.ready().await.unwrap();
    let res = http
        .get(format!("{base}/feeds/all.atom"))
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("link").is_none());
    assert!(!res.text().await.unwrap().contains("rel=\"hub\""));
    let json = http
        .get(format!("{base}/feeds/all.json"))
        .send()
        .await
        .unwrap();
    assert!(!json.text().await.unwrap().contains("hubs"));
    let (status, _) = hub_request(&base, &[("hub.mode", "subscribe")]).await;
    assert_eq!(status, 404);
}

#[test]
fn a_build_advertises_a_hub_only_when_given_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::copy_data(dir.path());
    let build = |out: &str, extra: &[&str]| {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_livefeed"))
            .args(["build", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(dir.path().join(out))
            .args(extra)
            .env_remove("LIVEFEED_WEBSUB_HUB")
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let feeds = dir.path().join(out).join("feeds");
        (
            std::fs::read_to_string(feeds.join("all.atom")).unwrap(),
            std::fs::read_to_string(feeds.join("all.rss")).unwrap(),
            std::fs::read_to_string(feeds.join("all.json")).unwrap(),
        )
    };
    let (atom, rss, json) = build("plain", &[]);
    assert!(!atom.contains("rel=\"hub\"") && !rss.contains("rel=\"hub\""));
    assert!(!json.contains("\"hubs\""));
    let hub = "https://news.example.org/websub";
    let (atom, rss, json) = build("hubbed", &["--websub-hub", hub]);
    assert!(
        atom.contains(&format!("<link href=\"{hub}\" rel=\"hub\"/>")),
        "{atom}"
    );
    assert!(
        rss.contains(&format!("href=\"{hub}\" rel=\"hub\"")),
        "{rss}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["hubs"][0]["url"], hub);
    assert_eq!(v["hubs"][0]["type"], "WebSub");
}
