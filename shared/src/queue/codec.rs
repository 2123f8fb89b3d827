//! Reading and writing the stored job hash and attempt records.
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::callback::{CallbackStatus, DeliveryRecord, JobCallback};
use crate::job::{
    trace_id_of, AttemptOutcome, AttemptRecord, ErrorInfo, Job, JobId, JobKind, JobPayload, JobState, PreviousEnding, Progress,
};

use super::{Leased, StoreError};

/// The record layout this version writes and reads.
pub const SCHEMA_VERSION: &str = "1";

/// How the reason a leased record cannot be read begins when a newer release wrote it (a
/// record version above this one's, a payload field or value this release does not
/// know): the worker hands such a job back for later, where a worker of that release
/// takes it, rather than sending it to dead (found by the durability audit of
/// 2026-12-07, third: during a rollout, API first, or after a rollback, an older worker
/// killed every such job it leased).
pub const NEWER_RELEASE: &str = "written by a newer release: ";

pub fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// An attempt as stored: times in ms so the Lua scripts can write one too.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredAttempt {
    pub number: u32,
    pub worker: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub outcome: AttemptOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Written by the settle script when the lease had gone; never by the worker.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
}

impl From<&AttemptRecord> for StoredAttempt {
    fn from(a: &AttemptRecord) -> Self {
        Self {
            number: a.number,
            worker: a.worker.clone(),
            started_ms: a.started_at.timestamp_millis(),
            ended_ms: a.ended_at.timestamp_millis(),
            outcome: a.outcome,
            error: a.error.clone(),
            trace_id: a.trace_id.clone(),
            late: false,
        }
    }
}

impl From<StoredAttempt> for AttemptRecord {
    fn from(a: StoredAttempt) -> Self {
        Self {
            number: a.number,
            worker: a.worker,
            started_at: ms_to_time(a.started_ms),
            ended_at: ms_to_time(a.ended_ms),
            outcome: a.outcome,
            error: a.error,
            trace_id: a.trace_id,
            late: a.late,
        }
    }
}

pub struct Fields(pub HashMap<String, String>);

impl Fields {
    pub fn from_pairs(pairs: Vec<String>) -> Self {
        let mut map = HashMap::with_capacity(pairs.len() / 2);
        let mut it = pairs.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            map.insert(k, v);
        }
        Fields(map)
    }
    /// A field's value; an empty string is how the scripts clear a field.
    fn str(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
    fn num<T: std::str::FromStr>(&self, k: &str) -> Option<T> {
        self.str(k).and_then(|v| v.parse().ok())
    }
    fn time(&self, k: &str) -> Option<DateTime<Utc>> {
        self.num::<i64>(k).map(ms_to_time)
    }
    fn json<T: for<'de> Deserialize<'de>>(&self, k: &str) -> Option<T> {
        self.str(k).and_then(|v| serde_json::from_str(v).ok())
    }
}

/// Build the job view from its hash. Fields this version does not know are ignored and
/// missing optional ones stay empty, so a record from another version still shows.
pub fn decode_job(id: &JobId, f: &Fields, attempts: Vec<String>, deliveries: Vec<String>) -> Result<Job, StoreError> {
    let state: JobState = f
        .str("st")
        .ok_or_else(|| StoreError::Protocol(format!("job {id} has no state")))?
        .parse()
        .map_err(|e| StoreError::Protocol(format!("job {id}: {e}")))?;
    let payload = f
        .str("p")
        .map(|p| serde_json::from_str(p).unwrap_or_else(|_| serde_json::Value::String(p.to_owned())))
        .unwrap_or(serde_json::Value::Null);
    let traceparent = f.str("tp").map(str::to_owned);
    let mut attempt_history: Vec<AttemptRecord> = attempts
        .into_iter()
        .filter_map(|a| serde_json::from_str::<StoredAttempt>(&a).ok())
        .map(AttemptRecord::from)
        .collect();
    attempt_history.extend(last_success(f));
    Ok(Job {
        id: id.clone(),
        kind: id.kind(),
        state,
        payload,
        account_id: f.str("acct").map(str::to_owned),
        priority: f.num("pr").unwrap_or(0),
        attempts: f.num("at").unwrap_or(0),
        max_attempts: f.num("ma").unwrap_or(0),
        timeout_ms: f.num("to").unwrap_or(0),
        created_at: f.time("ca").unwrap_or_default(),
        // the latest time a change wrote: `ua` is left out where a lease (`sa`) or an end
        // (`fa`) writes its own time, and until the job first changes (`ca`)
        updated_at: ["ua", "sa", "fa", "ca"].iter().filter_map(|k| f.time(k)).max().unwrap_or_default(),
        run_at: f.time("ra"),
        started_at: f.time("sa"),
        finished_at: f.time("fa"),
        progress: f.json::<Progress>("pg"),
        result: f.json("rs"),
        last_error: f.json("er"),
        trace_id: traceparent.as_deref().and_then(trace_id_of).map(str::to_owned),
        traceparent,
        worker: f.str("w").map(str::to_owned),
        cancel_requested: f.str("cx") == Some("1"),
        trigger: f.str("tg").map(str::to_owned),
        attempt_history,
        previous_ending: previous_ending(f),
        callback: decode_callback(f, deliveries),
    })
}

/// How a replayed job's previous life ended (`pe`, written by the replay).
fn previous_ending(f: &Fields) -> Option<PreviousEnding> {
    #[derive(Deserialize)]
    struct Stored {
        state: JobState,
        finished_ms: Option<i64>,
        error: Option<ErrorInfo>,
        trigger: Option<String>,
    }
    let s: Stored = f.json("pe")?;
    Some(PreviousEnding {
        state: s.state,
        finished_at: s.finished_ms.map(ms_to_time),
        error: s.error,
        trigger: s.trigger,
    })
}

/// The run that ended the job with a success, when it was kept in the job's hash
/// (`la` = `<ended ms>[:<trace id>]`) instead of on the history list: its number,
/// worker and start are the lease's own fields (docs/architecture.md, "Redis layout").
fn last_success(f: &Fields) -> Option<AttemptRecord> {
    let la = f.str("la")?;
    let (ended, trace) = match la.split_once(':') {
        Some((ended, trace)) => (ended, Some(trace.to_owned())),
        None => (la, None),
    };
    Some(AttemptRecord {
        number: f.num("at").unwrap_or(1),
        worker: f.str("w").unwrap_or_default().to_owned(),
        started_at: f.time("sa").unwrap_or_default(),
        ended_at: ms_to_time(ended.parse().ok()?),
        outcome: AttemptOutcome::Succeeded,
        error: None,
        trace_id: trace,
        late: false,
    })
}

/// The settle script's argument for a run's attempt: the record as JSON, or for a run
/// that succeeded on the lease it was given (its number, worker and start are the
/// lease token's, `<worker>:<number>:<started ms>`) only `=<ended ms>[:<trace id>]`,
/// which the script keeps in the job's hash (see [`last_success`]).
pub fn attempt_arg(a: &AttemptRecord, token: &str) -> String {
    let plain = a.outcome == AttemptOutcome::Succeeded && a.error.is_none() && !a.late;
    if plain && token_names(token, &a.worker, a.number, a.started_at.timestamp_millis()) {
        let mut ended = itoa::Buffer::new();
        let ended = ended.format(a.ended_at.timestamp_millis());
        let trace = a.trace_id.as_deref().unwrap_or("");
        let mut arg = String::with_capacity(2 + ended.len() + trace.len());
        arg.push('=');
        arg.push_str(ended);
        if a.trace_id.is_some() {
            arg.push(':');
            arg.push_str(trace);
        }
        return arg;
    }
    serde_json::to_string(&StoredAttempt::from(a)).unwrap_or_default()
}

/// Whether `token` is `<worker>:<number>:<started_ms>` (a run's lease token).
fn token_names(token: &str, worker: &str, number: u32, started_ms: i64) -> bool {
    let (mut n, mut s) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (number, started) = (n.format(number), s.format(started_ms));
    token.len() == worker.len() + number.len() + started.len() + 2
        && token
            .strip_prefix(worker)
            .and_then(|t| t.strip_prefix(':'))
            .and_then(|t| t.strip_prefix(number))
            .and_then(|t| t.strip_prefix(':'))
            == Some(started)
}

/// The job's callback: its URL, where its delivery stands and the tries kept.
fn decode_callback(f: &Fields, deliveries: Vec<String>) -> Option<JobCallback> {
    let url = f.str("cb")?.to_owned();
    let status = match f.str("cbx") {
        Some("pending") => CallbackStatus::Pending,
        Some("delivered") => CallbackStatus::Delivered,
        Some("failed") => CallbackStatus::Failed,
        _ => CallbackStatus::Waiting,
    };
    Some(JobCallback {
        url,
        status,
        next_try_at: f.time("cbw").filter(|_| status == CallbackStatus::Pending),
        deliveries: deliveries
            .iter()
            .filter_map(|d| serde_json::from_str::<DeliveryRecord>(d).ok())
            .collect(),
    })
}

impl Fields {
    pub fn from_values(names: &[&str], values: Vec<Option<String>>) -> Self {
        Fields(
            names
                .iter()
                .zip(values)
                .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), v)))
                .collect(),
        )
    }
}

/// Whether `payload`, refused with `why`, is one a newer release wrote: it names a value
/// this release does not know, or it reads once the top-level fields this release does
/// not know are left out (a record that lacks what it needs is not newer, it is broken).
fn written_by_newer(kind: JobKind, payload: &str, why: &str) -> bool {
    if why.contains("unknown variant") {
        return true;
    }
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str::<serde_json::Value>(payload) else {
        return false;
    };
    let mut why = why.to_owned();
    for _ in 0..16 {
        let Some(name) = why.split("unknown field `").nth(1).and_then(|rest| rest.split('`').next()) else {
            return false;
        };
        if fields.remove(name).is_none() {
            return false;
        }
        match JobPayload::from_json_text(kind, &serde_json::Value::Object(fields.clone()).to_string()) {
            Ok(_) => return true,
            Err(e) => why = e,
        }
    }
    false
}

/// Build a leased job from the three strings the fetch script returns for it: `head` =
/// `<id> <v> <at> <ma> <to> <sa> <mb> <token>` (a field it lacks empty; the token last,
/// whatever it holds), the traceparent (empty: none) and the payload. A payload that
/// this version cannot decode is carried as an error, so the job goes to dead with the
/// reason instead of looping or crashing the worker; an unreadable id is an error.
pub fn decode_leased(head: &str, traceparent: String, payload: &str) -> Result<Leased, StoreError> {
    let mut parts = head.splitn(8, ' ');
    let mut next = || parts.next().unwrap_or_default();
    let id: JobId = next().parse().map_err(|e| StoreError::Protocol(format!("leased job: {e}")))?;
    let (version, at, ma, to, sa, mb, token) = (next(), next(), next(), next(), next(), next(), next());
    let newer = |why: String| format!("{NEWER_RELEASE}{why}");
    let payload = if version != SCHEMA_VERSION {
        let why = format!("record schema version {version:?} is not supported by this worker (expects {SCHEMA_VERSION})");
        match (version.parse::<u32>(), SCHEMA_VERSION.parse::<u32>()) {
            (Ok(theirs), Ok(ours)) if theirs > ours => Err(newer(why)),
            _ => Err(why),
        }
    } else if payload.is_empty() {
        Err("record has no payload".to_owned())
    } else {
        JobPayload::from_json_text(id.kind(), payload).map_err(|why| {
            if written_by_newer(id.kind(), payload, &why) {
                newer(why)
            } else {
                why
            }
        })
    };
    Ok(Leased {
        attempt: at.parse().unwrap_or(1),
        max_attempts: ma.parse().unwrap_or(1),
        budget: mb.parse().ok(),
        started_at: sa.parse::<i64>().map(ms_to_time).unwrap_or_else(|_| Utc::now()),
        timeout: Duration::from_millis(to.parse().unwrap_or(0)),
        traceparent: (!traceparent.is_empty()).then_some(traceparent),
        id,
        token: token.to_owned(),
        payload,
    })
}

/// [`decode_leased`] from the raw bytes of the three strings, as a fetch's reply holds
/// them: a job whose strings are not all text (bytes that are not UTF-8, in a record
/// damaged in Redis) is still handed out, with the reason as its payload's error, so the
/// runtime puts it in dead at once and the other jobs of the same reply go out as usual.
/// `Err` (the head as far as it reads, cut short) only when not even the job's id can be
/// read: such a job cannot be addressed at all.
pub fn decode_leased_bytes(head: &[u8], traceparent: &[u8], payload: &[u8]) -> Result<Leased, String> {
    let unreadable = [("head", head), ("traceparent", traceparent), ("payload", payload)]
        .into_iter()
        .find(|(_, bytes)| std::str::from_utf8(bytes).is_err())
        .map(|(what, _)| format!("the record's {what} is not UTF-8 text: this version cannot read it"));
    // The id comes first and the token last (the fetch script writes both): what lies
    // between, unreadable or not, does not move them.
    let head = String::from_utf8_lossy(head);
    let mut leased = match unreadable {
        None => decode_leased(
            &head,
            String::from_utf8_lossy(traceparent).into_owned(),
            &String::from_utf8_lossy(payload),
        ),
        Some(_) => decode_leased(&head, String::new(), ""),
    }
    .map_err(|_| head.chars().take(80).collect::<String>())?;
    if let Some(why) = unreadable {
        leased.payload = Err(why);
    }
    Ok(leased)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leased_job_whose_strings_are_not_text_is_handed_out_with_the_reason_unless_its_id_is_lost() {
        let payload = br#"{"account_id":"a1","marketplace_id":"ATVPDKIKX0DER","skus":["s1"]}"#;
        let id = "cleanup_01J00000000000000000000000";
        let head = |v: &[u8]| {
            [
                format!("{id} ").as_bytes(),
                v,
                &b" 2 5 30000 1700000000123  host a:2:1700000000123"[..],
            ]
            .concat()
        };
        let good = decode_leased_bytes(&head(SCHEMA_VERSION.as_bytes()), b"", payload).expect("a readable job");
        assert!(good.payload.is_ok(), "{:?}", good.payload);

        let bad_head = decode_leased_bytes(&head(b"1\xff".as_slice()), b"", payload).expect("its id still reads");
        assert_eq!((bad_head.id.as_str(), bad_head.token.as_str()), (id, "host a:2:1700000000123"));
        assert!(bad_head.payload.unwrap_err().contains("head is not UTF-8"));
        let bad_payload = decode_leased_bytes(&head(SCHEMA_VERSION.as_bytes()), b"", b"{\"a\xfe\"}").expect("its id reads");
        assert!(bad_payload.payload.unwrap_err().contains("payload is not UTF-8"));
        let bad_trace = decode_leased_bytes(&head(SCHEMA_VERSION.as_bytes()), b"00-\xc3", payload).expect("its id reads");
        assert!(bad_trace.payload.unwrap_err().contains("traceparent is not UTF-8"));

        let lost = decode_leased_bytes(b"cleanup_01J0000000000\xff0000000000000 1 2 5 0 1  w:2:1", b"", payload);
        assert!(lost.expect_err("no id, no job").starts_with("cleanup_01J0000000000"));
    }

    #[test]
    fn a_leased_jobs_head_reads_empty_fields_as_absent_and_keeps_the_whole_token() {
        let payload = r#"{"account_id":"a1","marketplace_id":"ATVPDKIKX0DER","skus":["s1"]}"#;
        let head = format!("cleanup_01J00000000000000000000000 {SCHEMA_VERSION} 2 5 30000 1700000000123  host a:2:1700000000123");
        let leased = decode_leased(&head, String::new(), payload).expect("a readable head");
        assert_eq!(leased.id.as_str(), "cleanup_01J00000000000000000000000");
        assert_eq!((leased.attempt, leased.max_attempts, leased.budget), (2, 5, None));
        assert_eq!(leased.timeout, Duration::from_millis(30_000));
        assert_eq!(leased.started_at.timestamp_millis(), 1_700_000_000_123);
        assert_eq!(leased.traceparent, None);
        assert_eq!(leased.token, "host a:2:1700000000123");
        assert!(leased.payload.is_ok(), "{:?}", leased.payload);

        let replayed = format!("cleanup_01J00000000000000000000000 {SCHEMA_VERSION} 7 10 0 1 5 w:7:1");
        let leased = decode_leased(&replayed, "00-trace-span-01".into(), "").expect("a readable head");
        assert_eq!((leased.budget, leased.traceparent.as_deref()), (Some(5), Some("00-trace-span-01")));
        assert_eq!(leased.payload.unwrap_err(), "record has no payload");

        let old = decode_leased("cleanup_01J00000000000000000000000 0 1 1 0 1  w:1:1", String::new(), payload).expect("readable");
        assert!(old.payload.unwrap_err().contains("schema version \"0\""));
        assert!(matches!(
            decode_leased("not-an-id 1 1 1 0 1  w", String::new(), payload),
            Err(StoreError::Protocol(_))
        ));
    }

    #[test]
    fn a_success_on_its_own_lease_goes_short_and_any_other_attempt_as_its_json() {
        let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap();
        let mut a = AttemptRecord {
            number: 3,
            worker: "host-1:9".into(),
            started_at: at(1_700_000_000_123),
            ended_at: at(1_700_000_000_456),
            outcome: AttemptOutcome::Succeeded,
            error: None,
            late: false,
            trace_id: None,
        };
        assert_eq!(attempt_arg(&a, "host-1:9:3:1700000000123"), "=1700000000456");
        a.trace_id = Some("0af7651916cd43dd8448eb211c80319c".into());
        assert_eq!(
            attempt_arg(&a, "host-1:9:3:1700000000123"),
            "=1700000000456:0af7651916cd43dd8448eb211c80319c"
        );
        let json = serde_json::to_string(&StoredAttempt::from(&a)).unwrap();
        // another run's token (number, start or worker differ, or more follows): the record whole
        for token in [
            "host-1:9:13:1700000000123",
            "host-1:9:3:170000000012",
            "host-1:9:3:17000000001234",
            "host-2:9:3:1700000000123",
            "host-1:9:3:1700000000123:x",
            "",
        ] {
            assert_eq!(attempt_arg(&a, token), json, "{token}");
        }
        a.outcome = AttemptOutcome::Failed;
        assert!(attempt_arg(&a, "host-1:9:3:1700000000123").starts_with('{'));
    }
}
