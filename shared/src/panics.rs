//! Panics logged once, as a log line like every other. The hook [`install_hook`] sets
//! (the binaries install it with their log) logs a panic that nothing catches as an
//! error line inside the span it happened in, naming where the code panicked, instead of
//! Rust's own text on stderr. A panic that a catcher takes ([`Caught`], [`catch`]: a
//! run's handler, an API request) is the catcher's to report: one log line with the
//! message and the place, and the failure it turns into (the run's attempt, the
//! request's 500) in words of ours, since clients read those; the hook only hands it the
//! place. Work a run hands to a task of its own goes through [`spawn_blocking`] or
//! [`spawn`], so a panic there is the run's too, and its catcher's to log.
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
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
    let place = PLACE.with(|p| p.borrow_mut().take());
    match payload.downcast::<Panic>() {
        // Raised again where a task's panic was awaited ([`spawn_blocking`]): it keeps
        // the place it had on the task's thread.
        Ok(p) => *p,
        Err(payload) => Panic {
            message: message_of(payload.as_ref()),
            location: place,
        },
    }
}

/// Runs `f`, taking a panic it raises as [`Panic`].
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    // (a place left by a panic some inner catcher took is not this one's)
    PLACE.with(|p| p.borrow_mut().take());
    let _catching = Catching::enter();
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(taken)
}

/// Runs `f` on tokio's blocking threads; a panic there is raised again in the future
/// that awaits it, with its own message and place. So a panic in a task a run spawned is
/// the run's: its catcher logs it once, as `run panicked` inside the job's span, and the
/// attempt says it in our words. Spawned plainly, the hook would log it on the task's
/// thread (outside the run's span) and the run again as its failure, the panic's text in
/// the job's error. Awaited where no catcher is, it is logged here as the hook would have.
/// The error is the task's cancellation (the runtime shut down before it ran).
pub async fn spawn_blocking<R, F>(f: F) -> Result<R, tokio::task::JoinError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match tokio::task::spawn_blocking(move || catch(f)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(p)) => raise(p),
        Err(cancelled) => Err(cancelled),
    }
}

/// Raises `p` again on this thread. `resume_unwind` runs no hook: the catcher that takes
/// it logs it, or, with none on this thread, this line does.
fn raise(p: Panic) -> ! {
    if CATCHING.with(Cell::get) == 0 {
        tracing::error!(error = %p, "panicked");
    }
    std::panic::resume_unwind(Box::new(p))
}

/// Spawns `future` as a task in the caller's span, its panic raised again where the
/// [`Spawned`] is awaited, as [`spawn_blocking`] does for blocking work. A `Spawned`
/// dropped unawaited leaves the task to run on (as a `JoinHandle` does); a panic no one
/// will await is logged by the task, once.
pub fn spawn<F>(future: F) -> Spawned<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tracing::Instrument;

    let span = tracing::Span::current();
    let panic = Arc::new(Mutex::new(Handover::Awaited));
    let told = panic.clone();
    let task = tokio::spawn(
        async move {
            match Caught::new(future).await {
                Ok(output) => Some(output),
                Err(p) => {
                    let mut handover = told.lock().unwrap_or_else(PoisonError::into_inner);
                    match *handover {
                        Handover::Awaited => *handover = Handover::Panicked(p),
                        _ => tracing::error!(error = %p, "panicked"),
                    }
                    None
                }
            }
        }
        .instrument(span.clone()),
    );
    Spawned { task, panic, span }
}

/// A task's panic on its way to the future that awaits it.
enum Handover {
    /// Its [`Spawned`] may still be awaited.
    Awaited,
    /// It panicked; its `Spawned` raises this.
    Panicked(Panic),
    /// Its `Spawned` is gone: a panic is the task's to log.
    Dropped,
}

/// A task [`spawn`] started: awaited, its output, or its panic raised again here. The
/// error is the task's cancellation (aborted, or the runtime shut down).
pub struct Spawned<T> {
    task: tokio::task::JoinHandle<Option<T>>,
    panic: Arc<Mutex<Handover>>,
    /// The span it was spawned in, the task's too.
    span: tracing::Span,
}

impl<T> Future for Spawned<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let joined = Pin::new(&mut self.task).poll(cx);
        match joined {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(output))) => Poll::Ready(Ok(output)),
            Poll::Ready(Err(cancelled)) => Poll::Ready(Err(cancelled)),
            Poll::Ready(Ok(None)) => {
                let mut handover = self.panic.lock().unwrap_or_else(PoisonError::into_inner);
                match std::mem::replace(&mut *handover, Handover::Dropped) {
                    Handover::Panicked(p) => {
                        drop(handover);
                        raise(p)
                    }
                    _ => unreachable!("a task that panics while awaited hands its panic over"),
                }
            }
        }
    }
}

impl<T> Drop for Spawned<T> {
    fn drop(&mut self) {
        let mut handover = self.panic.lock().unwrap_or_else(PoisonError::into_inner);
        if let Handover::Panicked(p) = std::mem::replace(&mut *handover, Handover::Dropped) {
            // It panicked and no one awaited it: said here, once, in the task's span.
            let _in = self.span.enter();
            tracing::error!(error = %p, "panicked");
        }
    }
}

pin_project_lite::pin_project! {
    /// A future whose panic, raised while it is polled, is its output as [`Panic`]
    /// (a task it spawns is covered when spawned through [`spawn`] or
    /// [`spawn_blocking`]; otherwise its panics go to the hook).
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

    /// Found by the logging audit of 2026-12-05: a panic in a task a run spawned was
    /// logged by the hook on the task's thread and again by the run, as its failure. It
    /// is now the run's own panic: caught on the task's thread (the hook only notes the
    /// place there, it logs nothing) and raised again where the run awaits it.
    #[tokio::test]
    async fn a_panic_in_a_blocking_task_is_the_panic_of_the_future_that_awaits_it() {
        install_hook();
        let p = Caught::new(async {
            let _: u64 = spawn_blocking(|| -> u64 { panic!("boom in a task {}", 7) })
                .await
                .expect("not cancelled");
        })
        .await
        .unwrap_err();
        assert_eq!(p.message, "boom in a task 7");
        // Noted by the hook on the task's thread, which it does only under a catcher
        // (without one it logs the panic itself).
        let at = p.location.clone().expect("the place on the task's thread");
        assert!(at.starts_with("shared/src/panics.rs:"), "{at}");
        assert_eq!(Caught::new(spawn_blocking(|| 4)).await.map(Result::ok), Ok(Some(4)));
    }

    /// Panics with `message` once `first` is done.
    async fn boom_after(first: impl Future<Output = ()>, message: &'static str) -> u64 {
        first.await;
        panic!("{message}")
    }

    #[tokio::test]
    async fn a_panic_in_a_task_is_the_panic_of_the_future_that_awaits_it() {
        install_hook();
        let p = Caught::new(async {
            let _: u64 = spawn(boom_after(tokio::task::yield_now(), "boom in an async task"))
                .await
                .expect("not cancelled");
        })
        .await
        .unwrap_err();
        assert_eq!(p.message, "boom in an async task");
        let at = p.location.clone().expect("the place in the task");
        assert!(at.starts_with("shared/src/panics.rs:"), "{at}");
        assert_eq!(Caught::new(spawn(async { 5 })).await.map(Result::ok), Ok(Some(5)));
    }

    /// A run that lets its task go (cancelled, it returns at once) leaves the task's
    /// panic to the task: logged once, in the run's span, whether the task panics
    /// before or after it was let go.
    #[tokio::test]
    async fn a_panic_in_a_task_no_one_awaits_is_logged_once_by_the_task() {
        install_hook();
        let log = crate::log_capture::Lines::default();
        let _default = tracing::subscriber::set_default(log.subscriber(tracing::Level::INFO));
        let run = tracing::info_span!("job", job_id = "cleanup_01");
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let waiting = async move {
            let _ = wait.await;
        };
        let let_go_first = run.in_scope(|| spawn(boom_after(waiting, "boom after the run let it go")));
        drop(let_go_first);
        let panicked_first = run.in_scope(|| spawn(boom_after(std::future::ready(()), "boom before the run let it go")));
        while !panicked_first.task.is_finished() {
            tokio::task::yield_now().await;
        }
        drop(panicked_first);
        go.send(()).expect("the task waits");
        for _ in 0..100 {
            if log.lines().len() >= 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let lines = log.lines();
        let said: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (l["message"].as_str().unwrap_or(""), l["error"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(said.len(), 2, "{lines:#?}");
        assert_eq!(said[0].0, "panicked");
        assert!(
            said[0].1.starts_with("boom before the run let it go (at shared/src/panics.rs:"),
            "{lines:#?}"
        );
        assert!(
            said[1].1.starts_with("boom after the run let it go (at shared/src/panics.rs:"),
            "{lines:#?}"
        );
        for line in &lines {
            assert_eq!(line["span"]["job_id"], "cleanup_01", "in the run's span: {line}");
        }
    }
}
