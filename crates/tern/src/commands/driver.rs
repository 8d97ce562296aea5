//! `tern driver`: a standalone media driver.

use crate::util::{parse_size, stop_signal};
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tern_transport::{default_aeron_dir, DriverConfig, MediaDriver, ThreadingMode};

/// Arguments of `tern driver`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Aeron directory (default: $AERON_DIR or Aeron's default).
    #[arg(long, value_name = "DIR")]
    aeron_dir: Option<String>,
    /// Threading: shared (one thread), shared-network or dedicated.
    #[arg(long, default_value = "shared")]
    threading: ThreadingMode,
    /// Term length of IPC publications, e.g. 64m.
    #[arg(long, value_parser = parse_size)]
    ipc_term_length: Option<u64>,
    /// Term length of UDP publications, e.g. 16m.
    #[arg(long, value_parser = parse_size)]
    term_length: Option<u64>,
    /// Let local spies count as subscribers of UDP publications (on by default, so a local
    /// recording, `tern archive --record-local`, lets its publishers send with no network
    /// subscriber; Aeron's own default is false). `--spies-simulate-connection false` turns it
    /// off: then a UDP publication waits for a network subscriber, spied or not.
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    spies_simulate_connection: bool,
}

/// Run the driver until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> Result<ExitCode> {
    let dir = args.aeron_dir.unwrap_or_else(default_aeron_dir);
    let stop = stop_signal()?;
    let driver = MediaDriver::launch(&DriverConfig {
        dir: Some(dir.clone()),
        threading: args.threading,
        ipc_term_length: args.ipc_term_length.map(|length| length as usize),
        term_length: args.term_length.map(|length| length as usize),
        spies_simulate_connection: args.spies_simulate_connection,
        ..DriverConfig::default()
    })
    .with_context(|| format!("start the media driver in {dir}"))?;
    println!(
        "media driver running in {} (spies-simulate-connection {}; Ctrl-C to stop)",
        driver.dir(),
        args.spies_simulate_connection
    );
    while !stop.load(Ordering::SeqCst) {
        if !driver.is_running() {
            anyhow::bail!("the media driver stopped on its own (see the log above)");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("media driver stopped");
    Ok(ExitCode::SUCCESS)
}
