//! Refusing requests sent to a name that is not this server's: the `Host` check, against DNS
//! rebinding.
//!
//! The attack, in five steps:
//! 1. A student opens a page on `http://evil.example:3000/`; its DNS answer lives a few seconds.
//! 2. The attacker's DNS server now answers `evil.example` with `127.0.0.1`.
//! 3. The page's script fetches `/events` and posts to `/send` on `evil.example:3000`.
//! 4. The browser looks the name up again and connects to this server on the student's machine.
//! 5. For the browser that is still the page's own origin: it sends no cross-site signal
//!    (`Sec-Fetch-Site: same-origin`, a matching `Origin`, see `origin.rs`) and lets the page
//!    read the answers.
//!
//! What gives it away is the `Host` header: the browser sends the name from the URL,
//! `evil.example:3000`, which is no name of this server. So every request whose `Host` is not an
//! IP address, not `localhost`, and not a name the teacher allowed (`--allowed-host NAME`, env
//! `ALLOWED_HOSTS`) is refused with 403, on every route, before anything is read or changed.
//! An IP address is safe to serve: rebinding needs a name whose answer the attacker controls.
//! Dev servers do the same: webpack-dev-server's `allowedHosts`, Vite's `server.allowedHosts`.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::http::Request;
use crate::wire;

/// Why `request` must be refused because of its `Host`, or `None` to serve it. `allowed` holds
/// the names given with `--allowed-host` / `ALLOWED_HOSTS`.
///
/// ```
/// use sse_server::{classroom::host::refusal, http::parse_head};
///
/// let by_ip = parse_head(b"GET /events HTTP/1.1\r\nHost: 192.168.1.23:3000\r\n\r\n").unwrap();
/// assert_eq!(refusal(&by_ip, &[]), None);
/// let rebound = parse_head(b"GET /events HTTP/1.1\r\nHost: evil.example:3000\r\n\r\n").unwrap();
/// assert!(refusal(&rebound, &[]).is_some());
/// assert_eq!(refusal(&rebound, &["evil.example".to_string()]), None);
/// ```
pub fn refusal(request: &Request, allowed: &[String]) -> Option<String> {
    // No `Host` (HTTP/1.0), or an empty one (RFC 9112 §3.2 allows it for a target without a
    // host): no name to check, and no browser sends either. Served as before.
    let host = request
        .header("host")
        .map(str::trim)
        .filter(|h| !h.is_empty())?;
    if is_allowed(host, allowed) {
        return None;
    }
    let name = host_name(host).unwrap_or(host);
    Some(format!(
        "refused: Host '{host}' is not a name of this server (a page under another name \
         could be DNS rebinding). Use the IP address or localhost, or allow the name: \
         --allowed-host {name} or ALLOWED_HOSTS={name}"
    ))
}

/// Whether a `Host` header value (`host[:port]`) names this server: an IP address (IPv6 in
/// brackets), `localhost` in any case, or one of `allowed`, compared without case.
///
/// Only `localhost` itself, as the contract says, not `*.localhost`: browsers resolve those to
/// loopback by themselves, but other programs ask DNS. A teacher who wants `app.localhost` names
/// it with `--allowed-host`.
pub fn is_allowed(host: &str, allowed: &[String]) -> bool {
    let Some(name) = host_name(host) else {
        return false;
    };
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok();
    }
    // `localhost.` (with the root's dot) is the same name as `localhost`.
    let name = name.strip_suffix('.').unwrap_or(name);
    name.parse::<Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| name.eq_ignore_ascii_case(a))
}

/// The host part of `host[:port]` (an IPv6 address keeps its brackets), or `None` when it is
/// empty or what follows it is not `:` and a port number. An IPv6 address without brackets
/// (`::1`), which `Host` never carries, comes out empty.
fn host_name(host: &str) -> Option<&str> {
    let (name, rest) = if host.starts_with('[') {
        host.split_at(host.find(']')? + 1)
    } else {
        host.split_at(host.find(':').unwrap_or(host.len()))
    };
    // `host:` with no digits means the scheme's default port (RFC 3986 §3.2.3).
    let port = match rest {
        "" => "",
        _ => rest.strip_prefix(':')?,
    };
    let port_ok = port.is_empty() || wire::decimal(port).is_some_and(|p| p <= u64::from(u16::MAX));
    (port_ok && !name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(host: &str) -> bool {
        is_allowed(host, &["class.example.org".to_string()])
    }

    #[test]
    fn ip_literals_are_allowed_with_or_without_a_port() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:3000",
            "192.168.1.23:3000",
            "0.0.0.0:3000",
            "[::1]",
            "[::1]:3000",
            "[fe80::1]:80",
            "[::ffff:127.0.0.1]:3000",
        ] {
            assert!(allowed(host), "{host}");
        }
    }

    #[test]
    fn localhost_is_allowed_in_any_case() {
        for host in [
            "localhost",
            "localhost:3000",
            "LocalHost:3000",
            "LOCALHOST",
            "localhost.:3000",
        ] {
            assert!(allowed(host), "{host}");
        }
    }

    #[test]
    fn allowed_names_are_compared_without_case() {
        assert!(allowed("class.example.org"));
        assert!(allowed("Class.Example.ORG:8443"));
    }

    #[test]
    fn other_names_are_refused() {
        for host in [
            "evil.example",
            "evil.example:3000",
            "app.localhost:3000",
            "localhost.evil.example",
            "127.0.0.1.nip.io:3000",
            "example.org",
            "x",
        ] {
            assert!(!allowed(host), "{host}");
        }
    }

    #[test]
    fn malformed_hosts_are_refused() {
        for host in [
            "::1",
            "::1:3000",
            "[::1",
            "[::1]x",
            "[not-v6]:3000",
            "127.0.0.1:port",
            "127.0.0.1:123456",
            ":3000",
            "[]",
        ] {
            assert!(!allowed(host), "{host}");
        }
    }

    #[test]
    fn the_refusal_names_the_flag_and_the_variable_with_the_name() {
        let request =
            crate::http::parse_head(b"GET / HTTP/1.1\r\nHost: Evil.Example:3000\r\n\r\n").unwrap();
        let why = refusal(&request, &[]).unwrap();
        assert!(why.contains("--allowed-host Evil.Example "), "{why}");
        assert!(why.contains("ALLOWED_HOSTS=Evil.Example"), "{why}");
    }

    #[test]
    fn no_host_or_an_empty_one_is_served() {
        let old = crate::http::parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(refusal(&old, &[]), None);
        let empty = crate::http::parse_head(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").unwrap();
        assert_eq!(refusal(&empty, &[]), None);
    }
}
