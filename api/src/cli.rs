//! The binary's command line: serving is the default; `hash-key <key>` (or `hash-key -`
//! to read the key from standard input, keeping it out of shell history and `ps`) prints
//! the SHA-256 to configure as `api.keys[].key_sha256`; `healthcheck [address]` asks the
//! running API's `/healthz` (at `api.listen` as the server reads its configuration,
//! probed on loopback) and fails unless it answers 200 — the image's HEALTHCHECK;
//! `config check` prints the effective configuration, secrets redacted, and fails with
//! every problem listed. `--help` lists every setting with its environment variable and
//! default, derived from [`ApiConfig::default`] so the list cannot drift.
use std::io::BufRead;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use drover::config::{settings, settings_table, ConfigError};
use secrecy::SecretString;

use crate::auth::hash_key;
use crate::ApiConfig;

/// Drover's HTTP API server.
#[derive(Debug, Parser)]
#[command(name = "drover-api", version)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API until SIGTERM or SIGINT (what no subcommand does).
    Serve,
    /// Print the SHA-256 of a key, to configure as api.keys[].key_sha256 (`-`: read it from stdin).
    HashKey { key: String },
    /// Ask a running API's /healthz (default: api.listen, on loopback); exit 1 unless 200.
    Healthcheck { address: Option<String> },
    /// The configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets redacted); exit 1 listing every problem.
    Check,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("unhealthy: {0}")]
    Unhealthy(String),
    #[error("could not read the key from standard input: {0}")]
    Stdin(#[from] std::io::Error),
    // Transparent: the problems print once, not again as the error's cause.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// How configuration is layered, and every setting: the end of `--help`.
pub fn settings_help() -> String {
    format!(
        "Configuration: defaults, then the TOML file named by DROVER_CONFIG (section [api]), then\n\
         environment variables (DROVER_API__<KEY>, `__` between levels). In the environment, api.keys is\n\
         one comma-separated list of name:role:sha256[:accounts[:callback_hosts[:callback_secret]]];\n\
         DATABASE_URL applies unless api.database.url is set. Secrets show as <secret>. An operation's\n\
         resilience.limits entry takes rate and burst together.\n\n\
         Settings (key, environment variable, default):\n{}",
        settings_table(&settings("api", &ApiConfig::default()))
    )
}

/// Parse the command line (exiting on `--help`, `--version` or a usage error).
pub fn parse() -> Args {
    let help = settings_help();
    let matches = Args::command()
        .after_help("Every setting, its environment variable and its default: --help.")
        .after_long_help(help)
        .get_matches();
    Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// What a subcommand prints; `None` for serving.
pub fn run(command: Option<Command>) -> Result<Option<String>, CliError> {
    match command {
        None | Some(Command::Serve) => Ok(None),
        Some(Command::HashKey { key }) => {
            let key = if key == "-" {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                SecretString::from(line.trim_end_matches(['\r', '\n']))
            } else {
                SecretString::from(key.as_str())
            };
            Ok(Some(hash_key(&key)))
        }
        Some(Command::Healthcheck { address: Some(listen) }) => healthcheck(&listen),
        Some(Command::Healthcheck { address: None }) => {
            let config = ApiConfig::load(config_file().as_deref()).map_err(|e| CliError::Unhealthy(format!("configuration: {e}")))?;
            healthcheck(&config.listen)
        }
        Some(Command::Config(ConfigCommand::Check)) => {
            let (shown, checked) = config_check(config_file().as_deref());
            println!("{shown}");
            checked?;
            Ok(Some("configuration is valid".to_owned()))
        }
    }
}

fn config_file() -> Option<String> {
    std::env::var("DROVER_CONFIG").ok()
}

/// The effective configuration as `key = value` lines (secrets redacted; none when it
/// cannot be read at all), and whether it is valid, with every problem.
pub fn config_check(file: Option<&str>) -> (String, Result<(), ConfigError>) {
    let config = match ApiConfig::layered(file) {
        Ok(c) => c,
        Err(e) => return (String::new(), Err(e)),
    };
    let shown = settings("api", &config)
        .into_iter()
        .map(|s| format!("{} = {}", s.key, s.value))
        .collect::<Vec<_>>()
        .join("\n");
    (shown, config.validate().map(|_| ()))
}

fn healthcheck(listen: &str) -> Result<Option<String>, CliError> {
    let addr = drover::probe::local_target(listen).map_err(CliError::Unhealthy)?;
    drover::probe::http_ok(addr, "/healthz", std::time::Duration::from_secs(2)).map_err(CliError::Unhealthy)?;
    Ok(Some("healthy".to_owned()))
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
pub use drover::shutdown::signal as shutdown_signal;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(a: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("drover-api").chain(a.iter().copied()))
    }

    #[test]
    fn hash_key_prints_the_sha256_and_no_arguments_serves() {
        let hashed = run(parse_args(&["hash-key", "password"]).unwrap().command).unwrap().unwrap();
        assert_eq!(hashed, "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8");
        assert!(run(parse_args(&[]).unwrap().command).unwrap().is_none());
        assert!(parse_args(&["serve", "now"]).is_err());
    }

    #[test]
    fn the_settings_help_names_every_section_with_its_variable_and_hides_secrets() {
        let help = settings_help();
        for needle in [
            "api.listen",
            "DROVER_API__LISTEN",
            "0.0.0.0:8080",
            "DROVER_API__RATE_LIMIT__BURST",
            "api.database.max_connections",
            "api.scheduler.defaults.sync.cron",
            "api.encryption_key",
        ] {
            assert!(help.contains(needle), "{needle} missing from\n{help}");
        }
    }
}
