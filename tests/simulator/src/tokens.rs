//! LWA access tokens: which account each belongs to and when it expires.
use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::rng::SimRng;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    Missing,
    Unknown,
    Expired { account: String },
}

#[derive(Debug)]
struct Grant {
    account: String,
    expires_at: Instant,
}

/// Every token granted, until it expires or the simulator resets.
#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    grants: HashMap<String, Grant>,
}

impl TokenStore {
    /// A new token for `account`; earlier tokens stay valid until they expire, as in LWA.
    pub(crate) fn grant(&mut self, account: &str, ttl: Duration, rng: &mut SimRng, now: Instant) -> String {
        // Expired tokens are only kept so their 401 can name the account; a long demo
        // must not grow without bound, so drop those older than a day now and then.
        if self.grants.len() > 10_000 {
            self.grants
                .retain(|_, g| now.saturating_duration_since(g.expires_at) < Duration::from_secs(86_400));
        }
        let token = format!("Atza|sim.{}", rng.hex(48));
        self.grants.insert(
            token.clone(),
            Grant {
                account: account.to_owned(),
                expires_at: now + ttl,
            },
        );
        token
    }

    pub(crate) fn check(&self, token: Option<&str>, now: Instant) -> Result<String, TokenProblem> {
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenProblem::Missing)?;
        let grant = self.grants.get(token).ok_or(TokenProblem::Unknown)?;
        if now < grant.expires_at {
            Ok(grant.account.clone())
        } else {
            Err(TokenProblem::Expired {
                account: grant.account.clone(),
            })
        }
    }

    /// Expires every token of `account` now (admin), so the next call gets 401.
    pub(crate) fn expire_account(&mut self, account: &str, now: Instant) -> usize {
        let mut n = 0;
        for grant in self.grants.values_mut().filter(|g| g.account == account && g.expires_at > now) {
            grant.expires_at = now;
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_valid_until_its_ttl_and_names_its_account_after() {
        let mut store = TokenStore::default();
        let now = Instant::now();
        let token = store.grant("acct-1", Duration::from_secs(10), &mut SimRng::new(1), now);
        assert_eq!(store.check(Some(&token), now + Duration::from_secs(9)), Ok("acct-1".to_owned()));
        assert_eq!(
            store.check(Some(&token), now + Duration::from_secs(10)),
            Err(TokenProblem::Expired {
                account: "acct-1".to_owned()
            })
        );
        assert_eq!(store.check(Some("Atza|nope"), now), Err(TokenProblem::Unknown));
        assert_eq!(store.check(None, now), Err(TokenProblem::Missing));
    }

    #[test]
    fn expiring_an_account_leaves_other_accounts_alone() {
        let mut store = TokenStore::default();
        let now = Instant::now();
        let mut rng = SimRng::new(1);
        let a = store.grant("acct-1", Duration::from_secs(60), &mut rng, now);
        let b = store.grant("acct-2", Duration::from_secs(60), &mut rng, now);
        assert_eq!(store.expire_account("acct-1", now), 1);
        assert!(store.check(Some(&a), now).is_err());
        assert!(store.check(Some(&b), now).is_ok());
    }
}
