//! Just enough HTTP/1.1 (RFC 9112) to read one request and write one response, by hand.
//!
//! Node's `http.createServer` does all of this before your handler runs; here it is in the open.
//! A request is a *head* (request line, header lines, a blank line) and maybe a *body*:
//!
//! ```text
//! GET /events HTTP/1.1\r\n          <- request line: method, target, version
//! Host: localhost:3000\r\n          <- header lines: name ":" value
//! Last-Event-ID: 4\r\n
//! \r\n                              <- blank line: the head ends here
//! ```
//!
//! Everything a client sends is untrusted, so every read is bounded in size and in time, and every
//! way a head can be wrong maps to one [`RequestError`] and from there to one status code.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::timestamp;

/// Largest request head we accept, counting the request line and the header lines with their line
/// ends (not the blank line after them): 8 KiB, the contract's limit and a common server default.
/// Beyond it: 431 Request Header Fields Too Large.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most header lines in one request (Node's `server.maxHeadersCount` is 2000; 100 is plenty for
/// a browser). Beyond it: 431.
pub const MAX_HEADERS: usize = 100;
/// Largest request body (a `/send` message): 64 KiB. Beyond it: 413 Content Too Large.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a closing connection keeps reading what the client still sends (see [`drain`]).
pub const LINGER: Duration = Duration::from_millis(500);
/// Most bytes read and thrown away while closing.
pub const LINGER_BYTES: usize = 256 * 1024;

/// The HTTP version a client spoke. We answer in HTTP/1.1 either way (RFC 9110 §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// One parsed request head: plain data. (The body is read separately, by the [`RequestReader`].)
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent, e.g. `/send?message=hi` (origin-form, RFC 9112 §3.2.1).
    pub target: String,
    pub version: Version,
    /// Header names as sent; look them up with [`Request::header`], which ignores case.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name`; header names are case-insensitive (RFC 9110 §5.1).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The target without its query: `/send?message=hi` → `/send`.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query string without the `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// Whether the client waits for `100 Continue` before sending its body. Only HTTP/1.1
    /// clients know interim responses; an HTTP/1.0 client never waits for one (RFC 9110 §10.1.1).
    pub fn expects_continue(&self) -> bool {
        self.version == Version::Http11
            && self
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    }
}

/// Everything a request can get wrong, from a bad head to a full server, each mapped to one
/// status and one reason in [`RequestError::status_and_reason`] (the idea comes from tiny_http's
/// private error enum). The reason is sent as the body of the error response and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The client closed or reset the connection: nobody is left to answer.
    Closed,
    /// The head (or body) did not arrive before the deadline: 408 Request Timeout.
    TimedOut,
    /// The head is over [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`]: 431.
    HeadTooLarge,
    /// The body is over [`MAX_BODY_BYTES`]: 413.
    BodyTooLarge,
    /// The request line or a header breaks the grammar: 400, with the rule that was broken.
    Malformed(&'static str),
    /// `HTTP/2.0` and friends over a plain socket: 505 HTTP Version Not Supported.
    UnsupportedVersion,
    /// A body sent with `Transfer-Encoding` (chunked) instead of `Content-Length`: 501.
    TransferEncoding,
    /// `/send` without a message: 400.
    NoMessage,
    /// `/send` with an empty message: 400.
    EmptyMessage,
    /// `/send` with a message that is not UTF-8 (event streams are UTF-8 only): 400.
    NotUtf8,
    /// A request from a page of another site to a route that changes state: 403, with why.
    CrossSite(&'static str),
    /// No such path: 404.
    NotFound,
    /// A known path with the wrong method: 405, with the methods that would work.
    MethodNotAllowed { allow: &'static str },
    /// As many `/events` streams as the cap allows are open: 503.
    TooManyClients,
    /// As many connections as the server will hold are open: 503 from the accept loop.
    TooManyConnections,
    /// The system would not start another thread: 503 from the accept loop.
    NoThread(String),
    /// The shared log (Redis) cannot be reached, so `/send` cannot broadcast: 503.
    LogUnavailable,
    /// The shared log (Redis) took the message but its answer was lost, and it could not be
    /// asked in time whether the message went out: 503, saying it may or may not have.
    LogUnconfirmed,
    /// The server is stopping and takes no new stream: 503.
    ShuttingDown,
}

/// How long a client told "503" should wait before trying again, in seconds (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 5;

impl RequestError {
    /// The status to answer with and why, or `None` when the client is already gone.
    pub fn status_and_reason(&self) -> Option<(Status, String)> {
        let (status, reason) = match self {
            RequestError::Closed => return None,
            RequestError::TimedOut => (
                Status::REQUEST_TIMEOUT,
                "request not complete within the time limit".to_string(),
            ),
            RequestError::HeadTooLarge => (
                Status::HEADERS_TOO_LARGE,
                format!(
                    "request head over {} KiB or over {MAX_HEADERS} header lines",
                    MAX_HEAD_BYTES / 1024
                ),
            ),
            RequestError::BodyTooLarge => (
                Status::CONTENT_TOO_LARGE,
                format!("request body over {} KiB", MAX_BODY_BYTES / 1024),
            ),
            RequestError::Malformed(why) => (Status::BAD_REQUEST, why.to_string()),
            RequestError::UnsupportedVersion => (
                Status::VERSION_NOT_SUPPORTED,
                "only HTTP/1.0 and HTTP/1.1 are spoken here".to_string(),
            ),
            RequestError::TransferEncoding => (
                Status::NOT_IMPLEMENTED,
                "send the body with Content-Length, not Transfer-Encoding".to_string(),
            ),
            RequestError::NoMessage => (
                Status::BAD_REQUEST,
                "no message: send ?message=..., a form field message=..., or a text/plain body"
                    .to_string(),
            ),
            RequestError::EmptyMessage => (Status::BAD_REQUEST, "the message is empty".to_string()),
            RequestError::NotUtf8 => (
                Status::BAD_REQUEST,
                "the message is not valid UTF-8".to_string(),
            ),
            RequestError::CrossSite(why) => (Status::FORBIDDEN, why.to_string()),
            RequestError::NotFound => (
                Status::NOT_FOUND,
                "not found: try /, /events, /send or /drop".to_string(),
            ),
            RequestError::MethodNotAllowed { allow } => (
                Status::METHOD_NOT_ALLOWED,
                format!("method not allowed; use {allow}"),
            ),
            RequestError::TooManyClients => (
                Status::SERVICE_UNAVAILABLE,
                "too many clients, try again later".to_string(),
            ),
            RequestError::TooManyConnections => (
                Status::SERVICE_UNAVAILABLE,
                "too many connections".to_string(),
            ),
            RequestError::NoThread(why) => (
                Status::SERVICE_UNAVAILABLE,
                format!("cannot start a thread: {why}"),
            ),
            RequestError::ShuttingDown => (
                Status::SERVICE_UNAVAILABLE,
                "the server is shutting down".to_string(),
            ),
            RequestError::LogUnavailable => (
                Status::SERVICE_UNAVAILABLE,
                "the shared log (Redis) cannot be reached; nothing was sent, try again".to_string(),
            ),
            RequestError::LogUnconfirmed => (
                Status::SERVICE_UNAVAILABLE,
                "the shared log (Redis) could not confirm the message in time: it may or may not \
                 have been sent; look at the stream before sending it again"
                    .to_string(),
            ),
        };
        Some((status, reason))
    }

    /// The error response: the reason as a text body, plus the header some statuses require.
    /// `None` when the client is gone.
    pub fn response(&self) -> Option<Response> {
        let (status, reason) = self.status_and_reason()?;
        let response = Response::text(status, &reason);
        Some(match self {
            // 405 must say which methods would work (RFC 9110 §15.5.6).
            RequestError::MethodNotAllowed { allow } => response.with_header("Allow", *allow),
            // 503 may say when to come back (RFC 9110 §10.2.3); the page's own retry waits too.
            _ if status == Status::SERVICE_UNAVAILABLE => {
                response.with_header("Retry-After", RETRY_AFTER_SECS.to_string())
            }
            _ => response,
        })
    }
}

/// Sorts a failed read into "timed out" or "gone". With `set_read_timeout`, Linux reports a timeout
/// as `WouldBlock` (EAGAIN) and other systems as `TimedOut`.
fn read_failed(err: io::Error) -> RequestError {
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => RequestError::TimedOut,
        _ => RequestError::Closed,
    }
}

/// One `read`, but giving up at `deadline`. The timeout is set before each read, so a client that
/// sends one byte every few seconds ("slowloris") still runs out of time.
fn read_before(
    stream: &TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<usize, RequestError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(RequestError::TimedOut);
    }
    stream.set_read_timeout(Some(left)).map_err(read_failed)?;
    let mut reader = stream;
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map_err(read_failed),
        }
    }
}

/// Reads one request from a connection: the head, then the body if the route wants it. It owns
/// the bytes read past the head (the start of the body, which often arrives in the same read) and
/// the deadline both must arrive by.
pub struct RequestReader<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
    /// Bytes read past the blank line: the start of the body.
    body_start: Vec<u8>,
}

impl<'a> RequestReader<'a> {
    /// A reader for `stream` that gives up at `deadline`.
    pub fn new(stream: &'a TcpStream, deadline: Instant) -> RequestReader<'a> {
        RequestReader {
            stream,
            deadline,
            body_start: Vec::new(),
        }
    }

    /// Reads and parses one request head, all of it before the deadline.
    ///
    /// # Errors
    /// See [`RequestError`]: closed, timed out, too large, malformed, wrong version.
    pub fn read_request(&mut self) -> Result<Request, RequestError> {
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        // Where the search for the blank line resumes: only new bytes (and the 3 before them)
        // need looking at.
        let mut scanned = 0;
        loop {
            if let Some((head_len, end)) = find_head_end(&buf, scanned) {
                if head_len > MAX_HEAD_BYTES {
                    return Err(RequestError::HeadTooLarge);
                }
                self.body_start = buf.split_off(end);
                return parse_head(&buf);
            }
            // No blank line yet, and more than the limit plus one (at most 2-byte) blank line read.
            if buf.len() > MAX_HEAD_BYTES + 2 {
                return Err(RequestError::HeadTooLarge);
            }
            scanned = buf.len().saturating_sub(3);
            let n = read_before(self.stream, &mut chunk, self.deadline)?;
            if n == 0 {
                return Err(RequestError::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads the body of `request`: exactly `Content-Length` bytes, at most [`MAX_BODY_BYTES`],
    /// before the deadline. A request without `Content-Length` has no body (RFC 9112 §6.3).
    ///
    /// If the client sent `Expect: 100-continue` (curl does for bodies over 1 KiB), it waits for
    /// our interim `100 Continue` before sending the body: Node's `res.writeContinue()`.
    ///
    /// # Errors
    /// [`RequestError::BodyTooLarge`], [`RequestError::TransferEncoding`],
    /// [`RequestError::Malformed`] for a bad `Content-Length`, [`RequestError::TimedOut`],
    /// [`RequestError::Closed`].
    pub fn read_body(&mut self, request: &Request) -> Result<Vec<u8>, RequestError> {
        let length = body_length(request)?;
        let mut body = std::mem::take(&mut self.body_start);
        if body.len() < length && request.expects_continue() {
            (&*self.stream)
                .write_all(&head(Status::CONTINUE, &[]))
                .map_err(|_| RequestError::Closed)?;
        }
        let mut chunk = [0u8; 4096];
        while body.len() < length {
            let want = (length - body.len()).min(chunk.len());
            match read_before(self.stream, &mut chunk[..want], self.deadline)? {
                0 => return Err(RequestError::Closed),
                n => body.extend_from_slice(&chunk[..n]),
            }
        }
        // Bytes past Content-Length would be a second request; we answer one per connection.
        body.truncate(length);
        Ok(body)
    }
}

/// Finds the blank line that ends a head: `\r\n\r\n`, or `\n\n` from clients that use bare LF
/// (RFC 9112 §2.2 lets a server accept those). Returns the length of the request line and headers
/// (up to the blank line) and the index just past the blank line.
fn find_head_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i + 1, i + 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i + 1, i + 3));
            }
        }
        i += 1;
    }
    None
}

/// `tchar` from RFC 9110 §5.6.2: the characters allowed in a method or a header name.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses a complete head (everything up to and including the blank line).
///
/// # Errors
/// [`RequestError::Malformed`] with the rule that was broken, [`RequestError::HeadTooLarge`] for too many
/// headers, [`RequestError::UnsupportedVersion`] for a version other than 1.0 or 1.1.
pub fn parse_head(head: &[u8]) -> Result<Request, RequestError> {
    // One empty line before the request line is ignored, as RFC 9112 §2.2 recommends: some old
    // clients send a stray CRLF after a previous request's body.
    let head = head
        .strip_prefix(b"\r\n")
        .or_else(|| head.strip_prefix(b"\n"))
        .unwrap_or(head);
    // Lines end in CRLF; a bare LF is accepted too. A CR anywhere else is an attack on parsers
    // that disagree about line ends (request smuggling), so it is refused (RFC 9112 §2.2).
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let request_line = lines.next().unwrap_or_default();
    let (method, target, version) = parse_request_line(request_line)?;

    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break; // the blank line: end of the head
        }
        if headers.len() == MAX_HEADERS {
            return Err(RequestError::HeadTooLarge);
        }
        headers.push(parse_header_line(line)?);
    }
    // HTTP/1.1 requires exactly one Host, so that one address can serve many sites (RFC 9112
    // §3.2); two would leave the site in doubt.
    let hosts = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .count();
    if version == Version::Http11 && hosts == 0 {
        return Err(RequestError::Malformed(
            "HTTP/1.1 request without a Host header",
        ));
    }
    if hosts > 1 {
        return Err(RequestError::Malformed("more than one Host header"));
    }
    Ok(Request {
        method,
        target,
        version,
        headers,
    })
}

/// `method SP request-target SP HTTP-version`, exactly one space apart (RFC 9112 §3).
fn parse_request_line(line: &[u8]) -> Result<(String, String, Version), RequestError> {
    const BAD: RequestError = RequestError::Malformed("malformed request line");
    let line = std::str::from_utf8(line).map_err(|_| BAD)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD);
    };
    if !is_token(method) {
        return Err(BAD);
    }
    // Origin-form only: a path starting with `/`, printable ASCII, no spaces or controls. (RFC 9112
    // §3.2.2 asks servers to accept the absolute form `http://host/path` too; only proxies send
    // it, and this server is no proxy, so it is refused here to keep the parser small.)
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RequestError::Malformed(
            "request target must be a path starting with /",
        ));
    }
    let version = match version {
        "HTTP/1.1" => Version::Http11,
        "HTTP/1.0" => Version::Http10,
        v if v.len() == 8 && v.starts_with("HTTP/") && v.as_bytes()[6] == b'.' => {
            return Err(RequestError::UnsupportedVersion)
        }
        _ => return Err(BAD),
    };
    Ok((method.to_string(), target.to_string(), version))
}

/// `field-name ":" OWS field-value OWS` (RFC 9112 §5).
fn parse_header_line(line: &[u8]) -> Result<(String, String), RequestError> {
    // A line starting with a space or tab continues the previous one ("obs-fold"); it is obsolete
    // and a server must reject it or unfold it (RFC 9112 §5.2). Rejecting is simpler and safer.
    if line.starts_with(b" ") || line.starts_with(b"\t") {
        return Err(RequestError::Malformed("folded header line"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(RequestError::Malformed("header line without a colon"))?;
    let name = std::str::from_utf8(&line[..colon]).unwrap_or_default();
    // No space is allowed between the name and the colon (RFC 9112 §5.1).
    if !is_token(name) {
        return Err(RequestError::Malformed("malformed header name"));
    }
    let value = &line[colon + 1..];
    // Field values are visible characters, spaces and tabs; any other control byte (NUL, a lone
    // CR, DEL) is refused.
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(RequestError::Malformed(
            "control character in a header value",
        ));
    }
    let value = String::from_utf8_lossy(value);
    Ok((
        name.to_string(),
        value.trim_matches([' ', '\t']).to_string(),
    ))
}

/// How many body bytes `request` announces with `Content-Length` (0 without one).
///
/// # Errors
/// [`RequestError::TransferEncoding`], [`RequestError::BodyTooLarge`], or
/// [`RequestError::Malformed`] for a length that is not a number or two that disagree.
fn body_length(request: &Request) -> Result<usize, RequestError> {
    if request.header("transfer-encoding").is_some() {
        return Err(RequestError::TransferEncoding);
    }
    // Content-Length is digits only (RFC 9112 §6.3: no sign, no spaces). Two that disagree
    // leave the body's end in doubt, which attackers use to smuggle a second request: 400.
    let mut lengths = request
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.as_str());
    let length = match lengths.next() {
        None => 0,
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            if lengths.any(|other| other != v) {
                return Err(RequestError::Malformed(
                    "two different Content-Length headers",
                ));
            }
            v.parse::<usize>().unwrap_or(usize::MAX)
        }
        Some(_) => return Err(RequestError::Malformed("Content-Length is not a number")),
    };
    if length > MAX_BODY_BYTES {
        return Err(RequestError::BodyTooLarge);
    }
    Ok(length)
}

/// Reads and throws away what the client still sends, for at most [`LINGER`] and
/// [`LINGER_BYTES`], or until it closes its side. Used after our response, before closing.
fn drain(stream: &TcpStream) {
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut total = 0;
    while total < LINGER_BYTES {
        match read_before(stream, &mut sink, deadline) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}

/// A status code and its reason phrase, e.g. `404 Not Found`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u16, pub &'static str);

impl Status {
    pub const CONTINUE: Status = Status(100, "Continue");
    pub const OK: Status = Status(200, "OK");
    pub const BAD_REQUEST: Status = Status(400, "Bad Request");
    pub const FORBIDDEN: Status = Status(403, "Forbidden");
    pub const NOT_FOUND: Status = Status(404, "Not Found");
    pub const METHOD_NOT_ALLOWED: Status = Status(405, "Method Not Allowed");
    pub const REQUEST_TIMEOUT: Status = Status(408, "Request Timeout");
    pub const CONTENT_TOO_LARGE: Status = Status(413, "Content Too Large");
    pub const HEADERS_TOO_LARGE: Status = Status(431, "Request Header Fields Too Large");
    pub const NOT_IMPLEMENTED: Status = Status(501, "Not Implemented");
    pub const SERVICE_UNAVAILABLE: Status = Status(503, "Service Unavailable");
    pub const VERSION_NOT_SUPPORTED: Status = Status(505, "HTTP Version Not Supported");
}

/// A complete, non-streaming response: Node's `res.writeHead(status, headers)` + `res.end(body)`.
#[derive(Debug)]
pub struct Response {
    pub status: Status,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body of type `content_type`.
    pub fn new(status: Status, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: body.into(),
        }
    }

    /// A plain-text response; error pages use it so that `curl` shows a readable reason.
    pub fn text(status: Status, text: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{text}\n"))
    }

    /// Adds a header (Node's `res.setHeader(name, value)` before `writeHead`).
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes on the wire: the head from [`head`], then `Content-Length` (where the body ends)
    /// and `Connection: close` (we close after it: this server answers one request per
    /// connection, which keeps every thread's story short). With `include_body` false (a HEAD
    /// request) the head is the same but no body follows (RFC 9110 §9.3.2).
    pub fn to_bytes(&self, include_body: bool) -> Vec<u8> {
        let length = self.body.len().to_string();
        let mut headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        headers.push(("Content-Length", &length));
        headers.push(("Connection", "close"));
        let mut bytes = head(self.status, &headers);
        if include_body {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// A response head: the status line, `Date`, the given headers, and the blank line. Every head
/// this server sends is written here: complete responses, the event stream's, `100 Continue`.
///
/// `Date` is required of a server that has a clock on every 2xx, 3xx and 4xx response, and allowed
/// on 1xx and 5xx (RFC 9110 §6.6.1). Node adds it unless `res.sendDate` is false, except on the
/// interim `100 Continue` (`res.writeContinue()`), which is not a response to date: nor here.
pub fn head(status: Status, headers: &[(&str, &str)]) -> Vec<u8> {
    let Status(code, reason) = status;
    let mut out = format!("HTTP/1.1 {code} {reason}\r\n");
    if code >= 200 {
        out.push_str(&format!("Date: {}\r\n", timestamp::http_date_now()));
    }
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Writes a complete response and closes the connection.
pub fn respond(stream: &TcpStream, request: &Request, response: &Response) {
    send_and_close(stream, &response.to_bytes(request.method != "HEAD"));
}

/// Answers a request that went wrong, logs why, and closes the connection. `request` is `None`
/// when not even its head could be read.
pub fn answer_error(
    stream: &TcpStream,
    peer: SocketAddr,
    request: Option<&Request>,
    err: &RequestError,
) {
    if let Some(bytes) = logged_error_response(peer, request, err) {
        send_and_close(stream, &bytes);
    }
}

/// Logs an error response and returns its bytes, or `None` when the client is gone.
pub fn logged_error_response(
    peer: SocketAddr,
    request: Option<&Request>,
    err: &RequestError,
) -> Option<Vec<u8>> {
    let (status, reason) = err.status_and_reason()?;
    log_error(peer, request, status, &reason);
    Some(err.response()?.to_bytes(true))
}

/// One log line per error response: who, what they asked for, the status, and why. The path
/// only, not the query: a query can carry a message, and messages do not belong in logs.
fn log_error(peer: SocketAddr, request: Option<&Request>, status: Status, why: &str) {
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
    drain(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Request, RequestError> {
        parse_head(text.as_bytes())
    }

    fn rejected_as(text: &str) -> u16 {
        match parse(text) {
            Ok(r) => panic!("accepted {text:?} as {r:?}"),
            Err(e) => e.status_and_reason().expect("an error with a status").0 .0,
        }
    }

    #[test]
    fn parses_request_line_and_headers() {
        let r = parse("GET /send?message=hi HTTP/1.1\r\nHost: x\r\nLast-Event-ID:  7 \r\n\r\n")
            .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!((r.path(), r.query()), ("/send", Some("message=hi")));
        assert_eq!(r.version, Version::Http11);
        assert_eq!(r.header("last-event-id"), Some("7"));
        assert_eq!(r.header("HOST"), Some("x"));
        assert_eq!(r.header("accept"), None);
    }

    #[test]
    fn bare_lf_line_endings_are_accepted() {
        let r = parse("GET / HTTP/1.1\nHost: x\n\n").unwrap();
        assert_eq!(r.header("host"), Some("x"));
    }

    #[test]
    fn one_empty_line_before_the_request_line_is_ignored() {
        assert_eq!(
            parse("\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap()
                .method,
            "GET"
        );
    }

    #[test]
    fn two_host_headers_are_400() {
        assert_eq!(
            rejected_as("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            400
        );
    }

    #[test]
    fn http_1_0_needs_no_host() {
        assert_eq!(
            parse("GET / HTTP/1.0\r\n\r\n").unwrap().version,
            Version::Http10
        );
    }

    #[test]
    fn every_malformed_request_line_is_400() {
        for line in [
            "",
            "GET",
            "GET /",
            "GET / HTTP/1.1 extra",
            "GET  / HTTP/1.1",
            "G(T / HTTP/1.1",
            "GET index.html HTTP/1.1",
            "GET http://example.com/ HTTP/1.1",
            "GET /\x01 HTTP/1.1",
            "GET / HTTX/1.1",
            "GET / http/1.1",
            "GET / HTTP/1.1\rX",
        ] {
            assert_eq!(
                rejected_as(&format!("{line}\r\nHost: x\r\n\r\n")),
                400,
                "{line:?}"
            );
        }
    }

    #[test]
    fn other_http_versions_are_505() {
        assert_eq!(rejected_as("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(rejected_as("GET / HTTP/0.9\r\n\r\n"), 505);
    }

    #[test]
    fn every_malformed_header_is_400() {
        for header in [
            "NoColon",
            ": empty name",
            "Bad Name: x",
            "Name : space before colon",
            " folded: continuation",
            "\tfolded: continuation",
            "Nul: a\0b",
            "Cr: a\rb",
        ] {
            let head = format!("GET / HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n");
            assert_eq!(rejected_as(&head), 400, "{header:?}");
        }
    }

    #[test]
    fn http_1_1_without_host_is_400() {
        assert_eq!(rejected_as("GET / HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn more_than_100_headers_is_431() {
        let mut head = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..MAX_HEADERS {
            head.push_str(&format!("X-{i}: y\r\n"));
        }
        head.push_str("\r\n");
        assert_eq!(rejected_as(&head), 431);
    }

    #[test]
    fn head_end_is_found_with_crlf_or_bare_lf() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.0\r\n\r\nbody", 0),
            Some((16, 18))
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.0\n\nbody", 0), Some((15, 16)));
        assert_eq!(find_head_end(b"GET / HTTP/1.0\r\nHost: x\r\n", 0), None);
    }

    #[test]
    fn responses_carry_content_length_and_connection_close() {
        let r = Response::text(Status::NOT_FOUND, "nope").with_header("Allow", "GET");
        let text = String::from_utf8(r.to_bytes(true)).unwrap();
        let (status_line, rest) = text.split_once("\r\n").unwrap();
        let (date, rest) = rest.split_once("\r\n").unwrap();
        assert_eq!(status_line, "HTTP/1.1 404 Not Found");
        assert!(
            date.starts_with("Date: ") && date.ends_with(" GMT"),
            "{date}"
        );
        assert_eq!(
            rest,
            "Content-Type: text/plain; charset=utf-8\r\nAllow: GET\r\n\
             Content-Length: 5\r\nConnection: close\r\n\r\nnope\n"
        );
        let head_only = String::from_utf8(r.to_bytes(false)).unwrap();
        assert!(head_only.ends_with("Content-Length: 5\r\nConnection: close\r\n\r\n"));
    }
}
