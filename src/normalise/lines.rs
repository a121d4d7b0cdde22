//! Line classification: what a single line of a saved page is, without looking at its
//! neighbours. The grouping into entries (in `parse`) is where context comes in.

use super::time::{TimeLine, parse_time_line};

/// One classified, non-blank line of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// `Live updates`, `Latest updates`, `Latest ITV News reports`: the header of a live page's
    /// entries (or, at the end of a page, boilerplate).
    Marker,
    /// `Back to top`: everything after it is page furniture.
    End,
    /// `Advertisement`, `Load more updates` and similar: never content.
    Noise,
    /// `by John Ray - Africa Correspondent`, `by - Africa Correspondent`.
    Byline(String),
    /// `1. Text`: a byline when alone and name-like (`1. Carl Dinnen`), else an ordered list item.
    Numbered {
        number: u32,
        text: String,
    },
    Time(TimeLine),
    Bullet(String),
    /// `– The Prime Minister's spokesman`: attributes the quotation above it.
    Attribution(String),
    /// `— Name (@handle) May 10, 2013`: closes an embedded tweet.
    EmbedAttribution(String),
    /// A caption with its credit (`… Credit: Sang Tan/PA Wire`, `… Photo: …`).
    Figure {
        caption: String,
        credit: String,
    },
    Text {
        text: String,
        headline_like: bool,
    },
}

const MARKERS: &[&str] = &[
    "live updates",
    "latest updates",
    "latest itv news reports",
    "live",
];
const NOISE: &[&str] = &[
    "advertisement",
    "advert",
    "load more updates",
    "load more",
    "show more updates",
    "show more",
    "share",
    "share this update",
    "share this article",
    "copy link",
    "skip advert",
    "skip to content",
    "close",
    "play video",
];
const CREDIT_LABELS: &[&str] = &["Credit:", "Photo:", "Picture:", "Image:", "Video:"];

fn word_count(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Strips closing quotes and brackets so `'… people'` is judged by what comes before them.
fn last_meaningful_char(s: &str) -> Option<char> {
    s.trim_end()
        .trim_end_matches(['\'', '"', '’', '”', ')', ']', '»'])
        .chars()
        .last()
}

/// A short line that reads like a name: `Carl Dinnen`, `ITV Report`.
pub fn is_name_like(s: &str) -> bool {
    let words = word_count(s);
    (1..=6).contains(&words)
        && s.chars().count() <= 60
        && s.chars()
            .next()
            .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit())
        && !matches!(
            s.chars().last(),
            Some('.' | '!' | '?' | ';' | ':' | ',' | '"' | '”')
        )
}

/// A line that could be a headline (or an uncredited caption): short, starting with a capital
/// letter or quote, not ending a sentence, not a link.
pub fn is_headline_like(s: &str) -> bool {
    let words = word_count(s);
    if words == 0 || words > 20 || s.chars().count() > 160 {
        return false;
    }
    if s.contains("://") || s.contains("pic.twitter.com") || s.contains("t.co/") {
        return false;
    }
    let first = s.chars().next();
    if !first.is_some_and(|c| c.is_uppercase() || c.is_ascii_digit() || "'\"‘“".contains(c)) {
        return false;
    }
    match last_meaningful_char(s) {
        Some('.' | ',' | ';' | ':' | '…' | '-' | '–' | '—') | None => false,
        Some('?' | '!') => words <= 12 && !s.ends_with(['"', '”']),
        _ => true,
    }
}

fn split_credit(s: &str) -> Option<(String, String)> {
    // Every label ends in a colon: most lines have none and need no further search.
    if !s.contains(':') {
        return None;
    }
    let (at, label) = CREDIT_LABELS
        .iter()
        .filter_map(|label| s.rfind(label).map(|i| (i, *label)))
        .max_by_key(|(i, _)| *i)?;
    if at > 0 && !s[..at].ends_with(char::is_whitespace) {
        return None;
    }
    let credit = s[at + label.len()..].trim();
    if credit.is_empty() || word_count(credit) > 10 || credit.chars().count() > 100 {
        return None;
    }
    Some((s[..at].trim().to_string(), format!("{label} {credit}")))
}

fn strip_number(s: &str) -> Option<(u32, &str)> {
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 3 {
        return None;
    }
    let rest = s[digits..].strip_prefix(['.', ')'])?;
    if !rest.starts_with(' ') {
        return None;
    }
    let rest = rest.trim();
    if rest.is_empty() {
        return None;
    }
    Some((s[..digits].parse().ok()?, rest))
}

fn byline(s: &str) -> Option<String> {
    let by = s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("by "));
    if !by || word_count(s) > 12 {
        return None;
    }
    let rest = s[3..].trim();
    if rest.ends_with(['.', '!', '?', ',']) {
        return None;
    }
    let (name, role) = if let Some(role) = rest.strip_prefix(['-', '–', '—']) {
        ("", role)
    } else if let Some((name, role)) = [" - ", " – ", " — "]
        .iter()
        .find_map(|dash| rest.split_once(dash))
    {
        (name, role)
    } else {
        (rest, "")
    };
    let (name, role) = (name.trim(), role.trim());
    match (name.is_empty(), role.is_empty()) {
        (true, true) => None,
        (false, true) => Some(name.to_string()),
        (true, false) => Some(role.to_string()),
        (false, false) => Some(format!("{name}, {role}")),
    }
}

/// Classifies one line. `None` for a blank line.
pub fn classify(raw: &str) -> Option<Line> {
    let indented = raw.starts_with([' ', '\u{a0}']);
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    // Markers and page furniture are short; only short lines are lowercased to compare.
    if s.len() <= 40 {
        let lower = s.to_lowercase();
        let bare = lower.trim_end_matches(['.', ':', '…']);
        if MARKERS.contains(&bare) {
            return Some(Line::Marker);
        }
        if bare == "back to top" {
            return Some(Line::End);
        }
        if NOISE.contains(&bare) {
            return Some(Line::Noise);
        }
    }
    if let Some(t) = parse_time_line(s) {
        return Some(Line::Time(t));
    }
    if let Some(b) = byline(s) {
        return Some(Line::Byline(b));
    }
    if let Some((number, text)) = strip_number(s) {
        return Some(Line::Numbered {
            number,
            text: text.to_string(),
        });
    }
    for bullet in ['•', '◦', '▪', '●', '·', '*'] {
        if let Some(rest) = s.strip_prefix(bullet) {
            let rest = rest.trim();
            if !rest.is_empty() {
                return Some(Line::Bullet(rest.to_string()));
            }
        }
    }
    if let Some(rest) = s.strip_prefix(['-', '–', '—']) {
        if rest.starts_with([' ', '\u{a0}']) {
            let rest = rest.trim();
            if rest.contains("(@") && word_count(rest) <= 40 {
                return Some(Line::EmbedAttribution(s.to_string()));
            }
            if indented && s.starts_with('-') {
                return Some(Line::Bullet(rest.to_string()));
            }
            if !rest.is_empty() && word_count(rest) <= 14 && !rest.ends_with('.') {
                return Some(Line::Attribution(rest.to_string()));
            }
        }
    }
    if let Some((caption, credit)) = split_credit(s) {
        return Some(Line::Figure { caption, credit });
    }
    Some(Line::Text {
        text: s.to_string(),
        headline_like: is_headline_like(s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_constructs() {
        assert_eq!(classify("Live updates"), Some(Line::Marker));
        assert_eq!(classify("Latest ITV News reports"), Some(Line::Marker));
        assert_eq!(classify("Back to top"), Some(Line::End));
        assert_eq!(classify("Advertisement"), Some(Line::Noise));
        assert_eq!(classify("Load more updates"), Some(Line::Noise));
        assert_eq!(
            classify("  1. Carl Dinnen"),
            Some(Line::Numbered {
                number: 1,
                text: "Carl Dinnen".into()
            })
        );
        assert_eq!(
            classify("  • Lift the arms embargo"),
            Some(Line::Bullet("Lift the arms embargo".into()))
        );
        assert_eq!(
            classify("– The Prime Minister's spokesman"),
            Some(Line::Attribution("The Prime Minister's spokesman".into()))
        );
        assert_eq!(
            classify("Talks this week Credit: Sang Tan/PA Wire"),
            Some(Line::Figure {
                caption: "Talks this week".into(),
                credit: "Credit: Sang Tan/PA Wire".into()
            })
        );
        assert_eq!(
            classify("Cameron and Putin Photo: Anthony Devlin/PA Wire"),
            Some(Line::Figure {
                caption: "Cameron and Putin".into(),
                credit: "Photo: Anthony Devlin/PA Wire".into()
            })
        );
        assert!(matches!(classify("2:34pm"), Some(Line::Time(_))));
        assert_eq!(classify("   "), None);
    }

    #[test]
    fn bylines() {
        assert_eq!(
            classify("by - Africa Correspondent"),
            Some(Line::Byline("Africa Correspondent".into()))
        );
        assert_eq!(
            classify("By John Ray - Africa Correspondent"),
            Some(Line::Byline("John Ray, Africa Correspondent".into()))
        );
        assert_eq!(
            classify("By Emily Morgan"),
            Some(Line::Byline("Emily Morgan".into()))
        );
        assert!(matches!(
            classify("By the end of May it will be impossible to hold the talks, he said."),
            Some(Line::Text { .. })
        ));
    }

    #[test]
    fn tweet_attribution() {
        assert!(matches!(
            classify("— William Hague (@WilliamJHague) May 10, 2013"),
            Some(Line::EmbedAttribution(_))
        ));
    }

    #[test]
    fn headlines_and_sentences() {
        assert!(is_headline_like(
            "May summit on Syria is 'impossible' says Russian official"
        ));
        assert!(is_headline_like(
            "'History of Syria is written in blood of their people'"
        ));
        assert!(is_headline_like("David Cameron speaking in Sochi"));
        assert!(!is_headline_like(
            "The British discussion paper sets out two options:"
        ));
        assert!(!is_headline_like(
            "He said: \"By the end of May is impossible.\""
        ));
        assert!(!is_headline_like("the talks went on"));
        assert!(!is_headline_like("Talks in Sochi pic.twitter.com/abc"));
    }
}
