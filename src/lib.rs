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
//! 5. [`wire`]: what HTTP, URLs and RESP share: decimal numbers, `host:port`, reads with a
//!    deadline, what a failed socket call means.
//! 6. [`http`]: reading a request and writing a response, by hand, with hard limits; every way a
//!    request can break HTTP, and its status.
//! 7. [`urlencoded`]: `a=1&message=hi+there`, the format of query strings and HTML forms.
//! 8. [`event_log`]: numbered broadcasts, encoded once, kept for replay.
//! 9. [`ticks`]: each stream's `setInterval`: when to tick, when to send a keep-alive.
//! 10. [`clients`]: who is connected: `clients.add(res)` and `clients.delete(res)`.
//! 11. [`simple_fanout`]: how a broadcast reaches every socket: each connection thread writes its
//!     own.
//! 12. [`hub`]: the log, the fan-out and the count of streams, behind `broadcast` and `subscribe`.
//! 13. [`stream`]: `GET /events`, from the response head until the client leaves.
//! 14. [`routes`]: `GET /`, `/send`, `POST /drop`, the dispatch of every request, and every
//!     refusal with its status.
//! 15. [`server`]: the listening socket and one thread per connection.
//!
//! # Part II, the wings
//!
//! Optional parts, in folders of their own (and `capacity.rs`). Part I names them at a few seams
//! only: `hub` choosing the writer fan-out, `hub` using the shared log, `routes` calling the
//! classroom wing (the origin rule, the `Host` check, the lab), and `main` printing the classroom
//! addresses and fitting the caps to the machine (`capacity`).
//!
//! 16. [`fanout::writers`]: the fast fan-out: a few writer threads write broadcasts and ticks to
//!     every socket (`--broadcast-writers N`).
//! 17. [`redis::resp`]: RESP, the protocol Redis speaks: commands out, replies in, by hand.
//! 18. [`redis::log`]: the event log shared by several instances, kept in a Redis stream.
//! 19. [`classroom::origin`]: refusing `/send` and `/drop` from other sites' pages (403).
//! 20. [`classroom::interfaces`]: the addresses printed for `--host 0.0.0.0`.
//! 21. [`classroom::host`]: refusing requests for a name that is not this server's (DNS
//!     rebinding, 403).
//! 22. [`classroom::lab`]: `GET /lab`, any bytes for the student's own browser to read.
//! 23. [`capacity`]: how many connections the machine's limits let this process hold, and
//!     `--max-clients` lowered to fit.
//!
//! `main.rs` only wires these together. Tests start a [`Server`] on port 0 in-process.
//!
//! # The class hour
//!
//! The spine: the functions a teacher walks through, in order, for `GET /events` and `/send` in
//! the default mode. README.md's "Walk through the code in class" has the same list.
//!
//! - `src/server.rs` `Server::run`, `Server::serve`: accept, and a thread per connection.
//! - `src/routes.rs` `handle_connection`, `route`: read the request, pick the route.
//! - `src/http.rs` `RequestReader::read_request`: the head, by hand, within limits.
//! - `src/stream.rs` `serve_events`, `write_stream`: the response head, a comment, `retry`.
//! - `src/hub.rs` `Hub::subscribe`: counted and in the fan-out, in one step.
//! - `src/event_log.rs` `EventLog::start`: where a stream starts (`Last-Event-ID`).
//! - `src/simple_fanout.rs` `SimpleFanout::join`, `Member::serve`: the stream's loop.
//! - `src/clients.rs` `catch_up`: every broadcast after the cursor (first, the replay).
//! - `src/event_log.rs` `EventLog::after`: the frames after a cursor.
//! - `src/ticks.rs` `StreamTimer::frame_due`: Node's `setInterval`.
//! - `src/sse.rs` `tick_frame`: the tick on the wire.
//! - `src/routes.rs` `send_message`: `/send`, from the query or the body.
//! - `src/hub.rs` `Hub::broadcast`: into the log, then wake the streams.
//! - `src/event_log.rs` `EventLog::publish`: the next id, the frame encoded once.
//! - `src/sse.rs` `message_frame`: a message on the wire, line by line.
//! - `src/simple_fanout.rs` `SimpleFanout::announce`: wake every stream's thread.

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
pub mod wire;

pub mod capacity;
pub mod classroom;
pub mod fanout;
pub mod redis;

pub use config::{Command, Config};
pub use server::Server;
