//! Ports claimed by this machine's test processes: one locked file a port, so tests
//! running at once never pick the same port, nor a port another's cluster bus needs.
use std::fs::{File, OpenOptions};
use std::sync::Mutex;

/// The claims this process keeps; each lock lasts as long as its file stays open, so
/// the kernel lets a claim go when its process ends, however it ends.
static KEPT: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// A port claimed for this process; dropped without [`Claim::keep`], it lets the port go.
pub(super) struct Claim(Option<File>);

impl Claim {
    /// Keep the claim for this process's life.
    pub(super) fn keep(self) {
        if let Some(file) = self.0 {
            KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(file);
        }
    }
}

/// Claim `port`; `None` if a process (this one too) holds it.
pub(super) fn claim(port: u16) -> Option<Claim> {
    let dir = std::env::temp_dir().join("drover-test-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return Some(Claim(None)); // no place to note claims: bind checks alone, as before
    }
    let Ok(file) = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
    else {
        return Some(Claim(None));
    };
    // A lock belongs to its open file, so a second open in this process is refused too.
    file.try_lock().ok().map(|()| Claim(Some(file)))
}
