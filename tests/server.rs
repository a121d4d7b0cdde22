//! `livefeed serve` over real HTTP: each test starts the real server in this process on
//! 127.0.0.1:0 with its own copy of `data/`, and talks to it with `reqwest`.

mod common;

use common::{ARTICLE, LIVE, SEED, Server, Sse, TOKEN, TestSite, anchor, encode_segment, gunzip};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Every feed the server serves, by the static build's file name.
fn feed_names() -> Vec<String> {
    let mut names = Vec::new();
    for slug in [LIVE, ARTICLE, "all"] {
        for ext in ["rss", "atom", "json"] {
            names.push(format!("{slug}.{ext}"));
        }
    }
    names
}

fn content_type_of(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("rss") => "application/rss+xml; charset=utf-8",
        Some("atom") => "application/atom+xml; charset=utf-8",
        Some("json") => "application/feed+json; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        other => panic!("no content type for {other:?}"),
    }
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{} has no {name} header", res.url()))
        .to_str()
        .unwrap()
}

/// Ids and titles of a JSON feed's items, in order.
async fn json_feed_items(server: &Server, slug: &str) -> Vec<(String, String)> {
    let res = server.get(&format!("/feeds/{slug}.json")).await;
    assert_eq!(res.status(), 200);
    let feed: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["title"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn text(server: &Server, path: &str) -> String {
    let res = server.get(path).await;
    assert_eq!(res.status(), 200, "{path}");
    res.text().await.unwrap()
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[track_caller]
fn assert_problem(res_status: reqwest::StatusCode, content_type: &str, body: &Value, status: u16) {
    assert_eq!(res_status, status, "{body}");
    assert_eq!(content_type, "application/problem+json", "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

/// Sends a request and returns status, content type and JSON body.
async fn call(req: reqwest::RequestBuilder) -> (reqwest::StatusCode, String, Value) {
    let res = req.send().await.unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = res.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)))
    };
    (status, ct, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_feed_and_the_index_match_the_static_build_with_caching_headers() {
    let site = TestSite::new();
    let built = site.static_build();
    let server = site.start().await;
    let mut paths: Vec<(String, String)> = feed_names()
        .into_iter()
        .map(|n| (format!("/feeds/{n}"), n))
        .collect();
    paths.push(("/".into(), "index.html".into()));
    assert_eq!(paths.len(), built.len(), "every built file is served");

    for (path, name) in &paths {
        let expected = &built[name];
        let res = server.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(
            header(&res, "content-type"),
            content_type_of(name),
            "{path}"
        );
        let etag = header(&res, "etag").to_string();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
            "{path}: strong ETag, got {etag}"
        );
        let last_modified = header(&res, "last-modified").to_string();
        chrono::NaiveDateTime::parse_from_str(&last_modified, "%a, %d %b %Y %H:%M:%S GMT")
            .unwrap_or_else(|e| panic!("{path}: Last-Modified {last_modified:?}: {e}"));
        let cache_control = header(&res, "cache-control");
        assert!(
            cache_control.starts_with("public, max-age="),
            "{path}: {cache_control}"
        );
        assert_eq!(header(&res, "vary"), "Accept-Encoding", "{path}");
        assert_eq!(header(&res, "x-livefeed-seq"), SEED.to_string(), "{path}");
        assert_eq!(header(&res, "access-control-allow-origin"), "*", "{path}");
        assert!(res.headers().get("content-encoding").is_none(), "{path}");
        assert_eq!(
            header(&res, "content-length"),
            expected.len().to_string(),
            "{path}"
        );
        let body = res.bytes().await.unwrap();
        assert!(
            body[..] == expected[..],
            "{path}: the served bytes differ from `livefeed build`'s {name}"
        );

        // Conditional GET: 304, empty body, same validators.
        for (name, value) in [
            ("if-none-match", etag.as_str()),
            ("if-none-match", &format!("\"nope\", {etag}")),
            ("if-modified-since", last_modified.as_str()),
        ] {
            let res = server
                .http
                .get(server.url(path))
                .header(name, value)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 304, "{path} with {name}: {value}");
            assert_eq!(header(&res, "etag"), etag, "{path}");
            assert_eq!(header(&res, "vary"), "Accept-Encoding", "{path}");
            assert_eq!(header(&res, "x-livefeed-seq"), SEED.to_string());
            assert!(
                res.bytes().await.unwrap().is_empty(),
                "{path}: 304 has no body"
            );
        }
        let res = server
            .http
            .get(server.url(path))
            .header("if-none-match", "\"something-else\"")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}: a stale ETag gets the body");

        // HEAD: the GET's headers, no body.
        let res = server.http.head(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(header(&res, "content-type"), content_type_of(name));
        assert_eq!(header(&res, "etag"), etag);
        assert_eq!(
            header(&res, "content-length"),
            expected.len().to_string(),
            "{path}: HEAD gives the GET's length"
        );
        assert!(
            res.bytes().await.unwrap().is_empty(),
            "{path}: HEAD has no body"
        );

        // gzip: compressed once, decompresses to the same bytes, its own strong ETag.
        let res = server
            .http
            .get(server.url(path))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "content-encoding"), "gzip", "{path}");
        assert_eq!(header(&res, "vary"), "Accept-Encoding");
        assert_eq!(header(&res, "content-type"), content_type_of(name));
        let gz_etag = header(&res, "etag").to_string();
        assert!(gz_etag.starts_with('"'), "{path}: {gz_etag}");
        assert_ne!(
            gz_etag, etag,
            "{path}: gzip and identity bodies need different ETags"
        );
        let gz = res.bytes().await.unwrap();
        assert!(gz.len() < expected.len(), "{path}: gzip is smaller");
        assert!(
            gunzip(&gz) == expected[..],
            "{path}: gzip decompresses to the same bytes"
        );
        let res = server
            .http
            .get(server.url(path))
            .header("accept-encoding", "gzip")
            .header("if-none-match", &gz_etag)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 304, "{path}: 304 for the gzip ETag");
        assert!(res.bytes().await.unwrap().is_empty());
        let res = server
            .http
            .get(server.url(path))
            .header("accept-encoding", "gzip;q=0, identity")
            .send()
            .await
            .unwrap();
        assert!(
            res.headers().get("content-encoding").is_none(),
            "{path}: gzip;q=0"
        );
    }

    // Every story page is served, lists its entries and follows the live stream.
    let data = livefeed::ingest::site::Site::load(&site.data(), None).unwrap();
    for story in &data.stories {
        let page = text(&server, &format!("/stories/{}", story.slug)).await;
        for e in &story.entries {
            assert!(
                page.contains(&format!("id=\"{}\"", e.anchor)),
                "{}",
                e.anchor
            );
        }
        assert!(
            page.contains("/live/events"),
            "the page follows the SSE stream"
        );
    }
    assert_eq!(server.get("/feeds/nope.rss").await.status(), 404);
    assert_eq!(server.get("/stories/nope").await.status(), 404);
    assert_eq!(server.get("/healthz").await.status(), 200);
    let metrics = text(&server, "/metrics").await;
    assert!(metrics.contains("livefeed_waiting_subscribers{transport=\"longpoll\"}"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_from_zero_gets_the_seed_events_in_order() {
    let site = TestSite::new();
    let server = site.start().await;
    let res = server.get("/live?after=0&timeout=0").await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "application/json");
    assert_eq!(header(&res, "cache-control"), "no-store");
    assert_eq!(header(&res, "access-control-allow-origin"), "*");
    let body: Value = res.json().await.unwrap();
    let events = body["events"].as_array().unwrap();
    assert_eq!(seqs(events), (1..=SEED).collect::<Vec<_>>());
    assert_eq!(body["next"], SEED);
    assert_eq!(body["head"], SEED);
    assert!(events.iter().all(|e| e["op"] == "create"), "{body}");

    // The events carry exactly the entries of the data, each once.
    let data = livefeed::ingest::site::Site::load(&site.data(), None).unwrap();
    let expected: BTreeSet<(String, String)> = data
        .stories
        .iter()
        .flat_map(|s| s.entries.iter().map(|e| (e.story.clone(), e.id.clone())))
        .collect();
    let got: BTreeSet<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["story"].as_str().unwrap().to_string(),
                e["entry"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        events.iter().filter(|e| e["story"] == LIVE).count(),
        5,
        "five live entries"
    );
    assert_eq!(events.iter().filter(|e| e["story"] == ARTICLE).count(), 1);
    for e in events {
        let entry = e["entry"].as_object().unwrap();
        for field in [
            "id",
            "title",
            "authors",
            "published",
            "updated",
            "content_html",
            "summary",
            "url",
        ] {
            assert!(entry.contains_key(field), "entry lacks {field}: {e}");
        }
        assert!(entry["id"].as_str().unwrap().starts_with("tag:"));
    }
    // Created in time order: the oldest entry first.
    let published: Vec<&str> = events
        .iter()
        .map(|e| e["entry"]["published"].as_str().unwrap())
        .collect();
    let mut sorted = published.clone();
    sorted.sort();
    assert_eq!(published, sorted, "seed creates come oldest first");

    // No `after` means from the start; a story filter keeps only that story.
    let (_, body) = server.live("timeout=0").await;
    assert_eq!(
        seqs(body["events"].as_array().unwrap()),
        (1..=SEED).collect::<Vec<_>>()
    );
    let (_, body) = server
        .live(&format!("after=0&timeout=0&story={ARTICLE}"))
        .await;
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["story"], ARTICLE);
    assert_eq!(
        body["next"], SEED,
        "next moves past events of other stories too"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_long_poll_is_answered_within_a_second_of_a_publish() {
    let site = TestSite::new();
    let server = site.start().await;
    let url = server.url(&format!("/live?after={SEED}&timeout=30"));
    let http = server.http.clone();
    let waiting = tokio::spawn(async move {
        let res = http.get(url).send().await.unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        (status, body, Instant::now())
    });
    // Let the request reach the server and start waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the long-poll waits while nothing happens"
    );
    let published_at = Instant::now();
    let ack = server
        .publish(
            LIVE,
            "Talks to resume next week",
            "Officials confirmed the date.",
        )
        .await;
    let (status, body, answered_at) = waiting.await.unwrap();
    let latency = answered_at.duration_since(published_at);
    assert_eq!(status, 200);
    assert!(
        latency < Duration::from_secs(1),
        "answered {latency:?} after the publish"
    );
    let events = body["events"].as_array().unwrap();
    assert_eq!(seqs(events), vec![SEED + 1]);
    assert_eq!(events[0]["op"], "create");
    assert_eq!(events[0]["entry"]["id"], ack["id"]);
    assert_eq!(events[0]["entry"]["title"], "Talks to resume next week");
    assert_eq!(body["next"], SEED + 1);
    assert_eq!(body["head"], SEED + 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_timeout_is_honoured() {
    let site = TestSite::new();
    let server = site.start().await;
    let started = Instant::now();
    let (status, body) = server.live(&format!("after={SEED}&timeout=1")).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"], json!([]));
    assert_eq!(body["next"], SEED);
    assert_eq!(body["head"], SEED);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "timeout=1 took {took:?}"
    );
    // timeout=0 does not wait at all.
    let started = Instant::now();
    let (status, body) = server.live(&format!("after={SEED}&timeout=0")).await;
    assert_eq!(status, 200);
    assert_eq!(body["events"], json!([]));
    assert!(started.elapsed() < Duration::from_millis(900));
    // A story filter that matches nothing also times out with the cursor moved to the head.
    server.publish(LIVE, "Another update", "More text.").await;
    let started = Instant::now();
    let (status, body) = server
        .live(&format!("after={SEED}&timeout=1&story={ARTICLE}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["events"], json!([]));
    assert_eq!(body["next"], SEED + 1, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_ahead_of_the_log_is_gone_and_garbage_is_a_bad_request() {
    let site = TestSite::new();
    let server = site.start().await;
    for after in [SEED + 1, 1000, u64::MAX] {
        let (status, ct, body) =
            call(server.http.get(server.url(&format!("/live?after={after}")))).await;
        assert_problem(status, &ct, &body, 410);
        assert_eq!(body["oldest"], 1, "{body}");
        assert_eq!(body["head"], SEED, "{body}");
    }
    // SSE answers the same cursor in-band.
    let mut sse = Sse::connect(&server, "", Some(SEED + 5)).await;
    let reset = sse.event().await;
    assert_eq!(reset.op, "reset");
    assert_eq!(reset.data["oldest"], 1);
    assert_eq!(reset.data["head"], SEED);

    for (query, parameter) in [
        ("after=abc", "after"),
        ("after=-1", "after"),
        ("after=1.5", "after"),
        ("after=1&after=2", "after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=many", "limit"),
        ("timeout=999", "timeout"),
        ("timeout=61", "timeout"),
        ("story=Not%20A%20Slug", "story"),
        ("bogus=1", "bogus"),
        ("aftr=3", "aftr"),
        ("after=%zz", "after"),
    ] {
        for route in ["/live", "/live/events"] {
            let (status, ct, body) =
                call(server.http.get(server.url(&format!("{route}?{query}")))).await;
            assert_problem(status, &ct, &body, 400);
            assert_eq!(body["parameter"], parameter, "{route}?{query}: {body}");
        }
    }
    let (status, ct, body) = call(
        server
            .http
            .get(server.url("/live/events"))
            .header("Last-Event-ID", "x1"),
    )
    .await;
    assert_problem(status, &ct, &body, 400);
    assert_eq!(body["parameter"], "Last-Event-ID");
    // A well-formed slug that names no story.
    let (status, _, _) = call(server.http.get(server.url("/live?story=no-such-story"))).await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_and_next_page_through_every_event() {
    let site = TestSite::new();
    let server = site.start().await;
    for i in 0..5 {
        let story = if i % 2 == 0 { LIVE } else { ARTICLE };
        server
            .publish(story, &format!("Paged update {i}"), "Body text.")
            .await;
    }
    let head = SEED + 5;
    assert_eq!(server.head().await, head);
    for limit in [1u64, 2, 3, 4, 7, 100] {
        let mut cursor = 0;
        let mut got = Vec::new();
        let mut pages = 0;
        loop {
            let (status, body) = server
                .live(&format!("after={cursor}&limit={limit}&timeout=0"))
                .await;
            assert_eq!(status, 200);
            let events = body["events"].as_array().unwrap();
            assert!(events.len() as u64 <= limit, "limit={limit}: {body}");
            assert_eq!(body["head"], head);
            if events.is_empty() {
                assert_eq!(body["next"], cursor, "an empty page keeps the cursor");
                break;
            }
            assert_eq!(body["next"], events.last().unwrap()["seq"]);
            got.extend(seqs(events));
            cursor = body["next"].as_u64().unwrap();
            pages += 1;
        }
        assert_eq!(got, (1..=head).collect::<Vec<_>>(), "limit={limit}");
        assert_eq!(pages, head.div_ceil(limit), "limit={limit}");
    }
    // With a story filter, pages hold only that story and still reach the head.
    let mut cursor = 0;
    let mut got = Vec::new();
    loop {
        let (_, body) = server
            .live(&format!("after={cursor}&limit=1&timeout=0&story={ARTICLE}"))
            .await;
        let events = body["events"].as_array().unwrap();
        assert!(events.iter().all(|e| e["story"] == ARTICLE));
        got.extend(seqs(events));
        let next = body["next"].as_u64().unwrap();
        if events.is_empty() {
            assert_eq!(next, head, "the cursor moves past the other story's events");
            break;
        }
        cursor = next;
    }
    let all = server.events_after(0).await;
    let expected: Vec<u64> = all
        .iter()
        .filter(|e| e["story"] == ARTICLE)
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(got, expected);
    assert_eq!(got.len(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_from_last_event_id_with_no_gap_and_no_duplicate() {
    let mut site = TestSite::new();
    site.config.heartbeat = Duration::from_millis(200);
    let server = site.start().await;

    // From the start: `retry:` first, then every seed event in order.
    let mut sse = Sse::connect(&server, "after=0", None).await;
    let first = sse.frame().await;
    assert!(
        first.retry.is_some(),
        "the stream opens with retry: {first:?}"
    );
    let mut last = 0;
    for expected in 1..=3 {
        let e = sse.event().await;
        assert_eq!(e.seq, expected);
        assert_eq!(e.op, "create");
        last = e.seq;
    }
    drop(sse); // the subscriber goes away after seq 3

    // While it is away, more happens.
    for i in 0..3 {
        server
            .publish(LIVE, &format!("While away {i}"), "Text.")
            .await;
    }
    let head = SEED + 3;

    // Resuming with Last-Event-ID gives exactly what came after it.
    let mut sse = Sse::connect(&server, "", Some(last)).await;
    let mut got = Vec::new();
    while got.last().copied().unwrap_or(last) < head {
        let e = sse.event().await;
        assert_eq!(e.data["seq"], e.seq);
        got.push(e.seq);
    }
    assert_eq!(got, (last + 1..=head).collect::<Vec<_>>());
    // …and then live events, still with nothing repeated.
    let ack = server.publish(LIVE, "Live again", "Text.").await;
    let e = sse.event().await;
    assert_eq!(e.seq, head + 1);
    assert_eq!(e.data["entry"]["id"], ack["id"]);
    assert!(sse.try_event(Duration::from_millis(300)).await.is_none());

    // Last-Event-ID wins over after=; with neither the stream starts at the head.
    let mut sse = Sse::connect(&server, "after=0", Some(head)).await;
    assert_eq!(sse.event().await.seq, head + 1);
    let mut tail = Sse::connect(&server, "", None).await;
    assert!(tail.try_event(Duration::from_millis(300)).await.is_none());
    // An idle stream gets heartbeat comments.
    let heartbeat = loop {
        let frame = tail.frame().await;
        if !frame.comments.is_empty() {
            break frame;
        }
    };
    assert!(
        heartbeat.id.is_none() && heartbeat.data.is_none(),
        "{heartbeat:?}"
    );
    server.publish(ARTICLE, "Newest", "Text.").await;
    assert_eq!(tail.event().await.seq, head + 2);
    assert_eq!(sse.event().await.seq, head + 2);

    // A story filter sees only its story.
    let mut only = Sse::connect(&server, &format!("after=0&story={ARTICLE}"), None).await;
    let a = only.event().await;
    assert_eq!(a.data["story"], ARTICLE);
    let b = only.event().await;
    assert_eq!((b.seq, b.data["story"].as_str()), (head + 2, Some(ARTICLE)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_edit_and_delete_reach_long_poll_sse_and_feeds() {
    let site = TestSite::new();
    let server = site.start().await;
    let mut sse = Sse::connect(&server, "", None).await;
    let feed_before = server.get(&format!("/feeds/{LIVE}.atom")).await;
    let etag_before = header(&feed_before, "etag").to_string();

    // Publish.
    let res = server
        .authed(Method::POST, &format!("/stories/{LIVE}/entries"))
        .json(&json!({
            "title": "Kremlin confirms second meeting",
            "body": "The two leaders will meet again in June.\n\n<script>alert(1)</script> Tags are text.",
            "authors": ["Jane Reporter"],
            "published": "2013-05-11T15:00:00+01:00",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "content-type"), "application/json");
    let ack: Value = res.json().await.unwrap();
    let id = ack["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("tag:"), "{ack}");
    assert_eq!(ack["seq"], SEED + 1);
    assert_eq!(ack["op"], "create");
    let url = ack["url"].as_str().unwrap().to_string();
    let anchor = anchor(&url).to_string();

    let e = sse.event().await;
    assert_eq!((e.seq, e.op.as_str()), (SEED + 1, "create"));
    assert_eq!(e.data["entry"]["id"], id.as_str());
    assert_eq!(e.data["entry"]["authors"], json!(["Jane Reporter"]));
    assert_eq!(e.data["entry"]["published"], "2013-05-11T14:00:00Z");
    let html = e.data["entry"]["content_html"].as_str().unwrap();
    assert!(
        !html.contains("<script"),
        "publisher HTML is cleaned: {html}"
    );
    assert!(html.contains("&lt;script&gt;"), "{html}");

    for slug in [LIVE, "all"] {
        let items = json_feed_items(&server, slug).await;
        assert_eq!(
            items.iter().filter(|(i, _)| *i == id).count(),
            1,
            "{slug}: {items:?}"
        );
        if slug == LIVE {
            assert_eq!(
                items[0],
                (id.clone(), "Kremlin confirms second meeting".to_string()),
                "the newest entry of the story comes first"
            );
        }
        for ext in ["rss", "atom"] {
            let feed = text(&server, &format!("/feeds/{slug}.{ext}")).await;
            assert!(feed.contains(&id), "{slug}.{ext}");
            assert!(
                feed.contains("Kremlin confirms second meeting"),
                "{slug}.{ext}"
            );
        }
    }
    let res = server.get(&format!("/feeds/{LIVE}.atom")).await;
    assert_eq!(header(&res, "x-livefeed-seq"), (SEED + 1).to_string());
    assert_ne!(
        header(&res, "etag"),
        etag_before,
        "a new version, a new ETag"
    );
    let res = server
        .http
        .get(server.url(&format!("/feeds/{LIVE}.atom")))
        .header("if-none-match", &etag_before)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the old ETag no longer matches");
    let page = text(&server, &format!("/stories/{LIVE}")).await;
    assert!(page.contains(&format!("id=\"{anchor}\"")));
    assert!(page.contains("Kremlin confirms second meeting"));

    // Edit, by anchor: same id, new title everywhere.
    let (status, _, edited) = call(
        server
            .authed(Method::PUT, &format!("/stories/{LIVE}/entries/{anchor}"))
            .json(&json!({ "title": "Kremlin confirms June meeting", "body": "Corrected: June." })),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["op"], "update");
    assert_eq!(edited["id"], id.as_str());
    assert_eq!(edited["seq"], SEED + 2);
    let e = sse.event().await;
    assert_eq!((e.seq, e.op.as_str()), (SEED + 2, "update"));
    assert_eq!(e.data["entry"]["id"], id.as_str());
    assert_eq!(e.data["entry"]["title"], "Kremlin confirms June meeting");
    assert_eq!(
        e.data["entry"]["published"], "2013-05-11T14:00:00Z",
        "an edit keeps the publication time"
    );
    for slug in [LIVE, "all"] {
        let items = json_feed_items(&server, slug).await;
        let mine: Vec<_> = items.iter().filter(|(i, _)| *i == id).collect();
        assert_eq!(mine.len(), 1, "{slug}: still one item with the same id");
        assert_eq!(mine[0].1, "Kremlin confirms June meeting");
        for ext in ["rss", "atom"] {
            let feed = text(&server, &format!("/feeds/{slug}.{ext}")).await;
            assert!(
                feed.contains("Kremlin confirms June meeting"),
                "{slug}.{ext}"
            );
            assert!(
                !feed.contains("Kremlin confirms second meeting"),
                "{slug}.{ext}"
            );
            assert_eq!(
                feed.matches(id.as_str()).count(),
                1,
                "{slug}.{ext}: one item"
            );
        }
    }

    // Edit a seed entry by its percent-encoded tag: id.
    let data = livefeed::ingest::site::Site::load(&site.data(), None).unwrap();
    let seed = &data.story(LIVE).unwrap().entries[4];
    let (status, _, seed_edit) = call(
        server
            .authed(
                Method::PUT,
                &format!("/stories/{LIVE}/entries/{}", encode_segment(&seed.id)),
            )
            .json(&json!({ "title": "Cameron to talk Syria with Putin", "body": "Retitled." })),
    )
    .await;
    assert_eq!(status, 200, "{seed_edit}");
    assert_eq!(seed_edit["id"], seed.id.as_str());
    assert_eq!(seed_edit["seq"], SEED + 3);
    let e = sse.event().await;
    assert_eq!((e.seq, e.op.as_str()), (SEED + 3, "update"));
    assert_eq!(e.data["entry"]["id"], seed.id.as_str());
    let items = json_feed_items(&server, LIVE).await;
    assert!(items.contains(&(seed.id.clone(), "Cameron to talk Syria with Putin".into())));

    // Delete, by anchor: gone from the feeds and the story page.
    let (status, _, deleted) =
        call(server.authed(Method::DELETE, &format!("/stories/{LIVE}/entries/{anchor}"))).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["op"], "delete");
    assert_eq!(deleted["id"], id.as_str());
    assert_eq!(deleted["seq"], SEED + 4);
    let e = sse.event().await;
    assert_eq!((e.seq, e.op.as_str()), (SEED + 4, "delete"));
    assert_eq!(e.data["entry"]["id"], id.as_str());
    for slug in [LIVE, "all"] {
        for ext in ["rss", "atom", "json"] {
            let feed = text(&server, &format!("/feeds/{slug}.{ext}")).await;
            // Atom and JSON Feed name it once more, in their tombstones (RFC 6721).
            let tombstone = match ext {
                "atom" => format!("ref=\"{id}\""),
                "json" => format!("\"deleted\": [\n      {{\n        \"id\": \"{id}\""),
                _ => String::new(),
            };
            assert!(feed.contains(&tombstone), "{slug}.{ext} has the tombstone");
            assert!(
                !feed.replace(&tombstone, "").contains(&id),
                "{slug}.{ext} still has the deleted entry"
            );
            assert!(!feed.contains("Kremlin confirms"), "{slug}.{ext}");
        }
    }
    let page = text(&server, &format!("/stories/{LIVE}")).await;
    assert!(
        !page.contains(&format!("id=\"{anchor}\"")),
        "the page drops it"
    );
    assert!(!page.contains("Kremlin confirms"));
    // Deleting or editing it again: 404.
    let (status, _, _) =
        call(server.authed(Method::DELETE, &format!("/stories/{LIVE}/entries/{anchor}"))).await;
    assert_eq!(status, 404);

    // The long-poll saw the same three changes, in order.
    let events = server.events_after(SEED).await;
    let ops: Vec<(u64, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["op"].as_str().unwrap(),
                e["entry"]["id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        vec![
            (SEED + 1, "create", id.as_str()),
            (SEED + 2, "update", id.as_str()),
            (SEED + 3, "update", seed.id.as_str()),
            (SEED + 4, "delete", id.as_str()),
        ]
    );
    assert!(sse.try_event(Duration::from_millis(200)).await.is_none());
    server.stop().await;
}

/// The body limit of the server in the publishing test.
const MAX_BODY: usize = 64 * 1024;

/// Sends raw bytes on a fresh connection and returns what the server answered before closing.
async fn raw_request(server: &Server, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything; that is its right.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(common::PATIENCE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no answer in time; got {:?}", String::from_utf8_lossy(&out)),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_checks_the_token_the_request_and_idempotency_keys() {
    let mut site = TestSite::new();
    site.config.max_body = MAX_BODY;
    let server = site.start().await;
    let path = format!("/stories/{LIVE}/entries");
    let entry = json!({ "title": "Checked", "body": "Text." });

    // No token, a wrong one, a truncated one, another scheme: 401.
    let wrong: Vec<Option<String>> = vec![
        None,
        Some("Bearer wrong-token-0123456789abcdef".into()),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
        Some("Bearer ".into()),
    ];
    for auth in &wrong {
        for (method, route) in [
            (Method::POST, path.clone()),
            (
                Method::PUT,
                format!("{path}/may-summit-on-syria-is-impossible-says-russian-official"),
            ),
            (
                Method::DELETE,
                format!("{path}/may-summit-on-syria-is-impossible-says-russian-official"),
            ),
        ] {
            let mut req = server
                .http
                .request(method.clone(), server.url(&route))
                .json(&entry);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 401, "{method} {route} with {auth:?}");
            assert!(res.headers().get("www-authenticate").is_some());
        }
    }
    assert_eq!(server.head().await, SEED, "nothing was written");

    // Idempotency-Key: a retry gets the first answer, and there is one entry.
    let send = || {
        server
            .authed(Method::POST, &path)
            .header("Idempotency-Key", "retry-me-1")
            .json(&json!({ "title": "Once only", "body": "Text." }))
    };
    let (s1, _, first) = call(send()).await;
    let (s2, _, second) = call(send()).await;
    assert_eq!((s1.as_u16(), s2.as_u16()), (201, 201));
    assert_eq!(first, second, "the retry answers with the first answer");
    assert_eq!(first["seq"], SEED + 1);
    assert_eq!(server.head().await, SEED + 1, "the retry made no event");
    let items = json_feed_items(&server, LIVE).await;
    assert_eq!(items.iter().filter(|(_, t)| t == "Once only").count(), 1);
    // Concurrent retries too.
    let sends: Vec<_> = (0..8)
        .map(|_| {
            let req = server
                .authed(Method::POST, &path)
                .header("Idempotency-Key", "retry-me-2")
                .json(&json!({ "title": "Once again", "body": "Text." }));
            tokio::spawn(call(req))
        })
        .collect();
    let mut answers = BTreeSet::new();
    for s in sends {
        let (status, _, body) = s.await.unwrap();
        assert_eq!(status, 201, "{body}");
        answers.insert(body.to_string());
    }
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(server.head().await, SEED + 2);

    // Unknown story → 404, wrong content type → 415, too large → 413.
    let (status, ct, body) = call(
        server
            .authed(Method::POST, "/stories/no-such-story/entries")
            .json(&entry),
    )
    .await;
    assert_problem(status, &ct, &body, 404);
    let (status, ct, body) = call(
        server
            .authed(Method::PUT, &format!("{path}/no-such-entry"))
            .json(&entry),
    )
    .await;
    assert_problem(status, &ct, &body, 404);
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut req = server.authed(Method::POST, &path).body(entry.to_string());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let (status, ct, body) = call(req).await;
        assert_problem(status, &ct, &body, 415);
    }
    let (status, _, body) = call(
        server
            .authed(Method::POST, &path)
            .header("content-type", "application/json; charset=utf-8")
            .body(json!({ "title": "With charset", "body": "Text." }).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let huge = json!({ "title": "Huge", "body": "x".repeat(MAX_BODY) });
    let (status, ct, body) = call(server.authed(Method::POST, &path).json(&huge)).await;
    assert_problem(status, &ct, &body, 413);
    // The same without a Content-Length: a chunked body is cut off at the limit too.
    let chunk = "x".repeat(8 * 1024);
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    );
    for _ in 0..MAX_BODY / chunk.len() + 1 {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    let answer = raw_request(&server, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Invalid JSON and missing or mistyped fields → 400 naming the field.
    let (status, ct, body) = call(
        server
            .authed(Method::POST, &path)
            .header("content-type", "application/json")
            .body("{\"title\": \"unterminated"),
    )
    .await;
    assert_problem(status, &ct, &body, 400);
    assert!(body["detail"].as_str().unwrap().contains("JSON"), "{body}");
    for (payload, field) in [
        (json!({ "body": "Text." }), "title"),
        (json!({ "title": "No body" }), "body"),
        (json!({ "title": 5, "body": "Text." }), "title"),
        (json!({ "title": "   ", "body": "Text." }), "title"),
        (
            json!({ "title": "T", "body": "Text.", "authors": "me" }),
            "authors",
        ),
        (
            json!({ "title": "T", "body": "Text.", "published": "yesterday" }),
            "published",
        ),
        (
            json!({ "title": "T", "body": "Text.", "colour": "red" }),
            "colour",
        ),
    ] {
        for method in [Method::POST, Method::PUT] {
            let route = if method == Method::POST {
                path.clone()
            } else {
                format!("{path}/may-summit-on-syria-is-impossible-says-russian-official")
            };
            let (status, ct, body) =
                call(server.authed(method.clone(), &route).json(&payload)).await;
            assert_problem(status, &ct, &body, 400);
            assert_eq!(body["field"], field, "{method} {payload}: {body}");
        }
    }
    let (status, ct, body) = call(
        server
            .authed(Method::POST, &path)
            .header("Idempotency-Key", "has space")
            .json(&entry),
    )
    .await;
    assert_problem(status, &ct, &body, 400);
    assert_eq!(
        server.head().await,
        SEED + 3,
        "no refused request made an event"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_is_off_without_a_token() {
    let site = TestSite::with_token(None);
    let server = site.start().await;
    let entry = json!({ "title": "Nope", "body": "Text." });
    for (method, route) in [
        (Method::POST, format!("/stories/{LIVE}/entries")),
        (Method::PUT, format!("/stories/{LIVE}/entries/x")),
        (Method::DELETE, format!("/stories/{LIVE}/entries/x")),
    ] {
        for auth in [None, Some(format!("Bearer {TOKEN}"))] {
            let mut req = server
                .http
                .request(method.clone(), server.url(&route))
                .json(&entry);
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            let (status, ct, body) = call(req).await;
            assert_problem(status, &ct, &body, 403);
            assert!(
                body["detail"].as_str().unwrap().contains("LIVEFEED_TOKEN"),
                "the message says how to turn publishing on: {body}"
            );
        }
    }
    assert_eq!(server.head().await, SEED);
    // Reading still works.
    assert_eq!(
        server.get(&format!("/feeds/{LIVE}.rss")).await.status(),
        200
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_a_report_on_disk_relays_create_update_and_delete() {
    let site = TestSite::new();
    let server = site.start().await;
    let data = livefeed::ingest::site::Site::load(&site.data(), None).unwrap();
    let by_title = |t: &str| {
        data.story(LIVE)
            .unwrap()
            .entries
            .iter()
            .find(|e| e.title.contains(t))
            .unwrap_or_else(|| panic!("no seed entry {t:?}"))
            .clone()
    };
    let corrected = by_title("History of Syria");
    let removed = by_title("Government in favour of easing");
    // An API entry on the same story is left alone by report changes.
    let api = server.publish(LIVE, "Published by hand", "Text.").await;

    let path = site.data().join(format!("{LIVE}.txt"));
    let mut report = std::fs::read_to_string(&path).unwrap();
    let new_entry = "Putin and Cameron agree to keep talking\n\n\
        A Kremlin spokesman said the two leaders would speak again before the G8 summit.\n\n\n";
    report = report.replacen(
        "Live updates\n\n",
        &format!("Live updates\n\n{new_entry}"),
        1,
    );
    let sentence = "in Sochi, Russia.\n";
    assert!(report.contains(sentence));
    report = report.replacen(
        sentence,
        "in Sochi, Russia. He spoke for about ten minutes.\n",
        1,
    );
    let from = report
        .find("Government in favour of easing EU arms embargo")
        .unwrap();
    let to = report
        .find("David Cameron talks Syria with Russian president")
        .unwrap();
    report.replace_range(from..to, "");
    std::fs::write(&path, report).unwrap();

    let events = server.wait_for_events(SEED + 1, 3).await;
    assert_eq!(
        seqs(&events),
        vec![SEED + 2, SEED + 3, SEED + 4],
        "{events:#?}"
    );
    let summary: BTreeSet<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["op"].as_str().unwrap(),
                e["entry"]["id"].as_str().unwrap(),
            )
        })
        .collect();
    let new_id = format!("{}putin-and-cameron-agree-to-keep-talking", {
        let id = &corrected.id;
        &id[..id.rfind('/').unwrap() + 1]
    });
    assert_eq!(
        summary,
        BTreeSet::from([
            ("create", new_id.as_str()),
            ("update", corrected.id.as_str()),
            ("delete", removed.id.as_str()),
        ]),
        "{events:#?}"
    );
    assert!(events.iter().all(|e| e["story"] == LIVE));
    let update = &events
        .iter()
        .find(|e| e["op"] == "update")
        .expect("an update")["entry"];
    assert!(
        update["content_html"]
            .as_str()
            .unwrap()
            .contains("He spoke for about ten minutes."),
        "{update}"
    );
    assert_eq!(update["title"], corrected.title.as_str());
    assert_eq!(
        update["published"],
        corrected
            .published
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "a correction keeps the publication time"
    );
    // Nothing else was relayed (no spurious updates of untouched entries).
    let (_, body) = server.live(&format!("after={}&timeout=1", SEED + 4)).await;
    assert_eq!(body["events"], json!([]), "{body}");

    // The feeds follow.
    let feed = text(&server, &format!("/feeds/{LIVE}.atom")).await;
    assert!(feed.contains(&new_id));
    assert!(feed.contains("He spoke for about ten minutes."));
    // Only its RFC 6721 tombstone names it.
    let tombstone = format!("ref=\"{}\"", removed.id);
    assert!(feed.contains(&tombstone));
    assert!(!feed.replace(&tombstone, "").contains(&removed.id));
    assert!(
        feed.contains(api["id"].as_str().unwrap()),
        "the API entry stays"
    );
    assert_eq!(feed.matches(corrected.id.as_str()).count(), 1);
    let page = text(&server, &format!("/stories/{LIVE}")).await;
    assert!(!page.contains(&format!("id=\"{}\"", removed.anchor)));
    assert!(page.contains("id=\"putin-and-cameron-agree-to-keep-talking\""));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_every_event_is_kept_and_seq_continues() {
    let site = TestSite::new();
    let server = site.start().await;
    let a = server.publish(LIVE, "Before restart A", "Text.").await;
    let b = server.publish(ARTICLE, "Before restart B", "Text.").await;
    let (status, _, _) = call(
        server
            .authed(
                Method::PUT,
                &format!(
                    "/stories/{LIVE}/entries/{}",
                    anchor(a["url"].as_str().unwrap())
                ),
            )
            .json(&json!({ "title": "Before restart A, edited", "body": "Text." })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = call(server.authed(
        Method::DELETE,
        &format!(
            "/stories/{ARTICLE}/entries/{}",
            anchor(b["url"].as_str().unwrap())
        ),
    ))
    .await;
    assert_eq!(status, 200);
    let (status, _, keyed) = call(
        server
            .authed(Method::POST, &format!("/stories/{LIVE}/entries"))
            .header("Idempotency-Key", "survives-restarts")
            .json(&json!({ "title": "Keyed", "body": "Text." })),
    )
    .await;
    assert_eq!(status, 201, "{keyed}");
    let head = SEED + 5;
    let before = server.events_after(0).await;
    assert_eq!(seqs(&before), (1..=head).collect::<Vec<_>>());
    let feeds_before: Vec<(String, Vec<u8>)> = {
        let mut v = Vec::new();
        for n in feed_names() {
            let bytes = server
                .get(&format!("/feeds/{n}"))
                .await
                .bytes()
                .await
                .unwrap();
            v.push((n, bytes.to_vec()));
        }
        v
    };

    // A waiting long-poll is answered when the server shuts down.
    let url = server.url(&format!("/live?after={head}&timeout=30"));
    let http = server.http.clone();
    let waiting = tokio::spawn(async move {
        let res = http.get(url).send().await.unwrap();
        (res.status(), res.json::<Value>().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = Instant::now();
    server.stop().await;
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["events"], json!([]));
    assert_eq!(body["next"], head);
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );

    let server = site.start().await;
    assert_eq!(server.head().await, head);
    let after = server.events_after(0).await;
    assert_eq!(after, before, "every event is kept, with the same seq");
    for (name, bytes) in &feeds_before {
        let res = server.get(&format!("/feeds/{name}")).await;
        assert_eq!(header(&res, "x-livefeed-seq"), head.to_string());
        assert!(
            res.bytes().await.unwrap() == bytes[..],
            "{name} is the same after a restart"
        );
    }
    // The retried keyed publish still gets its first answer.
    let (status, _, retry) = call(
        server
            .authed(Method::POST, &format!("/stories/{LIVE}/entries"))
            .header("Idempotency-Key", "survives-restarts")
            .json(&json!({ "title": "Keyed", "body": "Text." })),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(retry, keyed);
    assert_eq!(server.head().await, head);
    // New publishes continue from the next seq.
    let c = server.publish(LIVE, "After restart", "Text.").await;
    assert_eq!(c["seq"], head + 1);
    let again = server.events_after(head).await;
    assert_eq!(seqs(&again), vec![head + 1]);
    server.stop().await;

    // And once more, the seed is not relayed again and nothing is lost.
    let server = site.start().await;
    let all = server.events_after(0).await;
    assert_eq!(seqs(&all), (1..=head + 1).collect::<Vec<_>>());
    assert_eq!(all[..before.len()], before[..]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_long_poll_clients_each_get_all_fifty_publishes_in_order() {
    const CLIENTS: usize = 200;
    const PER_HTTP_CLIENT: usize = 4;
    const PUBLISHERS: u64 = 5;
    const PUBLISHES: u64 = 50;
    let site = TestSite::new();
    let server = site.start().await;
    let last = SEED + PUBLISHES;

    let started = std::sync::Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let mut clients = Vec::new();
    let mut http = common::client();
    for i in 0..CLIENTS {
        if i % PER_HTTP_CLIENT == 0 {
            http = common::client();
        }
        let (http, base, started) = (http.clone(), server.base.clone(), started.clone());
        clients.push(tokio::spawn(async move {
            // A first answer at once (the connection is up), then wait for the publishes.
            let first: Value = http
                .get(format!("{base}/live?after={SEED}&timeout=0"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(first["events"], json!([]));
            started.wait().await;
            let mut cursor = SEED;
            let mut got = Vec::new();
            while cursor < last {
                let res = http
                    .get(format!("{base}/live?after={cursor}&timeout=10"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
                let body: Value = res.json().await.unwrap();
                got.extend(seqs(body["events"].as_array().unwrap()));
                cursor = body["next"].as_u64().unwrap();
            }
            got
        }));
    }
    started.wait().await;
    // Give the clients a moment to be waiting, so the publishes fan out to held requests.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let server_base = server.base.clone();
            tokio::spawn(async move {
                let http = common::client();
                let mut acked = Vec::new();
                for i in 0..PUBLISHES / PUBLISHERS {
                    let res = http
                        .post(format!("{server_base}/stories/{LIVE}/entries"))
                        .bearer_auth(TOKEN)
                        .json(&json!({ "title": format!("Fan-out {p}-{i}"), "body": "Text." }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 201);
                    let ack: Value = res.json().await.unwrap();
                    acked.push(ack["seq"].as_u64().unwrap());
                }
                acked
            })
        })
        .collect();
    let mut acked = BTreeSet::new();
    for p in publishers {
        acked.extend(p.await.unwrap());
    }
    assert_eq!(acked, (SEED + 1..=last).collect::<BTreeSet<_>>());

    let expected: Vec<u64> = (SEED + 1..=last).collect();
    let all = tokio::time::timeout(Duration::from_secs(60), async {
        let mut out = Vec::new();
        for c in clients {
            out.push(c.await.unwrap());
        }
        out
    })
    .await
    .expect("every client finishes");
    for (i, got) in all.iter().enumerate() {
        assert_eq!(got, &expected, "client {i}");
    }
    server.stop().await;
}

/// The file log, with appends that fail while `failing` is set (a full or broken disk).
struct FlakyStore {
    inner: Box<dyn livefeed::log::store::Store>,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl livefeed::log::store::Store for FlakyStore {
    fn load(
        &mut self,
    ) -> Result<livefeed::log::store::Recovered, livefeed::log::store::StoreError> {
        self.inner.load()
    }

    fn append(
        &mut self,
        after: u64,
        events: &[livefeed::log::event::Event],
    ) -> Result<(), livefeed::log::store::StoreError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(livefeed::log::store::StoreError::Io {
                path: "events.log".into(),
                source: std::io::Error::other("disk full"),
            });
        }
        self.inner.append(after, events)
    }

    fn reader(&self) -> std::sync::Arc<dyn livefeed::log::store::Reader> {
        self.inner.reader()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_that_failed_to_reach_the_disk_is_never_acknowledged() {
    let site = TestSite::new();
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store = FlakyStore {
        inner: livefeed::log::file_store(&site.log()),
        failing: failing.clone(),
    };
    let server = site.start_with(Box::new(store)).await;
    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let send = |server: &Server| {
        server
            .authed(Method::POST, &format!("/stories/{LIVE}/entries"))
            .header("Idempotency-Key", "lost-write")
            .json(&json!({ "title": "Never written", "body": "Text." }))
    };
    let (status, ct, body) = call(send(&server)).await;
    assert_problem(status, &ct, &body, 503);
    // A retry must not be told that the unwritten publish succeeded.
    let (status, _, body) = call(send(&server)).await;
    assert_ne!(
        status, 201,
        "a retry acknowledged an event that is not on disk: {body}"
    );
    // Still serving reads, degraded; not ready for publishes.
    let health = server.get("/healthz").await;
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(server.get("/readyz").await.status(), 503);
    let (_, live) = server.live("after=0&timeout=0").await;
    assert_eq!(live["head"], SEED, "nothing unwritten is visible");
    let feed = text(&server, &format!("/feeds/{LIVE}.json")).await;
    assert!(!feed.contains("Never written"));
    server.stop().await;

    // After a restart on a working disk, the same key publishes for real.
    let server = site.start().await;
    assert_eq!(server.head().await, SEED);
    let (status, _, body) = call(send(&server)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["seq"], SEED + 1);
    server.stop().await;
}

/// `GET path` with only `If-Modified-Since` (no ETag): the status, `Last-Modified` and body.
async fn get_if_modified_since(server: &Server, path: &str, since: &str) -> (u16, String, String) {
    let res = server
        .http
        .get(server.url(path))
        .header("if-modified-since", since)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let last_modified = header(&res, "last-modified").to_string();
    (status, last_modified, res.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_modified_since_alone_never_hides_a_version_made_in_the_same_second() {
    let site = TestSite::new();
    let server = site.start().await;
    let path = format!("/feeds/{LIVE}.json");
    let mut shared_date = String::new();
    // Two publishes within one second (retried when a second boundary falls between them).
    for attempt in 0.. {
        assert!(
            attempt < 10,
            "never managed two publishes within one second"
        );
        // Start early in a second, so both publishes fit in it.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        tokio::time::sleep(Duration::from_nanos(
            1_000_000_000 - u64::from(now.subsec_nanos()),
        ))
        .await;
        let first = server
            .publish(LIVE, &format!("First {attempt}"), "One.")
            .await;
        let res = server.get(&path).await;
        let first_modified = header(&res, "last-modified").to_string();
        let first_body = res.text().await.unwrap();
        assert!(first_body.contains(&format!("First {attempt}")));
        let second = server
            .publish(LIVE, &format!("Second {attempt}"), "Two.")
            .await;
        let (status, second_modified, body) =
            get_if_modified_since(&server, &path, &first_modified).await;
        if second_modified != first_modified {
            // A second boundary fell between them: the dates differ, nothing to prove.
            assert_eq!(status, 200);
            continue;
        }
        assert!(first["seq"].as_u64() < second["seq"].as_u64());
        assert_eq!(
            status, 200,
            "a client holding the first version must get the second, made in the same second"
        );
        assert!(body.contains(&format!("Second {attempt}")), "{body}");
        shared_date = first_modified;
        break;
    }
    // Nor after a restart, which has only the log to go by.
    server.stop().await;
    let server = site.start().await;
    let (status, last_modified, _) = get_if_modified_since(&server, &path, &shared_date).await;
    assert_eq!(last_modified, shared_date);
    assert_eq!(status, 200, "after a restart");
    // Once the feed moves on to a later second, its own date revalidates again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    server.publish(LIVE, "Third", "Three.").await;
    let res = server.get(&path).await;
    let third_modified = header(&res, "last-modified").to_string();
    let (status, _, _) = get_if_modified_since(&server, &path, &third_modified).await;
    assert_eq!(status, 304);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_modified_comes_from_the_content_and_survives_a_restart() {
    let site = TestSite::new();
    let server = site.start().await;
    server.publish(LIVE, "Before the restart", "Body.").await;
    let mut before = Vec::new();
    for name in feed_names()
        .iter()
        .map(|n| format!("/feeds/{n}"))
        .chain(["/".to_string(), format!("/stories/{LIVE}")])
    {
        let res = server.get(&name).await;
        before.push((name, header(&res, "last-modified").to_string()));
    }
    server.stop().await;
    // Rendering at a later second must not change the date.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let server = site.start().await;
    for (name, last_modified) in &before {
        let res = server.get(name).await;
        assert_eq!(
            header(&res, "last-modified"),
            last_modified,
            "{name}: Last-Modified changed across a restart"
        );
        // The restarted server can tell its version is the only one with that date.
        let (status, _, _) = get_if_modified_since(&server, name, last_modified).await;
        assert_eq!(status, 304, "{name}");
    }
    server.stop().await;
}

/// Issue 8, point 10: an `Idempotency-Key` is bound to its request (story, method, body). The
/// same key with another request is 422 and publishes nothing; a retry of the same request
/// replays the first answer, also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_is_bound_to_its_request() {
    let site = TestSite::new();
    let server = site.start().await;
    let live = format!("/stories/{LIVE}/entries");
    let article = format!("/stories/{ARTICLE}/entries");
    let send = |server: &Server, path: &str, key: &str, entry: &Value| {
        server
            .authed(Method::POST, path)
            .header("Idempotency-Key", key)
            .json(entry)
    };
    let first_entry = json!({ "title": "Bound key", "body": "The first body." });
    let (status, _, first) = call(send(&server, &live, "bound-1", &first_entry)).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(server.head().await, SEED + 1);

    // Same key, another body: 422, problem+json, nothing published.
    let other_body = json!({ "title": "Bound key", "body": "Another body." });
    let (status, ct, body) = call(send(&server, &live, "bound-1", &other_body)).await;
    assert_problem(status, &ct, &body, 422);
    assert_eq!(body["field"], "Idempotency-Key", "{body}");
    // Same key and body, another story: 422 too.
    let (status, ct, body) = call(send(&server, &article, "bound-1", &first_entry)).await;
    assert_problem(status, &ct, &body, 422);
    assert_eq!(server.head().await, SEED + 1, "a refused key made no event");

    // The same request again: the first answer, replayed.
    let res = send(&server, &live, "bound-1", &first_entry)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "idempotent-replayed"), "true");
    let again: Value = res.json().await.unwrap();
    assert_eq!(again, first);
    // Cleaning makes the same body: trailing whitespace in the title is the same request.
    let spaced = json!({ "title": "Bound key  ", "body": "The first body." });
    let (status, _, again) = call(send(&server, &live, "bound-1", &spaced)).await;
    assert_eq!((status.as_u16(), &again), (201, &first));
    server.stop().await;

    // After a restart the binding holds: a retry replays, another body is refused.
    let server = site.start().await;
    let res = send(&server, &live, "bound-1", &first_entry)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "idempotent-replayed"), "true");
    let again: Value = res.json().await.unwrap();
    assert_eq!(again, first);
    let (status, ct, body) = call(send(&server, &live, "bound-1", &other_body)).await;
    assert_problem(status, &ct, &body, 422);
    assert_eq!(server.head().await, SEED + 1);
    let items = json_feed_items(&server, LIVE).await;
    assert_eq!(items.iter().filter(|(_, t)| t == "Bound key").count(), 1);
    server.stop().await;
}

/// Connections are spread over several connection threads, each with its own runtime
/// (`Config::workers`): waiting long-polls and SSE streams on every one of them get a publish
/// made through a connection on another, and a feed read on any of them shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_reaches_waiters_and_readers_on_every_connection_thread() {
    const WORKERS: usize = 3;
    let mut site = TestSite::new();
    site.config.workers = WORKERS;
    let server = site.start().await;
    // One client per request: a connection each, handed to the threads in turn.
    let fresh_client = || {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    };
    let polls: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (http, url) = (
                fresh_client(),
                server.url(&format!("/live?after={SEED}&timeout=30")),
            );
            tokio::spawn(async move {
                let body: Value = http.get(url).send().await.unwrap().json().await.unwrap();
                seqs(body["events"].as_array().unwrap())
            })
        })
        .collect();
    let mut streams = Vec::new();
    for _ in 0..WORKERS {
        streams.push(Sse::connect(&server, &format!("after={SEED}"), None).await);
    }
    // Let the long-polls reach the server and start waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        polls.iter().all(|p| !p.is_finished()),
        "the long-polls wait"
    );
    let ack = server
        .publish(LIVE, "Across threads", "Every thread hears it.")
        .await;
    let seq = ack["seq"].as_u64().unwrap();
    for poll in polls {
        assert_eq!(poll.await.unwrap(), vec![seq]);
    }
    for stream in &mut streams {
        assert_eq!(stream.event().await.seq, seq);
    }
    for _ in 0..WORKERS {
        let res = fresh_client()
            .get(server.url("/feeds/all.atom"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-livefeed-seq"], seq.to_string().as_str());
        assert!(res.text().await.unwrap().contains("Across threads"));
    }
    server.stop().await;
}
