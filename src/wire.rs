//! The small print that HTTP, URLs and RESP (Redis's protocol) share, written once: decimal
//! numbers, `host:port`, reads with a deadline, and what a failed socket call means.

use std::fmt;
use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Instant;

/// The value of `text` if it is a decimal number as protocols write it: one or more ASCII digits
/// and nothing else (no sign, no spaces: `str::parse` would also take a leading `+`). A number
/// too big for a `u64` comes out as `u64::MAX`: callers compare it with a limit anyway.
pub fn decimal(text: impl AsRef<[u8]>) -> Option<u64> {
    let text = text.as_ref();
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0u64, |n, &digit| {
        n.saturating_mul(10).saturating_add(u64::from(digit - b'0'))
    }))
}

/// `host:port`, with an IPv6 address in brackets (`[::1]:3000`), as URLs write it: otherwise
/// the address's own colons would run into the port's.
pub fn host_port(host: impl fmt::Display, port: u16) -> String {
    let host = host.to_string();
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One `read`, giving up at `deadline`. The timeout is set before each read, so a peer that sends
/// one byte every few seconds ("slowloris") still runs out of time.
///
/// # Errors
/// The deadline passed (`TimedOut`), or the read failed.
pub fn read_before(mut stream: &TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    // A zero timeout means "no timeout" to `set_read_timeout`, so the deadline is checked here.
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    stream.set_read_timeout(Some(left))?;
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// What a failed socket read or write means, whatever name the system gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The time limit passed. With a timeout set, Linux reports it as `WouldBlock` (EAGAIN) and
    /// other systems as `TimedOut`.
    TimedOut,
    /// The peer closed the connection: the stream ended early, or a write found it closed.
    Closed,
    /// The peer reset the connection (or it was aborted).
    Reset,
    /// Anything else.
    Other,
}

impl Failure {
    pub fn of(err: &io::Error) -> Failure {
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::TimedOut,
            io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe => Failure::Closed,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Failure::Reset,
            _ => Failure::Other,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failure::TimedOut => "timed out",
            Failure::Closed => "closed",
            Failure::Reset => "reset",
            Failure::Other => "failed",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decimal_is_digits_only() {
        assert_eq!(decimal("42"), Some(42));
        assert_eq!(decimal(b"007"), Some(7));
        for bad in ["", "+1", "-1", " 1", "1 ", "1_000", "0x10", "٣"] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_decimal_too_big_for_u64_is_u64_max() {
        assert_eq!(decimal("18446744073709551615"), Some(u64::MAX));
        assert_eq!(decimal("1".repeat(100)), Some(u64::MAX));
    }

    #[test]
    fn an_ipv6_host_goes_in_brackets() {
        assert_eq!(host_port("127.0.0.1", 3000), "127.0.0.1:3000");
        assert_eq!(host_port("localhost", 80), "localhost:80");
        assert_eq!(host_port("::1", 3000), "[::1]:3000");
        let v6: std::net::IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(host_port(v6, 1), "[fe80::1]:1");
    }

    #[test]
    fn failures_have_one_name_each() {
        let kind = |k: io::ErrorKind| Failure::of(&k.into());
        assert_eq!(kind(io::ErrorKind::WouldBlock), Failure::TimedOut);
        assert_eq!(kind(io::ErrorKind::BrokenPipe), Failure::Closed);
        assert_eq!(kind(io::ErrorKind::ConnectionReset).to_string(), "reset");
        assert_eq!(kind(io::ErrorKind::PermissionDenied), Failure::Other);
    }
}
