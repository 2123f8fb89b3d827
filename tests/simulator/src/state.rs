//! The simulator's shared state and the steps every call goes through: who is calling,
//! whether the call is admitted (faults, usage plan), and how it ended (counters).
//!
//! One mutex guards everything. Critical sections are short (no `.await` inside), and a
//! single lock makes "deterministic given the seed and call order" true by construction.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use tokio::time::Instant;

use super::account::{Account, AccountSpec};
use super::config::SimConfig;
use super::error::ApiError;
use super::faults::{FaultSpec, FaultState, Verdict};
use super::operation::Operation;
use super::ratelimit::{retry_after_secs, RateLimit};
use super::report_store::ReportStore;
use super::rng::SimRng;
use super::stats::{CallEnd, DeleteOutcome, DeleteRecord, StatsSnapshot};
use super::tokens::{TokenProblem, TokenStore};

pub(crate) struct Sim {
    pub(crate) config: SimConfig,
    /// Generated orders lead up to this instant.
    pub(crate) anchor: DateTime<Utc>,
    /// `http://<bound address>`, the last resort for document URLs.
    pub(crate) local_url: String,
    started: Instant,
    inner: Mutex<Inner>,
}

pub(crate) struct Inner {
    pub(crate) accounts: BTreeMap<String, Account>,
    by_refresh_token: HashMap<String, String>,
    pub(crate) tokens: TokenStore,
    pub(crate) reports: ReportStore,
    unauthenticated: BTreeMap<Operation, u64>,
    /// Tokens, submission ids and document ids, in call order.
    pub(crate) rng: SimRng,
    /// Bumped per fault spec installed, so each installation gets a fresh, reproducible
    /// generator.
    fault_generation: u64,
}

/// What the faults and the usage plan decided about one call.
pub(crate) struct Admission {
    pub(crate) latency: Duration,
    pub(crate) slow_body: Duration,
    pub(crate) verdict: Option<Verdict>,
}

impl Sim {
    pub(crate) fn new(config: SimConfig, local_url: String) -> Self {
        let anchor = config.anchor.unwrap_or_else(|| {
            Utc::now()
                .with_hour(0)
                .and_then(|t| t.with_minute(0))
                .and_then(|t| t.with_second(0))
                .unwrap_or_else(Utc::now)
        });
        let anchor = anchor.with_nanosecond(0).unwrap_or(anchor);
        let inner = Inner::new(&config, Instant::now());
        Self {
            config,
            anchor,
            local_url,
            started: Instant::now(),
            inner: Mutex::new(inner),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves counters at worst slightly off; the
        // simulator must keep answering rather than poison every later call.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Back to the state right after start: configured accounts only, no tokens, no
    /// reports, fresh buckets, faults and counters.
    pub(crate) fn reset(&self) {
        *self.lock() = Inner::new(&self.config, Instant::now());
    }

    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The account behind an access token.
    pub(crate) fn authenticate(&self, token: Option<&str>, op: Operation) -> Result<String, ApiError> {
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.tokens.check(token, now) {
            Ok(account) => Ok(account),
            Err(problem) => {
                let message = match &problem {
                    TokenProblem::Missing => "Access to requested resource is denied: the x-amz-access-token header is missing.",
                    TokenProblem::Unknown => "Access to requested resource is denied: the access token is invalid.",
                    TokenProblem::Expired { .. } => "The access token you provided has expired.",
                };
                match problem {
                    TokenProblem::Expired { account } if inner.accounts.contains_key(&account) => {
                        let tracker = inner.account_mut(&account).map(|a| a.tracker(op));
                        if let Some(tracker) = tracker {
                            tracker.start(now);
                            tracker.end(CallEnd::Status(401));
                        }
                    }
                    _ => *inner.unauthenticated.entry(op).or_default() += 1,
                }
                Err(ApiError::Unauthorized(message.to_owned()))
            }
        }
    }

    pub(crate) fn count_unauthenticated(&self, op: Operation) {
        *self.lock().unauthenticated.entry(op).or_default() += 1;
    }

    /// Starts a call of `account`: counts it (with its `traceparent` header) and asks
    /// faults and the usage plan. `None` when the account is gone (a reset raced the call).
    pub(crate) fn admit(&self, account: &str, op: Operation, traceparent: Option<&str>) -> Option<Admission> {
        let now = Instant::now();
        let mut inner = self.lock();
        let acct = inner.account_mut(account)?;
        let tracker = acct.tracker(op);
        tracker.start(now);
        if let Some(tp) = traceparent {
            tracker.saw_traceparent(tp);
        }
        let latency = acct.faults.latency(op);
        let slow_body = acct.faults.slow_body(op);
        let mut verdict = acct.faults.before_rate_limit(op, now);
        if verdict.is_none() && op.is_rate_limited() {
            if let Err(wait) = acct.take_token(op, now) {
                verdict = Some(Verdict::Reject(ApiError::QuotaExceeded {
                    retry_after_s: retry_after_secs(wait),
                }));
            }
        }
        if verdict.is_none() {
            verdict = acct.faults.after_rate_limit(op);
        }
        Some(Admission {
            latency,
            slow_body,
            verdict,
        })
    }

    /// Ends a call: counts the outcome, and records deletes with their SKU.
    pub(crate) fn finish(&self, account: &str, op: Operation, end: CallEnd, sku: Option<&str>) {
        let mut inner = self.lock();
        let Some(acct) = inner.account_mut(account) else { return };
        acct.tracker(op).end(end);
        if let (Operation::DeleteListingsItem, Some(sku)) = (op, sku) {
            let (status, outcome) = match end {
                CallEnd::Status(status) => (status, DeleteOutcome::from_status(status)),
                CallEnd::Reset => (0, DeleteOutcome::Reset),
            };
            acct.deletes.push(DeleteRecord {
                sku: sku.to_owned(),
                status,
                outcome,
                at: Utc::now(),
            });
        }
    }

    /// A call that never got an answer out (the client left): frees its in-flight slot.
    pub(crate) fn abandon(&self, account: &str, op: Operation) {
        if let Some(acct) = self.lock().account_mut(account) {
            acct.tracker(op).abandon();
        }
    }

    /// The plan announced in `x-amzn-RateLimit-Limit`.
    pub(crate) fn rate_limit(&self, account: Option<&str>, op: Operation) -> RateLimit {
        let inner = self.lock();
        account
            .and_then(|a| inner.accounts.get(a))
            .map_or_else(|| self.config.rate_limits.get(op), |a| a.limits.get(op))
    }

    pub(crate) fn stats(&self) -> StatsSnapshot {
        let inner = self.lock();
        StatsSnapshot {
            uptime_s: self.uptime().as_secs_f64(),
            unauthenticated: inner.unauthenticated.clone(),
            accounts: inner.accounts.iter().map(|(id, a)| (id.clone(), a.stats())).collect(),
        }
    }
}

impl Inner {
    fn new(config: &SimConfig, now: Instant) -> Self {
        let mut inner = Self {
            accounts: BTreeMap::new(),
            by_refresh_token: HashMap::new(),
            tokens: TokenStore::default(),
            reports: ReportStore::default(),
            unauthenticated: BTreeMap::new(),
            rng: SimRng::derive(config.seed, &["sim"]),
            fault_generation: 0,
        };
        for id in config.demo_account_ids() {
            // Demo account ids are generated valid and distinct.
            let _ = inner.add_account(AccountSpec::new(id), config, now);
        }
        inner
    }

    pub(crate) fn account_mut(&mut self, account: &str) -> Option<&mut Account> {
        self.accounts.get_mut(account)
    }

    pub(crate) fn account_by_refresh_token(&mut self, refresh_token: &str) -> Option<&mut Account> {
        let id = self.by_refresh_token.get(refresh_token)?.clone();
        self.accounts.get_mut(&id)
    }

    pub(crate) fn count_unauthenticated(&mut self, op: Operation) {
        *self.unauthenticated.entry(op).or_default() += 1;
    }

    fn fault_rng(&mut self, seed: u64, account: &str) -> SimRng {
        self.fault_generation += 1;
        SimRng::derive(seed, &[account, "faults", &self.fault_generation.to_string()])
    }

    /// Adds an account; refuses a duplicate id or refresh token.
    pub(crate) fn add_account(&mut self, spec: AccountSpec, config: &SimConfig, now: Instant) -> Result<&Account, String> {
        spec.validate()?;
        if self.accounts.contains_key(&spec.account_id) {
            return Err(format!("account {:?} already exists", spec.account_id));
        }
        let rng = self.fault_rng(config.seed, &spec.account_id);
        let account = Account::new(spec, config, rng, now);
        if self.by_refresh_token.contains_key(&account.credentials.refresh_token) {
            return Err(format!(
                "refresh_token {:?} belongs to another account",
                account.credentials.refresh_token
            ));
        }
        let id = account.id().to_owned();
        self.by_refresh_token.insert(account.credentials.refresh_token.clone(), id.clone());
        Ok(self.accounts.entry(id).or_insert(account))
    }

    /// Installs a fault spec on an account (counters start over).
    pub(crate) fn set_faults(&mut self, account: &str, spec: FaultSpec, seed: u64, now: Instant) -> Result<(), String> {
        spec.validate()?;
        if !self.accounts.contains_key(account) {
            return Err(format!("no account {account:?}"));
        }
        let rng = self.fault_rng(seed, account);
        if let Some(acct) = self.accounts.get_mut(account) {
            acct.faults = FaultState::new(spec, rng, now);
        }
        Ok(())
    }
}
