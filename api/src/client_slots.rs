//! Connections held per client address (`api.server.max_connections_per_client`): one
//! address — an IPv6 /64 counts as one — holds at most its share of the listener's
//! slots, so a single client cannot take them all; a trusted proxy (`api.ui.trusted_proxies`),
//! which carries many clients, is not capped.
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;

/// One warning per this long at most, whichever addresses are refused.
const WARN_EVERY: Duration = Duration::from_secs(60);

pub struct ClientSlots {
    /// 0: no cap.
    cap: usize,
    exempt: Vec<IpNet>,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    by_client: HashMap<IpAddr, usize>,
    warned_at: Option<Instant>,
}

/// A connection counted against its client's cap until dropped.
pub struct ClientSlot {
    slots: Arc<ClientSlots>,
    client: Option<IpAddr>,
}

impl ClientSlots {
    pub fn new(cap: usize, exempt: Vec<IpNet>) -> Arc<Self> {
        Arc::new(Self {
            cap,
            exempt,
            held: Mutex::new(Held::default()),
        })
    }

    /// A slot for a connection from `peer`, or `None` when that client holds its cap.
    pub fn take(self: &Arc<Self>, peer: IpAddr) -> Option<ClientSlot> {
        // A dual-stack listener sees an IPv4 peer as ::ffff:a.b.c.d (a range written in
        // that form still matches it as seen).
        let (seen, peer) = (peer, peer.to_canonical());
        if self.cap == 0 || self.exempt.iter().any(|net| net.contains(&peer) || net.contains(&seen)) {
            return Some(ClientSlot {
                slots: self.clone(),
                client: None,
            });
        }
        let client = client_of(peer);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.by_client.entry(client).or_insert(0);
        if *n >= self.cap {
            if held.warned_at.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                held.warned_at = Some(Instant::now());
                tracing::warn!(
                    client = %client,
                    cap = self.cap,
                    "refusing connections from a client that holds its share of the listener (api.server.max_connections_per_client)"
                );
            }
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            slots: self.clone(),
            client: Some(client),
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let Some(client) = self.client else { return };
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.by_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                held.by_client.remove(&client);
            }
        }
    }
}

/// The address a cap counts: an IPv4 address, or the /64 an IPv6 address is in.
fn client_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_holds_at_most_its_cap_and_a_closed_connection_frees_its_slot() {
        let slots = ClientSlots::new(2, Vec::new());
        let a = slots.take(ip("10.0.0.1")).expect("first");
        let _b = slots.take(ip("10.0.0.1")).expect("second");
        assert!(slots.take(ip("10.0.0.1")).is_none(), "third over the cap");
        assert!(slots.take(ip("10.0.0.2")).is_some(), "another client has its own");
        drop(a);
        assert!(slots.take(ip("10.0.0.1")).is_some(), "a closed connection frees its slot");
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client_and_trusted_proxies_and_no_cap_are_not_capped() {
        let slots = ClientSlots::new(1, vec!["10.9.0.0/16".parse().unwrap()]);
        let _a = slots.take(ip("2001:db8:1:2::1")).expect("first");
        assert!(slots.take(ip("2001:db8:1:2::ffff")).is_none(), "same /64");
        assert!(slots.take(ip("2001:db8:1:3::1")).is_some(), "another /64");
        let proxied: Vec<_> = (0..10).map(|_| slots.take(ip("10.9.1.1"))).collect();
        assert!(proxied.iter().all(Option::is_some), "a trusted proxy is not capped");
        // (found by the hostile-tenant audit of 2026-12-06: on a dual-stack listener an
        // IPv4 proxy connects as ::ffff:a.b.c.d, which no IPv4 range contains, so it
        // was capped like any client)
        let mapped: Vec<_> = (0..10).map(|_| slots.take(ip("::ffff:10.9.1.1"))).collect();
        assert!(mapped.iter().all(Option::is_some), "nor is one seen through a dual-stack socket");
        let none = ClientSlots::new(0, Vec::new());
        let all: Vec<_> = (0..10).map(|_| none.take(ip("10.0.0.1"))).collect();
        assert!(all.iter().all(Option::is_some), "0 is no cap");
    }
}
