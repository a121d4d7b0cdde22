//! The normaliser against the two seed reports and the fixtures in `tests/fixtures/`, through
//! the public API only: `decode` → `normalise` with a hand-made `StoryMeta`.

use chrono::{DateTime, FixedOffset, Utc};
use livefeed::ingest::normalise::{EntryTime, StoryMeta, decode, normalise};
use livefeed::model::{Block, Story, StoryKind};

const ITV_LIVE: &str =
    "https://www.itv.com/news/story/2013-05-10/david-cameron-meets-vladimir-putin-russia-visit/";
const ITV_ARTICLE: &str =
    "https://www.itv.com/news/2013-06-16/anglo-russian-differences-over-syria-can-be-overcome/";

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn bst() -> FixedOffset {
    FixedOffset::east_opt(3600).unwrap()
}

fn meta(slug: &str, url: Option<&str>, published: &str, updated: &str) -> StoryMeta {
    StoryMeta {
        slug: slug.to_string(),
        kind: None,
        template: None,
        url: url.map(str::to_string),
        published: utc(published),
        updated: utc(updated),
        offset: bst(),
        entry_times: Vec::new(),
        fallback_url: format!("https://livefeed.example.org/stories/{slug}"),
    }
}

fn read_bytes(path: &str) -> Vec<u8> {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn read(path: &str) -> String {
    decode(&read_bytes(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture(name: &str) -> String {
    read(&format!("tests/fixtures/{name}"))
}

/// Normalises a fixture and checks the invariants every story must keep.
fn story(name: &str, meta: &StoryMeta) -> Story {
    let s = normalise(&fixture(name), meta).unwrap_or_else(|e| panic!("{name}: {e}"));
    check_invariants(name, &s);
    s
}

fn titles(s: &Story) -> Vec<&str> {
    s.entries.iter().map(|e| e.title.as_str()).collect()
}

fn authors(s: &Story) -> Vec<Vec<&str>> {
    s.entries
        .iter()
        .map(|e| e.authors.iter().map(String::as_str).collect())
        .collect()
}

fn inferred(s: &Story) -> Vec<bool> {
    s.entries.iter().map(|e| e.time_inferred).collect()
}

fn published(s: &Story) -> Vec<DateTime<Utc>> {
    s.entries.iter().map(|e| e.published).collect()
}

fn html(s: &Story, i: usize) -> &str {
    &s.entries[i].content_html
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Page furniture that must never become an item or a title.
const BOILERPLATE: &[&str] = &[
    "Live updates",
    "Latest ITV News reports",
    "Back to top",
    "Advertisement",
    "Load more updates",
];

fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

fn check_invariants(name: &str, s: &Story) {
    assert!(!s.entries.is_empty(), "{name}: no entries");
    assert!(
        !has_control(&s.title) && !has_control(&s.description),
        "{name}: control chars"
    );
    let mut ids: Vec<&str> = Vec::new();
    for e in &s.entries {
        let t = e.title.as_str();
        assert!(!t.is_empty(), "{name}: empty title");
        assert!(!BOILERPLATE.contains(&t), "{name}: boilerplate title {t:?}");
        assert!(
            !t.to_lowercase().starts_with("by "),
            "{name}: byline title {t:?}"
        );
        assert!(
            !t.split_once(". ")
                .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit())),
            "{name}: numbered line as title {t:?}"
        );
        for marker in ["Credit:", "Photo:", "(@"] {
            assert!(
                !t.contains(marker),
                "{name}: caption or tweet as title {t:?}"
            );
        }
        assert!(e.id.starts_with("tag:"), "{name}: id {:?}", e.id);
        assert_eq!(e.url, format!("{}#{}", s.url, e.anchor), "{name}");
        assert_eq!(e.story, s.slug);
        assert!(
            e.updated >= e.published,
            "{name}: {t:?} updated before published"
        );
        for field in [&e.title, &e.summary, &e.content_html] {
            assert!(!has_control(field), "{name}: control char in {field:?}");
        }
        assert!(
            !e.content_html.contains("<script"),
            "{name}: raw script in {t:?}"
        );
        for b in BOILERPLATE {
            assert!(
                !e.content_html.contains(b),
                "{name}: {b:?} in the body of {t:?}"
            );
        }
        ids.push(&e.id);
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{name}: duplicate ids");
    // Newest first, strictly: no two items share a time, the page order is kept.
    for w in s.entries.windows(2) {
        assert!(
            w[0].published > w[1].published,
            "{name}: order of {:?}",
            w[1].title
        );
        assert!(
            w[0].updated != w[1].updated,
            "{name}: shared updated {:?}",
            w[1].title
        );
    }
    let mut updated: Vec<_> = s.entries.iter().map(|e| e.updated).collect();
    updated.sort_unstable();
    updated.dedup();
    assert_eq!(
        updated.len(),
        s.entries.len(),
        "{name}: two items share `updated`"
    );
    assert!(s.updated >= s.entries[0].updated);
}

// ---------------------------------------------------------------------------------------------
// The seeds

fn seed_live_meta() -> StoryMeta {
    meta(
        "disputes-over-syria-summit-plan",
        Some(ITV_LIVE),
        "2013-05-10T12:00:00+01:00",
        "2013-05-11T12:00:00+01:00",
    )
}

fn seed_article_meta() -> StoryMeta {
    meta(
        "anglo-russian-differences-over-syria",
        Some(ITV_ARTICLE),
        "2013-06-16T12:00:00+01:00",
        "2013-06-16T12:00:00+01:00",
    )
}

fn seed_live() -> Story {
    let s = normalise(
        &read("data/disputes-over-syria-summit-plan.txt"),
        &seed_live_meta(),
    )
    .unwrap();
    check_invariants("seed live page", &s);
    s
}

fn seed_article() -> Story {
    let s = normalise(
        &read("data/anglo-russian-differences-over-syria.txt"),
        &seed_article_meta(),
    )
    .unwrap();
    check_invariants("seed article", &s);
    s
}

#[test]
fn seed_live_page_gives_five_items_newest_first() {
    let s = seed_live();
    assert_eq!(s.kind, StoryKind::Live);
    assert_eq!(s.title, "Disputes over Syria summit plan");
    assert!(
        s.description
            .starts_with("Plans to hold a conference by the end of this month")
    );
    assert_eq!(s.url, ITV_LIVE);
    assert_eq!(
        titles(&s),
        vec![
            "May summit on Syria is 'impossible' says Russian official",
            "'History of Syria is written in blood of their people'",
            "David Cameron meets Vladimir Putin to discuss Syria",
            "Government in favour of easing EU arms embargo",
            "David Cameron talks Syria with Russian president",
        ]
    );
    assert_eq!(
        authors(&s),
        vec![vec![], vec![], vec!["Carl Dinnen"], vec![], vec![]]
    );
    assert_eq!(inferred(&s), vec![true; 5]);
    // Newest takes the last update, oldest the publication.
    assert_eq!(s.entries[0].published, utc("2013-05-11T12:00:00+01:00"));
    assert_eq!(s.entries[4].published, utc("2013-05-10T12:00:00+01:00"));
}

#[test]
fn seed_live_page_keeps_its_structure() {
    let s = seed_live();
    assert!(html(&s, 0).starts_with("<p>A Russian official has said it is &quot;impossible&quot;"));
    assert_eq!(count(html(&s, 0), "<p>"), 4);
    // The caption under the headline is a figure, not a title or a paragraph.
    assert!(html(&s, 1).starts_with(
        "<figure><figcaption>David Cameron speaking in Sochi</figcaption></figure>\
         <p>David Cameron has made a statement"
    ));
    // The byline went to the entry below it and is not in any body.
    for e in &s.entries {
        assert!(!e.content_html.contains("Carl Dinnen"), "{}", e.title);
    }
    assert!(html(&s, 3).ends_with(
        "<p>The British discussion paper sets out two options:</p>\
         <ul><li>Lift the arms embargo against the Syrian National Coalition completely</li>\
         <li>Remove the words &quot;non-lethal&quot; from a list of exemptions, clearing the way \
         for weapons to be sent to the country</li></ul>\
         <blockquote><p>The rationale behind exploring all the options, which is what we have \
         long been saying with regard to the arms embargo, is the fact that we need to continue \
         to, as part of pushing for a political solution, increase the pressure on the Assad \
         regime. That&#39;s why we think that is the right thing to do.</p>\
         <footer>– <cite>The Prime Minister&#39;s spokesman</cite></footer></blockquote>"
    ));
    assert!(html(&s, 4).contains(
        "<figure><figcaption>Prime Minister David Cameron and Russia&#39;s President Vladimir \
         Putin as they will hold talks this week <small class=\"credit\">Credit: Sang Tan/PA \
         Wire</small></figcaption></figure>"
    ));
    assert!(matches!(
        s.entries[4].blocks.iter().find(|b| matches!(b, Block::Figure { .. })),
        Some(Block::Figure { credit: Some(c), .. }) if c == "Credit: Sang Tan/PA Wire"
    ));
    // Summaries are plain text and skip captions.
    assert!(
        s.entries[1]
            .summary
            .starts_with("David Cameron has made a statement")
    );
    assert!(!s.entries[1].summary.contains('<'));
}

#[test]
fn seed_article_gives_one_item_with_its_quotation() {
    let s = seed_article();
    assert_eq!(s.kind, StoryKind::Article);
    assert_eq!(s.entries.len(), 1);
    let e = &s.entries[0];
    assert_eq!(
        e.title,
        "Anglo-Russian differences over Syria 'can be overcome'"
    );
    assert_eq!(e.authors, vec!["ITV Report"]);
    assert!(!e.time_inferred);
    assert_eq!(e.published, utc("2013-06-16T12:00:00+01:00"));
    assert!(
        s.description
            .starts_with("The Prime Minister insisted today")
    );
    assert!(e.content_html.contains(
        "<blockquote><p>Where there is common ground is we both see a humanitarian catastrophe, \
         we both see the dangers of instability and extremism, we both want to see a peace \
         conference and a transition.</p><p>So the challenge for the G8 and for this process is \
         to try and put aside some of the differences and focus on the common ground.</p>\
         <footer>– <cite>prime minister david cameron</cite></footer></blockquote>"
    ));
    assert_eq!(count(&e.content_html, "<blockquote>"), 1);
    assert!(e.content_html.starts_with(
        "<figure><figcaption>Prime Minister David Cameron and Russian President Vladimir Putin \
         <small class=\"credit\">Photo: Anthony Devlin/PA Wire</small></figcaption></figure>"
    ));
    assert_eq!(
        count(&e.content_html, "<small class=\"credit\">Credit: "),
        2
    );
    assert_eq!(count(&e.content_html, "<figure>"), 3);
    assert!(!e.content_html.contains("ITV Report"));
}

// ---------------------------------------------------------------------------------------------
// The fixtures

#[test]
fn several_captions_in_a_row() {
    let m = meta(
        "central-europe-floods",
        None,
        "2013-06-03T09:00:00+01:00",
        "2013-06-04T18:00:00+01:00",
    );
    let s = story("captions-in-a-row.txt", &m);
    assert_eq!(
        titles(&s),
        vec![
            "Water levels in Dresden expected to peak tonight",
            "Prague Zoo moves animals to higher ground",
            "In pictures: Passau under water",
            "Floods claim lives in Germany and Austria",
        ]
    );
    assert_eq!(
        authors(&s),
        vec![vec![], vec![], vec![], vec!["Helen Marsh"]]
    );
    assert_eq!(inferred(&s), vec![true; 4]);
    // An uncredited caption, then one with `Credit:` and one with `Photo:`, under the headline.
    assert_eq!(
        html(&s, 0),
        "<figure><figcaption>Sandbags piled along the Elbe embankment in Dresden</figcaption>\
         </figure><figure><figcaption>Soldiers help residents to fill sandbags in the old town \
         <small class=\"credit\">Credit: Reuters</small></figcaption></figure><figure>\
         <figcaption>An aerial view of the flooded village of Grimma <small class=\"credit\">\
         Photo: Jens Meyer/AP</small></figcaption></figure><p>Officials in Dresden said the Elbe \
         was expected to peak at around 8.5 metres late on Wednesday, well above its normal \
         level of two metres.</p><p>More than 600 soldiers have been deployed to the city to \
         reinforce flood defences.</p>"
    );
    // Three credited captions in the middle of a body.
    let zoo = html(&s, 1);
    assert_eq!(count(zoo, "<figure>"), 3);
    assert_eq!(count(zoo, "<small class=\"credit\">"), 3);
    assert!(zoo.contains("<small class=\"credit\">Photo: David W Cerny/Reuters</small>"));
    assert!(zoo.ends_with(
        "<p>Zoo director Miroslav Bobek said it would take weeks to assess the damage.</p>"
    ));
    // A photo-only entry, then a byline: the next headline is an entry, not a caption.
    assert_eq!(count(html(&s, 2), "<figure>"), 2);
    assert_eq!(count(html(&s, 2), "<p>"), 0);
    assert_eq!(s.entries[2].summary, "In pictures: Passau under water");
    // Two uncredited captions under the headline.
    assert_eq!(
        s.entries[3].blocks[..2],
        [
            Block::Figure {
                caption: "Chancellor Angela Merkel visited Passau on Tuesday".into(),
                credit: None
            },
            Block::Figure {
                caption: "A rescue helicopter over the Danube near Deggendorf".into(),
                credit: None
            },
        ]
    );
    assert!(
        s.entries[3]
            .summary
            .starts_with("Rescue workers in Bavaria")
    );
    // Without a page address, links fall back to the base and ids to a reserved authority.
    assert_eq!(
        s.url,
        "https://livefeed.example.org/stories/central-europe-floods"
    );
    assert_eq!(
        s.entries[0].id,
        "tag:livefeed.invalid,2013-06-03:central-europe-floods/water-levels-in-dresden-expected-to-peak-tonight"
    );
}

#[test]
fn africa_correspondent_bylines() {
    let m = meta(
        "mali",
        None,
        "2013-01-26T08:00:00+00:00",
        "2013-01-28T12:00:00+00:00",
    );
    let s = story("africa-correspondent-bylines.txt", &m);
    assert_eq!(
        titles(&s),
        vec![
            "French troops reach the gates of Timbuktu",
            "Residents describe fear under Islamist rule",
            "Manuscripts library set on fire",
            "UK to send surveillance aircraft to Mali",
        ]
    );
    assert_eq!(
        authors(&s),
        vec![
            vec!["Africa Correspondent"],
            vec!["John Ray, Africa Correspondent"],
            vec![],
            vec!["Emma Walsh"],
        ]
    );
    // A sentence that starts with "By" is body text, not a byline.
    assert!(html(&s, 0).starts_with("<p>By Saturday evening, French armoured vehicles"));
    assert_eq!(count(html(&s, 0), "<p>"), 2);
    for e in &s.entries {
        assert!(!e.content_html.contains("Correspondent"), "{}", e.title);
        assert!(!e.content_html.contains("Emma Walsh"), "{}", e.title);
    }
}

#[test]
fn an_entry_that_is_only_a_tweet() {
    let m = meta(
        "thatcher",
        None,
        "2013-04-08T13:00:00+01:00",
        "2013-04-08T20:00:00+01:00",
    );
    let s = story("tweet-only-entry.txt", &m);
    assert_eq!(
        titles(&s),
        vec![
            "Hague: 'She made Britain stronger'",
            "Miliband: 'A unique figure'",
            "Flags lowered at Downing Street",
            "Obama: 'The world has lost one of the great champions of freedom'",
        ]
    );
    assert_eq!(authors(&s), vec![Vec::<&str>::new(); 4]);
    assert_eq!(
        html(&s, 0),
        "<blockquote class=\"embed\"><p>Deeply saddened to hear of the death of Lady Thatcher. \
         She was a great Prime Minister who made Britain stronger and safer.</p><footer>— \
         William Hague (@WilliamJHague) April 8, 2013</footer></blockquote>"
    );
    // A tweet that reads like a caption (short, no full stop) is still the tweet.
    assert_eq!(
        html(&s, 1),
        "<blockquote class=\"embed\"><p>She will be remembered as a unique figure who reshaped \
         the politics of a whole generation</p><footer>— Ed Miliband (@Ed_Miliband) April 8, \
         2013</footer></blockquote>"
    );
    assert_eq!(
        s.entries[1].summary,
        "She will be remembered as a unique figure who reshaped the politics of a whole generation"
    );
    // A tweet between paragraphs takes only its own line.
    assert_eq!(
        html(&s, 2),
        "<p>Flags at Downing Street and the Houses of Parliament have been lowered to \
         half-mast.</p><blockquote class=\"embed\"><p>Staff lowered the Union flag above Number \
         10 shortly after 2pm pic.twitter.com/xY12abCd</p><footer>— ITV News (@itvnews) April 8, \
         2013</footer></blockquote><p>A Downing Street spokesman said the Prime Minister had cut \
         short a visit to Spain.</p>"
    );
}

#[test]
fn time_lines_above_the_headline_in_several_forms() {
    let m = meta(
        "royal-baby",
        None,
        "2013-07-22T06:00:00+01:00",
        "2013-07-22T23:00:00+01:00",
    );
    let s = story("times-above-headline.txt", &m);
    assert_eq!(
        titles(&s),
        vec![
            "Crowds sing outside Buckingham Palace",
            "Prince William 'delighted' with his son",
            "The official notice is placed on an easel",
            "Royal baby born",
            "Duchess of Cambridge admitted to hospital in the early stages of labour",
        ]
    );
    assert_eq!(
        authors(&s),
        vec![vec![], vec!["Helen Marsh"], vec![], vec![], vec![]]
    );
    assert_eq!(inferred(&s), vec![false; 5]);
    assert_eq!(
        published(&s),
        vec![
            utc("2013-07-22T22:15:00+01:00"), // 10:15pm
            utc("2013-07-22T21:40:00+01:00"), // 21:40
            utc("2013-07-22T20:29:00+01:00"), // 22 July 2013 at 8:29pm
            utc("2013-07-22T16:24:00+01:00"), // 4:24pm
            utc("2013-07-22T07:05:00+01:00"), // Updated 22 July 2013 at 7:05am BST
        ]
    );
    assert_eq!(
        html(&s, 2),
        "<figure><figcaption>The easel in the forecourt of Buckingham Palace <small \
         class=\"credit\">Credit: John Stillwell/PA Wire</small></figcaption></figure><p>The \
         notice, signed by the royal medical team, says the baby weighs 8lbs 6oz.</p>"
    );
    for e in &s.entries {
        for t in ["10:15pm", "21:40", "8:29pm", "Updated"] {
            assert!(!e.content_html.contains(t), "{t} left in {}", e.title);
        }
    }
    // A zone on the time line wins over the story's offset; lines without one follow it.
    let mut utc_page = m.clone();
    utc_page.offset = FixedOffset::east_opt(0).unwrap();
    let s = story("times-above-headline.txt", &utc_page);
    assert_eq!(s.entries[0].published, utc("2013-07-22T22:15:00Z"));
    assert_eq!(s.entries[4].published, utc("2013-07-22T06:05:00Z"));
}

fn g8_meta() -> StoryMeta {
    meta(
        "g8",
        None,
        "2013-06-15T10:00:00+01:00",
        "2013-06-18T17:00:00+01:00",
    )
}

#[test]
fn time_lines_below_the_headline_with_some_entries_untimed() {
    let s = story("times-below-headline.txt", &g8_meta());
    assert_eq!(
        titles(&s),
        vec![
            "Summit ends with joint statement on Syria",
            "Obama and Putin hold talks",
            "Leaders agree action on tax avoidance",
            "David Cameron welcomes leaders to Enniskillen",
            "Protesters gather in Belfast",
        ]
    );
    assert_eq!(inferred(&s), vec![true, false, false, false, true]);
    assert_eq!(
        published(&s),
        vec![
            utc("2013-06-18T17:00:00+01:00"), // inferred: the story's last update
            utc("2013-06-18T14:34:00+01:00"), // 14:34
            utc("2013-06-18T14:05:00+01:00"), // 2:05pm
            utc("2013-06-17T11:05:00+01:00"), // 17 June 2013 at 11:05am
            utc("2013-06-15T10:00:00+01:00"), // inferred: the story's publication
        ]
    );
    assert_eq!(
        html(&s, 1),
        "<p>The two presidents met for almost two hours on the sidelines of the summit.</p>\
         <p>Body language between the two men was described by one observer as \
         &quot;frosty&quot;.</p>"
    );
    assert_eq!(
        html(&s, 0),
        "<p>The eight leaders have agreed a communique calling for a peace conference in Geneva \
         &quot;as soon as possible&quot;.</p>"
    );
}

#[test]
fn manifest_entry_times_win_and_are_explicit() {
    let mut m = g8_meta();
    m.entry_times = vec![
        EntryTime {
            title: "Obama and Putin hold talks".into(),
            published: utc("2013-06-18T14:20:00+01:00"),
            updated: Some(utc("2013-06-18T15:30:00+01:00")),
        },
        EntryTime {
            title: "Protesters gather in Belfast".into(),
            published: utc("2013-06-15T15:00:00+01:00"),
            updated: None,
        },
    ];
    let s = story("times-below-headline.txt", &m);
    assert_eq!(inferred(&s), vec![true, false, false, false, false]);
    assert_eq!(s.entries[1].published, utc("2013-06-18T14:20:00+01:00"));
    assert_eq!(s.entries[1].updated, utc("2013-06-18T15:30:00+01:00"));
    assert_eq!(s.entries[4].published, utc("2013-06-15T15:00:00+01:00"));
    assert_eq!(s.entries[4].updated, s.entries[4].published);
}

#[test]
fn advertisement_and_load_more_lines_are_not_content() {
    let m = meta(
        "wimbledon",
        None,
        "2013-07-07T13:00:00+01:00",
        "2013-07-07T18:30:00+01:00",
    );
    let s = story("advertisement-and-load-more.txt", &m);
    assert_eq!(
        titles(&s),
        vec![
            "Murray: 'I gave it everything'",
            "Queen congratulates Murray",
            "Murray takes the first set",
            "Crowds pack Henman Hill",
        ]
    );
    assert_eq!(inferred(&s), vec![true; 4]);
    assert_eq!(
        html(&s, 1),
        "<p>Buckingham Palace said the Queen had sent a private message of congratulations to \
         the new champion.</p>"
    );
    assert_eq!(
        html(&s, 3),
        "<p>Thousands of fans without Centre Court tickets are watching on the big screen.</p>"
    );
}

#[test]
fn latest_itv_news_reports_as_the_header() {
    let m = meta(
        "syria-vote",
        None,
        "2013-08-29T14:00:00+01:00",
        "2013-08-29T23:00:00+01:00",
    );
    let s = story("latest-reports-header.txt", &m);
    assert_eq!(s.kind, StoryKind::Live);
    assert_eq!(s.title, "Syria crisis: MPs vote against military action");
    assert_eq!(
        s.description,
        "The Government has lost a Commons vote on the principle of military action against \
         Syria by 285 votes to 272."
    );
    assert_eq!(
        titles(&s),
        vec![
            "Cameron: 'I get that and the Government will act accordingly'",
            "MPs debate the Government motion",
        ]
    );
    assert_eq!(count(html(&s, 0), "<p>"), 2);
    assert_eq!(
        html(&s, 1),
        "<p>The Commons debate on the Government motion lasted almost eight hours.</p>"
    );
}

#[test]
fn an_article_with_no_live_entries() {
    let m = meta(
        "bank-rates",
        None,
        "2013-07-04T12:00:00+01:00",
        "2013-07-04T15:00:00+01:00",
    );
    let s = story("article-no-live-entries.txt", &m);
    assert_eq!(s.kind, StoryKind::Article);
    assert_eq!(
        s.title,
        "Bank of England holds interest rates at record low"
    );
    assert_eq!(
        titles(&s),
        vec!["Bank of England holds interest rates at record low"]
    );
    assert_eq!(authors(&s), vec![vec!["Helen Marsh, Economics Editor"]]);
    // The time line in the article is explicit.
    assert_eq!(inferred(&s), vec![false]);
    assert_eq!(s.entries[0].published, utc("2013-07-04T12:15:00+01:00"));
    assert_eq!(s.entries[0].updated, utc("2013-07-04T15:00:00+01:00"));
    assert!(
        s.description
            .starts_with("The Bank of England has kept interest rates at 0.5%")
    );
    assert_eq!(
        html(&s, 0),
        "<figure><figcaption>The Bank of England&#39;s headquarters in Threadneedle Street \
         <small class=\"credit\">Credit: Lewis Whyld/PA Wire</small></figcaption></figure><p>The \
         Bank of England has kept interest rates at 0.5% for the 52nd month in a row, at the \
         first meeting chaired by its new governor, Mark Carney.</p><p>The Monetary Policy \
         Committee also voted to keep its quantitative easing programme unchanged at £375 \
         billion.</p><p>In an unusual step, the Bank issued a statement explaining its \
         decision:</p><blockquote><p>The implied rise in the expected future path of Bank Rate \
         was not warranted by the recent developments in the domestic economy.</p><footer>– \
         <cite>Monetary Policy Committee statement</cite></footer></blockquote><p>Economists \
         said the statement was a clear signal that rates would stay low for longer.</p>"
    );
    // The manifest may say what the report cannot: the same page read as a live page would
    // still give no entry called "Back to top".
    let mut forced = m.clone();
    forced.kind = Some(StoryKind::Article);
    assert_eq!(story("article-no-live-entries.txt", &forced), s);
}

#[test]
fn crlf_line_endings() {
    let bytes = read_bytes("tests/fixtures/crlf-line-endings.txt");
    assert!(
        bytes.windows(2).filter(|w| w == b"\r\n").count() >= 20,
        "fixture lost its CRLF"
    );
    let m = meta(
        "heatwave",
        None,
        "2013-07-13T09:00:00+01:00",
        "2013-07-13T17:00:00+01:00",
    );
    let s = story("crlf-line-endings.txt", &m);
    assert_eq!(
        titles(&s),
        vec![
            "Met Office issues heat health warning",
            "Network Rail imposes speed limits",
            "Hottest day of the year so far",
        ]
    );
    assert_eq!(s.title, "Heatwave: UK records hottest day of the year");
    assert_eq!(
        html(&s, 0),
        "<p>The Met Office has raised its heat health alert to level three for London and the \
         South East.</p><p>People are advised to:</p><ul><li>Stay out of the sun between 11am \
         and 3pm</li><li>Drink plenty of cold water</li></ul><figure><figcaption>Sunbathers \
         crowd the beach at Bournemouth <small class=\"credit\">Credit: Chris Ison/PA \
         Wire</small></figcaption></figure>"
    );
    // Handing the raw CRLF text to `normalise` gives the same story as decoding it first.
    let raw = String::from_utf8(bytes).unwrap();
    assert_eq!(normalise(&raw, &m).unwrap(), s);
    let lf = raw.replace("\r\n", "\n");
    assert_eq!(normalise(&lf, &m).unwrap(), s);
}

#[test]
fn a_page_cut_off_in_the_middle_of_an_entry() {
    let m = meta(
        "glastonbury",
        None,
        "2013-06-26T08:00:00+01:00",
        "2013-06-29T23:30:00+01:00",
    );
    let s = story("cut-off-mid-entry.txt", &m);
    assert_eq!(
        titles(&s),
        vec![
            "Jagger: 'They finally got round to asking us'",
            "Fans arrive at Worthy Farm"
        ]
    );
    assert_eq!(
        html(&s, 1),
        "<p>Queues stretched for more than a mile as the gates opened on Wednesday morning.</p>\
         <p>Organisers said they expected the site to be full by Thurs</p>"
    );
    assert_eq!(inferred(&s), vec![true, true]);
}

#[test]
fn a_numbered_list_is_not_a_byline() {
    let m = meta(
        "queens-speech",
        None,
        "2013-05-08T10:00:00+01:00",
        "2013-05-08T16:00:00+01:00",
    );
    let s = story("numbered-list-not-byline.txt", &m);
    assert_eq!(
        titles(&s),
        vec![
            "The key bills at a glance",
            "Three things to watch",
            "Queen arrives at Westminster"
        ]
    );
    assert_eq!(authors(&s), vec![vec![], vec!["Helen Marsh"], vec![]]);
    assert_eq!(
        html(&s, 0),
        "<p>The main measures announced were:</p><ol><li>Immigration Bill</li><li>Care \
         Bill</li><li>Pensions Bill</li><li>Energy Bill</li></ol><p>Ministers said the programme \
         was focused on the economy.</p>"
    );
    assert_eq!(
        html(&s, 1),
        "<ol><li>Whether landlords will be required to check tenants&#39; immigration \
         status.</li><li>How the cap on care costs will be paid for.</li><li>Whether the energy \
         bill sets a target for cutting carbon from power stations.</li></ol>"
    );
}

#[test]
fn quotations_and_bullet_lists() {
    let m = meta(
        "hs2",
        None,
        "2013-07-17T09:00:00+01:00",
        "2013-07-17T17:00:00+01:00",
    );
    let s = story("quotes-and-lists.txt", &m);
    assert_eq!(
        titles(&s),
        vec![
            "Minister: 'A vital investment in Britain's future'",
            "Campaigners vow to fight the route",
            "Route published in full",
        ]
    );
    // A one-line quotation directly under the headline is a quotation, not a caption.
    assert_eq!(
        html(&s, 0),
        "<blockquote><p>&quot;This is a vital investment in Britain&#39;s future&quot;</p>\
         <footer>– <cite>Transport Secretary Patrick McLoughlin</cite></footer></blockquote>"
    );
    assert_eq!(
        html(&s, 1),
        "<p>Opponents said they would challenge the plans in the courts.</p><p>Their objections \
         include:</p><ul><li>The cost of the project, estimated at £42.6 billion</li><li>The \
         impact on ancient woodland</li><li>Compensation for homes near the line</li></ul>\
         <blockquote><p>This is a vanity project that the country cannot afford. We will fight \
         it every step of the way.</p><footer>– <cite>Stop HS2 campaign</cite></footer>\
         </blockquote>"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile text

fn hostile_meta() -> StoryMeta {
    meta(
        "cyber-attack",
        None,
        "2013-03-20T07:00:00+00:00",
        "2013-03-20T15:00:00+00:00",
    )
}

#[test]
fn hostile_text_is_cleaned_and_escaped() {
    let bytes = read_bytes("tests/fixtures/hostile-text.txt");
    for c in [0x00u8, 0x07, 0x0b, 0x1b, 0x7f] {
        assert!(bytes.contains(&c), "fixture lost control byte {c:#04x}");
    }
    let s = story("hostile-text.txt", &hostile_meta());
    assert_eq!(
        titles(&s),
        vec![
            "Marks & Spencer site briefly taken offline ]]>",
            "Police investigate the attacks",
            "Councils told to review security",
        ]
    );
    // Text stays text: escaped in HTML, plain in titles, summaries and descriptions.
    assert_eq!(
        html(&s, 0),
        "<p>The message left on the page read: &lt;script&gt;alert(&quot;hacked&quot;)\
         &lt;/script&gt; before it was removed.</p><p>Security researchers said the attackers \
         had hidden code after the sequence ]]&gt; in the site&#39;s feed.</p>"
    );
    assert!(
        s.entries[0]
            .summary
            .contains("<script>alert(\"hacked\")</script>")
    );
    assert!(
        s.description
            .contains("\"crude but disruptive\" & under investigation")
    );
    assert_eq!(
        html(&s, 1),
        "<p>Detectives from the national cyber crime unit are leading the inquiry.</p>"
    );
    assert!(html(&s, 2).contains("&lt;img src=x onerror=alert(1)&gt;"));
    for e in &s.entries {
        assert!(!e.content_html.contains("<img"));
        assert!(!e.content_html.contains("]]>"));
    }
    // Control characters handed straight to `normalise` are removed the same way.
    let raw = String::from_utf8(bytes).unwrap();
    assert!(has_control(&raw.replace('\n', "")));
    assert_eq!(normalise(&raw, &hostile_meta()).unwrap(), s);
}

#[test]
fn invalid_utf8_is_an_error_naming_the_line() {
    let text = fixture("hostile-text.txt");
    let mut bytes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        bytes.extend_from_slice(line.as_bytes());
        if i + 1 == 9 {
            bytes.extend_from_slice(b" \xff\xfe broken");
        }
        bytes.push(b'\n');
    }
    let err = decode(&bytes).unwrap_err();
    assert_eq!(err.line(), 9);
    assert!(err.to_string().contains("line 9"), "{err}");
    assert_eq!(decode(b"\xc3(").unwrap_err().line(), 1);
    // A truncated multi-byte character at the end of the file is an error too.
    assert_eq!(decode("Title\n\nCaf\u{e9}".as_bytes()).map(|_| ()), Ok(()));
    assert_eq!(decode(b"Title\n\nCaf\xc3").unwrap_err().line(), 3);
}

#[test]
fn a_report_with_no_text_is_an_error() {
    let m = hostile_meta();
    let err = normalise("\n\nAdvertisement\n\nLoad more updates\n", &m).unwrap_err();
    assert!(err.to_string().contains("line"), "{err}");
    assert!(normalise("", &m).is_err());
}

// ---------------------------------------------------------------------------------------------
// Ids

#[test]
fn ids_are_tag_uris() {
    let s = seed_live();
    assert_eq!(
        s.entries[0].id,
        "tag:www.itv.com,2013-05-10:disputes-over-syria-summit-plan/\
         may-summit-on-syria-is-impossible-says-russian-official"
    );
    assert_eq!(
        s.entries[0].url,
        format!("{ITV_LIVE}#may-summit-on-syria-is-impossible-says-russian-official")
    );
    let a = seed_article();
    assert_eq!(
        a.entries[0].id,
        "tag:www.itv.com,2013-06-16:anglo-russian-differences-over-syria/\
         anglo-russian-differences-over-syria-can-be-overcome"
    );
}

fn ids(s: &Story) -> Vec<(String, String)> {
    s.entries
        .iter()
        .map(|e| (e.title.clone(), e.id.clone()))
        .collect()
}

#[test]
fn ids_survive_a_second_reading() {
    let text = read("data/disputes-over-syria-summit-plan.txt");
    let first = normalise(&text, &seed_live_meta()).unwrap();
    let second = normalise(
        &read("data/disputes-over-syria-summit-plan.txt"),
        &seed_live_meta(),
    )
    .unwrap();
    assert_eq!(ids(&first), ids(&second));
}

#[test]
fn ids_survive_a_new_entry_above_the_newest() {
    let text = read("data/disputes-over-syria-summit-plan.txt");
    let before = normalise(&text, &seed_live_meta()).unwrap();
    let added = text.replacen(
        "Live updates\n\n",
        "Live updates\n\nPutin and Cameron to meet again at G8\n\nThe two leaders will hold \
         further talks at Lough Erne next month, Downing Street said.\n\n",
        1,
    );
    assert_ne!(added, text);
    let mut m = seed_live_meta();
    m.updated = utc("2013-05-11T15:00:00+01:00");
    let after = normalise(&added, &m).unwrap();
    check_invariants("seed with a new entry", &after);
    assert_eq!(after.entries.len(), 6);
    assert_eq!(
        after.entries[0].title,
        "Putin and Cameron to meet again at G8"
    );
    assert_eq!(ids(&after)[1..], ids(&before)[..]);
    assert!(
        !ids(&before)
            .iter()
            .any(|(_, id)| *id == after.entries[0].id)
    );

    // A new entry whose headline repeats an older one gets an id of its own; the older keeps its.
    let repeated = text.replacen(
        "Live updates\n\n",
        "Live updates\n\nDavid Cameron talks Syria with Russian president\n\nThe talks have \
         ended after three hours.\n\n",
        1,
    );
    let after = normalise(&repeated, &m).unwrap();
    check_invariants("seed with a repeated headline", &after);
    assert_eq!(ids(&after)[1..], ids(&before)[..]);
    assert_eq!(
        after.entries[0].id,
        "tag:www.itv.com,2013-05-10:disputes-over-syria-summit-plan/\
         david-cameron-talks-syria-with-russian-president-2"
    );
}

#[test]
fn ids_survive_a_corrected_typo() {
    // The live page: "who could take place in the peace process" should be "take part".
    let text = read("data/disputes-over-syria-summit-plan.txt");
    let fixed = text.replacen("who could take place in", "who could take part in", 1);
    assert_ne!(fixed, text);
    let before = normalise(&text, &seed_live_meta()).unwrap();
    let after = normalise(&fixed, &seed_live_meta()).unwrap();
    assert_eq!(ids(&before), ids(&after));
    assert_ne!(
        before.entries[0].content_html,
        after.entries[0].content_html
    );
    assert!(after.entries[0].content_html.contains("take part in"));
    // A typo in the very first words of every body, corrected: no id moves.
    let mut typos = text.clone();
    for (right, wrong) in [
        ("A Russian official has said", "A Russain official has said"),
        (
            "David Cameron has made a statement",
            "Daivd Cameron has made a statement",
        ),
        (
            "David Cameron meets the Russian",
            "David Camreon meets the Russian",
        ),
        (
            "The UK Government's arguments",
            "The UK Govermnent's arguments",
        ),
        (
            "Prime Minister David Cameron visits",
            "Prime Minster David Cameron visits",
        ),
    ] {
        assert!(typos.contains(right), "{right}");
        typos = typos.replacen(right, wrong, 1);
    }
    let with_typos = normalise(&typos, &seed_live_meta()).unwrap();
    assert_eq!(ids(&with_typos), ids(&before));
    assert!(
        with_typos
            .entries
            .iter()
            .zip(&before.entries)
            .all(|(a, b)| a.content_html != b.content_html)
    );

    // The article: "a difficult start to the the G8 summit".
    let text = read("data/anglo-russian-differences-over-syria.txt");
    let fixed = text.replacen("to the the G8", "to the G8", 1);
    assert_ne!(fixed, text);
    let before = normalise(&text, &seed_article_meta()).unwrap();
    let after = normalise(&fixed, &seed_article_meta()).unwrap();
    assert_eq!(before.entries[0].id, after.entries[0].id);
    assert_ne!(
        before.entries[0].content_html,
        after.entries[0].content_html
    );
}

#[test]
fn ids_survive_another_base_url() {
    for url in [Some(ITV_LIVE), None] {
        let text = read("data/disputes-over-syria-summit-plan.txt");
        let mut here = seed_live_meta();
        here.url = url.map(str::to_string);
        let mut there = here.clone();
        here.fallback_url = "http://localhost:8080/stories/disputes-over-syria-summit-plan".into();
        there.fallback_url = "https://feeds.example.net/livefeed/stories/x".into();
        let a = normalise(&text, &here).unwrap();
        let b = normalise(&text, &there).unwrap();
        assert_eq!(ids(&a), ids(&b));
        assert!(a.entries.iter().all(|e| e.id.starts_with("tag:")));
        if url.is_none() {
            // Links follow the base; ids do not.
            assert_ne!(a.entries[0].url, b.entries[0].url);
            assert!(
                a.entries[0]
                    .id
                    .starts_with("tag:livefeed.invalid,2013-05-10:")
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Other publishers and templates (issue 14)

/// Page furniture other templates carry: none of it may become a title or body text.
const FURNITURE: &[&str] = &[
    "Live Reporting",
    "All times stated are UK",
    "Get involved",
    "TV Licence",
    "Find out more",
    "Edited by",
    "Summary",
    "Key events",
    "Show key events only",
    "JavaScript",
    "Updated at",
    "First published",
    "Sort by",
    "Latest first",
    "Oldest first",
    "Auto update",
    "updates",
    "Share",
    "close panel",
    "View more on twitter",
    "Video content",
    "Media content",
    "currently not available",
    "twitter post",
    "READ MORE",
    "Read: ",
    "Click here",
    "We use cookies",
    "pageType",
    "Live news stream",
    "Live scores",
    "Line-ups",
    "Wednesday, 25 March",
    "#bbcfootball",
    "published at",
    "View all",
    "Latest ITV News reports",
];

fn other_meta(slug: &str) -> StoryMeta {
    meta(
        slug,
        None,
        "2025-03-25T08:00:00+00:00",
        "2025-03-25T18:00:00+00:00",
    )
}

/// A fixture read as `livefeed items FILE` reads it: no manifest, no kind.
fn other(name: &str) -> Story {
    let s = story(name, &other_meta(name.trim_end_matches(".txt")));
    assert_eq!(s.kind, StoryKind::Live, "{name}");
    for e in &s.entries {
        for f in FURNITURE {
            assert!(!e.title.contains(f), "{name}: {f:?} in title {:?}", e.title);
            assert!(
                !e.content_html.contains(f),
                "{name}: {f:?} in the body of {:?}",
                e.title
            );
        }
    }
    s
}

fn derived(s: &Story) -> Vec<bool> {
    s.entries.iter().map(|e| e.title_derived).collect()
}

fn times_of_day(s: &Story) -> Vec<String> {
    s.entries
        .iter()
        .map(|e| e.published.format("%H:%M").to_string())
        .collect()
}

#[test]
fn bbc_live_numbered_entries_under_a_licence_banner() {
    let s = other("bbc-live-numbered.txt");
    assert_eq!(
        s.title,
        "Storm Ellen: Trains cancelled as gales sweep the south west"
    );
    assert_eq!(
        titles(&s),
        vec![
            "Our live coverage is ending",
            "Power restored to most homes",
            "Coastguard warns people to stay away from the seafront",
            "Your pictures of the storm",
            "Trains cancelled across the region",
        ]
    );
    assert_eq!(authors(&s), vec![Vec::<&str>::new(); 5]);
    assert_eq!(derived(&s), vec![false; 5]);
    // `3. 1405: …`: the stamp is the entry's time, not part of its title.
    assert!(!s.entries[2].time_inferred);
    assert_eq!(s.entries[2].published, utc("2025-03-25T14:05:00+01:00"));
    // The first body line under the heading is the image's alt text: a figure.
    assert!(html(&s, 0).starts_with(
        "<figure><figcaption>A fallen tree on a road in Cornwall</figcaption></figure>\
         <p>That&#39;s where we leave"
    ));
    assert_eq!(count(html(&s, 0), "<li>"), 3);
    // Alt text then `Image caption: …`: one figure, with the caption.
    assert_eq!(
        html(&s, 3),
        "<figure><figcaption>Waves break over the harbour wall in Porthleven</figcaption>\
         </figure><p>Waves have been crashing over the harbour wall at Porthleven since high \
         tide.</p><p>You can send us your pictures by email.</p>"
    );
}

#[test]
fn bbc_live_post_updates_with_bylines_and_roles() {
    let s = other("bbc-live-post-update.txt");
    assert_eq!(s.title, "Budget 2025: Chancellor sets out tax plans");
    assert_eq!(
        titles(&s),
        vec![
            "The mood among backbenchers this afternoon is one of relief rather than celebration",
            "What the Budget means for your pay",
            "Opposition leader: \"This Budget breaks promises\"",
            "The chancellor has sat down after speaking for 72 minutes",
            "Income tax thresholds frozen until 2030",
        ]
    );
    assert_eq!(derived(&s), vec![true, false, false, true, false]);
    assert_eq!(
        authors(&s),
        vec![
            vec!["Nick Lawson, Political correspondent"],
            vec!["Alice Moreno, Business reporter"],
            vec![],
            vec![],
            vec![],
        ]
    );
    assert_eq!(
        times_of_day(&s),
        vec!["15:42", "15:20", "14:58", "14:31", "14:05"]
    );
    // The summary's points are not an entry; the role line is not body text.
    assert!(!html(&s, 0).contains("correspondent"));
    assert_eq!(
        html(&s, 1),
        "<figure><figcaption>Shoppers on Oxford Street in London <small class=\"credit\">\
         Image source: Getty Images</small></figcaption></figure><p>If you earn £30,000 a \
         year, you will pay about £250 more in income tax by 2030 than if thresholds had risen \
         with inflation.</p><p>That is because more of your pay will be taxed as wages rise.</p>"
    );
    // A tweet saved without its author's name is body text.
    assert_eq!(count(html(&s, 2), "<p>"), 3);
    assert!(html(&s, 3).ends_with(
        "<figure><figcaption>The chancellor: &quot;We have made the right choices for the \
         country&quot;</figcaption></figure>"
    ));
    // The footer's links (`More on this story`, `Top Stories`) are not entries or body.
    assert_eq!(
        html(&s, 4),
        "<p>The chancellor confirms that the personal allowance will stay at £12,570 until \
         April 2030.</p>"
    );
}

#[test]
fn bbc_sport_as_it_happened_with_a_page_byline() {
    let s = other("bbc-sport-as-it-happened.txt");
    assert_eq!(
        titles(&s),
        vec![
            "Full-time: Northfield 2-1 Easton Rovers",
            "GOAL - Northfield 2-1 Easton Rovers",
            "Rovers level",
            "Half-time: Northfield 1-0 Easton Rovers",
            "GOAL - Northfield 1-0 Easton Rovers",
            "Kick-off",
        ]
    );
    // `By Owen Taylor` reports the whole page: no entry is his alone.
    assert_eq!(authors(&s), vec![Vec::<&str>::new(); 6]);
    assert_eq!(
        times_of_day(&s),
        vec!["16:02", "15:51", "15:20", "14:47", "14:12", "14:00"]
    );
    assert!(s.entries.iter().all(|e| count(&e.content_html, "<p>") == 1));
}

#[test]
fn guardian_live_blog_with_key_events_and_untitled_blocks() {
    let s = other("guardian-live-blog.txt");
    assert_eq!(
        titles(&s),
        vec![
            "Here is the afternoon summary of the day's main political news",
            "Tories call for inquiry into planning reforms",
            "Housing secretary insists target can be met",
            "Building starts fall for third quarter in a row",
        ]
    );
    assert_eq!(derived(&s), vec![true, false, false, false]);
    assert_eq!(authors(&s), vec![Vec::<&str>::new(); 4]);
    // `14.22 GMT`: explicit, in its own zone.
    assert_eq!(times_of_day(&s), vec!["14:22", "13:40", "12:15", "10:05"]);
    assert!(
        s.description
            .starts_with("Housing secretary says 1.5m homes target")
    );
    assert!(!s.description.contains("Mark Fenwick"));
    assert!(html(&s, 1).ends_with(
        "<figure><figcaption>Protesters outside parliament this morning. <small \
         class=\"credit\">Photograph: Jordan Ellis/PA</small></figcaption></figure>"
    ));
    assert_eq!(count(html(&s, 2), "<p>"), 3);
}

#[test]
fn local_breaking_news_blog_with_no_blank_lines() {
    let s = other("local-breaking-news.txt");
    assert_eq!(
        s.title,
        "Stockport breaking news: Road closed after crash on the A6 - live updates"
    );
    assert_eq!(
        s.description,
        "Police have closed a stretch of the A6 in Hazel Grove after a collision this morning. \
         Drivers are being told to avoid the area."
    );
    assert_eq!(
        titles(&s),
        vec![
            "Road expected to stay shut until mid-afternoon",
            "Buses diverted",
            "One person taken to hospital",
            "Police at the scene of the crash",
        ]
    );
    // `By A, B and C` under the title is the story's byline, not each entry's.
    assert_eq!(authors(&s), vec![Vec::<&str>::new(); 4]);
    assert_eq!(times_of_day(&s), vec!["10:20", "09:55", "09:31", "08:48"]);
    // A sentence the page broke over two lines is one paragraph.
    assert_eq!(
        html(&s, 1),
        "<p>Stagecoach says services 192 and 199 are being diverted via Bramhall Moor Lane.</p>\
         <p>Delays of up to 30 minutes are expected.</p>"
    );
    assert_eq!(
        html(&s, 0),
        "<p>Greater Manchester Police say the road is likely to remain closed until at least \
         3pm while collision investigators work at the scene.</p>"
    );
}

#[test]
fn itv_single_update_page() {
    let s = other("itv-single-update.txt");
    assert_eq!(
        s.title,
        "Flooding: Severe warnings in place along the River Severn"
    );
    assert_eq!(titles(&s), vec!["Barriers go up in Bewdley"]);
    // `ITV News Central` in the byline slot is the newsroom, not a second author.
    assert_eq!(authors(&s), vec![vec!["Sarah Whitcombe"]]);
    assert!(!s.entries[0].time_inferred);
    assert_eq!(times_of_day(&s), vec!["11:54"]);
    assert!(html(&s, 0).starts_with("<p>Environment Agency teams"));
    assert_eq!(count(html(&s, 0), "<figure>"), 1);
}

#[test]
fn itv_home_page_stream_without_a_story_title() {
    let s = other("itv-home-stream.txt");
    assert_eq!(
        titles(&s),
        vec![
            "Ambulance workers to strike again next month",
            "WATCH: Firefighters rescue horse stuck in a ditch",
            "Bank of England expected to hold interest rates",
            "LIVE: Prime Minister faces MPs at Question Time",
            "Special Report: Inside the hospital running out of beds",
        ]
    );
    assert_eq!(
        authors(&s),
        vec![
            vec!["Daniel Hewitt"],
            vec![],
            vec![],
            vec!["Tom Ashby"],
            vec!["Emma Carlton, Health editor"],
        ]
    );
    assert_eq!(s.title, "Ambulance workers to strike again next month");
    assert!(html(&s, 0).starts_with("<p>Unions say"));
    assert!(!html(&s, 2).contains("National"));
}

#[test]
fn an_oldest_first_page_is_read_newest_first() {
    let s = other("oldest-first.txt");
    assert_eq!(
        titles(&s),
        vec![
            "Winner crosses the line",
            "Leader passes halfway",
            "The race is under way",
            "Runners gather at the start line on the Promenade, where the temperature is \
             already 14C",
        ]
    );
    assert_eq!(derived(&s), vec![false, false, false, true]);
    assert_eq!(times_of_day(&s), vec!["10:05", "09:12", "08:00", "07:40"]);
    assert_eq!(inferred(&s), vec![false; 4]);
}

#[test]
fn time_stamps_that_open_untitled_entries() {
    let s = other("timestamp-led-entries.txt");
    assert_eq!(
        titles(&s),
        vec![
            "Turnout in Ashworth West was 61%, the highest in the county",
            "The recount in Millbrook has been completed and the candidates are being briefed",
            "Labour have held Eastgate with a majority of 412",
            "Counting staff at the leisure centre have been at work since the morning",
            "Ballot boxes arrive",
        ]
    );
    assert_eq!(derived(&s), vec![true, true, true, true, false]);
    assert_eq!(inferred(&s), vec![false; 5]);
    // The stamp is the time, not text; the whole paragraph is the body.
    assert_eq!(
        html(&s, 0),
        "<p>Turnout in Ashworth West was 61%, the highest in the county. The result is expected \
         within the hour.</p>"
    );
    // Stamps inside a paragraph (a diary of the day) are body text.
    assert!(html(&s, 3).ends_with(
        "<p>10am: ballot boxes checked, 3.30pm: tables set out, 10pm: polls closed, 11.15pm: \
         first boxes arrive.</p>"
    ));
}

#[test]
fn captions_credits_and_embed_placeholders() {
    let s = other("captions-and-embeds.txt");
    assert_eq!(
        titles(&s),
        vec![
            "Champion arrives at the stadium",
            "Challenger's message to the crowd",
            "Weigh-in results",
        ]
    );
    // A caption the page doubled, and a credit in brackets.
    assert_eq!(
        html(&s, 0),
        "<figure><figcaption>Tyson Fury</figcaption></figure><p>The champion arrived at the \
         stadium just after 8pm, waving to fans from the team bus.</p><figure><figcaption>Fans \
         outside the stadium before the fight <small class=\"credit\">Getty</small>\
         </figcaption></figure><p>Thousands of fans have been queuing at the turnstiles since \
         the early evening.</p>"
    );
    // Embed placeholders go; the tweet's text, saved without a name, stays as body.
    assert!(html(&s, 1).contains("<p>Let&#39;s go Wembley. Tonight is the night.</p>"));
    // An empty caption; a credit alone on the line under its caption; `Label: value` lines.
    assert_eq!(
        html(&s, 2),
        "<figure><figcaption><small class=\"credit\">Credit: PA Images</small></figcaption>\
         </figure><p>Both fighters made the weight at yesterday&#39;s weigh-in.</p><figure>\
         <figcaption>The challenger on the scales at the weigh-in <small class=\"credit\">\
         Photograph: Hollie Adams/Reuters</small></figcaption></figure><ul><li>Champion: 18st \
         2lb</li><li>Challenger: 16st 9lb</li></ul>"
    );
}

#[test]
fn furniture_links_and_headline_prefixes() {
    let s = other("furniture-and-links.txt");
    assert_eq!(s.title, "Strikes: Train drivers walk out in pay dispute");
    // A standfirst of two paragraphs, without the page's byline or its update time.
    assert_eq!(
        s.description,
        "Train drivers at 14 rail companies are on strike today in a long-running dispute over \
         pay. The union says the offer on the table is \"nowhere near\" what its members need."
    );
    assert_eq!(
        titles(&s),
        vec![
            "WATCH: Passengers stranded at Leeds station",
            "Union leader: 'We have been left with no choice'",
            "Which operators are affected",
        ]
    );
    assert_eq!(authors(&s), vec![Vec::<&str>::new(); 3]);
    // An inline `Read more:` stays in its paragraph; a `Watch:` link line goes.
    assert!(html(&s, 0).ends_with(
        "<p>One commuter said: &quot;It&#39;s chaos. Read more: nobody told us \
         anything.&quot;</p>"
    ));
    assert_eq!(
        html(&s, 1),
        "<p>The union&#39;s general secretary said members &quot;did not take this decision \
         lightly&quot;.</p>"
    );
    // Flush-left bullets and a `Label: value` block are lists.
    assert_eq!(
        html(&s, 2),
        "<p>The operators with strikes today:</p><ul><li>Avanti West Coast</li><li>CrossCountry\
         </li><li>LNER</li><li>Northern</li><li>Services running: 40%</li><li>Services \
         cancelled: 60%</li></ul>"
    );
}

#[test]
fn a_live_label_above_the_title_day_rules_and_a_cut_off_heading() {
    let s = other("bbc-live-label-cut-off.txt");
    // `Live` above the title is a label: `Live Reporting` below the summary is the header.
    assert_eq!(
        s.title,
        "Ferry strike: Crossings cancelled for a second day"
    );
    assert_eq!(
        titles(&s),
        vec![
            "Talks to resume on Monday",
            "Islanders say they have been left without deliveries of fresh food since Tuesday",
            "Picket lines at the harbour",
        ]
    );
    assert_eq!(derived(&s), vec![false, true, false]);
    assert_eq!(
        authors(&s),
        vec![vec!["Callum Reid, Scotland reporter"], vec![], vec![]]
    );
    // `09:12 26 March`: a time with its day; `17:55` the evening before.
    assert_eq!(inferred(&s), vec![false; 3]);
    assert_eq!(
        published(&s)[2],
        published(&s)[1] - chrono::Duration::minutes(14 * 60 + 45)
    );
    assert_eq!(
        html(&s, 0),
        "<p>Both sides have agreed to meet again on Monday, the union has confirmed.</p>"
    );
    // The page stops under the last heading: that entry is not there yet.
    assert!(!titles(&s).contains(&"Ferry operator issues new timetable"));
}

#[test]
fn guardian_key_events_list_without_its_end_line() {
    let s = other("guardian-key-event-labels.txt");
    // The key events list repeats the headlines of entries below: it is not entries.
    assert_eq!(
        titles(&s),
        vec![
            "Housing secretary insists target can be met",
            "Building starts fall for third quarter in a row",
        ]
    );
    assert_eq!(times_of_day(&s), vec!["12:15", "10:05"]);
    assert!(
        s.entries
            .iter()
            .all(|e| !e.content_html.contains("Key event"))
    );
    assert!(
        s.entries
            .iter()
            .all(|e| !e.content_html.contains("<figure>"))
    );
}

#[test]
fn bbc_live_headlines_over_times_said_twice() {
    let s = other("bbc-live-headline-then-time.txt");
    assert_eq!(
        titles(&s),
        vec![
            "Talks to resume on Monday",
            "Islanders say they have been left without deliveries of fresh food since Tuesday",
            "Watch: Empty ferry terminal at Oban",
            "Ferry operator apologises",
        ]
    );
    assert_eq!(derived(&s), vec![false, true, false, false]);
    assert_eq!(
        authors(&s),
        vec![
            vec!["Callum Reid, Scotland reporter"],
            vec![],
            vec![],
            vec![]
        ]
    );
    // `published at 09:12 26 March` over `09:12 26 March`: one time, not two entries.
    assert_eq!(times_of_day(&s), vec!["08:12", "07:40", "07:15", "06:50"]);
    assert_eq!(inferred(&s), vec![false; 4]);
    // A video post: its caption line is its body.
    assert_eq!(
        html(&s, 2),
        "<figure><figcaption>The ferry terminal at Oban has been quiet all morning</figcaption>\
         </figure>"
    );
}

#[test]
fn numbered_entries_saved_flush_left_without_blank_lines() {
    let s = other("numbered-entries-flush-left.txt");
    assert_eq!(
        titles(&s),
        vec![
            "Council approves new cycle lanes",
            "Residents speak at the meeting",
            "The meeting has started, about 40 minutes late",
            "What is being proposed",
        ]
    );
    assert_eq!(derived(&s), vec![false, false, true, false]);
    // `By A and B` above the first entry is the page's byline.
    assert_eq!(authors(&s), vec![Vec::<&str>::new(); 4]);
    assert_eq!(inferred(&s), vec![true, false, false, true]);
    assert_eq!(times_of_day(&s)[1..3], ["16:45", "16:10"]);
    // A numbered list inside an entry stays a list.
    assert_eq!(
        html(&s, 3),
        "<p>The plans include:</p><ol><li>A protected lane on Station Road</li><li>A 20mph \
         limit around three schools</li></ol>"
    );
}

#[test]
fn a_live_label_over_the_title_with_no_header() {
    let s = other("live-label-above-title.txt");
    assert_eq!(s.title, "Storm Darragh: Thousands without power");
    assert_eq!(
        s.description,
        "Engineers are working to reconnect homes across Wales and the west of England."
    );
    assert_eq!(
        titles(&s),
        vec!["Power restored in Swansea", "Roads closed by fallen trees"]
    );
    assert_eq!(inferred(&s), vec![false; 2]);
}

#[test]
fn relative_times_open_entries_on_a_markets_blog() {
    let s = other("relative-times-market-blog.txt");
    assert_eq!(
        titles(&s),
        vec![
            "Pound slips after inflation data",
            // Shortened at a word boundary, without the comma it was cut on.
            "Traders now expect two more rate cuts this year, according to pricing in swaps \
             markets…",
            "UK inflation falls to 2.3% in April",
        ]
    );
    assert_eq!(derived(&s), vec![false, true, false]);
    // `2 min ago` gives no time: the times are inferred.
    assert_eq!(inferred(&s), vec![true; 3]);
    assert_eq!(
        html(&s, 0),
        "<p>Sterling fell 0.4 per cent against the dollar in the minutes after the release.</p>"
    );
}

#[test]
fn bbc_sport_posts_with_a_reporter_at_the_ground() {
    let s = other("bbc-sport-post-update.txt");
    assert_eq!(s.title, "Premier League: Northfield v Easton Rovers");
    assert_eq!(
        titles(&s),
        vec![
            "Full-time: Northfield 2-1 Easton Rovers",
            "The noise here is deafening as the board goes up for five added minutes",
            "Goal! Northfield 2-1 Easton Rovers",
        ]
    );
    assert_eq!(derived(&s), vec![false, true, false]);
    // `Emma Sanders` over `BBC Sport at Northfield Park`: the reporter, not a caption.
    assert_eq!(authors(&s), vec![vec![], vec!["Emma Sanders"], vec![]]);
    assert_eq!(
        html(&s, 1),
        "<p>The noise here is deafening as the board goes up for five added minutes.</p>"
    );
    assert_eq!(
        html(&s, 2),
        "<figure><figcaption>Ojo celebrates his second <small class=\"credit\">Image source: \
         Getty Images</small></figcaption></figure><p>Sam Ojo heads in from a corner.</p>"
    );
    assert_eq!(times_of_day(&s), vec!["18:24", "18:20", "17:58"]);
}

#[test]
fn derived_titles_are_marked_in_items_and_json_feed() {
    let path = format!(
        "{}/tests/fixtures/timestamp-led-entries.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    // `livefeed items FILE`: one JSON line per item, with `title_derived`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_livefeed"))
        .args(["items", &path])
        .output()
        .unwrap();
    assert!(out.status.success());
    let items: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let flags: Vec<bool> = items
        .iter()
        .map(|i| i["title_derived"].as_bool().unwrap())
        .collect();
    assert_eq!(flags, vec![true, true, true, true, false]);
    // JSON Feed: a `_livefeed` extension says so, and only where it is true.
    let site =
        livefeed::ingest::site::Site::from_files(&[path.into()], "http://127.0.0.1:8080").unwrap();
    let feed = livefeed::render::story_feed(&site, &site.stories[0]);
    let json: serde_json::Value = serde_json::from_slice(&livefeed::render::render_feed(
        &feed,
        livefeed::render::Format::Json,
    ))
    .unwrap();
    let items = json["items"].as_array().unwrap();
    assert_eq!(items[0]["_livefeed"]["title_derived"], true);
    assert!(items[4]["_livefeed"].get("title_derived").is_none());
}

#[test]
fn entries_logged_before_title_derived_existed_still_load() {
    let s = other("timestamp-led-entries.txt");
    let mut logged = serde_json::to_value(&s.entries[4]).unwrap();
    // Entries with a headline are written as before: no new field.
    assert!(logged.get("title_derived").is_none());
    logged.as_object_mut().unwrap().remove("title_derived");
    let back: livefeed::model::Entry = serde_json::from_value(logged).unwrap();
    assert!(!back.title_derived);
    let derived = serde_json::to_value(&s.entries[0]).unwrap();
    assert_eq!(derived["title_derived"], true);
    let back: livefeed::model::Entry = serde_json::from_value(derived).unwrap();
    assert!(back.title_derived);
}

// ---------------------------------------------------------------------------------------------
// Times and determinism

const FIXTURES: &[&str] = &[
    "bbc-live-numbered.txt",
    "bbc-live-post-update.txt",
    "bbc-sport-as-it-happened.txt",
    "guardian-live-blog.txt",
    "local-breaking-news.txt",
    "itv-single-update.txt",
    "itv-home-stream.txt",
    "oldest-first.txt",
    "timestamp-led-entries.txt",
    "captions-and-embeds.txt",
    "furniture-and-links.txt",
    "bbc-live-label-cut-off.txt",
    "guardian-key-event-labels.txt",
    "bbc-live-headline-then-time.txt",
    "numbered-entries-flush-left.txt",
    "live-label-above-title.txt",
    "relative-times-market-blog.txt",
    "bbc-sport-post-update.txt",
    "captions-in-a-row.txt",
    "africa-correspondent-bylines.txt",
    "tweet-only-entry.txt",
    "times-above-headline.txt",
    "times-below-headline.txt",
    "advertisement-and-load-more.txt",
    "latest-reports-header.txt",
    "article-no-live-entries.txt",
    "crlf-line-endings.txt",
    "cut-off-mid-entry.txt",
    "numbered-list-not-byline.txt",
    "quotes-and-lists.txt",
    "hostile-text.txt",
    "us-results-live-page.txt",
    "guardian-block-bylines.txt",
    "local-oldest-first-dated-times.txt",
    "itv-regional-live-page.txt",
    "markets-live-with-tickers.txt",
    "bbc-local-live-places.txt",
    "bbc-live-lead-image.txt",
    "bbc-sport-menu-and-pundits.txt",
    "itv-standfirst-under-marker.txt",
    "local-key-updates-and-entry-bylines.txt",
    "us-live-updates-from-bylines.txt",
    "wire-markets-live-dash-headlines.txt",
    "sky-politics-latest-seconds.txt",
    "guardian-contributor-under-time.txt",
];

#[test]
fn every_fixture_is_listed() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    found.sort();
    let mut listed: Vec<&str> = FIXTURES.to_vec();
    listed.sort();
    assert_eq!(found, listed);
}

#[test]
fn normalising_is_deterministic() {
    let m = meta(
        "any",
        Some("https://www.itv.com/news/x/"),
        "2013-05-10T08:00:00+01:00",
        "2013-05-10T20:00:00+01:00",
    );
    for name in FIXTURES {
        let a = normalise(&fixture(name), &m).unwrap();
        let b = normalise(&fixture(name), &m).unwrap();
        assert_eq!(a, b, "{name}");
        check_invariants(name, &a);
    }
    assert_eq!(seed_live(), seed_live());
    assert_eq!(seed_article(), seed_article());
}

#[test]
fn no_two_items_share_a_time_even_when_the_story_has_one() {
    // Publication and last update at the same instant: inference must still spread them.
    let t = "2013-05-10T12:00:00+01:00";
    let mut m = seed_live_meta();
    m.published = utc(t);
    m.updated = utc(t);
    let s = normalise(&read("data/disputes-over-syria-summit-plan.txt"), &m).unwrap();
    check_invariants("seed at one instant", &s);
    assert_eq!(s.entries[4].published, utc(t));
    assert_eq!(s.entries[0].published, utc("2013-05-10T12:00:04+01:00"));
}

#[test]
fn inferred_times_lie_between_publication_and_last_update() {
    let m = seed_live_meta();
    let s = seed_live();
    for e in &s.entries {
        assert!(
            e.published >= m.published && e.published <= m.updated,
            "{}",
            e.title
        );
        assert_eq!(e.updated, e.published, "{}", e.title);
    }
    assert_eq!(s.published, m.published);
    assert_eq!(s.updated, m.updated);
}

#[test]
fn us_results_page_with_navigation_over_a_live_label_and_reporters_over_times() {
    let s = other("us-results-live-page.txt");
    // `LIVE` over the title: the site's sections above it are navigation, not the title.
    assert_eq!(s.title, "Live updates: Midterm election results 2026");
    // `Updated 4:18 a.m. ET Nov. 4, 2026` under the title is furniture, not an entry's time;
    // the summary and its points are the standfirst.
    assert!(
        s.description
            .starts_with("Control of the House remains undecided"),
        "{}",
        s.description
    );
    assert_eq!(
        titles(&s),
        vec![
            "Control of the House is still too close to call",
            "Arizona's Senate race is headed for a long count",
            "Incumbent Democrat holds Virginia's 7th District",
            "Results in key races",
        ]
    );
    // A name (and `Reporting from …`) over the entry's time line is its byline.
    assert_eq!(
        authors(&s),
        vec![
            vec!["Sam Whitfield, Reporting from Washington"],
            vec!["Maria Delgado, Reporting from Phoenix"],
            vec![],
            vec!["Jonah Prescott"],
        ]
    );
    assert_eq!(times_of_day(&s), vec!["03:10", "02:42", "01:55", "00:30"]);
    // `See more updates` and `Related coverage` end the stream.
    assert_eq!(
        html(&s, 3),
        "<ul><li>Pennsylvania Senate: Too close to call</li><li>Georgia governor: Republican \
         win</li><li>Michigan 8th District: Democratic win</li></ul>"
    );
}

#[test]
fn guardian_blocks_with_the_reporter_over_each_time() {
    let s = other("guardian-block-bylines.txt");
    assert_eq!(
        titles(&s),
        vec![
            "Evening summary",
            "A No 10 spokesperson said the prime minister was \"confident\" the bill would pass, \
             and…",
            "Badenoch says Tories will oppose the bill",
            "Minister hints at concessions",
            "Good morning",
        ]
    );
    assert_eq!(derived(&s), vec![false, true, false, false, true]);
    // `Kiran Stacey` over `17.12 BST`: the byline of the block the time opens, not a headline.
    assert_eq!(
        authors(&s),
        vec![
            vec![],
            vec!["Kiran Stacey"],
            vec!["Pippa Crerar"],
            vec!["Kiran Stacey"],
            vec!["Kiran Stacey"],
        ]
    );
    assert_eq!(
        times_of_day(&s),
        vec!["16:45", "16:12", "12:40", "10:25", "07:02"]
    );
    assert!(html(&s, 2).contains("<small class=\"credit\">Photograph: Jonathan Brady/PA</small>"));
}

#[test]
fn oldest_first_local_blog_with_day_names_after_its_times() {
    let s = other("local-oldest-first-dated-times.txt");
    // `08:12 Tuesday 14 April`: a time (the day's name and date after it), not a headline.
    assert_eq!(
        titles(&s),
        vec![
            "Road reopens",
            "Air ambulance at the scene",
            "Diversions in place",
            "Road closed both ways",
        ]
    );
    // `By Chris Penhale` over `Senior Reporter`: the page's byline, neither an entry nor a title.
    assert_eq!(authors(&s), vec![Vec::<&str>::new(); 4]);
    assert_eq!(times_of_day(&s), vec!["08:40", "07:55", "07:31", "07:12"]);
    assert_eq!(
        html(&s, 0),
        "<p>The A30 has now reopened, National Highways said.</p>"
    );
}

#[test]
fn itv_regional_page_under_a_region_menu() {
    let s = other("itv-regional-live-page.txt");
    // The regions' menu (with its `Latest` tab) above `Live` is navigation.
    assert_eq!(
        s.title,
        "Flooding across the north west: Roads closed and homes evacuated"
    );
    assert!(s.description.starts_with("Heavy rain has caused flooding"));
    assert_eq!(
        titles(&s),
        vec![
            "Rest centre opens in Carlisle",
            "WATCH: Footage shows cars submerged in Keswick",
            "The Environment Agency has issued 23 flood warnings in the region, meaning flooding \
             is…",
            "Rail services suspended between Lancaster and Carlisle",
        ]
    );
    // `by Aisha Malik, ITV Granada`: a regional newsroom is no role.
    assert_eq!(
        authors(&s),
        vec![vec![], vec![], vec![], vec!["Aisha Malik"]]
    );
    // `More from ITV News` ends the page: its links are not the last entry's body.
    assert_eq!(
        html(&s, 3),
        "<p>Network Rail said the line was under water near Oxenholme and would stay closed for \
         the rest of the day.</p>"
    );
}

#[test]
fn markets_blog_with_a_ticker_strip_and_a_headline_over_its_live_label() {
    let s = other("markets-live-with-tickers.txt");
    // The title over `Live`: the site's menu above it is navigation.
    assert_eq!(
        s.title,
        "FTSE 100 slips as miners drag, pound steady ahead of Bank decision"
    );
    // `FTSE 100` over `8,214.31` over `-0.42%`: a ticker, not an entry.
    assert_eq!(
        titles(&s),
        vec![
            "Housebuilders lift the mid-caps",
            "FTSE 100 opens lower",
            "Retail sales beat forecasts",
            "Sterling was little changed at $1.267 ahead of Thursday's interest rate decision, \
             with…",
            "Good morning",
        ]
    );
    // `By Harriet Colman and Dev Anand` above the first entry: the page's reporters.
    assert_eq!(authors(&s), vec![Vec::<&str>::new(); 5]);
    assert_eq!(
        times_of_day(&s),
        vec!["10:52", "10:32", "09:58", "09:15", "08:40"]
    );
    for e in &s.entries {
        for figure in ["8,214.31", "-0.42%", "1.2671", "Copy link"] {
            assert!(!e.content_html.contains(figure), "{figure} in {}", e.title);
        }
    }
}

#[test]
fn bbc_local_live_posts_with_a_place_under_the_time() {
    let s = other("bbc-local-live-places.txt");
    // `Posted at 9:48` over `Dover`: the place is the post's dateline, not its headline.
    assert_eq!(
        titles(&s),
        vec![
            "Queues building at the port",
            "A woman has been taken to hospital after a car crashed into a shop front on St \
             Peter's…",
            "Bus station to close for repairs",
            "Weather: Bright with showers",
            "Good morning",
        ]
    );
    assert_eq!(derived(&s), vec![false, true, false, false, false]);
    assert_eq!(authors(&s), vec![Vec::<&str>::new(); 5]);
    assert_eq!(
        times_of_day(&s),
        vec!["08:48", "08:31", "08:05", "07:50", "07:30"]
    );
    // A paragraph of two sentences over `Image source`: body, not the image's alt text.
    assert_eq!(
        html(&s, 2),
        "<p>The town&#39;s bus station will close for three weeks from Monday while the roof is \
         repaired. Arriva says stops will move to nearby streets.</p><figure><figcaption>The bus \
         station opened in 1976 <small class=\"credit\">Image source: Getty \
         Images</small></figcaption></figure>"
    );
}

#[test]
fn bbc_live_with_a_lead_image_under_the_header() {
    let s = other("bbc-live-lead-image.txt");
    assert_eq!(
        s.title,
        "Storm Eowyn: Red warning as 100mph gusts hit Scotland and Northern Ireland"
    );
    // The hero image under `Live Reporting`, above the first post: no entry.
    assert_eq!(
        titles(&s),
        vec![
            "Engineers face 'days of work' to restore power",
            "The Met Office says the strongest gust so far has been 100mph, recorded at Drumalbin \
             in…",
            "'The roof just lifted off'",
            "Watch: Waves crash over harbour wall in Portpatrick",
            "Schools closed across central belt",
        ]
    );
    assert_eq!(derived(&s), vec![false, true, false, false, false]);
    assert_eq!(
        authors(&s),
        vec![
            vec!["Kevin Keane, BBC Scotland environment correspondent"],
            vec![],
            vec![],
            vec![],
            vec![],
        ]
    );
    assert_eq!(
        times_of_day(&s),
        vec!["10:42", "10:30", "10:12", "09:58", "09:41"]
    );
    for e in &s.entries {
        assert!(!e.content_html.contains("fallen tree"), "{}", e.title);
    }
}

#[test]
fn bbc_sport_under_a_sports_menu_with_a_pundit_s_role() {
    let s = other("bbc-sport-menu-and-pundits.txt");
    // `Home`, `Football`, `Cricket`, … above the title: the sport menu.
    assert_eq!(
        s.title,
        "As it happened: Wales v Ireland - Six Nations 2026"
    );
    assert_eq!(
        titles(&s),
        vec![
            "Full-time: Wales 18-27 Ireland",
            "Wales 18-27 Ireland",
            "Huw: Wales have been so much better in this half",
            "That's a huge call from the referee",
            "Half-time: Wales 8-20 Ireland",
            "Team news",
        ]
    );
    assert_eq!(derived(&s), vec![false, false, true, true, false, false]);
    // `Gareth Davies` over an eight-word role naming the station: his byline, not a headline.
    assert_eq!(
        authors(&s)[3],
        vec!["Gareth Davies, Former Wales scrum-half on BBC Radio Wales"]
    );
    assert_eq!(
        html(&s, 3),
        "<p>That&#39;s a huge call from the referee. Wales were on the front foot and he has \
         gone upstairs again.</p>"
    );
}

#[test]
fn itv_single_update_with_its_standfirst_under_the_marker() {
    let s = other("itv-standfirst-under-marker.txt");
    assert_eq!(
        s.title,
        "Rail strikes: Commuters face disruption as drivers walk out"
    );
    // The paragraph between `Live updates` and the first timed update is the standfirst.
    assert_eq!(
        s.description,
        "Train drivers at 16 operators are on strike, with many lines running no trains at all."
    );
    assert_eq!(titles(&s), vec!["Most Southern services cancelled"]);
    assert_eq!(authors(&s), vec![vec!["Rachel Townsend"]]);
    assert_eq!(times_of_day(&s), vec!["08:14"]);
}

#[test]
fn local_blog_with_key_updates_and_a_reporter_over_each_time() {
    let s = other("local-key-updates-and-entry-bylines.txt");
    assert_eq!(
        s.title,
        "LIVE: Major police incident in Truro as cordon put in place"
    );
    assert_eq!(
        s.description,
        "Live updates from Truro city centre as officers respond to an incident on Lemon Street."
    );
    // `Key updates` lists two headlines: links to entries, not entries.
    assert_eq!(
        titles(&s),
        vec![
            "Cordon lifted",
            "Police confirm one man arrested",
            "Witnesses describe heavy police presence",
            "Cordon remains on Lemon Street",
        ]
    );
    // The page's `By Lucy Trewin` / `Community Reporter` and its two stamps are not the
    // newest entry's; the name over each time is.
    assert_eq!(authors(&s), vec![vec!["Lucy Trewin"]; 4]);
    assert_eq!(times_of_day(&s), vec!["11:05", "10:52", "10:35", "10:20"]);
    // `(Image: Cornwall Live)`: a labelled credit.
    assert!(html(&s, 2).ends_with(
        "<figure><figcaption>The scene on Lemon Street this morning <small \
         class=\"credit\">Image: Cornwall Live</small></figcaption></figure>"
    ));
    // The newsletter prompt under the last entry is furniture.
    assert_eq!(
        html(&s, 3),
        "<p>Police have closed part of Lemon Street in Truro while they deal with an incident. \
         People are being asked to avoid the area.</p>"
    );
}

#[test]
fn us_live_updates_over_the_title_with_from_bylines() {
    let s = other("us-live-updates-from-bylines.txt");
    // `Live Updates` over the title and its `Updated …` line labels the page.
    assert_eq!(s.title, "Supreme Court hears arguments over tariff powers");
    assert_eq!(
        s.description,
        "The justices are hearing a challenge to the president's use of emergency powers to \
         impose tariffs. Several conservative justices asked pointed questions about the limits \
         of those powers."
    );
    assert_eq!(
        titles(&s),
        vec![
            "Justices appear skeptical of government's position",
            "Who is challenging the tariffs?",
            "Arguments are underway at the Supreme Court",
        ]
    );
    // `From CNN's Dana Whitlock`: the newsroom goes, the reporters stay.
    assert_eq!(
        authors(&s),
        vec![
            vec!["Dana Whitlock"],
            vec!["Paul Okafor and Rina Sato"],
            vec![],
        ]
    );
    assert_eq!(times_of_day(&s), vec!["11:58", "11:31", "10:45"]);
    assert!(!html(&s, 0).contains("Link Copied"));
}

#[test]
fn wire_markets_blog_with_a_live_title_under_a_tagline_and_menu() {
    let s = other("wire-markets-live-dash-headlines.txt");
    // No stream header: the `Live: …` line under the tagline and the menu is the title.
    assert_eq!(
        s.title,
        "Live: Stock markets today - European shares slip as bank stocks weigh"
    );
    // `10:55 GMT — Banks lead decliners`: a stamped headline over its body.
    assert_eq!(
        titles(&s),
        vec![
            "Banks lead decliners",
            "FTSE 100 opens lower",
            "Euro steady after German data",
            "Oil extends gains",
        ]
    );
    // `By Reuters Staff` over the page's stamp is the page's, not the newest entry's.
    assert_eq!(authors(&s), vec![Vec::<&str>::new(); 4]);
    assert_eq!(times_of_day(&s), vec!["10:55", "10:32", "09:48", "09:15"]);
    // `Reporting by …; Editing by …` and the agency's standards line are furniture.
    assert_eq!(
        html(&s, 3),
        "<p>Brent crude futures rose 0.8% to $84.10 a barrel on supply concerns.</p>"
    );
}

#[test]
fn politics_latest_with_times_to_the_second_under_a_site_name_and_menu() {
    let s = other("sky-politics-latest-seconds.txt");
    // The site's name, then its menu, then `Live` over the title.
    assert_eq!(
        s.title,
        "Politics latest: Chancellor defends budget as OBR warns on growth"
    );
    assert!(s.description.starts_with("Rachel Reeves says the budget"));
    // `14:20:04` opens an entry; `Tuesday 18 November 2025 14:20, UK` stamps the page.
    assert_eq!(
        titles(&s),
        vec![
            "Reeves: 'We made the right choices'",
            "OBR cuts growth forecast",
            "Conservatives accuse chancellor of \"broken promises\"",
        ]
    );
    // `Sam Coates` / `Deputy political editor` above the stream: the page's reporter.
    assert_eq!(authors(&s), vec![Vec::<&str>::new(); 3]);
    assert_eq!(times_of_day(&s), vec!["13:20", "13:02", "12:45"]);
    // `Watch more on Sky News` is a promotion, not the next entry's headline.
    assert_eq!(
        html(&s, 1),
        "<p>The Office for Budget Responsibility now expects the economy to grow by 1.1% this \
         year, down from 1.4%.</p>"
    );
}

#[test]
fn guardian_blocks_with_the_contributor_under_the_time() {
    let s = other("guardian-contributor-under-time.txt");
    // `Politics live` over the title is the series' label; the page's reporters are not
    // part of the standfirst.
    assert_eq!(
        s.title,
        "Reeves to set out spending plans as unions warn over pay – as it happened"
    );
    assert_eq!(
        s.description,
        "Chancellor's statement follows weeks of talks with departments; unions say pay rises \
         must be fully funded"
    );
    // `16.41 BST` over `Pippa Crerar`: the block's contributor (named in the page's byline),
    // not its headline.
    assert_eq!(
        titles(&s),
        vec![
            "Evening summary",
            "Reeves confirms extra £2bn for NHS",
            "Unison's general secretary said any pay rise \"must come with the money to pay for \
             it\"…",
        ]
    );
    assert_eq!(derived(&s), vec![false, false, true]);
    assert_eq!(
        authors(&s),
        vec![
            vec!["Kiran Stacey"],
            vec!["Pippa Crerar"],
            vec!["Kiran Stacey"]
        ]
    );
    assert_eq!(times_of_day(&s), vec!["17:02", "15:41", "14:20"]);
}
