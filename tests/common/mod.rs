//! Helpers shared by the integration tests: a server on port 0, an HTTP client (ureq), raw
//! sockets for what ureq will not send, and an event-stream reader that parses frames the way
//! the HTML spec tells browsers to, so tests check what a browser would see.
#![allow(dead_code)] // each test file uses its own share of these helpers

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sse_server::hub::Hub;
use sse_server::server::ServerHandle;
use sse_server::{Config, Server};

/// What every stream starts with: one comment line, then `retry: 3000` and its blank line.
pub const OPENING: &str = ": connected: ids count broadcasts, ticks carry none\nretry: 3000\n\n";

/// The server binary, as a user starts it.
pub const BIN: &str = env!("CARGO_BIN_EXE_sse-server");

/// Long enough for anything that should happen "at once", even on a loaded 2-core machine.
pub const PROMPTLY: Duration = Duration::from_secs(5);

/// A server running in this process on a free port; stopped (threads and all) when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub hub: Arc<Hub>,
    /// Dropping it shuts the server down.
    _handle: ServerHandle,
}

impl TestServer {
    /// Starts a server with default settings except port 0 and whatever `tweak` changes.
    pub fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config {
            port: 0,
            ..Config::default()
        };
        tweak(&mut config);
        let server = Server::bind(config).expect("bind on port 0");
        let handle = server.spawn().expect("start the accept loop");
        TestServer {
            addr: handle.addr(),
            hub: Arc::clone(handle.hub()),
            _handle: handle,
        }
    }

    /// A server whose ticks come every `ms` milliseconds.
    pub fn with_interval(ms: u64) -> TestServer {
        TestServer::start(|c| c.interval = Duration::from_millis(ms))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Open `/events` streams, as the server counts them.
    pub fn clients(&self) -> usize {
        self.hub.clients()
    }

    /// Waits (bounded) until the server counts `n` clients; panics if it never does.
    pub fn wait_for_clients(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.clients() != n {
            assert!(
                Instant::now() < deadline,
                "expected {n} clients, the server counts {}",
                self.clients()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Broadcasts `message` with `POST /send` (text/plain) and returns the answer's id.
    pub fn send(&self, message: &str) -> u64 {
        let (status, body) = post(&self.url("/send"), "text/plain; charset=utf-8", message);
        assert_eq!(status, 200, "{body}");
        json_number(&body, "id")
    }

    /// Sends raw bytes on a new connection and returns everything the server answers.
    pub fn raw(&self, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(PROMPTLY)).unwrap();
        stream.write_all(request).unwrap();
        read_to_close(&mut stream)
    }
}

/// Reads until the server closes (or the read timeout ends it).
pub fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw response, e.g. `400` from `HTTP/1.1 400 Bad Request`.
pub fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// An agent that returns 4xx/5xx responses instead of errors, so tests can look at them.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(PROMPTLY))
        .build()
        .into()
}

/// `GET url`: status, `Content-Type`, body.
pub fn get(url: &str) -> (u16, String, String) {
    let mut response = agent().get(url).call().expect("GET");
    let content_type = header(&response, "content-type");
    let body = response.body_mut().read_to_string().expect("body");
    (response.status().as_u16(), content_type, body)
}

/// `POST url` with a body of `content_type`: status and body.
pub fn post(url: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut response = agent()
        .post(url)
        .header("Content-Type", content_type)
        .send(body)
        .expect("POST");
    let text = response.body_mut().read_to_string().expect("body");
    (response.status().as_u16(), text)
}

pub fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Reads one number field from a flat JSON object like `{"id": 3, "clients": 2}`.
pub fn json_number(json: &str, field: &str) -> u64 {
    let key = format!("\"{field}\":");
    let rest = &json[json
        .find(&key)
        .unwrap_or_else(|| panic!("{field} in {json}"))
        + key.len()..];
    rest.trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number for {field} in {json}"))
}

/// A header's value in a response head (the status line skipped, names compared without case).
pub fn header_in(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// `command` without the settings the server reads from the environment
/// (`sse_server::config::env_vars()`), so that the tester's own do not change what it runs.
pub fn without_server_env(command: &mut Command) -> &mut Command {
    for name in sse_server::config::env_vars() {
        command.env_remove(name);
    }
    command
}

/// The server binary with none of our own environment's settings, on a free port.
pub fn server_command() -> Command {
    let mut command = Command::new(BIN);
    without_server_env(&mut command).env("PORT", "0");
    command
}

/// Reads the line `child` prints first on stdout (taking its stdout), which must carry the
/// address, and returns the URL in it: `http://127.0.0.1:PORT/`.
pub fn startup_url(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut line)
        .expect("a startup line");
    let start = line
        .find("http://")
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    line[start..].trim_end().to_string()
}

/// The first event `next_event` (given the time left) brings within `within` that is not a
/// tick; None if none does.
fn skip_ticks(
    within: Duration,
    mut next_event: impl FnMut(Duration) -> Option<Event>,
) -> Option<Event> {
    let deadline = Instant::now() + within;
    loop {
        let event = next_event(deadline.saturating_duration_since(Instant::now()))?;
        if event.kind != "tick" {
            return Some(event);
        }
    }
}

/// One event as a browser's `EventSource` would dispatch it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `event.type`: the `event:` field, or `message` without one.
    pub kind: String,
    pub data: String,
    /// `event.lastEventId`: the last `id:` seen on this stream, up to and including this event.
    pub last_event_id: String,
}

/// A `GET /events` connection read through the spec's parser ([`Parser`]).
pub struct EventStream {
    pub stream: TcpStream,
    /// The response head as received, status line included.
    pub head: String,
    /// Every body byte received so far.
    pub raw: Vec<u8>,
    pub parser: Parser,
}

impl EventStream {
    /// Connects and sends `GET /events` with `headers`; reads the response head.
    pub fn open(addr: SocketAddr, headers: &[(&str, &str)]) -> EventStream {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PROMPTLY)).unwrap();
        let mut request =
            format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();

        let mut received = Vec::new();
        let mut byte = [0u8; 1];
        while !received.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => received.push(byte[0]),
                other => panic!(
                    "response head incomplete ({other:?}): {:?}",
                    String::from_utf8_lossy(&received)
                ),
            }
        }
        EventStream {
            stream,
            head: String::from_utf8(received).expect("an ASCII head"),
            raw: Vec::new(),
            parser: Parser::new(),
        }
    }

    pub fn status(&self) -> u16 {
        status_of(&self.head)
    }

    /// The value of a response header (names compared without case).
    pub fn header(&self, name: &str) -> Option<String> {
        header_in(&self.head, name)
    }

    /// Reads one more chunk of the body (into `raw` and the parser) by `deadline`: its length, 0
    /// at end of stream; an error on timeout (a deadline already past included) or a failed read.
    fn read_chunk(&mut self, deadline: Instant) -> std::io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 16 * 1024];
        let n = self.stream.read(&mut buf)?;
        self.raw.extend_from_slice(&buf[..n]);
        self.parser.push(&buf[..n]);
        Ok(n)
    }

    /// Reads at least one more chunk of the body; false on timeout or end of stream.
    fn fill(&mut self, deadline: Instant) -> bool {
        matches!(self.read_chunk(deadline), Ok(1..))
    }

    /// Reads until the raw body contains `bytes`; false if it does not within `within`.
    pub fn wait_for_raw(&mut self, bytes: &[u8], within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.raw.windows(bytes.len()).any(|w| w == bytes) {
            if !self.fill(deadline) {
                return false;
            }
        }
        true
    }

    /// The next event the browser would dispatch, within `within`; None if none arrives.
    pub fn next_event(&mut self, within: Duration) -> Option<Event> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(event) = self.parser.next_event() {
                return Some(event);
            }
            if !self.fill(deadline) {
                return None;
            }
        }
    }

    /// The next event that is not a tick.
    pub fn next_message(&mut self, within: Duration) -> Option<Event> {
        skip_ticks(within, |left| self.next_event(left))
    }

    /// Whether the server closed the stream within `within` (reads until end of stream).
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            match self.read_chunk(deadline) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    }
}

/// The HTML spec's "interpreting an event stream" (§9.2.6), fed bytes: what a browser's
/// `EventSource` does with the body. `tests/browser_rules.rs` checks it rule by rule, and
/// `tests/browser_lab.rs` against headless Chromium and Firefox, preset by preset. Where the
/// spec is silent or a browser departs from it, a comment says which browser it follows.
#[derive(Default)]
pub struct Parser {
    /// Bytes received and not yet part of a complete line.
    unread: Vec<u8>,
    /// The start of the stream is behind us (a leading BOM has been looked for).
    started: bool,
    /// A CR ended the last line; an LF right after it belongs to the same line end.
    after_cr: bool,
    // The three buffers, named as in the spec.
    data: String,
    event_type: String,
    last_event_id_buffer: String,
    /// The `EventSource`'s "last event ID string": set from the buffer at every dispatch, even
    /// one that fires nothing; sent back as `Last-Event-ID` on a reconnect.
    pub last_event_id: String,
    /// The event stream's reconnection time, once a `retry:` line has set it (before that: the
    /// browser's own default, which the spec leaves to it: Chromium 3000 ms, Firefox 5000 ms).
    pub reconnection_time: Option<u64>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Adds received body bytes; nothing is parsed until [`Parser::next_event`].
    pub fn push(&mut self, bytes: &[u8]) {
        self.unread.extend_from_slice(bytes);
    }

    /// Pushes `bytes` and returns every event they complete, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.push(bytes);
        std::iter::from_fn(|| self.next_event()).collect()
    }

    /// The stream ended: whatever was not dispatched by a blank line is discarded.
    pub fn end(&mut self) {
        self.unread.clear();
        self.after_cr = false;
        self.data.clear();
        self.event_type.clear();
    }

    /// The next event the received bytes complete, or None if they complete no more.
    pub fn next_event(&mut self) -> Option<Event> {
        while let Some(line) = self.take_line() {
            if let Some(event) = self.process_line(&line) {
                return Some(event);
            }
        }
        None
    }

    /// The next complete line (without its line end), or None if none is complete yet.
    fn take_line(&mut self) -> Option<String> {
        // UTF-8 decoding strips one leading byte order mark (U+FEFF, bytes EF BB BF).
        if !self.started {
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            let n = self.unread.len().min(BOM.len());
            if self.unread[..n] != BOM[..n] {
                self.started = true;
            } else if n == BOM.len() {
                self.unread.drain(..n);
                self.started = true;
            } else {
                return None; // could still be a BOM: wait for more bytes
            }
        }
        // An LF right after a CR that ended the previous line belongs to that line end, even
        // if it arrives in a later read.
        if self.after_cr {
            match self.unread.first() {
                None => return None,
                Some(b'\n') => {
                    self.unread.remove(0);
                }
                Some(_) => {}
            }
            self.after_cr = false;
        }
        let end = self.unread.iter().position(|&b| b == b'\n' || b == b'\r')?;
        // The stream is decoded as UTF-8 whatever the headers say (as Firefox does; Chromium
        // departs: it refuses a `charset` other than UTF-8, before any byte); invalid bytes
        // become U+FFFD. CR and LF never occur inside a multi-byte character, so decoding a line at a
        // time gives the same text as decoding the whole stream.
        let line = String::from_utf8_lossy(&self.unread[..end]).into_owned();
        self.after_cr = self.unread[end] == b'\r';
        self.unread.drain(..=end);
        Some(line)
    }

    /// One line: a blank line dispatches, a line starting with `:` is a comment, any other line
    /// is `field:value` (one leading space of the value removed) or a field name alone.
    fn process_line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None; // a comment
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        // Field names are compared exactly: `Data` is not `data`.
        match field {
            "event" => self.event_type = value.to_string(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // An id containing NUL is ignored, as Chromium does. (Firefox departs: it also drops
            // the next line, whose field name it reads as "id" plus that line's name.)
            "id" if !value.contains('\0') => self.last_event_id_buffer = value.to_string(),
            // ASCII digits only, in effect at once. The spec is silent on an empty value (no
            // digits are "only ASCII digits", but which integer are they?): this parser reads 0,
            // as Firefox does (which then raises it to its 500 ms minimum); Chromium goes back
            // to its 3000 ms default instead. Too many digits for a u64: ignored, as Chromium.
            "retry" if value.bytes().all(|b| b.is_ascii_digit()) => {
                if value.is_empty() {
                    self.reconnection_time = Some(0);
                } else if let Ok(ms) = value.parse() {
                    self.reconnection_time = Some(ms);
                }
            }
            _ => {} // unknown fields, an id with NUL, a retry that is not digits: ignored
        }
        None
    }

    /// The blank line: set the last event ID, fire the event if there is data, reset the
    /// data and event type buffers (not the last event ID buffer).
    fn dispatch(&mut self) -> Option<Event> {
        // Even a frame that fires nothing sets it, as Chromium does. (Firefox departs: it keeps
        // an id only when its frame fires an event.)
        self.last_event_id = self.last_event_id_buffer.clone();
        let kind = std::mem::take(&mut self.event_type);
        if self.data.is_empty() {
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the LF after the last data line
        Some(Event {
            // No `event:` line, or an empty one: type `message`, which `onmessage` gets. So does
            // `event: message`, the same type spelled out.
            kind: if kind.is_empty() {
                "message".to_string()
            } else {
                kind
            },
            data,
            last_event_id: self.last_event_id.clone(),
        })
    }
}

/// Headless Firefox over WebDriver BiDi.
pub mod bidi;
/// Headless Chromium over the DevTools protocol.
pub mod cdp;
/// curl as the browser, for the tests behind nginx.
pub mod curl;
/// Quoting and reading JSON, for the browser drivers.
pub mod json;
/// The page's Lab presets.
pub mod lab;
/// A real redis-server for the tests that share a log through Redis.
pub mod redis;
/// Finding a tool, a free port, a scratch directory: for the tests that run other programs.
pub mod tools;
/// The WebSocket client both browser drivers talk through.
pub mod websocket;
