//! Console sign-in attempts per client address (`api.ui.login_limit`), counted by the
//! API's Redis rate limiter so the budget holds across replicas: a key cannot be guessed
//! online faster than the limit allows. Every attempt counts, before the key is looked at,
//! so a 429 never says whether the key was valid.
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::http::HeaderMap;
use drover::redis_conn::RedisConn;
use ipnet::IpNet;

use crate::config::{parse_proxy, UiConfig};
use crate::error::ApiError;
use crate::ratelimit::RateLimiter;

/// How long a throttled address is remembered as logged: one warning per address a minute.
const LOGGED_FOR: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct LoginThrottle {
    attempts: RateLimiter,
    proxies: Vec<IpNet>,
    conn: RedisConn,
    logged_prefix: String,
}

impl LoginThrottle {
    pub fn new(conn: RedisConn, namespace: &str, config: &UiConfig) -> Self {
        Self {
            attempts: RateLimiter::named(conn.clone(), namespace, "ui-logins", config.login_limit),
            // Validated with the configuration: an entry that does not parse stopped the start.
            proxies: config.trusted_proxies.iter().filter_map(|p| parse_proxy(p)).collect(),
            conn,
            logged_prefix: format!("{namespace}:api:ui-logins-logged:"),
        }
    }

    /// Who is signing in (see [`client_address`]).
    pub fn client(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        client_address(&self.proxies, peer, headers)
    }

    /// Count one attempt from `client`; a 429 (`RateLimited`) past the budget, logged at
    /// most once a minute per address (the key presented is never logged).
    pub async fn check(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        let bucket = bucket(client);
        let verdict = self.attempts.check(&bucket).await;
        if let Err(ApiError::RateLimited { retry_after }) = &verdict {
            if self.first_in_window(&bucket).await {
                tracing::warn!(
                    client = %bucket,
                    retry_after_s = retry_after.as_secs_f64().ceil() as u64,
                    "console sign-ins from this address are throttled (api.ui.login_limit)"
                );
            }
        }
        verdict
    }

    /// Whether this is the first refusal of `bucket` in [`LOGGED_FOR`] (across replicas).
    async fn first_in_window(&self, bucket: &str) -> bool {
        let mut conn = self.conn.clone();
        let set: Result<Option<String>, _> = redis::cmd("SET")
            .arg(format!("{}{bucket}", self.logged_prefix))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(LOGGED_FOR.as_millis() as u64)
            .query_async(&mut conn)
            .await;
        // Redis away: the limiter has answered already; logging twice beats never.
        set.map_or(true, |ok| ok.is_some())
    }
}

/// Whether `ip` is in one of `proxies` in either of its forms: an IPv4 address and the
/// IPv4-mapped IPv6 one a dual-stack listener sees are one host, whichever way the range
/// is written.
fn trusted_by(proxies: &[IpNet], ip: IpAddr) -> bool {
    let other = match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
    };
    proxies.iter().any(|net| net.contains(&ip) || net.contains(&other))
}

/// The connection's peer, or — when the peer is one of `proxies` — the right-most
/// `X-Forwarded-For` address that is not a proxy (what a client writes to the left of it
/// is not believed). `None` when the request carries no peer address.
fn client_address(proxies: &[IpNet], peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let trusted = |ip: IpAddr| trusted_by(proxies, ip);
    let peer = peer?.ip().to_canonical();
    if !trusted(peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.into_iter().rev() {
        match hop_address(hop) {
            Ok(ip) if trusted(ip) => continue,
            Ok(ip) => return Some(ip),
            // A hop no proxy wrote: nothing further left can be believed.
            Err(_) => break,
        }
    }
    Some(peer)
}

/// The address in one `X-Forwarded-For` hop: bare, or with the port some proxies write
/// (`203.0.113.9:51234`, `[2001:db8::1]:443`).
fn hop_address(hop: &str) -> Result<IpAddr, std::net::AddrParseError> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|e| hop.parse::<SocketAddr>().map(|s| s.ip()).map_err(|_| e))
        .map(|ip| ip.to_canonical())
}

/// The budget an address draws on: an IPv4 address, or an IPv6 address's /64 (one host
/// commonly holds a whole /64, so single IPv6 addresses would be free to rotate).
fn bucket(client: Option<IpAddr>) -> String {
    match client {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(forwarded: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(forwarded).unwrap());
        h
    }

    fn client_of(proxies: &[&str], peer: &str, forwarded: &str) -> Option<IpAddr> {
        let proxies: Vec<IpNet> = proxies.iter().filter_map(|p| parse_proxy(p)).collect();
        client_address(&proxies, Some(peer.parse().unwrap()), &headers(forwarded))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(
            client_of(&[], "198.51.100.4:5000", "203.0.113.9"),
            Some("198.51.100.4".parse().unwrap())
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let proxies = ["10.0.0.0/8", "127.0.0.1"];
        // The client wrote 1.1.1.1 itself; the proxy appended what it saw.
        assert_eq!(
            client_of(&proxies, "127.0.0.1:5000", "1.1.1.1, 203.0.113.9, 10.2.3.4"),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            client_of(&proxies, "127.0.0.1:5000", "junk, 10.2.3.4"),
            Some("127.0.0.1".parse().unwrap()),
            "a hop no proxy wrote is not believed"
        );
    }

    /// Found by the hostile-tenant audit of 2026-12-06: a trusted range written
    /// IPv4-mapped (as a dual-stack listener sees an IPv4 proxy) matched no peer, since
    /// the peer is compared in its IPv4 form, so every sign-in behind that proxy shared
    /// its budget and ten bad attempts locked every operator out. (The connection cap
    /// had the same fix.)
    #[test]
    fn a_trusted_range_written_ipv4_mapped_is_trusted() {
        assert_eq!(
            client_of(&["::ffff:10.0.0.0/104"], "[::ffff:10.1.2.3]:5000", "203.0.113.9"),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            client_of(&["::ffff:10.0.0.0/104"], "10.1.2.3:5000", "203.0.113.9, ::ffff:10.4.5.6"),
            Some("203.0.113.9".parse().unwrap())
        );
    }

    /// Found by the hostile-tenant audit of 2026-12-06: behind a proxy that writes the
    /// client's port (Azure's Application Gateway appends `ip:port`), no hop parsed, so
    /// every sign-in drew on the proxy's one budget and ten bad attempts locked every
    /// operator out.
    #[test]
    fn a_hop_written_with_its_port_is_the_client() {
        assert_eq!(
            client_of(&["10.0.0.0/8"], "10.0.0.7:1", "203.0.113.9:51234"),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            client_of(&["10.0.0.0/8"], "10.0.0.7:1", "[2001:db8::1]:443, 10.0.0.8:80"),
            Some("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_addresses_share_their_64_and_v4_mapped_ones_are_v4() {
        assert_eq!(bucket(Some("2001:db8:1:2:aaaa::1".parse().unwrap())), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:198.51.100.4".parse().unwrap();
        assert_eq!(bucket(Some(mapped.to_canonical())), "198.51.100.4");
    }
}
