//! The raw HTTP/1.1 client of the tests: the one the load generator uses too
//! (`crates/h1client`, on `httparse`). Keep-alive, bodies framed by `Content-Length` or chunked
//! (a response longer or shorter than it says is an error), a streamed body read chunk by chunk
//! (for Server-Sent Events). Used where a full client costs too much (thousands of subscribers
//! in a debug build) or cannot express the request (hostile input).

// Not every test binary uses all of it.
#[allow(unused_imports)]
pub use h1client::{Conn, Response, find, request};
