//! The `livefeed` binary as a CI job and a user run it: reproducible builds, `--check`, the
//! `items` command, and errors that name the file and line and leave the output alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn livefeed(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_livefeed"))
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("livefeed runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

/// Every file under `dir`, by `/`-separated path relative to it.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = pending.pop() {
        for entry in std::fs::read_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                pending.push((entry.path(), format!("{name}/")));
            } else {
                assert!(entry.file_type().unwrap().is_file(), "{:?}", entry.path());
                files.insert(name, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    files
}

fn data() -> String {
    repo().join("data").display().to_string()
}

/// A copy of the repository's `data/` to break.
fn data_copy(into: &Path) -> PathBuf {
    common::copy_data(into)
}

fn build(dir: &Path, data: &str, out: &Path) -> Output {
    livefeed(
        dir,
        &["build", "--data", data, "--out", out.to_str().unwrap()],
    )
}

fn check(dir: &Path, data: &str, out: &Path) -> Output {
    livefeed(
        dir,
        &[
            "build",
            "--check",
            "--data",
            data,
            "--out",
            out.to_str().unwrap(),
        ],
    )
}

#[test]
fn build_writes_the_same_bytes_every_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    assert_exit(&build(tmp.path(), &data(), &a), 0);
    assert_exit(&build(tmp.path(), &data(), &b), 0);
    let first = snapshot(&a);
    assert_eq!(first, snapshot(&b));
    // Building over an existing output replaces it with the same bytes.
    assert_exit(&build(tmp.path(), &data(), &a), 0);
    assert_eq!(first, snapshot(&a));
    let names: Vec<&str> = first.keys().map(String::as_str).collect();
    assert!(names.contains(&"index.html"));
    for slug in [
        "disputes-over-syria-summit-plan",
        "anglo-russian-differences-over-syria",
    ] {
        let page = format!("stories/{slug}/index.html");
        assert!(names.contains(&page.as_str()), "{names:?}");
    }
    for slug in [
        "all",
        "disputes-over-syria-summit-plan",
        "anglo-russian-differences-over-syria",
    ] {
        for ext in ["rss", "atom", "json"] {
            assert!(
                names.contains(&format!("feeds/{slug}.{ext}").as_str()),
                "{names:?}"
            );
        }
    }
    // Nothing but the two outputs is left beside them: no temporary directories.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
}

#[test]
fn check_passes_on_fresh_output_and_names_every_stale_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("feeds");
    let missing = check(tmp.path(), &data(), &out);
    assert_exit(&missing, 1);
    assert!(stderr(&missing).contains("all.rss"), "{}", stderr(&missing));

    assert_exit(&build(tmp.path(), &data(), &out), 0);
    assert_exit(&check(tmp.path(), &data(), &out), 0);

    let mut atom = std::fs::read(out.join("feeds/all.atom")).unwrap();
    atom.extend_from_slice(b"<!-- edited -->");
    std::fs::write(out.join("feeds/all.atom"), atom).unwrap();
    std::fs::remove_file(out.join("feeds/disputes-over-syria-summit-plan.json")).unwrap();
    std::fs::write(out.join("feeds/stray.rss"), b"left over").unwrap();
    let before = snapshot(&out);

    let stale = check(tmp.path(), &data(), &out);
    assert_exit(&stale, 1);
    let err = stderr(&stale);
    for name in [
        "feeds/all.atom",
        "feeds/disputes-over-syria-summit-plan.json",
        "feeds/stray.rss",
    ] {
        assert!(err.contains(name), "{name} not named:\n{err}");
    }
    // Untouched files are not reported.
    assert!(!err.contains("all.rss"), "{err}");
    // --check writes nothing.
    assert_eq!(before, snapshot(&out));
}

/// Guards that the committed `feeds/` were regenerated after every change to `data/` or to
/// the renderers. They are the reports alone: checked against a copy of the data files,
/// without the event log a `serve` in the checkout leaves in `data/log/`.
#[test]
fn committed_feeds_are_up_to_date() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = data_copy(tmp.path());
    let explicit = check(repo(), copy.to_str().unwrap(), &repo().join("feeds"));
    assert_exit(&explicit, 0);
}

const ITEM_KEYS: [&str; 9] = [
    "story",
    "id",
    "title",
    "authors",
    "published",
    "updated",
    "time_inferred",
    "summary",
    "content_html",
];

fn items(out: &Output) -> Vec<serde_json::Value> {
    assert_exit(out, 0);
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[track_caller]
fn assert_item_shape(item: &serde_json::Value) {
    for key in ITEM_KEYS {
        assert!(item.get(key).is_some(), "no {key} in {item}");
    }
    for key in ["story", "id", "title", "summary", "content_html"] {
        assert!(item[key].is_string(), "{key} in {item}");
    }
    assert!(item["id"].as_str().unwrap().starts_with("tag:"));
    let authors = item["authors"].as_array().expect("authors is an array");
    assert!(authors.iter().all(|a| a.is_string()), "{item}");
    assert!(item["time_inferred"].is_boolean());
    for key in ["published", "updated"] {
        let t = item[key].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{key} {t}: {e}"));
    }
}

#[test]
fn items_prints_json_lines() {
    let all = items(&livefeed(repo(), &["items", "--data", &data()]));
    assert_eq!(all.len(), 6, "5 live entries + 1 article");
    all.iter().for_each(assert_item_shape);
    let live = items(&livefeed(
        repo(),
        &[
            "items",
            "--data",
            &data(),
            "--story",
            "disputes-over-syria-summit-plan",
        ],
    ));
    let titles: Vec<&str> = live.iter().map(|i| i["title"].as_str().unwrap()).collect();
    assert_eq!(
        titles,
        [
            "May summit on Syria is 'impossible' says Russian official",
            "'History of Syria is written in blood of their people'",
            "David Cameron meets Vladimir Putin to discuss Syria",
            "Government in favour of easing EU arms embargo",
            "David Cameron talks Syria with Russian president",
        ]
    );
    assert_eq!(live[2]["authors"], serde_json::json!(["Carl Dinnen"]));
    // Same run, same bytes.
    let again = livefeed(repo(), &["items", "--data", &data()]);
    assert_eq!(stdout(&again).lines().count(), 6);
    assert_eq!(
        stdout(&again),
        stdout(&livefeed(repo(), &["items", "--data", &data()]))
    );

    let unknown = livefeed(repo(), &["items", "--data", &data(), "--story", "nope"]);
    assert_exit(&unknown, 1);
    assert!(stderr(&unknown).contains("nope"));
}

#[test]
fn items_reads_report_files_without_a_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("syria-live.txt");
    std::fs::copy(
        repo().join("data/disputes-over-syria-summit-plan.txt"),
        &report,
    )
    .unwrap();
    // The working directory has no data/ at all.
    let out = livefeed(tmp.path(), &["items", "syria-live.txt"]);
    let lines = items(&out);
    assert_eq!(lines.len(), 5);
    lines.iter().for_each(assert_item_shape);
    assert!(lines.iter().all(|i| i["story"] == "syria-live"));
    assert_eq!(
        lines[0]["title"],
        "May summit on Syria is 'impossible' says Russian official"
    );
}

#[test]
fn invalid_utf8_names_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = b"A title\nA standfirst.\nGood line\nbad \xff\xfe byte\nmore\n".to_vec();
    bytes.extend_from_slice(b"tail\n");
    std::fs::write(tmp.path().join("broken.txt"), &bytes).unwrap();
    let out = livefeed(tmp.path(), &["items", "broken.txt"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("broken.txt:4:"), "{err}");
    assert!(out.stdout.is_empty(), "no items printed on error");

    // The same through `build`: exit 1, file and line named, the old output left alone.
    let data = data_copy(tmp.path());
    let out_dir = tmp.path().join("feeds");
    assert_exit(&build(tmp.path(), data.to_str().unwrap(), &out_dir), 0);
    let before = snapshot(&out_dir);
    let victim = data.join("anglo-russian-differences-over-syria.txt");
    let mut text = std::fs::read(&victim).unwrap();
    text.splice(0..0, b"Line one\n\xc3\x28 broken\n".iter().copied());
    std::fs::write(&victim, text).unwrap();
    let failed = build(tmp.path(), data.to_str().unwrap(), &out_dir);
    assert_exit(&failed, 1);
    let err = stderr(&failed);
    assert!(
        err.contains("anglo-russian-differences-over-syria.txt:2:"),
        "{err}"
    );
    assert_eq!(before, snapshot(&out_dir));
}

#[test]
fn a_failing_build_leaves_the_previous_output_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("site");
    assert_exit(&build(tmp.path(), &data(), &out), 0);
    let before = snapshot(&out);

    let data = data_copy(tmp.path());
    let manifest = data.join("stories.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(
        r#"
[[story]]
slug = "ghost"
kind = "live"
url = "https://www.itv.com/news/ghost/"
published = "2013-05-10T12:00:00+01:00"
updated = "2013-05-11T12:00:00+01:00"
"#,
    );
    std::fs::write(&manifest, text).unwrap();

    let failed = build(tmp.path(), data.to_str().unwrap(), &out);
    assert_exit(&failed, 1);
    assert!(stderr(&failed).contains("ghost.txt"), "{}", stderr(&failed));
    assert_eq!(before, snapshot(&out), "the old output changed");
    let mut left: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["data", "site"], "temporary files left behind");

    // A manifest error names the manifest and its line.
    std::fs::write(
        &manifest,
        std::fs::read_to_string(repo().join("data/stories.toml"))
            .unwrap()
            .replace("kind = \"article\"", "kind = \"blog\""),
    )
    .unwrap();
    let failed = build(tmp.path(), data.to_str().unwrap(), &out);
    assert_exit(&failed, 1);
    let err = stderr(&failed);
    assert!(err.contains("stories.toml:"), "{err}");
    assert_eq!(before, snapshot(&out));
}

/// `livefeed build` never removes what it did not write: the data directory, a directory
/// containing it and the current directory are refused, and so is a directory of other files.
#[test]
fn build_refuses_to_replace_what_it_did_not_write() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = data_copy(tmp.path());
    let before = snapshot(&copy);
    let tmp_str = tmp.path().to_str().unwrap();
    for (cwd, out, why) in [
        (tmp.path(), "data", "it is the data directory"),
        (tmp.path(), ".", "it is the current directory"),
        (repo(), tmp_str, "it contains the data directory"),
    ] {
        let data_arg = tmp.path().join("data");
        let run = build(cwd, data_arg.to_str().unwrap(), Path::new(out));
        assert_exit(&run, 1);
        assert!(stderr(&run).contains(why), "--out {out}: {}", stderr(&run));
        assert_eq!(before, snapshot(&copy), "--out {out} changed the data");
    }
    // Someone else's directory keeps its files.
    let site = tmp.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("CNAME"), b"news.example.org").unwrap();
    let run = build(tmp.path(), &data(), &site);
    assert_exit(&run, 1);
    assert!(stderr(&run).contains("CNAME"), "{}", stderr(&run));
    assert_eq!(
        std::fs::read(site.join("CNAME")).unwrap(),
        b"news.example.org"
    );
    // Its own output it replaces, and says which files it owns.
    std::fs::remove_file(site.join("CNAME")).unwrap();
    assert_exit(&build(tmp.path(), &data(), &site), 0);
    assert_exit(&build(tmp.path(), &data(), &site), 0);
    let marker = std::fs::read_to_string(site.join(".livefeed-build")).unwrap();
    assert!(marker.lines().any(|l| l == "feeds/all.atom"), "{marker}");
}

/// The README's quick start (`serve`, which writes `data/log/`) then its test command: the
/// tests copy data files only, never what a run left in the data directory.
#[test]
fn tests_copy_data_files_only() {
    let tmp = tempfile::tempdir().unwrap();
    let used = tmp.path().join("used");
    std::fs::create_dir(&used).unwrap();
    let data = data_copy(&used);
    std::fs::create_dir_all(data.join("log")).unwrap();
    std::fs::write(data.join("log/events.log"), b"not data").unwrap();
    let copy = common::copy_data_from(&data, tmp.path());
    let names: Vec<String> = snapshot(&copy).into_keys().collect();
    assert!(names.iter().any(|n| n == "stories.toml"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("log")), "{names:?}");
}

/// `livefeed build` includes what was published live: it replays the data directory's event
/// log (read only) over the reports and says so; `--check` compares against that.
#[tokio::test]
async fn build_includes_the_event_log() {
    use common::process::Proc;
    let tmp = tempfile::tempdir().unwrap();
    let data = data_copy(tmp.path());
    let data_arg = data.to_str().unwrap();
    let (before, after) = (tmp.path().join("before"), tmp.path().join("after"));
    // Without a log: the reports alone, and nothing said about a log.
    let plain = build(tmp.path(), data_arg, &before);
    assert_exit(&plain, 0);
    assert!(
        !stderr(&plain).contains("events from"),
        "{}",
        stderr(&plain)
    );

    let mut server = Proc::spawn(&data);
    let base = server.ready().await.expect("the server starts");
    let res = common::client()
        .post(format!("{base}/stories/{}/entries", common::LIVE))
        .bearer_auth(common::TOKEN)
        .json(&serde_json::json!({ "title": "Talks resume in Geneva", "body": "Text." }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let published: serde_json::Value = res.json().await.unwrap();
    assert!(server.terminate(), "{}", server.log());
    let log = data.join("log/events.log");
    let image = std::fs::read(&log).unwrap();

    let built = build(tmp.path(), data_arg, &after);
    assert_exit(&built, 0);
    let events = common::SEED + 1;
    assert!(
        stderr(&built).contains(&format!("including {events} events from {}", log.display())),
        "{}",
        stderr(&built)
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        image,
        "the build wrote to the log"
    );
    let feed: serde_json::Value = serde_json::from_slice(
        &std::fs::read(after.join(format!("feeds/{}.json", common::LIVE))).unwrap(),
    )
    .unwrap();
    let item = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == published["id"])
        .expect("the API's entry is in the built feed");
    assert_eq!(item["title"], "Talks resume in Geneva");
    // Its link is on this build's story page, not on the server's address.
    let anchor = common::anchor(published["url"].as_str().unwrap());
    assert_eq!(
        item["url"],
        format!(
            "https://livefeed.example.org/stories/{}/#{anchor}",
            common::LIVE
        )
    );
    let page = std::fs::read_to_string(after.join(format!("stories/{}/index.html", common::LIVE)))
        .unwrap();
    assert!(page.contains(&format!("id=\"{anchor}\"")), "{page}");

    // The output built before the publish is stale; the new one is fresh.
    let stale = check(tmp.path(), data_arg, &before);
    assert_exit(&stale, 1);
    assert!(
        stderr(&stale).contains(&format!("feeds/{}.json", common::LIVE)),
        "{}",
        stderr(&stale)
    );
    assert_exit(&check(tmp.path(), data_arg, &after), 0);

    // `--log-dir` names a log elsewhere; a missing one is an error naming it.
    let moved = tmp.path().join("elsewhere");
    std::fs::rename(data.join("log"), &moved).unwrap();
    assert_exit(&check(tmp.path(), data_arg, &before), 0);
    let named = livefeed(
        tmp.path(),
        &[
            "build",
            "--check",
            "--data",
            data_arg,
            "--out",
            after.to_str().unwrap(),
            "--log-dir",
            moved.to_str().unwrap(),
        ],
    );
    assert_exit(&named, 0);
    let with_log = |dir: &Path| {
        livefeed(
            tmp.path(),
            &[
                "build",
                "--check",
                "--data",
                data_arg,
                "--out",
                after.to_str().unwrap(),
                "--log-dir",
                dir.to_str().unwrap(),
            ],
        )
    };
    // A torn last write is left out, as `serve` cuts it; said, not fatal.
    let mut torn = image.clone();
    torn.extend_from_slice(&[200, 0, 0, 0, 1, 2]);
    std::fs::write(moved.join("events.log"), &torn).unwrap();
    let read = with_log(&moved);
    assert_exit(&read, 0);
    assert!(stderr(&read).contains("torn"), "{}", stderr(&read));
    // Damage with intact records after it is refused, as `serve` refuses it; the log is left
    // as it was.
    let mut damaged = image.clone();
    damaged[20] ^= 0x55;
    std::fs::write(moved.join("events.log"), &damaged).unwrap();
    let refused = with_log(&moved);
    assert_exit(&refused, 1);
    assert!(
        stderr(&refused).contains("log repair"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(std::fs::read(moved.join("events.log")).unwrap(), damaged);
    let missing = tmp.path().join("nowhere");
    let err = livefeed(
        tmp.path(),
        &[
            "build",
            "--data",
            data_arg,
            "--out",
            after.to_str().unwrap(),
            "--log-dir",
            missing.to_str().unwrap(),
        ],
    );
    assert_exit(&err, 1);
    assert!(
        stderr(&err).contains(&missing.join("events.log").display().to_string()),
        "{}",
        stderr(&err)
    );
}
