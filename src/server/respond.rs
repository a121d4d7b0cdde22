//! Response building: problem bodies, JSON, cached files with validators and gzip.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use std::convert::Infallible;

use crate::relay::hub::{CachedFile, FileHeaders};

pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// Sets a header from a value we built ourselves (always valid); never panics.
pub fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Read-only routes may be polled from other origins.
pub fn cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("ETag, Last-Modified, X-Livefeed-Seq"),
    );
}

/// An `application/problem+json` (RFC 9457) response. `extra` adds members (e.g. `oldest`).
pub fn problem(status: StatusCode, detail: &str, extra: serde_json::Value) -> Response<Body> {
    let mut body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    if let (Some(obj), serde_json::Value::Object(more)) = (body.as_object_mut(), extra) {
        obj.extend(more);
    }
    let mut res = Response::new(full(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut res = Response::new(full(value.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub fn method_not_allowed(allow: &str) -> Response<Body> {
    let mut res = problem(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("this route allows {allow}"),
        serde_json::Value::Null,
    );
    set(res.headers_mut(), header::ALLOW, allow);
    res
}

pub fn not_found(what: &str) -> Response<Body> {
    problem(StatusCode::NOT_FOUND, what, serde_json::Value::Null)
}

/// True when the client takes gzip (`Accept-Encoding: gzip`, not `gzip;q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').any(|part| {
                let mut it = part.split(';');
                let coding = it.next().unwrap_or("").trim();
                let q_zero = it.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q == 0.0)
                });
                (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
            })
        })
}

fn etag_matches(headers: &HeaderMap, file: &CachedFile) -> Option<bool> {
    let value = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    Some(value.split(',').map(str::trim).any(|tag| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag == file.etag || tag == file.etag_gzip
    }))
}

fn not_modified_since(headers: &HeaderMap, file: &CachedFile) -> bool {
    let Some(since) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let parse =
        |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%a, %d %b %Y %H:%M:%S GMT").ok();
    match (parse(since), parse(&file.last_modified)) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// The headers every answer for `file` carries, for each of its four forms.
fn file_headers(file: &CachedFile, max_age: u32) -> FileHeaders {
    let common = |etag: &str| {
        let mut h = HeaderMap::with_capacity(12);
        set(&mut h, header::ETAG, etag);
        set(&mut h, header::LAST_MODIFIED, &file.last_modified);
        set(
            &mut h,
            header::CACHE_CONTROL,
            &format!("public, max-age={max_age}"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        set(
            &mut h,
            header::HeaderName::from_static("x-livefeed-seq"),
            &file.seq.to_string(),
        );
        cors(&mut h);
        h
    };
    let full = |etag: &str, body: &Bytes, gzip: bool| {
        let mut h = common(etag);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(file.content_type),
        );
        if gzip {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        set(&mut h, header::CONTENT_LENGTH, &body.len().to_string());
        h
    };
    FileHeaders {
        max_age,
        identity: full(&file.etag, &file.body, false),
        gzip: full(&file.etag_gzip, &file.gzip, true),
        not_modified: common(&file.etag),
        not_modified_gzip: common(&file.etag_gzip),
    }
}

/// Serves a cached file: 304 on a matching `If-None-Match` (or, without one, a satisfied
/// `If-Modified-Since`), gzip when accepted, no body for HEAD. The headers are made once per
/// file version and copied out.
pub fn cached_file(
    method: &Method,
    headers: &HeaderMap,
    file: &CachedFile,
    max_age: u32,
) -> Response<Body> {
    let gzip = accepts_gzip(headers);
    let not_modified = match etag_matches(headers, file) {
        Some(matched) => matched,
        None => not_modified_since(headers, file),
    };
    let made;
    let prepared = match file.headers.get_or_init(|| file_headers(file, max_age)) {
        p if p.max_age == max_age => p,
        _ => {
            made = file_headers(file, max_age);
            &made
        }
    };
    let mut res = Response::new(empty());
    *res.headers_mut() = match (not_modified, gzip) {
        (true, false) => prepared.not_modified.clone(),
        (true, true) => prepared.not_modified_gzip.clone(),
        (false, false) => prepared.identity.clone(),
        (false, true) => prepared.gzip.clone(),
    };
    if not_modified {
        *res.status_mut() = StatusCode::NOT_MODIFIED;
    } else if method != Method::HEAD {
        *res.body_mut() = full(if gzip { &file.gzip } else { &file.body }.clone());
    }
    res
}
