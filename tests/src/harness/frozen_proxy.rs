//! A TCP relay in front of a server whose open connections can be frozen: bytes stop
//! flowing both ways while the sockets stay open (a half-open peer, as after a NAT or
//! load balancer drops its state), and connections made after the freeze relay as usual.
//! It can also record what clients send, to be sent to the server again later: what a
//! client that resends a command after losing its reply does. Its replies can be held
//! up for a while each (a reply delayed on the network, by retransmissions say), and it
//! can be pointed at another server for the connections made from then on (what a
//! client re-dialling after a failover reaches), and its open connections can be cut (a
//! server restarted, or a proxy in between that closes them).
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct FrozenProxy {
    addr: SocketAddr,
    /// Every connection, open or new, is frozen (a peer that accepts and never answers).
    all_frozen: Arc<AtomicBool>,
    /// Connections accepted before this generation are frozen.
    generation: Arc<AtomicU64>,
    frozen: watch::Sender<u64>,
    /// Connections accepted before this generation are closed.
    cut: watch::Sender<u64>,
    /// While `Some`, every byte a client sends is also appended here.
    recording: Recording,
    /// How long each reply from the server is held before the client gets it (ms).
    reply_delay: Arc<AtomicU64>,
    /// Where new connections are relayed to.
    target: Arc<Mutex<SocketAddr>>,
    accept: tokio::task::JoinHandle<()>,
}

type Recording = Arc<Mutex<Option<Vec<u8>>>>;

impl FrozenProxy {
    /// Relays 127.0.0.1:<port> to `target`, on the current tokio runtime.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the relay");
        let addr = listener.local_addr().expect("the relay's address");
        let generation = Arc::new(AtomicU64::new(0));
        let (frozen, _) = watch::channel(0u64);
        let (cut, _) = watch::channel(0u64);
        let all_frozen = Arc::new(AtomicBool::new(false));
        let recording: Recording = Arc::default();
        let reply_delay = Arc::new(AtomicU64::new(0));
        let target = Arc::new(Mutex::new(target));
        let (gen, tx, all, rec) = (generation.clone(), frozen.clone(), all_frozen.clone(), recording.clone());
        let cuts = cut.clone();
        let (delay, to) = (reply_delay.clone(), target.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if all.load(Ordering::SeqCst) {
                    // Held open, never answered, until the relay goes.
                    let mut rx = tx.subscribe();
                    tokio::spawn(async move {
                        let _client = client;
                        while rx.changed().await.is_ok() {}
                    });
                    continue;
                }
                let mine = gen.load(Ordering::SeqCst);
                let rx = tx.subscribe();
                let cut_rx = cuts.subscribe();
                let target = *to.lock().expect("target");
                tokio::spawn(relay(client, target, (mine, rx), cut_rx, rec.clone(), delay.clone()));
            }
        });
        Self {
            addr,
            all_frozen,
            generation,
            frozen,
            cut,
            recording,
            reply_delay,
            target,
            accept,
        }
    }

    /// Starts recording what clients send (from the next byte on).
    pub fn record(&self) {
        *self.recording.lock().expect("recording") = Some(Vec::new());
    }

    /// Stops recording and sends what was recorded to the server again on a connection
    /// of its own, as a client does that lost its replies; returns the server's first
    /// answer bytes (within 5 s).
    pub async fn send_recorded_again(&self) -> Vec<u8> {
        let bytes = self.recording.lock().expect("recording").take().unwrap_or_default();
        assert!(!bytes.is_empty(), "nothing was recorded");
        let target = *self.target.lock().expect("target");
        let mut server = TcpStream::connect(target).await.expect("connect to the server");
        server.write_all(&bytes).await.expect("send again");
        let mut reply = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), server.read(&mut reply))
            .await
            .expect("the server answers")
            .expect("read the answer");
        reply.truncate(n);
        reply
    }

    /// Where the relay listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://` URL of the relay.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// From now on each reply from the server reaches its client `delay` late (and the
    /// connection relays nothing else meanwhile); zero relays at once again.
    pub fn delay_replies(&self, delay: std::time::Duration) {
        self.reply_delay.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Relays the connections made from now on to `target` (those open stay where they
    /// are).
    pub fn retarget(&self, target: SocketAddr) {
        *self.target.lock().expect("target") = target;
    }

    /// Freezes every connection open now; later ones relay.
    pub fn freeze_open_connections(&self) {
        let next = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.frozen.send(next);
    }

    /// Closes every connection open now, both ways; later ones relay.
    pub fn cut_open_connections(&self) {
        self.cut.send_modify(|g| *g += 1);
    }

    /// Freezes every connection, those opened later too: a server that accepts
    /// connections and never answers.
    pub fn freeze_all_connections(&self) {
        self.all_frozen.store(true, Ordering::SeqCst);
        self.freeze_open_connections();
    }
}

impl Drop for FrozenProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Relays one connection until either side closes, or forever silent once frozen.
async fn relay(
    mut client: TcpStream,
    target: SocketAddr,
    (mine, mut frozen): (u64, watch::Receiver<u64>),
    mut cut: watch::Receiver<u64>,
    recording: Recording,
    reply_delay: Arc<AtomicU64>,
) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let cut_at = *cut.borrow_and_update();
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let (mut up, mut down) = ([0u8; 16 * 1024], [0u8; 16 * 1024]);
    loop {
        tokio::select! {
            () = async { let _ = frozen.wait_for(|g| *g > mine).await.is_ok(); } => {
                // Hold both sockets open and relay nothing more.
                std::future::pending::<()>().await;
            }
            // (only a cut closes: the relay dropped freezes, as before there were cuts)
            () = async {
                if cut.wait_for(|g| *g > cut_at).await.is_err() {
                    std::future::pending::<()>().await;
                }
            } => return,
            n = cr.read(&mut up) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if let Some(r) = recording.lock().expect("recording").as_mut() {
                        r.extend_from_slice(&up[..n]);
                    }
                    if sw.write_all(&up[..n]).await.is_err() { return }
                }
            },
            n = sr.read(&mut down) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let delay = reply_delay.load(Ordering::SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                    }
                    if cw.write_all(&down[..n]).await.is_err() { return }
                }
            },
        }
    }
}
