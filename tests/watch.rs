//! Report files saved in place: a report is relayed only once it has settled, never in the
//! partial states an editor leaves while it truncates and rewrites the file.

mod common;

use common::{LIVE, SEED, TestSite};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Rewrites `path` as an editor saving in place does: truncate, then `content` in three
/// pieces with 100 ms between them.
async fn rewrite_slowly(path: &Path, content: &str) {
    let mut file = std::fs::File::create(path).unwrap();
    let bytes = content.as_bytes();
    let third = bytes.len() / 3;
    for piece in [
        &bytes[..third],
        &bytes[third..2 * third],
        &bytes[2 * third..],
    ] {
        tokio::time::sleep(Duration::from_millis(100)).await;
        file.write_all(piece).unwrap();
        file.flush().unwrap();
    }
}

/// Long enough for the server to settle (300 ms of quiet) and relay what it read.
const AFTER: Duration = Duration::from_millis(2500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_rewritten_in_place_with_the_same_content_relays_nothing() {
    let site = TestSite::new();
    let server = site.start().await;
    assert_eq!(server.head().await, SEED);
    let path = site.data().join(format!("{LIVE}.txt"));
    let original = std::fs::read_to_string(&path).unwrap();
    for _ in 0..2 {
        rewrite_slowly(&path, &original).await;
        tokio::time::sleep(AFTER).await;
        let events = server.events_after(SEED).await;
        assert!(
            events.is_empty(),
            "a report saved again unchanged relays nothing: {events:#?}"
        );
        assert_eq!(server.head().await, SEED);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_rewritten_in_place_with_one_new_entry_relays_one_create() {
    let site = TestSite::new();
    let server = site.start().await;
    let path = site.data().join(format!("{LIVE}.txt"));
    let original = std::fs::read_to_string(&path).unwrap();
    let new_entry = "Putin and Cameron agree to keep talking\n\n\
        A Kremlin spokesman said the two leaders would speak again before the G8 summit.\n\n\n";
    assert!(original.contains("Live updates\n\n"));
    let edited = original.replacen(
        "Live updates\n\n",
        &format!("Live updates\n\n{new_entry}"),
        1,
    );
    rewrite_slowly(&path, &edited).await;
    let events = server.wait_for_events(SEED, 1).await;
    tokio::time::sleep(AFTER).await;
    let events = {
        let mut all = events;
        all.extend(server.events_after(SEED + all.len() as u64).await);
        all
    };
    assert_eq!(events.len(), 1, "exactly one event: {events:#?}");
    assert_eq!(events[0]["op"], "create", "{events:#?}");
    assert_eq!(
        events[0]["entry"]["title"],
        "Putin and Cameron agree to keep talking"
    );
    assert_eq!(server.head().await, SEED + 1);
    server.stop().await;
}
