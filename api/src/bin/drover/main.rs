//! `drover`: a thin command-line client of the HTTP API, for operators and scripts.
//!
//! - `args`: the command line (clap), with the exit codes in `--help`
//! - `client`: HTTP, the key, and `CliError`, whose variant decides the exit code
//! - `jobs`, `dlq`, `queues`, `accounts`, `schedules`, `audit`: one module per command group
//! - `table`: human output; `--json` prints the API's JSON as it came
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use serde_json::Value;

mod accounts;
mod args;
mod audit;
mod client;
mod dlq;
mod jobs;
mod queues;
mod schedules;
mod table;

use args::{Cli, Command};
use client::{load_key, CliError, Client};

/// Where output goes: the API's JSON with `--json`, else a human rendering.
pub struct Out {
    json: bool,
}

impl Out {
    /// The whole answer: pretty JSON, or the rendering.
    pub fn print(&self, v: &Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            println!("{}", human());
        }
    }

    /// One item of a stream: one JSON document a line, or the rendering.
    pub fn print_line(&self, v: &Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{v}");
        } else {
            println!("{}", human());
        }
    }

    /// Progress for humans, on stderr so stdout stays parseable.
    pub fn note(&self, msg: &str) {
        eprintln!("{msg}");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drover: {e}");
            e.exit_code()
        }
    }
}

/// A reader that goes away (`drover jobs watch <id> | head -1`) ends the process
/// quietly with 141 (128 + SIGPIPE, what a shell reports for a tool SIGPIPE ended), not
/// with a panic and a backtrace at the next print.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let out = Out { json: cli.json };
    // The key is read only by commands that talk to the API.
    let connect = || Client::new(&cli.api, load_key(std::env::var("DROVER_API_KEY").ok(), cli.key_file.as_deref())?);
    match cli.command {
        Command::Jobs(cmd) => jobs::run(&connect()?, &out, cmd).await,
        Command::Dlq(cmd) => dlq::run(&connect()?, &out, cmd).await,
        Command::Queues(cmd) => queues::run(&connect()?, &out, cmd).await,
        Command::Accounts(cmd) => accounts::run(&connect()?, &out, cmd).await,
        Command::Schedules(cmd) => schedules::run(&connect()?, &out, cmd).await,
        Command::Audit(args) => audit::run(&connect()?, &out, args).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "drover", &mut std::io::stdout());
            Ok(())
        }
    }
}
