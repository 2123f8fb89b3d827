//! Standard output for the log, written in batches by one thread.
//!
//! Each request logs two lines (the access line and, for a submit, "job accepted"). With
//! the default writer every line is its own `write(2)` on the request's thread: 6 % of
//! the API's CPU at 16k POST /v1/jobs per second (perf). Waking a writer thread per line
//! costs as much again (futex wake and wait: 14 % when tried), so here a request appends
//! its line to a shared buffer and wakes the writer only when the buffer was empty; the
//! writer then gathers for [`BATCH_WINDOW`] and writes the lot with one call. A line is
//! therefore out within a few milliseconds. When the buffer passes [`MAX_PENDING`] (the
//! output cannot keep up) the logging thread writes it itself — blocking, as a slow
//! stdout always did; nothing is dropped. [`FlushGuard`] writes what is left at exit.
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer gathers lines after the first one arrives.
const BATCH_WINDOW: Duration = Duration::from_millis(5);
/// Bytes waiting past which the logging thread writes them itself.
const MAX_PENDING: usize = 4 << 20;

struct Shared<W> {
    /// Lock order: `out`, then `spare`, then `pending`.
    out: Mutex<W>,
    /// The buffer `pending` is swapped with, taken only under `out`: the two trade places
    /// at each write and keep their capacity, so a busy log never regrows a buffer.
    spare: Mutex<Vec<u8>>,
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding either lock leaves bytes, never a broken invariant.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<W: Write> Shared<W> {
    fn push(&self, line: &[u8]) {
        let mut pending = lock(&self.pending);
        let was_empty = pending.is_empty();
        pending.extend_from_slice(line);
        let over = pending.len() > MAX_PENDING;
        drop(pending);
        if over {
            self.write_pending();
        } else if was_empty {
            self.wake.notify_one();
        }
    }

    /// Write everything pending, in order (batches are taken under `out`).
    fn write_pending(&self) {
        let mut out = lock(&self.out);
        let mut batch = lock(&self.spare);
        std::mem::swap(&mut *batch, &mut *lock(&self.pending));
        if !batch.is_empty() {
            let _ = out.write_all(&batch);
            let _ = out.flush();
            batch.clear();
        }
    }

    fn run(&self) {
        loop {
            let mut pending = lock(&self.pending);
            while pending.is_empty() {
                pending = self.wake.wait(pending).unwrap_or_else(PoisonError::into_inner);
            }
            drop(pending);
            std::thread::sleep(BATCH_WINDOW);
            self.write_pending();
        }
    }
}

/// A [`MakeWriter`] for the fmt layer: each event's line goes to the shared buffer.
#[derive(Clone)]
pub struct BatchedStdout {
    shared: Arc<Shared<File>>,
}

/// Writes what is still pending when dropped (at the end of `main`).
pub struct FlushGuard {
    shared: Arc<Shared<File>>,
}

impl BatchedStdout {
    /// Start the writer thread on a duplicate of the process's standard output.
    pub fn start() -> io::Result<(Self, FlushGuard)> {
        let out = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        let shared = Arc::new(Shared {
            out: Mutex::new(out),
            spare: Mutex::new(Vec::with_capacity(64 * 1024)),
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            wake: Condvar::new(),
        });
        let writer = shared.clone();
        std::thread::Builder::new().name("log-writer".into()).spawn(move || writer.run())?;
        Ok((Self { shared: shared.clone() }, FlushGuard { shared }))
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.write_pending();
    }
}

/// One event's line, handed over when the fmt layer drops it (it writes each event with
/// one `write_all`, so lines never interleave).
pub struct Line<'a, W: Write> {
    buf: Vec<u8>,
    shared: &'a Shared<W>,
}

impl<W: Write> Write for Line<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for Line<'_, W> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.shared.push(&self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for BatchedStdout {
    type Writer = Line<'a, File>;
    fn make_writer(&'a self) -> Self::Writer {
        Line {
            buf: Vec::new(),
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Arc<Shared<Vec<u8>>> {
        Arc::new(Shared {
            out: Mutex::new(Vec::new()),
            spare: Mutex::new(Vec::new()),
            pending: Mutex::new(Vec::new()),
            wake: Condvar::new(),
        })
    }

    fn log(shared: &Shared<Vec<u8>>, text: &str) {
        let mut line = Line { buf: Vec::new(), shared };
        line.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn the_writer_thread_writes_lines_whole_and_in_order() {
        let s = shared();
        let writer = s.clone();
        std::thread::spawn(move || writer.run());
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        for i in 0..1000 {
            log(&s, &format!("line {i}\n"));
        }
        for _ in 0..200 {
            if lock(&s.out).len() == expected.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(String::from_utf8(lock(&s.out).clone()).unwrap(), expected);
    }

    #[test]
    fn the_two_buffers_keep_their_capacity_across_writes() {
        let s = shared();
        let line = "y".repeat(1000);
        log(&s, &line);
        s.write_pending();
        log(&s, &line);
        s.write_pending();
        assert!(lock(&s.pending).capacity() >= 1000, "the buffer written first takes the next lines");
        assert!(lock(&s.spare).capacity() >= 1000 && lock(&s.spare).is_empty());
        assert_eq!(lock(&s.out).len(), 2000, "both batches written");
    }

    #[test]
    fn flushing_writes_what_is_pending_and_a_full_buffer_is_written_by_the_logger() {
        let s = shared();
        log(&s, "a\n");
        assert!(lock(&s.out).is_empty(), "no writer thread: nothing written yet");
        s.write_pending();
        assert_eq!(&*lock(&s.out), b"a\n");
        let big = "x".repeat(MAX_PENDING + 1);
        log(&s, &big);
        assert_eq!(lock(&s.out).len(), 2 + big.len());
        assert!(lock(&s.pending).is_empty());
    }
}
