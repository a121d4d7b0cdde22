//! ARCHITECTURE.md's dependency invariants, checked over `src/` (outside comments): the same
//! searches the document gives for `rg`, so they stay true without anyone running them.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir` (or `dir` itself when it is a file).
fn files(dir: &Path) -> Vec<PathBuf> {
    if dir.is_file() {
        return vec![dir.to_path_buf()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// `file:line: text` of every line under `dirs` (comments left out) that `hit` matches.
fn find(dirs: &[&str], hit: impl Fn(&str) -> bool) -> Vec<String> {
    let root = src();
    let mut found = Vec::new();
    for dir in dirs {
        for file in files(&root.join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                if !line.trim_start().starts_with("//") && hit(line) {
                    let name = file.strip_prefix(&root).unwrap().display().to_string();
                    found.push(format!("src/{name}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    found
}

fn any_of<'a>(words: &'a [&'a str]) -> impl Fn(&str) -> bool + 'a {
    move |line| words.iter().any(|w| line.contains(w))
}

#[test]
fn only_http_speaks_http() {
    let found = find(
        &["log", "render", "ingest", "layout.rs"],
        any_of(&["hyper", "http_body", "http::"]),
    );
    assert!(
        found.is_empty(),
        "HTTP outside src/http/:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_log_knows_nothing_of_http() {
    let found = find(
        &["log"],
        any_of(&["hyper", "http::", "Cache-Control", "httpdate"]),
    );
    assert!(found.is_empty(), "HTTP in src/log/:\n{}", found.join("\n"));
}

#[test]
fn render_knows_nothing_of_the_log() {
    let found = find(&["render"], any_of(&["crate::log"]));
    assert!(
        found.is_empty(),
        "the log in src/render/:\n{}",
        found.join("\n")
    );
}

/// A string literal (Rust's or the page script's) that starts with `/` and a letter, or a
/// format string's `{…}/` and a letter: a URL path (or a file path: `/proc/…` is the only one
/// the code reads).
fn spells_a_path(line: &str) -> bool {
    line.match_indices(['"', '\'', '}'])
        .filter(|(i, _)| {
            let rest = &line[i + 1..];
            rest.starts_with('/')
                && rest[1..].starts_with(|c: char| c.is_ascii_lowercase())
                && !rest.starts_with("/proc/")
        })
        .count()
        > 0
}

#[test]
fn only_layout_spells_url_paths() {
    let mut found = find(&["."], spells_a_path);
    found.retain(|hit| !hit.starts_with("src/layout.rs:"));
    assert!(
        found.is_empty(),
        "URL paths spelled outside src/layout.rs:\n{}",
        found.join("\n")
    );
    // The check finds what it looks for.
    assert!(spells_a_path(r#"let p = "/live/events";"#));
    assert!(spells_a_path("new EventSource('/live/events?story=' + s)"));
    assert!(!spells_a_path(r#"read("/proc/self/stat")"#));
    assert!(spells_a_path(r#"format!("{}/websub", base)"#));
    assert!(!spells_a_path(r#"path == "/""#));
}
