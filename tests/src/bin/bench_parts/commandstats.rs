//! Where Redis spent its time during a run (`bench --profile`): `INFO commandstats` and
//! `INFO cpu` read before and after it, Redis's CPU time per job and each command's calls
//! and microseconds per job.
use std::collections::HashMap;

use anyhow::Result;

/// Calls and microseconds per command, as `INFO commandstats` counts them (commands a
/// script calls are counted too, and in the script's own time), and the CPU seconds
/// Redis's main thread has used. The command times are wall-clock: on a busy host they
/// include the time the thread waited for a core; the CPU time does not.
pub struct Snapshot(HashMap<String, (u64, u64)>, f64);

pub async fn snapshot(conn: &mut impl redis::aio::ConnectionLike) -> Result<Snapshot> {
    let cpu: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    let main_thread: f64 = cpu
        .lines()
        .filter(|l| l.starts_with("used_cpu_sys_main_thread:") || l.starts_with("used_cpu_user_main_thread:"))
        .filter_map(|l| l.split_once(':').and_then(|(_, v)| v.trim().parse::<f64>().ok()))
        .sum();
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await?;
    let mut stats = HashMap::new();
    for line in info.lines() {
        let Some((name, rest)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else {
            continue;
        };
        let field = |key: &str| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        stats.insert(name.to_owned(), (field("calls="), field("usec=")));
    }
    Ok(Snapshot(stats, main_thread))
}

/// What `after` adds to `before`, per job: the scripts (`fcall`, `evalsha`) and the
/// commands called outside scripts make up Redis's time; the commands scripts call are
/// listed after `|`, the costliest first.
pub fn per_job(before: &Snapshot, after: &Snapshot, jobs: u64) -> String {
    const SCRIPTS: [&str; 4] = ["fcall", "fcall_ro", "evalsha", "eval"];
    let jobs = jobs.max(1) as f64;
    let mut rows: Vec<(String, f64, f64)> = after
        .0
        .iter()
        .map(|(name, (calls, usec))| {
            let (c0, u0) = before.0.get(name).copied().unwrap_or_default();
            (name.clone(), (calls - c0) as f64 / jobs, (usec - u0) as f64 / jobs)
        })
        .filter(|(name, calls, _)| *calls > 0.0 && name != "info")
        .collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    let show = |(name, calls, usec): &(String, f64, f64)| format!("{name} {usec:.2} µs ({calls:.3} calls)");
    let scripts: Vec<String> = rows.iter().filter(|r| SCRIPTS.contains(&r.0.as_str())).map(show).collect();
    let inner: Vec<String> = rows.iter().filter(|r| !SCRIPTS.contains(&r.0.as_str())).take(8).map(show).collect();
    let cpu = (after.1 - before.1) * 1e6 / jobs;
    format!("Redis per job: CPU {cpu:.2} µs; {} | {}", scripts.join(", "), inner.join(", "))
}
