//! `GET /events`: one event stream, from its response head until the client goes away.
//!
//! The Node version is the classic handler:
//!
//! ```js
//! res.writeHead(200, { 'Content-Type': 'text/event-stream', ... });
//! res.flushHeaders();
//! const timer = setInterval(() => res.write(tick()), 1000);
//! clients.add(res);
//! res.on('close', () => { clearInterval(timer); clients.delete(res); });
//! ```
//!
//! Here the connection's thread *is* the handler: it writes the head, then stays in the
//! fan-out's loop until the stream ends (`hub.rs` says which fan-out). In the simple way that
//! loop writes the ticks and broadcasts itself, like the Node handler; in the fast way writer
//! threads do, and this thread sleeps until one hands the client back. Either way the server
//! learns that the client left when a write fails: there is no `'close'` event on a plain socket.

use std::convert::Infallible;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;

use crate::http::{self, Request, Status};
use crate::hub::{Hub, HubError, Subscription};
use crate::sse;
use crate::wire::{self, Failure};

/// The headers of an event stream, after `Date`:
///
/// - `Content-Type: text/event-stream`: `EventSource` accepts no other type (and a wrong one makes
///   it give up for good, without reconnecting).
/// - `Cache-Control: no-cache`: a cache may store the response but must ask the server before
///   reusing it (RFC 9111 §5.2.2.4), so no client is served a stored copy of a live stream.
/// - `Connection: keep-alive`: what Node's examples send (Node adds it by itself). It says "keep
///   this connection open after the response" to HTTP/1.0 peers; it does not make the stream
///   last, since a body without a length ends only when the connection closes anyway. HTTP/2
///   forbids connection-specific headers, so a proxy speaking HTTP/2 drops it.
/// - `X-Accel-Buffering: no`: asks nginx-style proxies to pass each frame on at once instead of
///   collecting a buffer-full first.
///
/// No `Content-Length` and no chunked encoding: the body simply ends when the connection closes.
pub const EVENT_STREAM_HEADERS: [(&str, &str); 4] = [
    ("Content-Type", sse::CONTENT_TYPE),
    ("Cache-Control", "no-cache"),
    ("Connection", "keep-alive"),
    ("X-Accel-Buffering", "no"),
];

/// `GET /events`: the event stream. Runs until the client goes away (or is dropped).
///
/// # Errors
/// The hub has no place for the stream (nothing was written: the routes answer 503).
pub fn serve_events(
    stream: &Arc<TcpStream>,
    peer: SocketAddr,
    request: &Request,
    hub: &Hub,
) -> Result<(), HubError> {
    // A reconnecting browser sends the id of the last event it saw. Anything but a plain decimal
    // number is ignored and the stream starts live.
    let last_event_id = request.header("last-event-id").and_then(wire::decimal);
    // Node: `clients.add(res)`. The place is given back when the subscription ends.
    let mut subscription = hub.subscribe(last_event_id)?;
    eprintln!(
        "{peer} connected to /events (clients: {})",
        subscription.clients
    );

    // The stream only ever ends with an error: the client is gone, too slow, or dropped. A
    // client that closed is usually noticed by the second write after it left: the first is
    // accepted by our kernel, and the client's kernel answers it with a reset.
    let Err(err) = write_stream(stream, &mut subscription);
    // Closed now, both ways: a writer thread may hold the socket a little longer (until the
    // client's next due tick), and the browser should see the end at once.
    let _ = stream.shutdown(Shutdown::Both);
    let why = match Failure::of(&err) {
        Failure::Other => err.to_string(),
        failure => failure.to_string(),
    };
    let left = subscription.leave();
    eprintln!("{peer} left /events: {why} (clients: {left})");
    Ok(())
}

/// Writes the stream: head, the opening comment, `retry`, then whatever the subscription sends
/// (missed broadcasts, then ticks and live broadcasts) until a write fails.
fn write_stream(
    stream: &Arc<TcpStream>,
    subscription: &mut Subscription<'_>,
) -> io::Result<Infallible> {
    // Head and first frames in one write: Node's `res.writeHead(...)` + `res.flushHeaders()`.
    // The client sees the 200 and fires `open` right away, not at the first tick.
    let mut first = http::head(Status::OK, &EVENT_STREAM_HEADERS);
    // A comment line first, to show one on the wire: `EventSource` ignores it.
    first.extend_from_slice(&sse::comment_line(sse::OPENING_COMMENT));
    first.extend_from_slice(&sse::retry_frame(sse::RETRY_MS));
    (&**stream).write_all(&first)?;
    subscription.run(stream)
}
