//! Entry bodies as HTML (structure kept, every piece of text escaped) and as a plain summary.

use crate::model::Block;
use crate::text::{push_escaped, squash, truncate_words};

/// The longest summary, in characters.
pub const SUMMARY_CHARS: usize = 280;

fn push_paragraphs(out: &mut String, paragraphs: &[String]) {
    for p in paragraphs {
        out.push_str("<p>");
        push_escaped(out, p);
        out.push_str("</p>");
    }
}

/// Renders blocks as an HTML fragment: `p`, `ul`/`ol`, `blockquote` with a `footer` for the
/// attribution, `figure`/`figcaption` with the credit in its own `small`.
pub fn to_html(blocks: &[Block]) -> String {
    let mut out = String::new();
    for block in blocks {
        match block {
            Block::Paragraph { text } => push_paragraphs(&mut out, std::slice::from_ref(text)),
            Block::List { ordered, items } => {
                let tag = if *ordered { "ol" } else { "ul" };
                out.push('<');
                out.push_str(tag);
                out.push('>');
                for item in items {
                    out.push_str("<li>");
                    push_escaped(&mut out, item);
                    out.push_str("</li>");
                }
                out.push_str("</");
                out.push_str(tag);
                out.push('>');
            }
            Block::Quote {
                paragraphs,
                attribution,
            } => {
                out.push_str("<blockquote>");
                push_paragraphs(&mut out, paragraphs);
                if let Some(who) = attribution {
                    out.push_str("<footer>– <cite>");
                    push_escaped(&mut out, who);
                    out.push_str("</cite></footer>");
                }
                out.push_str("</blockquote>");
            }
            Block::Figure { caption, credit } => {
                out.push_str("<figure><figcaption>");
                push_escaped(&mut out, caption);
                if let Some(credit) = credit {
                    if !caption.is_empty() {
                        out.push(' ');
                    }
                    out.push_str("<small class=\"credit\">");
                    push_escaped(&mut out, credit);
                    out.push_str("</small>");
                }
                out.push_str("</figcaption></figure>");
            }
            Block::Embed {
                paragraphs,
                attribution,
            } => {
                out.push_str("<blockquote class=\"embed\">");
                push_paragraphs(&mut out, paragraphs);
                out.push_str("<footer>");
                push_escaped(&mut out, attribution);
                out.push_str("</footer></blockquote>");
            }
        }
    }
    out
}

/// A plain-text summary: the entry's running text (paragraphs, lists, quotations), not its
/// captions, cut on a word boundary. Falls back to the title for an entry with no text.
pub fn summary(blocks: &[Block], title: &str) -> String {
    let mut text = String::new();
    for block in blocks {
        let parts: Vec<&str> = match block {
            Block::Paragraph { text } => vec![text.as_str()],
            Block::List { items, .. } => items.iter().map(String::as_str).collect(),
            Block::Quote { paragraphs, .. } | Block::Embed { paragraphs, .. } => {
                paragraphs.iter().map(String::as_str).collect()
            }
            Block::Figure { .. } => continue,
        };
        for p in parts {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(p);
        }
        if text.chars().count() > SUMMARY_CHARS {
            break;
        }
    }
    let text = squash(&text);
    if text.is_empty() {
        return squash(title);
    }
    truncate_words(&text, SUMMARY_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_keeps_structure_and_escapes() {
        let blocks = vec![
            Block::Paragraph {
                text: "a <b> & ]]>".into(),
            },
            Block::List {
                ordered: false,
                items: vec!["x".into(), "y".into()],
            },
            Block::Quote {
                paragraphs: vec!["q".into()],
                attribution: Some("who".into()),
            },
            Block::Figure {
                caption: "c".into(),
                credit: Some("Credit: P".into()),
            },
        ];
        assert_eq!(
            to_html(&blocks),
            "<p>a &lt;b&gt; &amp; ]]&gt;</p><ul><li>x</li><li>y</li></ul>\
             <blockquote><p>q</p><footer>– <cite>who</cite></footer></blockquote>\
             <figure><figcaption>c <small class=\"credit\">Credit: P</small></figcaption></figure>"
        );
    }

    #[test]
    fn summary_skips_captions_and_falls_back_to_title() {
        let blocks = vec![
            Block::Figure {
                caption: "cap".into(),
                credit: None,
            },
            Block::Paragraph {
                text: "Body  text.".into(),
            },
        ];
        assert_eq!(summary(&blocks, "T"), "Body text.");
        assert_eq!(summary(&blocks[..1], "The title"), "The title");
        let long = vec![Block::Paragraph {
            text: "word ".repeat(200),
        }];
        assert!(summary(&long, "T").chars().count() <= SUMMARY_CHARS + 1);
    }
}
