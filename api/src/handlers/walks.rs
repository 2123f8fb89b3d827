//! Work whose cost is known only once it is done — a filtered listing's walk of its
//! index, a count of a job's items, a dead-letter selection's walk — taken a few at a
//! time per key and charged to the key's read budget after it.
//!
//! A request's own check pays for its first records; the rest are charged when the walk
//! ends, past the budget if need be. Checks that arrive together are let through at once,
//! before any of their charges land, so a burst of walks would all run on one read each:
//! a key's walks wait for a turn ([`crate::record_reads::WALKS_PER_KEY`] at a time), and
//! one that finds its key owing for the walks before it is refused (429) before it walks.
use crate::auth::Caller;
use crate::error::ApiError;
use crate::record_reads::Reading;
use crate::state::AppState;

/// A walk under way: its turn ends when it is dropped, after its charge.
pub struct Walk<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    _turn: Reading,
}

/// A turn for one walk of `caller`'s, if its key owes nothing.
pub async fn start<'a>(state: &'a AppState, caller: &'a Caller) -> Result<Walk<'a>, ApiError> {
    let turn = state.walks().start(&caller.name).await?;
    state.limits_per_key().reads.owing(&caller.name).await?;
    Ok(Walk {
        state,
        caller,
        _turn: turn,
    })
}

impl Walk<'_> {
    /// Charges `counted` records, `per_read` of them a read, past the first `per_read`
    /// (which the request's check paid for); the turn ends with the walk.
    pub async fn charge(self, counted: u64, per_read: u64) {
        let extra = counted.saturating_sub(per_read) / per_read;
        self.state.limits_per_key().reads.charge(&self.caller.name, extra).await;
    }
}
