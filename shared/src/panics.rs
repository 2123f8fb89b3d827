//! Panics logged once, as a log line like every other. The hook [`install_hook`] sets
//! (the binaries install it with their log) logs a panic that nothing catches as an
//! error line inside the span it happened in, naming where the code panicked, instead of
//! Rust's own text on stderr. A panic that a catcher takes ([`Caught`], [`catch`]: a
//! run's handler, an API request) is the catcher's to report: one log line with the
//! message and the place, and the failure it turns into (the run's attempt, the
//! request's 500) in words of ours, since clients read those; the hook only hands it the
//! place.
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    /// Catchers on this thread's stack right now.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
    /// Where the panic that a catcher on this thread is about to take happened.
    static PLACE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic a catcher took: what `panic!` was given (when it was text) and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panic {
    pub message: String,
    pub location: Option<String>,
}

impl std::fmt::Display for Panic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message = if self.message.is_empty() {
            "panic with a non-string payload"
        } else {
            &self.message
        };
        match &self.location {
            Some(at) => write!(f, "{message} (at {at})"),
            None => f.write_str(message),
        }
    }
}

/// What `panic!` was given, when it was text.
fn message_of(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Replaces Rust's panic hook: a panic no catcher takes is one error line through the
/// log (Rust's own hook still speaks before the log is set up); a caught one is left to
/// its catcher.
pub fn install_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let location = info.location().map(|l| l.to_string());
        if CATCHING.with(Cell::get) > 0 {
            PLACE.with(|p| *p.borrow_mut() = location);
            return;
        }
        // No log to take it (not set up yet, or none on this thread): Rust's own text.
        if !tracing::enabled!(tracing::Level::ERROR) {
            default(info);
            return;
        }
        let panic = Panic {
            message: message_of(info.payload()),
            location,
        };
        tracing::error!(error = %panic, "panicked");
    }));
}

/// Counts a catcher on this thread's stack while it lives.
struct Catching;

impl Catching {
    fn enter() -> Self {
        CATCHING.with(|c| c.set(c.get() + 1));
        Catching
    }
}

impl Drop for Catching {
    fn drop(&mut self) {
        CATCHING.with(|c| c.set(c.get().saturating_sub(1)));
    }
}

fn taken(payload: Box<dyn std::any::Any + Send>) -> Panic {
    Panic {
        message: message_of(payload.as_ref()),
        location: PLACE.with(|p| p.borrow_mut().take()),
    }
}

/// Runs `f`, taking a panic it raises as [`Panic`].
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    // (a place left by a panic some inner catcher took is not this one's)
    PLACE.with(|p| p.borrow_mut().take());
    let _catching = Catching::enter();
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(taken)
}

pin_project_lite::pin_project! {
    /// A future whose panic, raised while it is polled, is its output as [`Panic`]
    /// (a task it spawns is not covered: its panics go to the hook).
    pub struct Caught<F> {
        #[pin]
        inner: F,
    }
}

impl<F> Caught<F> {
    pub fn new(inner: F) -> Self {
        Caught { inner }
    }
}

impl<F: Future> Future for Caught<F> {
    type Output = Result<F::Output, Panic>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match catch(|| inner.poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_keeps_its_message_and_place() {
        install_hook();
        let p = catch(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(p.message, "boom 7");
        let at = p.location.clone().expect("the place");
        assert!(at.starts_with("shared/src/panics.rs:"), "{at}");
        assert_eq!(p.to_string(), format!("boom 7 (at {at})"));
        assert_eq!(catch(|| 5).unwrap(), 5);
    }

    #[tokio::test]
    async fn a_future_that_panics_while_polled_ends_with_the_panic() {
        install_hook();
        let p = Caught::new(async {
            tokio::task::yield_now().await;
            panic!("late boom");
        })
        .await
        .unwrap_err();
        assert_eq!(p.message, "late boom");
        assert!(p.location.is_some());
        assert_eq!(Caught::new(async { 3 }).await, Ok(3));
    }
}
