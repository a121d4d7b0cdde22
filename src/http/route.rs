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
