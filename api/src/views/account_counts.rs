//! `GET /v1/accounts/{id}/counts`: one account's jobs by state, per kind.
use drover::job::JobKind;
use drover::queue::{AccountCounts, AccountStateCounts};
use serde::Serialize;
use utoipa::ToSchema;

use super::kind_schema;

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountJobCounts {
    pub account_id: String,
    /// False while jobs made before per-account counts were kept (an upgrade) are still
    /// being counted by the workers; the figures are then too low.
    pub complete: bool,
    pub kinds: Vec<AccountKindCounts>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountKindCounts {
    #[schema(schema_with = kind_schema)]
    pub kind: JobKind,
    pub counts: AccountStates,
}

/// The account's jobs of one kind in each state.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountStates {
    pub queued: u64,
    pub scheduled: u64,
    /// Leased runs, started or still in a worker's prefetch.
    pub running: u64,
    pub retrying: u64,
    pub succeeded: u64,
    pub partial: u64,
    pub dead: u64,
    pub cancelled: u64,
}

impl AccountJobCounts {
    pub fn new(account_id: String, counts: AccountCounts) -> Self {
        let kinds = counts
            .kinds
            .into_iter()
            .map(|(kind, c)| AccountKindCounts { kind, counts: c.into() })
            .collect();
        Self {
            account_id,
            complete: counts.complete,
            kinds,
        }
    }
}

impl From<AccountStateCounts> for AccountStates {
    fn from(c: AccountStateCounts) -> Self {
        Self {
            queued: c.queued,
            scheduled: c.scheduled,
            running: c.running,
            retrying: c.retrying,
            succeeded: c.succeeded,
            partial: c.partial,
            dead: c.dead,
            cancelled: c.cancelled,
        }
    }
}
