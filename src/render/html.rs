//! HTML pages: the index (with feed autodiscovery) and a story page that follows the live
//! stream. All text is escaped; entry bodies are the normaliser's own escaped HTML.

use super::{ALL, Format};
use crate::ingest::site::Site;
use crate::layout::{feed_url, story_page_url};
use crate::model::{Entry, Story};
use crate::text::escape_html as esc;
use crate::zone::Zone;
use chrono::{DateTime, Utc};

const STYLE: &str = "*{box-sizing:border-box}\
body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:0 auto;padding:0 1rem 2rem;color:#222;overflow-wrap:anywhere}\
img,video,iframe{max-width:100%;height:auto}pre{white-space:pre-wrap}\
.top{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;justify-content:space-between;padding:.6rem 0;border-bottom:1px solid #ddd}\
.top a{color:#05a}h1{line-height:1.2;margin:.8rem 0 .4rem}\
.badge{display:inline-block;font-size:.75rem;font-weight:700;letter-spacing:.05em;text-transform:uppercase;padding:.1rem .5rem;border-radius:.25rem;color:#fff;background:#555;vertical-align:middle}\
.badge.live{background:#c00}.ended-note{background:#f4f4f4;padding:.5rem .8rem;border-left:4px solid #555}\
article{border-top:1px solid #ddd;padding:.5rem 0}article h2{font-size:1.2rem;margin:.3rem 0}\
time{color:#666;font-size:.9em}.meta{margin:.2rem 0;color:#666;font-size:.9em}.updated,.byline{margin-left:.4rem}\
.updated{font-style:italic}.key-mark{color:#a60;font-weight:700;font-size:.8rem;text-transform:uppercase;margin-right:.4rem}\
.share{font-size:.85em;color:#05a}\
blockquote{margin:1rem 0;padding-left:1rem;border-left:3px solid #ccc}\
figure{margin:1rem 0;font-style:italic}.credit{color:#666}.feeds a{margin-right:.6rem}\
.ago{color:#666;font-size:.9em}\
.key-events{background:#fff8e6;border:1px solid #f0d9a0;padding:.4rem .9rem;margin:1rem 0}\
.key-events>h2,.pinned>h2{font-size:.9rem;text-transform:uppercase;letter-spacing:.05em;margin:.3rem 0}\
.key-events ol{margin:.3rem 0;padding-left:1.2rem}.key-events a{color:#05a}\
.pinned{border:2px solid #05a;padding:0 .9rem;margin:1rem 0}.pinned article{border-top:0}\
.new-bar{position:fixed;top:.5rem;left:50%;transform:translateX(-50%);z-index:1;box-shadow:0 1px 4px rgba(0,0,0,.3);padding:.4rem 1rem;border:0;border-radius:1rem;background:#05a;color:#fff;font:inherit;font-weight:700;cursor:pointer}\
[hidden]{display:none!important}\
.stories{list-style:none;padding:0}.stories li{border-top:1px solid #ddd;padding:.6rem 0}\
.stories h2{font-size:1.15rem;margin:0 0 .2rem}.latest{margin:.2rem 0}";

/// The site's icon: an inline SVG (a red "live" dot), so no route serves it.
const FAVICON: &str = "data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'%20viewBox='0%200%2016%2016'%3E%3Ccircle%20cx='8'%20cy='8'%20r='7'%20fill='%23c00'/%3E%3Ccircle%20cx='8'%20cy='8'%20r='3'%20fill='%23fff'/%3E%3C/svg%3E";

/// The badge of a story's state: "Live", or "Ended" once it has ended.
fn badge(story: &Story) -> &'static str {
    match story.ended {
        Some(_) => "<span class=\"badge ended\" data-state>Ended</span>",
        None => "<span class=\"badge live\" data-state>Live</span>",
    }
}

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
        "<title>{}</title>\n<link rel=\"icon\" href=\"{FAVICON}\">\n<style>{STYLE}</style>\n",
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
    out.push_str("</p>\n<ul class=\"stories\">\n");
    for story in &site.stories {
        // Each story with its state, its latest entry and when it was last updated.
        out.push_str(&format!(
            "<li data-story=\"{}\"><h2><a href=\"{}\">{}</a> {}</h2>",
            esc(&story.slug),
            esc(&story_page_url(&site.base_url, &story.slug)),
            esc(&story.title),
            badge(story),
        ));
        out.push_str("<p class=\"latest\">");
        if let Some(latest) = story.entries.first() {
            out.push_str(&format!(
                "Latest: <a href=\"{}#{}\">{}</a> · ",
                esc(&story_page_url(&site.base_url, &story.slug)),
                esc(&latest.anchor),
                esc(&latest.title),
            ));
        }
        out.push_str(&format!(
            "updated {}</p><p>",
            time_html(&story.zone, story.updated, updated_inferred(story))
        ));
        feed_links(&mut out, site, &story.slug);
        out.push_str("</p></li>\n");
    }
    out.push_str("</ul>\n</body>\n</html>\n");
    out
}

/// Whether an entry shows an "Updated" mark: edited more than a minute after it was published.
pub fn edited(e: &Entry) -> bool {
    e.updated - e.published > chrono::Duration::minutes(1)
}

/// One entry as an `<article>`: its title, time, "Updated hh:mm" mark when edited, byline,
/// body and share link (its anchor on this page). The story page's script builds the same
/// shape for live events (`render` in [`LIVE_SCRIPT`]).
fn entry_html(out: &mut String, page: &str, zone: &Zone, e: &Entry) {
    let mut class = String::from("entry");
    if e.key {
        class.push_str(" key");
    }
    if e.pinned {
        class.push_str(" pinned-entry");
    }
    out.push_str(&format!(
        "<article id=\"{}\" data-id=\"{}\" class=\"{class}\"><h2>",
        esc(&e.anchor),
        esc(&e.id),
    ));
    if e.key {
        out.push_str("<span class=\"key-mark\">Key event</span>");
    }
    out.push_str(&format!(
        "{}</h2><p class=\"meta\">{}",
        esc(&e.title),
        time_html(zone, e.published, e.time_inferred),
    ));
    if edited(e) {
        out.push_str(&format!(
            "<span class=\"updated\">Updated <time datetime=\"{}\" title=\"{}\">{}</time></span>",
            e.updated.to_rfc3339(),
            esc(&zone.exact(e.updated)),
            esc(&zone.clock(e.updated)),
        ));
    }
    if !e.authors.is_empty() {
        out.push_str(&format!(
            "<span class=\"byline\">By {}</span>",
            esc(&e.authors.join(", "))
        ));
    }
    out.push_str("</p>");
    out.push_str(&e.content_html);
    out.push_str(&format!(
        "<p><a class=\"share\" href=\"{}#{}\">Share this update</a></p></article>\n",
        esc(page),
        esc(&e.anchor)
    ));
}

/// The "Key events" box: the story's key entries, newest first, each linking to its anchor.
/// Hidden when there are none; the script keeps it in step.
fn key_events(out: &mut String, story: &Story) {
    let keys: Vec<&Entry> = story.entries.iter().filter(|e| e.key).collect();
    out.push_str(&format!(
        "<nav id=\"key-events\" class=\"key-events\" aria-labelledby=\"key-events-title\"{}><h2 id=\"key-events-title\">Key events</h2><ol>",
        if keys.is_empty() { " hidden" } else { "" }
    ));
    for e in keys {
        out.push_str(&format!(
            "<li><a href=\"#{}\">{}</a></li>",
            esc(&e.anchor),
            esc(&e.title)
        ));
    }
    out.push_str("</ol></nav>\n");
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

/// The story page's live updates from the SSE stream (`data-events`, under the same base URL as
/// the page's other links, with `?story=…&after=SEQ`): a
/// new entry goes on top when the reader is at the top of the stream, else it waits behind an
/// "N new updates" bar (the text never moves under a reader); edits replace the entry (with
/// its "Updated" mark), deletes remove it; the key events box and the pinned slot follow the
/// flags; a `state` event switches the badge and, once ended, closes the stream. Nothing here
/// is needed to read the page.
const LIVE_SCRIPT: &str = r#"<script>
(function () {
  var main = document.getElementById('entries');
  var story = main.dataset.story, after = main.dataset.seq, page = main.dataset.page;
  var events = main.dataset.events;
  var zone = lfZone(main), pending = [], es = null;
  var pinSlot = document.getElementById('pinned'), keyBox = document.getElementById('key-events');
  var bar = document.getElementById('new-bar'), note = document.querySelector('.ended-note');
  var badge = document.querySelector('[data-state]');
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text) e.textContent = text;
    return e;
  }
  function timeEl(iso, inferred) {
    var t = el('time'), shown = lfShown(iso, inferred, zone);
    t.textContent = shown;
    if (inferred) { t.dateTime = lfIsoDay(iso, zone); t.setAttribute('data-approx', ''); }
    else { t.dateTime = iso; t.title = shown; }
    return t;
  }
  function clock(iso) {
    var d = lfLocal(iso, zone).d;
    return lfPad(d.getUTCHours()) + ':' + lfPad(d.getUTCMinutes());
  }
  // Relative times beside exact ones, the exact time on hover; refreshed every 30 s.
  function refresh() {
    var now = Date.now();
    Array.prototype.forEach.call(document.querySelectorAll('.meta > time[datetime]:not([data-approx])'), function (t) {
      var s = t.nextElementSibling;
      if (!s || !s.classList.contains('ago')) { s = el('span', 'ago'); t.after(s); }
      var ago = lfAgo(Date.parse(t.dateTime), now);
      s.textContent = ago ? ' (' + ago + ')' : '';
      s.title = t.title;
    });
  }
  // The same shape as the server's `entry_html`.
  function render(e) {
    var a = el('article', 'entry' + (e.key ? ' key' : '') + (e.pinned ? ' pinned-entry' : ''));
    a.dataset.id = e.id;
    a.id = e.anchor || (e.url.split('#')[1] || '');
    var h = el('h2');
    if (e.key) h.appendChild(el('span', 'key-mark', 'Key event'));
    h.appendChild(document.createTextNode(e.title));
    a.appendChild(h);
    var p = el('p', 'meta');
    p.appendChild(timeEl(e.published, !!e.time_inferred));
    if (Date.parse(e.updated) - Date.parse(e.published) > 60000) {
      var u = el('span', 'updated', 'Updated '), t = el('time', '', clock(e.updated));
      t.dateTime = e.updated; t.title = lfShown(e.updated, false, zone);
      u.appendChild(t); p.appendChild(u);
    }
    if (e.authors && e.authors.length) p.appendChild(el('span', 'byline', 'By ' + e.authors.join(', ')));
    a.appendChild(p);
    var body = el('div');
    body.innerHTML = e.content_html; // built and escaped by the server's normaliser
    a.appendChild(body);
    var share = el('a', 'share', 'Share this update');
    share.href = page + '#' + a.id;
    var sp = el('p'); sp.appendChild(share); a.appendChild(sp);
    return a;
  }
  function when(a) {
    var t = a.querySelector('.meta > time');
    return t ? Date.parse(t.dateTime) : 0;
  }
  function articles() {
    return Array.prototype.slice.call(document.querySelectorAll('article')).concat(pending);
  }
  function find(id) {
    return articles().filter(function (a) { return a.dataset.id === id; })[0];
  }
  // Into the stream at its place, newest first.
  function place(a) {
    var next = Array.prototype.find.call(main.children, function (b) { return when(b) <= when(a); });
    main.insertBefore(a, next || null);
  }
  function remove(a) {
    var i = pending.indexOf(a);
    if (i >= 0) pending.splice(i, 1); else a.remove();
  }
  // Scrolled past the top of the stream: new entries wait behind the bar.
  function reading() { return main.getBoundingClientRect().top < 0; }
  function showBar() {
    var n = pending.length;
    bar.textContent = n + (n === 1 ? ' new update' : ' new updates');
    bar.hidden = n === 0;
  }
  function flush(scroll) {
    pending.splice(0).forEach(place);
    showBar();
    refresh();
    if (scroll) window.scrollTo(0, Math.max(0, main.getBoundingClientRect().top + window.scrollY - 60));
  }
  function keys() {
    var list = keyBox.querySelector('ol'), found = articles().filter(function (a) {
      return a.classList.contains('key');
    });
    found.sort(function (a, b) { return when(b) - when(a); });
    list.textContent = '';
    found.forEach(function (a) {
      var li = el('li'), link = el('a', '', a.querySelector('h2').lastChild.textContent);
      link.href = '#' + a.id;
      li.appendChild(link); list.appendChild(li);
    });
    keyBox.hidden = found.length === 0;
  }
  function ended(msg) {
    var over = msg.state === 'ended';
    badge.textContent = over ? 'Ended' : 'Live';
    badge.className = 'badge ' + (over ? 'ended' : 'live');
    note.hidden = !over;
    if (over) {
      note.textContent = 'This story has ended: coverage ended ';
      note.appendChild(timeEl(msg.ended, false));
      note.appendChild(document.createTextNode('. Updates may still correct it.'));
      if (es) { es.close(); es = null; main.removeAttribute('data-listening'); }
    }
  }
  function apply(ev) {
    var msg = JSON.parse(ev.data);
    if (msg.op === 'state') { ended(msg); return; }
    var e = msg.entry, old = find(e.id);
    if (msg.op === 'delete') {
      if (old) remove(old);
    } else {
      var fresh = render(e);
      if (e.pinned) {
        // At most one pinned entry: the one pinned before goes back into the stream.
        if (old) remove(old);
        Array.prototype.slice.call(pinSlot.querySelectorAll('article')).forEach(function (a) {
          a.classList.remove('pinned-entry'); place(a);
        });
        pinSlot.appendChild(fresh);
      } else if (old && old.parentNode === pinSlot) {
        old.remove(); place(fresh);
      } else if (old) {
        var i = pending.indexOf(old);
        if (i >= 0) pending[i] = fresh; else old.replaceWith(fresh);
      } else if (reading()) {
        pending.push(fresh);
      } else {
        place(fresh);
      }
    }
    pinSlot.hidden = !pinSlot.querySelector('article');
    showBar();
    keys();
    refresh();
  }
  bar.addEventListener('click', function () { flush(true); });
  // Back at the top of the stream: what waited comes in.
  window.addEventListener('scroll', function () { if (pending.length && !reading()) flush(false); });
  // A key event still behind the bar is shown before its link is followed.
  keyBox.addEventListener('click', function () { if (pending.length) flush(false); });
  refresh();
  setInterval(refresh, 30000);
  if ('ended' in main.dataset) return;
  es = new EventSource(events + '?story=' + encodeURIComponent(story) + '&after=' + after);
  ['create', 'update', 'delete', 'state'].forEach(function (op) { es.addEventListener(op, apply); });
  es.addEventListener('reset', function () { location.reload(); });
  // Marks a page whose stream is open (tests/browser.rs waits for it).
  es.addEventListener('open', function () { main.setAttribute('data-listening', ''); });
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
/// change the script element. `coverageEndTime` once the story has ended.
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
    if let Some(t) = story.ended {
        doc["coverageEndTime"] = Value::String(t.to_rfc3339());
    }
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

/// A story's page: its state, key events, the pinned entry, then its other entries newest
/// first. It works as it is without JavaScript; the script keeps it up to date from the SSE
/// stream starting after `seq`, the log position the page reflects, until the story ends.
pub fn story_page(site: &Site, story: &Story, seq: u64) -> String {
    let page = story_page_url(&site.base_url, &story.slug);
    let mut out = String::new();
    head(&mut out, &story.title);
    alternate_links(&mut out, site, &story.slug, &story.title);
    out.push_str(&json_ld(site, story));
    out.push_str("</head>\n<body>\n");
    out.push_str(&format!(
        "<header class=\"top\"><a href=\"{}\">← {}</a>{}</header>\n",
        esc(&format!("{}/", site.base_url)),
        esc(&site.info.title),
        badge(story),
    ));
    out.push_str(&format!("<h1>{}</h1>\n", esc(&story.title)));
    if !story.description.is_empty() {
        out.push_str(&format!("<p>{}</p>\n", esc(&story.description)));
    }
    out.push_str(&format!(
        "<p class=\"ended-note\"{}>This story has ended{}. Updates may still correct it.</p>\n",
        if story.ended.is_some() { "" } else { " hidden" },
        story.ended.map_or(String::new(), |t| format!(
            ": coverage ended {}",
            time_html(&story.zone, t, false)
        )),
    ));
    out.push_str(&format!(
        "<p><a href=\"{}\">Original page</a> · ",
        esc(&story.url)
    ));
    feed_links(&mut out, site, &story.slug);
    out.push_str("</p>\n");
    key_events(&mut out, story);
    let pinned = story.entries.iter().find(|e| e.pinned);
    out.push_str(&format!(
        "<section id=\"pinned\" class=\"pinned\" aria-label=\"Pinned\"{}><h2>Pinned</h2>",
        if pinned.is_none() { " hidden" } else { "" }
    ));
    if let Some(e) = pinned {
        entry_html(&mut out, &page, &story.zone, e);
    }
    out.push_str("</section>\n");
    out.push_str("<button id=\"new-bar\" class=\"new-bar\" type=\"button\" hidden></button>\n");
    out.push_str(&format!(
        "<main id=\"entries\" data-story=\"{}\" data-seq=\"{seq}\" data-page=\"{}\" data-events=\"{}\"{}{}>\n",
        esc(&story.slug),
        esc(&page),
        esc(&crate::layout::live_events_url(&site.base_url)),
        if story.ended.is_some() {
            " data-ended"
        } else {
            ""
        },
        zone_attributes(story)
    ));
    for e in story.entries.iter().filter(|e| !e.pinned) {
        entry_html(&mut out, &page, &story.zone, e);
    }
    out.push_str("</main>\n");
    out.push_str(TIME_SCRIPT);
    out.push_str(LIVE_SCRIPT);
    out.push_str("</body>\n</html>\n");
    out
}
