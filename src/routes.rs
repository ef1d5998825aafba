//! The three routes, one function each, in the shape of a Node `http.createServer` handler:
//!
//! | route          | function           | answers                                   |
//! |----------------|--------------------|-------------------------------------------|
//! | `GET /`        | [`serve_page`]     | `index.html`                              |
//! | `GET /events`  | [`stream_events`]  | the event stream, until the client leaves |
//! | `/send`        | [`send_message`]   | broadcasts a message, answers JSON        |
//!
//! Every connection carries one request; each thread runs [`handle_connection`] and ends with it.

use std::convert::Infallible;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::event_log::Broadcast;
use crate::fanout::Client;
use crate::http::{self, HeadError, Request, Response, Status};
use crate::server::Shared;
use crate::{sse, timestamp, urlencoded};

/// The browser page, compiled into the binary so `GET /` works from any working directory.
pub const PAGE: &str = include_str!("../index.html");

/// How long a client told "503, too many clients" should wait before trying again, in seconds.
pub const RETRY_AFTER_SECS: u32 = 5;

/// The headers of an event stream after its `Content-Type` (see [`event_stream_head`]).
///
/// - `Cache-Control: no-cache`: a cache may not answer from a stored copy without asking the
///   server first (RFC 9111 §5.2.2.4), so every client gets the live stream, never a replay.
/// - `Connection: keep-alive`: an HTTP/1.1 connection stays open by default anyway, and a body
///   without a length can only end when the connection closes; the header says "this connection
///   stays" to HTTP/1.0 clients and proxies, as the Node examples do. HTTP/2 forbids
///   connection-specific headers, so a proxy speaking HTTP/2 drops it.
/// - `X-Accel-Buffering: no`: asks nginx-style proxies to pass each frame on at once instead of
///   collecting a buffer-full first.
///
/// No `Content-Length` and no chunked encoding: the body simply ends when the connection closes.
pub const EVENT_STREAM_HEADERS: &str = "Cache-Control: no-cache\r\n\
    Connection: keep-alive\r\n\
    X-Accel-Buffering: no\r\n";

/// The response head of an event stream: Node's
/// `res.writeHead(200, { 'Content-Type': 'text/event-stream', ... })`. The status must be 200 and
/// the type `text/event-stream` ([`sse::CONTENT_TYPE`]), or `EventSource` gives up for good.
/// `Date` is required of a server with a clock (RFC 9110 §6.6.1), and Node adds it by default.
pub fn event_stream_head() -> String {
    let date = timestamp::http_date_now();
    let content_type = sse::CONTENT_TYPE;
    format!(
        "HTTP/1.1 200 OK\r\nDate: {date}\r\nContent-Type: {content_type}\r\n{EVENT_STREAM_HEADERS}\r\n"
    )
}

/// 503 with `Retry-After`: the answer when no more clients (or threads) can be taken.
pub fn service_unavailable(why: &str) -> Response {
    Response::text(Status::SERVICE_UNAVAILABLE, why)
        .with_header("Retry-After", RETRY_AFTER_SECS.to_string())
}

/// Reads one request from a new connection and answers it.
pub fn handle_connection(stream: &Arc<TcpStream>, peer: SocketAddr, shared: &Shared) {
    // Every write may block for at most this long: a client that stops reading is dropped
    // instead of holding its thread forever.
    let _ = stream.set_write_timeout(Some(shared.config.write_timeout));
    // Send each frame as soon as it is written; Nagle's algorithm would hold small writes back
    // while an earlier packet waits for its ACK.
    let _ = stream.set_nodelay(true);

    // The whole request, head and body, must arrive within this time (reads below set their
    // socket timeout from it).
    let deadline = Instant::now() + shared.config.head_timeout;
    let mut request = match http::read_request(stream, deadline) {
        Ok(request) => request,
        Err(err) => return answer_error(stream, peer, None, &err),
    };
    let response = match (request.path(), request.method.as_str()) {
        ("/", "GET" | "HEAD") => serve_page(),
        ("/events", "GET") => return stream_events(stream, peer, &request, shared),
        ("/send", "GET" | "POST") => match send_message(stream, &mut request, deadline, shared) {
            Ok(response) => response,
            Err(err) => return answer_error(stream, peer, Some(&request), &err),
        },
        ("/", _) => method_not_allowed("GET, HEAD"),
        ("/events", _) => method_not_allowed("GET"),
        ("/send", _) => method_not_allowed("GET, POST"),
        _ => Response::text(Status::NOT_FOUND, "not found: try /, /events or /send"),
    };
    respond(stream, peer, &request, &response);
}

/// `GET /`: the page (`res.writeHead(200, {'Content-Type': 'text/html'}); res.end(html)`).
pub fn serve_page() -> Response {
    Response::new(Status::OK, "text/html; charset=utf-8", PAGE)
}

/// 405, with `Allow` listing the methods that would work (RFC 9110 §15.5.6 requires it).
fn method_not_allowed(allow: &str) -> Response {
    Response::text(
        Status::METHOD_NOT_ALLOWED,
        &format!("method not allowed; use {allow}"),
    )
    .with_header("Allow", allow)
}

/// `GET /events`: the event stream. Runs until the client goes away.
///
/// The Node version is the classic handler: `res.writeHead(200, headers)`, `res.flushHeaders()`,
/// `setInterval(() => res.write(tick), 1000)`, and `res.on('close', ...)` to clean up. Here the
/// thread *is* the handler: it writes the head, then loops, sleeping until its next tick or until
/// it is woken for a broadcast, and it learns that the client left when a write fails (its own,
/// or a writer thread's: see `fanout.rs`).
pub fn stream_events(
    stream: &Arc<TcpStream>,
    peer: SocketAddr,
    request: &Request,
    shared: &Shared,
) {
    // Node: `clients.add(res)`; the slot is given back when this function returns, whatever the
    // reason, like `res.on('close', () => clients.delete(res))`.
    let Some((slot, clients)) = ClientSlot::claim(&shared.clients, shared.config.max_clients)
    else {
        // A browser gives up on a non-200 answer for good; the page itself retries later.
        let busy = service_unavailable("too many clients, try again later");
        return respond(stream, peer, request, &busy);
    };
    // A reconnecting browser sends the id of the last event it saw. Anything but a plain decimal
    // number is ignored and the stream starts live.
    let last_event_id = request
        .header("last-event-id")
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok());
    let (missed, cursor) = shared.log.start(last_event_id);
    eprintln!("{peer} connected to /events (clients: {clients})");

    // The stream only ever ends with an error: the client is gone, or too slow. A client that
    // closed is usually noticed by the second write after it left: the first is accepted by our
    // kernel, and the client's kernel answers it with a reset.
    let Err(err) = write_stream(stream, missed, cursor, shared);
    let why = match err.kind() {
        io::ErrorKind::BrokenPipe => "closed".to_string(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => "reset".to_string(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".to_string(),
        _ => err.to_string(),
    };
    let left = slot.release();
    eprintln!("{peer} left /events: {why} (clients: {left})");
}

/// Writes the stream: head, `retry`, missed broadcasts, then ticks and broadcasts until a write
/// fails. That failure is the only way out, hence `Infallible` for the `Ok` side.
fn write_stream(
    stream: &Arc<TcpStream>,
    missed: Vec<Broadcast>,
    cursor: u64,
    shared: &Shared,
) -> io::Result<Infallible> {
    let mut out = &**stream;
    // Head and first frame in one write: Node's `res.writeHead(...)` + `res.flushHeaders()`.
    // The client sees the 200 and fires `open` right away, not at the first tick.
    let mut first = event_stream_head().into_bytes();
    first.extend_from_slice(&sse::retry_frame(sse::RETRY_MS));
    out.write_all(&first)?;
    // Replay what a reconnecting client missed, oldest first.
    for broadcast in &missed {
        out.write_all(&broadcast.frame)?;
    }
    drop(missed);

    // From here on, broadcasts reach this client through the fan-out (see fanout.rs): this
    // thread is woken to write them itself, or the writer threads write them for it.
    let fast = shared.fanout.uses_writers();
    if fast {
        // Writers must never wait on a socket, so it becomes non-blocking before they see it.
        stream.set_nonblocking(true)?;
    }
    let client = Arc::new(Client::new(Arc::clone(stream), cursor, fast));
    let _membership = shared.fanout.join(Arc::clone(&client));

    // Node's `setInterval(tick, interval)`: the first tick one interval after connecting, then one
    // every interval. `due` keeps the exact schedule; the thread wakes at `due` rounded up to the
    // tick grid.
    let interval = shared.config.interval;
    let mut due = Instant::now() + interval;
    loop {
        // Whatever woke us (a broadcast, a writer handing the client back, the timer), catch up:
        // write what this client has not had yet, and the tick if it is time.
        let now = Instant::now();
        let tick = (now >= wake_time(due, shared)).then(|| sse::tick_frame(&timestamp::now()));
        client.catch_up(&shared.log, tick.as_deref())?;
        if tick.is_some() {
            due += interval;
            // After a write that blocked for longer than an interval: one interval from now,
            // rather than a burst of late ticks.
            if due <= now {
                due = now + interval;
            }
        }
        // Sleep until the next tick, or until `unpark` (fanout.rs) wakes us early.
        thread::park_timeout(wake_time(due, shared).saturating_duration_since(Instant::now()));
    }
}

/// Ticks fall on a grid of this step, counted from the server's start. At 10,000 clients threads
/// wake up 10,000 times a second for ticks; on the grid they wake in batches, which the kernel
/// handles more cheaply than scattered timers (measured: about a third less CPU at 10,000
/// clients, see README "Performance"). Each tick is late by less than this step; the schedule
/// itself does not drift.
pub const TICK_GRID: Duration = Duration::from_millis(10);

/// When to wake for a tick due at `due`: rounded up to the [`TICK_GRID`], for intervals of at
/// least ten grid steps. Shorter intervals (demos, tests) tick exactly on time.
fn wake_time(due: Instant, shared: &Shared) -> Instant {
    if shared.config.interval < TICK_GRID * 10 {
        return due;
    }
    let since_start = due.saturating_duration_since(shared.started).as_nanos();
    let step = TICK_GRID.as_nanos();
    let rounded = since_start.div_ceil(step) * step;
    let rounded = Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX));
    shared.started.checked_add(rounded).unwrap_or(due)
}

/// One place in the count of open streams; dropping it gives the place back.
struct ClientSlot<'a>(&'a AtomicUsize);

impl<'a> ClientSlot<'a> {
    /// Takes a place if fewer than `cap` are taken; returns it with the new count.
    fn claim(count: &'a AtomicUsize, cap: usize) -> Option<(ClientSlot<'a>, usize)> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|before| (ClientSlot(count), before + 1))
    }
}

impl ClientSlot<'_> {
    /// Gives the place back now; returns how many are still taken.
    fn release(self) -> usize {
        let before = self.0.fetch_sub(1, Ordering::AcqRel);
        std::mem::forget(self); // already given back: no second decrement on drop
        before - 1
    }
}

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `/send`: broadcasts one message to every `/events` client and answers
/// `{"id": <n>, "clients": <count>}`.
///
/// The message comes from `GET /send?message=...` (percent-encoded), or from a `POST` body: a
/// form (`message=...`, percent-encoded) or any other body taken verbatim as text.
///
/// # Errors
/// Anything wrong with the body as [`HeadError`] (too large, timed out, bad `Content-Length`).
pub fn send_message(
    stream: &TcpStream,
    request: &mut Request,
    deadline: Instant,
    shared: &Shared,
) -> Result<Response, HeadError> {
    // GET changes state here, which HTTP frowns on (GET is meant to be "safe": a link prefetcher
    // may follow it). It is kept because the contract asks for it: a broadcast from the address bar.
    let message = if request.method == "GET" {
        request
            .query()
            .and_then(|query| urlencoded::find(query.as_bytes(), "message"))
    } else {
        let body = http::read_body(stream, request, deadline)?;
        // The media type without parameters (`; charset=...`), compared without case.
        let is_form = request.header("content-type").is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
        if is_form {
            urlencoded::find(&body, "message")
        } else {
            Some(body)
        }
    };
    let message = match message {
        None => {
            return Err(HeadError::Malformed(
                "no message: send ?message=..., a form field message=..., or a text/plain body",
            ))
        }
        Some(bytes) if bytes.is_empty() => {
            return Err(HeadError::Malformed("the message is empty"))
        }
        // Event streams are UTF-8 only (the browser decodes them as UTF-8 whatever we say).
        Some(bytes) => String::from_utf8(bytes)
            .map_err(|_| HeadError::Malformed("the message is not valid UTF-8"))?,
    };

    let id = shared.broadcast(&message);
    let clients = shared.clients.load(Ordering::Relaxed);
    eprintln!(
        "broadcast #{id} ({} bytes, clients: {clients})",
        message.len()
    );
    Ok(Response::new(
        Status::OK,
        "application/json",
        format!("{{\"id\": {id}, \"clients\": {clients}}}"),
    ))
}

/// Writes a complete response, logs it if it is an error, and closes the connection.
fn respond(stream: &TcpStream, peer: SocketAddr, request: &Request, response: &Response) {
    if response.status.0 >= 400 {
        let why = String::from_utf8_lossy(&response.body);
        log_error(peer, Some(request), response.status, why.trim_end());
    }
    send_and_close(stream, &response.to_bytes(request.method != "HEAD"));
}

/// Answers a request that could not be read, or whose body was bad (`request` is `None` when
/// not even its head could be read).
fn answer_error(stream: &TcpStream, peer: SocketAddr, request: Option<&Request>, err: &HeadError) {
    let Some(status) = err.status() else {
        return; // the client is gone: nobody to answer
    };
    log_error(peer, request, status, err.reason());
    send_and_close(stream, &Response::text(status, err.reason()).to_bytes(true));
}

/// One log line per error response: who, what they asked for, the status, and why. The path
/// only, not the query: a query can carry a message, and messages do not belong in logs.
pub fn log_error(peer: SocketAddr, request: Option<&Request>, status: Status, why: &str) {
    let asked = match request {
        Some(request) => format!("{} {}", request.method, request.path()),
        None => "(no request read)".to_string(),
    };
    let Status(code, reason) = status;
    eprintln!("{peer} {asked}: {code} {reason}: {why}");
}

/// Writes `bytes` and closes politely: first our sending side (`shutdown`), then we read and drop
/// whatever the client still sends, briefly. Closing a socket with unread data makes the kernel
/// send a reset, and a reset can destroy the response before the client has read it (RFC 9112
/// §9.6 calls this a "lingering close").
fn send_and_close(mut stream: &TcpStream, bytes: &[u8]) {
    if stream.write_all(bytes).is_err() {
        return;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    http::drain(stream);
}
