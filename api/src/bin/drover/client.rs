//! The HTTP side: one client with the base URL and the key, JSON in and out, and the
//! one error type whose variant decides the process's exit code.
use std::path::Path;
use std::process::ExitCode;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// What went wrong, by what a script should do about it (`Exit` says which code).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API answered with a problem (`application/problem+json`).
    #[error("{}", problem_line(.status, .title, .detail, .request_id))]
    Api {
        status: StatusCode,
        title: String,
        detail: String,
        request_id: Option<String>,
    },
    /// The API could not be reached, or answered something that is not the API.
    #[error("{0}")]
    Transport(String),
    /// No key, or a key file that cannot be read.
    #[error("{0}")]
    Key(String),
    /// Arguments the API was never asked about (a payload that is not JSON, ...).
    #[error("{0}")]
    Usage(String),
    /// A job (watched, or a replay canary) ended other than `succeeded`.
    #[error("{0}")]
    JobFailed(String),
    /// Stopped by Ctrl-C (SIGINT) part way; the message says what was done.
    #[error("{0}")]
    Interrupted(String),
}

fn problem_line(status: &StatusCode, title: &str, detail: &str, request_id: &Option<String>) -> String {
    let mut line = format!("{} {title}", status.as_u16());
    if !detail.is_empty() {
        line.push_str(&format!(": {detail}"));
    }
    if let Some(id) = request_id {
        line.push_str(&format!(" (request id {id})"));
    }
    line
}

/// The exit codes, documented in `drover --help` and docs/cli.md.
pub mod exit {
    /// The API could not be reached, answered 5xx or 429, or something unexpected.
    pub const ERROR: u8 = 1;
    /// Bad arguments (clap's own code), or the API refused the request as invalid (400, 422).
    pub const USAGE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    /// No key, a key the API does not know (401), or a key without the role (403).
    pub const AUTH: u8 = 4;
    /// The job's state does not allow it (409).
    pub const CONFLICT: u8 = 5;
    /// The watched job, or a replay canary, ended other than `succeeded`.
    pub const JOB_FAILED: u8 = 6;
    /// Stopped by Ctrl-C (SIGINT), as a shell reports for a tool SIGINT ended.
    pub const INTERRUPTED: u8 = 130;
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Api { status, .. } => match status.as_u16() {
                400 | 413 | 415 | 422 => exit::USAGE,
                401 | 403 => exit::AUTH,
                404 => exit::NOT_FOUND,
                409 => exit::CONFLICT,
                _ => exit::ERROR,
            },
            CliError::Transport(_) => exit::ERROR,
            CliError::Key(_) => exit::AUTH,
            CliError::Usage(_) => exit::USAGE,
            CliError::JobFailed(_) => exit::JOB_FAILED,
            CliError::Interrupted(_) => exit::INTERRUPTED,
        })
    }
}

fn transport(e: reqwest::Error) -> CliError {
    // Without the URL's query (it may carry a cursor) and without Rust's debug form.
    let e = e.without_url();
    let mut msg = format!("cannot talk to the API: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    CliError::Transport(msg)
}

/// The key: `DROVER_API_KEY`, else the first line of `--key-file`. Never a flag of its
/// own, so it does not show in `ps` or shell history.
pub fn load_key(env: Option<String>, file: Option<&Path>) -> Result<SecretString, CliError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| CliError::Key(format!("cannot read the key file {}: {e}", path.display())))?;
        let key = text.lines().next().unwrap_or("").trim();
        if key.is_empty() {
            return Err(CliError::Key(format!("the key file {} is empty", path.display())));
        }
        return Ok(SecretString::from(key));
    }
    match env {
        Some(k) if !k.trim().is_empty() => Ok(SecretString::from(k.trim())),
        _ => Err(CliError::Key("no API key: set DROVER_API_KEY or pass --key-file PATH".into())),
    }
}

/// The longest the client waits for the API's next bytes.
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(40);

pub struct Client {
    http: reqwest::Client,
    base: String,
    key: SecretString,
}

impl Client {
    pub fn new(base: &str, key: SecretString) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("drover-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            // Every read: a request the API stops answering (a half-open connection)
            // ends, whatever path sent it; an event stream hears a keep-alive every 15 s.
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(transport)?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
        })
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.key.expose_secret())
    }

    /// Send, and turn anything but a 2xx into the API's problem. A request the API
    /// refused for the key's budget (429) is sent again once its `Retry-After` has
    /// passed, up to [`REFUSED_TRIES`] times and when that wait is at most
    /// [`LONGEST_RETRY_AFTER`]: a command of many requests (pages, batches) goes on at the
    /// rate the key is allowed instead of ending part-way (before, found by the fifth
    /// audits of 2026-12-06, the first 429 ended it with exit 1).
    pub async fn send(&self, req: RequestBuilder) -> Result<Response, CliError> {
        self.send_with(req, REFUSED_TRIES).await
    }

    /// [`Client::send`] answered with its 429, not sent again (a caller that bounds its
    /// own waits: `jobs watch` reconnecting, within its minute).
    pub async fn send_once(&self, req: RequestBuilder) -> Result<Response, CliError> {
        self.send_with(req, 0).await
    }

    /// [`Client::send`] with at most `refused_tries` more sends after a 429 (0: none, for
    /// a caller that paces its own requests).
    async fn send_with(&self, mut req: RequestBuilder, refused_tries: u32) -> Result<Response, CliError> {
        let mut refused = 0;
        loop {
            let again = req.try_clone();
            let res = req.send().await.map_err(transport)?;
            if res.status().is_success() {
                return Ok(res);
            }
            let wait = (res.status() == StatusCode::TOO_MANY_REQUESTS && refused < refused_tries)
                .then(|| retry_after(&res))
                .flatten();
            match (again, wait) {
                (Some(next), Some(wait)) => {
                    refused += 1;
                    eprintln!(
                        "the API refused a request for the key's budget (429): sending it again in {:.1}s",
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                    req = next;
                }
                _ => return Err(problem(res).await),
            }
        }
    }

    /// A JSON answer, as the API sent it.
    pub async fn json(&self, req: RequestBuilder) -> Result<Value, CliError> {
        self.json_with(req, REFUSED_TRIES).await
    }

    async fn json_with(&self, req: RequestBuilder, refused_tries: u32) -> Result<Value, CliError> {
        self.send_with(req.timeout(std::time::Duration::from_secs(60)), refused_tries)
            .await?
            .json()
            .await
            .map_err(transport)
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        self.json(self.request(Method::GET, &with_query(path, query))).await
    }

    /// [`Client::get`] answered with its 429, not sent again (the canary wait and `jobs
    /// watch` handle a refusal themselves, within their own deadlines).
    pub async fn get_once(&self, path: &str) -> Result<Value, CliError> {
        self.json_with(self.request(Method::GET, path), 0).await
    }

    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let req = self.request(Method::POST, path);
        self.json(match body {
            Some(b) => req.json(b),
            None => req,
        })
        .await
    }
}

/// An answer worth asking again for: the key's budget (429), the API or a proxy
/// unavailable (502, 503, 504), or no answer at all.
pub fn again_later(e: &CliError) -> bool {
    match e {
        CliError::Api { status, .. } => matches!(status.as_u16(), 429 | 502 | 503 | 504),
        CliError::Transport(_) => true,
        _ => false,
    }
}

/// How many times a request refused with a 429 is sent again.
pub const REFUSED_TRIES: u32 = 5;
/// The longest `Retry-After` a refused request waits out before it is sent again; a
/// longer one ends the command with the 429.
pub const LONGEST_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// The answer's `Retry-After` in seconds (1 s when it has none, or one that is not a
/// number of seconds), when it is at most [`LONGEST_RETRY_AFTER`].
fn retry_after(res: &Response) -> Option<std::time::Duration> {
    let secs = match res.headers().get(reqwest::header::RETRY_AFTER) {
        None => 1,
        Some(v) => v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(1),
    };
    let wait = std::time::Duration::from_secs(secs.max(1));
    (wait <= LONGEST_RETRY_AFTER).then_some(wait)
}

/// `path?k=v&…`, each value URL-encoded; `path` alone when there are none.
pub fn with_query(path: &str, query: &[(&str, String)]) -> String {
    match serde_urlencoded::to_string(query) {
        Ok(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_owned(),
    }
}

/// The problem+json of an error answer: title, detail (with each invalid field) and the
/// request id. Something else (a proxy's HTML page) becomes its status line.
async fn problem(res: Response) -> CliError {
    let status = res.status();
    let header_id = res.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut detail = text("detail").unwrap_or_default();
    if let Some(errors) = body.get("errors").and_then(Value::as_array) {
        for e in errors {
            let field = e.get("field").and_then(Value::as_str).unwrap_or("?");
            let message = e.get("message").and_then(Value::as_str).unwrap_or("");
            detail.push_str(&format!("\n  {field}: {message}"));
        }
    }
    CliError::Api {
        status,
        title: text("title").unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned()),
        detail,
        request_id: text("request_id").or(header_id),
    }
}
