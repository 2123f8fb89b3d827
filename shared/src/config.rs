//! Layered configuration: defaults → optional TOML file → `DROVER_*` environment.
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration is invalid:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Load `T` from its serde defaults, then `file` (if given), then environment variables
/// `DROVER_<SECTION>__<KEY>` (double underscore between levels).
pub fn load<T: DeserializeOwned>(file: Option<&str>) -> Result<T, ConfigError> {
    let mut b = config::Config::builder();
    if let Some(path) = file {
        b = b.add_source(config::File::with_name(path).required(true));
    }
    b = b.add_source(
        config::Environment::with_prefix("DROVER")
            .prefix_separator("_")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("api.keys")
            .try_parsing(true),
    );
    Ok(b.build()?.try_deserialize()?)
}

/// `Duration` as a whole number of milliseconds in config files and env vars.
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
