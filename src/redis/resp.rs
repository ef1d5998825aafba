//! Just enough of RESP2, the protocol Redis speaks, to send commands and read replies, by hand.
//!
//! A client sends each command as an array of bulk strings; Redis answers with one reply whose
//! first byte says its type. Everything ends in CRLF:
//!
//! ```text
//! *2\r\n$4\r\nINCR\r\n$6\r\nsse:id\r\n     <- command: an array of 2 bulk strings, INCR sse:id
//! :7\r\n                                  <- reply: the integer 7
//! ```
//!
//! | first byte | type          | example                   |
//! |------------|---------------|---------------------------|
//! | `+`        | simple string | `+OK\r\n`                 |
//! | `-`        | error         | `-ERR unknown command\r\n`|
//! | `:`        | integer       | `:1000\r\n`               |
//! | `$`        | bulk string   | `$5\r\nhello\r\n`         |
//! | `*`        | array         | `*2\r\n:1\r\n:2\r\n`      |
//!
//! (RESP3, which `HELLO 3` switches to, adds more types; we never ask for it.) The rules come from
//! the "Redis serialization protocol specification" on redis.io.
//!
//! The server at the other end is trusted a little (we chose to connect to it), not blindly: a
//! length in a reply says how much is coming, and a broken or hostile server could claim
//! anything. So every read is bounded in time ([`Connection`]) and in size ([`MAX_LINE_LEN`],
//! [`MAX_BULK_LEN`], [`MAX_ARRAY_LEN`], [`MAX_DEPTH`], [`MAX_REPLY_BYTES`]), and no bad reply can
//! make the parser panic.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv6Addr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::wire::{self, Failure};

/// Longest line we read (a simple string, an error, an integer, or a length), CRLF not counted.
/// Redis's own limit on the lines it reads (`PROTO_INLINE_MAX_SIZE`) is also 64 KiB.
pub const MAX_LINE_LEN: usize = 64 * 1024;
/// Longest bulk string we accept. A broadcast message is at most 64 KiB
/// ([`crate::redis::log::MAX_MESSAGE_LEN`]); 1 MiB leaves room and keeps a bad length from
/// costing much.
pub const MAX_BULK_LEN: usize = 1024 * 1024;
/// Most elements in one array. Our longest replies hold 100 stream entries
/// ([`crate::redis::log::BATCH`]).
pub const MAX_ARRAY_LEN: usize = 1024;
/// Arrays inside arrays, at most this deep. `XREAD`'s reply is 5 deep (streams, one stream, its
/// entries, one entry, its fields); the limit also bounds the parser's recursion.
pub const MAX_DEPTH: usize = 8;
/// Most memory one reply may take: its bytes as received plus a [`Reply`] per value. 100 messages
/// of 64 KiB are under 7 MiB, so 16 MiB is enough with room to spare.
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// One reply from Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`: a short status text.
    Simple(String),
    /// `-ERR ...`: the command failed; the text says why. [`Connection::call`] turns a top-level
    /// one into [`Error::Server`]; inside an array it stays a value.
    Error(String),
    /// `:42`: a signed 64-bit integer.
    Integer(i64),
    /// `$5\r\nhello`: any bytes. `None` is the null bulk string `$-1`, e.g. `GET` of a missing key.
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`: replies in order. `None` is the null array `*-1`, e.g. `XREAD BLOCK` timing out.
    Array(Option<Vec<Reply>>),
}

/// Everything that can go wrong talking to Redis.
#[derive(Debug)]
pub enum Error {
    /// The URL is not `redis://HOST[:PORT][/DB]`; the text says what is wrong.
    Url(String),
    /// Connecting to the URL failed: no TCP connection (refused, unreachable, timed out), or
    /// the database could not be selected, or what answered is not Redis.
    Connect { url: String, source: io::Error },
    /// The connection ended before the reply did (or, for [`parse`], the bytes did).
    Closed,
    /// The reply did not arrive in time.
    TimedOut,
    /// Any other I/O error on an open connection.
    Io(io::Error),
    /// The bytes break the RESP grammar, or the reply is not the shape the command has.
    Protocol(&'static str),
    /// Something over one of the limits above (or [`crate::redis::log::MAX_MESSAGE_LEN`]); names
    /// the limit.
    TooLarge(&'static str),
    /// Redis answered with an error reply, e.g. `ERR unknown command`.
    Server(String),
}

impl Error {
    /// Whether this is [`Error::Url`]: a setting to fix, not a failure to retry.
    pub fn is_bad_url(&self) -> bool {
        matches!(self, Error::Url(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Url(why) => f.write_str(why),
            Error::Connect { url, source } => {
                write!(f, "cannot connect to Redis at {url}: {source}")
            }
            Error::Closed => f.write_str("Redis closed the connection"),
            Error::TimedOut => f.write_str("Redis did not answer in time"),
            Error::Io(e) => write!(f, "Redis connection failed: {e}"),
            Error::Protocol(why) => write!(f, "bad reply from Redis: {why}"),
            Error::TooLarge(what) => write!(f, "too large: {what}"),
            Error::Server(text) => write!(f, "Redis answered: {text}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } | Error::Io(source) => Some(source),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    /// Sorts a failed read or write ([`Failure`]).
    fn from(err: io::Error) -> Error {
        match Failure::of(&err) {
            Failure::TimedOut => Error::TimedOut,
            Failure::Closed | Failure::Reset => Error::Closed,
            Failure::Other => Error::Io(err),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commands

/// Encodes a command as an array of bulk strings: `*<count>\r\n`, then `$<len>\r\n<bytes>\r\n`
/// per argument.
///
/// Each argument carries its length, so it may hold any bytes: spaces, CRLF, a whole message.
/// (Redis also reads "inline" commands split on spaces, as typed in telnet; those cannot carry
/// a space or a line break inside an argument.)
///
/// ```
/// use sse_server::redis::resp::encode_command;
///
/// assert_eq!(encode_command(&[b"GET", b"k"]), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
/// ```
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let size: usize = args.iter().map(|a| a.len() + 16).sum();
    let mut out = Vec::with_capacity(size + 16);
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        // The length counts bytes, not characters: "é" is `$2`.
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Replies

/// Parses one reply from the start of `bytes`.
///
/// Returns `Ok(None)` while the bytes hold only part of a reply (read more and try again), or the
/// reply and how many bytes it took.
///
/// # Errors
/// [`Error::Protocol`] for bytes that are not RESP, [`Error::TooLarge`] past a limit.
///
/// ```
/// use sse_server::redis::resp::{parse, Reply};
///
/// assert_eq!(parse(b":7\r\n+OK").unwrap(), Some((Reply::Integer(7), 4)));
/// assert_eq!(parse(b"$5\r\nhel").unwrap(), None);
/// ```
pub fn parse(bytes: &[u8]) -> Result<Option<(Reply, usize)>, Error> {
    // A byte slice is a `BufRead` that shrinks from the front as it is read.
    let mut rest = bytes;
    match read_reply(&mut rest) {
        Ok(reply) => Ok(Some((reply, bytes.len() - rest.len()))),
        Err(Error::Closed) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads one whole reply from `reader`, within the limits above.
///
/// # Errors
/// [`Error::Closed`] if the input ends first, [`Error::Protocol`], [`Error::TooLarge`], or the
/// reader's own error ([`Error::TimedOut`], [`Error::Io`]).
pub fn read_reply(reader: &mut impl BufRead) -> Result<Reply, Error> {
    let mut budget = MAX_REPLY_BYTES;
    read_value(reader, 0, &mut budget)
}

/// Takes `cost` bytes from what is left of [`MAX_REPLY_BYTES`].
fn spend(budget: &mut usize, cost: usize) -> Result<(), Error> {
    *budget = budget
        .checked_sub(cost)
        .ok_or(Error::TooLarge("reply from Redis over MAX_REPLY_BYTES"))?;
    Ok(())
}

/// Reads one value, `depth` arrays deep.
fn read_value(reader: &mut impl BufRead, depth: usize, budget: &mut usize) -> Result<Reply, Error> {
    spend(budget, std::mem::size_of::<Reply>())?;
    let line = read_line(reader, budget)?;
    // The first byte is the type; the rest of the line is the value or a length.
    let Some((&kind, rest)) = line.split_first() else {
        return Err(Error::Protocol("empty line where a reply should start"));
    };
    match kind {
        // Simple strings and errors cannot hold CR or LF: the line end is their end. Redis sends
        // plain text here; bytes that are not UTF-8 would become U+FFFD rather than an error.
        b'+' => Ok(Reply::Simple(String::from_utf8_lossy(rest).into_owned())),
        b'-' => Ok(Reply::Error(String::from_utf8_lossy(rest).into_owned())),
        b':' => parse_integer(rest).map(Reply::Integer),
        b'$' => {
            // A length cannot be negative, so `$-1` is free to mean "no value" (a missing key),
            // which is not the same as `$0`, the empty string.
            let Some(len) = parse_length(
                rest,
                MAX_BULK_LEN,
                "bulk string from Redis over MAX_BULK_LEN",
            )?
            else {
                return Ok(Reply::Bulk(None));
            };
            read_bulk(reader, len, budget).map(|data| Reply::Bulk(Some(data)))
        }
        b'*' => {
            // Likewise `*-1` is "no array" (XREAD BLOCK timed out), not `*0`, an empty one.
            let Some(len) =
                parse_length(rest, MAX_ARRAY_LEN, "array from Redis over MAX_ARRAY_LEN")?
            else {
                return Ok(Reply::Array(None));
            };
            if depth == MAX_DEPTH {
                return Err(Error::TooLarge(
                    "arrays from Redis nested deeper than MAX_DEPTH",
                ));
            }
            // `len` is at most MAX_ARRAY_LEN, so this reserves at most a few KiB whatever the
            // server claims; each element still has to arrive before it takes more.
            let mut items = Vec::with_capacity(len);
            for _ in 0..len {
                items.push(read_value(reader, depth + 1, budget)?);
            }
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(Error::Protocol("unknown reply type (first byte)")),
    }
}

/// Reads one line and returns it without its CRLF.
fn read_line(reader: &mut impl BufRead, budget: &mut usize) -> Result<Vec<u8>, Error> {
    let mut line = Vec::new();
    // `take` stops a line that never ends from filling memory: read_until alone has no limit.
    let limit = MAX_LINE_LEN as u64 + 2;
    reader.by_ref().take(limit).read_until(b'\n', &mut line)?;
    spend(budget, line.len())?;
    if line.last() != Some(&b'\n') {
        return Err(if line.len() as u64 == limit {
            Error::TooLarge("line from Redis over MAX_LINE_LEN")
        } else {
            Error::Closed
        });
    }
    // RESP ends every line with CRLF, as telnet does. A bare LF is refused, not guessed at: a
    // reader that splits lines differently from the writer reads everything after out of step.
    if !line.ends_with(b"\r\n") {
        return Err(Error::Protocol("line not ended by CRLF"));
    }
    line.truncate(line.len() - 2);
    if line.contains(&b'\r') {
        return Err(Error::Protocol("CR inside a line"));
    }
    Ok(line)
}

/// Reads the `len` bytes of a bulk string and the CRLF after them.
fn read_bulk(reader: &mut impl BufRead, len: usize, budget: &mut usize) -> Result<Vec<u8>, Error> {
    // `len` counts bytes, not characters, so it says exactly how much to read. The bytes are
    // taken by count, never searched for a line end: a bulk string may itself hold CRLF.
    let want = len + 2;
    spend(budget, want)?;
    // The buffer grows as bytes arrive, so a length that lies costs nothing up front.
    let mut data = Vec::new();
    reader.by_ref().take(want as u64).read_to_end(&mut data)?;
    if data.len() < want {
        return Err(Error::Closed);
    }
    // The CRLF after the data is not part of it: it closes the value, as every line is closed.
    if !data.ends_with(b"\r\n") {
        return Err(Error::Protocol("bulk string longer than its length"));
    }
    data.truncate(len);
    Ok(data)
}

/// The length after `$` or `*`: digits, or `-1` for null (`None`). Any other negative number is
/// an error, not "null", and a length over `max` is refused before anything is read.
fn parse_length(text: &[u8], max: usize, too_large: &'static str) -> Result<Option<usize>, Error> {
    if text == b"-1" {
        return Ok(None);
    }
    // Saturating: a length with a hundred digits is simply "too large", never an overflow.
    let len = wire::decimal(text).ok_or(Error::Protocol("length is not a number (or -1)"))?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > max {
        return Err(Error::TooLarge(too_large));
    }
    Ok(Some(len))
}

/// The number after `:`: an optional `-` and decimal digits that fit in an `i64`.
fn parse_integer(text: &[u8]) -> Result<i64, Error> {
    const BAD: Error = Error::Protocol("integer is not a 64-bit decimal number");
    let (negative, digits) = match text.strip_prefix(b"-") {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    let magnitude = wire::decimal(digits).ok_or(BAD)?;
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    };
    value.ok_or(BAD)
}

// ---------------------------------------------------------------------------------------------
// The URL

/// Where Redis is: `redis://HOST[:PORT][/DB]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// A name or an IP address (an IPv6 one without its brackets).
    pub host: String,
    pub port: u16,
    /// The database number: Redis has several numbered key spaces, 0 by default.
    pub db: u32,
}

/// Redis's port when the URL names none.
pub const DEFAULT_PORT: u16 = 6379;

impl Url {
    /// Parses `redis://HOST[:PORT][/DB]`, e.g. `redis://127.0.0.1`, `redis://cache:6380/2`,
    /// `redis://[::1]:6379`.
    ///
    /// # Errors
    /// [`Error::Url`], saying what is wrong and what is expected.
    pub fn parse(text: &str) -> Result<Url, Error> {
        Url::parse_parts(text).map_err(|why| {
            // The URL is repeated, unless it may hold a password.
            let shown = if text.contains('@') { "" } else { text };
            Error::Url(format!(
                "invalid Redis URL '{shown}': {why} (expected redis://HOST[:PORT][/DB])"
            ))
        })
    }

    fn parse_parts(text: &str) -> Result<Url, &'static str> {
        let scheme_end = text.find("://").ok_or("no redis:// in front")?;
        match text[..scheme_end].to_ascii_lowercase().as_str() {
            "redis" => {}
            "rediss" => return Err("TLS (rediss://) is not supported"),
            _ => return Err("the scheme must be redis://"),
        }
        let rest = &text[scheme_end + 3..];
        if rest.contains(['?', '#']) {
            return Err("options after ? or # are not supported");
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err("a user or password in the URL is not supported");
        }
        // An IPv6 address has colons of its own, so it comes in brackets: [::1]:6379.
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or("no ] after [")?;
            host.parse::<Ipv6Addr>()
                .map_err(|_| "not an IPv6 address inside [ ]")?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or("expected :PORT after ]")?),
            };
            (host, port)
        } else {
            if authority.matches(':').count() > 1 {
                return Err("an IPv6 address goes in brackets, as in redis://[::1]");
            }
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            // Letters, digits, `-` and `.` make host names and IPv4 addresses (`_` is seen too).
            if !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            {
                return Err("the host holds a character that no host name has");
            }
            (host, port)
        };
        if host.is_empty() {
            return Err("no host");
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(port) => wire::decimal(port)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n != 0)
                .ok_or("the port must be a number from 1 to 65535")?,
        };
        let db = match path.strip_prefix('/') {
            None | Some("") => 0,
            Some(db) => wire::decimal(db)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or("the database after / must be a number")?,
        };
        Ok(Url {
            host: host.to_string(),
            port,
            db,
        })
    }
}

impl fmt::Display for Url {
    /// Always with the port and database, so a message shows the defaults that were used.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let authority = wire::host_port(&self.host, self.port);
        write!(f, "redis://{authority}/{}", self.db)
    }
}

// ---------------------------------------------------------------------------------------------
// The connection

/// A socket whose reads and writes give up at a deadline, so that a command and its reply have a
/// time limit as a whole: a server sending one byte a second cannot keep a call waiting forever.
struct DeadlineStream {
    stream: TcpStream,
    deadline: Instant,
}

impl DeadlineStream {
    /// The time left before the deadline, as an error once there is none. (A zero timeout
    /// means "no timeout" to `set_read_timeout`, so the deadline is checked here.)
    fn time_left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        Ok(left)
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        wire::read_before(&self.stream, buf, self.deadline)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.time_left()?))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // nothing is buffered on the way out
    }
}

/// One connection to Redis: send a command, read its reply, with a time limit on both.
///
/// After any error other than [`Error::Server`] the connection may be halfway through a command
/// or a reply, and nobody knows where the next reply would start: every later call fails at
/// once. Open a new connection instead.
pub struct Connection {
    reader: BufReader<DeadlineStream>,
    timeout: Duration,
    /// Set from sending a command until its whole reply is read; still set after an error.
    broken: bool,
}

impl Connection {
    /// Connects to `url` and selects its database. `timeout` limits the connect, then each
    /// [`call`](Connection::call).
    ///
    /// # Errors
    /// [`Error::Connect`], which names the URL.
    pub fn connect(url: &Url, timeout: Duration) -> Result<Connection, Error> {
        let failed = |source| Error::Connect {
            url: url.to_string(),
            source,
        };
        // A name may stand for several addresses (localhost: ::1 and 127.0.0.1); try each.
        // (The name lookup itself has no time limit in std.)
        let addrs = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(failed)?;
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = e,
            }
        }
        let stream = stream.ok_or_else(|| failed(last_error))?;
        // Commands are small and each waits for its reply: send them at once, not after Nagle's
        // delay.
        stream.set_nodelay(true)?;
        let mut connection = Connection {
            reader: BufReader::new(DeadlineStream {
                stream,
                deadline: Instant::now(),
            }),
            timeout,
            broken: false,
        };
        // Each connection starts in database 0; the choice is per connection, not per server.
        if url.db != 0 {
            connection
                .call(&[b"SELECT", url.db.to_string().as_bytes()])
                .map_err(|e| failed(io::Error::other(e)))?;
        }
        Ok(connection)
    }

    /// Sends one command and reads its reply, all within the connection's timeout.
    ///
    /// ```no_run
    /// # use sse_server::redis::resp::{Connection, Reply, Url};
    /// # use std::time::Duration;
    /// let url = Url::parse("redis://127.0.0.1").unwrap();
    /// let mut redis = Connection::connect(&url, Duration::from_secs(2)).unwrap();
    /// assert_eq!(redis.call(&[b"PING"]).unwrap(), Reply::Simple("PONG".into()));
    /// ```
    ///
    /// # Errors
    /// [`Error::Server`] when Redis answers with an error (the connection stays usable); any
    /// other error leaves it unusable (see [`Connection`]).
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Reply, Error> {
        self.call_waiting(args, Duration::ZERO)
    }

    /// Like [`call`](Connection::call), for a command that may wait `wait` before it answers
    /// (`XREAD BLOCK <ms>`): the reply has that much longer to arrive.
    ///
    /// # Errors
    /// As for [`call`](Connection::call).
    pub fn call_waiting(&mut self, args: &[&[u8]], wait: Duration) -> Result<Reply, Error> {
        self.call_by(args, Instant::now() + self.timeout + wait)
    }

    /// Like [`call`](Connection::call), with the whole call (command and reply) done by
    /// `deadline` instead of within the connection's timeout.
    ///
    /// # Errors
    /// As for [`call`](Connection::call).
    pub fn call_by(&mut self, args: &[&[u8]], deadline: Instant) -> Result<Reply, Error> {
        self.send(args, deadline)?;
        self.receive(deadline)
    }

    /// The first half of a call: writes the whole command by `deadline`. Once this returns `Ok`,
    /// Redis may run the command even if its reply never arrives; after an error it did not
    /// (Redis runs a command only once all of it has come, and this connection is unusable now,
    /// so the rest never will).
    ///
    /// # Errors
    /// [`Error::TimedOut`], [`Error::Closed`], [`Error::Io`]; or [`Error::Protocol`] when the
    /// connection is unusable after an earlier error.
    pub fn send(&mut self, args: &[&[u8]], deadline: Instant) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Protocol(
                "connection unusable after an earlier error",
            ));
        }
        self.broken = true;
        let stream = self.reader.get_mut();
        stream.deadline = deadline;
        // One write for the whole command (the reader's buffer holds replies only).
        stream.write_all(&encode_command(args))?;
        Ok(())
    }

    /// The second half of a call: reads the reply to the command [`send`](Connection::send)
    /// wrote, by `deadline`.
    ///
    /// # Errors
    /// As for [`call`](Connection::call).
    pub fn receive(&mut self, deadline: Instant) -> Result<Reply, Error> {
        self.reader.get_mut().deadline = deadline;
        let reply = read_reply(&mut self.reader)?;
        // A whole reply was read, an error reply too: the next call starts on a clean reply.
        self.broken = false;
        match reply {
            Reply::Error(text) => Err(Error::Server(text)),
            reply => Ok(reply),
        }
    }

    /// Whether the connection can still be used: not broken by an error, and not closed by
    /// Redis while it sat idle (a restart, an idle timeout). Checking first saves sending a
    /// command into a dead socket, which would fail only after the write seemed to succeed.
    pub fn is_open(&self) -> bool {
        if self.broken || !self.reader.buffer().is_empty() {
            return false; // bytes nobody asked for: out of step
        }
        let stream = &self.reader.get_ref().stream;
        if stream.set_nonblocking(true).is_err() {
            return false;
        }
        // A peer that closed shows as readable with 0 bytes; an open, quiet one would block.
        let open =
            matches!(stream.peek(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        stream.set_nonblocking(false).is_ok() && open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    fn parsed(bytes: &[u8]) -> Reply {
        match parse(bytes) {
            Ok(Some((reply, used))) => {
                assert_eq!(used, bytes.len(), "{bytes:?}");
                reply
            }
            other => panic!("{bytes:?}: {other:?}"),
        }
    }

    fn refused(bytes: &[u8]) -> Error {
        match parse(bytes) {
            Err(e) => e,
            other => panic!("{:?} accepted: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            encode_command(&[b"SET", b"k", b"a b\r\n"]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na b\r\n\r\n"
        );
        // Lengths count bytes, not characters.
        assert_eq!(
            encode_command(&["é".as_bytes()]),
            "*1\r\n$2\r\né\r\n".as_bytes()
        );
        assert_eq!(encode_command(&[b""]), b"*1\r\n$0\r\n\r\n");
    }

    #[test]
    fn each_reply_type() {
        assert_eq!(parsed(b"+OK\r\n"), Reply::Simple("OK".into()));
        assert_eq!(
            parsed(b"-ERR unknown command\r\n"),
            Reply::Error("ERR unknown command".into())
        );
        assert_eq!(parsed(b":1000\r\n"), Reply::Integer(1000));
        assert_eq!(parsed(b":-5\r\n"), Reply::Integer(-5));
        assert_eq!(
            parsed(b":9223372036854775807\r\n"),
            Reply::Integer(i64::MAX)
        );
        assert_eq!(parsed(b"$5\r\nhello\r\n"), bulk("hello"));
        assert_eq!(
            parsed(b"*2\r\n:1\r\n$1\r\na\r\n"),
            Reply::Array(Some(vec![Reply::Integer(1), bulk("a")]))
        );
    }

    #[test]
    fn null_is_not_empty() {
        assert_eq!(parsed(b"$-1\r\n"), Reply::Bulk(None));
        assert_eq!(parsed(b"$0\r\n\r\n"), bulk(""));
        assert_eq!(parsed(b"*-1\r\n"), Reply::Array(None));
        assert_eq!(parsed(b"*0\r\n"), Reply::Array(Some(vec![])));
    }

    #[test]
    fn a_bulk_string_may_hold_crlf_because_its_length_says_where_it_ends() {
        assert_eq!(parsed(b"$4\r\n\r\n\r\n\r\n"), bulk("\r\n\r\n"));
        assert_eq!(parsed(b"$3\r\n+:*\r\n"), bulk("+:*"));
    }

    #[test]
    fn nested_arrays_like_xread() {
        let reply = b"*1\r\n*2\r\n$3\r\nsse\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$7\r\nmessage\r\n$2\r\nhi\r\n";
        let entry = Reply::Array(Some(vec![
            bulk("1-0"),
            Reply::Array(Some(vec![bulk("message"), bulk("hi")])),
        ]));
        let stream = Reply::Array(Some(vec![bulk("sse"), Reply::Array(Some(vec![entry]))]));
        assert_eq!(parsed(reply), Reply::Array(Some(vec![stream])));
        assert_eq!(
            parsed(b"*2\r\n*-1\r\n$-1\r\n"),
            Reply::Array(Some(vec![Reply::Array(None), Reply::Bulk(None)]))
        );
    }

    #[test]
    fn parse_says_how_many_bytes_the_first_reply_took() {
        assert_eq!(
            parse(b"+OK\r\n:1\r\n").unwrap(),
            Some((Reply::Simple("OK".into()), 5))
        );
    }

    #[test]
    fn every_truncation_is_incomplete_not_an_error() {
        let whole: &[u8] = b"*3\r\n$5\r\nhello\r\n*2\r\n:1\r\n$-1\r\n-ERR x\r\n";
        let inner = Reply::Array(Some(vec![Reply::Integer(1), Reply::Bulk(None)]));
        let error = Reply::Error("ERR x".into());
        assert_eq!(
            parsed(whole),
            Reply::Array(Some(vec![bulk("hello"), inner, error]))
        );
        for end in 0..whole.len() {
            assert_eq!(parse(&whole[..end]).unwrap(), None, "cut at {end}");
        }
    }

    #[test]
    fn negative_lengths_other_than_minus_1_are_refused() {
        assert!(matches!(refused(b"$-2\r\n"), Error::Protocol(_)));
        assert!(matches!(refused(b"*-5\r\n"), Error::Protocol(_)));
        assert!(matches!(refused(b"$-0\r\n"), Error::Protocol(_)));
    }

    #[test]
    fn lengths_must_be_digits() {
        for bad in [
            &b"$\r\n"[..],
            b"$abc\r\n",
            b"$+5\r\n",
            b"$ 5\r\n",
            b"*1x\r\n",
            b"$0x10\r\n",
        ] {
            assert!(matches!(refused(bad), Error::Protocol(_)), "{bad:?}");
        }
    }

    #[test]
    fn integers_must_be_decimal_and_fit_64_bits() {
        for bad in [
            &b":\r\n"[..],
            b":-\r\n",
            b":+1\r\n",
            b":1.5\r\n",
            b":9223372036854775808\r\n",
        ] {
            assert!(matches!(refused(bad), Error::Protocol(_)), "{bad:?}");
        }
        assert_eq!(
            parsed(b":-9223372036854775808\r\n"),
            Reply::Integer(i64::MIN)
        );
    }

    #[test]
    fn huge_lengths_are_refused_before_reading_anything() {
        assert!(matches!(refused(b"$1048577\r\n"), Error::TooLarge(_)));
        assert!(matches!(refused(b"*1025\r\n"), Error::TooLarge(_)));
        // More digits than any integer holds: still just "too large".
        assert!(matches!(
            refused(b"$99999999999999999999999999999\r\n"),
            Error::TooLarge(_)
        ));
        assert!(matches!(
            refused(b"*9223372036854775808\r\n"),
            Error::TooLarge(_)
        ));
    }

    #[test]
    fn lengths_at_the_limits_are_accepted() {
        let mut reply = format!("${MAX_BULK_LEN}\r\n").into_bytes();
        reply.resize(reply.len() + MAX_BULK_LEN, b'x');
        reply.extend_from_slice(b"\r\n");
        assert!(matches!(parsed(&reply), Reply::Bulk(Some(data)) if data.len() == MAX_BULK_LEN));
        let array = format!("*{MAX_ARRAY_LEN}\r\n{}", ":1\r\n".repeat(MAX_ARRAY_LEN));
        assert!(
            matches!(parsed(array.as_bytes()), Reply::Array(Some(items)) if items.len() == MAX_ARRAY_LEN)
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let ok = format!("{}:1\r\n", "*1\r\n".repeat(MAX_DEPTH));
        assert!(parse(ok.as_bytes()).unwrap().is_some());
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(matches!(refused(deep.as_bytes()), Error::TooLarge(_)));
        // Far deeper than the stack could take, were it not refused.
        let very_deep = "*1\r\n".repeat(1_000_000);
        assert!(matches!(refused(very_deep.as_bytes()), Error::TooLarge(_)));
    }

    #[test]
    fn a_reply_over_the_total_limit_is_refused() {
        // 1024 bulk strings of 1 MiB each would be 1 GiB: refused once 16 MiB are spent.
        let header = format!("*{MAX_ARRAY_LEN}\r\n");
        let mut item = format!("${MAX_BULK_LEN}\r\n").into_bytes();
        item.resize(item.len() + MAX_BULK_LEN, b'x');
        item.extend_from_slice(b"\r\n");
        let mut reply = header.into_bytes();
        for _ in 0..MAX_REPLY_BYTES / MAX_BULK_LEN + 1 {
            reply.extend_from_slice(&item);
        }
        assert!(matches!(refused(&reply), Error::TooLarge(_)));
    }

    #[test]
    fn lines_end_in_crlf() {
        assert!(matches!(refused(b"+OK\n"), Error::Protocol(_)));
        assert!(matches!(refused(b"+O\rK\r\n"), Error::Protocol(_)));
        assert!(matches!(refused(b":1\n\r\n"), Error::Protocol(_)));
        // The CRLF after bulk data must be where the length says.
        assert!(matches!(refused(b"$2\r\nabc\r\n"), Error::Protocol(_)));
        assert!(matches!(refused(b"$3\r\nab\r\n\r\n"), Error::Protocol(_)));
        // Whereas `$3\r\nab\r\n` is one byte short: incomplete, not wrong.
        assert_eq!(parse(b"$3\r\nab\r\n").unwrap(), None);
    }

    #[test]
    fn a_line_that_never_ends_is_refused_at_the_limit() {
        let mut long = b"+".to_vec();
        long.resize(MAX_LINE_LEN + 10, b'a');
        assert!(matches!(refused(&long), Error::TooLarge(_)));
        // Just at the limit it is fine.
        let mut fits = b"+".to_vec();
        fits.resize(MAX_LINE_LEN, b'a');
        fits.extend_from_slice(b"\r\n");
        assert!(matches!(parsed(&fits), Reply::Simple(_)));
    }

    #[test]
    fn unknown_types_and_empty_lines_are_refused() {
        for bad in [&b"\r\n"[..], b"hello\r\n", b"%1\r\n", b"_\r\n", b"\x00\r\n"] {
            assert!(matches!(refused(bad), Error::Protocol(_)), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        let url = |text| Url::parse(text).unwrap();
        assert_eq!(
            url("redis://127.0.0.1"),
            Url {
                host: "127.0.0.1".into(),
                port: 6379,
                db: 0
            }
        );
        assert_eq!(
            url("redis://cache:6380/2"),
            Url {
                host: "cache".into(),
                port: 6380,
                db: 2
            }
        );
        assert_eq!(
            url("redis://localhost/"),
            Url {
                host: "localhost".into(),
                port: 6379,
                db: 0
            }
        );
        assert_eq!(
            url("REDIS://[::1]:7000/1"),
            Url {
                host: "::1".into(),
                port: 7000,
                db: 1
            }
        );
        assert_eq!(url("redis://[::1]").to_string(), "redis://[::1]:6379/0");
        assert_eq!(url("redis://h").to_string(), "redis://h:6379/0");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (text, why) in [
            ("127.0.0.1:6379", "no redis://"),
            ("http://h", "scheme"),
            ("rediss://h", "TLS"),
            ("redis://", "no host"),
            ("redis://:6379", "no host"),
            ("redis://h:", "port"),
            ("redis://h:0", "port"),
            ("redis://h:65536", "port"),
            ("redis://h:+1", "port"),
            ("redis://h:x", "port"),
            ("redis://h/x", "database"),
            ("redis://h/-1", "database"),
            ("redis://h/1/2", "database"),
            ("redis://h?db=1", "options"),
            ("redis://::1", "brackets"),
            ("redis://[::1", "]"),
            ("redis://[nope]", "IPv6"),
            ("redis://a b", "character"),
        ] {
            let err = Url::parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
            assert!(
                err.contains(text) && err.contains("redis://HOST[:PORT][/DB]"),
                "{err}"
            );
        }
        let err = Url::parse("redis://user:secret@h").unwrap_err().to_string();
        assert!(err.contains("password") && !err.contains("secret"), "{err}");
    }
}
