//! A connection whose answers must leave at a minimum pace: a client that stops reading,
//! or reads a byte now and then to keep the connection (a slow reader), loses it.
//!
//! A write the socket cannot take whole (its buffers are full: the client is not
//! reading) starts a stall; at each `write_timeout` in a stall the bytes sent since are
//! counted, and under [`MIN_PACE`] bytes a second the connection ends (`TimedOut`). A
//! write taken whole, or a flush done, ends the stall. A timeout that any byte restarts
//! (tokio-io-timeout's) lets one byte every 29 s hold a connection slot for ever.
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
}

/// A stall under way: when its current window ends, and the bytes sent in it.
struct Stall {
    window_end: Pin<Box<Sleep>>,
    sent: u64,
}

impl<S> PacedWrites<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stall: None,
        }
    }

    /// `n` bytes went to the socket, `whole`: all it was given. The write that finds
    /// the buffers full starts a stall; its own bytes went without the client reading.
    fn note_sent(&mut self, n: usize, whole: bool) {
        match (&mut self.stall, whole) {
            (_, true) => self.stall = None,
            (Some(stall), false) => stall.sent += n as u64,
            (None, false) => self.stall = Some(Stall::new(self.timeout)),
        }
    }

    /// The socket could not take more: a stall goes on, until the client reads at the
    /// pace or a window ends short of it.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let timeout = self.timeout;
        let stall = self.stall.get_or_insert_with(|| Stall::new(timeout));
        while stall.window_end.as_mut().poll(cx).is_ready() {
            let wanted = MIN_PACE * timeout.as_millis() as u64 / 1000;
            if stall.sent < wanted {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read {} bytes in {timeout:?} (at least {wanted} wanted)", stall.sent),
                ));
            }
            *stall = Stall::new(timeout);
        }
        Poll::Pending
    }
}

impl Stall {
    fn new(timeout: Duration) -> Self {
        Self {
            window_end: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            sent: 0,
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
            Poll::Ready(Ok(n)) => {
                this.note_sent(n, n == buf.len());
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.stalled(cx).map(Err),
        }
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                this.note_sent(n, n == total);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.stalled(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                this.stall = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.stalled(cx).map(Err),
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

    /// Writes `total` bytes through a pipe of 1 KiB read `chunk` bytes every `every`;
    /// how the write ended and after how long.
    async fn write_to_a_reader(total: usize, chunk: usize, every: Duration) -> (io::Result<()>, Duration) {
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
        let mut paced = PacedWrites::new(near, Duration::from_millis(500));
        let started = Instant::now();
        let r = paced.write_all(&vec![7u8; total]).await;
        let took = started.elapsed();
        reader.abort();
        (r, took)
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_trickles_loses_the_connection_after_a_window() {
        // 10 bytes every 100 ms: 100 B/s, a tenth of the pace; every read lets a
        // byte through, which a timeout any progress restarts would never end.
        let (r, took) = write_to_a_reader(1 << 20, 10, Duration::from_millis(100)).await;
        let e = r.expect_err("the slow reader's connection ends");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(took <= Duration::from_millis(600), "after one window: {took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_at_the_pace_gets_the_whole_answer() {
        // 1 KiB every 100 ms: 10 KiB/s, ten times the pace, for a 64 KiB answer.
        let (r, took) = write_to_a_reader(64 << 10, 1024, Duration::from_millis(100)).await;
        r.expect("written whole");
        assert!(took >= Duration::from_secs(6), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_taken_whole_ends_the_stall() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut paced = PacedWrites::new(near, Duration::from_millis(500));
        // The pipe fills: a stall starts, and a read that empties it ends it.
        let mut buf = vec![0u8; 2048];
        let write = paced.write_all(&[1u8; 1500]);
        let read = async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            far.read_exact(&mut buf[..1500]).await.unwrap();
        };
        let (w, ()) = tokio::join!(write, read);
        w.unwrap();
        // Long after that stall's window: a write with room is no stall.
        tokio::time::sleep(Duration::from_secs(2)).await;
        paced.write_all(&[2u8; 100]).await.unwrap();
        assert!(paced.stall.is_none());
    }
}
