//! The renderer thread: re-renders the files of the stories that changed, off the publish path.
//!
//! It keeps its own replica of the stories (the committed events applied in order, as the
//! writer applied them) so it never blocks the writer. Renders are coalesced: after a change it
//! waits a little for more ([`DEBOUNCE`]), and between two renders it leaves at least [`GAP`]
//! times as long as the last one took, so re-rendering a large story never takes more than
//! about a quarter of a core however fast events come. A reader that needs a file at least as new as an event it
//! knows about asks for an immediate render ([`Msg::Urgent`]) and waits for it (see
//! [`super::Relay::fresh`]), so feeds still read their writes.

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

/// How long a change waits for more before it is rendered (unless a reader is waiting).
pub const DEBOUNCE: Duration = Duration::from_millis(20);
/// Between two renders, at least this many times as long as the last one took.
pub const GAP: u32 = 3;

pub enum Msg {
    /// Durable events, in seq order.
    Events(Vec<Event>),
    /// A reader is waiting for the files to catch up with the log.
    Urgent,
}

pub struct Renderer {
    pub state: State,
    pub hub: Arc<Hub>,
    /// The seq of the last event applied to `state`.
    pub seq: u64,
}

impl Renderer {
    /// Runs until every sender is gone, rendering what is still pending before it returns.
    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let mut first_dirty: Option<Instant> = None;
        let mut not_before = Instant::now();
        let mut urgent = false;
        loop {
            let first = match first_dirty {
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
                Some(since) => {
                    let due = (since + DEBOUNCE).max(not_before);
                    let wait = due.saturating_duration_since(Instant::now());
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
                        for e in &events {
                            self.state.apply_unsorted(e);
                            self.seq = self.seq.max(e.seq);
                            dirty.insert(e.story.clone());
                        }
                        if !events.is_empty() && first_dirty.is_none() {
                            first_dirty = Some(Instant::now());
                        }
                    }
                    Msg::Urgent => urgent = true,
                }
            }
            let Some(since) = first_dirty else {
                // Nothing to render: whoever asked is already served.
                urgent = false;
                self.hub.set_rendered(self.seq);
                continue;
            };
            if urgent || Instant::now() >= (since + DEBOUNCE).max(not_before) {
                let took = self.render(&dirty);
                dirty.clear();
                first_dirty = None;
                urgent = false;
                not_before = Instant::now() + took * GAP;
            }
        }
        if !dirty.is_empty() {
            self.render(&dirty);
        }
    }

    fn render(&mut self, dirty: &BTreeSet<String>) -> Duration {
        let started = Instant::now();
        self.state.settle();
        let stories: Vec<&Story> = self
            .state
            .site
            .stories
            .iter()
            .filter(|s| dirty.contains(&s.slug))
            .collect();
        self.hub.set_files(cache::render_changed(
            &self.state.site,
            &stories,
            self.seq,
            Utc::now(),
        ));
        self.hub.set_rendered(self.seq);
        started.elapsed()
    }
}
