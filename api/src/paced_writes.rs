//! A connection whose answers must leave at a minimum pace: a client that stops reading,
//! or reads a little now and then to keep the connection (a slow reader), loses it.
//!
//! A write the socket cannot take (its buffers are full: the client is not reading)
//! blocks; blocks less than `write_timeout` apart are one stall, however many writes
//! the client's reads let through between them. Each `write_timeout` window of a stall
//! must carry [`MIN_PACE`] bytes a second, else the connection ends (`TimedOut`). A
//! connection not blocked for a whole `write_timeout` is in no stall. A timeout that
//! any byte restarts (tokio-io-timeout's) let one byte every 29 s hold a connection slot
//! for ever; one that a write taken whole ends would let a client that reads a small
//! answer every 29 s do the same.
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Bytes a second a stalled client must read to keep its connection: far below any
/// real client's link, far above a slow reader's trickle.
pub const MIN_PACE: u64 = 1024;

pub struct PacedWrites<S> {
    inner: S,
    timeout: Duration,
    stall: Option<Stall>,
    /// The last write or flush blocked, and none has gone through whole since: a
    /// connection woken only by its window's end (its client reads nothing) is still in
    /// its stall, however long ago the block began.
    blocking: bool,
}

/// A stall under way: its current window (when it started, its end as a timer) and the
/// bytes sent in it, and when a write last blocked.
struct Stall {
    window_start: Instant,
    window_end: Pin<Box<Sleep>>,
    sent: u64,
    last_blocked: Instant,
}

impl<S> PacedWrites<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stall: None,
            blocking: false,
        }
    }

    /// `n` bytes went to the socket; `whole`: all it was given (else the buffers filled:
    /// a block, whose own bytes went without a read).
    fn sent(&mut self, cx: &mut Context<'_>, n: usize, whole: bool) -> io::Result<()> {
        if let Some(stall) = self.stall.as_mut() {
            stall.sent += n as u64;
        }
        if whole {
            self.blocking = false;
            Ok(())
        } else {
            self.blocked(cx)
        }
    }

    /// A write blocked (or went in part): a stall starts or goes on, and a window that
    /// has ended short of the pace ends the connection.
    fn blocked(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let now = Instant::now();
        let timeout = self.timeout;
        let blocking = std::mem::replace(&mut self.blocking, true);
        let stall = match self.stall.as_mut() {
            Some(stall) if blocking || now.duration_since(stall.last_blocked) < timeout => stall,
            _ => self.stall.insert(Stall::new(now, timeout)),
        };
        stall.last_blocked = now;
        if now.duration_since(stall.window_start) >= timeout {
            let wanted = MIN_PACE * timeout.as_millis() as u64 / 1000;
            if stall.sent < wanted {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read {} bytes in {timeout:?} (at least {wanted} wanted)", stall.sent),
                ));
            }
            *stall = Stall::new(now, timeout);
        }
        // woken at the window's end even if the client reads nothing more
        let _ = stall.window_end.as_mut().poll(cx);
        Ok(())
    }

    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.blocked(cx) {
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl Stall {
    fn new(now: Instant, timeout: Duration) -> Self {
        Self {
            window_start: now,
            window_end: Box::pin(tokio::time::sleep_until(now + timeout)),
            sent: 0,
            last_blocked: now,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PacedWrites<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PacedWrites<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => Poll::Ready(this.sent(cx, n, n == buf.len()).map(|()| n)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.pending(cx),
        }
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => Poll::Ready(this.sent(cx, n, n == total).map(|()| n)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.pending(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.pending(cx),
            Poll::Ready(Ok(())) => {
                this.blocking = false;
                Poll::Ready(Ok(()))
            }
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A pipe of 1 KiB whose far end reads `chunk` bytes every `every`, and its near end
    /// paced with a timeout of 500 ms.
    fn reader(chunk: usize, every: Duration) -> (PacedWrites<tokio::io::DuplexStream>, tokio::task::JoinHandle<()>) {
        let (near, mut far) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; chunk];
            loop {
                tokio::time::sleep(every).await;
                match far.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        (PacedWrites::new(near, Duration::from_millis(500)), reader)
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_reads_nothing_loses_the_connection_after_a_window() {
        // Nothing wakes the write but its window's end (found by
        // api_tenants::a_client_that_never_reads_its_answers_loses_its_connection: the
        // block then looked a timeout old, as if the connection had been idle).
        let (near, _far) = tokio::io::duplex(1024);
        let mut paced = PacedWrites::new(near, Duration::from_millis(500));
        let started = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(10), paced.write_all(&vec![7u8; 1 << 20])).await;
        let e = r.expect("ended within 10 s").expect_err("the connection ends");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(
            started.elapsed() <= Duration::from_millis(600),
            "after one window: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_trickles_loses_the_connection_after_a_window() {
        // 10 bytes every 100 ms: 100 B/s, a tenth of the pace; every read lets a
        // byte through, which a timeout any progress restarts would never end.
        let (mut paced, reader) = reader(10, Duration::from_millis(100));
        let started = Instant::now();
        let e = paced
            .write_all(&vec![7u8; 1 << 20])
            .await
            .expect_err("the slow reader's connection ends");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(
            started.elapsed() <= Duration::from_millis(600),
            "after one window: {:?}",
            started.elapsed()
        );
        reader.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_of_small_answers_now_and_then_loses_the_connection() {
        // Answers of 150 bytes, each written whole and flushed once the reader, 150
        // bytes every 200 ms (750 B/s), makes room: the writes keep going through,
        // and block again in between.
        let (mut paced, reader) = reader(150, Duration::from_millis(200));
        let started = Instant::now();
        let mut ended = None;
        for _ in 0..10_000 {
            if let Err(e) = async {
                paced.write_all(&[7u8; 150]).await?;
                paced.flush().await
            }
            .await
            {
                ended = Some(e);
                break;
            }
        }
        let e = ended.expect("the slow reader's connection ends");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(started.elapsed() <= Duration::from_millis(1100), "{:?}", started.elapsed());
        reader.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_at_the_pace_gets_the_whole_answer() {
        // 1 KiB every 100 ms: 10 KiB/s, ten times the pace, for a 64 KiB answer.
        let (mut paced, reader) = reader(1024, Duration::from_millis(100));
        let started = Instant::now();
        paced.write_all(&vec![7u8; 64 << 10]).await.expect("written whole");
        assert!(started.elapsed() >= Duration::from_secs(6), "{:?}", started.elapsed());
        reader.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_idles_between_two_brief_blocks_is_in_no_stall() {
        // Each answer fills the pipe and the reader empties it 100 ms later; between
        // them the connection idles longer than the timeout. Each block is a stall of
        // its own: the little sent in the first does not count against the second.
        let (near, mut far) = tokio::io::duplex(1024);
        let mut paced = PacedWrites::new(near, Duration::from_millis(500));
        for _ in 0..3 {
            let mut buf = vec![0u8; 1500];
            let read = async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                far.read_exact(&mut buf).await.unwrap();
            };
            let (w, ()) = tokio::join!(paced.write_all(&[1u8; 1500]), read);
            w.expect("a brief block");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}
