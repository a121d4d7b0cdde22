//! What comes in: the manifest (`stories.toml`), the report files and the normaliser that turns
//! their text into stories and entries. Pure but for reading files: no clock, no log, no HTTP.

pub mod input;
pub mod manifest;
pub mod normalise;
pub mod site;
