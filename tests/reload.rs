//! Reloading while serving: a story added to or removed from `stories.toml` is picked up
//! (feeds, pages, publishing), and SIGHUP re-reads the manifest and the token file.

mod common;

use common::process::{Proc, serve_command};
use common::{LIVE, PATIENCE, SEED, TestSite};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const ADDED: &str = "added-story";

fn story_table(slug: &str) -> String {
    format!(
        "\n[[story]]\nslug = \"{slug}\"\nkind = \"live\"\n\
         url = \"https://www.itv.com/news/story/2013-06-20/{slug}/\"\n\
         published = \"2013-06-20T09:00:00+01:00\"\nupdated = \"2013-06-20T18:00:00+01:00\"\n"
    )
}

/// Adds `slug` to the manifest, its report a copy of the live story's.
fn add_story(data: &Path, slug: &str) {
    std::fs::copy(
        data.join(format!("{LIVE}.txt")),
        data.join(format!("{slug}.txt")),
    )
    .unwrap();
    let manifest = data.join("stories.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(&story_table(slug));
    std::fs::write(&manifest, text).unwrap();
}

fn remove_story(data: &Path, slug: &str) {
    let manifest = data.join("stories.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let without = text.replace(&story_table(slug), "");
    assert_ne!(text, without);
    std::fs::write(&manifest, without).unwrap();
}

/// Polls `path` until its status is `status`; its body then.
async fn until_status(server: &common::Server, path: &str, status: u16) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let res = server.get(path).await;
        if res.status().as_u16() == status {
            return res.text().await.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} is still {} after {PATIENCE:?}",
            res.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn titles(feed: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(feed).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_story_added_to_the_manifest_is_served_and_takes_publishes_and_removed_is_not() {
    let site = TestSite::new();
    let server = site.start().await;
    let live_titles = titles(
        &server
            .get(&format!("/feeds/{LIVE}.json"))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(
        server.get(&format!("/feeds/{ADDED}.json")).await.status(),
        404
    );

    add_story(&site.data(), ADDED);
    let feed = until_status(&server, &format!("/feeds/{ADDED}.json"), 200).await;
    // Its page and the combined feed and index have it; its report's entries come as
    // creates, in the feed once the events are visible.
    let created = server.wait_for_events(SEED, live_titles.len()).await;
    assert!(
        created
            .iter()
            .all(|e| e["story"] == ADDED && e["op"] == "create"),
        "{created:#?}"
    );
    let feed = if titles(&feed).len() == live_titles.len() {
        feed
    } else {
        server
            .get(&format!("/feeds/{ADDED}.json"))
            .await
            .text()
            .await
            .unwrap()
    };
    assert_eq!(titles(&feed), live_titles);
    assert_eq!(server.get(&format!("/stories/{ADDED}")).await.status(), 200);
    let index = server.get("/").await.text().await.unwrap();
    assert!(index.contains(ADDED), "the index lacks the new story");
    let all = server.get("/feeds/all.json").await.text().await.unwrap();
    assert_eq!(titles(&all).len(), 2 * live_titles.len() + 1);

    // It takes publishes, and its feed shows them.
    let ack = server
        .publish(ADDED, "Published to the new story", "Body.")
        .await;
    let feed = server
        .get(&format!("/feeds/{ADDED}.json"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(titles(&feed)[0], "Published to the new story", "{ack}");
    let (status, _) = server
        .live(&format!("story={ADDED}&after=0&timeout=0"))
        .await;
    assert_eq!(status, 200);
    let head = server.head().await;

    // Removed: no longer served, its publishes refused, its history kept in the log.
    remove_story(&site.data(), ADDED);
    until_status(&server, &format!("/feeds/{ADDED}.json"), 404).await;
    assert_eq!(server.get(&format!("/stories/{ADDED}")).await.status(), 404);
    let res = server
        .authed(reqwest::Method::POST, &format!("/stories/{ADDED}/entries"))
        .json(&serde_json::json!({ "title": "Too late", "body": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let all = server.get("/feeds/all.json").await.text().await.unwrap();
    assert_eq!(titles(&all).len(), live_titles.len() + 1);
    assert!(!server.get("/").await.text().await.unwrap().contains(ADDED));
    assert_eq!(
        server.head().await,
        head,
        "removing a story writes no event"
    );

    // Added back: its history returns as it was, with no new event.
    add_story(&site.data(), ADDED);
    let feed = until_status(&server, &format!("/feeds/{ADDED}.json"), 200).await;
    assert_eq!(titles(&feed).len(), live_titles.len() + 1, "{feed}");
    assert_eq!(titles(&feed)[0], "Published to the new story");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.head().await, head, "adding it back made events");
    server.stop().await;

    // After a restart it is served from the log as before.
    let server = site.start().await;
    assert_eq!(server.head().await, head);
    let feed = server
        .get(&format!("/feeds/{ADDED}.json"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(titles(&feed)[0], "Published to the new story");
    server.stop().await;
}

async fn publish_status(base: &str, token: &str, title: &str) -> u16 {
    common::client()
        .post(format!("{base}/stories/{LIVE}/entries"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "title": title, "body": "Body." }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits until the server's log has a line containing `what`, counted from `from` lines.
async fn until_logged(proc: &Proc, what: &str, from: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !proc.log().lines().skip(from).any(|l| l.contains(what)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what:?} in:\n{}",
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sighup(proc: &Proc) {
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    let rc = unsafe { libc::kill(proc.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_token_file_and_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::copy_data(tmp.path());
    let token_file = tmp.path().join("token");
    let (old, new) = ("old-token-0123456789abcdef", "new-token-0123456789abcdef");
    std::fs::write(&token_file, format!("{old}\n")).unwrap();
    let mut cmd = serve_command(&data);
    cmd.arg("--token-file").arg(&token_file);
    let mut proc = Proc::start(cmd);
    let base = proc.ready().await.expect("serving");
    assert_eq!(publish_status(&base, old, "Old token").await, 201);

    std::fs::write(&token_file, format!("{new}\n")).unwrap();
    let seen = proc.log().lines().count();
    sighup(&proc);
    until_logged(&proc, "publish token re-read", seen).await;
    assert_eq!(publish_status(&base, old, "Old token again").await, 401);
    assert_eq!(publish_status(&base, new, "New token").await, 201);

    // A token file that cannot be used keeps the token in force.
    std::fs::write(&token_file, "short\n").unwrap();
    let seen = proc.log().lines().count();
    sighup(&proc);
    until_logged(&proc, "keeping the publish token in force", seen).await;
    assert_eq!(publish_status(&base, new, "Still the new token").await, 201);
    assert!(
        !proc.log().contains(new) && !proc.log().contains(old),
        "the log shows a token"
    );

    // SIGHUP reads the manifest again, and a story added to it is served.
    add_story(&data, ADDED);
    let seen = proc.log().lines().count();
    sighup(&proc);
    until_logged(&proc, "SIGHUP: reading the manifest", seen).await;
    until_logged(&proc, "story added", seen).await;
    let res = common::client()
        .get(format!("{base}/feeds/{ADDED}.rss"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(proc.terminate(), "{}", proc.log());
}
