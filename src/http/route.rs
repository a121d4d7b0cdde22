//! The router: a request's route is a pure function of its method, its path and its query
//! (and, for a CORS preflight, the method it asks about). No I/O, no server state: what the
//! path names is `layout`'s ([`Target`]); what each method does there is decided here;
//! `super::handle` carries it out.

pub use hyper::{Method, StatusCode};

use super::query::LiveQuery;
use crate::layout::{FileKey, PathError, Target};

/// What a request asks for, once its path, method and query were found acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET`/`HEAD` of a rendered file (it may still not exist: 404 then).
    File(FileKey),
    /// `OPTIONS` on a read route: the CORS preflight of the read side (with the label of the
    /// route it asks about).
    ReadPreflight(&'static str),
    /// `OPTIONS` on a publishing route: answered only for origins allowed to publish.
    PublishPreflight(String),
    /// `POST /stories/{story}/entries`.
    Publish(String),
    /// `PUT /stories/{story}/entries/{id}`.
    Edit(String, String),
    /// `DELETE /stories/{story}/entries/{id}`.
    Delete(String, String),
    /// `PUT /stories/{story}`: the story's lifecycle.
    Lifecycle(String),
    /// `GET /live`.
    LongPoll(LiveQuery),
    /// `GET /live/events`.
    Events(LiveQuery),
    /// `/websub`, any method (the hub answers them).
    WebSub,
    Healthz,
    Readyz,
    Metrics,
}

/// Which side a route is on: read routes carry the CORS headers (errors included); publishing
/// routes carry them only for `--cors-publish-origin` origins (SECURITY.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Read,
    Publish,
    Other,
}

/// A request the router refuses: a problem+json answer (RFC 9457).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: String,
    /// Extra members of the body (`{"parameter": …}`), or `Null`.
    pub extra: serde_json::Value,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
    /// The `route` label of `livefeed_http_requests_total`.
    pub label: &'static str,
    pub side: Side,
}

impl Problem {
    fn not_allowed(allow: &'static str, label: &'static str, side: Side) -> Problem {
        Problem {
            status: StatusCode::METHOD_NOT_ALLOWED,
            detail: format!("this route allows {allow}"),
            extra: serde_json::Value::Null,
            allow: Some(allow),
            label,
            side,
        }
    }
}

/// Methods of each kind of route, as `Allow` names them.
pub const READ_METHODS: &str = "GET, HEAD, OPTIONS";
pub const LIVE_METHODS: &str = "GET, OPTIONS";
pub const PUBLISH_METHODS: &str = "POST, OPTIONS";
pub const ENTRY_METHODS: &str = "PUT, DELETE, OPTIONS";
pub const OPS_METHODS: &str = "GET, HEAD";

impl Route {
    /// The `route` label of `livefeed_http_requests_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Route::File(key) => file_label(key),
            Route::ReadPreflight(label) => label,
            Route::PublishPreflight(_)
            | Route::Publish(_)
            | Route::Edit(..)
            | Route::Delete(..) => "publish",
            Route::Lifecycle(_) => "story",
            Route::LongPoll(_) => "live",
            Route::Events(_) => "sse",
            Route::WebSub => "websub",
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
        }
    }

    pub fn side(&self) -> Side {
        match self {
            Route::File(_) | Route::ReadPreflight(_) | Route::LongPoll(_) | Route::Events(_) => {
                Side::Read
            }
            Route::PublishPreflight(_)
            | Route::Publish(_)
            | Route::Edit(..)
            | Route::Delete(..)
            | Route::Lifecycle(_) => Side::Publish,
            Route::WebSub | Route::Healthz | Route::Readyz | Route::Metrics => Side::Other,
        }
    }

    /// The story a publishing route names.
    pub fn story(&self) -> Option<&str> {
        match self {
            Route::PublishPreflight(s)
            | Route::Publish(s)
            | Route::Edit(s, _)
            | Route::Delete(s, _)
            | Route::Lifecycle(s) => Some(s),
            _ => None,
        }
    }
}

fn file_label(key: &FileKey) -> &'static str {
    match key {
        FileKey::Index => "index",
        FileKey::Feed(..) => "feed",
        FileKey::Archive(..) => "feed_archive",
        FileKey::Page(_) => "story",
    }
}

/// Routes a request: its method, its URL path, its query (without `?`), and for an `OPTIONS`
/// the `Access-Control-Request-Method` it carries. Never panics; every refusal is a [`Problem`]:
/// 400 (a path that is not percent-encoded UTF-8, a bad query), 404 (a path that names
/// nothing), 405 with `Allow`.
pub fn route(
    method: &Method,
    path: &str,
    query: Option<&str>,
    preflight: Option<&str>,
) -> Result<Route, Problem> {
    let target = Target::parse(path).map_err(|e| path_problem(&e, path))?;
    let options = method == Method::OPTIONS;
    let read = |key: FileKey| {
        let label = file_label(&key);
        match method {
            _ if options => Ok(Route::ReadPreflight(label)),
            &Method::GET | &Method::HEAD => Ok(Route::File(key)),
            _ => Err(Problem::not_allowed(READ_METHODS, label, Side::Read)),
        }
    };
    match target {
        Target::File(key) => read(key),
        Target::Story(slug) => match method {
            &Method::PUT => Ok(Route::Lifecycle(slug)),
            _ if options && preflight == Some("PUT") => Ok(Route::PublishPreflight(slug)),
            _ => read(FileKey::Page(slug)),
        },
        Target::Entries(slug) => match method {
            _ if options => Ok(Route::PublishPreflight(slug)),
            &Method::POST => Ok(Route::Publish(slug)),
            _ => Err(Problem::not_allowed(
                PUBLISH_METHODS,
                "publish",
                Side::Publish,
            )),
        },
        Target::Entry(slug, id) => match *method {
            _ if options => Ok(Route::PublishPreflight(slug)),
            Method::PUT => Ok(Route::Edit(slug, id)),
            Method::DELETE => Ok(Route::Delete(slug, id)),
            _ => Err(Problem::not_allowed(
                ENTRY_METHODS,
                "publish",
                Side::Publish,
            )),
        },
        Target::Live | Target::LiveEvents => {
            let sse = target == Target::LiveEvents;
            let label = if sse { "sse" } else { "live" };
            if options {
                return Ok(Route::ReadPreflight(label));
            }
            if method != Method::GET {
                return Err(Problem::not_allowed(LIVE_METHODS, label, Side::Read));
            }
            let q = LiveQuery::parse(query.unwrap_or("")).map_err(|e| Problem {
                status: StatusCode::BAD_REQUEST,
                detail: e.to_string(),
                extra: serde_json::json!({ "parameter": e.name }),
                allow: None,
                label,
                side: Side::Read,
            })?;
            Ok(if sse {
                Route::Events(q)
            } else {
                Route::LongPoll(q)
            })
        }
        Target::WebSub => Ok(Route::WebSub),
        Target::Healthz | Target::Readyz | Target::Metrics
            if method != Method::GET && method != Method::HEAD =>
        {
            let label = match target {
                Target::Healthz => "healthz",
                Target::Readyz => "readyz",
                _ => "metrics",
            };
            Err(Problem::not_allowed(OPS_METHODS, label, Side::Other))
        }
        Target::Healthz => Ok(Route::Healthz),
        Target::Readyz => Ok(Route::Readyz),
        Target::Metrics => Ok(Route::Metrics),
    }
}

fn path_problem(e: &PathError, path: &str) -> Problem {
    let (status, detail) = match e {
        PathError::Encoding { .. } => (StatusCode::BAD_REQUEST, e.to_string()),
        PathError::NotFound { .. } => (StatusCode::NOT_FOUND, format!("nothing at {path}")),
    };
    Problem {
        status,
        detail,
        extra: serde_json::Value::Null,
        allow: None,
        label: "other",
        side: if e.read() { Side::Read } else { Side::Other },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Format;

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
}
