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
    /// Running includes runs still in a worker's prefetch.
    pub counts: AccountStateCounts,
}

impl AccountJobCounts {
    pub fn new(account_id: String, counts: AccountCounts) -> Self {
        let kinds = counts
            .kinds
            .into_iter()
            .map(|(kind, c)| AccountKindCounts { kind, counts: c })
            .collect();
        Self {
            account_id,
            complete: counts.complete,
            kinds,
        }
    }
}
