//! Response building: problem bodies, JSON, cached files with validators and gzip.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use std::convert::Infallible;

use crate::log::hub::CachedFile;

pub type Body = BoxBody<Bytes, Infallible>;

/// `Cache-Control: max-age` of RFC 5005 archive documents (seconds): a full page changes only
/// when one of its entries is edited or deleted, or once when the next page is cut (see
/// `render::paged`).
pub const ARCHIVE_MAX_AGE: u32 = 86_400;

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

/// True when the client takes gzip (RFC 9110 §12.5.3): `gzip` (or its alias `x-gzip`) listed
/// with a q-value above 0, or not listed and `*` is, with a q-value above 0. So `gzip;q=0, *`
/// is no gzip, and `GZIP;Q=0.5` is gzip. Hand-written because neither `headers` nor `http`
/// has a typed `Accept-Encoding`; every line of the field counts (they form one list).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip: Option<bool> = None;
    let mut star: Option<bool> = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let mut it = part.split(';');
            let coding = it.next().unwrap_or("").trim();
            if coding.is_empty() {
                continue;
            }
            // A q-value we cannot read is taken as 0: better no gzip than gzip unasked.
            let mut q = Some(1.0f32);
            for param in it {
                if let Some((name, value)) = param.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("q") {
                        q = value
                            .trim()
                            .parse::<f32>()
                            .ok()
                            .filter(|q| (0.0..=1.0).contains(q));
                    }
                }
            }
            let ok = q.is_some_and(|q| q > 0.0);
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                // Listed more than once: any refusal wins.
                gzip = Some(gzip.unwrap_or(true) && ok);
            } else if coding == "*" {
                star = Some(star.unwrap_or(true) && ok);
            }
        }
    }
    gzip.or(star).unwrap_or(false)
}

/// Whether `If-None-Match` matches the file (weak comparison, RFC 9110 §13.1.2), `None` when
/// the request has none. Every line of the field counts: they form one list. A field that is
/// not a valid list matches nothing (the full answer is always safe).
fn etag_matches(headers: &HeaderMap, file: &CachedFile) -> Option<bool> {
    use headers::HeaderMapExt;
    let mut values = headers.get_all(header::IF_NONE_MATCH).iter();
    match (values.next(), values.next()) {
        (None, _) => return None,
        // The usual case, a client sending back the one tag it was given: a match without
        // parsing the list (any other form is parsed below).
        (Some(v), None)
            if v.as_bytes() == file.etag.as_bytes()
                || v.as_bytes() == file.etag_gzip.as_bytes() =>
        {
            return Some(true);
        }
        _ => {}
    }
    let Some(condition) = headers.typed_get::<headers::IfNoneMatch>() else {
        return Some(false);
    };
    let matches = |tag: &str| {
        tag.parse::<headers::ETag>()
            .is_ok_and(|tag| !condition.precondition_passes(&tag))
    };
    Some(matches(&file.etag) || matches(&file.etag_gzip))
}

/// Whether `If-Modified-Since` says the client holds this version. Honoured only when the
/// version is the only one ever served with its `Last-Modified` second (`file.ims`): two
/// versions made within one second share the date, and a client holding the older one must
/// not get a 304 for the newer. The date may come in any of the three formats RFC 9110
/// §5.6.7 allows (`httpdate` reads them all).
fn not_modified_since(headers: &HeaderMap, file: &CachedFile) -> bool {
    if !file.ims {
        return false;
    }
    let Some(since) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
    else {
        return false;
    };
    file.modified <= since
}

/// The headers every answer for `file` carries, for each of its four forms.
/// The headers of every answer a cached file gets, so serving one copies out a template;
/// kept in the file's transport slot.
#[derive(Debug)]
struct FileHeaders {
    /// The `Cache-Control: max-age` they were made with.
    max_age: u32,
    /// Whether they carry a `Link` header (see [`cached_file`]).
    linked: bool,
    identity: HeaderMap,
    gzip: HeaderMap,
    not_modified: HeaderMap,
    not_modified_gzip: HeaderMap,
}

fn file_headers(file: &CachedFile, max_age: u32, link: Option<HeaderValue>) -> FileHeaders {
    let common = |etag: &str| {
        let mut h = HeaderMap::with_capacity(12);
        if let Some(link) = &link {
            h.insert(header::LINK, link.clone());
        }
        set(&mut h, header::ETAG, etag);
        set(
            &mut h,
            header::LAST_MODIFIED,
            &httpdate::fmt_http_date(file.modified),
        );
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
        linked: link.is_some(),
        identity: full(&file.etag, &file.body, false),
        gzip: full(&file.etag_gzip, &file.gzip, true),
        not_modified: common(&file.etag),
        not_modified_gzip: common(&file.etag_gzip),
    }
}

/// Serves a cached file: 304 on a matching `If-None-Match` (or, without one, a satisfied
/// `If-Modified-Since`), gzip when accepted, no body for HEAD. The headers are made once per
/// file version and copied out; `link`, when given, makes the `Link` header they all carry.
pub fn cached_file(
    method: &Method,
    headers: &HeaderMap,
    file: &CachedFile,
    max_age: u32,
    link: Option<&dyn Fn() -> Option<HeaderValue>>,
) -> Response<Body> {
    let gzip = accepts_gzip(headers);
    let not_modified = match etag_matches(headers, file) {
        Some(matched) => matched,
        None => not_modified_since(headers, file),
    };
    let made;
    let make = || FileHeaders {
        // Asked for, even if none could be made: not made again on every request.
        linked: link.is_some(),
        ..file_headers(file, max_age, link.and_then(|l| l()))
    };
    let kept = file
        .headers
        .get_or_init(|| Box::new(make()))
        .downcast_ref::<FileHeaders>();
    let prepared = match kept {
        Some(p) if p.max_age == max_age && p.linked == link.is_some() => p,
        _ => {
            made = make();
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
