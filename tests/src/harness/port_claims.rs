//! Ports claimed by this machine's test processes: one locked file a port, so tests
//! running at once never pick the same port, nor a port another's cluster bus needs.
use std::fs::{File, OpenOptions};
use std::sync::Mutex;

/// The claims this process holds; each lock lasts as long as its file stays open, so
/// the kernel lets a claim go when its process ends, however it ends.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// Claim `port` for this process; false if any process (this one too) holds it.
pub(super) fn claim(port: u16) -> bool {
    let dir = std::env::temp_dir().join("drover-test-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return true; // no place to note claims: bind checks alone, as before
    }
    let Ok(file) = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
    else {
        return true;
    };
    // A lock belongs to its open file, so a second open in this process is refused too.
    if file.try_lock().is_err() {
        return false;
    }
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
    true
}
