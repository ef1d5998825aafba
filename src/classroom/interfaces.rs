//! The classroom: which addresses other machines can use to reach a server bound to `0.0.0.0`.
//!
//! A server bound to a wildcard address (`0.0.0.0`, or `::`) accepts connections on every address
//! this machine has, but its startup line can only say `http://0.0.0.0:3000/`, which is no address
//! a student can type. So after it, the server prints one line per address worth trying:
//!
//! ```text
//! Server running at http://0.0.0.0:3000/
//!   from another machine: http://192.168.1.23:3000/
//! ```
//!
//! The standard library has no call that lists a machine's addresses, but Linux shows them as
//! text under `/proc`, and reading text is all we need:
//!
//! - IPv4: `/proc/net/fib_trie`, the kernel's routing tables as a tree. Each address of this
//!   machine is a leaf followed by a `/32 host LOCAL` line ([`parse_fib_trie`]).
//! - IPv6: `/proc/net/if_inet6`, one line per address ([`parse_if_inet6`]).
//!
//! Loopback (`127.0.0.1`, `::1`) and link-local addresses (`169.254.x.x`, `fe80::`) are left out:
//! another machine cannot use them. Elsewhere than Linux, or when `/proc` cannot be read, the
//! line says which command shows the addresses instead. Everything here except
//! [`read_addresses`] is a pure function, tested on sample text.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire;

/// The IPv4 routing tables, in which this machine's own addresses are `host LOCAL` leaves.
pub const FIB_TRIE: &str = "/proc/net/fib_trie";
/// This machine's IPv6 addresses, one a line.
pub const IF_INET6: &str = "/proc/net/if_inet6";

/// What each address line starts with.
pub const PREFIX: &str = "  from another machine: ";

/// Whether `host` is a wildcard address: bound to it, the server listens on every address.
pub fn is_wildcard(host: &str) -> bool {
    matches!(host, "0.0.0.0" | "::" | "[::]")
}

/// This machine's own IPv4 addresses in the text of `/proc/net/fib_trie`, each once, in order.
///
/// In the tree, a leaf line `|-- 192.168.1.23` is followed by one line per route to it; the
/// route `/32 host LOCAL` means "this exact address is one of ours". (`127.0.0.0` with
/// `/8 host LOCAL` is the whole loopback range, not one address, so only `/32` counts.)
pub fn parse_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut found = Vec::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            leaf = addr.parse().ok();
        } else if line.starts_with('/') {
            let route: Vec<&str> = line.split_whitespace().collect();
            if let (Some(addr), ["/32", "host", "LOCAL"]) = (leaf, route.as_slice()) {
                if !found.contains(&addr) {
                    found.push(addr);
                }
            }
        } else {
            leaf = None; // a branch (`+-- 10.0.0.0/8 ...`) or a table name (`Local:`)
        }
    }
    found
}

/// Flags in `/proc/net/if_inet6` that mean the address is not usable (yet): duplicate address
/// detection has not finished (`IFA_F_TENTATIVE`) or found the address taken (`IFA_F_DADFAILED`).
const NOT_USABLE_FLAGS: u32 = 0x40 | 0x08;

/// The IPv6 addresses in the text of `/proc/net/if_inet6`, each once, in order.
///
/// A line is `<32 hex digits> <ifindex> <prefix length> <scope> <flags> <interface>`, e.g.
/// `fd000000000000000000000000000002 04 40 00 80 eth0` for `fd00::2` on `eth0`.
pub fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    let mut found = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [hex, _index, _prefix, _scope, flags, _name] = fields.as_slice() else {
            continue;
        };
        let Ok(bits) = u128::from_str_radix(hex, 16) else {
            continue;
        };
        let flags = u32::from_str_radix(flags, 16).unwrap_or(0);
        let addr = Ipv6Addr::from(bits);
        if hex.len() == 32 && flags & NOT_USABLE_FLAGS == 0 && !found.contains(&addr) {
            found.push(addr);
        }
    }
    found
}

/// Whether another machine could reach this one at `addr`: not loopback, not link-local (those
/// work only on one network segment, and in a URL they need a zone such as `%eth0`), not
/// unspecified.
pub fn usable_from_another_machine(addr: IpAddr) -> bool {
    let link_local = match addr {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    !addr.is_loopback() && !addr.is_unspecified() && !link_local
}

/// `http://ADDR:PORT/`, with an IPv6 address in brackets, as a URL needs it.
pub fn url(addr: IpAddr, port: u16) -> String {
    format!("http://{}/", wire::host_port(addr, port))
}

/// The lines to print after the startup line, for a server bound to `host` on `port`, given the
/// addresses found (or why none could be read). None unless `host` is a wildcard.
///
/// Bound to `0.0.0.0`, the server takes IPv4 only. Bound to `::`, Linux gives it IPv4 too (as
/// `::ffff:a.b.c.d`), unless the sysctl `net.ipv6.bindv6only` is 1 (it is 0 by default).
/// IPv4 addresses come first: they are the ones students can type.
pub fn startup_lines(host: &str, port: u16, found: io::Result<Vec<IpAddr>>) -> Vec<String> {
    if !is_wildcard(host) {
        return Vec::new();
    }
    let ipv6_too = host != "0.0.0.0";
    match found {
        Ok(addrs) => {
            let mut addrs: Vec<IpAddr> = addrs
                .into_iter()
                .filter(|addr| usable_from_another_machine(*addr) && (addr.is_ipv4() || ipv6_too))
                .collect();
            addrs.sort_by_key(|addr| addr.is_ipv6()); // stable: IPv4 first, each in its order
            addrs
                .into_iter()
                .map(|addr| format!("{PREFIX}{}", url(addr, port)))
                .collect()
        }
        Err(_) => vec![format!(
            "{PREFIX}http://<this machine's address>:{port}/ (`ip addr` on Linux, \
             `ipconfig getifaddr en0` on macOS, `ipconfig` on Windows shows it)"
        )],
    }
}

/// This machine's addresses, read from `/proc` (Linux only; elsewhere an error).
///
/// # Errors
/// `/proc/net/fib_trie` cannot be read: not Linux, or `/proc` is not mounted. A missing
/// `/proc/net/if_inet6` only means no IPv6 (it is absent when IPv6 is switched off).
pub fn read_addresses() -> io::Result<Vec<IpAddr>> {
    let ipv4 = parse_fib_trie(&std::fs::read_to_string(FIB_TRIE)?);
    let ipv6 = parse_if_inet6(&std::fs::read_to_string(IF_INET6).unwrap_or_default());
    let ipv4 = ipv4.into_iter().map(IpAddr::V4);
    Ok(ipv4.chain(ipv6.into_iter().map(IpAddr::V6)).collect())
}

/// What `main` prints after the startup line: [`startup_lines`] with the addresses from
/// [`read_addresses`] (which is only called for a wildcard host).
pub fn classroom_lines(host: &str, port: u16) -> Vec<String> {
    if !is_wildcard(host) {
        return Vec::new();
    }
    startup_lines(host, port, read_addresses())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A laptop on a classroom network (192.168.1.23/24) with Docker's bridge (172.17.0.1), as
    /// `/proc/net/fib_trie` shows it: the Main table, then the Local one, which repeats the leaves.
    const FIB_TRIE_SAMPLE: &str = "\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 172.17.0.0/16 2 0 2
        |-- 172.17.0.0
           /16 link UNICAST
        |-- 172.17.0.1
           /32 host LOCAL
     +-- 192.168.1.0/24 2 0 2
        +-- 192.168.1.0/28 2 0 2
           |-- 192.168.1.0
              /24 link UNICAST
           |-- 192.168.1.1
              /0 universe UNICAST
        |-- 192.168.1.23
           /32 host LOCAL
        |-- 192.168.1.255
           /32 link BROADCAST
     |-- 169.254.10.20
        /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     +-- 192.168.1.0/24 2 0 2
        |-- 192.168.1.23
           /32 host LOCAL
";

    const IF_INET6_SAMPLE: &str = "\
00000000000000000000000000000001 01 80 10 80       lo
fe800000000000000211aafffe223344 02 40 20 80   wlp2s0
20010db8000000000000000000000023 02 40 00 00   wlp2s0
fd000000000000000000000000000002 04 40 00 82     eth0
20010db8000000000000000000000099 02 40 00 40   wlp2s0
20010db8000000000000000000000023 02 40 00 00   wlp2s0
";

    fn v4(text: &str) -> IpAddr {
        IpAddr::V4(text.parse().unwrap())
    }

    fn v6(text: &str) -> IpAddr {
        IpAddr::V6(text.parse().unwrap())
    }

    #[test]
    fn fib_trie_local_host_leaves_are_this_machine_s_addresses() {
        let found: Vec<String> = parse_fib_trie(FIB_TRIE_SAMPLE)
            .iter()
            .map(ToString::to_string)
            .collect();
        // Each once, although the Local table repeats them; not the networks, broadcasts or
        // gateways; not 127.0.0.0, whose LOCAL route is the whole /8.
        assert_eq!(
            found,
            ["127.0.0.1", "172.17.0.1", "192.168.1.23", "169.254.10.20"]
        );
    }

    #[test]
    fn if_inet6_lines_are_addresses_and_tentative_ones_are_skipped() {
        let found: Vec<String> = parse_if_inet6(IF_INET6_SAMPLE)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            ["::1", "fe80::211:aaff:fe22:3344", "2001:db8::23", "fd00::2"]
        );
    }

    #[test]
    fn garbage_lines_are_skipped_not_fatal() {
        assert!(parse_fib_trie("nonsense\n|-- not an address\n   /32 host LOCAL\n").is_empty());
        assert!(parse_if_inet6("short line\nzz 01 80 10 80 lo\n").is_empty());
    }

    #[test]
    fn loopback_and_link_local_are_not_usable_from_another_machine() {
        for addr in [
            v4("127.0.0.1"),
            v4("169.254.10.20"),
            v4("0.0.0.0"),
            v6("::1"),
        ] {
            assert!(!usable_from_another_machine(addr), "{addr}");
        }
        assert!(!usable_from_another_machine(v6("fe80::1")));
        for addr in [
            v4("192.168.1.23"),
            v4("10.0.0.5"),
            v6("2001:db8::23"),
            v6("fd00::2"),
        ] {
            assert!(usable_from_another_machine(addr), "{addr}");
        }
    }

    #[test]
    fn urls_put_ipv6_in_brackets() {
        assert_eq!(url(v4("192.168.1.23"), 3000), "http://192.168.1.23:3000/");
        assert_eq!(url(v6("fd00::2"), 3000), "http://[fd00::2]:3000/");
    }

    #[test]
    fn only_a_wildcard_host_gets_classroom_lines() {
        assert!(is_wildcard("0.0.0.0") && is_wildcard("::") && is_wildcard("[::]"));
        for host in ["127.0.0.1", "localhost", "192.168.1.23", "::1"] {
            assert!(!is_wildcard(host), "{host}");
            assert!(startup_lines(host, 3000, Ok(vec![v4("192.168.1.23")])).is_empty());
            assert!(classroom_lines(host, 3000).is_empty());
        }
    }

    #[test]
    fn ipv4_wildcard_lists_usable_ipv4_addresses_one_a_line() {
        let mut found: Vec<IpAddr> = parse_fib_trie(FIB_TRIE_SAMPLE)
            .into_iter()
            .map(IpAddr::V4)
            .collect();
        found.extend(parse_if_inet6(IF_INET6_SAMPLE).into_iter().map(IpAddr::V6));
        assert_eq!(
            startup_lines("0.0.0.0", 3000, Ok(found.clone())),
            [
                "  from another machine: http://172.17.0.1:3000/",
                "  from another machine: http://192.168.1.23:3000/",
            ]
        );
        // `::` takes both families: IPv4 first.
        assert_eq!(
            startup_lines("::", 3000, Ok(found)),
            [
                "  from another machine: http://172.17.0.1:3000/",
                "  from another machine: http://192.168.1.23:3000/",
                "  from another machine: http://[2001:db8::23]:3000/",
                "  from another machine: http://[fd00::2]:3000/",
            ]
        );
    }

    #[test]
    fn no_usable_address_means_no_line() {
        assert!(startup_lines("0.0.0.0", 3000, Ok(vec![v4("127.0.0.1")])).is_empty());
    }

    #[test]
    fn unreadable_proc_says_how_to_find_the_address() {
        let lines = startup_lines("0.0.0.0", 3000, Err(io::ErrorKind::NotFound.into()));
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with(PREFIX), "{lines:?}");
        assert!(
            lines[0].contains(":3000/") && lines[0].contains("ipconfig"),
            "{lines:?}"
        );
    }
}
