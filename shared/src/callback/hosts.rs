//! One entry of a key's `callback_hosts`: the hosts its jobs may call back.
use std::fmt;

/// `hooks.example.com` (that host only) or `*.example.com` (any host below
/// example.com, not example.com itself). Case does not matter; ports are not part of it.
#[derive(Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    Below(String),
}

impl HostPattern {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim().to_ascii_lowercase();
        let (below, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, s),
        };
        let label_ok = |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let is_ip = name.parse::<std::net::IpAddr>().is_ok();
        if name.is_empty() || name.len() > 253 || !(is_ip || name.split('.').all(label_ok)) || (below && is_ip) {
            return Err(format!(
                "{raw:?} is not a host name, an IP address or *.<domain> (no scheme, port or path)"
            ));
        }
        Ok(if below { Self::Below(name) } else { Self::Exact(name) })
    }

    /// Whether `host` (lower case, as [`super::CallbackUrl::host`] gives it) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        match self {
            Self::Exact(h) => host == h,
            Self::Below(d) => host.len() > d.len() + 1 && host.ends_with(d.as_str()) && host[..host.len() - d.len()].ends_with('.'),
        }
    }
}

impl fmt::Debug for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(h) => f.write_str(h),
            Self::Below(d) => write!(f, "*.{d}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_host_matches_only_itself_whatever_its_case() {
        let p = HostPattern::parse("Hooks.Example.com").unwrap();
        assert!(p.matches("hooks.example.com"));
        assert!(p.matches("hooks.example.com."));
        assert!(!p.matches("evil-hooks.example.com"));
        assert!(!p.matches("hooks.example.com.evil.net"));
    }

    #[test]
    fn a_wildcard_matches_hosts_below_its_domain_but_not_the_domain_or_lookalikes() {
        let p = HostPattern::parse("*.example.com").unwrap();
        assert!(p.matches("a.example.com") && p.matches("a.b.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("evilexample.com"));
    }

    #[test]
    fn urls_ports_and_wildcard_ips_are_not_patterns() {
        for bad in ["https://x.com", "x.com:443", "x.com/path", "", "*.10.0.0.1", "*"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
        assert!(HostPattern::parse("127.0.0.1").unwrap().matches("127.0.0.1"));
        assert!(HostPattern::parse("::1").unwrap().matches("::1"));
    }
}
