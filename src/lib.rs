//! A Server-Sent Events server for learners, built on the standard library alone.
//!
//! # Part I, the lesson
//!
//! What `cargo run` runs and what a class reads in an hour, in this order; each module uses only
//! modules listed before it (`tests/module_order.rs` checks that):
//!
//! 1. [`sse`]: the event-stream format: how a message becomes `data:` lines (the heart of it).
//! 2. [`timestamp`]: RFC 3339 time for the tick events, and the HTTP `Date` format.
//! 3. [`config`]: flags and environment variables.
//! 4. [`sync`]: locks that survive a panicking thread.
//! 5. [`http`]: reading a request and writing a response, by hand, with hard limits; every way a
//!    request can go wrong, and its status.
//! 6. [`urlencoded`]: `a=1&message=hi+there`, the format of query strings and HTML forms.
//! 7. [`event_log`]: numbered broadcasts, encoded once, kept for replay.
//! 8. [`ticks`]: each stream's `setInterval`: when to tick, when to send a keep-alive.
//! 9. [`clients`]: who is connected: `clients.add(res)` and `clients.delete(res)`.
//! 10. [`simple_fanout`]: how a broadcast reaches every socket: each connection thread writes its
//!     own.
//! 11. [`hub`]: the log, the fan-out and the count of streams, behind `broadcast` and `subscribe`.
//! 12. [`stream`]: `GET /events`, from the response head until the client leaves.
//! 13. [`routes`]: `GET /`, `/send`, `POST /drop`, and the dispatch of every request.
//! 14. [`server`]: the listening socket and one thread per connection.
//!
//! # Part II, the wings
//!
//! Optional parts. Part I names them at a few seams only: `hub` choosing the writer fan-out,
//! `hub` using the shared log, `routes` calling the origin rule, and `main` printing the classroom
//! addresses and fitting the caps to the machine.
//!
//! 15. [`fanout::writers`]: the fast fan-out: a few writer threads write broadcasts and ticks to
//!     every socket (`--broadcast-writers N`).
//! 16. [`redis::resp`]: RESP, the protocol Redis speaks: commands out, replies in, by hand.
//! 17. [`redis::log`]: the event log shared by several instances, kept in a Redis stream.
//! 18. [`classroom::origin`]: refusing `/send` and `/drop` from other sites' pages (403).
//! 19. [`classroom::interfaces`]: the addresses printed for `--host 0.0.0.0`.
//! 20. [`capacity`]: how many connections the machine's limits let this process hold, and
//!     `--max-clients` lowered to fit.
//!
//! `main.rs` only wires these together. Tests start a [`Server`] on port 0 in-process.

pub mod clients;
pub mod config;
pub mod event_log;
pub mod http;
pub mod hub;
pub mod routes;
pub mod server;
pub mod simple_fanout;
pub mod sse;
pub mod stream;
pub mod sync;
pub mod ticks;
pub mod timestamp;
pub mod urlencoded;

pub mod capacity;
pub mod classroom;
pub mod fanout;
pub mod redis;

pub use config::{Command, Config};
pub use server::Server;
