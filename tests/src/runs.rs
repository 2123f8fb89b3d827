//! The run log test workers write (`DROVER_TEST_RUN_FILE`), read back to check that no
//! job ran twice at once.
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Each job's runs as workers logged them: (pid, start µs, end µs if it logged one).
pub type Runs = HashMap<String, Vec<(u32, u128, Option<u128>)>>;

/// Reads a run file of `S|E <job> <pid> <unix µs>` lines; a missing file is no runs.
pub fn read_runs(path: &Path) -> Runs {
    let mut out: Runs = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [what, id, pid, at] = parts[..] else {
            panic!("malformed run line: {line:?}");
        };
        let (pid, at) = (pid.parse().expect("pid"), at.parse().expect("µs"));
        let entry = out.entry(id.to_owned()).or_default();
        if what == "S" {
            entry.push((pid, at, None));
        } else if let Some(run) = entry.iter_mut().rev().find(|r| r.0 == pid && r.2.is_none()) {
            run.2 = Some(at);
        }
    }
    out
}

/// The pid in a worker id (`<host>-<pid>-<ulid>`).
pub fn pid_of(worker_id: &str) -> Option<u32> {
    worker_id.rsplit('-').nth(1).and_then(|p| p.parse().ok())
}

/// The pids of the workers whose runs of `job` the queue refused as late (the
/// `late` set of [`overlapping_runs`] for that job).
pub fn late_pids(job: &drover::job::Job) -> HashSet<u32> {
    job.attempt_history
        .iter()
        .filter(|a| a.late)
        .filter_map(|a| pid_of(&a.worker))
        .collect()
}

/// Pairs of runs of one job that overlapped in time. A run that logged no end lasted
/// until `end_of(pid)`. A pair is excused (counted, not returned) when one of its runs
/// was by a worker in `late[job]`: the queue refused that run's result as late.
pub fn overlapping_runs(runs: &Runs, late: &HashMap<String, HashSet<u32>>, end_of: impl Fn(u32) -> u128) -> (Vec<String>, usize) {
    let (mut overlaps, mut excused) = (Vec::new(), 0);
    for (id, rs) in runs {
        let mut spans: Vec<(u128, u128, u32)> = rs.iter().map(|(pid, s, e)| (*s, e.unwrap_or_else(|| end_of(*pid)), *pid)).collect();
        spans.sort();
        let late = late.get(id);
        for (i, a) in spans.iter().enumerate() {
            for b in spans[i + 1..].iter().filter(|b| b.0 < a.1) {
                if late.is_some_and(|l| l.contains(&a.2) || l.contains(&b.2)) {
                    excused += 1;
                } else {
                    overlaps.push(format!("{id}: {a:?} and {b:?}"));
                }
            }
        }
    }
    (overlaps, excused)
}
