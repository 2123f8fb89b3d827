//! Name resolution for callbacks: every address a host resolves to is checked, and
//! the connection goes only to those checked addresses (the resolver hands reqwest
//! exactly what it checked), so a DNS answer that changes between check and connect
//! (rebinding) cannot reach a refused range.
use std::net::{IpAddr, SocketAddr};

use drover::callback::target::refused_range;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The host resolved to an address callbacks may not reach. What the tenant is told
/// names the kind of address, never the address: it was found by the worker's
/// resolver, which may see internal names.
#[derive(Debug, thiserror::Error)]
#[error("the host resolves to {why}: callbacks go to public addresses only")]
pub struct TargetRefused {
    pub addr: IpAddr,
    pub why: &'static str,
}

/// The host did not resolve (NXDOMAIN, no answer, resolver down).
#[derive(Debug, thiserror::Error)]
#[error("the host did not resolve")]
pub struct NotResolved;

/// A resolver that refuses a host when ANY of its addresses is non-public (unless
/// `allow_private`): a name with one public and one private address must not be a way in.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl GuardedResolver {
    /// Resolve `host` and check every address.
    pub async fn lookup(self, host: &str) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await.map_err(|_| NotResolved)?.collect();
        if addrs.is_empty() {
            return Err(NotResolved.into());
        }
        if !self.allow_private {
            if let Some((addr, why)) = addrs.iter().find_map(|a| refused_range(a.ip()).map(|w| (a.ip(), w))) {
                return Err(TargetRefused { addr, why }.into());
            }
        }
        Ok(addrs)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = *self;
        Box::pin(async move {
            let addrs = this.lookup(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_is_refused_unless_private_targets_are_allowed() {
        let refused = GuardedResolver { allow_private: false }.lookup("localhost").await.unwrap_err();
        let why = refused.downcast_ref::<TargetRefused>().expect("a refused target");
        assert!(why.addr.is_loopback(), "{why}");
        let allowed = GuardedResolver { allow_private: true }.lookup("localhost").await.unwrap();
        assert!(allowed.iter().all(|a| a.ip().is_loopback()));
    }

    #[tokio::test]
    async fn an_ip_literal_is_checked_like_any_answer() {
        let r = GuardedResolver { allow_private: false }.lookup("10.1.2.3").await.unwrap_err();
        assert!(r.downcast_ref::<TargetRefused>().is_some());
    }
}
