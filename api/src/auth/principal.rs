//! Who is calling, and which accounts it may touch.
use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use drover::callback::HostPattern;
use drover::job::{AccountId, Job};
use secrecy::SecretString;

use super::Role;
use crate::error::ApiError;

#[derive(Debug)]
pub struct Principal {
    /// The key's configured name (never the key).
    pub name: String,
    pub role: Role,
    /// `None`: every account.
    pub accounts: Option<BTreeSet<AccountId>>,
    /// The hosts its jobs may call back and the secret that signs them; `None`: the key
    /// makes no callbacks.
    pub callbacks: Option<CallbackGrant>,
}

/// A key's callback settings. Debug shows the hosts, never the secret.
#[derive(Clone)]
pub struct CallbackGrant {
    pub hosts: Vec<HostPattern>,
    pub secret: SecretString,
}

impl std::fmt::Debug for CallbackGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackGrant").field("hosts", &self.hosts).finish_non_exhaustive()
    }
}

impl Principal {
    pub fn new(name: &str, role: Role, accounts: Option<Vec<AccountId>>) -> Self {
        Self {
            name: name.to_owned(),
            role,
            accounts: accounts.map(|a| a.into_iter().collect()),
            callbacks: None,
        }
    }

    pub fn with_callbacks(mut self, callbacks: Option<CallbackGrant>) -> Self {
        self.callbacks = callbacks;
        self
    }

    pub fn allows_account(&self, account: &str) -> bool {
        match &self.accounts {
            None => true,
            Some(set) => set.iter().any(|a| a.as_str() == account),
        }
    }

    /// Whether the job belongs to an account this key may touch. Callers answer "not
    /// found" when it does not, exactly as for a job that does not exist: a scoped key
    /// learns nothing of other tenants' jobs, not even that they exist.
    pub fn sees_job(&self, job: &Job) -> bool {
        match (&self.accounts, job.account_id.as_deref()) {
            (None, _) => true,
            (Some(_), Some(acct)) => self.allows_account(acct),
            (Some(_), None) => false,
        }
    }

    /// 403 when the request acts for (or filters by) an account outside the key's set.
    /// The answer depends only on the key's own scope, never on what exists, and it does
    /// not repeat the account.
    pub fn check_account(&self, account: &str) -> Result<(), ApiError> {
        if self.allows_account(account) {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this key may not act for this account".into()))
        }
    }

    /// The account filter a listing must use. A key limited to one account lists that
    /// account; a key limited to several must name one (a merged, cursor-paginated view
    /// across accounts is not offered, so each page stays one store query).
    pub fn account_filter(&self, requested: Option<String>) -> Result<Option<String>, ApiError> {
        match (&self.accounts, requested) {
            (_, Some(acct)) => {
                self.check_account(&acct)?;
                Ok(Some(acct))
            }
            (None, None) => Ok(None),
            (Some(set), None) if set.len() == 1 => Ok(set.iter().next().map(|a| a.as_str().to_owned())),
            (Some(_), None) => Err(ApiError::field(
                "account_id",
                "required: this key is limited to several accounts, name the one to list",
            )),
        }
    }

    /// 403 for keys limited to accounts: queue-wide views and controls span every account.
    pub fn require_unscoped(&self, what: &str) -> Result<(), ApiError> {
        match self.accounts {
            None => Ok(()),
            Some(_) => Err(ApiError::Forbidden(format!(
                "{what} spans every account; this key is limited to some accounts"
            ))),
        }
    }
}

/// The authenticated caller, put in the request by the auth guard.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

impl std::ops::Deref for Caller {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("missing API key: send Authorization: Bearer <key>".into()))
    }
}
