//! Connections that a handler can reset, for the `reset_rate` fault.
//!
//! axum offers no way to drop a connection without answering. So the listener wraps
//! each accepted `TcpStream` in a [`ResettableStream`] that shares a flag with the
//! [`ConnHandle`] handed to handlers as `ConnectInfo`. When a handler raises the flag,
//! every later read or write on that stream fails; hyper gives up on the connection
//! before a single byte of the response is written, and dropping the socket with
//! `SO_LINGER = 0` sends a TCP RST. The client sees "connection reset" (or "closed
//! before message completed") with no status line, as with a real network fault.
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener whose connections can be reset by handlers.
pub(crate) struct ResettableListener(pub(crate) TcpListener);

impl Listener for ResettableListener {
    type Io = ResettableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    // Small JSON answers should not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    return (
                        ResettableStream {
                            inner: stream,
                            reset: Arc::new(AtomicBool::new(false)),
                            lingered: false,
                        },
                        addr,
                    );
                }
                Err(err) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %err, "simulator: accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// What a handler holds to reset its own connection.
#[derive(Clone, Debug)]
pub(crate) struct ConnHandle {
    reset: Arc<AtomicBool>,
}

impl ConnHandle {
    /// From now on the connection fails every read and write, and closes with an RST.
    pub(crate) fn reset(&self) {
        self.reset.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, ResettableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, ResettableListener>) -> Self {
        ConnHandle {
            reset: stream.io().reset.clone(),
        }
    }
}

pub(crate) struct ResettableStream {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
    lingered: bool,
}

impl ResettableStream {
    /// `Err` once the connection was reset; arms the RST on the first such check.
    fn check(&mut self) -> io::Result<()> {
        if !self.reset.load(Ordering::SeqCst) {
            return Ok(());
        }
        if !self.lingered {
            self.lingered = true;
            // Zero linger: closing sends RST and never blocks (the blocking concern
            // behind tokio's deprecation of `set_linger` is about non-zero values).
            let _ = self.inner.set_zero_linger();
        }
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "simulator: connection reset by fault injection",
        ))
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Err(err) = self.check() {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Err(err) = self.check() {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        if let Err(err) = self.check() {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(err) = self.check() {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(err) = self.check() {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        // hyper may drop the stream without touching it again after the flag went up.
        let _ = self.check();
    }
}
