//! A Server-Sent Events server for learners, built on the standard library alone.
//!
//! Read the modules in this order; each is one idea, and each uses only modules listed before
//! it (`tests/module_order.rs` checks that):
//!
//! 1. [`sse`]: the event-stream format: how a message becomes `data:` lines (the heart of it).
//! 2. [`config`]: flags and environment variables.
//! 3. [`sync`]: locks that survive a panicking thread.
//! 4. [`timestamp`]: RFC 3339 time for the tick events, and the HTTP `Date` format.
//! 5. [`http`]: reading a request and writing a response, by hand, with hard limits; every way a
//!    request can go wrong, and its status.
//! 6. [`urlencoded`]: `a=1&message=hi+there`, the format of query strings and HTML forms.
//! 7. [`event_log`]: numbered broadcasts, encoded once, kept for replay.
//! 8. [`resp`]: RESP, the protocol Redis speaks: commands out, replies in, by hand, with limits.
//! 9. [`redis_log`]: the event log shared by several instances, kept in a Redis stream.
//! 10. [`ticks`]: each stream's `setInterval`: when to tick, when to send a keep-alive.
//! 11. [`clients`]: who is connected: `clients.add(res)` and `clients.delete(res)`.
//! 12. [`simple_fanout`]: how a broadcast reaches every socket, the simple way: each connection
//!     thread writes its own.
//! 13. [`writer_fanout`]: the fast way: a few writer threads write broadcasts and ticks to every
//!     socket.
//! 14. [`hub`]: the log, the fan-out and the count of streams, behind `broadcast` and `subscribe`.
//! 15. [`stream`]: `GET /events`, from the response head until the client leaves.
//! 16. [`origin`]: refusing `/send` and `/drop` from other sites' pages (403).
//! 17. [`routes`]: `GET /`, `/send`, `POST /drop`, and the dispatch of every request.
//! 18. [`server`]: the listening socket and one thread per connection.
//! 19. [`interfaces`]: the addresses printed for `--host 0.0.0.0`, for a classroom.
//!
//! `main.rs` only wires these together. Tests start a [`Server`] on port 0 in-process.

pub mod clients;
pub mod config;
pub mod event_log;
pub mod http;
pub mod hub;
pub mod interfaces;
pub mod origin;
pub mod redis_log;
pub mod resp;
pub mod routes;
pub mod server;
pub mod simple_fanout;
pub mod sse;
pub mod stream;
pub mod sync;
pub mod ticks;
pub mod timestamp;
pub mod urlencoded;
pub mod writer_fanout;

pub use config::{Command, Config};
pub use server::Server;
