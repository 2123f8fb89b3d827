//! An outage logged once: the first failure that meets it says so, the failures after
//! it are the caller's to log at debug, and the first success after it says it ended.
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Outage(AtomicBool);

impl Outage {
    pub const fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    /// A failure: true when it begins an outage (log it), false during one.
    pub fn failed(&self) -> bool {
        !self.0.swap(true, Ordering::Relaxed)
    }

    /// A success: true when it ends an outage (log that). One load while none is under way.
    pub fn answered(&self) -> bool {
        self.0.load(Ordering::Relaxed) && self.0.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_begins_and_ends_once() {
        let o = Outage::new();
        assert!(!o.answered(), "no outage to end");
        assert!(o.failed());
        assert!(!o.failed(), "the same outage");
        assert!(o.answered());
        assert!(!o.answered());
        assert!(o.failed(), "a new outage");
    }
}
