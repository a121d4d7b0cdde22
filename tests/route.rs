//! The router as a pure function (`http::route::route`): method, path and query to a route or a
//! problem, over percent-encoded paths, `+`, `..`, empty segments, trailing slashes, and the
//! methods each route allows. No server: the router does no I/O.

use livefeed::http::route::*;
use livefeed::layout::{FileKey, Target};
use livefeed::render::Format;

fn get(path: &str) -> Result<Route, Problem> {
    route(&Method::GET, path, None, None)
}

fn status(r: Result<Route, Problem>) -> StatusCode {
    r.map_or_else(|p| p.status, |_| StatusCode::OK)
}

#[test]
fn files_by_every_path_they_answer_at() {
    let feed = |s: &str, f| Ok(Route::File(FileKey::Feed(s.into(), f)));
    let page = |s: &str| Ok(Route::File(FileKey::Page(s.into())));
    assert_eq!(get("/"), Ok(Route::File(FileKey::Index)));
    assert_eq!(get("/index.html"), Ok(Route::File(FileKey::Index)));
    assert_eq!(get("/feeds/all.rss"), feed("all", Format::Rss));
    assert_eq!(get("/feeds/a%2Db.json"), feed("a-b", Format::Json));
    assert_eq!(
        get("/feeds/a/archive/2.atom"),
        Ok(Route::File(FileKey::Archive("a".into(), 2, Format::Atom)))
    );
    assert_eq!(get("/stories/a-b/"), page("a-b"));
    assert_eq!(get("/stories/a-b"), page("a-b"));
    assert_eq!(get("/stories/a-b/index.html"), page("a-b"));
    assert_eq!(get("/stories/a%2Db/"), page("a-b"));
    // `+` is itself in a path (not a space), encoded or not.
    assert_eq!(get("/stories/a+b/"), page("a+b"));
    assert_eq!(get("/stories/a%2Bb/"), page("a+b"));
    assert_eq!(get("/feeds/a+b.rss"), feed("a+b", Format::Rss));
    assert_eq!(head("/feeds/all.rss"), feed("all", Format::Rss));
}

fn head(path: &str) -> Result<Route, Problem> {
    route(&Method::HEAD, path, None, None)
}

#[test]
fn traversal_empty_segments_and_bad_encoding_name_nothing() {
    for path in [
        "/feeds/../Cargo.toml",
        "/feeds/%2e%2e/Cargo.toml",
        "/feeds/..%2fCargo.toml",
        "/feeds/..%5c..%5cCargo.toml",
        "/feeds/all.rss%00.txt",
        "/feeds/%252e%252e%252fCargo.toml",
        "/stories/..%2F..%2Fsrc%2Fmain.rs",
        "/stories/./",
        "/stories//",
        "/stories/",
        "//",
        "//feeds/all.rss",
        "/feeds//all.rss",
        "/feeds/all.rss/",
        "/live/",
        "/live/events/",
        "/healthz/",
        "/nothing",
        "",
        "*",
    ] {
        assert_eq!(status(get(path)), StatusCode::NOT_FOUND, "{path}");
    }
    for path in [
        "/feeds/%ff%fe.rss",
        "/stories/%c3/",
        "/stories/a/entries/%80",
    ] {
        assert_eq!(status(get(path)), StatusCode::BAD_REQUEST, "{path}");
    }
}

#[test]
fn publishing_routes_decode_the_entry_id_as_one_segment() {
    let post = route(&Method::POST, "/stories/s/entries", None, None);
    assert_eq!(post, Ok(Route::Publish("s".into())));
    let id = "tag:example.org,2024:s/a+b c";
    let path = Target::Entry("s".into(), id.into()).path();
    assert!(
        !path.contains(' ') && path.matches('/').count() == 4,
        "{path}"
    );
    assert_eq!(
        route(&Method::PUT, &path, None, None),
        Ok(Route::Edit("s".into(), id.into()))
    );
    assert_eq!(
        route(
            &Method::DELETE,
            "/stories/s/entries/tag%3Ax%2Fy",
            None,
            None
        ),
        Ok(Route::Delete("s".into(), "tag:x/y".into()))
    );
    assert_eq!(
        route(&Method::PUT, "/stories/s", None, None),
        Ok(Route::Lifecycle("s".into()))
    );
    // A preflight for PUT on a story is publishing; any other is the read side's.
    assert_eq!(
        route(&Method::OPTIONS, "/stories/s", None, Some("PUT")),
        Ok(Route::PublishPreflight("s".into()))
    );
    assert_eq!(
        route(&Method::OPTIONS, "/stories/s", None, Some("GET")),
        Ok(Route::ReadPreflight("story"))
    );
    assert_eq!(
        route(&Method::OPTIONS, "/stories/s/entries", None, None),
        Ok(Route::PublishPreflight("s".into()))
    );
    assert_eq!(
        route(&Method::PUT, "/stories/s/", None, None).map_err(|p| p.allow),
        Err(Some(READ_METHODS)),
        "the page's own path does not take a lifecycle change"
    );
}

#[test]
fn wrong_methods_get_405_with_allow() {
    let cases = [
        (Method::POST, "/feeds/all.rss", READ_METHODS, Side::Read),
        (Method::DELETE, "/", READ_METHODS, Side::Read),
        (Method::POST, "/stories/s", READ_METHODS, Side::Read),
        (
            Method::GET,
            "/stories/s/entries",
            PUBLISH_METHODS,
            Side::Publish,
        ),
        (
            Method::POST,
            "/stories/s/entries/x",
            ENTRY_METHODS,
            Side::Publish,
        ),
        (Method::HEAD, "/live", LIVE_METHODS, Side::Read),
        (Method::POST, "/live/events", LIVE_METHODS, Side::Read),
        (Method::POST, "/healthz", OPS_METHODS, Side::Other),
        (Method::OPTIONS, "/metrics", OPS_METHODS, Side::Other),
        (Method::PUT, "/readyz", OPS_METHODS, Side::Other),
    ];
    for (method, path, allow, side) in cases {
        let p = route(&method, path, None, None).unwrap_err();
        assert_eq!(p.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!((p.allow, p.side), (Some(allow), side), "{method} {path}");
    }
    // HEAD is a read; OPTIONS on a read route is its preflight.
    assert_eq!(head("/healthz"), Ok(Route::Healthz));
    assert_eq!(
        head("/stories/s/"),
        Ok(Route::File(FileKey::Page("s".into())))
    );
    for (path, label) in [
        ("/", "index"),
        ("/feeds/all.json", "feed"),
        ("/stories/s/", "story"),
        ("/live", "live"),
        ("/live/events", "sse"),
    ] {
        assert_eq!(
            route(&Method::OPTIONS, path, None, None),
            Ok(Route::ReadPreflight(label)),
            "{path}"
        );
    }
    // The hub answers its own methods.
    assert_eq!(
        route(&Method::PATCH, "/websub", None, None),
        Ok(Route::WebSub)
    );
}

#[test]
fn live_routes_parse_their_query() {
    let q = |s| route(&Method::GET, "/live", Some(s), None);
    let Ok(Route::LongPoll(parsed)) = q("after=5&story=a-b") else {
        panic!("not a long-poll");
    };
    assert_eq!(
        (parsed.after, parsed.story.as_deref()),
        (Some(5), Some("a-b"))
    );
    let bad = q("aftr=5").unwrap_err();
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.extra["parameter"], "aftr");
    assert_eq!(bad.side, Side::Read);
    assert!(matches!(
        route(&Method::GET, "/live/events", None, None),
        Ok(Route::Events(_))
    ));
    assert!(matches!(
        route(&Method::GET, "/live%2Fevents", None, None),
        Err(Problem {
            status: StatusCode::NOT_FOUND,
            ..
        })
    ));
}

#[test]
fn sides_and_labels() {
    assert_eq!(
        get("/feeds/a/archive/0.rss").unwrap().label(),
        "feed_archive"
    );
    assert_eq!(get("/stories/s/").unwrap().label(), "story");
    assert_eq!(get("/metrics").unwrap().side(), Side::Other);
    // Errors on read paths stay on the read side (their answers carry CORS), never on
    // publishing paths.
    assert_eq!(get("/feeds/../x").unwrap_err().side, Side::Read);
    assert_eq!(get("/stories/a/b/c").unwrap_err().side, Side::Read);
    assert_eq!(get("/stories/a/entries/x/y").unwrap_err().side, Side::Other);
    assert_eq!(get("/nothing").unwrap_err().label, "other");
}
