//! Process signals for the binaries: the first SIGTERM or SIGINT starts a graceful
//! stop; a second one ends the process at once (its leases expire and its jobs are
//! reclaimed by other workers), so an operator is never stuck behind a slow stop.

/// Resolves on the first SIGTERM or SIGINT. From then on, the next SIGTERM or SIGINT
/// exits the process immediately with 128 + the signal number.
pub async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received: stopping gracefully (send it again to exit at once)"),
        _ = int.recv() => tracing::info!("SIGINT received: stopping gracefully (send it again to exit at once)"),
    }
    tokio::spawn(async move {
        let (name, code) = tokio::select! {
            _ = term.recv() => ("SIGTERM", 128 + 15),
            _ = int.recv() => ("SIGINT", 128 + 2),
        };
        // Logged to stderr directly: the log writer's buffer is not flushed by exit.
        eprintln!("second {name}: exiting now; unfinished jobs are reclaimed when their leases expire");
        std::process::exit(code);
    });
}
