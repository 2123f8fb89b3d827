//! The binary's command line: running the worker is the default; `healthcheck [address]`
//! (`healthcheck.rs`); `config check` prints the effective configuration, secrets
//! redacted, and fails with every problem listed; `partitions migrate --to N` changes the
//! queues' partition count. `--help` lists every setting with its
//! environment variable and default, derived from [`WorkerConfig::default`] so the list
//! cannot drift.
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use drover::config::{settings, settings_table, ConfigError};

use crate::WorkerConfig;

/// Drover's worker: runs sync, backfill and cleanup jobs from the Redis queue.
#[derive(Debug, Parser)]
#[command(name = "drover-worker", version)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run jobs until SIGTERM or SIGINT (what no subcommand does).
    Run,
    /// Ask a running worker's /metrics (default: worker.metrics_listen, on loopback); exit 1 unless 200.
    Healthcheck { address: Option<String> },
    /// The configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The queues' partitions (docs/operations.md, "Upgrade").
    #[command(subcommand)]
    Partitions(PartitionsCommand),
}

#[derive(Debug, Subcommand)]
pub enum PartitionsCommand {
    /// Move the queues in Redis to N partitions per kind. Stop every API and worker and let the
    /// queues drain first: refused while any job is unfinished. Then set queue.partitions = N everywhere.
    Migrate {
        #[arg(long)]
        to: u16,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets redacted); exit 1 listing every problem.
    Check,
}

/// How configuration is layered, and every setting: the end of `--help`.
pub fn settings_help() -> String {
    format!(
        "Configuration: defaults, then the TOML file named by DROVER_CONFIG (section [worker]), then\n\
         environment variables (DROVER_WORKER__<KEY>, `__` between levels). DATABASE_URL applies unless\n\
         worker.database.url is set. Secrets show as <secret>. An operation's\n\
         resilience.limits entry takes rate and burst together, as a kind's retry policy\n\
         (retry.<kind>.base and .max, ms; unset: the queue's backoff) does.\n\n\
         Settings (key, environment variable, default):\n{}",
        settings_table(&documented())
    )
}

/// The settings `--help` lists. `resilience.max_wait` is not one: the worker sets it
/// from `jobs.park_after_ms` (a run parks instead of waiting longer).
pub fn documented() -> Vec<drover::config::Setting> {
    let mut all = settings("worker", &WorkerConfig::default());
    all.retain(|s| s.key != "worker.resilience.max_wait");
    // A kind's retry policy, unset by default, is two settings set together (found by
    // the newcomer audit of 2026-12-06: it was listed as one variable, which cannot be set).
    all.into_iter()
        .flat_map(|s| match s.key.strip_prefix("worker.retry.") {
            Some(kind) if !kind.contains('.') => ["base", "max"]
                .map(|field| {
                    let key = format!("{}.{field}", s.key);
                    drover::config::Setting {
                        env: drover::config::env_var(&key),
                        key,
                        value: "(none)".to_owned(),
                    }
                })
                .to_vec(),
            _ => vec![s],
        })
        .collect()
}

/// Parse the command line (exiting on `--help`, `--version` or a usage error).
pub fn parse() -> Args {
    let matches = Args::command()
        .after_help("Every setting, its environment variable and its default: --help.")
        .after_long_help(settings_help())
        .get_matches();
    Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The effective configuration as `key = value` lines (secrets redacted; none when it
/// cannot be read at all), and whether it is valid, with every problem.
pub fn config_check(file: Option<&str>) -> (String, Result<(), ConfigError>) {
    let config = match WorkerConfig::layered(file) {
        Ok(c) => c,
        Err(e) => return (String::new(), Err(e)),
    };
    let shown = settings("worker", &config)
        .into_iter()
        .map(|s| format!("{} = {}", s.key, s.value))
        .collect::<Vec<_>>()
        .join("\n");
    (shown, config.check())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_help_names_every_section_with_its_variable() {
        let help = settings_help();
        for needle in [
            "worker.concurrency.cleanup",
            "DROVER_WORKER__CONCURRENCY__CLEANUP",
            "worker.marketplace.timeout_ms",
            "worker.callbacks.max_tries",
            "worker.encryption_key",
            "DROVER_WORKER__RETRY__CLEANUP__BASE",
            "DROVER_WORKER__RETRY__CLEANUP__MAX",
        ] {
            assert!(help.contains(needle), "{needle} missing from\n{help}");
        }
        assert!(
            !help.contains("DROVER_WORKER__RETRY__CLEANUP "),
            "a policy is not one variable:\n{help}"
        );
        assert!(Args::try_parse_from(["drover-worker", "healthcheck", "127.0.0.1:9464"]).is_ok());
        assert!(Args::try_parse_from(["drover-worker", "serve"]).is_err());
    }
}
