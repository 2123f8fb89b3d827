//! A callback URL as the API accepts it and the worker calls it.
use std::fmt;
use std::net::IpAddr;

use reqwest::Url;

/// Longest callback URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// An absolute `https` URL (or `http` where the caller allows it) with a host, no
/// userinfo and no fragment, at most [`MAX_URL_LEN`] bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackUrl(Url);

impl CallbackUrl {
    /// Parse and check `raw`; the error says what is wrong without repeating the URL.
    pub fn parse(raw: &str, allow_http: bool) -> Result<Self, String> {
        if raw.len() > MAX_URL_LEN {
            return Err(format!("must be at most {MAX_URL_LEN} characters"));
        }
        let url = Url::parse(raw).map_err(|_| "must be an absolute URL such as https://hooks.example.com/drover".to_owned())?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            "http" => return Err("must be https: callbacks carry job data and a signature".into()),
            _ => return Err("must be an https URL".into()),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry a user name or password: the request is signed instead".into());
        }
        if url.fragment().is_some() {
            return Err("must not have a #fragment".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("must name a host".into());
        }
        Ok(Self(url))
    }

    /// The host as written, lower case, without brackets for IPv6.
    pub fn host(&self) -> String {
        match self.0.host() {
            Some(::url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string().to_ascii_lowercase(),
            None => String::new(),
        }
    }

    /// The address when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.0.host()? {
            ::url::Host::Ipv4(a) => Some(IpAddr::V4(a)),
            ::url::Host::Ipv6(a) => Some(IpAddr::V6(a)),
            ::url::Host::Domain(_) => None,
        }
    }

    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(443)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }
}

/// The host only: the path and query may hold a tenant's token.
impl fmt::Debug for CallbackUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallbackUrl({}://{}/…)", self.0.scheme(), self.host())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_https_url_with_a_host_is_accepted_and_its_host_is_lower_case() {
        let u = CallbackUrl::parse("https://Hooks.Example.com:8443/drover?t=1", false).unwrap();
        assert_eq!(u.host(), "hooks.example.com");
        assert_eq!(u.port(), 8443);
        assert_eq!(u.ip(), None);
        let v6 = CallbackUrl::parse("https://[fd00::1]/x", false).unwrap();
        assert_eq!(v6.host(), "fd00::1");
        assert!(v6.ip().is_some());
    }

    #[test]
    fn http_is_refused_unless_allowed_and_other_schemes_always() {
        assert!(CallbackUrl::parse("http://hooks.example.com/x", false)
            .unwrap_err()
            .contains("https"));
        assert!(CallbackUrl::parse("http://hooks.example.com/x", true).is_ok());
        assert!(CallbackUrl::parse("ftp://hooks.example.com/x", true).is_err());
        assert!(CallbackUrl::parse("file:///etc/passwd", true).is_err());
    }

    #[test]
    fn relative_long_userinfo_and_fragment_urls_are_refused() {
        assert!(CallbackUrl::parse("/hooks", false).unwrap_err().contains("absolute"));
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(CallbackUrl::parse(&long, false).unwrap_err().contains("2048"));
        let err = CallbackUrl::parse("https://user:pw@hooks.example.com/", false).unwrap_err();
        assert!(err.contains("user name") && !err.contains("pw"), "{err}");
        assert!(CallbackUrl::parse("https://hooks.example.com/#x", false).is_err());
    }

    #[test]
    fn debug_shows_the_host_but_not_the_path() {
        let u = CallbackUrl::parse("https://hooks.example.com/secret-token", false).unwrap();
        let shown = format!("{u:?}");
        assert!(shown.contains("hooks.example.com") && !shown.contains("secret-token"), "{shown}");
    }
}
