//! The command line, as clap parses it.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;
use drover::job::{JobKind, JobState};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the API could not be reached, or answered 5xx or 429
  2  bad arguments, or the API refused the request as invalid (400, 413, 415, 422)
  3  not found (404)
  4  no key, an unknown key (401), or a key without the role (403)
  5  conflict: the job's state does not allow it (409)
  6  the watched job, or a replay canary, ended other than succeeded
  130  stopped by Ctrl-C part way (dlq replay, dlq discard: what was done is printed)
  141  the reader of its output went away (drover jobs watch ID | head -1)

The key is read from DROVER_API_KEY, or from the first line of --key-file PATH; it is
never a flag, so it does not show in `ps`.";

/// The command-line client of Drover's HTTP API.
#[derive(Debug, Parser)]
#[command(name = "drover", version, after_long_help = EXIT_CODES, after_help = EXIT_CODES)]
pub struct Cli {
    /// The API's base URL.
    #[arg(
        long,
        env = "DROVER_API",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub api: String,
    /// A file whose first line is the API key (instead of DROVER_API_KEY).
    #[arg(long, value_name = "PATH", global = true)]
    pub key_file: Option<PathBuf>,
    /// Print the API's JSON as it is instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, show, cancel, retry and watch jobs.
    #[command(subcommand)]
    Jobs(JobsCmd),
    /// The dead letter: dead jobs, and putting them back in the queue.
    #[command(subcommand)]
    Dlq(DlqCmd),
    /// The queues' counts, and pausing and resuming them.
    #[command(subcommand)]
    Queues(QueuesCmd),
    /// Seller accounts and their marketplace limits.
    #[command(subcommand)]
    Accounts(AccountsCmd),
    /// Periodic jobs.
    #[command(subcommand)]
    Schedules(SchedulesCmd),
    /// What operators did: actions, who, when, how many jobs, outcome (keys for every account).
    Audit(AuditArgs),
    /// Print a shell completion script (e.g. `drover completions bash > /etc/bash_completion.d/drover`).
    Completions { shell: Shell },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Entries per page, 1 to 1000.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// The `--before` a previous page printed: older entries.
    #[arg(long)]
    pub before: Option<i64>,
    /// Only this key's entries (its name, as ACTOR shows it).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this action's entries, e.g. `dlq.discard`.
    #[arg(long)]
    pub action: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub kind: Option<JobKind>,
    /// Needed for keys limited to several accounts.
    #[arg(long = "account", value_name = "ACCOUNT_ID")]
    pub account: Option<String>,
    /// Jobs per page, 1 to 1000.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// The `next_cursor` a previous page printed.
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum JobsCmd {
    /// Jobs, newest first (one page; the next page's cursor goes to stderr).
    Ls {
        #[command(flatten)]
        list: ListArgs,
        #[arg(long)]
        state: Option<JobState>,
    },
    /// One job with its attempts, progress, result and last error.
    Show { id: String },
    /// Cancel a queued, scheduled or running job (admin).
    Cancel { id: String },
    /// Queue a dead, cancelled or partial job again (admin).
    Retry { id: String },
    /// Follow the job's events until it ends; exit 0 if it succeeded, 6 otherwise.
    Watch { id: String },
}

/// Which dead jobs: what `GET /v1/dead-letter` filters on, and the last error's class.
#[derive(Debug, Default, Args)]
pub struct DlqFilter {
    #[arg(long)]
    pub kind: Option<JobKind>,
    #[arg(long = "account", value_name = "ACCOUNT_ID")]
    pub account: Option<String>,
    /// The class of the job's last error.
    #[arg(long, value_parser = drover::job::ErrorClass::NAMES)]
    pub error_class: Option<String>,
    /// One group's jobs: its id from `drover dlq groups`.
    #[arg(long, value_name = "GROUP_ID")]
    pub group: Option<String>,
    /// The same filters in one argument, e.g. `kind=cleanup,account=acme,error_class=permanent`
    /// (keys: kind, account, error_class, group); a key also given as its own flag is an error.
    #[arg(long, value_name = "KEY=VALUE,…")]
    pub filter: Option<String>,
}

impl DlqFilter {
    /// The filters with `--filter` spread into their own fields.
    pub fn expanded(mut self) -> Result<DlqFilter, String> {
        let Some(expr) = self.filter.take() else {
            return Ok(self);
        };
        for part in expr.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("--filter {part:?}: write key=value (kind, account, error_class, group)"))?;
            let (key, value) = (key.trim(), value.trim().to_owned());
            let twice = || format!("--filter names {key} and so does its own flag: give it once");
            match key {
                "kind" if self.kind.is_none() => {
                    self.kind = Some(value.parse().map_err(|e: drover::job::UnknownKind| format!("--filter kind: {e}"))?);
                }
                "account" | "account_id" if self.account.is_none() => self.account = Some(value),
                "error_class" | "error-class" if self.error_class.is_none() => {
                    if drover::job::ErrorClass::parse(&value).is_none() {
                        return Err(format!(
                            "--filter error_class: {value:?} is not one of {}",
                            drover::job::ErrorClass::NAMES.join(", ")
                        ));
                    }
                    self.error_class = Some(value);
                }
                "group" if self.group.is_none() => self.group = Some(value),
                "kind" | "account" | "account_id" | "error_class" | "error-class" | "group" => return Err(twice()),
                other => return Err(format!("--filter: unknown key {other:?} (kind, account, error_class, group)")),
            }
        }
        Ok(self)
    }
}

#[derive(Debug, Subcommand)]
pub enum DlqCmd {
    /// Dead jobs grouped by error signature (class and message, ids masked), largest first.
    Groups {
        #[arg(long)]
        kind: Option<JobKind>,
        #[arg(long = "account", value_name = "ACCOUNT_ID")]
        account: Option<String>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=200))]
        limit: u32,
    },
    /// Dead jobs, newest first (one page).
    Ls {
        #[command(flatten)]
        filter: DlqFilter,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Put dead jobs back in the queue (admin): the ones named, or every one the filter matches.
    Replay {
        /// Dead job ids; without them, the filter chooses.
        ids: Vec<String>,
        #[command(flatten)]
        filter: DlqFilter,
        /// Most jobs to replay (default: every match, up to 10000).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: Option<u32>,
        /// Replay N jobs first (1–1000) and wait for them to end; go on only if all succeeded.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        canary: Option<u32>,
        /// How long to wait for the canaries, in seconds (1–86400).
        #[arg(long, default_value_t = 600, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
        canary_timeout: u64,
        /// Jobs per second for the rest (default: as fast as the API takes them).
        #[arg(long, value_name = "R")]
        rate: Option<f64>,
        /// Print how many jobs would be replayed, and replay none.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete dead jobs for good (admin): the ones named, or every one the filter matches.
    /// Needs --yes; --dry-run prints how many would go.
    Discard {
        /// Dead job ids; without them, the filter chooses.
        ids: Vec<String>,
        #[command(flatten)]
        filter: DlqFilter,
        /// Most jobs to delete (default: every match, up to 10000).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: Option<u32>,
        /// Print how many jobs would be deleted, and delete none.
        #[arg(long)]
        dry_run: bool,
        /// Delete them (there is no undo).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueuesCmd {
    /// Every queue: counts per state, paused or not, lag.
    Ls,
    /// Stop handing out jobs of a kind; running jobs go on (admin).
    Pause { kind: JobKind },
    /// Hand out jobs of a kind again (admin).
    Resume { kind: JobKind },
}

#[derive(Debug, Subcommand)]
pub enum AccountsCmd {
    /// The accounts this key may see, by id (one page; the next page's --after goes to stderr).
    Ls {
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// The `next_after` a previous page printed.
        #[arg(long, value_name = "ACCOUNT_ID")]
        after: Option<String>,
    },
    /// One account (never its credentials), with when each resource last synced.
    Show { id: String },
    /// The account's marketplace limits: rates, tokens, breakers, quota cooldown.
    Limits { id: String },
    /// The account's jobs by state in every kind (all of them, from the queue's counters).
    Counts { id: String },
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCmd {
    /// The schedules this key may see, a page at a time.
    Ls {
        #[arg(long = "account", value_name = "ACCOUNT_ID")]
        account: Option<String>,
        /// Schedules per page, 1 to 100.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
        /// The `next_cursor` a previous page printed.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Create or replace a schedule.
    Put {
        name: String,
        /// Five fields, or six with seconds first; UTC.
        #[arg(long)]
        cron: String,
        #[arg(long)]
        kind: JobKind,
        /// The job's payload as JSON, or @PATH to read it from a file.
        #[arg(long)]
        payload: String,
        /// Store it switched off.
        #[arg(long)]
        disabled: bool,
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=9))]
        priority: Option<u8>,
        #[arg(long)]
        max_attempts: Option<u32>,
    },
    /// Delete a schedule.
    Rm {
        name: String,
        /// Needed when several accounts this key sees have a schedule of that name.
        #[arg(long = "account", value_name = "ACCOUNT_ID")]
        account: Option<String>,
    },
}
