//! Normalise + render at scale: a synthetic live page of N entries (default 100,000) through
//! the normaliser and every renderer. Prints time per stage and the process's peak memory.
//!
//! `cargo bench --bench build -- [ENTRIES] [--parallel]`

use chrono::{DateTime, Utc};
use std::time::Instant;

use livefeed::ingest::manifest::SiteInfo;
use livefeed::ingest::normalise::{StoryMeta, normalise};
use livefeed::ingest::site::Site;
use livefeed::render::{site_files as files, with_files_parallel};

/// A live page in the style of the seeds: headline, caption, paragraphs, a list, a quotation.
fn synthetic_page(entries: usize) -> String {
    let mut s = String::from(
        "A very long live page\n\nThe standfirst of a very long live page.\n\nLive updates\n\n",
    );
    for i in (0..entries).rev() {
        s.push_str(&format!(
            "Update number {i} on the talks in Sochi\n\n\
             Leaders pictured at the summit Credit: Agency/PA Wire\n\n\
             The talks went on late into the night, officials said, with entry {i} adding detail.\n\n\
             A second paragraph quoting \"someone\" who said things were going well.\n\n\
             \u{2022} First point\n\n\u{2022} Second point\n\n\
             We want a peaceful settlement and will work for it.\n\n\u{2013} The spokesman\n\n"
        ));
    }
    s.push_str("Back to top\n");
    s
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let entries: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let parallel = std::env::args().any(|a| a == "--parallel");
    let text = synthetic_page(entries);
    let t = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    };
    let meta = StoryMeta {
        slug: "big".into(),
        kind: None,
        template: None,
        url: Some("https://www.itv.com/news/big/".into()),
        published: t("2013-05-01T00:00:00Z"),
        updated: t("2013-05-30T00:00:00Z"),
        offset: chrono::FixedOffset::east_opt(3600).unwrap_or_else(|| Utc.fix()),
        entry_times: Vec::new(),
        fallback_url: "https://example.org/stories/big".into(),
    };
    let start = Instant::now();
    let story = normalise(&text, &meta).unwrap_or_else(|e| panic!("synthetic page: {e}"));
    let normalised = start.elapsed();
    assert_eq!(
        story.entries.len(),
        entries,
        "every synthetic entry becomes an item"
    );
    let report_mb = text.len() as f64 / 1e6;
    drop(text);
    let site = Site {
        info: SiteInfo {
            title: "Bench".into(),
            description: String::new(),
            author: "Bench".into(),
            base_url: "https://example.org".into(),
            language: "en-gb".into(),
        },
        base_url: "https://example.org".into(),
        stories: vec![story],
        feed_entries: livefeed::render::DEFAULT_FEED_ENTRIES,
        websub_hub: None,
    };
    let start = Instant::now();
    let mut per_file: Vec<(String, usize, f64)> = Vec::new();
    if parallel {
        // As `livefeed build` renders: on every core, a few files in memory at a time.
        with_files_parallel(&site, 0, |files| {
            files.for_each(|(name, f)| per_file.push((name, f.len(), 0.0)))
        });
    } else {
        let mut last = Instant::now();
        for (name, f) in files(&site, 0) {
            per_file.push((name, f.len(), last.elapsed().as_secs_f64()));
            last = Instant::now();
        }
    }
    let rendered = start.elapsed();
    let bytes: usize = per_file.iter().map(|f| f.1).sum();
    let mode = if parallel { "all cores" } else { "one core" };
    println!("entries             {entries}");
    println!("report size         {report_mb:.1} MB");
    println!("normalise           {:.3} s", normalised.as_secs_f64());
    println!(
        "render {} files     {:.3} s  ({mode}, {:.1} MB of output)",
        per_file.len(),
        rendered.as_secs_f64(),
        bytes as f64 / 1e6
    );
    if !parallel {
        for (name, size, took) in &per_file {
            println!("  {name:<16} {took:.3} s  {:.1} MB", *size as f64 / 1e6);
        }
        let story: f64 = per_file
            .iter()
            .filter(|f| f.0.starts_with("big."))
            .map(|f| f.2)
            .sum();
        println!(
            "normalise + story's rss/atom/json  {:.3} s",
            normalised.as_secs_f64() + story
        );
    }
    println!(
        "normalise + whole site  {:.3} s",
        (normalised + rendered).as_secs_f64()
    );
    match peak_rss_kib() {
        Some(kib) => println!("peak RSS            {:.1} MB", kib as f64 / 1024.0),
        None => println!("peak RSS            unavailable (no /proc)"),
    }
}

use chrono::Offset;
