//! A Redis that needs TLS (`rediss://`, as the deploy guide's managed Redis): a worker
//! process reaches it, trusting the server's certificate through the system's roots
//! (here `SSL_CERT_FILE` names a CA made for the test), and runs a job through it. The
//! server is a private redis-server with a TLS port beside its plain one (the test's
//! own store writes through the plain port).
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use drover::job::{JobKind, JobPayload, JobState};
use drover::queue::{JobDefaults, JobStore, NewJob, RedisStore};
use drover_tests::harness::{free_port, ChildProcess, Durability, RedisServer};
use serde_json::json;

/// `openssl` with `args` in `dir`, which must succeed.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`ca.pem`) and a server certificate it signed for 127.0.0.1 (`server.pem`,
/// `server.key`), in `dir`.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=drover test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

#[tokio::test]
async fn a_worker_runs_jobs_through_a_redis_that_needs_tls() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let file = |name: &str| dir.path().join(name).display().to_string();
    let tls_port = free_port();
    let redis = RedisServer::start_with(
        free_port(),
        Durability::None,
        vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            file("server.pem"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
        ],
    );
    let store = RedisStore::connect(&redis.url(), "drover", JobDefaults::default()).await.unwrap();
    let worker = ChildProcess::test_worker(
        "tls-worker",
        &[
            ("DROVER_WORKER__REDIS_URL", format!("rediss://127.0.0.1:{tls_port}")),
            ("SSL_CERT_FILE", file("ca.pem")),
            ("DROVER_WORKER__METRICS_LISTEN", String::new()),
            ("RUST_LOG", "info".to_owned()),
        ],
    );
    let payload = JobPayload::from_json(
        JobKind::Cleanup,
        json!({"account_id": "t.ok", "marketplace_id": "ATVPDKIKX0DER", "skus": ["SKU-1"]}),
    )
    .unwrap();
    let id = store.enqueue(NewJob::new(payload)).await.unwrap().id;
    let until = Instant::now() + Duration::from_secs(30);
    while store.get(&id).await.unwrap().map(|j| j.state) != Some(JobState::Succeeded) {
        assert!(
            Instant::now() < until,
            "the job did not succeed through TLS in 30 s:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut redis.conn()).unwrap();
    assert!(
        clients.lines().any(|l| l.contains(&format!("laddr=127.0.0.1:{tls_port}"))),
        "no client on the TLS port:\n{clients}"
    );
}
