//! The renderer thread: re-renders the files of the stories that changed, off the publish path.
//!
//! It keeps its own replica of the stories (the events the follower hands it, applied in seq
//! order) so it never blocks the writer or the follower. Renders are coalesced: a change is
//! rendered once events have paused for [`QUIET`], or after [`LAG`] if they keep coming; and
//! never sooner than [`GAP`] times as long as the last render took after it, so re-rendering a
//! large story takes at most about a tenth of a core however fast events come.
//! A reader that needs a file at least as new as an event it knows about asks for an immediate
//! render ([`Msg::Urgent`]) and waits for it (see [`super::Relay::fresh`]), so feeds still read
//! their writes.

use chrono::Utc;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::cache;
use super::event::Event;
use super::hub::Hub;
use super::state::State;
use crate::model::Story;

/// A change is rendered once no event has come for this long (unless a reader is waiting)…
pub const QUIET: Duration = Duration::from_millis(20);
/// …or, while events keep coming, once it is this old…
pub const LAG: Duration = Duration::from_secs(1);
/// …but no sooner after the last render than this many times as long as it took.
pub const GAP: u32 = 10;

pub enum Msg {
    /// Durable events, in seq order.
    Events(Vec<Event>),
    /// A reader is waiting for the files to catch up with the log.
    Urgent,
    /// The manifest changed: serve these stories (metadata; entries come as events) and stop
    /// serving those, then render at once and answer `done`.
    Stories {
        add: Vec<Story>,
        remove: Vec<String>,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    },
    /// The log's history was replaced: these are the stories now, up to `seq`.
    Reset { state: Box<State>, seq: u64 },
}

pub struct Renderer {
    pub state: State,
    pub hub: Arc<Hub>,
    /// The seq of the last event applied to `state`.
    pub seq: u64,
}

impl Renderer {
    /// Runs until every sender is gone (the server is stopping: nothing left to render for).
    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        // When the files first fell behind, and when the last event came.
        let mut behind: Option<(Instant, Instant)> = None;
        let mut not_before = Instant::now();
        let mut urgent = false;
        // Who waits for the next render (a manifest change).
        let mut waiting: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
        // Files of removed stories, taken down once the combined feeds and index without them
        // are out, so nobody sees the story gone from one and still in the other.
        let mut gone: Vec<crate::layout::FileKey> = Vec::new();
        // Starts empty: the first render of a story renders its archive pages once more.
        let mut memo = cache::ArchiveMemo::new();
        let due = |(first, last): (Instant, Instant), not_before: Instant| {
            (last + QUIET).min(first + LAG).max(not_before)
        };
        loop {
            let first = match behind {
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
                Some(times) => {
                    let wait = due(times, not_before).saturating_duration_since(Instant::now());
                    if urgent || wait.is_zero() {
                        rx.try_recv().ok()
                    } else {
                        match rx.recv_timeout(wait) {
                            Ok(m) => Some(m),
                            Err(RecvTimeoutError::Timeout) => None,
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                }
            };
            for msg in first.into_iter().chain(rx.try_iter()) {
                match msg {
                    Msg::Events(events) => {
                        // The replica may already have them (read by the writer at start).
                        let from = self.seq;
                        for e in events.iter().filter(|e| e.seq > from) {
                            self.state.apply_unsorted(e);
                            self.seq = self.seq.max(e.seq);
                            dirty.insert(e.story.clone());
                        }
                        if self.seq > from {
                            let now = Instant::now();
                            behind = Some(behind.map_or((now, now), |(first, _)| (first, now)));
                        }
                    }
                    Msg::Urgent => urgent = true,
                    Msg::Reset { state, seq } => {
                        for story in &self.state.site.stories {
                            if !state.site.stories.iter().any(|s| s.slug == story.slug) {
                                gone.extend(crate::layout::FileKey::story_files(&story.slug));
                            }
                        }
                        self.state = *state;
                        self.seq = seq;
                        dirty.extend(self.state.site.stories.iter().map(|s| s.slug.clone()));
                        memo = cache::ArchiveMemo::new();
                        let now = Instant::now();
                        behind = Some((now, now));
                        urgent = true;
                    }
                    Msg::Stories { add, remove, done } => {
                        for slug in &remove {
                            if self.state.remove_story(slug) {
                                gone.extend(crate::layout::FileKey::story_files(slug));
                                dirty.remove(slug);
                            }
                        }
                        for story in add {
                            let slug = story.slug.clone();
                            if self.state.add_story(story) {
                                let paths = crate::layout::FileKey::story_files(&slug);
                                gone.retain(|p| !paths.contains(p));
                                dirty.insert(slug);
                            }
                        }
                        // The combined feeds and the index change too: render now.
                        let now = Instant::now();
                        behind = Some(behind.map_or((now, now), |(first, _)| (first, now)));
                        urgent = true;
                        waiting.extend(done);
                    }
                }
            }
            let Some(times) = behind else {
                // Nothing to render: whoever asked is already served.
                urgent = false;
                self.hub.set_rendered(self.seq);
                continue;
            };
            if urgent || Instant::now() >= due(times, not_before) {
                let took = self.render(&dirty, &mut memo);
                if !gone.is_empty() {
                    self.hub.remove_files(&std::mem::take(&mut gone));
                }
                not_before = Instant::now() + took * GAP;
                dirty.clear();
                behind = None;
                urgent = false;
                for done in waiting.drain(..) {
                    let _ = done.send(());
                }
            }
        }
    }

    fn render(&mut self, dirty: &BTreeSet<String>, memo: &mut cache::ArchiveMemo) -> Duration {
        let started = Instant::now();
        self.state.settle();
        let stories: Vec<&Story> = self
            .state
            .site
            .stories
            .iter()
            .filter(|s| dirty.contains(&s.slug))
            .collect();
        self.hub.set_files(cache::render_changed_since(
            &self.state.site,
            &stories,
            self.seq,
            Utc::now(),
            memo,
        ));
        self.hub.set_rendered(self.seq);
        let took = started.elapsed();
        crate::metrics::get().record_render(took);
        tracing::debug!(seq = self.seq, ?took, "rendered");
        took
    }
}
