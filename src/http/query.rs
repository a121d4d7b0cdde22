//! Query strings of the live routes, parsed strictly: a bad value is a 400 naming the parameter.

/// A parameter that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter `{name}`: {reason}")]
pub struct BadParam {
    pub name: String,
    pub reason: String,
}

fn bad(name: &str, reason: impl Into<String>) -> BadParam {
    BadParam {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Decodes `%XX` and `+` in a query component. Invalid escapes or UTF-8 are errors.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The parameters of `GET /live` and `GET /live/events`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveQuery {
    pub after: Option<u64>,
    /// The history `after` belongs to (the `epoch` of an earlier answer); a cursor of another
    /// history is refused with 410 rather than answered with the events of this one.
    pub epoch: Option<crate::log::store::Epoch>,
    pub story: Option<String>,
    pub limit: Option<usize>,
    pub timeout: Option<u64>,
}

pub const MAX_LIMIT: usize = 1000;
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_TIMEOUT: u64 = 60;
pub const DEFAULT_TIMEOUT: u64 = 25;

fn number(name: &str, value: &str) -> Result<u64, BadParam> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            name,
            format!("{value:?} is not a non-negative integer"),
        ));
    }
    value
        .parse()
        .map_err(|_| bad(name, format!("{value:?} is too large")))
}

impl LiveQuery {
    /// Parses a query string (without the `?`). Unknown parameters are refused, so a typo
    /// (`aftr=`) is an error rather than a silent replay from the start.
    pub fn parse(query: &str) -> Result<LiveQuery, BadParam> {
        let mut q = LiveQuery::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(raw_name)
                .ok_or_else(|| bad(raw_name, "invalid percent-encoding"))?;
            let value =
                percent_decode(raw_value).ok_or_else(|| bad(&name, "invalid percent-encoding"))?;
            let twice = || bad(&name, "given more than once");
            match name.as_str() {
                "after" => {
                    if q.after.replace(number("after", &value)?).is_some() {
                        return Err(twice());
                    }
                }
                "epoch" => {
                    let valid = !value.is_empty()
                        && value.len() <= 16
                        && value.bytes().all(|b| b.is_ascii_hexdigit());
                    let epoch = value.parse().ok().filter(|_| valid).ok_or_else(|| {
                        bad(
                            "epoch",
                            "must be the epoch of an earlier answer (hexadecimal)",
                        )
                    })?;
                    if q.epoch.replace(epoch).is_some() {
                        return Err(twice());
                    }
                }
                "limit" => {
                    let n = number("limit", &value)?;
                    if n == 0 || n > MAX_LIMIT as u64 {
                        return Err(bad("limit", format!("must be between 1 and {MAX_LIMIT}")));
                    }
                    if q.limit.replace(n as usize).is_some() {
                        return Err(twice());
                    }
                }
                "timeout" => {
                    let n = number("timeout", &value)?;
                    if n > MAX_TIMEOUT {
                        return Err(bad(
                            "timeout",
                            format!("must be between 0 and {MAX_TIMEOUT} seconds"),
                        ));
                    }
                    if q.timeout.replace(n).is_some() {
                        return Err(twice());
                    }
                }
                "story" => {
                    if !crate::ingest::manifest::valid_slug(&value) {
                        return Err(bad(
                            "story",
                            "must be a story slug (lowercase letters, digits, dashes)",
                        ));
                    }
                    if q.story.replace(value).is_some() {
                        return Err(twice());
                    }
                }
                other => return Err(bad(other, "unknown parameter")),
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_queries() {
        let q = LiveQuery::parse("after=5&story=a-b&limit=10&timeout=0").unwrap();
        assert_eq!(q.after, Some(5));
        assert_eq!(q.story.as_deref(), Some("a-b"));
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.timeout, Some(0));
        assert_eq!(LiveQuery::parse("").unwrap(), LiveQuery::default());
        assert_eq!(LiveQuery::parse("after=%31").unwrap().after, Some(1));
    }

    #[test]
    fn bad_queries_name_the_parameter() {
        for (q, name) in [
            ("after=-1", "after"),
            ("after=abc", "after"),
            ("after=99999999999999999999999", "after"),
            ("after=1&after=2", "after"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("timeout=61", "timeout"),
            ("story=../x", "story"),
            ("aftr=1", "aftr"),
            ("after=%zz", "after"),
            ("after=%ff", "after"),
        ] {
            assert_eq!(LiveQuery::parse(q).unwrap_err().name, name, "{q}");
        }
    }
}
