//! Grouping classified lines into a story: title, standfirst, and entries newest first.

use super::lines::{
    Line, classify_with, has_role_word, is_figure, is_headline_like, is_name_like, is_newsroom,
    is_person_like, is_role_like, tidy_byline,
};
use super::profile::{self, Profile};
use super::time::{TimeLine, parse_time_prefix};
use crate::model::{Block, StoryKind};
use crate::text::{clean, squash};
use std::borrow::Cow;

/// Why a report could not be understood. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}: invalid UTF-8 (the report must be UTF-8 text)")]
    InvalidUtf8 { line: usize },
    #[error("line {line}: no title: the report has no text")]
    NoTitle { line: usize },
}

impl ParseError {
    pub fn line(&self) -> usize {
        match self {
            Self::InvalidUtf8 { line } | Self::NoTitle { line } => *line,
        }
    }
}

/// A report as read: no times resolved, no ids yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub kind: StoryKind,
    pub title: String,
    pub description: String,
    /// Newest first, as on the page.
    pub entries: Vec<RawEntry>,
}

/// One entry as read from the page.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawEntry {
    pub headline: Option<String>,
    pub authors: Vec<String>,
    pub time: Option<TimeLine>,
    pub blocks: Vec<Block>,
    /// The line the entry starts on.
    pub line: usize,
}

/// Decodes report bytes: UTF-8 required (an error names the first bad line), CRLF and CR
/// become LF, control characters are dropped.
pub fn decode(bytes: &[u8]) -> Result<String, ParseError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(tidy(s).into_owned()),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
            Err(ParseError::InvalidUtf8 { line })
        }
    }
}

/// CRLF and CR become LF and control characters go; text that needs neither is borrowed.
fn tidy(text: &str) -> Cow<'_, str> {
    let needs = |c: char| {
        (c.is_control() && c != '\n') || matches!(c, '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}')
    };
    if text.chars().any(needs) {
        Cow::Owned(clean(&text.replace("\r\n", "\n").replace('\r', "\n")))
    } else {
        Cow::Borrowed(text)
    }
}

struct Classified {
    line: usize,
    /// Leading spaces (a tab counts four): numbered entries indent their bodies.
    indent: usize,
    kind: Line,
}

fn indent_of(raw: &str) -> usize {
    raw.chars()
        .take_while(|c| c.is_whitespace())
        .map(|c| if c == '\t' { 4 } else { 1 })
        .sum()
}

/// The lines near the top of a page where a banner can end.
const BANNER_ZONE: usize = 12;

/// The lines near the top of a page where the site's navigation can stand above the title.
const NAV_ZONE: usize = 40;

/// `Pippa Crerar and Kiran Stacey`, `A, B and C`: the page's reporters, listed.
fn is_names(s: &str) -> bool {
    let parts: Vec<&str> = s
        .split(", ")
        .flat_map(|p| p.split(" and "))
        .map(str::trim)
        .collect();
    parts.len() >= 2 && parts.iter().all(|p| is_person_like(p))
}

/// A line of a site's menu: a short name, or furniture.
fn is_nav(l: &Classified) -> bool {
    match &l.kind {
        Line::Text { text, .. } => {
            text.split_whitespace().count() <= 4 && !text.ends_with(['.', '!', '?', '"'])
        }
        kind => !(is_opener(kind) || matches!(kind, Line::Byline(_) | Line::Caption(_))),
    }
}

/// Desk labels that sit where a byline would (`National`): not authors.
const DESKS: &[&str] = &[
    "national",
    "international",
    "regional",
    "politics",
    "world",
    "uk",
    "business",
    "sport",
    "news",
    "local",
    "breaking",
    "live",
    "newsdesk",
    "news desk",
    "reporter",
    "staff",
];

/// Classifies the lines of `text`, numbering them from `first + 1`.
fn classify_lines(text: &str, first: usize, profile: &Profile) -> Vec<Classified> {
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            classify_with(raw, profile).map(|kind| Classified {
                line: first + i + 1,
                indent: indent_of(raw),
                kind,
            })
        })
        .collect()
}

/// Reports larger than this are classified on two threads (each line is classified on its
/// own, so the halves join into the same list).
const PARALLEL_BYTES: usize = 1 << 20;

fn classify_split(text: &str, profile: &Profile) -> Vec<Classified> {
    let cut = match text.len() {
        len if len >= PARALLEL_BYTES
            && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) =>
        {
            text[len / 2..].find('\n').map(|i| len / 2 + i + 1)
        }
        _ => None,
    };
    let Some(cut) = cut else {
        return classify_lines(text, 0, profile);
    };
    let (head, tail) = text.split_at(cut);
    std::thread::scope(|scope| {
        let later = scope.spawn(|| classify_lines(tail, head.lines().count(), profile));
        let mut lines = classify_lines(head, 0, profile);
        match later.join() {
            Ok(rest) => lines.extend(rest),
            Err(panic) => std::panic::resume_unwind(panic),
        }
        lines
    })
}

fn classify_all(text: &str, profile: &Profile) -> Vec<Classified> {
    let mut lines = classify_split(text, profile);
    // A licence or cookie banner above the content: everything to its last line goes.
    let first_marker = lines
        .iter()
        .position(|l| l.kind == Line::Marker)
        .unwrap_or(lines.len());
    if let Some(end) = lines
        .iter()
        .take(BANNER_ZONE.min(first_marker))
        .rposition(|l| l.kind == Line::BannerEnd)
    {
        lines.drain(..=end);
    }
    for l in &mut lines {
        if l.kind == Line::BannerEnd {
            l.kind = Line::Noise;
        }
    }
    // `Politics live`, `Markets live` over the title: the series' label, like `Live`.
    let first_opener = lines
        .iter()
        .position(|l| is_opener(&l.kind))
        .unwrap_or(lines.len());
    for i in 0..first_opener
        .min(NAV_ZONE)
        .min(lines.len().saturating_sub(1))
    {
        let series = matches!(&lines[i].kind, Line::Text { text, .. }
            if text.split_whitespace().count() <= 3
                && text.split_whitespace().count() >= 2
                && text.to_lowercase().ends_with(" live"));
        if series
            && matches!(
                lines[i + 1].kind,
                Line::Text {
                    headline_like: true,
                    ..
                }
            )
        {
            lines[i].kind = Line::Label;
            break;
        }
    }
    // `Live` over the title (or right under a headline-like title): what stands above is the
    // site's navigation (a `Latest` tab, a list of regions), not the page.
    if let Some(label) = lines
        .iter()
        .take(NAV_ZONE)
        .position(|l| l.kind == Line::Label)
    {
        // Navigation is a list of short names: a sentence above (a standfirst) makes the
        // label the stream's header under the title instead.
        let nav = is_nav;
        let text_at = |i: usize| {
            lines
                .get(i)
                .is_some_and(|l| matches!(l.kind, Line::Text { .. }))
        };
        // The site's name or tagline may stand above its menu.
        let menu_under_tagline = || {
            let Some(first) = lines[..label]
                .iter()
                .position(|l| matches!(l.kind, Line::Text { .. }))
            else {
                return false;
            };
            let rest = &lines[first + 1..label];
            rest.iter().all(nav)
                && rest
                    .iter()
                    .filter(|l| matches!(l.kind, Line::Text { .. }))
                    .count()
                    >= 3
        };
        let title_under =
            text_at(label + 1) && (lines[..label].iter().all(nav) || menu_under_tagline());
        let title_over = label > 0
            && matches!(&lines[label - 1].kind, Line::Text { text, headline_like: true }
                if !text.ends_with('.'))
            && lines[..label - 1].iter().all(nav);
        if title_under {
            lines.drain(..label);
        } else if title_over {
            lines.drain(..label - 1);
        }
    }
    // A footer begins below the content: above the stream's header (or the title), a line
    // such as `Top stories` is the site's navigation.
    let content_from = lines
        .iter()
        .position(|l| matches!(l.kind, Line::Marker | Line::Text { .. }))
        .unwrap_or(lines.len());
    for l in lines.iter_mut().take(content_from) {
        if l.kind == Line::End {
            l.kind = Line::Noise;
        }
    }
    // A desk's name where a byline would be (`1. National`, `National`) names no author and
    // is no headline.
    for l in &mut lines {
        let desk = match &l.kind {
            Line::Byline(b) => Some(b.as_str()),
            Line::Numbered { number: 1, text } | Line::Text { text, .. } => Some(text.as_str()),
            _ => None,
        };
        if desk.is_some_and(|d| DESKS.contains(&d.to_lowercase().as_str())) {
            l.kind = Line::Noise;
        }
    }
    // `Updated 4:18 a.m. ET` right under the title or the stream's header says when the page
    // last changed: no entry's time.
    let raw: Vec<&str> = text.lines().collect();
    let title = lines
        .iter()
        .position(|l| matches!(l.kind, Line::Text { .. }));
    for i in 1..lines.len() {
        let after_head = Some(i - 1) == title || lines[i - 1].kind == Line::Marker;
        let updated = raw.get(lines[i].line - 1).is_some_and(|r| {
            let r = r.trim_start().to_lowercase();
            r.starts_with("updated") || r.starts_with("last updated")
        });
        if after_head && updated && matches!(lines[i].kind, Line::Time(_)) {
            lines[i].kind = Line::Noise;
        }
    }
    // `FTSE 100` over `8,214.31`: a ticker's name over its figures is no headline.
    for i in 0..lines.len().saturating_sub(1) {
        let figure_below = raw.get(lines[i + 1].line - 1).is_some_and(|r| is_figure(r));
        if let Line::Text { text, .. } = &lines[i].kind {
            if figure_below
                && text.split_whitespace().count() <= 4
                && !text.ends_with(['.', '!', '?', ':'])
            {
                lines[i].kind = Line::Noise;
            }
        }
    }
    // `Live Updates` over the title and its `Updated 1:47 p.m. ET` line, under the site's
    // menu: the marker labels the page; the menu above it goes.
    if let Some(m) = lines
        .iter()
        .take(NAV_ZONE)
        .position(|l| l.kind == Line::Marker)
    {
        let titled = lines.get(m + 1).is_some_and(|l| {
            matches!(
                l.kind,
                Line::Text {
                    headline_like: true,
                    ..
                }
            )
        });
        let stamped = lines.get(m + 2).is_some_and(|l| {
            matches!(l.kind, Line::Noise | Line::Time(_))
                && raw.get(l.line - 1).is_some_and(|r| {
                    let r = r.trim_start().to_lowercase();
                    r.starts_with("updated") || r.starts_with("last updated")
                })
        });
        if titled && stamped && lines[..m].iter().all(is_nav) {
            lines[m].kind = Line::Label;
            lines[m + 2].kind = Line::Noise;
            lines.drain(..m);
        }
    }
    // `Key updates` over `Police confirm one man arrested`, `Cordon remains …`: the list of
    // the section, not headlines (two or more short lines in a row; entries have bodies).
    let mut i = 0;
    while i < lines.len() {
        if lines[i].kind == Line::Section {
            let run = lines[i + 1..]
                .iter()
                .take_while(|l| {
                    matches!(
                        l.kind,
                        Line::Text {
                            headline_like: true,
                            ..
                        } | Line::Ago
                    )
                })
                .count();
            let heads = lines[i + 1..i + 1 + run]
                .iter()
                .filter(|l| matches!(l.kind, Line::Text { .. }))
                .count();
            if heads >= 2 {
                for l in &mut lines[i + 1..i + 1 + run] {
                    l.kind = Line::Noise;
                }
            }
            i += run;
        }
        i += 1;
    }
    // `18.02 BST` over `Kiran Stacey` over the block: the block's contributor, when the page
    // names that person elsewhere too (another block, the page's byline), so a short headline
    // in title case is not taken for one.
    let names: Vec<String> = lines
        .iter()
        .filter_map(|l| match &l.kind {
            Line::Text { text, .. } | Line::Byline(text) => Some(text.clone()),
            _ => None,
        })
        .collect();
    for i in 1..lines.len().saturating_sub(1) {
        let Line::Text { text, .. } = &lines[i].kind else {
            continue;
        };
        let named_elsewhere = || {
            names.iter().filter(|n| *n == text).count() >= 2
                || names.iter().any(|n| {
                    n != text
                        && n.len() <= 120
                        && (n.contains(&format!("{text} and "))
                            || n.contains(&format!("and {text}"))
                            || n.contains(&format!("{text}, ")))
                })
        };
        if is_person_like(text)
            && matches!(lines[i - 1].kind, Line::Time(_))
            && matches!(lines[i + 1].kind, Line::Text { .. })
            && named_elsewhere()
        {
            lines[i].kind = Line::Byline(text.clone());
        }
    }
    join_name_and_role(&mut lines);
    // `Posted at 9:05` over `Dover` over the post: the place is its dateline, not its headline.
    if profile.datelines {
        let mut dead = vec![false; lines.len()];
        for i in 1..lines.len().saturating_sub(1) {
            let place = matches!(&lines[i].kind, Line::Text { text, .. } if is_place_like(text));
            if place
                && matches!(lines[i - 1].kind, Line::Time(_))
                && matches!(lines[i + 1].kind, Line::Text { .. })
            {
                dead[i] = true;
            }
        }
        remove_dead(&mut lines, &dead);
    }
    label_value_lists(&mut lines);
    join_split_sentences(&mut lines);
    // `published at 09:12` over `09:12`: the page says the time twice (once for screen
    // readers); the second is not a new entry's.
    let mut dead = vec![false; lines.len()];
    for i in 1..lines.len() {
        if let (Line::Time(a), Line::Time(b)) = (&lines[i - 1].kind, &lines[i].kind) {
            dead[i] = a == b;
        }
    }
    remove_dead(&mut lines, &dead);
    lines
}

/// A paragraph of two or more sentences, or a long one: body text, never an image's alt text.
fn is_paragraph(s: &str) -> bool {
    let sentences = s
        .split_inclusive(['.', '!', '?'])
        .filter(|part| part.split_whitespace().count() >= 3)
        .count();
    sentences >= 2 || s.split_whitespace().count() > 30
}

/// `Dover`, `Tunbridge Wells`, `St Albans`: one to three capitalised words, nothing else.
fn is_place_like(s: &str) -> bool {
    let words: Vec<&str> = s.split_whitespace().collect();
    (1..=3).contains(&words.len())
        && s.chars().count() <= 30
        && words.iter().all(|w| {
            w.chars().next().is_some_and(char::is_uppercase)
                && w.chars().all(|c| c.is_alphabetic() || "'’-".contains(c))
        })
}

/// A sentence the page broke over two lines: the second starts in lower case under a line
/// that did not end a sentence. One line again, judged as a whole.
fn join_split_sentences(lines: &mut Vec<Classified>) {
    let mut dead = vec![false; lines.len()];
    let mut i = 0;
    while i + 1 < lines.len() {
        let joined = match (&lines[i].kind, &lines[i + 1].kind) {
            (Line::Text { text: a, .. }, Line::Text { text: b, .. })
                if continues_sentence(a, b) =>
            {
                Some(format!("{a} {b}"))
            }
            _ => None,
        };
        if let Some(text) = joined {
            lines[i + 1].kind = Line::Text {
                headline_like: is_headline_like(&text),
                text,
            };
            lines[i + 1].line = lines[i].line;
            dead[i] = true;
        }
        i += 1;
    }
    remove_dead(lines, &dead);
}

/// Whether `b` carries on the sentence `a` left open: `a` does not end one and `b` starts
/// with a word in lower case (`iPhone` or `eBay` is a name, not the rest of a sentence).
fn continues_sentence(a: &str, b: &str) -> bool {
    b.split_whitespace()
        .next()
        .is_some_and(|w| w.starts_with(char::is_lowercase) && !w.chars().any(char::is_uppercase))
        && !a
            .trim_end()
            .ends_with(['.', '!', '?', ':', '"', '”', '\'', '’', ')', '…'])
}

/// Drops the lines a pass merged into their neighbours (in one sweep: pages can be long).
fn remove_dead(lines: &mut Vec<Classified>, dead: &[bool]) {
    let mut i = 0;
    lines.retain(|_| {
        i += 1;
        !dead[i - 1]
    });
}

/// `Label: value`: a line of a results or poll block (`Turnout: 61%`).
fn label_value(s: &str) -> bool {
    let Some((label, value)) = s.split_once(": ") else {
        return false;
    };
    let (lw, vw) = (
        label.split_whitespace().count(),
        value.split_whitespace().count(),
    );
    (1..=4).contains(&lw)
        && (1..=8).contains(&vw)
        && label.starts_with(char::is_uppercase)
        && !value.ends_with(['.', '!', '?', '"', '\'', '”', '’'])
        && !value.starts_with(['"', '\'', '‘', '“'])
}

/// Two or more `Label: value` lines in a row are a list, not headlines or captions.
fn label_value_lists(lines: &mut [Classified]) {
    let is_lv = |l: &Classified| matches!(&l.kind, Line::Text { text, .. } if label_value(text));
    let mut i = 0;
    while i < lines.len() {
        let run = lines[i..].iter().take_while(|l| is_lv(l)).count();
        if run >= 2 {
            for l in &mut lines[i..i + run] {
                if let Line::Text { text, .. } = &l.kind {
                    l.kind = Line::Bullet(text.clone());
                }
            }
        }
        i += run.max(1);
    }
}

/// `Nick Eardley` above `Political correspondent` (or a `by` line above its role): one byline.
fn join_name_and_role(lines: &mut Vec<Classified>) {
    let mut dead = vec![false; lines.len()];
    let mut i = 0;
    while i + 1 < lines.len() {
        let name = match &lines[i].kind {
            Line::Byline(b) if !b.contains(',') => Some(b.clone()),
            Line::Numbered { number: 1, text } if is_person_like(text) => Some(text.clone()),
            Line::Text { text, .. } if is_person_like(text) => Some(text.clone()),
            _ => None,
        };
        let role = match &lines[i + 1].kind {
            Line::Text { text, .. } => Some(text.clone()).filter(|t| {
                is_role_like(t) && (!is_person_like(t) || is_newsroom(t) || has_role_word(t))
            }),
            _ => None,
        };
        if let (Some(name), Some(role)) = (name, role) {
            lines[i].kind = Line::Byline(if is_newsroom(&role) {
                name
            } else {
                format!("{name}, {role}")
            });
            dead[i + 1] = true;
            i += 1;
        }
        i += 1;
    }
    remove_dead(lines, &dead);
}

fn is_content(l: &Line) -> bool {
    !matches!(
        l,
        Line::Marker
            | Line::Label
            | Line::Section
            | Line::End
            | Line::Ago
            | Line::Noise
            | Line::BannerEnd
            | Line::Counter
    )
}

/// Where the live entries begin: the first marker, before any `Back to top`, that has content
/// after it; else the first section header (`Summary`) with content after it. `Latest ITV
/// News reports` at the very end is boilerplate, not a header.
fn find_header(lines: &[Classified]) -> Option<usize> {
    let end = lines
        .iter()
        .position(|l| l.kind == Line::End)
        .unwrap_or(lines.len());
    let with_content = |i: usize| lines[i + 1..end].iter().any(|l| is_content(&l.kind));
    let markers: Vec<usize> = (0..end)
        .filter(|&i| lines[i].kind == Line::Marker && with_content(i))
        .collect();
    // A label above the title (`Live`) is not the header when a marker follows the title and
    // its standfirst or summary: at most a few paragraphs and no entry between them.
    let mut header = markers.first().copied();
    for &next in markers.iter().skip(1) {
        let Some(h) = header else { break };
        let between = &lines[h + 1..next];
        let texts = between
            .iter()
            .filter(|l| matches!(l.kind, Line::Text { .. }))
            .count();
        if texts <= 4 && !between.iter().any(|l| is_opener(&l.kind)) {
            header = Some(next);
        } else {
            break;
        }
    }
    // `Live` under the title and standfirst heads the stream like a marker; above the title
    // it is only a label.
    let title = lines[..end]
        .iter()
        .position(|l| matches!(l.kind, Line::Text { .. }));
    header
        .or_else(|| {
            let title = title?;
            (title + 1..end).find(|&i| lines[i].kind == Line::Label && with_content(i))
        })
        .or_else(|| (0..end).find(|&i| lines[i].kind == Line::Section && with_content(i)))
}

/// Whether a numbered line opens an entry: item `n` at the margin, its body indented under it.
fn opens_numbered_entry(lines: &[Classified], i: usize) -> bool {
    matches!(lines[i].kind, Line::Numbered { .. })
        && lines[i].indent <= 3
        && lines.get(i + 1).is_some_and(|n| {
            n.indent >= lines[i].indent + 2
                && n.indent >= 3
                && !matches!(n.kind, Line::Numbered { .. })
        })
}

/// Numbered entries saved without indentation: items 1, 2, 3… in order, each with text of
/// its own between it and the next (the items of a list sit together).
fn flush_numbered_entries(lines: &[Classified]) -> Vec<bool> {
    let mut opens = vec![false; lines.len()];
    let mut accepted: Vec<usize> = Vec::new();
    let mut expected = None;
    for (i, l) in lines.iter().enumerate() {
        let Line::Numbered { number, text } = &l.kind else {
            continue;
        };
        // A byline (`1. Carl Dinnen`) or an item of a list inside an entry is not an entry.
        if l.indent > 3 || is_person_like(text) {
            continue;
        }
        let follows = match (expected, accepted.last()) {
            (None, _) => true,
            (Some(e), Some(&prev)) => {
                // `3. 1710: The meeting has started.`: an entry that is its own text.
                let own_text = matches!(&lines[prev].kind,
                    Line::Numbered { text, .. } if parse_time_prefix(text).is_some());
                *number == e
                    && (own_text
                        || lines[prev + 1..i].iter().any(|l| {
                            is_content(&l.kind)
                                && !matches!(
                                    l.kind,
                                    Line::Byline(_) | Line::Time(_) | Line::Numbered { .. }
                                )
                        }))
            }
            (Some(_), None) => false,
        };
        if follows {
            accepted.push(i);
            expected = Some(number + 1);
        }
    }
    let has_body_after = |i: usize| {
        lines[i + 1..]
            .iter()
            .any(|l| is_content(&l.kind) && !matches!(l.kind, Line::Numbered { .. }))
    };
    if accepted.len() >= 3 || (accepted.len() == 2 && accepted.iter().all(|&i| has_body_after(i))) {
        for i in accepted {
            opens[i] = true;
        }
    }
    opens
}

/// Numbered entries (`  1. Title` with the body indented under it) become an entry opening
/// followed by the classified text of the numbered line. Only when the page has at least two.
fn unfold_numbered_entries(lines: Vec<Classified>, profile: &Profile) -> Vec<Classified> {
    let mut opens: Vec<bool> = (0..lines.len())
        .map(|i| opens_numbered_entry(&lines, i))
        .collect();
    if opens.iter().filter(|&&o| o).count() < 2 {
        opens = flush_numbered_entries(&lines);
    }
    if opens.iter().filter(|&&o| o).count() < 2 {
        return lines;
    }
    let mut out = Vec::with_capacity(lines.len() + 8);
    for (l, open) in lines.into_iter().zip(opens) {
        match (&l.kind, open) {
            (Line::Numbered { text, .. }, true) => {
                out.push(Classified {
                    line: l.line,
                    indent: l.indent,
                    kind: Line::EntryStart,
                });
                let Some(inner) = classify_with(text, profile) else {
                    continue;
                };
                let kind = match inner {
                    // A numbered entry's first line is its heading or its text, not a byline.
                    Line::Byline(_) | Line::Numbered { .. } | Line::Attribution(_) => Line::Text {
                        headline_like: is_headline_like(text),
                        text: text.clone(),
                    },
                    other => other,
                };
                out.push(Classified {
                    line: l.line,
                    indent: l.indent,
                    kind,
                });
            }
            _ => out.push(l),
        }
    }
    out
}

/// Lines that open an entry wherever they are.
fn is_opener(l: &Line) -> bool {
    matches!(
        l,
        Line::Time(_) | Line::TimeLed { .. } | Line::EntryStart | Line::Untitled
    )
}

/// Whether a page without a manifest kind or a header is still a live page: it has an update
/// counter, or several lines that open entries.
fn looks_live(lines: &[Classified]) -> bool {
    lines
        .iter()
        .any(|l| matches!(l.kind, Line::Counter | Line::Label))
        || lines
            .iter()
            .filter(|l| is_opener(&l.kind) && !matches!(l.kind, Line::Time(_)))
            .count()
            >= 2
        || lines
            .iter()
            .filter(|l| matches!(l.kind, Line::Time(_) | Line::TimeLed { .. }))
            .count()
            >= 3
}

/// Parses report text. `kind` comes from the manifest when there is one; otherwise a page
/// with a live header is a live page and anything else an article.
/// Text that did not come through [`decode`] is cleaned the same way first.
pub fn parse(text: &str, kind: Option<StoryKind>) -> Result<Report, ParseError> {
    parse_with(text, kind, None)
}

/// [`parse`] with the page's template named (a [`profile`] name); `None` lets the page's
/// content choose.
pub fn parse_with(
    text: &str,
    kind: Option<StoryKind>,
    template: Option<&str>,
) -> Result<Report, ParseError> {
    let text = tidy(text);
    let text = text.as_ref();
    let profile = profile::select(text, template);
    let lines = unfold_numbered_entries(classify_all(text, profile), profile);
    let header = find_header(&lines);
    let kind = kind.unwrap_or(if header.is_some() || looks_live(&lines) {
        StoryKind::Live
    } else {
        StoryKind::Article
    });
    let end = lines
        .iter()
        .position(|l| l.kind == Line::End)
        .unwrap_or(lines.len());
    // A page without its footer was cut off (or saved without it).
    let complete = end < lines.len();
    let lines = &lines[..end];
    let last_line = text.lines().count().max(1);
    match kind {
        StoryKind::Article => parse_article(lines, last_line),
        StoryKind::Live => parse_live(lines, header, last_line, complete),
    }
}

fn text_of(l: &Line) -> Option<&str> {
    match l {
        Line::Text { text, .. } => Some(text),
        _ => None,
    }
}

fn parse_article(lines: &[Classified], last_line: usize) -> Result<Report, ParseError> {
    let title_at = lines
        .iter()
        .position(|l| matches!(l.kind, Line::Text { .. }))
        .ok_or(ParseError::NoTitle { line: last_line })?;
    let title = squash(text_of(&lines[title_at].kind).unwrap_or_default());
    let mut entry = Group::new(lines[title_at].line, Some(title.clone()));
    entry.last = Last::Body;
    for l in lines.iter().take(title_at) {
        match &l.kind {
            Line::Byline(a) => entry.authors.push(a.clone()),
            Line::Numbered { text, .. } if is_name_like(text) => entry.authors.push(text.clone()),
            Line::Time(t) if entry.time.is_none() => entry.time = Some(*t),
            _ => {}
        }
    }
    let rest = &lines[title_at + 1..];
    for (i, l) in rest.iter().enumerate() {
        match &l.kind {
            Line::Byline(a) => entry.authors.push(a.clone()),
            Line::Time(t) if entry.time.is_none() && entry.blocks.is_empty() => {
                entry.time = Some(*t)
            }
            Line::Numbered { number: 1, text }
                if is_name_like(text) && !next_is_number(rest, i, 2) && entry.blocks.is_empty() =>
            {
                entry.authors.push(text.clone())
            }
            other => entry.add_body_line(other, false),
        }
    }
    let entry = entry.finish();
    Ok(Report {
        kind: StoryKind::Article,
        title,
        description: entry
            .blocks
            .iter()
            .find_map(|b| match b {
                Block::Paragraph { text } => Some(text.clone()),
                _ => None,
            })
            .unwrap_or_default(),
        entries: vec![entry],
    })
}

/// Whether the next line that is not page furniture is item `n` of a numbered list.
fn next_is_number(lines: &[Classified], i: usize, n: u32) -> bool {
    lines[i + 1..]
        .iter()
        .find(|l| !matches!(l.kind, Line::Noise | Line::Marker))
        .is_some_and(|l| matches!(l.kind, Line::Numbered { number, .. } if number == n))
}

fn parse_live(
    lines: &[Classified],
    header: Option<usize>,
    last_line: usize,
    complete: bool,
) -> Result<Report, ParseError> {
    let title_at = lines
        .iter()
        .position(|l| matches!(l.kind, Line::Text { .. }))
        .ok_or(ParseError::NoTitle { line: last_line })?;
    let title_at = past_menu(lines, title_at, header.unwrap_or(lines.len()));
    // `Live: Stock markets today - …` under a tagline and a menu, on a page with no stream
    // header: the title says it is the page's.
    let first_opener_at = lines
        .iter()
        .position(|l| is_opener(&l.kind))
        .unwrap_or(lines.len());
    let title_at = match header {
        None => lines[title_at..first_opener_at.max(title_at)]
            .iter()
            .position(|l| {
                matches!(&l.kind, Line::Text { text, .. } if {
                    let t = text.to_lowercase();
                    ["live: ", "live updates: ", "live blog: ", "as it happened: "]
                        .iter()
                        .any(|p| t.starts_with(p))
                })
            })
            .map_or(title_at, |k| title_at + k),
        Some(_) => title_at,
    };
    // A stream with no story header (a home page) starts with an entry: its headline is not
    // the page's title, and nothing is a standfirst.
    let first_opener = lines.iter().position(|l| is_opener(&l.kind));
    let headless = header.is_none() && first_opener.is_some_and(|o| o < title_at);
    let title = squash(text_of(&lines[title_at].kind).unwrap_or_default());
    // The standfirst: text before the header; with no header, the paragraphs under the title
    // up to the first line that reads as a headline or opens an entry.
    let (standfirst, body_start) = match header {
        _ if headless => (String::new(), 0),
        Some(h) if h > title_at => {
            // A section above the stream (`Key events`) and the page's bylines are not the
            // standfirst.
            let head = &lines[title_at + 1..h];
            let head = &head[..head
                .iter()
                .position(|l| l.kind == Line::Section)
                .unwrap_or(head.len())];
            let paras: Vec<&str> = head
                .iter()
                .filter_map(|l| text_of(&l.kind))
                .filter(|t| !is_person_like(t) && !is_names(t))
                .collect();
            (paras.join(" "), h + 1)
        }
        Some(h) => (String::new(), h + 1),
        None => {
            let mut end = title_at + 1;
            let mut paras = Vec::new();
            // Furniture under the title (`Updated 4:18 a.m. ET`, `Share`) is not the end of
            // the standfirst.
            let skip = |end: &mut usize| {
                while lines
                    .get(*end)
                    .is_some_and(|l| matches!(l.kind, Line::Noise | Line::Counter))
                {
                    *end += 1;
                }
            };
            skip(&mut end);
            while let Some(Line::Text {
                text,
                headline_like,
            }) = lines.get(end).map(|l| &l.kind)
            {
                if *headline_like && !paras.is_empty() {
                    break;
                }
                paras.push(text.as_str());
                end += 1;
                if *headline_like {
                    break;
                }
                skip(&mut end);
            }
            (paras.join(" "), end)
        }
    };
    // Under a section header (`Summary`) that heads the page, its points are not an entry.
    let mut body_start = body_start.min(lines.len());
    if header.is_some_and(|h| lines[h].kind == Line::Section) {
        while lines
            .get(body_start)
            .is_some_and(|l| matches!(l.kind, Line::Bullet(_) | Line::Noise))
        {
            body_start += 1;
        }
    }
    let mut entries = group_entries(&lines[body_start..], complete);
    drop_teasers(&mut entries);
    let mut standfirst = standfirst;
    if let Some(lead) = take_untimed_lead(&mut entries) {
        if standfirst.is_empty() {
            let paras: Vec<&str> = lead
                .blocks
                .iter()
                .filter_map(|b| match b {
                    Block::Paragraph { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect();
            standfirst = paras.join(" ");
        }
    }
    if oldest_first(&entries) {
        entries.reverse();
    }
    let title = if headless {
        entries
            .iter()
            .find_map(|e| e.headline.clone())
            .unwrap_or(title)
    } else {
        title
    };
    Ok(Report {
        kind: StoryKind::Live,
        title: squash(&title),
        description: squash(&standfirst),
        entries,
    })
}

/// A list of the page's own headlines (key events, a summary of posts) reads as entries with
/// no text: an entry with no text whose headline another entry carries is that list.
/// A menu above the title (`Home`, `Football`, `Cricket`, …), under at most a tagline: three or more short names in a
/// row before the stream's header. The title is the first line after them.
fn past_menu(lines: &[Classified], first: usize, header: usize) -> usize {
    let mut names = 0;
    for (i, l) in lines.iter().enumerate().take(header).skip(first) {
        match &l.kind {
            Line::Text { text, .. }
                if text.split_whitespace().count() <= 3
                    && !text.ends_with(['.', '!', '?', '"', ':']) =>
            {
                names += 1
            }
            Line::Text { .. } if names >= 3 => return i,
            // A site's tagline may stand above its menu.
            Line::Text { .. } if i == first => {}
            Line::Text { .. } => return first,
            kind if is_opener(kind) => return first,
            _ => {}
        }
    }
    first
}

/// The page's lead (a hero image under the header, a standfirst under `Live updates`): an
/// untitled, undated, unsigned group above the first entry of a stream whose every other
/// entry has its time. It is no entry.
fn take_untimed_lead(entries: &mut Vec<RawEntry>) -> Option<RawEntry> {
    let lead = entries.first()?;
    let untimed_lead = entries.len() >= 2
        && lead.headline.is_none()
        && lead.time.is_none()
        && lead.authors.is_empty()
        && entries[1..].iter().all(|e| e.time.is_some());
    untimed_lead.then(|| entries.remove(0))
}

fn drop_teasers(entries: &mut Vec<RawEntry>) {
    let has_text = |e: &RawEntry| e.blocks.iter().any(|b| !matches!(b, Block::Figure { .. }));
    let with_text: std::collections::HashSet<String> = entries
        .iter()
        .filter(|e| has_text(e))
        .filter_map(|e| e.headline.clone())
        .collect();
    entries.retain(|e| has_text(e) || e.headline.as_ref().is_none_or(|h| !with_text.contains(h)));
}

/// Whether the entries run oldest first: more of the steps between entries with times go
/// forward in time than back.
fn oldest_first(entries: &[RawEntry]) -> bool {
    let times: Vec<TimeLine> = entries.iter().filter_map(|e| e.time).collect();
    let (mut forward, mut back) = (0usize, 0usize);
    for w in times.windows(2) {
        let key = |t: &TimeLine| (t.date, t.time);
        let (a, b) = (key(&w[0]), key(&w[1]));
        let (a, b) = if a.0.is_some() && b.0.is_some() {
            (a, b)
        } else {
            ((None, a.1), (None, b.1))
        };
        match a.cmp(&b) {
            std::cmp::Ordering::Less => forward += 1,
            std::cmp::Ordering::Greater => back += 1,
            std::cmp::Ordering::Equal => {}
        }
    }
    forward > back
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    Headline,
    Caption,
    Body,
}

struct Group {
    entry: RawEntry,
    authors: Vec<String>,
    time: Option<TimeLine>,
    blocks: Vec<Block>,
    last: Last,
    /// The last block is a figure still waiting for its caption line (`Image caption, …`):
    /// what stands there is alt text or a bare credit.
    alt_pending: bool,
}

impl Group {
    fn new(line: usize, headline: Option<String>) -> Self {
        let last = if headline.is_some() {
            Last::Headline
        } else {
            Last::Body
        };
        Group {
            entry: RawEntry {
                headline,
                line,
                ..RawEntry::default()
            },
            authors: Vec::new(),
            time: None,
            blocks: Vec::new(),
            last,
            alt_pending: false,
        }
    }

    fn finish(self) -> RawEntry {
        RawEntry {
            authors: self.authors,
            time: self.time,
            blocks: self.blocks,
            ..self.entry
        }
    }

    fn has_body(&self) -> bool {
        !self.blocks.is_empty()
    }

    fn push_list_item(&mut self, ordered: bool, item: &str) {
        if let Some(Block::List { ordered: o, items }) = self.blocks.last_mut() {
            if *o == ordered {
                items.push(item.to_string());
                return;
            }
        }
        self.blocks.push(Block::List {
            ordered,
            items: vec![item.to_string()],
        });
    }

    /// Takes the paragraphs at the end of the body that belong to a quotation: at most
    /// `max`, stopping at one that reads as narration (it carries quotation marks) and at one
    /// that introduces the quotation (it ends with a colon). Short lines that were guessed to
    /// be captions (no credit) are taken too while nothing else has been: directly above an
    /// attribution, a line is the quotation, not a caption.
    fn take_quoted(&mut self, max: usize, narration_stops: bool) -> Vec<String> {
        let mut taken = Vec::new();
        let mut only_guessed_captions = true;
        while taken.len() < max {
            let text = match self.blocks.last() {
                Some(Block::Paragraph { text }) => {
                    if text.trim_end().ends_with(':')
                        || (narration_stops && !taken.is_empty() && text.contains(['"', '“', '”']))
                    {
                        break;
                    }
                    only_guessed_captions = false;
                    text.clone()
                }
                Some(Block::Figure {
                    caption,
                    credit: None,
                }) if only_guessed_captions && !caption.is_empty() => caption.clone(),
                _ => break,
            };
            self.blocks.pop();
            taken.push(text);
        }
        taken.reverse();
        taken
    }

    /// A line inside an entry's body. `caption_context` says an uncredited short line here
    /// is a caption (it follows the headline or another caption).
    fn add_body_line(&mut self, line: &Line, caption_context: bool) {
        let mut alt_pending = false;
        let next_last = match line {
            Line::Text {
                text,
                headline_like,
            } => {
                if *headline_like && caption_context {
                    self.blocks.push(Block::Figure {
                        caption: text.clone(),
                        credit: None,
                    });
                    alt_pending = true;
                    Last::Caption
                } else {
                    match self.blocks.last_mut() {
                        // A sentence the page broke in two, with furniture between the halves.
                        Some(Block::Paragraph { text: above })
                            if continues_sentence(above, text) =>
                        {
                            above.push(' ');
                            above.push_str(text);
                        }
                        _ => self.blocks.push(Block::Paragraph { text: text.clone() }),
                    }
                    Last::Body
                }
            }
            Line::Credit(credit) => {
                match self.blocks.last_mut() {
                    // A credit alone on its line belongs to the caption above it.
                    Some(Block::Figure {
                        credit: c @ None, ..
                    }) => *c = Some(credit.clone()),
                    _ => self.blocks.push(Block::Figure {
                        caption: String::new(),
                        credit: Some(credit.clone()),
                    }),
                }
                Last::Caption
            }
            Line::Figure { caption, credit } => {
                self.blocks.push(Block::Figure {
                    caption: caption.clone(),
                    credit: Some(credit.clone()),
                });
                if matches!(self.last, Last::Headline | Last::Caption) {
                    Last::Caption
                } else {
                    Last::Body
                }
            }
            Line::Bullet(item) => {
                self.push_list_item(false, item);
                Last::Body
            }
            Line::Numbered { text, .. } if text.is_empty() => self.last,
            Line::Numbered { text, .. } => {
                self.push_list_item(true, text);
                Last::Body
            }
            Line::Attribution(who) => {
                let paragraphs = self.take_quoted(4, true);
                if paragraphs.is_empty() {
                    self.blocks.push(Block::Paragraph {
                        text: format!("– {who}"),
                    });
                } else {
                    self.blocks.push(Block::Quote {
                        paragraphs,
                        attribution: Some(who.clone()),
                    });
                }
                Last::Body
            }
            Line::EmbedAttribution(who) => {
                // A saved tweet is one paragraph: what is above it is the entry's own text.
                let paragraphs = self.take_quoted(1, false);
                if paragraphs.is_empty() {
                    self.blocks.push(Block::Paragraph { text: who.clone() });
                } else {
                    self.blocks.push(Block::Embed {
                        paragraphs,
                        attribution: who.clone(),
                    });
                }
                Last::Body
            }
            Line::Byline(a) => {
                self.authors.push(a.clone());
                self.last
            }
            Line::AltText(text) => {
                self.blocks.push(Block::Figure {
                    caption: text.clone(),
                    credit: None,
                });
                alt_pending = true;
                Last::Caption
            }
            Line::Caption(text) => {
                // The alt text or credit above an `Image caption` line is the same figure.
                match self.blocks.last_mut() {
                    Some(Block::Figure { caption, .. }) if self.alt_pending => {
                        *caption = text.clone();
                    }
                    _ => self.blocks.push(Block::Figure {
                        caption: text.clone(),
                        credit: None,
                    }),
                }
                Last::Caption
            }
            Line::ImageSource(credit) => {
                let credit = format!("Image source: {credit}");
                match self.blocks.last_mut() {
                    Some(Block::Figure {
                        credit: c @ None, ..
                    }) if self.alt_pending => {
                        *c = Some(credit);
                    }
                    _ => self.blocks.push(Block::Figure {
                        caption: String::new(),
                        credit: Some(credit),
                    }),
                }
                alt_pending = true;
                Last::Caption
            }
            Line::TimeLed { text, .. } => {
                self.blocks.push(Block::Paragraph { text: text.clone() });
                Last::Body
            }
            Line::Time(_)
            | Line::Marker
            | Line::Label
            | Line::Section
            | Line::End
            | Line::Noise
            | Line::BannerEnd
            | Line::Counter
            | Line::EntryStart
            | Line::Ago
            | Line::Link(_)
            | Line::Untitled => {
                alt_pending = self.alt_pending;
                self.last
            }
        };
        self.alt_pending = alt_pending;
        self.last = next_last;
    }
}

/// How a page places entry times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimePlacement {
    /// No time lines: entries start at headline-like lines after a body.
    None,
    /// A time line opens each entry (above its headline): only time lines start entries.
    Before,
    /// The time comes right after the headline: headlines start entries, times attach.
    After,
}

/// A line that says who wrote the entry: neither body nor a neighbour that places a time.
fn is_byline_at(lines: &[Classified], i: usize) -> bool {
    match &lines[i].kind {
        Line::Byline(_) => true,
        Line::Numbered { number: 1, text } => is_name_like(text) && !next_is_number(lines, i, 2),
        _ => false,
    }
}

/// Whether line `i` is in a numbered list of two or more names (`1. Carl Dinnen`,
/// `2. Emily Morgan, ITV News`) that stands over a headline or a time: a list of authors.
fn numbered_names_over_headline(lines: &[Classified], i: usize) -> bool {
    let skip = |l: &Classified| matches!(l.kind, Line::Noise);
    let is_name = |l: &Classified| {
        matches!(&l.kind, Line::Numbered { text, .. }
            if is_person_like(tidy_byline(text).split(", ").next().unwrap_or_default()))
    };
    if !is_name(&lines[i]) {
        return false;
    }
    let mut start = i;
    while let Some(j) = (0..start).rev().find(|&j| !skip(&lines[j])) {
        if !is_name(&lines[j]) {
            break;
        }
        start = j;
    }
    let mut end = i;
    let after = loop {
        match (end + 1..lines.len()).find(|&j| !skip(&lines[j])) {
            Some(j) if is_name(&lines[j]) => end = j,
            other => break other,
        }
    };
    let run = lines[start..=end].iter().filter(|l| !skip(l)).count();
    // `The measures:` over `1. Care Bill`, `2. Energy Bill`: a list it introduces.
    let introduced = (0..start)
        .rev()
        .find(|&j| !skip(&lines[j]))
        .is_some_and(|j| matches!(&lines[j].kind, Line::Text { text, .. } if text.ends_with(':')));
    run >= 2
        && !introduced
        && after.is_some_and(|j| {
            matches!(
                lines[j].kind,
                Line::Time(_)
                    | Line::Text {
                        headline_like: true,
                        ..
                    }
            )
        })
}

/// Whether the next line that is not furniture or a byline reads as a headline.
fn next_is_headline(lines: &[Classified], i: usize) -> bool {
    (i + 1..lines.len())
        .find(|&j| is_content(&lines[j].kind) && !is_byline_at(lines, j))
        .is_some_and(|j| {
            matches!(
                lines[j].kind,
                Line::Text {
                    headline_like: true,
                    ..
                }
            )
        })
}

/// Decides by a vote over every time line: one followed by a headline opens its entry
/// (`Before`); one preceded by a headline follows it (`After`). Page furniture and bylines are
/// looked through. Entries without a time line of their own do not sway the vote, so a page
/// whose newest entry has no time is still read right. A tie means `Before`.
fn time_placement(lines: &[Classified]) -> TimePlacement {
    let skip = |i: usize| {
        matches!(
            lines[i].kind,
            Line::Noise | Line::Marker | Line::Label | Line::End | Line::Ago
        ) || is_byline_at(lines, i)
    };
    let headline = |i: Option<usize>| {
        i.is_some_and(|i| {
            matches!(
                lines[i].kind,
                Line::Text {
                    headline_like: true,
                    ..
                }
            )
        })
    };
    let (mut before, mut after, mut times) = (0usize, 0usize, 0usize);
    for (i, l) in lines.iter().enumerate() {
        if !matches!(l.kind, Line::Time(_)) {
            continue;
        }
        times += 1;
        // A name right over the time (`Kiran Stacey` over `17.12 BST`) is a byline, not the
        // headline the time is under.
        let name_over = |j: usize| {
            j + 1 == i && matches!(&lines[j].kind, Line::Text { text, .. } if is_person_like(text))
        };
        let prev = (0..i).rev().find(|&j| !skip(j) && !name_over(j));
        let next = (i + 1..lines.len()).find(|&j| !skip(j));
        if prev.is_none() || headline(next) {
            before += 1;
        }
        if headline(prev) {
            after += 1;
        }
    }
    match times {
        0 => TimePlacement::None,
        _ if after > before => TimePlacement::After,
        _ => TimePlacement::Before,
    }
}

/// Groups the lines below the header into entries. `complete` is false for a page that lost
/// its footer (`Back to top`): it was cut off, so its last line may be a cut paragraph.
fn group_entries(lines: &[Classified], complete: bool) -> Vec<RawEntry> {
    let placement = time_placement(lines);
    // Numbered entries: only an entry's number opens one, whatever reads like a headline.
    let numbered = lines.iter().any(|l| l.kind == Line::EntryStart);
    let mut entries = Vec::new();
    let mut current: Option<Group> = None;
    let mut pending_authors: Vec<String> = Vec::new();
    let mut pending_time: Option<TimeLine> = None;
    let mut entry_due = false;
    // `Post update`: the entry that opens next has no headline.
    let mut untitled_due = false;
    // The body's last block is a timeline (`2pm: …` lines under `Timeline:`).
    let mut in_timeline = false;

    // A byline right above line `i` (`Kiran Stacey` over `17.12 BST` reads as one where times
    // open entries).
    let byline_above = |i: usize| {
        i > 0
            && match &lines[i - 1].kind {
                Line::Byline(_) => true,
                Line::Text { text, .. } => {
                    placement == TimePlacement::Before && is_person_like(text)
                }
                _ => false,
            }
    };
    for (i, l) in lines.iter().enumerate() {
        let line = match &l.kind {
            Line::Numbered { number: 1, text }
                if is_name_like(text) && !next_is_number(lines, i, 2) =>
            {
                Line::Byline(tidy_byline(text))
            }
            // `1. Carl Dinnen`, `2. Emily Morgan` over a headline: the entry's authors.
            Line::Numbered { text, .. } if numbered_names_over_headline(lines, i) => {
                Line::Byline(tidy_byline(text))
            }
            // `3. 1405: …`: a numbered post that starts with its time.
            Line::Numbered { text, .. } if parse_time_prefix(text).is_some() => {
                match parse_time_prefix(text) {
                    Some((time, rest)) => Line::TimeLed {
                        time,
                        text: rest.to_string(),
                        full: text.clone(),
                    },
                    None => l.kind.clone(),
                }
            }
            // `Kiran Stacey` over `17.12 BST` where times open entries: the byline at the top
            // of the entry the time opens.
            Line::Text { text, .. }
                if placement == TimePlacement::Before
                    && is_person_like(text)
                    && lines
                        .get(i + 1)
                        .is_some_and(|n| matches!(n.kind, Line::Time(_))) =>
            {
                Line::Byline(text.clone())
            }
            // An image's alt text above its caption or credit line: a figure, not a headline.
            Line::Text { text, .. }
                if !is_paragraph(text)
                    && lines.get(i + 1).is_some_and(|n| match &n.kind {
                        Line::Caption(_) | Line::ImageSource(_) => true,
                        // A credit alone on the next line: this line is the caption.
                        Line::Credit(_) => text.len() <= 200,
                        _ => false,
                    }) =>
            {
                Line::AltText(text.clone())
            }
            // A link where an entry is due, over a time line, or between one entry's body and
            // a paragraph (on a page where headlines open entries) is a headline.
            Line::Link(text)
                if entry_due
                    || current.is_none()
                    || lines[i + 1..]
                        .iter()
                        .find(|n| is_content(&n.kind))
                        .is_some_and(|n| match n.kind {
                            Line::Time(_) => true,
                            Line::Text { headline_like, .. } => {
                                !headline_like
                                    && placement != TimePlacement::Before
                                    && current.as_ref().is_some_and(|g| g.last == Last::Body)
                            }
                            _ => false,
                        }) =>
            {
                Line::Text {
                    text: text.clone(),
                    headline_like: is_headline_like(text),
                }
            }
            other => other.clone(),
        };
        match &line {
            Line::Marker
            | Line::Label
            | Line::Section
            | Line::Noise
            | Line::End
            | Line::BannerEnd
            | Line::Counter
            | Line::Link(_) => continue,
            Line::EntryStart | Line::Untitled | Line::Time(_) if current.is_none() => {
                // Bylines above the first entry's opening are the page's, not the entry's;
                // one right over its time line is the entry's.
                let adjacent = byline_above(i);
                if !(adjacent && matches!(line, Line::Time(_))) {
                    pending_authors.clear();
                }
                entry_due = true;
                untitled_due = l.kind == Line::Untitled;
                if let Line::Time(t) = &line {
                    pending_time = Some(*t);
                }
            }
            Line::EntryStart => entry_due = true,
            // `2 min ago` under a headline dates that entry; below a body, it opens the next.
            Line::Ago => {
                if !numbered && current.as_ref().is_none_or(Group::has_body) {
                    entry_due = true;
                }
            }
            Line::Untitled => {
                entry_due = true;
                untitled_due = true;
            }
            // `By A, B and C` above the first entry: the whole page's reporters.
            Line::Byline(a) if current.is_none() && (a.contains(" and ") || a.contains(" & ")) => {}
            Line::Byline(a) => match current.as_mut() {
                Some(g) if g.last == Last::Headline && !g.has_body() && !entry_due => {
                    g.authors.push(a.clone())
                }
                // Under `Post update` or a time line, before any text: the coming entry's.
                Some(g) if !entry_due && !g.has_body() && g.entry.headline.is_none() => {
                    g.authors.push(a.clone())
                }
                _ => pending_authors.push(a.clone()),
            },
            Line::Time(t) => match current.as_mut() {
                Some(g)
                    if g.time.is_none()
                        && !entry_due
                        && (placement == TimePlacement::After
                            || (g.last == Last::Headline
                                && !g.has_body()
                                && !next_is_headline(lines, i))) =>
                {
                    g.time = Some(*t)
                }
                Some(g) if numbered && !entry_due => {
                    g.time.get_or_insert(*t);
                }
                _ => {
                    // A second time before the entry the first one opened (`11:20, 14 APR` then
                    // `Updated 12:05` under the page's byline): the page's stamps, and the
                    // bylines above them the page's.
                    if entry_due && !byline_above(i) {
                        pending_authors.clear();
                    }
                    pending_time = Some(*t);
                    entry_due = true;
                }
            },
            // `Timeline:` over `2pm: …`, `3pm: …`: the stamps are items of the body's list.
            Line::TimeLed { full, .. }
                if current.as_ref().is_some_and(|g| {
                    !entry_due
                        && match g.blocks.last() {
                            Some(Block::Paragraph { text }) => text.ends_with(':'),
                            Some(Block::List { .. }) => in_timeline,
                            _ => false,
                        }
                }) =>
            {
                if let Some(g) = current.as_mut() {
                    g.add_body_line(&Line::Bullet(full.clone()), false);
                }
                in_timeline = true;
                continue;
            }
            Line::TimeLed { time, .. } => {
                if let Some(g) = current.take() {
                    entries.push(g.finish());
                }
                // A time line that opened nothing (`March 25, 2026 10:58 AM GMT` under `By
                // Reuters Staff`) stamped the page: the bylines above it are the page's.
                if pending_time.is_some() {
                    pending_authors.clear();
                }
                // `10.55am: Buses diverted`: a stamped headline; `0240: The recount…`: text.
                let headline = match &line {
                    Line::TimeLed { text, .. } if is_headline_like(text) => Some(text.clone()),
                    _ => None,
                };
                let mut g = Group::new(l.line, headline.clone());
                g.authors = std::mem::take(&mut pending_authors);
                g.time = Some(*time);
                if headline.is_none() {
                    g.add_body_line(&line, false);
                }
                current = Some(g);
                pending_time = None;
                entry_due = false;
                untitled_due = false;
            }
            _ => {
                let headline_like = matches!(
                    line,
                    Line::Text {
                        headline_like: true,
                        ..
                    }
                );
                let starts = match &current {
                    None => true,
                    Some(_) if entry_due => true,
                    Some(_) if numbered => false,
                    // Where times follow headlines, a headline-like line over a time line is
                    // the next entry's headline, even under a caption.
                    Some(_)
                        if placement == TimePlacement::After
                            && headline_like
                            && (i + 1..lines.len())
                                .find(|&j| is_content(&lines[j].kind) && !is_byline_at(lines, j))
                                .is_some_and(|j| matches!(lines[j].kind, Line::Time(_))) =>
                    {
                        true
                    }
                    // A byline below the last body belongs to the entry below it: what comes
                    // next is that entry's headline, not a caption of this one.
                    Some(_) if headline_like && !pending_authors.is_empty() => true,
                    Some(g) => {
                        placement != TimePlacement::Before && headline_like && g.last == Last::Body
                    }
                };
                if starts {
                    if let Some(g) = current.take() {
                        entries.push(g.finish());
                    }
                    let headline = match &line {
                        Line::Text {
                            text,
                            headline_like: true,
                        } if !untitled_due => Some(text.clone()),
                        _ => None,
                    };
                    let opened_by_headline = headline.is_some();
                    let mut g = Group::new(l.line, headline);
                    g.authors = std::mem::take(&mut pending_authors);
                    g.time = pending_time.take();
                    if !opened_by_headline {
                        g.add_body_line(&line, untitled_due);
                    }
                    current = Some(g);
                    entry_due = false;
                    untitled_due = false;
                } else if let Some(g) = current.as_mut() {
                    let caption_context = matches!(g.last, Last::Headline | Last::Caption);
                    g.add_body_line(&line, caption_context);
                }
            }
        }
        in_timeline = false;
    }
    if let Some(mut g) = current.take() {
        // Bylines or a time after the last entry have nothing below them to belong to.
        if g.time.is_none() {
            g.time = pending_time;
        }
        let cut_paragraph = !complete
            && g.blocks.is_empty()
            && g.authors.is_empty()
            && g.time.is_none()
            && !entries.is_empty();
        // A cut-off page that stops after an entry's heading and time: the heading has no
        // body yet, so the entry is not there.
        let cut_heading = !complete
            && g.blocks.is_empty()
            && g.entry.headline.is_some()
            && g.time.is_some()
            && !entries.is_empty();
        match (cut_paragraph, g.entry.headline.take(), entries.last_mut()) {
            _ if cut_heading => {}
            // A cut-off page ending in a short line with nothing under it: that line is the
            // start of a paragraph of the entry above, not a new entry with no body.
            (true, Some(text), Some(prev)) => prev.blocks.push(Block::Paragraph { text }),
            (_, headline, _) => {
                g.entry.headline = headline;
                entries.push(g.finish());
            }
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_names_the_line() {
        let bytes = b"Title\n\nGood line\n\xff\xfe bad\n";
        assert_eq!(decode(bytes), Err(ParseError::InvalidUtf8 { line: 4 }));
    }

    #[test]
    fn crlf_and_controls_are_cleaned() {
        assert_eq!(decode(b"a\r\nb\rc\x07d").unwrap(), "a\nb\ncd");
    }

    #[test]
    fn empty_report_is_an_error() {
        assert!(matches!(
            parse("\n\nAdvertisement\n", None),
            Err(ParseError::NoTitle { .. })
        ));
    }

    #[test]
    fn quotation_takes_paragraphs_up_to_narration() {
        let text =
            "Title\n\nHe said \"this\" today.\n\nWe want peace.\n\nSo we talk.\n\n– The minister\n";
        let r = parse(text, Some(StoryKind::Article)).unwrap();
        let blocks = &r.entries[0].blocks;
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            blocks[1],
            Block::Quote {
                paragraphs: vec!["We want peace.".into(), "So we talk.".into()],
                attribution: Some("The minister".into())
            }
        );
    }

    fn live(body: &str) -> Vec<RawEntry> {
        let text = format!("Story title\n\nThe standfirst of the story.\n\nLive updates\n\n{body}");
        parse(&text, None).unwrap().entries
    }

    fn headlines(entries: &[RawEntry]) -> Vec<Option<&str>> {
        entries.iter().map(|e| e.headline.as_deref()).collect()
    }

    #[test]
    fn quotation_stops_at_the_line_that_introduces_it() {
        let text = "Title\n\nRates were held.\n\nThe Bank explained:\n\nThe rise was not warranted.\n\n– The committee\n";
        let r = parse(text, Some(StoryKind::Article)).unwrap();
        assert_eq!(
            r.entries[0].blocks,
            vec![
                Block::Paragraph {
                    text: "Rates were held.".into()
                },
                Block::Paragraph {
                    text: "The Bank explained:".into()
                },
                Block::Quote {
                    paragraphs: vec!["The rise was not warranted.".into()],
                    attribution: Some("The committee".into())
                },
            ]
        );
        assert_eq!(r.description, "Rates were held.");
    }

    #[test]
    fn a_short_quotation_under_the_headline_is_not_a_caption() {
        let e = live(
            "Minister speaks\n\n\"This is a vital investment\"\n\n– Transport Secretary\n\nNext entry\n\nBody.\n",
        );
        assert_eq!(
            headlines(&e),
            vec![Some("Minister speaks"), Some("Next entry")]
        );
        assert_eq!(
            e[0].blocks,
            vec![Block::Quote {
                paragraphs: vec!["\"This is a vital investment\"".into()],
                attribution: Some("Transport Secretary".into())
            }]
        );
    }

    #[test]
    fn a_caption_above_a_quotation_stays_a_caption() {
        let e = live(
            "Minister speaks\n\nThe minister in Leeds\n\nWe will build it.\n\n– Transport Secretary\n",
        );
        assert_eq!(
            e[0].blocks,
            vec![
                Block::Figure {
                    caption: "The minister in Leeds".into(),
                    credit: None
                },
                Block::Quote {
                    paragraphs: vec!["We will build it.".into()],
                    attribution: Some("Transport Secretary".into())
                },
            ]
        );
    }

    #[test]
    fn a_tweet_is_one_paragraph_even_when_it_reads_like_a_caption() {
        let e = live(
            "Tribute\n\nA unique figure who reshaped politics\n\n— Ed Miliband (@Ed_Miliband) April 8, 2013\n",
        );
        assert_eq!(
            e[0].blocks,
            vec![Block::Embed {
                paragraphs: vec!["A unique figure who reshaped politics".into()],
                attribution: "— Ed Miliband (@Ed_Miliband) April 8, 2013".into()
            }]
        );
        let e = live(
            "Flags lowered\n\nFlags are at half-mast.\n\nThe flag came down pic.twitter.com/x\n\n— ITV News (@itvnews) April 8, 2013\n",
        );
        assert_eq!(
            e[0].blocks[0],
            Block::Paragraph {
                text: "Flags are at half-mast.".into()
            }
        );
        assert!(
            matches!(&e[0].blocks[1], Block::Embed { paragraphs, .. } if paragraphs.len() == 1)
        );
    }

    #[test]
    fn a_byline_below_a_photo_entry_opens_the_next_entry() {
        let e = live(
            "In pictures\n\nA street under water Credit: AP\n\n  1. Helen Marsh\n\nFloods claim lives\n\nRescuers searched.\n",
        );
        assert_eq!(
            headlines(&e),
            vec![Some("In pictures"), Some("Floods claim lives")]
        );
        assert!(e[0].authors.is_empty());
        assert_eq!(e[1].authors, vec!["Helen Marsh".to_string()]);
    }

    #[test]
    fn times_below_headlines_are_found_when_the_newest_entry_has_none() {
        let e = live(
            "Summit ends\n\nA statement was agreed.\n\nLeaders meet\n\n14:34\n\nThey met for two hours.\n\nTalks begin\n\n2:05pm\n\nThe talks began.\n",
        );
        assert_eq!(
            headlines(&e),
            vec![
                Some("Summit ends"),
                Some("Leaders meet"),
                Some("Talks begin")
            ]
        );
        assert_eq!(e[0].time, None);
        assert_eq!(
            e[1].time.map(|t| t.time.to_string()),
            Some("14:34:00".into())
        );
        assert_eq!(
            e[2].time.map(|t| t.time.to_string()),
            Some("14:05:00".into())
        );
    }

    #[test]
    fn times_above_headlines_still_open_entries() {
        let e = live(
            "10:15pm\n\nCrowds sing\n\nThey sang.\n\n21:40\n\n  1. Helen Marsh\n\nPrince delighted\n\nHe said so.\n",
        );
        assert_eq!(
            headlines(&e),
            vec![Some("Crowds sing"), Some("Prince delighted")]
        );
        assert_eq!(e[1].authors, vec!["Helen Marsh".to_string()]);
        assert!(e.iter().all(|e| e.time.is_some()));
    }

    #[test]
    fn a_cut_off_page_ends_in_a_paragraph_not_an_entry() {
        let body = "Jagger speaks\n\nHe joked.\n\nFans arrive\n\nQueues formed.\n\nOrganisers said the site would be full by Thurs";
        let e = live(body);
        assert_eq!(
            headlines(&e),
            vec![Some("Jagger speaks"), Some("Fans arrive")]
        );
        assert_eq!(
            e[1].blocks.last(),
            Some(&Block::Paragraph {
                text: "Organisers said the site would be full by Thurs".into()
            })
        );
        // With its footer the page is complete: a last headline is an entry of its own.
        let e = live(&format!("{body}\n\nBack to top\n"));
        assert_eq!(e.len(), 3);
    }

    #[test]
    fn parse_cleans_text_that_did_not_come_through_decode() {
        let raw = "Title\r\n\r\nStand\u{7}first.\r\n\r\nLive updates\r\n\r\nPolice\u{0} investigate\r\n\r\nBody\u{1b} text.\r\n";
        let direct = parse(raw, None).unwrap();
        let decoded = parse(&decode(raw.as_bytes()).unwrap(), None).unwrap();
        assert_eq!(direct, decoded);
        assert_eq!(direct.description, "Standfirst.");
        assert_eq!(
            direct.entries[0].headline.as_deref(),
            Some("Police investigate")
        );
        assert_eq!(
            direct.entries[0].blocks,
            vec![Block::Paragraph {
                text: "Body text.".into()
            }]
        );
    }

    #[test]
    fn live_under_the_title_heads_the_stream_and_above_it_labels_the_page() {
        let under = "Title\n\nA photo of the scene\n\nThe standfirst.\n\nLive\n\nFirst\n\nBody one.\n\nSecond\n\nBody two.\n";
        let r = parse(under, None).unwrap();
        assert_eq!(headlines(&r.entries), vec![Some("First"), Some("Second")]);
        assert_eq!(r.description, "A photo of the scene The standfirst.");
        let above = "Live\n\nTitle\n\nThe standfirst.\n\n14:05\n\nFirst\n\nBody one.\n\n13:05\n\nSecond\n\nBody two.\n";
        let r = parse(above, None).unwrap();
        assert_eq!(r.kind, StoryKind::Live);
        assert_eq!(r.title, "Title");
        assert_eq!(headlines(&r.entries), vec![Some("First"), Some("Second")]);
    }

    #[test]
    fn two_numbered_names_over_a_headline_are_its_authors_and_a_list_stays_a_list() {
        let e = live(
            "  1. Carl Dinnen\n  2. Emily Morgan, ITV News\n\nTwo reporters at the summit\n\nThey both reported.\n\nThe bills\n\nThe measures:\n\n  1. Care Bill\n  2. Energy Bill\n\nNext headline here\n\nMore text.\n",
        );
        assert_eq!(
            headlines(&e),
            vec![
                Some("Two reporters at the summit"),
                Some("The bills"),
                Some("Next headline here")
            ]
        );
        assert_eq!(e[0].authors, vec!["Carl Dinnen", "Emily Morgan"]);
        assert!(e[1].authors.is_empty() && e[2].authors.is_empty());
        assert_eq!(
            e[1].blocks[1],
            Block::List {
                ordered: true,
                items: vec!["Care Bill".into(), "Energy Bill".into()]
            }
        );
    }

    #[test]
    fn a_video_report_line_is_a_caption_not_a_headline() {
        let e = live(
            "Minister resigns\n\nThe minister has resigned.\n\nVideo report by ITV News Correspondent Carl Dinnen\n\nHe said he was proud of his work.\n",
        );
        assert_eq!(headlines(&e), vec![Some("Minister resigns")]);
        assert_eq!(
            e[0].blocks[1],
            Block::Figure {
                caption: "Video report by ITV News Correspondent Carl Dinnen".into(),
                credit: None
            }
        );
    }

    #[test]
    fn a_relative_time_under_a_headline_dates_it_and_below_a_body_opens_an_entry() {
        let e = live(
            "Pound slips\n\n2 min ago\n\nSterling fell.\n\nGilts rally\n\n5 min ago\n\nYields fell.\n\n9 min ago\n\nTraders expect cuts.\n",
        );
        assert_eq!(
            headlines(&e),
            vec![Some("Pound slips"), Some("Gilts rally"), None]
        );
        assert_eq!(e[2].blocks.len(), 1);
    }

    #[test]
    fn reporters_of_the_whole_page_are_not_the_first_entry_s() {
        let e = live(
            "By Imogen Hart and Lewis Bray\n\nFirst headline\n\nBody one.\n\n  1. Carl Dinnen\n\nSecond headline\n\nBody two.\n",
        );
        assert!(e[0].authors.is_empty());
        assert_eq!(e[1].authors, vec!["Carl Dinnen"]);
    }

    #[test]
    fn a_watch_line_is_a_headline_over_a_body_and_a_link_under_a_headline() {
        let e = live(
            "First headline\n\nBody one.\n\nWatch: Cameron statement in full\n\nHe spoke for ten minutes.\n\nThird headline\n\nWatch: The clip of the day\n\nBody three.\n",
        );
        assert_eq!(
            headlines(&e),
            vec![
                Some("First headline"),
                Some("Watch: Cameron statement in full"),
                Some("Third headline")
            ]
        );
        assert_eq!(e[2].blocks.len(), 1);
    }

    #[test]
    fn a_desk_in_the_byline_slot_is_neither_author_nor_caption() {
        let e = live(
            "Rates held\n\nNational\n\nThe Bank held rates.\n\n  1. Politics\n\nVote passes\n\nMPs voted.\n",
        );
        assert_eq!(headlines(&e), vec![Some("Rates held"), Some("Vote passes")]);
        assert!(e.iter().all(|e| e.authors.is_empty()));
        assert_eq!(
            e[0].blocks,
            vec![Block::Paragraph {
                text: "The Bank held rates.".into()
            }]
        );
    }

    #[test]
    fn a_timeline_inside_an_entry_is_its_list_not_entries() {
        let e = live(
            "How the day unfolded\n\nThe minister's day was busy.\n\nTimeline:\n\n9am: Arrives at Downing Street\n\nAdvertisement\n\n2.30pm: Meets the president\n\nNext entry here\n\nMore text.\n",
        );
        assert_eq!(
            headlines(&e),
            vec![Some("How the day unfolded"), Some("Next entry here")]
        );
        assert_eq!(
            e[0].blocks[2],
            Block::List {
                ordered: false,
                items: vec![
                    "9am: Arrives at Downing Street".into(),
                    "2.30pm: Meets the president".into()
                ]
            }
        );
    }

    #[test]
    fn a_template_named_in_the_manifest_chooses_the_profile() {
        let text = "Title\n\nLive Reporting\n\nAll times stated are UK\n\nResults\n\nThe scores are in.\n\nGoal\n\nA goal.\n";
        // The page's content chooses BBC live, where `Results` is a tab of the page.
        let chosen = parse_with(text, None, None).unwrap();
        assert_eq!(headlines(&chosen.entries), vec![None, Some("Goal")]);
        // Named in the manifest, the generic profile wins over the page's content.
        let generic = parse_with(text, None, Some("generic")).unwrap();
        assert_eq!(
            headlines(&generic.entries),
            vec![Some("Results"), Some("Goal")]
        );
    }

    #[test]
    fn an_advert_inside_a_numbered_list_does_not_make_a_byline() {
        let e = live(
            "The bills\n\nThe measures:\n\n  1. Care Bill\n\nAdvertisement\n\n  2. Energy Bill\n",
        );
        assert!(e[0].authors.is_empty());
        assert_eq!(
            e[0].blocks[1],
            Block::List {
                ordered: true,
                items: vec!["Care Bill".into(), "Energy Bill".into()]
            }
        );
    }
}
