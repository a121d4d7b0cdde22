//! Text hygiene shared by every stage: cleaning untrusted text, HTML escaping, slugs.
//!
//! Everything that reaches a feed passes through [`clean`] first, so no later stage has to
//! worry about characters XML 1.0 cannot carry.

/// Removes what XML 1.0 and feed readers cannot take: C0/C1 control characters (tab becomes a
/// space), the byte-order mark and non-characters. Runs of spaces are kept; callers trim.
pub fn clean(s: &str) -> String {
    if !may_need_cleaning(s) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' => out.push(' '),
            '\n' => out.push('\n'),
            '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A fast byte scan: false means [`clean`] would change nothing. Control characters are
/// ASCII bytes, C1 controls start with 0xC2, and BOM and non-characters with 0xEF, so a string
/// without those bytes is clean (a true is only a "maybe").
fn may_need_cleaning(s: &str) -> bool {
    // Branch-free over 64-byte chunks so the compiler vectorises the scan.
    s.as_bytes().chunks(64).any(|chunk| {
        chunk.iter().fold(false, |hit, &b| {
            hit | ((b < 0x20) & (b != b'\n')) | (b == 0x7f) | (b == 0xc2) | (b == 0xef)
        })
    })
}

/// Where escaped text goes, which decides whether quotes are escaped too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// Element content and attribute values (quoted either way): `&`, `<`, `>`, `"`, `'`.
    Markup,
    /// Element content only, such as RSS's `description` (HTML carried as text): `&`, `<`
    /// and `>`. Quotes are left as they are, since they cannot end anything there.
    Text,
}

/// Escapes text for HTML element content and attribute values ([`Escape::Markup`]).
pub fn escape_html(s: &str) -> String {
    escape(s, Escape::Markup)
}

/// Escapes `s` for `ctx`: the one HTML/XML escaper, behind [`escape_html`],
/// [`push_escaped`] and RSS's summaries.
pub fn escape(s: &str, ctx: Escape) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    push_escaped_for(&mut out, s, ctx);
    out
}

/// Appends `s` to `out`, escaped for HTML element content and attribute values.
pub fn push_escaped(out: &mut String, s: &str) {
    push_escaped_for(out, s, Escape::Markup);
}

/// Hand-written on purpose: the well-kept escapers write `'` as `&apos;` (quick-xml) or
/// `&#x27;` (html-escape), and entry HTML, which the event log stores and every committed feed
/// carries, has always had `&#39;`; a crate would change those bytes for no reader's benefit.
fn push_escaped_for(out: &mut String, s: &str, ctx: Escape) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if ctx == Escape::Markup => out.push_str("&quot;"),
            '\'' if ctx == Escape::Markup => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// A lowercase ASCII slug: letters and digits kept, everything else folded into single dashes,
/// cut at `max` bytes on a dash boundary. Curly quotes and apostrophes vanish rather than
/// becoming dashes, so `Putin's` gives `putins`. Other scripts are transliterated (`deunicode`)
/// so that non-Latin headlines give readable, distinct slugs: `Переговоры` gives `peregovory`.
pub fn slugify(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    let mut dash = false;
    let mut push = |c: char, out: &mut String| {
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else if matches!(c, '\'' | '\u{2019}' | '\u{2018}') {
            // Apostrophes join words.
        } else {
            dash = true;
        }
    };
    for c in s.chars() {
        if c.is_ascii() || matches!(c, '\u{2019}' | '\u{2018}') {
            push(c, &mut out);
        } else {
            // An unknown character is a separator, as punctuation is.
            for t in deunicode::deunicode_char(c).unwrap_or(" ").chars() {
                push(t, &mut out);
            }
        }
        if out.len() >= max {
            break;
        }
    }
    if out.len() > max {
        out.truncate(max);
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Cuts `s` to at most `max` characters on a word boundary, adding an ellipsis when cut.
pub fn truncate_words(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut end = 0;
    for (count, (i, c)) in s.char_indices().enumerate() {
        if count >= max {
            break;
        }
        if c.is_whitespace() {
            end = i;
        }
    }
    if end == 0 {
        end = s.char_indices().nth(max).map_or(s.len(), |(i, _)| i);
    }
    format!("{}…", s[..end].trim_end())
}

/// Collapses internal whitespace runs to single spaces and trims.
pub fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_drops_controls_and_keeps_text() {
        assert_eq!(clean("a\u{0}b\u{7}c\td\u{9f}e\u{feff}"), "abc de");
        assert_eq!(clean("]]> <script>"), "]]> <script>");
    }

    #[test]
    fn escape_covers_markup() {
        assert_eq!(
            escape_html("<script>alert('x') & \"y\"</script>]]>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;]]&gt;"
        );
        assert_eq!(
            escape("<b>'x' & \"y\"</b>", Escape::Text),
            "&lt;b&gt;'x' &amp; \"y\"&lt;/b&gt;"
        );
    }

    #[test]
    fn slugs_are_stable_and_bounded() {
        assert_eq!(
            slugify(
                "May summit on Syria is 'impossible' says Russian official",
                80
            ),
            "may-summit-on-syria-is-impossible-says-russian-official"
        );
        assert_eq!(slugify("Putin’s   talks!", 80), "putins-talks");
        assert_eq!(slugify("«»", 80), "");
        assert_eq!(slugify("Переговоры в Сочи", 80), "peregovory-v-sochi");
        assert_eq!(slugify("日本の首相", 80), "ri-ben-noshou-xiang");
        assert_eq!(slugify("Café à Paris", 80), "cafe-a-paris");
        assert!(slugify(&"Слово ".repeat(100), 40).len() <= 40);
        assert!(slugify(&"word ".repeat(100), 40).len() <= 40);
        assert!(!slugify(&"word ".repeat(100), 40).ends_with('-'));
    }

    #[test]
    fn truncate_on_word_boundary() {
        assert_eq!(truncate_words("one two three", 100), "one two three");
        assert_eq!(truncate_words("one two three", 9), "one two…");
        assert_eq!(truncate_words("abcdefghij", 4), "abcd…");
    }
}
