//! The CPU time a worker process has used, read from `/proc/<pid>/stat`, so the process
//! rows print the workers' CPU per job beside their throughput: on two cores the workers
//! share the machine with Redis, and what they burn Redis cannot use.
use std::time::Duration;

/// User plus system CPU time `pid` has used so far; `None` once it is gone (or where
/// there is no `/proc`).
pub fn used(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; the fields after its
    // last `)` are fixed: field 3 (the state) first, utime and stime at 14 and 15.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    Some(Duration::from_secs_f64((utime + stime) as f64 / ticks as f64))
}

/// What `pids` used together since `before` (one entry a pid, same order); a process
/// gone in between counts nothing.
pub fn used_since(pids: &[u32], before: &[Option<Duration>]) -> Duration {
    pids.iter()
        .zip(before)
        .filter_map(|(pid, b)| Some(used(*pid)?.saturating_sub((*b)?)))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spinning_process_is_seen_using_cpu_and_a_missing_one_counts_nothing() {
        let me = std::process::id();
        let before = [used(me)];
        assert!(before[0].is_some(), "this process's own stat is readable");
        // Spin until 30 ms of CPU show (bounded, whatever else the machine runs).
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut x = 0u64;
        while used_since(&[me], &before) < Duration::from_millis(30) {
            assert!(
                std::time::Instant::now() < deadline,
                "20 s of spinning never showed as 30 ms of CPU time"
            );
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        assert_eq!(used_since(&[u32::MAX], &[None]), Duration::ZERO, "a missing process counts nothing");
        assert_eq!(used_since(&[me], &[None]), Duration::ZERO, "nor does one with no reading before");
    }
}
