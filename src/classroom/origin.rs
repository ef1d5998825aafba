//! Refusing requests that another site's page makes the browser send (CSRF, cross-site request
//! forgery), for the routes that change something: `/send` and `/drop`.
//!
//! Why it is needed: any page a student has open can make their browser send a `POST` to
//! `http://192.168.1.23:3000/send`. A `POST` with a `text/plain` or form body is a CORS "simple
//! request" (Fetch standard, "CORS-safelisted request-header"): the browser sends it at once,
//! with no preflight `OPTIONS` to ask this server first. The same-origin policy then only hides
//! the *answer* from that page; the message has been broadcast all the same.
//!
//! How the server tells: the browser itself says where a request comes from, in headers that a
//! page's script cannot set or change (the Fetch standard's "forbidden request headers"):
//!
//! - `Sec-Fetch-Site` (Fetch Metadata): `same-origin`, `same-site`, `cross-site`, or `none` (the
//!   user typed the address or used a bookmark). Anything but `same-origin` and `none` is refused.
//!   `same-site` too: a page on another port of the same host is same-site, not same-origin.
//!   Browsers send it only to secure origins (HTTPS, `localhost`, `127.0.0.1`), so over plain HTTP
//!   to a classroom address like `192.168.1.23` it is missing, and the next check does the work.
//! - `Origin` (RFC 6454): `scheme://host[:port]` of the page, sent by browsers with every `POST`.
//!   It must name the host and port that the request was sent to, which the `Host` header says
//!   (without a scheme). Where the port is left out it is the scheme's default: `Origin:
//!   http://h` means port 80, `https://h` port 443, and a `Host` without a port matches either.
//!   `Origin: null` (a sandboxed frame, a `file:` page) names no host, so it is refused.
//!
//! A request with neither header did not come from a browser page (curl, scripts, the tests):
//! it is served as before.
//!
//! Limits: a page served under a name that resolves to this server (DNS rebinding) is the same
//! origin by both measures; the `Host` check (`host.rs`) refuses it first, on every route. And
//! `GET /send?message=...` from another site's `<img>` carries no `Origin`, and over plain HTTP
//! no `Sec-Fetch-Site` either: that is the price of the contract's "send from the address bar";
//! `POST` is the way a page sends.

use crate::http::Request;
use crate::wire;

/// `Sec-Fetch-Site: cross-site`: a page of another site.
pub const CROSS_SITE: &str =
    "refused: a page of another site sent this (Sec-Fetch-Site: cross-site)";
/// `Sec-Fetch-Site: same-site`: a page of this site but another origin, e.g. another port.
pub const SAME_SITE: &str =
    "refused: a page of another origin of this site, e.g. another port, sent this \
     (Sec-Fetch-Site: same-site)";
/// A `Sec-Fetch-Site` value the Fetch Metadata spec does not define.
pub const UNKNOWN_FETCH_SITE: &str = "refused: Sec-Fetch-Site is none of the values browsers send";
/// An `Origin` that is not the host and port the request was sent to.
pub const OTHER_ORIGIN: &str = "refused: the Origin header names another host or port than Host";
/// An `Origin` but no `Host` (HTTP/1.0) to compare it with.
pub const NO_HOST: &str = "refused: an Origin header, but no Host header to compare it with";

/// Why `request` must be refused as coming from another origin, or `None` to serve it.
///
/// ```
/// use sse_server::{classroom::origin::cross_site, http::parse_head};
///
/// let own = parse_head(b"POST /send HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n\
///     Origin: http://127.0.0.1:3000\r\n\r\n").unwrap();
/// assert_eq!(cross_site(&own), None);
/// let other = parse_head(b"POST /send HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n\
///     Origin: http://127.0.0.1:8080\r\n\r\n").unwrap();
/// assert!(cross_site(&other).is_some());
/// ```
pub fn cross_site(request: &Request) -> Option<&'static str> {
    match request.header("sec-fetch-site").map(str::trim) {
        None | Some("same-origin" | "none") => {}
        Some("same-site") => return Some(SAME_SITE),
        Some("cross-site") => return Some(CROSS_SITE),
        Some(_) => return Some(UNKNOWN_FETCH_SITE),
    }
    let origin = request.header("origin")?;
    match request.header("host") {
        None => Some(NO_HOST),
        Some(host) if origin_matches_host(origin.trim(), host.trim()) => None,
        Some(_) => Some(OTHER_ORIGIN),
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the same host and port as `host`
/// (`host[:port]`, the `Host` header). Host names are compared without case (RFC 3986 §3.2.2).
fn origin_matches_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // `null`, or not an origin at all
    };
    let default_port = if scheme.eq_ignore_ascii_case("http") {
        80
    } else if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        return false;
    };
    let (Some((origin_host, origin_port)), Some((host_host, host_port))) =
        (split_authority(authority), split_authority(host))
    else {
        return false;
    };
    let origin_port = origin_port.unwrap_or(default_port);
    // Behind a proxy that ends TLS the server cannot know which scheme the browser used, so a
    // `Host` without a port matches the default port of the Origin's own scheme.
    let ports_match = host_port.unwrap_or(default_port) == origin_port;
    ports_match && origin_host.eq_ignore_ascii_case(host_host)
}

/// `host[:port]` split in two; an IPv6 host keeps its brackets (`[::1]:3000`). `None` when the
/// host is empty or the port is not a number.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let (host, rest) = authority.split_at(authority.find(']')? + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some("") => None, // `host:` means the default port (RFC 3986 §3.2.3)
        Some(port) => Some(u16::try_from(wire::decimal(port)?).ok()?),
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_head;

    /// `POST /send` with `headers` (each `Name: value`).
    fn request(headers: &[&str]) -> Request {
        let mut head = String::from("POST /send HTTP/1.1\r\n");
        for header in headers {
            head.push_str(header);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        parse_head(head.as_bytes()).unwrap()
    }

    fn refused(headers: &[&str]) -> Option<&'static str> {
        cross_site(&request(headers))
    }

    #[test]
    fn neither_header_is_served() {
        assert_eq!(refused(&["Host: 127.0.0.1:3000"]), None);
    }

    #[test]
    fn sec_fetch_site_same_origin_and_none_are_served() {
        assert_eq!(refused(&["Host: h", "Sec-Fetch-Site: same-origin"]), None);
        assert_eq!(refused(&["Host: h", "Sec-Fetch-Site: none"]), None);
    }

    #[test]
    fn sec_fetch_site_cross_site_same_site_and_unknown_values_are_refused() {
        assert_eq!(
            refused(&["Host: h", "Sec-Fetch-Site: cross-site"]),
            Some(CROSS_SITE)
        );
        assert_eq!(
            refused(&["Host: h", "Sec-Fetch-Site: same-site"]),
            Some(SAME_SITE)
        );
        assert_eq!(
            refused(&["Host: h", "Sec-Fetch-Site: nearby"]),
            Some(UNKNOWN_FETCH_SITE)
        );
    }

    #[test]
    fn a_matching_origin_is_served() {
        let host = "Host: 127.0.0.1:3000";
        assert_eq!(refused(&[host, "Origin: http://127.0.0.1:3000"]), None);
        assert_eq!(
            refused(&["Host: [::1]:3000", "Origin: http://[::1]:3000"]),
            None
        );
        // Host names without case; both headers at once.
        assert_eq!(
            refused(&[
                "Host: LocalHost:3000",
                "Origin: http://localhost:3000",
                "Sec-Fetch-Site: same-origin"
            ]),
            None
        );
    }

    #[test]
    fn a_left_out_port_is_the_scheme_s_default() {
        assert_eq!(refused(&["Host: h", "Origin: http://h"]), None);
        assert_eq!(refused(&["Host: h:80", "Origin: http://h"]), None);
        assert_eq!(refused(&["Host: h", "Origin: http://h:80"]), None);
        assert_eq!(refused(&["Host: h:443", "Origin: https://h"]), None);
        // Behind a proxy that ends TLS: the browser spoke https to port 443.
        assert_eq!(refused(&["Host: h", "Origin: https://h"]), None);
        assert_eq!(
            refused(&["Host: h:3000", "Origin: http://h"]),
            Some(OTHER_ORIGIN)
        );
        assert_eq!(
            refused(&["Host: h", "Origin: http://h:3000"]),
            Some(OTHER_ORIGIN)
        );
        assert_eq!(
            refused(&["Host: h:443", "Origin: http://h"]),
            Some(OTHER_ORIGIN)
        );
    }

    #[test]
    fn another_host_or_port_is_refused() {
        let host = "Host: 127.0.0.1:3000";
        for origin in [
            "Origin: http://evil.example",
            "Origin: http://127.0.0.1:8080",
            "Origin: http://localhost:3000", // the same machine, but another name: another origin
            "Origin: http://127.0.0.1:3000.evil.example",
            "Origin: null",
            "Origin: ftp://127.0.0.1:3000",
            "Origin: 127.0.0.1:3000",
            "Origin: http://:3000",
        ] {
            assert_eq!(refused(&[host, origin]), Some(OTHER_ORIGIN), "{origin}");
        }
    }

    #[test]
    fn an_origin_without_a_host_is_refused() {
        let head = b"POST /send HTTP/1.0\r\nOrigin: http://h\r\n\r\n";
        assert_eq!(cross_site(&parse_head(head).unwrap()), Some(NO_HOST));
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(split_authority("h:3000"), Some(("h", Some(3000))));
        assert_eq!(split_authority("h"), Some(("h", None)));
        assert_eq!(split_authority("h:"), Some(("h", None)));
        assert_eq!(split_authority("[::1]:80"), Some(("[::1]", Some(80))));
        assert_eq!(split_authority("[::1]"), Some(("[::1]", None)));
        assert_eq!(split_authority("h:+80"), None);
        assert_eq!(split_authority("h:99999"), None);
        assert_eq!(split_authority("[::1]x"), None);
        assert_eq!(split_authority(""), None);
    }
}
