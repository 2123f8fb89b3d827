//! The HTTP/1.1 listener loop: hyper with a timer, so a client must send its request
//! headers within `server.header_read_timeout_ms` (that bound also closes keep-alive
//! connections idle that long between requests), and at most `server.max_connections`
//! connections are served at once; past the cap new connections wait in the kernel's
//! backlog until one closes. One client address holds at most
//! `server.max_connections_per_client` of them (`client_slots.rs`: more are closed at
//! once), and a client that reads its answers slower than 1 KiB/s over a
//! `server.write_timeout_ms` ends its connection (`paced_writes.rs`), so nobody holds a
//! slot for good by never reading, nor by reading a byte now and then. (`axum::serve`
//! sets no timer, so hyper disables its own header timeout, and it caps nothing: one
//! client could hold every socket, slowloris.)
//!
//! Request headers past `server.max_headers` or `max_header_bytes` are refused by the
//! API with a 431 problem (`middleware::header_limits`); hyper, set to several times
//! those limits, refuses only what is larger still, with a bare 431.
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::Layer;

use crate::client_slots::ClientSlots;
use crate::config::HeaderLimits;
use crate::paced_writes::PacedWrites;

/// Bounds on what one connection may hold.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub write_timeout: Duration,
    /// What the API itself refuses with a 431 problem (`middleware::header_limits`);
    /// hyper is set to let up to several times that through to it.
    pub headers: HeaderLimits,
}

/// How long to back off when `accept` fails (out of file descriptors, usually).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serve `app` on `listener` until `shutdown` is cancelled, then stop accepting and wait
/// for the open connections to finish their in-flight requests (the caller bounds that
/// wait with its grace period).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    clients: Arc<ClientSlots>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper's own refusal is a bare 431 (no problem body, no request id): let
        // requests well past the API's limits through so the API refuses them itself.
        .max_headers(limits.headers.max_headers * 2)
        .max_buf_size((limits.headers.max_bytes * 4).max(64 * 1024))
        .keep_alive(true);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Over its client's cap: closed at once, its slot free for the next.
        let Some(client_slot) = clients.take(peer.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        // A client that reads its answers slower than a minimum pace loses the connection.
        let stream = PacedWrites::new(stream, limits.write_timeout);
        // The peer's address, as `ConnectInfo`, for what is counted per client (sign-ins).
        let service = TowerToHyperService::new(Extension(ConnectInfo(peer)).layer(app.clone()));
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(Box::pin(stream)), service));
        tokio::spawn(async move {
            // Timeouts and resets end here; hyper logs the header timeout itself.
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop((slot, client_slot));
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
