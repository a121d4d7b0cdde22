//! HTML pages: the index (with feed autodiscovery) and a story page that follows the live
//! stream. All text is escaped; entry bodies are the normaliser's own escaped HTML.

use super::{ALL, Format, feed_url, story_page_url};
use crate::model::{Entry, Story};
use crate::site::Site;
use crate::text::escape_html as esc;
use crate::zone::Zone;
use chrono::{DateTime, Utc};

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}\
article{border-top:1px solid #ddd;padding:.5rem 0}time{color:#666;font-size:.9em}\
blockquote{margin:1rem 0;padding-left:1rem;border-left:3px solid #ccc}\
figure{margin:1rem 0;font-style:italic}.credit{color:#666}.feeds a{margin-right:.6rem}\
.ago{color:#666;font-size:.9em}";

/// A time as the pages show it, in the story's zone: `<time datetime="RFC 3339"
/// title="14:34 BST, 10 May 2013">14:34 BST, 10 May 2013</time>`; for an inferred time only
/// its day, marked as approximate (`<time datetime="2013-05-10" data-approx>`). The story
/// page's script adds "5 min ago" beside exact times.
fn time_html(zone: &Zone, t: DateTime<Utc>, inferred: bool) -> String {
    let shown = esc(&zone.shown(t, inferred));
    if inferred {
        format!(
            "<time datetime=\"{}\" data-approx>{shown}</time>",
            zone.iso_day(t)
        )
    } else {
        format!(
            "<time datetime=\"{}\" title=\"{shown}\">{shown}</time>",
            t.to_rfc3339()
        )
    }
}

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

/// Whether a story's last-update time is an inferred entry time (then only its day is known).
fn updated_inferred(story: &Story) -> bool {
    story
        .entries
        .iter()
        .find(|e| e.updated == story.updated)
        .is_some_and(|e| e.time_inferred)
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
            "<li><a href=\"{}\">{}</a> {} ",
            esc(&story_page_url(&site.base_url, &story.slug)),
            esc(&story.title),
            time_html(&story.zone, story.updated, updated_inferred(story)),
        ));
        feed_links(&mut out, site, &story.slug);
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n</body>\n</html>\n");
    out
}

/// One entry as an `<article>`; the story page's script builds the same shape for live events.
fn entry_html(out: &mut String, zone: &Zone, e: &Entry) {
    out.push_str(&format!(
        "<article id=\"{}\" data-id=\"{}\"><h2>{}</h2><p>{}",
        esc(&e.anchor),
        esc(&e.id),
        esc(&e.title),
        time_html(zone, e.published, e.time_inferred),
    ));
    if !e.authors.is_empty() {
        out.push_str(&format!(" · {}", esc(&e.authors.join(", "))));
    }
    out.push_str("</p>");
    out.push_str(&e.content_html);
    out.push_str("</article>\n");
}

/// The page's time format, the same rules as the server's (`crate::zone`): `14:34 BST, 10 May
/// 2013`, or `10 May 2013 (time approximate)`. `zone` is `{tz, offset, names}` from the
/// `<main>` element's data attributes. No DOM access: `tests/page.rs` runs it under Node and
/// compares its text with the server's for the same instants.
const TIME_SCRIPT: &str = r#"<script>
var lfMonths = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August',
  'September', 'October', 'November', 'December'];
function lfPad(n) { return (n < 10 ? '0' : '') + n; }
function lfZone(el) {
  return { tz: el.dataset.tz || '', offset: Number(el.dataset.tzOffset || 0),
    names: JSON.parse(el.dataset.tzNames || '{}') };
}
// The zone's offset at an instant, in minutes east of UTC: the wall time Intl gives, minus UTC.
function lfOffset(ms, zone) {
  if (!zone.tz) return zone.offset;
  var p = {};
  new Intl.DateTimeFormat('en-US', { timeZone: zone.tz, hourCycle: 'h23', year: 'numeric',
    month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' })
    .formatToParts(new Date(ms)).forEach(function (x) { p[x.type] = Number(x.value); });
  var wall = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  return Math.round((wall - Math.floor(ms / 1000) * 1000) / 60000);
}
// The offset's name as the server gives it (BST, GMT), else UTC+hh:mm.
function lfLabel(off, zone) {
  if (Object.prototype.hasOwnProperty.call(zone.names, String(off))) return zone.names[off];
  if (off === 0) return 'UTC';
  var a = Math.abs(off);
  return 'UTC' + (off < 0 ? '-' : '+') + lfPad(Math.floor(a / 60)) + ':' + lfPad(a % 60);
}
function lfLocal(iso, zone) {
  var ms = Date.parse(iso), off = lfOffset(ms, zone);
  return { d: new Date(ms + off * 60000), off: off };
}
function lfDay(l) {
  return l.d.getUTCDate() + ' ' + lfMonths[l.d.getUTCMonth()] + ' ' + l.d.getUTCFullYear();
}
function lfShown(iso, inferred, zone) {
  var l = lfLocal(iso, zone);
  if (inferred) return lfDay(l) + ' (time approximate)';
  return lfPad(l.d.getUTCHours()) + ':' + lfPad(l.d.getUTCMinutes()) + ' ' + lfLabel(l.off, zone) +
    ', ' + lfDay(l);
}
function lfIsoDay(iso, zone) {
  var d = lfLocal(iso, zone).d;
  return d.getUTCFullYear() + '-' + lfPad(d.getUTCMonth() + 1) + '-' + lfPad(d.getUTCDate());
}
// "just now", "5 min ago", "3 h ago", "2 days ago"; nothing for the future or past a month.
function lfAgo(ms, now) {
  var s = Math.floor((now - ms) / 1000);
  if (s < -60 || isNaN(s)) return '';
  if (s < 60) return 'just now';
  var m = Math.floor(s / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
  if (m < 60) return m + ' min ago';
  if (h < 24) return h + ' h ago';
  if (d < 31) return d + (d === 1 ? ' day ago' : ' days ago');
  return '';
}
</script>
"#;

const LIVE_SCRIPT: &str = r#"<script>
(function () {
  var main = document.getElementById('entries');
  var story = main.dataset.story, after = main.dataset.seq, zone = lfZone(main);
  function timeEl(iso, inferred) {
    var t = document.createElement('time'), shown = lfShown(iso, inferred, zone);
    t.textContent = shown;
    if (inferred) { t.dateTime = lfIsoDay(iso, zone); t.setAttribute('data-approx', ''); }
    else { t.dateTime = iso; t.title = shown; }
    return t;
  }
  // Relative times beside exact ones, the exact time on hover; refreshed every 30 s.
  function refresh() {
    var now = Date.now();
    Array.prototype.forEach.call(main.querySelectorAll('time[datetime]:not([data-approx])'), function (t) {
      var s = t.nextElementSibling;
      if (!s || !s.classList.contains('ago')) {
        s = document.createElement('span'); s.className = 'ago'; t.after(s);
      }
      var ago = lfAgo(Date.parse(t.dateTime), now);
      s.textContent = ago ? ' (' + ago + ')' : '';
      s.title = t.title;
    });
  }
  function render(e) {
    var a = document.createElement('article');
    a.dataset.id = e.id;
    a.id = (e.url.split('#')[1] || '');
    var h = document.createElement('h2'); h.textContent = e.title; a.appendChild(h);
    var p = document.createElement('p');
    p.appendChild(timeEl(e.published, !!e.time_inferred));
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
    refresh();
  }
  refresh();
  setInterval(refresh, 30000);
  ['create', 'update', 'delete'].forEach(function (op) { es.addEventListener(op, apply); });
  es.addEventListener('reset', function () { location.reload(); });
})();
</script>
"#;

/// What the page's script needs to format times as the server does: the IANA zone name (or
/// the fixed offset in minutes) and the names of the zone's offsets.
fn zone_attributes(story: &Story) -> String {
    let zone = &story.zone;
    let mut out = match zone.name() {
        Some(name) => format!(" data-tz=\"{}\"", esc(name)),
        None => format!(
            " data-tz-offset=\"{}\"",
            zone.offset_at(story.updated).local_minus_utc() / 60
        ),
    };
    let (from, to) = story
        .entries
        .iter()
        .fold((story.published, story.updated), |(a, b), e| {
            (a.min(e.published), b.max(e.published))
        });
    let names = serde_json::to_string(&zone.labels(from, to)).unwrap_or_default();
    out.push_str(&format!(" data-tz-names=\"{}\"", esc(&names)));
    out
}

/// schema.org `LiveBlogPosting` JSON-LD for search engines: the story and, as
/// `liveBlogUpdate`, a `BlogPosting` per entry with its anchor on this page (an inferred
/// entry time as its day only, like the page). Made with
/// serde_json, made script-safe (`script_safe`): no text (`</script>`, `<!--`) can end or
/// change the script element. `coverageEndTime` waits for story lifecycles.
fn json_ld(site: &Site, story: &Story) -> String {
    use serde_json::{Value, json};
    let page = story_page_url(&site.base_url, &story.slug);
    let updates: Vec<Value> = story
        .entries
        .iter()
        .map(|e| {
            // An inferred time is known to the day only: an ISO 8601 date, as the page shows.
            let date = |t: DateTime<Utc>| match e.time_inferred {
                true => story.zone.iso_day(t),
                false => t.to_rfc3339(),
            };
            let mut post = json!({
                "@type": "BlogPosting",
                "headline": e.title,
                "articleBody": e.summary,
                "datePublished": date(e.published),
                "dateModified": date(e.updated),
                "url": format!("{page}#{}", e.anchor),
            });
            if !e.authors.is_empty() {
                let people: Vec<Value> = e
                    .authors
                    .iter()
                    .map(|name| json!({"@type": "Person", "name": name}))
                    .collect();
                post["author"] = Value::Array(people);
            }
            post
        })
        .collect();
    let mut doc = json!({
        "@context": "https://schema.org",
        "@type": "LiveBlogPosting",
        "url": page,
        "mainEntityOfPage": page,
        "headline": story.title,
        "datePublished": story.published.to_rfc3339(),
        "dateModified": story.updated.to_rfc3339(),
        "coverageStartTime": story.published.to_rfc3339(),
        "liveBlogUpdate": updates,
    });
    if !story.description.is_empty() {
        doc["description"] = Value::String(story.description.clone());
    }
    let text = serde_json::to_string(&doc).unwrap_or_default();
    format!(
        "<script type=\"application/ld+json\">{}</script>\n",
        script_safe(&text)
    )
}

/// JSON made safe inside an HTML `<script>`: `<`, `>`, `&` and `'` as `\u` escapes (as Go's
/// `encoding/json` does for HTML), so no text can end the element or open a comment, and
/// a payload reads as data, not markup, to anything scanning the page. These characters only
/// occur inside JSON strings, where the escapes mean the same. serde_json has no such option.
fn script_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' | '>' | '&' | '\'' => out.push_str(&format!("\\u{:04x}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

/// A story's page: its entries newest first, kept up to date from the SSE stream starting
/// after `seq`, the log position the page reflects.
pub fn story_page(site: &Site, story: &Story, seq: u64) -> String {
    let mut out = String::new();
    head(&mut out, &story.title);
    alternate_links(&mut out, site, &story.slug, &story.title);
    out.push_str(&json_ld(site, story));
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
        "<main id=\"entries\" data-story=\"{}\" data-seq=\"{seq}\"{}>\n",
        esc(&story.slug),
        zone_attributes(story)
    ));
    for e in &story.entries {
        entry_html(&mut out, &story.zone, e);
    }
    out.push_str("</main>\n");
    out.push_str(TIME_SCRIPT);
    out.push_str(LIVE_SCRIPT);
    out.push_str("</body>\n</html>\n");
    out
}
