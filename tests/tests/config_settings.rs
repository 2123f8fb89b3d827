//! Every setting `--help` documents is read from the environment variable it names:
//! each is set to a value other than its default and must come back through the
//! configuration's loader. The test runs in a child process of its own, because it
//! changes the process environment (which every other test's child processes inherit).
use drover::config::{settings, Setting};
use drover_api::ApiConfig;
use drover_worker::WorkerConfig;

/// A value of the same type other than `default`, as an environment variable spells it;
/// `None` for lists, maps, optional settings left out and secrets, which are checked for
/// being accepted only.
fn other_value(s: &Setting) -> Option<String> {
    let v = s.value.as_str();
    if v == "true" || v == "false" {
        return Some((v == "false").to_string());
    }
    if let Ok(n) = v.parse::<u64>() {
        return Some((n + 1).to_string());
    }
    if let Ok(f) = v.parse::<f64>() {
        return Some((f * 2.0 + 1.0).to_string());
    }
    None
}

/// A list as an environment variable spells it (comma-separated), other than `default`,
/// and the value `--help` shows for it once loaded: numbers each one more, an empty list
/// of addresses two of them. `None` for lists of tables (the API's keys) and of anything
/// else.
fn other_list(s: &Setting) -> Option<(String, String)> {
    let items: Vec<serde_json::Value> = serde_json::from_str(&s.value).ok()?;
    if items.is_empty() && s.key.ends_with("trusted_proxies") {
        return Some(("10.0.0.0/8,192.168.1.7".into(), r#"["10.0.0.0/8","192.168.1.7"]"#.into()));
    }
    let numbers: Vec<u64> = items.iter().map(serde_json::Value::as_u64).collect::<Option<_>>()?;
    if numbers.is_empty() {
        return None;
    }
    let other: Vec<u64> = numbers.iter().map(|n| n + 1).collect();
    let sent = other.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    Some((sent, serde_json::to_string(&other).unwrap()))
}

/// Strings that must keep a shape (URLs, addresses, crons, enums): another valid value.
fn other_string(key: &str) -> Option<&'static str> {
    Some(match key.rsplit('.').next()? {
        "listen" | "metrics_listen" => "127.0.0.1:7000",
        "redis_url" => "redis://127.0.0.1:7001/2",
        "url" => "postgres://roundtrip@127.0.0.1/db",
        "namespace" => "roundtrip",
        "cron" => "*/7 * * * *",
        "base_url" | "token_url" | "marketplace_token_url" => "https://roundtrip.example/path",
        "user_agent" => "roundtrip-agent",
        "audit_report_type" => "GET_ROUNDTRIP_REPORT",
        "cold_start" => "full",
        _ => return None,
    })
}

fn round_trip(section: &str, defaults: Vec<Setting>, load: impl Fn() -> Result<Vec<Setting>, String>) {
    let mut checked = 0;
    let mut accepted_only = Vec::new();
    for s in &defaults {
        // (a list is sent comma-separated: before, found by the newcomer audit of
        // 2026-12-06, only `api.keys` was read as a list, and setting
        // DROVER_API__UI__TRUSTED_PROXIES as the console's guide says stopped the API)
        let list = other_list(s);
        let value = list
            .as_ref()
            .map(|(_, shown)| shown.clone())
            .or_else(|| other_value(s))
            .or_else(|| other_string(&s.key).map(str::to_owned));
        let sent = list.map(|(sent, _)| sent).or(value.clone()).unwrap_or_else(|| s.value.clone());
        if sent.starts_with('[') || sent.starts_with('{') || sent == "(none)" || sent == "<secret>" {
            accepted_only.push(s.key.clone());
            continue;
        }
        // An operation's limit is one {rate, burst} entry: the pair goes together.
        let sibling = s.key.contains(".resilience.limits.").then(|| {
            let (op, field) = s.key.rsplit_once('.').unwrap();
            let other = format!("{op}.{}", if field == "rate" { "burst" } else { "rate" });
            defaults.iter().find(|d| d.key == other).expect("rate and burst").clone()
        });
        std::env::set_var(&s.env, &sent);
        if let Some(sib) = &sibling {
            std::env::set_var(&sib.env, &sib.value);
        }
        let loaded = load();
        std::env::remove_var(&s.env);
        if let Some(sib) = &sibling {
            std::env::remove_var(&sib.env);
        }
        let loaded = loaded.unwrap_or_else(|e| panic!("{} = {sent:?} was refused: {e}", s.env));
        let got = loaded
            .iter()
            .find(|l| l.key == s.key)
            .unwrap_or_else(|| panic!("{} is gone", s.key));
        if let Some(value) = &value {
            let same = got.value == *value || got.value.parse::<f64>().ok() == sent.parse::<f64>().ok() && sent.parse::<f64>().is_ok();
            assert!(same, "{} = {sent:?} came back as {:?}", s.env, got.value);
            checked += 1;
        } else {
            accepted_only.push(s.key.clone());
        }
    }
    assert!(checked > 40, "{section}: only {checked} settings changed through their variables");
    eprintln!("{section}: {checked} settings round-tripped; accepted unchanged: {accepted_only:?}");
}

rusty_fork::rusty_fork_test! {
    #![rusty_fork(timeout_ms = 60_000)]

    #[test]
    fn every_documented_setting_round_trips_through_its_environment_variable() {
        std::env::remove_var("DATABASE_URL");
        round_trip("api", settings("api", &ApiConfig::default()), || {
            ApiConfig::layered(None).map(|c| settings("api", &c)).map_err(|e| e.to_string())
        });
        round_trip("worker", drover_worker::cli::documented(), || {
            WorkerConfig::layered(None)
                .map(|c| settings("worker", &c))
                .map_err(|e| e.to_string())
        });
    }
}
