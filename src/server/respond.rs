//! Response building: problem bodies, JSON, cached files with validators and gzip.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use std::convert::Infallible;

use crate::relay::hub::CachedFile;

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

/// Serves a cached file: 304 on a matching `If-None-Match` (or, without one, a satisfied
/// `If-Modified-Since`), gzip when accepted, no body for HEAD.
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
    let (body, etag) = if gzip {
        (&file.gzip, &file.etag_gzip)
    } else {
        (&file.body, &file.etag)
    };
    let mut res = Response::new(empty());
    let h = res.headers_mut();
    set(h, header::ETAG, etag);
    set(h, header::LAST_MODIFIED, &file.last_modified);
    set(
        h,
        header::CACHE_CONTROL,
        &format!("public, max-age={max_age}"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    set(
        h,
        header::HeaderName::from_static("x-livefeed-seq"),
        &file.seq.to_string(),
    );
    cors(h);
    if not_modified {
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        return res;
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    set(h, header::CONTENT_LENGTH, &body.len().to_string());
    if method != Method::HEAD {
        *res.body_mut() = full(body.clone());
    }
    res
}
