//! HTML pages: the index (with feed autodiscovery) and a story page that follows the live
//! stream. All text is escaped; entry bodies are the normaliser's own escaped HTML.

use super::{ALL, Format, feed_url, story_page_url};
use crate::model::{Entry, Story};
use crate::site::Site;
use crate::text::escape_html as esc;

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}\
article{border-top:1px solid #ddd;padding:.5rem 0}time{color:#666;font-size:.9em}\
blockquote{margin:1rem 0;padding-left:1rem;border-left:3px solid #ccc}\
figure{margin:1rem 0;font-style:italic}.credit{color:#666}.feeds a{margin-right:.6rem}";

fn alternate_links(out: &mut String, site: &Site, slug: &str, title: &str) {
    for format in Format::ALL {
        out.push_str(&format!(
            "<link rel=\"alternate\" type=\"{}\" title=\"{} ({})\" href=\"{}\">\n",
            format.link_type(),
            esc(title),
            format.label(),
            esc(&feed_url(&site.base_url, slug, format)),
        ));
    }
}

fn feed_links(out: &mut String, site: &Site, slug: &str) {
    out.push_str("<span class=\"feeds\">");
    for format in Format::ALL {
        out.push_str(&format!(
            "<a href=\"{}\">{}</a>",
            esc(&feed_url(&site.base_url, slug, format)),
            format.label()
        ));
    }
    out.push_str("</span>");
}

fn head(out: &mut String, title: &str) {
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(&format!(
        "<title>{}</title>\n<style>{STYLE}</style>\n",
        esc(title)
    ));
}

/// The index: every story with its feeds, and autodiscovery links for every feed.
pub fn index(site: &Site) -> String {
    let mut out = String::new();
    head(&mut out, &site.info.title);
    alternate_links(&mut out, site, ALL, &site.info.title);
    for story in &site.stories {
        alternate_links(&mut out, site, &story.slug, &story.title);
    }
    out.push_str("</head>\n<body>\n");
    out.push_str(&format!("<h1>{}</h1>\n", esc(&site.info.title)));
    if !site.info.description.is_empty() {
        out.push_str(&format!("<p>{}</p>\n", esc(&site.info.description)));
    }
    out.push_str("<p>All stories: ");
    feed_links(&mut out, site, ALL);
    out.push_str("</p>\n<ul>\n");
    for story in &site.stories {
        out.push_str(&format!(
            "<li><a href=\"{}\">{}</a> <time datetime=\"{}\">{}</time> ",
            esc(&story_page_url(&site.base_url, &story.slug)),
            esc(&story.title),
            story.updated.to_rfc3339(),
            story.updated.format("%-d %B %Y %H:%M UTC"),
        ));
        feed_links(&mut out, site, &story.slug);
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n</body>\n</html>\n");
    out
}

/// One entry as an `<article>`; the story page's script builds the same shape for live events.
fn entry_html(out: &mut String, e: &Entry) {
    out.push_str(&format!(
        "<article id=\"{}\" data-id=\"{}\"><h2>{}</h2><p><time datetime=\"{}\">{}</time>",
        esc(&e.anchor),
        esc(&e.id),
        esc(&e.title),
        e.published.to_rfc3339(),
        e.published.format("%-d %B %Y %H:%M UTC"),
    ));
    if !e.authors.is_empty() {
        out.push_str(&format!(" · {}", esc(&e.authors.join(", "))));
    }
    out.push_str("</p>");
    out.push_str(&e.content_html);
    out.push_str("</article>\n");
}

const LIVE_SCRIPT: &str = r#"<script>
(function () {
  var main = document.getElementById('entries');
  var story = main.dataset.story, after = main.dataset.seq;
  function fmt(t) { return new Date(t).toUTCString(); }
  function render(e) {
    var a = document.createElement('article');
    a.dataset.id = e.id;
    a.id = (e.url.split('#')[1] || '');
    var h = document.createElement('h2'); h.textContent = e.title; a.appendChild(h);
    var p = document.createElement('p'); var t = document.createElement('time');
    t.dateTime = e.published; t.textContent = fmt(e.published); p.appendChild(t);
    if (e.authors && e.authors.length) p.appendChild(document.createTextNode(' · ' + e.authors.join(', ')));
    a.appendChild(p);
    var body = document.createElement('div');
    body.innerHTML = e.content_html; // built and escaped by the server's normaliser
    a.appendChild(body);
    return a;
  }
  function find(id) {
    return Array.prototype.find.call(main.querySelectorAll('article'), function (a) { return a.dataset.id === id; });
  }
  var es = new EventSource('/live/events?story=' + encodeURIComponent(story) + '&after=' + after);
  function apply(ev) {
    var msg = JSON.parse(ev.data), old = find(msg.entry.id);
    if (msg.op === 'delete') { if (old) old.remove(); return; }
    var fresh = render(msg.entry);
    if (old) old.replaceWith(fresh); else main.insertBefore(fresh, main.firstChild);
  }
  ['create', 'update', 'delete'].forEach(function (op) { es.addEventListener(op, apply); });
  es.addEventListener('reset', function () { location.reload(); });
})();
</script>
"#;

/// A story's page: its entries newest first, kept up to date from the SSE stream starting
/// after `seq`, the log position the page reflects.
pub fn story_page(site: &Site, story: &Story, seq: u64) -> String {
    let mut out = String::new();
    head(&mut out, &story.title);
    alternate_links(&mut out, site, &story.slug, &story.title);
    out.push_str("</head>\n<body>\n");
    out.push_str(&format!("<h1>{}</h1>\n", esc(&story.title)));
    if !story.description.is_empty() {
        out.push_str(&format!("<p>{}</p>\n", esc(&story.description)));
    }
    out.push_str(&format!(
        "<p><a href=\"{}\">Original page</a> · ",
        esc(&story.url)
    ));
    feed_links(&mut out, site, &story.slug);
    out.push_str("</p>\n");
    out.push_str(&format!(
        "<main id=\"entries\" data-story=\"{}\" data-seq=\"{seq}\">\n",
        esc(&story.slug)
    ));
    for e in &story.entries {
        entry_html(&mut out, e);
    }
    out.push_str("</main>\n");
    out.push_str(LIVE_SCRIPT);
    out.push_str("</body>\n</html>\n");
    out
}
