//! The publishing routes: `POST /stories/{story}/entries`, `PUT` and `DELETE`
//! `/stories/{story}/entries/{id}`. Bearer token, compared in constant time; JSON bodies
//! checked field by field; answered only once the event is durable and visible.
//!
//! Checks return the finished error response as their `Err`, hence the large `Err` type.
#![allow(clippy::result_large_err)]

use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use subtle::ConstantTimeEq;

use super::App;
use super::respond::{Body, json as json_response, problem, set};
use crate::log::event::Op;
use crate::log::state::EntryInput;
use crate::log::{Ack, ChangeError};

/// Longest title accepted, in characters.
pub const MAX_TITLE: usize = 1000;
/// Longest `Idempotency-Key`.
pub const MAX_KEY: usize = 200;

fn bad_request(detail: &str, field: Option<&str>) -> Response<Body> {
    let extra = field.map_or(Value::Null, |f| json!({ "field": f }));
    problem(StatusCode::BAD_REQUEST, detail, extra)
}

/// Shortest publish token accepted, in characters.
pub const MIN_TOKEN: usize = 16;

/// A publish token the server cannot use.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the publish token must be at least {MIN_TOKEN} characters")]
    TooShort,
    /// A header carries only visible ASCII reliably (RFC 9110 §5.5), so any other character
    /// would make the token one no client can send.
    #[error(
        "the publish token must be visible ASCII characters only (letters, digits, punctuation; no spaces or accents): it is sent in an HTTP header"
    )]
    NotAscii,
}

/// Checks a publish token at start (already trimmed). Never echoes it.
pub fn check_token(token: &str) -> Result<(), TokenError> {
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::NotAscii);
    }
    if token.len() < MIN_TOKEN {
        return Err(TokenError::TooShort);
    }
    Ok(())
}

/// The token of `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 9110
/// §11.1), as the `headers` crate reads it.
fn bearer(headers: &HeaderMap) -> Option<String> {
    use headers::HeaderMapExt;
    let auth = headers.typed_get::<headers::Authorization<headers::authorization::Bearer>>()?;
    Some(auth.token().to_string())
}

/// Checks the bearer token. `Err` is the response to send.
fn authorise(app: &App, headers: &HeaderMap) -> Result<(), Response<Body>> {
    let Some(token) = app.config.current_token() else {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "publishing is off: start the server with LIVEFEED_TOKEN set (or --token-file) to turn it on",
            Value::Null,
        ));
    };
    let given = bearer(headers);
    let ok = given.is_some_and(|g| bool::from(g.trim().as_bytes().ct_eq(token.as_bytes())));
    if ok {
        return Ok(());
    }
    let mut res = problem(
        StatusCode::UNAUTHORIZED,
        "a valid bearer token is required: Authorization: Bearer <token>",
        Value::Null,
    );
    set(
        res.headers_mut(),
        header::WWW_AUTHENTICATE,
        "Bearer realm=\"livefeed\"",
    );
    Err(res)
}

/// Reads a JSON object body within the size limit.
async fn read_json(
    app: &App,
    req: Request<Incoming>,
) -> Result<serde_json::Map<String, Value>, Response<Body>> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the entry as Content-Type: application/json",
            Value::Null,
        ));
    }
    let limit = app.config.max_body;
    let too_large = || {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than the limit of {limit} bytes"),
            json!({ "limit": limit }),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(_) => return Err(bad_request("the request body could not be read", None)),
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad_request("the body must be a JSON object", None)),
        Err(e) => Err(bad_request(&format!("invalid JSON: {e}"), None)),
    }
}

/// Checks the fields of an entry body (POST and PUT alike): no unknown field, `title` and
/// `body` present.
fn entry_input(map: &serde_json::Map<String, Value>) -> Result<EntryInput, Response<Body>> {
    for key in map.keys() {
        if !matches!(
            key.as_str(),
            "title" | "body" | "authors" | "published" | "key" | "pinned"
        ) {
            return Err(bad_request(&format!("unknown field `{key}`"), Some(key)));
        }
    }
    let string = |name: &str| -> Result<&str, Response<Body>> {
        match map.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(bad_request(
                &format!("field `{name}` must be a string"),
                Some(name),
            )),
            None => Err(bad_request(
                &format!("field `{name}` is required"),
                Some(name),
            )),
        }
    };
    let title = string("title")?;
    let body = string("body")?;
    let authors = match map.get("authors") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    bad_request(
                        "field `authors` must be an array of strings",
                        Some("authors"),
                    )
                })?,
        ),
        Some(_) => {
            return Err(bad_request(
                "field `authors` must be an array of strings",
                Some("authors"),
            ));
        }
    };
    let published = match map.get("published") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|_| {
                    bad_request(
                        "field `published` must be an RFC 3339 date-time",
                        Some("published"),
                    )
                })?
                .with_timezone(&Utc),
        ),
        Some(_) => {
            return Err(bad_request(
                "field `published` must be an RFC 3339 date-time",
                Some("published"),
            ));
        }
    };
    let flag = |name: &str| -> Result<Option<bool>, Response<Body>> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(bad_request(
                &format!("field `{name}` must be true or false"),
                Some(name),
            )),
        }
    };
    let mut input = EntryInput::cleaned(title, body, authors, published);
    input.key = flag("key")?;
    input.pinned = flag("pinned")?;
    if input.title.is_empty() {
        return Err(bad_request(
            "field `title` must not be empty",
            Some("title"),
        ));
    }
    if input.title.chars().count() > MAX_TITLE {
        return Err(bad_request(
            &format!("field `title` is longer than {MAX_TITLE} characters"),
            Some("title"),
        ));
    }
    Ok(input)
}

/// Reads and checks an entry body (POST and PUT).
async fn read_entry(app: &App, req: Request<Incoming>) -> Result<EntryInput, Response<Body>> {
    entry_input(&read_json(app, req).await?)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Response<Body>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k)
            if !k.is_empty()
                && k.len() <= MAX_KEY
                && k.bytes().all(|b| (0x21..0x7f).contains(&b)) =>
        {
            Ok(Some(k.to_string()))
        }
        _ => Err(bad_request(
            &format!("Idempotency-Key must be 1 to {MAX_KEY} visible ASCII characters"),
            Some("Idempotency-Key"),
        )),
    }
}

fn answer(result: Result<Ack, ChangeError>) -> Response<Body> {
    match result {
        Ok(ack) => {
            let status = if ack.op == Op::Create {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut res = json_response(
                status,
                &json!({ "id": ack.id, "seq": ack.seq, "url": ack.url, "op": ack.op.as_str() }),
            );
            // For the access log (the router adds the story).
            res.extensions_mut().insert(super::Published {
                id: ack.id.clone(),
                seq: ack.seq,
                ..Default::default()
            });
            if ack.replayed {
                set(
                    res.headers_mut(),
                    header::HeaderName::from_static("idempotent-replayed"),
                    "true",
                );
            }
            res
        }
        Err(e @ (ChangeError::UnknownStory(_) | ChangeError::UnknownEntry(_))) => {
            problem(StatusCode::NOT_FOUND, &e.to_string(), Value::Null)
        }
        Err(e @ ChangeError::KeyReused) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            &e.to_string(),
            json!({ "field": "Idempotency-Key" }),
        ),
        Err(e @ ChangeError::TooLarge(_)) => {
            problem(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string(), json!({}))
        }
        Err(e @ ChangeError::Storage(_)) => {
            // The log is read-only until a restart on a writable disk: ask to retry later.
            let mut res = problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), Value::Null);
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
            res
        }
        Err(ChangeError::Unavailable {
            reason,
            retry_after,
        }) => {
            // An outage of a shared store: nothing was written; the same request may be sent
            // again (with its Idempotency-Key) once it is back.
            let detail = format!("the event log is unavailable for now ({reason}); retry shortly");
            let mut res = problem(StatusCode::SERVICE_UNAVAILABLE, &detail, Value::Null);
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            res
        }
    }
}

/// `POST /stories/{story}/entries`.
pub async fn create(app: Arc<App>, story: &str, req: Request<Incoming>) -> Response<Body> {
    if let Err(res) = authorise(&app, req.headers()) {
        return res;
    }
    let key = match idempotency_key(req.headers()) {
        Ok(k) => k,
        Err(res) => return res,
    };
    if app
        .relay
        .hub
        .file(&crate::layout::FileKey::Page(story.to_string()))
        .is_none()
    {
        return problem(
            StatusCode::NOT_FOUND,
            &format!("no story {story:?}"),
            Value::Null,
        );
    }
    let input = match read_entry(&app, req).await {
        Ok(i) => i,
        Err(res) => return res,
    };
    answer(app.relay.publish(story, input, key).await)
}

/// `PUT /stories/{story}/entries/{id}`: replaces the entry's title, body and authors.
pub async fn edit(app: Arc<App>, story: &str, id: &str, req: Request<Incoming>) -> Response<Body> {
    if let Err(res) = authorise(&app, req.headers()) {
        return res;
    }
    let input = match read_entry(&app, req).await {
        Ok(i) => i,
        Err(res) => return res,
    };
    answer(app.relay.edit(story, id, input).await)
}

/// `PUT /stories/{story}` with `{"state": "ended"}` (and optionally `"ended"`: when, RFC
/// 3339; by default now) ends a story; `{"state": "live"}` makes it live again. Publishing to
/// an ended story still works (a correction).
pub async fn lifecycle(app: Arc<App>, story: &str, req: Request<Incoming>) -> Response<Body> {
    if let Err(res) = authorise(&app, req.headers()) {
        return res;
    }
    let map = match read_json(&app, req).await {
        Ok(m) => m,
        Err(res) => return res,
    };
    if let Some(key) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "state" | "ended"))
    {
        return bad_request(&format!("unknown field `{key}`"), Some(key));
    }
    let ended_at = match map.get("ended") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                return bad_request("field `ended` must be an RFC 3339 date-time", Some("ended"));
            }
        },
        Some(_) => {
            return bad_request("field `ended` must be an RFC 3339 date-time", Some("ended"));
        }
    };
    let ended = match map.get("state").and_then(Value::as_str) {
        Some("ended") => Some(ended_at.unwrap_or_else(|| {
            use chrono::SubsecRound;
            Utc::now().trunc_subsecs(0)
        })),
        Some("live") if ended_at.is_none() => None,
        Some("live") => {
            return bad_request(
                "field `ended` goes with \"state\": \"ended\" only",
                Some("ended"),
            );
        }
        _ => {
            return bad_request("field `state` must be \"ended\" or \"live\"", Some("state"));
        }
    };
    match app.relay.set_state(story, ended).await {
        Ok(ack) => {
            let mut body = json!({
                "story": story,
                "state": if ended.is_some() { "ended" } else { "live" },
                "seq": ack.seq,
            });
            if let Some(t) = ended {
                body["ended"] = Value::String(t.to_rfc3339());
            }
            json_response(StatusCode::OK, &body)
        }
        Err(e) => answer(Err(e)),
    }
}

/// `DELETE /stories/{story}/entries/{id}`.
pub async fn delete(
    app: Arc<App>,
    story: &str,
    id: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    if let Err(res) = authorise(&app, req.headers()) {
        return res;
    }
    answer(app.relay.delete(story, id).await)
}
