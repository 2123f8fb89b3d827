//! The console's paced dead-letter replays running in this process: one per key and
//! selection, so asking again for a selection being replayed starts nothing (the pace
//! holds), and at most [`MAX_PER_KEY`] for one key at once. Each is let go when its task
//! ends.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

/// Paced replays one key may have running at once.
pub const MAX_PER_KEY: usize = 4;

#[derive(Debug, Default)]
pub struct PacedReplays {
    /// Per key, the selections being replayed.
    running: Mutex<HashMap<String, HashSet<String>>>,
}

/// Why a replay was not started.
#[derive(Debug, PartialEq, Eq)]
pub enum NotStarted {
    /// The key is replaying this selection already.
    AlreadyRunning,
    /// The key has [`MAX_PER_KEY`] replays running.
    TooMany,
}

/// One running replay; dropping it (the task ended) lets it go.
#[derive(Debug)]
pub struct Running {
    replays: Arc<PacedReplays>,
    key: String,
    selection: String,
}

impl PacedReplays {
    /// Registers a replay of `selection` for `key`, unless it runs already or the key
    /// has its most.
    pub fn start(self: &Arc<Self>, key: &str, selection: &str) -> Result<Running, NotStarted> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = running.entry(key.to_owned()).or_default();
        if mine.contains(selection) {
            return Err(NotStarted::AlreadyRunning);
        }
        if mine.len() >= MAX_PER_KEY {
            return Err(NotStarted::TooMany);
        }
        mine.insert(selection.to_owned());
        Ok(Running {
            replays: self.clone(),
            key: key.to_owned(),
            selection: selection.to_owned(),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.replays.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(mine) = running.get_mut(&self.key) {
            mine.remove(&self.selection);
            if mine.is_empty() {
                running.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_runs_once_per_key_and_a_key_runs_a_few_until_they_end() {
        let r = Arc::new(PacedReplays::default());
        let a = r.start("ops", "group-a").unwrap();
        assert_eq!(r.start("ops", "group-a").unwrap_err(), NotStarted::AlreadyRunning);
        let other_key = r.start("acme", "group-a").unwrap();
        let more: Vec<Running> = (1..MAX_PER_KEY).map(|i| r.start("ops", &format!("g{i}")).unwrap()).collect();
        assert_eq!(r.start("ops", "one-more").unwrap_err(), NotStarted::TooMany);
        drop(a);
        assert!(r.start("ops", "group-a").is_ok(), "free again once it ended");
        drop((more, other_key));
        assert!(r.running.lock().unwrap().len() <= 1);
    }
}
