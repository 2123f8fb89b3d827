//! Where Redis is, read from one URL: a single server (`redis://`, `rediss://`), a Redis
//! Cluster given by seed nodes (`redis+cluster://[user:password@]host:port,host:port`) or a
//! Sentinel-managed primary found by service name
//! (`redis+sentinel://[user:password@]host:port,host:port/<service>`; the credentials are
//! the primary's, the sentinels are asked without them).

/// A parsed Redis location. Its `Debug` never shows a password.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server; the URL as given.
    Single(String),
    /// Seed nodes of a Redis Cluster, each a `redis://` URL carrying the credentials.
    Cluster(Vec<String>),
    /// Sentinel addresses (`redis://host:port`), the service name, and the primary's
    /// credentials.
    Sentinel {
        sentinels: Vec<String>,
        service: String,
        username: Option<String>,
        password: Option<String>,
    },
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single(_) => f.write_str("RedisTarget::Single(..)"),
            Self::Cluster(seeds) => write!(f, "RedisTarget::Cluster({} seeds)", seeds.len()),
            Self::Sentinel { sentinels, service, .. } => write!(f, "RedisTarget::Sentinel({} sentinels, {service:?})", sentinels.len()),
        }
    }
}

/// Why a Redis URL was refused; says what shape was expected and never repeats the URL
/// (it may carry a password).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("not a Redis URL ({0}); expected redis://[user:password@]host[:port][/db] (rediss:// over TLS), redis+cluster://host:port,host:port or redis+sentinel://host:port,host:port/<service>")]
    Invalid(&'static str),
}

impl RedisTarget {
    pub fn parse(url: &str) -> Result<Self, TargetError> {
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let (auth, hosts) = split_auth(rest.trim_end_matches('/'));
            let seeds: Vec<String> = hosts.split(',').map(|h| format!("redis://{auth}{h}")).collect();
            if hosts.is_empty() || hosts.split(',').any(|h| !valid_host(h)) {
                return Err(TargetError::Invalid("a cluster URL needs host:port seeds separated by commas"));
            }
            return Ok(Self::Cluster(seeds));
        }
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let (auth, tail) = split_auth(rest);
            let (hosts, service) = tail
                .split_once('/')
                .ok_or(TargetError::Invalid("a sentinel URL ends with /<service name>"))?;
            if service.is_empty() || service.contains('/') {
                return Err(TargetError::Invalid("a sentinel URL ends with /<service name>"));
            }
            if hosts.is_empty() || hosts.split(',').any(|h| !valid_host(h)) {
                return Err(TargetError::Invalid("a sentinel URL needs host:port sentinels separated by commas"));
            }
            // Percent-decoded, as the single-server and cluster URLs' are (found by the
            // Sentinel audit of 2026-12-07, second: a password written `a%2Fb` worked
            // in those and failed authentication here).
            let decoded = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|d| d.into_owned())
                    .map_err(|_| TargetError::Invalid("the user name or password is not percent-encoded UTF-8"))
            };
            let (username, password) = match auth.strip_suffix('@') {
                None => (None, None),
                Some(a) => match a.split_once(':') {
                    Some((u, p)) => ((!u.is_empty()).then(|| decoded(u)).transpose()?, Some(decoded(p)?)),
                    None => (Some(decoded(a)?), None),
                },
            };
            return Ok(Self::Sentinel {
                sentinels: hosts.split(',').map(|h| format!("redis://{h}")).collect(),
                service: service.to_owned(),
                username,
                password,
            });
        }
        redis::Client::open(url).map_err(|_| TargetError::Invalid("the URL does not parse"))?;
        Ok(Self::Single(url.to_owned()))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

/// `user:password@` (kept with its `@`) and the rest.
fn split_auth(s: &str) -> (&str, &str) {
    match s.rfind('@') {
        Some(i) => (&s[..=i], &s[i + 1..]),
        None => ("", s),
    }
}

fn valid_host(h: &str) -> bool {
    match h.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the newcomer audit of 2026-12-07: the deploy guide's `rediss://` URL was
    /// refused as "does not parse" (the client was built without TLS), so API and
    /// workers could reach no Redis that needs TLS.
    #[test]
    fn a_tls_url_is_a_single_server() {
        assert_eq!(
            RedisTarget::parse("rediss://:pw@redis.example:6380").unwrap(),
            RedisTarget::Single("rediss://:pw@redis.example:6380".into())
        );
    }

    #[test]
    fn a_plain_url_is_a_single_server() {
        assert_eq!(
            RedisTarget::parse("redis://:pw@h:6379/0").unwrap(),
            RedisTarget::Single("redis://:pw@h:6379/0".into())
        );
    }

    #[test]
    fn a_cluster_url_lists_its_seeds_with_the_credentials() {
        let t = RedisTarget::parse("redis+cluster://:s3cret@a:7000,b:7001/").unwrap();
        assert_eq!(
            t,
            RedisTarget::Cluster(vec!["redis://:s3cret@a:7000".into(), "redis://:s3cret@b:7001".into()])
        );
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn a_sentinel_url_names_its_service() {
        let t = RedisTarget::parse("redis+sentinel://u:pw@s1:26379,s2:26380/mymaster").unwrap();
        assert_eq!(
            t,
            RedisTarget::Sentinel {
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26380".into()],
                service: "mymaster".into(),
                username: Some("u".into()),
                password: Some("pw".into()),
            }
        );
        assert!(!format!("{t:?}").contains("pw"));
    }

    #[test]
    fn a_sentinel_urls_credentials_are_percent_decoded_as_the_other_urls_are() {
        let t = RedisTarget::parse("redis+sentinel://us%40er:a%2Fb%40c@s1:26379/mymaster").unwrap();
        let RedisTarget::Sentinel { username, password, .. } = t else {
            panic!("a sentinel target")
        };
        assert_eq!((username.as_deref(), password.as_deref()), (Some("us@er"), Some("a/b@c")));
    }

    #[test]
    fn malformed_urls_are_refused_without_echoing_them() {
        for bad in [
            "redis+cluster://",
            "redis+cluster://a",
            "redis+cluster://a:x",
            "redis+sentinel://a:1",
            "redis+sentinel://a:1/",
            "nope://:secret@x",
        ] {
            let e = RedisTarget::parse(bad).unwrap_err();
            assert!(!e.to_string().contains("secret"), "{bad}");
        }
    }
}
