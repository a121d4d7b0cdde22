//! Grouping classified lines into a story: title, standfirst, and entries newest first.

use super::lines::{Line, classify, is_name_like};
use super::time::TimeLine;
use crate::model::{Block, StoryKind};
use crate::text::{clean, squash};

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
        Ok(s) => Ok(clean(&s.replace("\r\n", "\n").replace('\r', "\n"))),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
            Err(ParseError::InvalidUtf8 { line })
        }
    }
}

struct Classified {
    line: usize,
    kind: Line,
}

fn classify_all(text: &str) -> Vec<Classified> {
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| classify(raw).map(|kind| Classified { line: i + 1, kind }))
        .collect()
}

fn is_content(l: &Line) -> bool {
    !matches!(l, Line::Marker | Line::End | Line::Noise)
}

/// Where the live entries begin: the first marker, before any `Back to top`, that has content
/// after it. `Latest ITV News reports` at the very end is boilerplate, not a header.
fn find_header(lines: &[Classified]) -> Option<usize> {
    let end = lines
        .iter()
        .position(|l| l.kind == Line::End)
        .unwrap_or(lines.len());
    (0..end).find(|&i| {
        lines[i].kind == Line::Marker && lines[i + 1..end].iter().any(|l| is_content(&l.kind))
    })
}

/// Parses report text. `kind` comes from the manifest when there is one; otherwise a page
/// with a live header is a live page and anything else an article.
pub fn parse(text: &str, kind: Option<StoryKind>) -> Result<Report, ParseError> {
    let lines = classify_all(text);
    let header = find_header(&lines);
    let kind = kind.unwrap_or(if header.is_some() {
        StoryKind::Live
    } else {
        StoryKind::Article
    });
    let end = lines
        .iter()
        .position(|l| l.kind == Line::End)
        .unwrap_or(lines.len());
    let lines = &lines[..end];
    let last_line = text.lines().count().max(1);
    match kind {
        StoryKind::Article => parse_article(lines, last_line),
        StoryKind::Live => parse_live(lines, header, last_line),
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

fn next_is_number(lines: &[Classified], i: usize, n: u32) -> bool {
    matches!(lines.get(i + 1).map(|l| &l.kind), Some(Line::Numbered { number, .. }) if *number == n)
}

fn parse_live(
    lines: &[Classified],
    header: Option<usize>,
    last_line: usize,
) -> Result<Report, ParseError> {
    let title_at = lines
        .iter()
        .position(|l| matches!(l.kind, Line::Text { .. }))
        .ok_or(ParseError::NoTitle { line: last_line })?;
    let title = squash(text_of(&lines[title_at].kind).unwrap_or_default());
    // The standfirst: text before the header; with no header, the first paragraph.
    let (standfirst, body_start) = match header {
        Some(h) if h > title_at => {
            let paras: Vec<&str> = lines[title_at + 1..h]
                .iter()
                .filter_map(|l| text_of(&l.kind))
                .collect();
            (paras.join(" "), h + 1)
        }
        Some(h) => (String::new(), h + 1),
        None => match lines.get(title_at + 1).and_then(|l| text_of(&l.kind)) {
            Some(p) => (p.to_string(), title_at + 2),
            None => (String::new(), title_at + 1),
        },
    };
    let entries = group_entries(&lines[body_start.min(lines.len())..]);
    Ok(Report {
        kind: StoryKind::Live,
        title,
        description: squash(&standfirst),
        entries,
    })
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
    /// `max`, stopping at one that reads as narration (it carries quotation marks).
    fn take_quoted(&mut self, max: usize, narration_stops: bool) -> Vec<String> {
        let mut taken = Vec::new();
        while taken.len() < max {
            match self.blocks.last() {
                Some(Block::Paragraph { text })
                    if !(narration_stops
                        && !taken.is_empty()
                        && text.contains(['"', '“', '”'])) =>
                {
                    if let Some(Block::Paragraph { text }) = self.blocks.pop() {
                        taken.push(text);
                    }
                }
                _ => break,
            }
        }
        taken.reverse();
        taken
    }

    /// A line inside an entry's body. `caption_context` says an uncredited short line here
    /// is a caption (it follows the headline or another caption).
    fn add_body_line(&mut self, line: &Line, caption_context: bool) {
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
                    Last::Caption
                } else {
                    self.blocks.push(Block::Paragraph { text: text.clone() });
                    Last::Body
                }
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
                let paragraphs = self.take_quoted(3, false);
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
            Line::Time(_) | Line::Marker | Line::End | Line::Noise => self.last,
        };
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

fn time_placement(lines: &[Classified]) -> TimePlacement {
    let mut meaningful = lines
        .iter()
        .filter(|l| !matches!(l.kind, Line::Noise | Line::Marker));
    let first_time = lines.iter().position(|l| matches!(l.kind, Line::Time(_)));
    if first_time.is_none() {
        return TimePlacement::None;
    }
    match (
        meaningful.next().map(|l| &l.kind),
        meaningful.next().map(|l| &l.kind),
    ) {
        (
            Some(Line::Text {
                headline_like: true,
                ..
            }),
            Some(Line::Time(_)),
        ) => TimePlacement::After,
        _ => TimePlacement::Before,
    }
}

fn group_entries(lines: &[Classified]) -> Vec<RawEntry> {
    let placement = time_placement(lines);
    let mut entries = Vec::new();
    let mut current: Option<Group> = None;
    let mut pending_authors: Vec<String> = Vec::new();
    let mut pending_time: Option<TimeLine> = None;
    let mut entry_due = false;

    for (i, l) in lines.iter().enumerate() {
        let line = match &l.kind {
            Line::Numbered { number: 1, text }
                if is_name_like(text) && !next_is_number(lines, i, 2) =>
            {
                Line::Byline(text.clone())
            }
            other => other.clone(),
        };
        match &line {
            Line::Marker | Line::Noise | Line::End => continue,
            Line::Byline(a) => match current.as_mut() {
                Some(g) if g.last == Last::Headline && !g.has_body() && !entry_due => {
                    g.authors.push(a.clone())
                }
                _ => pending_authors.push(a.clone()),
            },
            Line::Time(t) => match current.as_mut() {
                Some(g)
                    if g.time.is_none()
                        && !entry_due
                        && (placement == TimePlacement::After
                            || (g.last == Last::Headline && !g.has_body())) =>
                {
                    g.time = Some(*t)
                }
                _ => {
                    pending_time = Some(*t);
                    entry_due = true;
                }
            },
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
                        } => Some(text.clone()),
                        _ => None,
                    };
                    let opened_by_headline = headline.is_some();
                    let mut g = Group::new(l.line, headline);
                    g.authors = std::mem::take(&mut pending_authors);
                    g.time = pending_time.take();
                    if !opened_by_headline {
                        g.add_body_line(&line, false);
                    }
                    current = Some(g);
                    entry_due = false;
                } else if let Some(g) = current.as_mut() {
                    let caption_context = matches!(g.last, Last::Headline | Last::Caption);
                    g.add_body_line(&line, caption_context);
                }
            }
        }
    }
    if let Some(mut g) = current.take() {
        // Bylines or a time after the last entry have nothing below them to belong to.
        if g.time.is_none() {
            g.time = pending_time;
        }
        entries.push(g.finish());
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
}
