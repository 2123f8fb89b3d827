//! `GET /v1/jobs/{id}/events`: server-sent events of the job's state and progress.
//!
//! The job is read every `events_poll_ms` (200 ms by default) by one poll shared by every
//! stream open on it (`crate::job_watch`), and an event is sent when its state (`event:
//! state`) or progress (`event: progress`) changed; the stream ends after a terminal
//! state, when the job disappears, when the server shuts down, or after `events_max_ms`
//! (the client reconnects; the first event then repeats the state). Event ids count up
//! from the `Last-Event-ID` a reconnecting client sends (EventSource does), so its ids for
//! one job never go back (before, found by the fifth audits of 2026-12-06, each
//! connection started at 1). Keep-alive comments
//! flow while nothing changes. The poll reads only the job's summary fields (one HMGET,
//! never the payload) per tick, however many streams follow the job, and needs nothing
//! from the workers.
//!
//! While the job waits (neither running nor ended) the stream also says why: `event:
//! waiting` with `{id, state, waiting: {reason, until, detail}}` when the reason or its
//! end changes (a park on the limiter, a quota cooldown, an open breaker, the account's
//! cap, ...). Why is read as `GET /v1/jobs/{id}` reads it (`crate::waiting`: one bounded
//! script and one cooldown read, no scan), by the shared poll, and only when the job's
//! state or update time moved or `job_watch::WAITING_EVERY` has passed. Open streams are capped per key and per process (`api.streams`): past a
//! cap the answer is 429 with `Retry-After`.
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use std::sync::Arc;

use drover::job::{Job, JobState, Progress};
use drover::queue::{WaitReason, Waiting};
use futures::Stream;
use serde_json::json;

use super::load_summary;
use crate::auth::Caller;
use crate::error::{ApiError, Problem, PROBLEM_JSON};
use crate::job_watch::Seen;
use crate::problem_responses::{JobNotFound, Unauthorized, Unavailable};
use crate::state::AppState;
use crate::streams::StreamSlot;
use crate::views::{JobEvent, WaitingView};
use tokio::sync::watch;

const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Stream the job's state and progress changes until it ends.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "Job id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "The id of the last event a reconnecting client got: this stream's ids count on from it (anything but a number counts from 0)"),
    ),
    responses(
        (status = 200, description = "`event: state` with `{id, state, attempts, cancel_requested, updated_at, last_error}` (also when a cancel is accepted while it runs), \
            `event: progress` with `{id, done, total, message}` and, while the job waits, `event: waiting` with \
            `{id, state, waiting: {reason, until, detail}}` whenever the reason or its end changes; ends after a terminal state",
            content_type = "text/event-stream", body = JobEvent),
        Unauthorized,
        JobNotFound,
        (status = 429, description = "This key has as many open event streams as it may (its cap, or as many as any other key while the server is at its own); or the key is over its read rate", body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds to wait before opening another stream"))),
        Unavailable,
    )
)]
pub async fn job_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let stream = job_event_stream(state, &caller, &id, resumed_from(&headers)).await?;
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The id of the last event a reconnecting client got (`Last-Event-ID`): the stream's
/// ids count on from it. Anything but a number below 2⁵³ counts from 0.
pub fn resumed_from(headers: &HeaderMap) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n < 1 << 53)
        .unwrap_or(0)
}

/// [`job_events`]' events, for a caller that adds its own (the console's), numbered on
/// from `last_id` (see [`resumed_from`]).
pub async fn job_event_stream(
    state: AppState,
    caller: &Caller,
    id: &str,
    last_id: u64,
) -> Result<impl Stream<Item = Result<Event, Infallible>> + use<>, ApiError> {
    // The cap first: past it, the request costs no Redis read; the slot is taken (which
    // may end another key's oldest stream) only for a job found.
    state.streams().check(&caller.name)?;
    let job = load_summary(&state, caller, id).await?.job;
    let slot = state.streams().open(&caller.name)?;
    let polled = state.job_watches().subscribe(&state, &job.id);
    let watch = Watch {
        slot,
        until: tokio::time::Instant::now() + state.limits().events_max,
        state,
        polled,
        seen_state: None,
        seen_progress: None,
        seen_waiting: None,
        seen_updated: Some(job.updated_at),
        tenant: caller.accounts.is_some(),
        pending: VecDeque::new(),
        next: Some((Arc::new(job), None)),
        done: false,
        seq: last_id,
    };
    Ok(futures::stream::unfold(watch, |mut w| async move {
        w.next_event().await.map(|e| (Ok(e), w))
    }))
}

/// How often a keep-alive comment goes out while nothing changes.
pub const KEEP_ALIVE_EVERY: Duration = KEEP_ALIVE;

struct Watch {
    /// Held for as long as the stream is open; given to another key, it ends the stream.
    slot: StreamSlot,
    /// When the stream ends even if the job has not.
    until: tokio::time::Instant,
    state: AppState,
    /// The job's shared poll.
    polled: watch::Receiver<Seen>,
    /// The state, attempts and start last sent: a new run is a new `state` event.
    seen_state: Option<(JobState, u32, Option<DateTime<Utc>>, bool)>,
    seen_progress: Option<Progress>,
    /// The wait last sent: its reason and end (a position change alone sends nothing).
    seen_waiting: Option<(WaitReason, Option<DateTime<Utc>>, Option<String>)>,
    /// When the job this stream read itself had last changed, until the shared poll's
    /// first snapshot is in: that one may have been taken before, and is then not news.
    /// (Only that one: a later snapshot is newer whatever Redis's clock did.)
    seen_updated: Option<DateTime<Utc>>,
    /// The caller's key is limited to accounts (`WaitingView::seen_by`).
    tenant: bool,
    pending: VecDeque<Event>,
    /// A job already read (with why it waits, when known), to compare before waiting
    /// for the poll.
    next: Option<(Arc<Job>, Option<Waiting>)>,
    done: bool,
    seq: u64,
}

impl Watch {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            let (job, waiting) = match self.next.take() {
                Some(seen) => seen,
                None => {
                    tokio::select! {
                        _ = self.state.shutdown().cancelled() => return None,
                        _ = tokio::time::sleep_until(self.until) => return None,
                        _ = self.slot.ended() => return None,
                        changed = self.polled.changed() => {
                            if changed.is_err() {
                                return None; // the poll ended: shutdown, or the job ended
                            }
                        }
                    }
                    match &*self.polled.borrow_and_update() {
                        Seen::Nothing => continue,
                        Seen::Gone => return None, // trimmed or purged
                        Seen::Job(job, _) if self.seen_updated.take().is_some_and(|u| job.updated_at < u) => continue,
                        Seen::Job(job, waiting) => (job.clone(), waiting.clone()),
                    }
                }
            };
            self.observe(&job);
            if !self.done {
                self.observe_waiting(&job, waiting);
            }
        }
    }

    /// Queue a `waiting` event when why the job waits changed.
    fn observe_waiting(&mut self, job: &Job, waiting: Option<Waiting>) {
        let Some(w) = waiting else {
            let was = if job.state == JobState::Running {
                self.seen_waiting.take()
            } else {
                None
            };
            if matches!(was, Some((WaitReason::Prefetched, _, _))) {
                // The run waited in a worker's prefetch and started: that is news (its
                // record does not change), and a later park is news again.
                let data = state_data(job);
                self.push("state", data);
            }
            return;
        };
        // What follows the wait is news too: a timed wait that ends in a queue no worker
        // serves (or a paused one) keeps its reason and end and says so only there.
        let then = w.detail.get("then").and_then(|t| t.as_str()).map(str::to_owned);
        let key = (w.reason, w.until, then);
        if self.seen_waiting.as_ref() == Some(&key) {
            return;
        }
        self.seen_waiting = Some(key);
        let view = WaitingView::from(w).seen_by(self.tenant);
        self.push("waiting", json!({"id": job.id, "state": job.state, "waiting": view}));
    }

    /// Queue events for what changed: the state first, except that a final progress
    /// goes before a terminal state, so the last event a client sees is the end.
    fn observe(&mut self, job: &Job) {
        let progress = (job.progress.is_some() && job.progress != self.seen_progress).then(|| {
            self.seen_progress = job.progress.clone();
            let p = job.progress.as_ref().expect("checked");
            json!({"id": job.id, "done": p.done, "total": p.total, "message": p.message})
        });
        // A new run is news even in the same state: a retry due within one poll, or a
        // lost lease reclaimed and leased again in one fetch, goes from running to running.
        // So is a cancel accepted while it runs (the run ends when its handler stops).
        let run = (job.state, job.attempts, job.started_at, job.cancel_requested);
        let state = (self.seen_state != Some(run)).then(|| {
            self.seen_state = Some(run);
            state_data(job)
        });
        let terminal = job.state.is_terminal();
        if terminal {
            progress.into_iter().for_each(|d| self.push("progress", d));
            state.into_iter().for_each(|d| self.push("state", d));
            self.done = true;
        } else {
            state.into_iter().for_each(|d| self.push("state", d));
            progress.into_iter().for_each(|d| self.push("progress", d));
        }
    }

    fn push(&mut self, name: &str, data: serde_json::Value) {
        self.seq += 1;
        self.pending
            .push_back(Event::default().event(name).id(self.seq.to_string()).data(data.to_string()));
    }
}

/// A `state` event's data.
fn state_data(job: &Job) -> serde_json::Value {
    json!({
        "id": job.id,
        "state": job.state,
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "updated_at": job.updated_at,
        "last_error": job.last_error,
    })
}
