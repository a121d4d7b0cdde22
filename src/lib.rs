//! livefeed turns news live-update reports into feeds and relays updates as they happen.
//!
//! The data flows one way, one folder per stage: **[`ingest`]** (the manifest, report files
//! and their normaliser: text → [`model`] items) **→ [`log`]** (the event log: every change
//! decided by one writer, made durable by a store, then followed into the stories, the
//! rendered files and the live subscribers) **→ [`render`]** (RSS, Atom, JSON Feed, HTML)
//! **→ [`http`]** (the server: routes, feeds, long-poll, SSE, publishing, WebSub). [`build`]
//! writes the rendered files for static hosting. `ARCHITECTURE.md` states what each folder may
//! know of the others.

pub mod build;
pub mod http;
pub mod ingest;
pub mod layout;
pub mod log;
pub mod metrics;
pub mod model;
pub mod render;
pub mod text;
pub mod zone;
