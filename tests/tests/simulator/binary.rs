//! The `simulator` binary.
use super::*;

#[tokio::test]
async fn the_simulator_binary_prints_its_url_serves_and_stops_on_sigterm() -> TestResult {
    use std::io::BufRead;
    /// Kills the simulator if the test fails before it stops it.
    struct Running(Option<std::process::Child>);
    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(child) = self.0.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let child = std::process::Command::new(drover_tests::harness::cargo_bin("simulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--accounts",
            "2",
            "--rate-profile",
            "fast",
            "--latency-ms",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut running = Running(Some(child));
    let stdout = running
        .0
        .as_mut()
        .and_then(|c| c.stdout.take())
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await??;
    let url = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");

    let health = reqwest::get(format!("{url}/healthz")).await?;
    assert_eq!(health.status(), StatusCode::OK);
    let accounts = drover_tests::sim::SimAdmin::new(url.clone()).accounts().await?;
    assert_eq!(accounts.len(), 2);
    let faults = drover_tests::sim::SimAdmin::new(url).faults("acct-2").await?;
    assert_eq!(faults.spec.latency_ms, 1, "fault flags apply to every account");

    let mut child = running.0.take().ok_or_else(|| anyhow::anyhow!("child gone"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id())?),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert!(status.success(), "{status:?}");
    Ok(())
}
