//! `tern purge`: delete a stopped recording and its files, offline.

use super::settings::DirArg;
use anyhow::{Context, Result};
use std::process::ExitCode;
use tern_archive::RecordingId;

/// Arguments of `tern purge`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The recording id.
    id: RecordingId,
    #[command(flatten)]
    dir: DirArg,
    #[command(flatten)]
    remote: super::remote::RemoteArgs,
    #[command(flatten)]
    driver: crate::util::DriverArgs,
}

/// Purge; the directory must not be in use by a running archive.
pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(channel) = &args.remote.archive {
        let mut remote = super::remote::connect(&args.remote, channel, &args.driver)?;
        let deleted = remote
            .client
            .purge_recording(args.id)
            .with_context(|| format!("purge recording {} at {channel}", args.id))?;
        println!(
            "recording {} purged: {deleted} segment files deleted",
            args.id
        );
        return Ok(ExitCode::SUCCESS);
    }
    let dir = args.dir.path();
    let deleted = tern_archive::purge_recording_offline(&dir, args.id)
        .map_err(super::truncate::explain)
        .with_context(|| format!("purge recording {} in {}", args.id, dir.display()))?;
    println!(
        "recording {} purged: {deleted} segment files deleted",
        args.id
    );
    Ok(ExitCode::SUCCESS)
}
