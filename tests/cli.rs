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

/// `build --only` writes the files named, byte for byte as a whole build writes them, and
/// nothing else (bench/run times one story's RSS + Atom against feedgen with it).
#[test]
fn build_only_writes_the_files_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, some) = (tmp.path().join("whole"), tmp.path().join("some"));
    assert_exit(&build(tmp.path(), &data(), &whole), 0);
    let rss = "feeds/disputes-over-syria-summit-plan.rss";
    let atom = "feeds/disputes-over-syria-summit-plan.atom";
    let out = livefeed(
        tmp.path(),
        &[
            "build",
            "--data",
            &data(),
            "--out",
            some.to_str().unwrap(),
            "--only",
            rss,
            "--only",
            atom,
        ],
    );
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("wrote 2 files"), "{}", stderr(&out));
    let (all_files, some_files) = (snapshot(&whole), snapshot(&some));
    let names: Vec<&str> = some_files.keys().map(String::as_str).collect();
    // The two feeds and the build's marker file.
    assert_eq!(names, [".livefeed-build", atom, rss]);
    assert_eq!(some_files[rss], all_files[rss]);
    assert_eq!(some_files[atom], all_files[atom]);
    // A name the build does not have is an error that names it.
    let out = livefeed(
        tmp.path(),
        &[
            "build",
            "--data",
            &data(),
            "--out",
            some.to_str().unwrap(),
            "--only",
            "feeds/nope.rss",
        ],
    );
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("--only feeds/nope.rss"),
        "{}",
        stderr(&out)
    );
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

// ---- Operating livefeed (issue 12): help, up-front checks, start-up. ----

/// The binary with `args`, in `dir`, with nothing from the caller's environment that a flag
/// reads; killed (no exit code) if it has not ended within [`common::PATIENCE`], as a server
/// that should have refused to start would not.
fn livefeed_clean(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livefeed"));
    cmd.current_dir(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for var in [
        "LIVEFEED_DATA",
        "LIVEFEED_OUT",
        "LIVEFEED_LISTEN",
        "LIVEFEED_BASE_URL",
        "LIVEFEED_TOKEN",
        "LIVEFEED_TOKEN_FILE",
        "LIVEFEED_LOG_DIR",
    ] {
        cmd.env_remove(var);
    }
    let mut child = cmd.spawn().expect("livefeed runs");
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("livefeed ends")
}

#[test]
fn help_of_every_command_gives_value_names_defaults_env_and_examples() {
    let secret = "do-not-show-this-token-0123456789";
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["build"],
            &[
                "--data <DIR>",
                "[env: LIVEFEED_DATA=]",
                "[default: data]",
                "--out <DIR>",
                "[default: feeds]",
                "--base-url <URL>",
                "[env: LIVEFEED_BASE_URL=]",
                "--check",
            ],
        ),
        (
            &["serve"],
            &[
                "--data <DIR>",
                "[env: LIVEFEED_DATA=]",
                "--listen <ADDR>",
                "[env: LIVEFEED_LISTEN=]",
                "[default: 127.0.0.1:8080]",
                "--base-url <URL>",
                "--token-file <FILE>",
                "[env: LIVEFEED_TOKEN_FILE=]",
                "--log-dir <DIR>",
                "[env: LIVEFEED_LOG_DIR=]",
                "--max-body <BYTES>",
                "[default: 1048576]",
                "--header-timeout <SECS>",
                "[default: 10]",
                "--max-connections <N>",
                "[default: 20000]",
                "--max-waiters <N>",
                "--sse-queue <N>",
                "--sse-queue-bytes <BYTES>",
                "--keep-events <N>",
                "[default: 1000000]",
                "LIVEFEED_TOKEN",
                "RUST_LOG",
                "SIGHUP",
            ],
        ),
        (
            &["items"],
            &[
                "--data <DIR>",
                "--story <SLUG>",
                "--base-url <URL>",
                "[FILE]...",
            ],
        ),
        (
            &["log", "check"],
            &[
                "--data <DIR>",
                "[default: data]",
                "--log-dir <DIR>",
                "[env: LIVEFEED_LOG_DIR=]",
            ],
        ),
        (&["log", "repair"], &["--data <DIR>", "--log-dir <DIR>"]),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (command, expected) in cases {
        let mut args = command.to_vec();
        args.push("--help");
        let out = Command::new(env!("CARGO_BIN_EXE_livefeed"))
            .current_dir(tmp.path())
            .args(&args)
            .env("LIVEFEED_TOKEN", secret)
            .output()
            .unwrap();
        assert_exit(&out, 0);
        let help = stdout(&out);
        for want in *expected {
            assert!(
                help.contains(want),
                "`{}` lacks {want:?}:\n{help}",
                args.join(" ")
            );
        }
        assert!(help.contains("EXAMPLES:\n  "), "{help}");
        assert!(!help.contains(secret), "help shows the token:\n{help}");
        // Every option line has a description (text after the value name), not a bare flag.
        for line in help.lines().filter(|l| l.trim_start().starts_with("--")) {
            let words = line.split_whitespace().count();
            assert!(words >= 4, "no description: {line:?}");
        }
    }
}

/// A data copy whose manifest had `from` replaced by `to`.
fn data_with_manifest(tmp: &Path, from: &str, to: &str) -> PathBuf {
    let data = data_copy(tmp);
    let path = data.join("stories.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in the manifest");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    data
}

#[test]
fn bad_input_is_refused_up_front_with_what_was_expected_and_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_copy(tmp.path());
    let d = data.to_str().unwrap();
    std::fs::write(tmp.path().join("short-token"), "short\n").unwrap();
    std::fs::write(tmp.path().join("empty-token"), "\n").unwrap();
    let bad_date = tempfile::tempdir().unwrap();
    let bad_date_data = data_with_manifest(
        bad_date.path(),
        "published = \"2013-05-10T12:00:00+01:00\"",
        "published = \"10 May 2013\"",
    );
    let bd = bad_date_data.to_str().unwrap();
    let bad_base = tempfile::tempdir().unwrap();
    let bad_base_data = data_with_manifest(
        bad_base.path(),
        "base_url = \"https://livefeed.example.org\"",
        "base_url = \"https://livefeed example.org\"",
    );
    let bb = bad_base_data.to_str().unwrap();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["serve", "--data", d, "--base-url", "not a url"],
            vec![
                "--base-url",
                "not a URL",
                "expected an absolute http(s) URL",
            ],
        ),
        (
            vec!["serve", "--data", d, "--base-url", "ftp://example.org"],
            vec!["not an http:// or https:// URL"],
        ),
        (
            vec![
                "build",
                "--data",
                d,
                "--base-url",
                "example.org",
                "--out",
                "o",
            ],
            vec!["expected an absolute http(s) URL"],
        ),
        (
            vec!["serve", "--data", d, "--listen", "8080"],
            vec!["--listen", "expected HOST:PORT", "localhost:8080"],
        ),
        (
            vec!["serve", "--data", d, "--listen", "localhost:http"],
            vec!["not a port number"],
        ),
        (
            vec![
                "serve",
                "--data",
                d,
                "--listen",
                "no-such-host.invalid:8080",
            ],
            vec!["--listen no-such-host.invalid:8080: cannot resolve"],
        ),
        (
            vec!["serve", "--data", "no-such-dir"],
            vec!["no-such-dir: no such data directory", "pass --data DIR"],
        ),
        (
            vec!["build", "--data", "no-such-dir", "--out", "o"],
            vec!["no such data directory", "--data"],
        ),
        (
            vec!["serve", "--data", d, "--token-file", "no-such-token"],
            vec!["token file no-such-token: cannot be read"],
        ),
        (
            vec!["serve", "--data", d, "--token-file", "short-token"],
            vec!["token file short-token: the publish token must be at least"],
        ),
        (
            vec!["serve", "--data", d, "--token-file", "empty-token"],
            vec!["token file empty-token: is empty"],
        ),
        (
            vec!["serve", "--data", bd],
            vec![
                "stories.toml:19:",
                "\"10 May 2013\" is not an RFC 3339 date",
                "like \"2013-05-10T12:00:00+01:00\"",
            ],
        ),
        (
            vec!["build", "--data", bd, "--out", "o"],
            vec!["stories.toml:19:", "like \"2013-05-10T12:00:00+01:00\""],
        ),
        (
            vec!["serve", "--data", bb],
            vec![
                "stories.toml:10: site.base_url:",
                "expected an absolute http(s) URL",
            ],
        ),
    ];
    for (args, wants) in cases {
        let out = livefeed_clean(tmp.path(), &args);
        assert_exit(&out, 1);
        let err = stderr(&out);
        for want in wants {
            assert!(
                err.contains(want),
                "`{}`: {want:?} not in:\n{err}",
                args.join(" ")
            );
        }
        assert!(!err.contains("panicked"), "{err}");
        for dir in [&data, &bad_date_data, &bad_base_data] {
            assert!(
                !dir.join("log").exists(),
                "`{}` wrote the log",
                args.join(" ")
            );
        }
        assert!(
            !tmp.path().join("o").exists(),
            "`{}` wrote output",
            args.join(" ")
        );
    }
}

#[test]
fn a_report_with_no_entries_is_a_warning_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_copy(tmp.path());
    let manifest = data.join("stories.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(
        "\n[[story]]\nslug = \"quiet\"\nkind = \"live\"\nurl = \"https://www.itv.com/news/q/\"\n\
         published = \"2013-06-16T12:00:00+01:00\"\nupdated = \"2013-06-16T12:00:00+01:00\"\n",
    );
    std::fs::write(&manifest, text).unwrap();
    std::fs::write(data.join("quiet.txt"), "Live: nothing yet\n").unwrap();
    let out = livefeed_clean(tmp.path(), &["items", "--data", "data"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("WARN") && err.contains("quiet.txt: the report yields no entries"),
        "{err}"
    );
    // Reports that have entries are not named.
    assert!(
        !err.contains("disputes-over-syria-summit-plan.txt"),
        "{err}"
    );
}

#[test]
fn check_lists_stale_files_in_order_and_prints_the_command_that_rebuilds_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_copy(tmp.path());
    let out_dir = tmp.path().join("my feeds");
    let args = |check: bool| {
        let mut a = vec![
            "build".to_string(),
            "--data".into(),
            data.display().to_string(),
            "--out".into(),
            out_dir.display().to_string(),
            "--base-url".into(),
            "https://news.example.org/".into(),
        ];
        if check {
            a.push("--check".into());
        }
        a
    };
    let run = |a: &[String]| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        livefeed_clean(tmp.path(), &a)
    };
    let stale = run(&args(true));
    assert_exit(&stale, 1);
    let err = stderr(&stale);
    let listed: Vec<&str> = err
        .lines()
        .filter_map(|l| l.trim().strip_prefix("missing"))
        .map(str::trim)
        .collect();
    assert!(listed.len() > 5, "{err}");
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "not in a stable order:\n{err}");
    assert_eq!(run(&args(true)).stderr, stale.stderr, "two runs differ");
    // The last line is the command; run as printed (with this binary), it makes --check pass.
    let (head, command) = err.trim_end().rsplit_once('\n').unwrap();
    assert!(head.ends_with("rebuild with:"), "{err}");
    let words = shlex::split(command.trim()).expect("a shell command");
    assert_eq!(words[..2], ["livefeed", "build"], "{command}");
    assert!(
        command.contains("--base-url https://news.example.org")
            && command.contains("'")
            && words.contains(&out_dir.display().to_string()),
        "{command}"
    );
    let words: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    assert_exit(&livefeed_clean(tmp.path(), &words), 0);
    assert_exit(&run(&args(true)), 0);
}

fn serve_cmd(data: &Path, listen: &str) -> Command {
    let mut cmd = common::process::serve_command(data);
    cmd.args(["--base-url", "https://news.example.org"]);
    // serve_command listens on 127.0.0.1:0; a later --listen would be refused as a repeat.
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut fresh = Command::new(cmd.get_program());
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a == "--listen" {
            skip = true;
            continue;
        }
        fresh.arg(a);
    }
    fresh
        .args(["--listen", listen])
        .env_remove("LIVEFEED_TOKEN")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    fresh
}

#[tokio::test]
async fn serve_resolves_host_names_and_logs_one_actionable_start_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_copy(tmp.path());
    let mut proc = common::process::Proc::start(serve_cmd(&data, "localhost:0"));
    let base = proc.ready().await.expect("serving on localhost:0");
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    let log = proc.log();
    let line = log
        .lines()
        .find(|l| l.contains("livefeed serving"))
        .unwrap();
    for want in [
        format!("open={base}/"),
        "stories=2".to_string(),
        format!("data={}", data.display()),
        format!("log={}", data.join("log").join("events.log").display()),
        "base_url=https://news.example.org".to_string(),
        "publishing=off".to_string(),
    ] {
        assert!(line.contains(&want), "{want:?} not in {line}");
    }
    assert!(proc.terminate(), "{}", proc.log());
}

#[tokio::test]
async fn serve_on_a_port_in_use_fails_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_copy(tmp.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut proc = common::process::Proc::start(serve_cmd(&data, &addr));
    assert!(!proc.wait(), "started on a port in use");
    let log = proc.log();
    assert!(
        log.contains(&format!(
            "--listen {addr}: cannot listen on {addr}: the address is in use"
        )),
        "{log}"
    );
    assert!(!data.join("log").exists(), "the log was created:\n{log}");
    assert!(!log.contains("event log opened"), "{log}");
}
