//! Line classification: what a single line of a saved page is, without looking at its
//! neighbours. The grouping into entries (in `parse`) is where context comes in.

use super::profile::{self, Profile};
use super::time::{TimeLine, is_date_line, parse_time_line, parse_time_prefix};

/// One classified, non-blank line of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// `Live updates`, `Latest updates`, `Latest ITV News reports`: the header of a live page's
    /// entries (or, at the end of a page, boilerplate).
    Marker,
    /// `2h ago`, `15 min ago`: a relative time, which some templates put at the top of each
    /// entry; it opens one but gives no time.
    Ago,
    /// `Live` above the title: the page is live, but its entries begin elsewhere.
    Label,
    /// `Summary`, `Key events`: a section above the entry stream (the header when no marker
    /// follows).
    Section,
    /// `Find out more` near the top: the end of a licence or cookie banner.
    BannerEnd,
    /// `- 197 updates`, `View all 12 updates ›`: furniture that says the page is live.
    Counter,
    /// Made by the grouping pass, never by the classifier: an entry opens here (a numbered
    /// entry's number).
    EntryStart,
    /// `Post update`: a heading that opens an entry but says nothing; the entry is untitled.
    Untitled,
    /// `1405: Police have closed the road.`: a time stamp that opens an untitled entry.
    TimeLed {
        time: TimeLine,
        text: String,
        /// The whole line, stamp included: an item of a timeline inside an entry's body.
        full: String,
    },
    /// `Image caption: …`, `Media caption, …`: the caption of the figure above (its alt text).
    Caption(String),
    /// `Photograph: Jane Doe/Reuters` alone on its line: the credit of the caption above.
    Credit(String),
    /// `Watch: …`: a link to a clip; a headline only where an entry is due.
    Link(String),
    /// A caption standing alone: an image's alt text (the grouping pass finds it above its
    /// caption or credit line), or the line under a video (`Video report by …`).
    AltText(String),
    /// `Image source, Getty Images`: the credit of the figure whose caption follows.
    ImageSource(String),
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

const CREDIT_LABELS: &[&str] = &[
    "Credit:",
    "Photo:",
    "Picture:",
    "Image:",
    "Video:",
    "Photograph:",
    "Composite:",
    "Illustration:",
];
/// Agencies whose name in brackets ends a caption: `Boris Johnson in Kent (Getty)`.
const AGENCIES: &[&str] = &[
    "getty",
    "getty images",
    "pa",
    "pa media",
    "pa wire",
    "reuters",
    "ap",
    "afp",
    "epa",
    "shutterstock",
    "alamy",
    "rex",
    "rex features",
    "handout",
    "supplied",
    "bbc",
    "itv",
    "pool",
];
/// Capitalised words that make a short line a newsroom's name (`ITV News`, `BBC Sport`).
/// `ITV Granada`, `BBC Radio Kent`: a broadcaster's regional newsroom names no role either.
const NEWSROOM_WORDS: &[&str] = &["News", "Sport", "Sports", "ITV", "BBC"];
/// Words that make a short line a byline's role (`Political correspondent`).
const ROLE_WORDS: &[&str] = &[
    "correspondent",
    "editor",
    "reporter",
    "presenter",
    "journalist",
    "producer",
    "analyst",
    "writer",
    "columnist",
    "commentator",
    "reporting",
    "contributor",
    "chief",
];
/// Figure lines: the label and whether what follows is the caption (else the credit).
const CAPTION_LABELS: &[(&str, bool)] = &[
    ("image caption", true),
    ("media caption", true),
    ("video caption", true),
    ("caption", true),
    ("image source", false),
    ("image credit", false),
];

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
    // `. Credit: PA`: a figure the page gave no caption.
    let caption = s[..at]
        .trim()
        .trim_matches(|c: char| c.is_ascii_punctuation() && c != '\'' && c != '"');
    let caption = if caption.chars().any(char::is_alphanumeric) {
        s[..at].trim()
    } else {
        ""
    };
    Some((caption.to_string(), format!("{label} {credit}")))
}

fn strip_number(s: &str) -> Option<(u32, &str)> {
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 3 {
        return None;
    }
    let rest = s[digits..].strip_prefix(['.', ')'])?;
    // `1.` alone: a numbered entry whose heading is on the lines below.
    if rest.is_empty() {
        return Some((s[..digits].parse().ok()?, ""));
    }
    if !rest.starts_with(' ') {
        return None;
    }
    let rest = rest.trim();
    if rest.is_empty() {
        return None;
    }
    Some((s[..digits].parse().ok()?, rest))
}

/// `From CNN's Dana Whitlock and Rina Sato`: a US site's byline, its newsroom first.
fn from_newsroom(s: &str) -> Option<String> {
    let rest = s.strip_prefix("From ")?;
    let (desk, names) = rest.split_once("'s ").or_else(|| rest.split_once("’s "))?;
    let names = names.trim();
    let persons = names
        .split([','])
        .flat_map(|p| p.split(" and "))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .all(is_person_like);
    (word_count(desk) <= 3 && persons && word_count(names) <= 12).then(|| names.to_string())
}

fn byline(s: &str) -> Option<String> {
    if let Some(b) = from_newsroom(s) {
        return Some(b);
    }
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
        (false, true) => Some(tidy_byline(name)),
        (true, false) => Some(role.to_string()),
        (false, false) => Some(format!("{name}, {role}")),
    }
}

/// A person's name: two to four capitalised words, no digits, nothing after them.
pub fn is_person_like(s: &str) -> bool {
    let words: Vec<&str> = s.split_whitespace().collect();
    (2..=4).contains(&words.len())
        && s.chars().count() <= 40
        && words.iter().all(|w| {
            w.chars().next().is_some_and(char::is_uppercase)
                && w.chars().all(|c| c.is_alphabetic() || "'’-.".contains(c))
        })
}

/// A short line naming a role: `Political correspondent`, `BBC News`, `Reporting from Kyiv`.
pub fn is_role_like(s: &str) -> bool {
    // `Former Wales scrum-half on BBC Radio Wales`: a pundit's role runs to eight words.
    (1..=8).contains(&word_count(s))
        && s.starts_with(char::is_uppercase)
        && !s.ends_with(['.', '!', '?', ':', ',', '"', '\''])
        && !["The ", "I ", "We ", "It ", "A "]
            .iter()
            .any(|p| s.starts_with(p))
        && s.split(|c: char| !c.is_alphanumeric()).any(|w| {
            // `News` only as a newsroom's name (`ITV News`), not the word in a sentence.
            NEWSROOM_WORDS.contains(&w) || ROLE_WORDS.contains(&w.to_lowercase().as_str())
        })
}

/// Whether a line names a role by one of its words (`Senior Reporter`), however capitalised.
pub fn has_role_word(s: &str) -> bool {
    s.split(|c: char| !c.is_alphanumeric())
        .any(|w| ROLE_WORDS.contains(&w.to_lowercase().as_str()))
}

/// `Name, ITV News`, `Name: Political editor`: a byline without `by`.
fn name_and_role(s: &str) -> Option<String> {
    let (name, role) = s.split_once(", ").or_else(|| s.split_once(": "))?;
    if !is_person_like(name) || !is_role_like(role) {
        return None;
    }
    Some(if is_newsroom(role) {
        name.trim().to_string()
    } else {
        format!("{}, {}", name.trim(), role.trim())
    })
}

/// A byline's text as kept: `Name, ITV News` loses the newsroom, `Name, Role` stays.
pub fn tidy_byline(s: &str) -> String {
    name_and_role(s).unwrap_or_else(|| s.to_string())
}

/// `ITV News`, `ITV News Central`: the publisher, not a role; in a byline slot it says nothing.
pub fn is_newsroom(s: &str) -> bool {
    is_role_like(s)
        // `ITV News Central`, `BBC Sport at Northfield Park`: the newsroom leads; `Former
        // Wales scrum-half on BBC Radio Wales` is a role that names one.
        && s.split_whitespace()
            .take(2)
            .any(|w| NEWSROOM_WORDS.contains(&w))
        && !s
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| ROLE_WORDS.contains(&w.to_lowercase().as_str()))
}

/// `Tyson FuryTyson Fury`: a caption the page printed twice, run together.
fn undouble(s: &str) -> &str {
    let n = s.len();
    if n >= 8 && n % 2 == 0 && s.is_char_boundary(n / 2) && s[..n / 2] == s[n / 2..] {
        &s[..n / 2]
    } else {
        s
    }
}

/// `Boris Johnson in Kent (Getty)`: a caption whose credit is an agency in brackets.
fn bracketed_credit(s: &str) -> Option<(String, String)> {
    let body = s.strip_suffix(')')?;
    let open = body.rfind('(')?;
    let agency = body[open + 1..].trim();
    let lower = agency.to_lowercase();
    // `(Image: Cornwall Live)`, `(Picture: PA)`: a labelled credit, whoever the agency.
    let labelled = ["image: ", "picture: ", "photo: ", "pic: "]
        .iter()
        .any(|p| lower.starts_with(p));
    let known = labelled
        || lower
            .split(['/', ',', ';'])
            .map(str::trim)
            .any(|a| AGENCIES.contains(&a));
    if !known || word_count(s) > 30 {
        return None;
    }
    Some((body[..open].trim().to_string(), agency.to_string()))
}

/// Starts of the line ITV and others put under an embedded video: a caption, not a headline.
const VIDEO_CAPTIONS: &[&str] = &[
    "video report by ",
    "video by ",
    "report by ",
    "watch the report",
    "watch his report",
    "watch her report",
    "watch their report",
    "watch the full report",
    "watch the full interview",
    "watch the video",
];

/// `Image caption, …`, `Image source: …`, `Video report by …`.
fn caption_line(s: &str) -> Option<Line> {
    if s.len() <= 160 {
        let lower = s.to_lowercase();
        if VIDEO_CAPTIONS.iter().any(|p| lower.starts_with(p)) {
            return Some(Line::AltText(s.to_string()));
        }
    }
    let lower = s.get(..16.min(s.len()))?.to_lowercase();
    for (label, is_caption) in CAPTION_LABELS {
        if !lower.starts_with(label) {
            continue;
        }
        let rest = s[label.len()..].trim_start_matches([',', ':']).trim();
        if s[label.len()..].starts_with([',', ':']) {
            return Some(if *is_caption {
                Line::Caption(rest.to_string())
            } else {
                Line::ImageSource(rest.to_string())
            });
        }
    }
    None
}

/// Whether a line's text is furniture under a profile: the line itself, or its text after a
/// bullet (`• Share`).
fn furniture(s: &str, profile: &Profile) -> Option<Line> {
    let key = profile::key(s)?;
    let bare = key
        .trim_start_matches(['•', '-', '–', '—', '|', ' '])
        .trim();
    if profile.is_marker(&key) {
        return Some(Line::Marker);
    }
    if profile.is_label(&key) {
        return Some(Line::Label);
    }
    if profile.is_section(&key) {
        return Some(Line::Section);
    }
    if profile.is_end(&key) {
        return Some(Line::End);
    }
    if profile.is_banner_end(&key) {
        return Some(Line::BannerEnd);
    }
    if profile.is_untitled_heading(&key) {
        return Some(Line::Untitled);
    }
    if is_counter(bare) {
        return Some(Line::Counter);
    }
    if profile.is_noise(&key) || profile.is_noise(bare) || is_day_rule(&key) || is_date_line(bare) {
        return Some(Line::Noise);
    }
    if is_relative_time(bare) {
        return Some(Line::Ago);
    }
    if is_hashtag(bare) {
        return Some(Line::Noise);
    }
    None
}

/// `- 197 updates`, `View all 12 updates ›`, `12 new posts`.
fn is_counter(key: &str) -> bool {
    let words: Vec<&str> = key.split_whitespace().collect();
    words.len() <= 6
        && words
            .iter()
            .any(|w| w.chars().all(|c| c.is_ascii_digit() || c == ','))
        && words.iter().any(|w| {
            matches!(
                *w,
                "update" | "updates" | "post" | "posts" | "entries" | "comments" | "replies"
            )
        })
        && words.first().is_some_and(|w| {
            w.starts_with(|c: char| c.is_ascii_digit())
                || matches!(*w, "view" | "see" | "show" | "all" | "load")
        })
}

/// `---Wednesday, 25 March---`: a rule between days.
fn is_day_rule(key: &str) -> bool {
    let core = key.trim_matches(['-', '–', '—', '=', ' ', '*']);
    core.len() < key.len()
        && [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ]
        .iter()
        .any(|d| core.starts_with(d))
        && word_count(core) <= 5
}

/// `2h ago`, `36 mins ago`, `1 hr ago`.
fn is_relative_time(key: &str) -> bool {
    let Some(rest) = key.strip_suffix(" ago").or_else(|| key.strip_suffix("ago")) else {
        return false;
    };
    // `2h ago`, `36 mins ago`, `Updated 5 minutes ago`, `an hour ago`.
    let words: Vec<&str> = rest.split_whitespace().collect();
    let amount =
        |w: &&str| w.starts_with(|c: char| c.is_ascii_digit()) || matches!(*w, "an" | "a" | "one");
    let words = match words.as_slice() {
        ["updated" | "posted" | "published", rest @ ..] => rest,
        all => all,
    };
    (1..=3).contains(&words.len()) && words.first().is_some_and(amount)
}

/// `#BBCElection`: a hashtag alone on its line (a prompt to get involved).
fn is_hashtag(key: &str) -> bool {
    key.starts_with('#') && key.len() > 1 && !key.contains(' ')
}

/// A junk first line: analytics JSON, a script's left-overs.
fn is_junk(s: &str) -> bool {
    (s.starts_with('{') && s.ends_with('}'))
        || (s.starts_with('[') && s.ends_with(']') && s.contains('"'))
}

/// Classifies one line with the generic profile. `None` for a blank line.
pub fn classify(raw: &str) -> Option<Line> {
    classify_with(raw, &profile::GENERIC)
}

/// Classifies one line under a page's profile. `None` for a blank line.
/// `8,214.31`, `-0.42%`, `$81.24`, `▲ 1.2%`: a market ticker's figure, alone on its line.
pub fn is_figure(s: &str) -> bool {
    let s = s.trim();
    let body = s
        .trim_start_matches(['+', '-', '−', '–', '▲', '▼', '$', '£', '€', '¥', ' '])
        .trim_start_matches(['$', '£', '€', '¥'])
        .trim_end_matches(['%', 'p', ' ']);
    body.starts_with(|c: char| c.is_ascii_digit())
        && body.len() <= 16
        && body.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '.')
        // `2026` or `1405` alone is a year or a time, not a price.
        && (body.contains(['.', ',']) || s != body)
}

pub fn classify_with(raw: &str, profile: &Profile) -> Option<Line> {
    let indented = raw.starts_with([' ', '\u{a0}']);
    let s = undouble(raw.trim());
    if s.is_empty() {
        return None;
    }
    if let Some(l) = furniture(s, profile) {
        return Some(l);
    }
    if is_junk(s) {
        return Some(Line::Noise);
    }
    if let Some(t) = parse_time_line(s) {
        return Some(Line::Time(t));
    }
    if is_figure(s) {
        return Some(Line::Noise);
    }
    if let Some(b) = byline(s) {
        return Some(Line::Byline(b));
    }
    if let Some(l) = caption_line(s) {
        return Some(l);
    }
    if let Some((number, text)) = strip_number(s) {
        // `3. 1405: …` stays numbered here: the grouping pass reads it as a post that starts
        // with its time.
        return Some(Line::Numbered {
            number,
            text: text.to_string(),
        });
    }
    // `Watch: …`, `Listen: …`: a link to a video or clip (where a headline is due, a headline).
    if ["Watch: ", "Listen: ", "Watch live: "]
        .iter()
        .any(|p| s.starts_with(p))
    {
        return Some(Line::Link(s.to_string()));
    }
    if let Some((time, text)) = parse_time_prefix(s) {
        return Some(Line::TimeLed {
            time,
            text: text.to_string(),
            full: s.to_string(),
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
        if s.starts_with(|c: char| c.is_alphabetic()) && caption.is_empty() {
            return Some(Line::Credit(credit));
        }
        return Some(Line::Figure { caption, credit });
    }
    if let Some(b) = name_and_role(s) {
        return Some(Line::Byline(b));
    }
    if let Some((caption, credit)) = bracketed_credit(s) {
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
    fn furniture_of_other_templates() {
        for line in [
            "- 197 updates",
            "View all 12 updates ›",
            "Sort by:",
            "Latest first",
            "Auto update: On Off",
            "• Share",
            "---Wednesday, 25 March---",
            "Wednesday 25 March",
            "2h ago",
            "Updated 5 minutes ago",
            "#BBCBudget",
            "READ MORE: The full list of roadworks",
            "Read: Which services are running today?",
            "Click here for the full report.",
            "View more on twitter",
            "This content is currently not available",
            "Skip twitter post by Someone",
            "All times stated are UK",
            "{\"pageType\":\"liveblog\"}",
        ] {
            assert!(
                matches!(
                    classify(line),
                    Some(Line::Noise | Line::Counter | Line::Ago)
                ),
                "{line:?}: {:?}",
                classify(line)
            );
        }
        assert_eq!(classify("Live Reporting"), Some(Line::Marker));
        assert_eq!(classify("Live"), Some(Line::Label));
        assert_eq!(classify("Summary"), Some(Line::Section));
        assert_eq!(classify("Post update"), Some(Line::Untitled));
        assert_eq!(classify("Find out more"), Some(Line::BannerEnd));
    }

    #[test]
    fn time_stamps_bylines_and_captions_of_other_templates() {
        assert!(matches!(
            classify("1405: The road is closed."),
            Some(Line::TimeLed { text, .. }) if text == "The road is closed."
        ));
        assert!(matches!(
            classify("8.40am: Runners gather"),
            Some(Line::TimeLed { .. })
        ));
        // A diary of the day is text.
        assert!(matches!(
            classify("10am: boxes checked, 3.30pm: tables set out"),
            Some(Line::Text { .. })
        ));
        assert!(matches!(classify("09:12 26 March"), Some(Line::Time(_))));
        assert!(matches!(
            classify("15:00 Kick-off at Northfield Park"),
            Some(Line::TimeLed { text, .. }) if text == "Kick-off at Northfield Park"
        ));
        assert!(matches!(
            classify("10am Boxes checked, 3.30pm tables set out"),
            Some(Line::Text { .. })
        ));
        assert!(matches!(
            classify("11:20Road expected to stay shut"),
            Some(Line::TimeLed { text, .. }) if text == "Road expected to stay shut"
        ));
        assert!(matches!(
            classify("1.50 Pounds a litre"),
            Some(Line::Text { .. })
        ));
        assert!(matches!(classify("Updated : 12:54"), Some(Line::Time(_))));
        assert!(matches!(classify("2:05 p.m. ET"), Some(Line::Time(_))));
        assert!(matches!(
            classify("March 25, 2025 2:05 PM EDT"),
            Some(Line::Time(_))
        ));
        assert_eq!(
            classify("Daniel Hewitt, ITV News"),
            Some(Line::Byline("Daniel Hewitt".into()))
        );
        assert_eq!(
            classify("Emma Carlton: Health editor"),
            Some(Line::Byline("Emma Carlton, Health editor".into()))
        );
        assert!(matches!(
            classify("Theresa May: The news is bad"),
            Some(Line::Text { .. })
        ));
        assert_eq!(
            classify("Image caption, Shoppers in London"),
            Some(Line::Caption("Shoppers in London".into()))
        );
        assert_eq!(
            classify("Image source, Getty Images"),
            Some(Line::ImageSource("Getty Images".into()))
        );
        assert_eq!(
            classify("Photograph: Jordan Ellis/PA"),
            Some(Line::Credit("Photograph: Jordan Ellis/PA".into()))
        );
        assert_eq!(
            classify(". Credit: PA Images"),
            Some(Line::Figure {
                caption: String::new(),
                credit: "Credit: PA Images".into()
            })
        );
        assert_eq!(
            classify("Fans at the stadium (Getty)"),
            Some(Line::Figure {
                caption: "Fans at the stadium".into(),
                credit: "Getty".into()
            })
        );
        assert!(matches!(
            classify("Tyson FuryTyson Fury"),
            Some(Line::Text { text, .. }) if text == "Tyson Fury"
        ));
        assert_eq!(
            classify("Video report by ITV News Correspondent Carl Dinnen"),
            Some(Line::AltText(
                "Video report by ITV News Correspondent Carl Dinnen".into()
            ))
        );
        assert!(matches!(
            classify("Watch: The union leader speaking"),
            Some(Line::Link(_))
        ));
        assert!(matches!(
            classify("WATCH: Passengers stranded"),
            Some(Line::Text {
                headline_like: true,
                ..
            })
        ));
    }

    #[test]
    fn ticker_figures() {
        for f in [
            "8,214.31", "-0.42%", "+0.11%", "$81.24", "1.2671", "▲ 1.2%", "£4.05",
        ] {
            assert!(is_figure(f), "{f}");
            assert_eq!(classify(f), Some(Line::Noise), "{f}");
        }
        for f in ["2026", "1405", "2-1", "3.5 million", "100 homes"] {
            assert!(!is_figure(f), "{f}");
        }
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
