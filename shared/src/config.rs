//! Layered configuration: defaults → optional TOML file → `DROVER_*` environment.
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// What the loader said, without the values it quoted (see [`without_values`]).
    #[error("configuration could not be read: {0}")]
    Load(String),
    #[error("configuration is invalid:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl From<config::ConfigError> for ConfigError {
    fn from(e: config::ConfigError) -> Self {
        ConfigError::Load(without_values(&e.to_string()))
    }
}

/// A loader's error text without the values it quotes: a URL with a password, a key or
/// a secret set where a table or a number was expected is quoted whole by serde
/// (`invalid type: string "postgres://u:pw@…"`), and a TOML syntax error shows its
/// source line. Quoted strings become `"…"` and source lines are left out; the key, the
/// expected type, the file and the line and column stay.
fn without_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        // A TOML excerpt: `14 | url = "…`, or its gutter `   |`.
        let gutter = line.trim_start().trim_start_matches(|c: char| c.is_ascii_digit()).trim_start();
        if gutter.starts_with('|') {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        let mut quoted = false;
        let mut escaped = false;
        for c in line.chars() {
            match (quoted, c) {
                (false, '"') => {
                    quoted = true;
                    out.push_str("\"…");
                }
                (true, '\\') if !escaped => escaped = true,
                (true, '"') if !escaped => {
                    quoted = false;
                    out.push('"');
                }
                (true, _) => escaped = false,
                (false, c) => out.push(c),
            }
        }
        if quoted {
            out.push('"');
        }
    }
    out
}

/// Load `T` from its serde defaults, then `file` (if given), then environment variables
/// `DROVER_<SECTION>__<KEY>` (double underscore between levels).
pub fn load<T: DeserializeOwned>(file: Option<&str>) -> Result<T, ConfigError> {
    load_with(file, std::env::vars())
}

/// [`load`] with `vars` as the environment. Only `DROVER_` variables with a `__` are
/// settings: `DROVER_CONFIG`, `DROVER_LOG_FORMAT` and the CLI's `DROVER_API` and
/// `DROVER_API_KEY` name other things, and `DROVER_API` would otherwise stand for the
/// whole `[api]` section (a URL where a table is expected: the API would not start in a
/// shell set up for the CLI).
fn load_with<T: DeserializeOwned>(file: Option<&str>, vars: impl IntoIterator<Item = (String, String)>) -> Result<T, ConfigError> {
    let settings: config::Map<String, String> = vars
        .into_iter()
        .filter(|(k, _)| k.strip_prefix("DROVER_").is_some_and(|rest| rest.contains("__")))
        .collect();
    let mut b = config::Config::builder();
    let mut environment = config::Environment::with_prefix("DROVER");
    for key in LISTS {
        environment = environment.with_list_parse_key(key);
    }
    if let Some(path) = file {
        let mut values = config::Source::collect(&config::File::with_name(path).required(true))?;
        lowercase_limits(&mut values);
        b = b.add_source(FileValues(values));
    }
    b = b.add_source(
        environment
            .prefix_separator("_")
            .separator("__")
            .list_separator(",")
            .try_parsing(true)
            .source(Some(settings)),
    );
    let built = b.build()?;
    // Both binaries read one file, each its own section: anything beside them is a
    // setting neither reads (a `[queue]` meant as `[api.queue]` and `[worker.queue]`).
    let top: config::Map<String, config::Value> = built.clone().try_deserialize()?;
    let stray: Vec<String> = top
        .keys()
        .filter(|k| !SECTIONS.contains(&k.as_str()))
        .map(|k| format!("[{k}] is not a section Drover reads: settings go under [api.{k}] or [worker.{k}] (environment: DROVER_API__… or DROVER_WORKER__…)"))
        .collect();
    if !stray.is_empty() {
        return Err(ConfigError::Invalid(stray));
    }
    Ok(built.try_deserialize()?)
}

/// A file's settings, read once and adjusted by [`lowercase_limits`].
#[derive(Debug, Clone)]
struct FileValues(config::Map<String, config::Value>);

impl config::Source for FileValues {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        Ok(self.0.clone())
    }
}

/// Operation names under `<section>.resilience.limits` in the file, lowercased: the
/// environment's keys arrive lowercased, and a file's `getOrders` beside the
/// environment's `getorders` were two entries naming one operation, of which a random
/// one won in each process (the environment must override the file, field by field).
fn lowercase_limits(values: &mut config::Map<String, config::Value>) {
    for section in SECTIONS {
        let Some(config::ValueKind::Table(resilience)) = values.get_mut(section).map(|v| &mut v.kind) else {
            continue;
        };
        let Some(config::ValueKind::Table(limits)) = resilience.get_mut("resilience").map(|v| &mut v.kind) else {
            continue;
        };
        let Some(config::ValueKind::Table(ops)) = limits.get_mut("limits").map(|v| &mut v.kind) else {
            continue;
        };
        *ops = std::mem::take(ops).into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect();
    }
}

/// The settings that are lists: their variables are read comma-separated, with no spaces
/// (any other variable is one value, commas and all). A list left out here is refused
/// when set through its variable (`config_settings` sends the lists of numbers and the
/// proxies `--help` shows; a new list of another kind needs a value there too).
const LISTS: [&str; 4] = [
    "api.keys",
    "api.ui.trusted_proxies",
    "api.resilience.cooldown.steps",
    "worker.resilience.cooldown.steps",
];

/// The top-level sections of the configuration: the API's and the worker's.
const SECTIONS: [&str; 2] = ["api", "worker"];

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

/// Serialisers that show whether a secret is set, never its value: `--help` and
/// `config check` print configurations through them.
pub mod redact {
    use secrecy::{ExposeSecret, SecretString};
    use serde::Serializer;

    /// What a set secret prints as.
    pub const SHOWN: &str = "<secret>";

    /// `<secret>`, or `""` when unset (so a missing key is visible).
    pub fn secret<S: Serializer>(v: &SecretString, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if v.expose_secret().is_empty() { "" } else { SHOWN })
    }

    pub fn optional_secret<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(v) => secret(v, s),
        }
    }

    /// A plain string that is secret all the same (an API key's hash).
    pub fn string<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if v.is_empty() { "" } else { SHOWN })
    }

    /// A URL with its password (if any) replaced: `redis://:<secret>@host:6379/0`.
    pub fn url<S: Serializer>(v: &SecretString, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&url_without_password(v.expose_secret()))
    }

    /// A URL with the password of its user info and of its query (`?password=`, which
    /// libpq and redis-rs read too) replaced.
    pub fn url_without_password(url: &str) -> String {
        let (url, query) = match url.split_once('?') {
            Some((head, query)) => (head, Some(query)),
            None => (url, None),
        };
        let mut shown = user_info_without_password(url);
        if let Some(query) = query {
            shown.push('?');
            shown.push_str(&query_without_password(query));
        }
        shown
    }

    /// The query's parameters as they were, but those that hold a password.
    fn query_without_password(query: &str) -> String {
        let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
        let mut out = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("pass") => format!("{k}={SHOWN}"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(f);
        }
        out
    }

    fn user_info_without_password(url: &str) -> String {
        let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
            // Not a URL we can take apart: it may be anything, so show nothing.
            return if url.is_empty() { String::new() } else { SHOWN.to_owned() };
        };
        let rest = &url[scheme_end..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let user_info = &authority[..at];
                let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
                let password = if user_info.contains(':') {
                    format!(":{SHOWN}")
                } else {
                    String::new()
                };
                format!("{}{user}{password}{}", &url[..scheme_end], &url[scheme_end + at..])
            }
            None => url.to_owned(),
        }
    }
}

/// One setting as `--help` lists it: its dotted key, the environment variable that sets
/// it, and its value (secrets redacted by the configuration's own serialisation).
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub key: String,
    pub env: String,
    pub value: String,
}

/// Every leaf of `config` (serialised, so secrets are already redacted) under
/// `section`, as settings: derived from the structs themselves, so the list cannot drift
/// from what is read. Lists are one setting, their value as JSON; `(none)` is an
/// optional setting left out, `""` an empty string.
pub fn settings<T: serde::Serialize>(section: &str, config: &T) -> Vec<Setting> {
    let mut out = Vec::new();
    match serde_json::to_value(config) {
        Ok(v) => walk(section, &v, &mut out),
        Err(e) => out.push(Setting {
            key: section.to_owned(),
            env: String::new(),
            value: format!("(cannot be shown: {e})"),
        }),
    }
    out
}

fn walk(key: &str, v: &serde_json::Value, out: &mut Vec<Setting>) {
    use serde_json::Value;
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                walk(&format!("{key}.{k}"), child, out);
            }
        }
        other => out.push(Setting {
            key: key.to_owned(),
            env: env_var(key),
            value: match other {
                Value::Null => "(none)".to_owned(),
                Value::String(s) if s.is_empty() => "\"\"".to_owned(),
                Value::String(s) => s.clone(),
                v => v.to_string(),
            },
        }),
    }
}

/// `api.rate_limit.burst` → `DROVER_API__RATE_LIMIT__BURST`.
pub fn env_var(key: &str) -> String {
    format!("DROVER_{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// Settings as aligned `key  env  value` lines under a heading.
pub fn settings_table(settings: &[Setting]) -> String {
    let kw = settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
    let ew = settings.iter().map(|s| s.env.len()).max().unwrap_or(0);
    settings
        .iter()
        .map(|s| format!("  {:<kw$}  {:<ew$}  {}", s.key, s.env, s.value))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::redact::url_without_password as redact;
    use super::*;

    #[test]
    fn a_urls_password_is_redacted_and_the_rest_kept() {
        assert_eq!(redact("redis://:hunter2@redis:6379/0"), "redis://:<secret>@redis:6379/0");
        assert_eq!(redact("postgres://app:p@ss@db/drover"), "postgres://app:<secret>@db/drover");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("rediss://user@h/1?x=@"), "rediss://user@h/1?x=@");
        assert_eq!(redact("not a url"), "<secret>");
        // Found by the logging audit of 2026-12-05: a password in the query was shown.
        assert_eq!(
            redact("postgres://app@db/drover?sslmode=require&password=hunter2"),
            "postgres://app@db/drover?sslmode=require&password=<secret>"
        );
        assert_eq!(redact("postgres://db/d?sslpassword=x#f"), "postgres://db/d?sslpassword=<secret>#f");
    }

    #[test]
    fn settings_are_dotted_leaves_with_their_environment_variable() {
        let v = serde_json::json!({"listen": "0.0.0.0:8080", "rate_limit": {"burst": 60}, "keys": [], "key": null});
        let s = settings("api", &v);
        let find = |k: &str| s.iter().find(|s| s.key == k).unwrap().clone();
        assert_eq!(find("api.rate_limit.burst").env, "DROVER_API__RATE_LIMIT__BURST");
        assert_eq!(find("api.rate_limit.burst").value, "60");
        assert_eq!(find("api.keys").value, "[]");
        assert_eq!(find("api.key").value, "(none)");
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Section {
        port: u16,
        keys: Vec<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Config {
        api: Section,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Worker {
        resilience: crate::resilience::ResilienceConfig,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct WorkerConfig {
        worker: Worker,
    }

    /// Found by the newcomer audit of 2026-12-06: the file's `getOrders` and the
    /// environment's `GETORDERS` (lowercased) were two entries for one operation, and
    /// which won changed from process to process (a map's random order): workers
    /// sharing one limiter ran different plans.
    #[test]
    fn the_environment_overrides_a_files_operation_limit_field_by_field_in_every_process() {
        let path = std::env::temp_dir().join(format!(
            "drover-limits-{}-{:?}.toml",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, "[worker.resilience.limits]\ngetOrders = { rate = 10.0, burst = 20 }\n").unwrap();
        let file = path.display().to_string();
        let op = crate::resilience::Operation::GetOrders;
        for _ in 0..64 {
            let env = [("DROVER_WORKER__RESILIENCE__LIMITS__GETORDERS__RATE", "1")].map(|(k, v)| (k.to_owned(), v.to_owned()));
            let c: WorkerConfig = load_with(Some(&file), env).unwrap();
            let spec = c.worker.resilience.limits[&op];
            assert_eq!(
                (spec.rate, spec.burst),
                (1.0, 20),
                "the rate from the environment, the burst from the file"
            );
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_shell_set_up_for_the_cli_still_loads_the_api_settings() {
        let env = [
            ("DROVER_API", "https://drover.internal"),
            ("DROVER_API_KEY", "k-secret"),
            ("DROVER_CONFIG", "/etc/drover.toml"),
            ("DROVER_API__PORT", "9000"),
            ("DROVER_API__KEYS", "a,b"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let c: Config = load_with(None, env).unwrap();
        assert_eq!(c.api.port, 9000);
        assert_eq!(c.api.keys, ["a", "b"]);
    }

    /// Found by an audit of error texts: a URL set where a section was expected, or a
    /// TOML syntax error on a secret's line, was printed whole, password included.
    #[test]
    fn a_setting_that_cannot_be_read_is_named_without_its_value() {
        let env = [("DROVER_API__PORT", "postgres://drover:hunter2@db:5432/drover")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        let e = load_with::<Config>(None, env).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("port"), "the key is named: {e}");

        let env = [("DROVER_API", "x")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        let dir = std::env::temp_dir().join(format!("drover-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("api.toml");
        std::fs::write(&file, "[api]\nport = 1\nurl = \"postgres://drover:hunter2@db:5432/drover\n").unwrap();
        let e = load_with::<Config>(Some(file.to_str().unwrap()), env).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("line 3"), "the line is named: {e}");
    }

    /// Found by the newcomer audit of 2026-12-05: the README named a `[queue]` table,
    /// which both binaries dropped without a word (the settings are `[api.queue]` and
    /// `[worker.queue]`), so a Redis Cluster ran on one partition.
    #[test]
    fn a_section_outside_api_and_worker_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("drover-config-top-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("drover.toml");
        std::fs::write(&file, "[api]\nport = 1\n[worker]\nx = 1\n[queue]\npartitions = 16\n").unwrap();
        let e = load_with::<Config>(Some(file.to_str().unwrap()), []).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.contains("[queue]") && e.contains("[api.queue]"), "{e}");
        let env = [("DROVER_QUEUE__PARTITIONS", "16")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        let e = load_with::<Config>(None, env).unwrap_err().to_string();
        assert!(e.contains("[queue]"), "{e}");
        // Both binaries' sections live in one file.
        let env = [("DROVER_API__PORT", "2"), ("DROVER_WORKER__X", "1")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(load_with::<Config>(None, env).unwrap().api.port, 2);
    }

    #[test]
    fn quoted_values_and_source_lines_are_left_out() {
        assert_eq!(
            without_values("invalid type: string \"a\\\"b:pw@h\", expected u16 for key `api.port`"),
            "invalid type: string \"…\", expected u16 for key `api.port`"
        );
        assert_eq!(
            without_values("TOML parse error at line 3, column 7\n  |\n3 | url = \"pw\n  |       ^\ninvalid basic string"),
            "TOML parse error at line 3, column 7\ninvalid basic string"
        );
    }
}
