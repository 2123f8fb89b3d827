//! Waiting for work without polling (`JobStore::wait_for_work`). Every partition has a
//! one-element marker list that enqueue, settle and retry push to; an idle fetcher blocks
//! on it with BLPOP. On a single server (or a Sentinel primary) one BLPOP waits on every
//! partition's marker of a kind at once and says which one woke. A cluster refuses a
//! BLPOP across slots, so there each partition has a watcher task on a connection of its
//! own that blocks on its marker, while one of this process's fetchers of the kind waits,
//! and wakes it; the watchers end with the store.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard, Notify, OnceCell};

use super::{JobKind, RedisStore, StoreError};
use crate::redis_conn::{RedisConn, Timeouts};

/// How long a cluster watcher's BLPOP blocks before it looks whether its store is gone.
const WATCH_BLOCK: Duration = Duration::from_secs(1);

/// The blocking connection while a BLPOP is on it. Dropped before its answer (the wait
/// timed out, or the fetcher gave it up midway, as a shutdown does), it drops the
/// connection: Redis then unblocks that BLPOP instead of handing it the next wake-up,
/// which nobody would read, while another fetcher sleeps on.
struct Blocked<'a> {
    conn: MutexGuard<'a, Option<RedisConn>>,
    answered: bool,
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        if !self.answered {
            *self.conn = None;
        }
    }
}

/// Per kind: the blocking connection of a single server, or the cluster watchers.
#[derive(Default)]
pub(crate) struct Wakers {
    single: [Mutex<Option<RedisConn>>; 3],
    cluster: [OnceCell<(Arc<Notify>, Arc<Waiting>)>; 3],
}

/// How many of this process's fetchers of a kind wait for work right now. A cluster
/// watcher blocks on its marker only while one does, and a wake-up its BLPOP takes after
/// the last one stopped waiting goes back on the marker: a busy or stopped process never
/// keeps a wake-up another process's idle fetcher waits for.
#[derive(Default)]
pub(crate) struct Waiting {
    count: AtomicUsize,
    /// Signalled when the first fetcher starts waiting.
    changed: Notify,
}

impl Waiting {
    fn some(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }

    /// Until a fetcher waits.
    async fn until_some(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.some() {
                return;
            }
            changed.await;
        }
    }
}

/// One fetcher's wait, counted in [`Waiting`] while it lasts.
struct Waits<'a>(&'a Waiting);

impl<'a> Waits<'a> {
    fn begin(w: &'a Waiting) -> Self {
        if w.count.fetch_add(1, Ordering::SeqCst) == 0 {
            w.changed.notify_waiters();
        }
        Self(w)
    }
}

impl Drop for Waits<'_> {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
    }
}

impl RedisStore {
    pub(super) async fn wait_for(&self, kind: JobKind, timeout: Duration) -> Result<(), StoreError> {
        if self.conn.is_cluster() {
            let (notify, waiting) = self.wakers.cluster[kind.index()]
                .get_or_init(|| async { self.start_watchers(kind) })
                .await;
            let _waits = Waits::begin(waiting);
            let _ = tokio::time::timeout(timeout, notify.notified()).await;
            return Ok(());
        }
        let markers: Vec<String> = self.all_keys(kind).iter().map(|k| k.marker()).collect();
        let mut blocked = Blocked {
            conn: self.wakers.single[kind.index()].lock().await,
            answered: false,
        };
        if blocked.conn.is_none() {
            *blocked.conn = Some(self.source.lazy(Timeouts::blocking())?);
        }
        let conn = blocked.conn.as_mut().expect("set above");
        let secs = timeout.as_secs_f64().max(0.01);
        // The client-side bound is a little longer than the server's, so a dead
        // connection cannot hang the fetcher.
        let mut cmd = redis::cmd("BLPOP");
        cmd.arg(&markers).arg(secs);
        let wait = cmd.query_async::<Option<(String, String)>>(conn);
        let answer = tokio::time::timeout(timeout + Duration::from_secs(2), wait).await;
        blocked.answered = answer.is_ok();
        match answer {
            Ok(Ok(Some((key, _)))) => {
                if let Some(p) = markers.iter().position(|m| *m == key) {
                    self.visits[kind.index()]
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .woken(p, Instant::now());
                }
                Ok(())
            }
            Ok(Ok(None)) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            // no answer in time: `blocked` drops the stuck connection; the next wait
            // opens another
            Err(_) => Ok(()),
        }
    }

    /// One watcher per partition of `kind`; they hold the store only weakly.
    fn start_watchers(&self, kind: JobKind) -> (Arc<Notify>, Arc<Waiting>) {
        let notify = Arc::new(Notify::new());
        let waiting = Arc::new(Waiting::default());
        for (p, keys) in self.all_keys(kind).into_iter().enumerate() {
            let watch = Watch {
                notify: Arc::downgrade(&notify),
                waiting: waiting.clone(),
                visits: Arc::downgrade(&self.visits),
                source: self.source.clone(),
                marker: keys.marker(),
                kind,
                partition: p,
            };
            tokio::spawn(watch.run());
        }
        (notify, waiting)
    }
}

struct Watch {
    notify: Weak<Notify>,
    waiting: Arc<Waiting>,
    visits: Weak<[std::sync::Mutex<super::visits::Visits>; 3]>,
    source: crate::redis_conn::RedisSource,
    marker: String,
    kind: JobKind,
    partition: usize,
}

impl Watch {
    async fn run(self) {
        let mut conn: Option<RedisConn> = None;
        while self.notify.strong_count() > 0 {
            if !self.waiting.some() {
                // Nobody here waits: take no wake-up, and look again within a block
                // whether the store is gone.
                let _ = tokio::time::timeout(WATCH_BLOCK, self.waiting.until_some()).await;
                continue;
            }
            if conn.is_none() {
                match self.source.lazy(Timeouts::blocking()) {
                    Ok(c) => conn = Some(c),
                    Err(_) => {
                        tokio::time::sleep(WATCH_BLOCK).await;
                        continue;
                    }
                }
            }
            let c = conn.as_mut().expect("set above");
            let mut cmd = redis::cmd("BLPOP");
            cmd.arg(&self.marker).arg(WATCH_BLOCK.as_secs_f64());
            let pop = cmd.query_async::<Option<(String, String)>>(c);
            match tokio::time::timeout(WATCH_BLOCK * 3, pop).await {
                Ok(Ok(Some(_))) if !self.waiting.some() => {
                    // This process's fetchers stopped waiting while the BLPOP was on the
                    // wire: the wake-up goes back for another process's (at worst one
                    // wake-up too many). This connection has no reply timeout (it
                    // blocks), so the push is bounded here; a stuck one is dropped.
                    let mut push = redis::cmd("LPUSH");
                    push.arg(&self.marker).arg("1");
                    if !matches!(tokio::time::timeout(WATCH_BLOCK, push.query_async::<i64>(c)).await, Ok(Ok(_))) {
                        conn = None;
                    }
                }
                Ok(Ok(Some(_))) => {
                    if let Some(v) = self.visits.upgrade() {
                        v[self.kind.index()]
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .woken(self.partition, Instant::now());
                    }
                    if let Some(n) = self.notify.upgrade() {
                        n.notify_one();
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(_)) | Err(_) => {
                    // Redis away or a failover under way: the fetcher's own calls report
                    // it; try again on a fresh connection.
                    conn = None;
                    tokio::time::sleep(WATCH_BLOCK / 2).await;
                }
            }
        }
    }
}
