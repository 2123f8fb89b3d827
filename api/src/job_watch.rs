//! One poll per watched job, shared by every event stream open on it: however many
//! clients follow a job, Redis sees one summary read per `events_poll_ms` and one read of
//! why it waits per second at most. The poll stops when the last stream on the job closes,
//! when the job ends or disappears, or when the server shuts down.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover::job::{Job, JobId, JobState};
use drover::queue::Waiting;
use tokio::sync::watch;

use crate::state::AppState;
use crate::waiting::{self, WaitingJob};

/// How often a waiting job's reason is read again when the job itself did not change
/// (an account's cap freeing, a cooldown starting are not written on the job).
pub const WAITING_EVERY: Duration = Duration::from_secs(1);

/// What the shared poll last saw of a job.
#[derive(Debug, Clone)]
pub enum Seen {
    /// Nothing read yet (the stream starts from the job it read when it opened).
    Nothing,
    /// The job, and why it waits when it neither runs nor has ended.
    Job(Arc<Job>, Option<Waiting>),
    /// Trimmed or purged: the streams end.
    Gone,
}

/// The jobs being polled, each with the channel its streams listen on.
#[derive(Debug, Default)]
pub struct JobWatches {
    polls: Mutex<HashMap<JobId, Arc<watch::Sender<Seen>>>>,
}

impl JobWatches {
    /// Listen to the job's shared poll, starting it if no stream watches the job yet.
    pub fn subscribe(&self, state: &AppState, id: &JobId) -> watch::Receiver<Seen> {
        let mut polls = self.polls.lock().unwrap_or_else(|e| e.into_inner());
        // A poll is in the map exactly while it runs (it leaves under this lock).
        if let Some(tx) = polls.get(id) {
            let mut rx = tx.subscribe();
            // What the poll saw last is news to this stream.
            rx.mark_changed();
            return rx;
        }
        let (tx, rx) = watch::channel(Seen::Nothing);
        let tx = Arc::new(tx);
        polls.insert(id.clone(), tx.clone());
        tokio::spawn(poll(state.clone(), id.clone(), tx));
        rx
    }

    /// Ends the job's poll: true when it left the map. With `unless_listened`, a poll
    /// that gained a stream since it found none stays.
    fn leave(&self, id: &JobId, tx: &Arc<watch::Sender<Seen>>, unless_listened: bool) -> bool {
        let mut polls = self.polls.lock().unwrap_or_else(|e| e.into_inner());
        if unless_listened && tx.receiver_count() > 0 {
            return false;
        }
        if polls.get(id).is_some_and(|t| Arc::ptr_eq(t, tx)) {
            polls.remove(id);
        }
        true
    }
}

async fn poll(state: AppState, id: JobId, tx: Arc<watch::Sender<Seen>>) {
    let every = state.limits().events_poll;
    // When why the job waits was last read, and the job's state and update time then.
    let mut waiting_read: Option<(tokio::time::Instant, JobState, chrono::DateTime<chrono::Utc>, Option<Waiting>)> = None;
    loop {
        tokio::select! {
            _ = state.shutdown().cancelled() => break,
            _ = tx.closed() => {
                if state.job_watches().leave(&id, &tx, true) {
                    return;
                }
                continue;
            }
            _ = tokio::time::sleep(every) => {}
        }
        let job = match state.store().summary(&id).await {
            Ok(Some(s)) => s.job,
            Ok(None) => {
                tx.send_replace(Seen::Gone);
                break;
            }
            Err(e) => {
                // A Redis blip: the streams stay open, the next tick reads again.
                tracing::debug!(job_id = %id, error = %e, "job events: read failed");
                continue;
            }
        };
        // (a running job may still wait in a worker's prefetch)
        let waits = !job.state.is_terminal();
        let waiting = if !waits {
            waiting_read = None;
            None
        } else {
            let now = tokio::time::Instant::now();
            match &waiting_read {
                Some((at, st, updated, w)) if *st == job.state && *updated == job.updated_at && now < *at + WAITING_EVERY => w.clone(),
                _ => {
                    let q = WaitingJob {
                        id: &job.id,
                        account_id: job.account_id.as_deref(),
                    };
                    match waiting::waiting(&state, q).await {
                        Ok(w) => {
                            waiting_read = Some((now, job.state, job.updated_at, w.clone()));
                            w
                        }
                        Err(e) => {
                            tracing::debug!(job_id = %id, error = %e, "job events: reading why the job waits failed");
                            waiting_read.as_ref().and_then(|(.., w)| w.clone())
                        }
                    }
                }
            }
        };
        let ended = job.state.is_terminal();
        tx.send_replace(Seen::Job(Arc::new(job), waiting));
        if ended {
            break;
        }
    }
    state.job_watches().leave(&id, &tx, false);
}
