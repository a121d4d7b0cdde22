//! livefeed turns news live-update reports into feeds and relays updates as they happen.
//!
//! The data flows one way: **reports → [`normalise`] → items ([`model`]) → [`render`] →
//! transports**. [`site`] loads a data directory (the manifest in [`manifest`] plus the
//! report files) into stories; [`build`] writes the rendered files for static hosting.
//! Everything up to the renderers is pure and tested without I/O.

pub mod build;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod normalise;
pub mod relay;
pub mod render;
pub mod server;
pub mod site;
pub mod text;
pub mod zone;
