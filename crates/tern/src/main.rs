//! `tern`: the command line of tern's archive.

mod commands;
mod usage;
mod util;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

/// tern: record, replay and verify Aeron streams.
#[derive(Debug, Parser)]
#[command(name = "tern", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a standalone Aeron media driver until Ctrl-C (clients in any language can use it).
    Driver(commands::driver::Args),
    /// Run a long-lived archive recording the channels and streams of its config.
    Archive(commands::archive::Args),
    /// Record one channel and stream until Ctrl-C (or --duration).
    Record(commands::record::Args),
    /// List the recordings of an archive directory.
    List(commands::list::Args),
    /// Describe one recording: descriptor, segments, time range.
    Describe(commands::describe::Args),
    /// Replay a recording to a channel, or print its messages as text or hex.
    Replay(commands::replay::Args),
    /// Check every frame's CRC32C; report the first bad frame of each recording; rebuild missing
    /// or damaged key index files.
    Verify(commands::verify::Args),
    /// Index recordings by a key kind (for replays filtered by key), after the fact.
    Index(commands::index::Args),
    /// Print the frames of a recording, headers included.
    Dump(commands::dump::Args),
    /// Cut a stopped recording at a position, deleting what follows (no archive may run on the
    /// directory).
    Truncate(commands::truncate::Args),
    /// Delete a stopped recording and its files (no archive may run on the directory).
    Purge(commands::purge::Args),
    /// Repair an archive directory's catalog: `tern catalog rebuild` reconstructs it from the
    /// segment files when it is lost or damaged.
    Catalog(commands::catalog::Args),
    /// Run a cluster member, ask members for their status, snapshot, send as a client, or print
    /// a member's recorded egress.
    Cluster(commands::cluster::Args),
    /// Record a shared stream fed by several publishers, replay it and check every message
    /// (--cluster: kill a cluster's leader under load and check the clients lose nothing).
    Demo(commands::demo::Args),
    /// Copy a recording into files, PostgreSQL or Kafka, exactly once; `tern sink status`.
    Sink(commands::sink::Args),
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Parse the command line; a bad one is one `tern:` line and exit code 2 (clap's usage error
/// code), help and version are printed as clap prints them.
fn parse() -> Result<Cli, ExitCode> {
    let command = usage::allow_negative_numbers(Cli::command());
    // The subcommand named, for errors whose text does not say it.
    let named = std::env::args()
        .nth(1)
        .filter(|name| command.find_subcommand(name).is_some())
        .map_or_else(|| "tern".to_string(), |name| format!("tern {name}"));
    let parsed = command
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    parsed.map_err(|error| {
        let code = ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        if usage::is_display(&error) {
            // Help or version (to standard output, exit 0), or help for a missing command.
            let _ = error.print();
        } else {
            eprintln!("tern: {}", usage::one_line(&error, &named));
        }
        code
    })
}

/// Whether the command is `tern cluster node` (long-running: logs at info).
fn cli_is_node(command: &Command) -> bool {
    matches!(command, Command::Cluster(args) if args.is_node())
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let long_running = matches!(
        cli.command,
        Command::Driver(_) | Command::Archive(_) | Command::Record(_) | Command::Sink(_)
    ) || cli_is_node(&cli.command);
    init_logging(if long_running { "info" } else { "warn" });
    let result = match cli.command {
        Command::Driver(args) => commands::driver::run(args),
        Command::Archive(args) => commands::archive::run(args),
        Command::Record(args) => commands::record::run(args),
        Command::List(args) => commands::list::run(args),
        Command::Describe(args) => commands::describe::run(args),
        Command::Replay(args) => commands::replay::run(args),
        Command::Verify(args) => commands::verify::run(args),
        Command::Index(args) => commands::index::run(args),
        Command::Dump(args) => commands::dump::run(args),
        Command::Truncate(args) => commands::truncate::run(args),
        Command::Purge(args) => commands::purge::run(args),
        Command::Catalog(args) => commands::catalog::run(args),
        Command::Cluster(args) => commands::cluster::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Sink(args) => commands::sink::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            // Error types that print their source too would repeat it: keep each cause once.
            let mut message = String::new();
            for cause in error.chain().map(ToString::to_string) {
                if !message.ends_with(&cause) {
                    if !message.is_empty() {
                        message.push_str(": ");
                    }
                    message.push_str(&cause);
                }
            }
            eprintln!("tern: {message}");
            ExitCode::FAILURE
        }
    }
}
