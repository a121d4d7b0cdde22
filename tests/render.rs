//! The renderers over the real `data/` directory, read back with a real XML parser: what a feed
//! reader and the W3C validator look for is there, the three formats agree, and hostile text
//! comes out escaped.

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use roxmltree::{Document, Node};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use livefeed::ingest::site::Site;
use livefeed::model::{Entry, Story, StoryKind, newest_first};
use livefeed::render::{self, ALL, Format};

const ATOM: &str = "http://www.w3.org/2005/Atom";
const DC: &str = "http://purl.org/dc/elements/1.1/";
const CONTENT: &str = "http://purl.org/rss/1.0/modules/content/";

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

fn site() -> Site {
    Site::load(&data_dir(), None).expect("data/ loads")
}

/// Every feed of the site: its slug, the page it stands for, and its entries newest first.
fn feeds(site: &Site) -> Vec<(String, String, Vec<Entry>)> {
    let mut out: Vec<(String, String, Vec<Entry>)> = site
        .stories
        .iter()
        .map(|s| (s.slug.clone(), s.url.clone(), s.entries.clone()))
        .collect();
    let mut all: Vec<Entry> = site
        .stories
        .iter()
        .flat_map(|s| s.entries.clone())
        .collect();
    all.sort_by(newest_first);
    out.push((ALL.to_string(), format!("{}/", site.base_url), all));
    out
}

fn text(node: Node) -> String {
    node.children().filter_map(|c| c.text()).collect()
}

/// Whether `node` is the element `name`: `("", local)` for no namespace, else `(ns, local)`.
fn is(node: &Node, (ns, local): (&str, &str)) -> bool {
    node.is_element()
        && node.tag_name().name() == local
        && node.tag_name().namespace().unwrap_or("") == ns
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: (&str, &str)) -> Node<'a, 'i> {
    node.children().find(|c| is(c, name)).unwrap_or_else(|| {
        panic!(
            "<{}> has no <{}:{}>",
            node.tag_name().name(),
            name.0,
            name.1
        )
    })
}

fn children<'a, 'i>(node: Node<'a, 'i>, name: (&'a str, &'a str)) -> Vec<Node<'a, 'i>> {
    node.children().filter(|c| is(c, name)).collect()
}

fn rfc2822_utc(s: &str) -> DateTime<Utc> {
    let t =
        DateTime::parse_from_rfc2822(s).unwrap_or_else(|e| panic!("{s:?} is not RFC 2822: {e}"));
    assert_eq!(
        t.offset(),
        &FixedOffset::east_opt(0).unwrap(),
        "{s} is not UTC"
    );
    t.with_timezone(&Utc)
}

fn rfc3339_utc(s: &str) -> DateTime<Utc> {
    let t =
        DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"));
    assert_eq!(
        t.offset(),
        &FixedOffset::east_opt(0).unwrap(),
        "{s} is not UTC"
    );
    t.with_timezone(&Utc)
}

fn file<'a>(files: &'a BTreeMap<String, Vec<u8>>, name: &str) -> &'a str {
    let bytes = files.get(name).unwrap_or_else(|| panic!("no {name}"));
    std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{name} is not UTF-8: {e}"))
}

fn newest_updated(entries: &[Entry]) -> DateTime<Utc> {
    entries
        .iter()
        .map(|e| e.updated)
        .max()
        .expect("feed has entries")
}

/// Item ids of the RSS feed, checking everything RSS must carry on the way.
fn check_rss(xml: &str, site: &Site, slug: &str, page: &str, entries: &[Entry]) -> Vec<String> {
    let doc = Document::parse(xml).unwrap_or_else(|e| panic!("{slug}.rss: {e}"));
    let rss = doc.root_element();
    assert_eq!(rss.tag_name().name(), "rss");
    assert_eq!(rss.attribute("version"), Some("2.0"));
    let channel = child(rss, ("", "channel"));

    let self_links: Vec<_> = children(channel, (ATOM, "link"))
        .into_iter()
        .filter(|l| l.attribute("rel") == Some("self"))
        .collect();
    assert_eq!(self_links.len(), 1, "{slug}.rss: one atom:link rel=self");
    assert_eq!(
        self_links[0].attribute("href"),
        Some(format!("{}/feeds/{slug}.rss", site.base_url).as_str())
    );
    assert_eq!(self_links[0].attribute("type"), Some("application/rss+xml"));
    assert_eq!(
        text(child(channel, ("", "link"))),
        page,
        "{slug}.rss: channel link"
    );
    assert!(!text(child(channel, ("", "title"))).is_empty());
    assert!(!text(child(channel, ("", "description"))).is_empty());

    let last_build = rfc2822_utc(&text(child(channel, ("", "lastBuildDate"))));
    assert_eq!(
        last_build,
        newest_updated(entries),
        "{slug}.rss: lastBuildDate"
    );
    let pub_date = rfc2822_utc(&text(child(channel, ("", "pubDate"))));
    assert_eq!(pub_date, entries.iter().map(|e| e.published).max().unwrap());

    let items = children(channel, ("", "item"));
    assert_eq!(items.len(), entries.len(), "{slug}.rss: item count");
    let mut ids = Vec::new();
    for (item, e) in items.iter().zip(entries) {
        let guid = child(*item, ("", "guid"));
        assert_eq!(
            guid.attribute("isPermaLink"),
            Some("false"),
            "{slug}.rss guid"
        );
        assert!(
            text(guid).starts_with("tag:"),
            "{slug}.rss guid is a tag: URI"
        );
        assert_eq!(text(child(*item, ("", "title"))), e.title);
        assert_eq!(text(child(*item, ("", "link"))), e.url);
        assert!(
            e.url
                .starts_with(&format!("{}#", e.url.split('#').next().unwrap()))
        );
        assert_eq!(
            rfc2822_utc(&text(child(*item, ("", "pubDate")))),
            e.published
        );
        let description = text(child(*item, ("", "description")));
        assert!(!description.is_empty(), "{slug}.rss: empty description");
        // The summary as HTML text (readers take the description as HTML).
        let as_html = e
            .summary
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert_eq!(description, as_html);
        let encoded = text(child(*item, (CONTENT, "encoded")));
        assert_eq!(encoded, e.content_html, "{slug}.rss: content:encoded");
        assert!(encoded.starts_with('<'), "content:encoded is HTML");
        let creators: Vec<String> = children(*item, (DC, "creator"))
            .into_iter()
            .map(text)
            .collect();
        assert_eq!(creators, e.authors, "{slug}.rss: dc:creator of {}", e.title);
        // RSS's own <author> must be an e-mail address; names go in dc:creator only.
        assert!(children(*item, ("", "author")).is_empty());
        ids.push(text(guid));
    }
    ids
}

fn check_atom(xml: &str, site: &Site, slug: &str, page: &str, entries: &[Entry]) -> Vec<String> {
    let doc = Document::parse(xml).unwrap_or_else(|e| panic!("{slug}.atom: {e}"));
    let feed = doc.root_element();
    assert!(feed.has_tag_name((ATOM, "feed")));
    assert!(text(child(feed, (ATOM, "id"))).starts_with("tag:"));
    assert!(!text(child(feed, (ATOM, "title"))).is_empty());
    assert!(!text(child(child(feed, (ATOM, "author")), (ATOM, "name"))).is_empty());
    let links = children(feed, (ATOM, "link"));
    let rel = |r: &str| -> Vec<Node> {
        links
            .iter()
            .copied()
            .filter(|l| l.attribute("rel") == Some(r))
            .collect()
    };
    let selfs = rel("self");
    assert_eq!(selfs.len(), 1, "{slug}.atom: one link rel=self");
    assert_eq!(
        selfs[0].attribute("href"),
        Some(format!("{}/feeds/{slug}.atom", site.base_url).as_str())
    );
    assert_eq!(selfs[0].attribute("type"), Some("application/atom+xml"));
    let alternates = rel("alternate");
    assert_eq!(alternates.len(), 1, "{slug}.atom: one link rel=alternate");
    assert_eq!(alternates[0].attribute("href"), Some(page));
    assert_eq!(alternates[0].attribute("type"), Some("text/html"));
    let updated = rfc3339_utc(&text(child(feed, (ATOM, "updated"))));
    assert_eq!(
        updated,
        newest_updated(entries),
        "{slug}.atom: feed updated"
    );

    let nodes = children(feed, (ATOM, "entry"));
    assert_eq!(nodes.len(), entries.len());
    let mut ids = Vec::new();
    for (node, e) in nodes.iter().zip(entries) {
        let id = text(child(*node, (ATOM, "id")));
        assert!(id.starts_with("tag:"));
        assert_eq!(text(child(*node, (ATOM, "title"))), e.title);
        assert_eq!(
            rfc3339_utc(&text(child(*node, (ATOM, "updated")))),
            e.updated
        );
        assert_eq!(
            rfc3339_utc(&text(child(*node, (ATOM, "published")))),
            e.published
        );
        let link = child(*node, (ATOM, "link"));
        assert_eq!(link.attribute("rel"), Some("alternate"));
        assert_eq!(link.attribute("href"), Some(e.url.as_str()));
        let content = child(*node, (ATOM, "content"));
        assert_eq!(content.attribute("type"), Some("html"));
        assert_eq!(text(content), e.content_html);
        assert_eq!(text(child(*node, (ATOM, "summary"))), e.summary);
        let authors: Vec<String> = children(*node, (ATOM, "author"))
            .into_iter()
            .map(|a| text(child(a, (ATOM, "name"))))
            .collect();
        assert_eq!(authors, e.authors, "{slug}.atom: authors of {}", e.title);
        ids.push(id);
    }
    ids
}

fn check_json(json: &str, site: &Site, slug: &str, page: &str, entries: &[Entry]) -> Vec<String> {
    let doc: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{slug}.json: {e}"));
    assert_eq!(doc["version"], "https://jsonfeed.org/version/1.1");
    assert_eq!(
        doc["feed_url"],
        format!("{}/feeds/{slug}.json", site.base_url)
    );
    assert_eq!(doc["home_page_url"], page);
    assert!(doc["title"].as_str().is_some_and(|t| !t.is_empty()));
    let items = doc["items"].as_array().expect("items");
    assert_eq!(items.len(), entries.len());
    let mut ids = Vec::new();
    for (item, e) in items.iter().zip(entries) {
        assert_eq!(item["title"], e.title.as_str());
        assert_eq!(item["url"], e.url.as_str());
        assert_eq!(item["content_html"], e.content_html.as_str());
        assert_eq!(item["summary"], e.summary.as_str());
        assert_eq!(
            rfc3339_utc(item["date_published"].as_str().unwrap()),
            e.published
        );
        assert_eq!(
            rfc3339_utc(item["date_modified"].as_str().unwrap()),
            e.updated
        );
        let authors: Vec<&str> = item["authors"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(authors, e.authors);
        ids.push(item["id"].as_str().expect("id").to_string());
    }
    ids
}

#[test]
fn every_feed_carries_what_readers_and_validators_need() {
    let site = site();
    let files = render::render_site(&site);
    let feeds = feeds(&site);
    assert_eq!(
        files.len(),
        3 * feeds.len() + 1,
        "3 feeds per story, 3 for all, index.html"
    );
    for (slug, page, entries) in &feeds {
        assert!(!entries.is_empty(), "{slug} has entries");
        for pair in entries.windows(2) {
            assert!(
                newest_first(&pair[0], &pair[1]).is_lt(),
                "{slug}: newest first"
            );
        }
        let want: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        let rss = check_rss(
            file(&files, &format!("{slug}.rss")),
            &site,
            slug,
            page,
            entries,
        );
        let atom = check_atom(
            file(&files, &format!("{slug}.atom")),
            &site,
            slug,
            page,
            entries,
        );
        let json = check_json(
            file(&files, &format!("{slug}.json")),
            &site,
            slug,
            page,
            entries,
        );
        assert_eq!(rss, want, "{slug}.rss: ids in feed order");
        assert_eq!(atom, want, "{slug}.atom: ids in feed order");
        assert_eq!(json, want, "{slug}.json: ids in feed order");
    }
}

#[test]
fn the_seed_stories_are_in_the_all_feed() {
    let site = site();
    let all = render::all_feed(&site);
    let total: usize = site.stories.iter().map(|s| s.entries.len()).sum();
    assert_eq!(all.entries.len(), total);
    assert_eq!(total, 6, "5 live entries + 1 article");
    let live = site
        .story("disputes-over-syria-summit-plan")
        .expect("the live page");
    assert_eq!(live.kind, StoryKind::Live);
    let carl = live
        .entries
        .iter()
        .find(|e| e.title == "David Cameron meets Vladimir Putin to discuss Syria")
        .expect("the Carl Dinnen entry");
    assert_eq!(carl.authors, ["Carl Dinnen"]);
    let rss = String::from_utf8(render::render_feed(
        &render::story_feed(&site, live),
        Format::Rss,
    ))
    .unwrap();
    assert!(
        rss.contains("<dc:creator>Carl Dinnen</dc:creator>"),
        "{rss}"
    );
}

#[test]
fn index_has_an_autodiscovery_link_for_every_feed() {
    let site = site();
    let files = render::render_site(&site);
    let html = file(&files, "index.html");
    let links: Vec<(String, String)> = html
        .split("<link ")
        .skip(1)
        .map(|tag| tag.split('>').next().unwrap_or_default())
        .filter(|tag| tag.contains("rel=\"alternate\""))
        .map(|tag| {
            let attr = |name: &str| {
                let start = tag
                    .find(&format!("{name}=\""))
                    .unwrap_or_else(|| panic!("no {name} in <link {tag}>"))
                    + name.len()
                    + 2;
                tag[start..]
                    .split('"')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            };
            (attr("type"), attr("href"))
        })
        .collect();
    let mut want = Vec::new();
    for slug in std::iter::once(ALL).chain(site.stories.iter().map(|s| s.slug.as_str())) {
        for format in Format::ALL {
            want.push((
                format.link_type().to_string(),
                livefeed::layout::feed_url(&site.base_url, slug, format),
            ));
            assert!(files.contains_key(&livefeed::layout::feed_file(slug, format)));
        }
    }
    assert_eq!(links.len(), 3 * (site.stories.len() + 1));
    let mut got = links.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // Autodiscovery links belong in <head>.
    let head_end = html.find("</head>").expect("</head>");
    assert!(html.rfind("<link rel=\"alternate\"").unwrap() < head_end);
}

#[test]
fn rendering_is_reproducible_to_the_byte() {
    let a = render::render_site(&site());
    let b = render::render_site(&site());
    assert_eq!(a, b);
    // Stories in another order give the same feeds (the all feed sorts with a tie-break).
    let mut reversed = site();
    reversed.stories.reverse();
    let c = render::render_site(&reversed);
    for format in Format::ALL {
        let name = livefeed::layout::feed_file(ALL, format);
        assert_eq!(a[&name], c[&name], "{name} depends on story order");
    }
}

#[test]
fn another_base_url_moves_the_links_but_not_the_ids() {
    let here = site();
    let there = Site::load(&data_dir(), Some("http://localhost:9999/")).unwrap();
    assert_eq!(there.base_url, "http://localhost:9999");
    let a = render::render_site(&here);
    let b = render::render_site(&there);
    for (slug, page, entries) in feeds(&there) {
        let ids = check_atom(
            file(&b, &format!("{slug}.atom")),
            &there,
            &slug,
            &page,
            &entries,
        );
        let old: Vec<String> = feeds(&here)
            .into_iter()
            .find(|f| f.0 == slug)
            .unwrap()
            .2
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, old, "{slug}: ids depend on the base URL");
    }
    let json = file(&b, "all.json");
    assert!(json.contains("\"feed_url\": \"http://localhost:9999/feeds/all.json\""));
    assert!(!file(&a, "all.json").contains("localhost"));
}

const HOSTILE_MANIFEST: &str = r#"
[site]
title = "Hostile <site> & ]]>"
author = "Desk <desk@example.org>"
base_url = "https://hostile.example.org"

[[story]]
slug = "hostile"
kind = "live"
url = "https://www.itv.com/news/story/2013-05-10/hostile/"
published = "2013-05-10T12:00:00+01:00"
updated = "2013-05-11T12:00:00+01:00"
"#;

/// A report with markup, CDATA terminators and control characters in every kind of line.
fn hostile_report() -> Vec<u8> {
    let text = "Hostile ]]> story <script>alert('t')</script>\r\n\
        A standfirst with & ampersands, ]]> and \u{1}controls\u{7}.\r\n\
        Live updates\r\n\
        2:34pm\r\n\
        Entry ]]> with <script>alert(1)</script> in it\r\n\
        Body text with <script>alert(\"x\")</script>, ]]>, &amp; and \u{0}\u{8}\u{1b}[31m escapes\u{85}.\r\n\
        \u{20}\u{20}• item <b>bold</b> ]]>\u{c}\r\n\
        \"A quotation ]]> with <i>markup</i>.\"\r\n\
        – Somebody <img src=x onerror=alert(1)>\r\n\
        A caption with ]]> <script> Credit: Agency ]]>\r\n\
        \r\n\
        \u{20}\u{20}1. Carl <Dinnen>\r\n\
        Second entry\u{feff} ]]]]><![CDATA[>\r\n\
        Plain text body with a lone ]] and a > and a ]]>.\r\n\
        Back to top\r\n";
    text.as_bytes().to_vec()
}

fn hostile_site() -> (tempfile::TempDir, Site) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stories.toml"), HOSTILE_MANIFEST).unwrap();
    std::fs::write(dir.path().join("hostile.txt"), hostile_report()).unwrap();
    let site = Site::load(dir.path(), None).expect("hostile report loads");
    (dir, site)
}

fn no_raw_markup(html: &str, what: &str) {
    for bad in ["<script", "<img", "<b>", "<i>", "<Dinnen"] {
        assert!(!html.contains(bad), "{what} carries raw {bad}: {html}");
    }
}

#[test]
fn hostile_text_is_escaped_and_the_feeds_still_parse() {
    let (_dir, site) = hostile_site();
    let story = &site.stories[0];
    assert!(story.entries.len() >= 2, "{:#?}", story.entries);
    for e in &story.entries {
        for s in [&e.title, &e.summary, &e.content_html] {
            assert!(
                !s.chars()
                    .any(|c| c.is_control() && c != '\n' || c == '\u{feff}'),
                "control character left in {s:?}"
            );
        }
        no_raw_markup(&e.content_html, "content_html");
    }
    let files = render::render_site(&site);
    for (slug, page, entries) in feeds(&site) {
        let rss = check_rss(
            file(&files, &format!("{slug}.rss")),
            &site,
            &slug,
            &page,
            &entries,
        );
        let atom = check_atom(
            file(&files, &format!("{slug}.atom")),
            &site,
            &slug,
            &page,
            &entries,
        );
        let json = check_json(
            file(&files, &format!("{slug}.json")),
            &site,
            &slug,
            &page,
            &entries,
        );
        assert_eq!(rss, atom);
        assert_eq!(rss, json);
    }
    // The text survives: `]]>` and `<script>` reach the reader as text, not as markup.
    let rss = file(&files, "hostile.rss");
    let doc = Document::parse(rss).unwrap();
    let titles: Vec<String> = doc
        .descendants()
        .filter(|n| is(n, ("", "item")))
        .map(|i| text(child(i, ("", "title"))))
        .collect();
    assert!(
        titles
            .iter()
            .any(|t| t.contains("]]>") && t.contains("<script>")),
        "{titles:?}"
    );
    let html = file(&files, "index.html");
    no_raw_markup(html.split("<style>").next().unwrap(), "index.html head");
    assert!(
        !html.contains("<site>"),
        "site title unescaped in index.html"
    );
    assert!(
        html.contains("Hostile ]]&gt; story &lt;script&gt;"),
        "{html}"
    );
}

fn entry(n: u32, title: &str, body: &str) -> Entry {
    let t = Utc.with_ymd_and_hms(2013, 5, 10, 12, n, 0).unwrap();
    Entry {
        story: "built".into(),
        id: format!("tag:example.org,2013-05-10:built/e{n}"),
        anchor: format!("e{n}"),
        title: title.into(),
        title_derived: false,
        authors: vec!["A \u{1}uthor\u{0}".into()],
        published: t,
        updated: t,
        time_inferred: false,
        summary: body.into(),
        content_html: format!("<p>{body}</p>"),
        url: format!("https://example.org/built#e{n}"),
        blocks: Vec::new(),
        key: false,
        pinned: false,
    }
}

/// Entries built by hand (as a publishing endpoint might) that never met the normaliser's
/// cleaning: the renderers still emit well-formed XML.
#[test]
fn entries_with_control_characters_still_render_well_formed_xml() {
    let t = Utc.with_ymd_and_hms(2013, 5, 10, 12, 0, 0).unwrap();
    let story = Story {
        slug: "built".into(),
        kind: StoryKind::Live,
        title: "Built \u{1b}[0m by hand\u{0}".into(),
        description: "desc\u{8}".into(),
        url: "https://example.org/built".into(),
        published: t,
        updated: t,
        entries: vec![
            entry(
                2,
                "Bell\u{7} and NUL\u{0}",
                "vertical\u{b}tab, form\u{c}feed, ]]> and \r",
            ),
            entry(1, "\u{feff}BOM \u{fffe}\u{ffff}", "C1\u{85}\u{9f} controls"),
        ],
        tombstones: Vec::new(),
        // Ended: its feeds' descriptions carry the ended line too.
        ended: Some(t),
        zone: Default::default(),
    };
    let mut site = site();
    site.stories = vec![story];
    for (name, bytes) in render::render_site(&site) {
        let s = String::from_utf8(bytes).unwrap();
        match Format::from_ext(name.rsplit('.').next().unwrap()) {
            Some(Format::Rss | Format::Atom) => {
                if let Err(e) = Document::parse(&s) {
                    panic!("{name} is not well-formed: {e}\n{s}");
                }
            }
            Some(Format::Json) => {
                serde_json::from_str::<serde_json::Value>(&s).unwrap();
            }
            None => {}
        }
    }
}
