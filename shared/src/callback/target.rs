//! Which addresses a callback may never reach unless an operator allows it: a tenant
//! must not make a worker or the API probe the cluster's own network (SSRF).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` is not a public unicast address (None when it is one).
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => {
            // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible forms reach the IPv4 address.
            if let Some(mapped) = a.to_ipv4_mapped() {
                return v4(mapped).map(|_| "an IPv4-mapped non-public address");
            }
            v6(a)
        }
    }
}

fn v4(a: Ipv4Addr) -> Option<&'static str> {
    let o = a.octets();
    Some(if a.is_unspecified() || o[0] == 0 {
        "an unspecified address"
    } else if a.is_loopback() {
        "a loopback address"
    } else if a.is_private() {
        "a private address"
    } else if a.is_link_local() {
        "a link-local address"
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        "a shared (CGNAT) address"
    } else if a.is_multicast() || a.is_broadcast() || o[0] >= 240 {
        "a multicast, broadcast or reserved address"
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        "an IETF protocol address"
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        "a benchmarking address"
    } else if a.is_documentation() {
        // (found by the scheduler and callbacks audit of 2026-12-07, second: refused for
        // IPv6 only, against docs/callbacks.md; some networks use them inside)
        "a documentation address"
    } else {
        return None;
    })
}

fn v6(a: Ipv6Addr) -> Option<&'static str> {
    let seg = a.segments();
    Some(if a.is_unspecified() {
        "an unspecified address"
    } else if a.is_loopback() {
        "a loopback address"
    } else if (seg[0] & 0xfe00) == 0xfc00 {
        "a unique-local address"
    } else if (seg[0] & 0xffc0) == 0xfe80 {
        "a link-local address"
    } else if a.is_multicast() {
        "a multicast address"
    } else if seg[0] == 0 && seg[1] == 0 && seg[2] == 0 && seg[3] == 0 && seg[4] == 0 && seg[5] == 0 {
        // ::a.b.c.d (deprecated IPv4-compatible) and the rest of ::/96
        "an IPv4-compatible address"
    } else if seg[0] == 0x64 && seg[1] == 0xff9b {
        "a NAT64 address"
    } else if seg[0] == 0x2001 && seg[1] == 0x0db8 {
        "a documentation address"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        refused_range(s.parse().unwrap()).is_some()
    }

    #[test]
    fn loopback_private_link_local_unique_local_cgnat_and_multicast_are_refused() {
        for a in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "192.0.2.10",
            "198.51.100.1",
            "203.0.113.5",
        ] {
            assert!(refused(a), "{a} must be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!refused(a), "{a} must be allowed");
        }
    }

    #[test]
    fn the_reason_names_the_range() {
        assert_eq!(refused_range("127.0.0.1".parse().unwrap()), Some("a loopback address"));
        assert_eq!(
            refused_range("::ffff:192.168.0.1".parse().unwrap()),
            Some("an IPv4-mapped non-public address")
        );
    }
}
