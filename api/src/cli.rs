//! The binary's subcommands: `drover-api hash-key <key>` (or `hash-key -` to read the
//! key from standard input, keeping it out of shell history and `ps`) prints the SHA-256
//! to configure as `api.keys[].key_sha256`; `drover-api healthcheck [address]` asks the
//! running API's `/healthz` (at `api.listen` as the server reads its configuration,
//! probed on loopback) and fails unless it answers 200 — the image's HEALTHCHECK.
use std::io::BufRead;

use secrecy::SecretString;

use crate::auth::hash_key;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("usage: drover-api [hash-key <key>|- | healthcheck [address]]")]
    Usage,
    #[error("unhealthy: {0}")]
    Unhealthy(String),
    #[error("could not read the key from standard input: {0}")]
    Stdin(#[from] std::io::Error),
}

/// What a subcommand prints; `None` when the arguments ask to serve the API.
pub fn subcommand(args: impl IntoIterator<Item = String>) -> Result<Option<String>, CliError> {
    let args: Vec<String> = args.into_iter().collect();
    match args.as_slice() {
        [] => Ok(None),
        [cmd, key] if cmd == "hash-key" => {
            let key = if key == "-" {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                SecretString::from(line.trim_end_matches(['\r', '\n']))
            } else {
                SecretString::from(key.as_str())
            };
            Ok(Some(hash_key(&key)))
        }
        [cmd] if cmd == "healthcheck" => {
            let config = crate::ApiConfig::load(std::env::var("DROVER_CONFIG").ok().as_deref())
                .map_err(|e| CliError::Unhealthy(format!("configuration: {e}")))?;
            healthcheck(&config.listen)
        }
        [cmd, listen] if cmd == "healthcheck" => healthcheck(listen),
        _ => Err(CliError::Usage),
    }
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

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hash_key_prints_the_sha256_and_no_arguments_serves() {
        assert_eq!(
            subcommand(args(&["hash-key", "password"])).unwrap().unwrap(),
            "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
        assert!(subcommand(args(&[])).unwrap().is_none());
        assert!(matches!(subcommand(args(&["serve", "now"])), Err(CliError::Usage)));
    }
}
