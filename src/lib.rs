//! A Server-Sent Events server for learners, built on the standard library alone.
//!
//! Read the modules in this order; each is one idea:
//!
//! 1. [`config`]: flags and environment variables.
//! 2. [`http`]: reading a request head and writing a response, by hand, with hard limits.
//! 3. [`urlencoded`]: `a=1&message=hi+there`, the format of query strings and HTML forms.
//! 4. [`sse`]: the event-stream format: how a message becomes `data:` lines (the heart of it).
//! 5. [`timestamp`]: RFC 3339 time for the tick events, and the HTTP `Date` format.
//! 6. [`event_log`]: numbered broadcasts, encoded once, kept for replay.
//! 7. [`routes`]: `GET /`, `GET /events`, `/send`, one function each.
//! 8. [`server`]: the listening socket and one thread per connection.
//! 9. [`fanout`]: how a broadcast reaches every socket, the simple way and the fast way.
//!
//! `main.rs` only wires these together. Tests start a [`Server`] on port 0 in-process.

pub mod config;
pub mod event_log;
pub mod fanout;
pub mod http;
pub mod redis_log;
pub mod resp;
pub mod routes;
pub mod server;
pub mod sse;
pub mod timestamp;
pub mod urlencoded;

pub use config::{Command, Config};
pub use server::Server;
