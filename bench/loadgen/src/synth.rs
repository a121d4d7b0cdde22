//! A synthetic data directory: one live page of N entries in the style of the seed reports
//! (headline, credited caption, paragraphs, a bullet list, an attributed quotation), the same
//! page `cargo bench --bench build` normalises.

use anyhow::{Context, Result};
use std::fmt::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    #[arg(long)]
    pub entries: usize,
    /// The data directory to write (`stories.toml` and `big.txt`).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn page(entries: usize) -> String {
    let mut s = String::from(
        "A very long live page\n\nThe standfirst of a very long live page.\n\nLive updates\n\n",
    );
    for i in (0..entries).rev() {
        let _ = write!(
            s,
            "Update number {i} on the talks in Sochi\n\n\
             Leaders pictured at the summit Credit: Agency/PA Wire\n\n\
             The talks went on late into the night, officials said, with entry {i} adding detail.\n\n\
             A second paragraph quoting \"someone\" who said things were going well.\n\n\
             \u{2022} First point\n\n\u{2022} Second point\n\n\
             We want a peaceful settlement and will work for it.\n\n\u{2013} The spokesman\n\n"
        );
    }
    s.push_str("Back to top\n");
    s
}

const MANIFEST: &str = r#"[site]
title = "Bench"
description = "A synthetic live page for benchmarks."
author = "Bench"
base_url = "https://example.org"
language = "en-gb"

[[story]]
slug = "big"
kind = "live"
url = "https://www.itv.com/news/big/"
published = "2013-05-01T00:00:00+01:00"
updated = "2013-05-30T00:00:00+01:00"
"#;

pub fn write(args: &SynthArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    std::fs::write(args.out.join("stories.toml"), MANIFEST)?;
    std::fs::write(args.out.join("big.txt"), page(args.entries))?;
    Ok(())
}
