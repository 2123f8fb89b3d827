//! The kinds of job (sync, backfill, cleanup), each its own queue.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The three kinds of work; each kind is its own queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Sync,
    Backfill,
    Cleanup,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown job kind {0:?}: expected one of sync, backfill, cleanup")]
pub struct UnknownKind(pub String);

impl JobKind {
    pub const ALL: [JobKind; 3] = [JobKind::Sync, JobKind::Backfill, JobKind::Cleanup];

    /// Position in [`JobKind::ALL`], for per-kind tables.
    pub fn index(self) -> usize {
        match self {
            JobKind::Sync => 0,
            JobKind::Backfill => 1,
            JobKind::Cleanup => 2,
        }
    }

    /// Whether an account runs at most one job of this kind at a time (sync: two syncs
    /// of one account would race on its cursors); the enqueue and retry scripts are told.
    pub fn is_exclusive(self) -> bool {
        matches!(self, JobKind::Sync)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Sync => "sync",
            JobKind::Backfill => "backfill",
            JobKind::Cleanup => "cleanup",
        }
    }
}

impl FromStr for JobKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sync" => Ok(JobKind::Sync),
            "backfill" => Ok(JobKind::Backfill),
            "cleanup" => Ok(JobKind::Cleanup),
            other => Err(UnknownKind(other.chars().take(32).collect())),
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
