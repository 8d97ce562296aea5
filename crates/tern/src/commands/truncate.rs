//! `tern truncate`: cut a stopped recording at a position, offline.

use super::settings::DirArg;
use anyhow::{Context, Result};
use std::process::ExitCode;
use tern_archive::ArchiveError;
use tern_archive::RecordingId;

/// Arguments of `tern truncate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The recording id.
    id: RecordingId,
    /// The new stop position: a frame start (or the stop position) of the recording.
    position: i64,
    #[command(flatten)]
    dir: DirArg,
    #[command(flatten)]
    remote: super::remote::RemoteArgs,
    #[command(flatten)]
    driver: crate::util::DriverArgs,
}

/// Hint for an error of an offline change to an archive directory.
pub(crate) fn explain(error: ArchiveError) -> anyhow::Error {
    let hint = match &error {
        ArchiveError::Active { .. } => {
            Some("if no archive records it, it was interrupted: start an archive on the directory once to recover it")
        }
        ArchiveError::Store(tern_archive::StoreError::Locked { .. }) => {
            Some("stop the archive first, or ask the running archive with --archive CHANNEL")
        }
        _ => None,
    };
    match hint {
        Some(hint) => anyhow::anyhow!("{error}; {hint}"),
        None => anyhow::Error::new(error),
    }
}

/// Truncate; the directory must not be in use by a running archive.
pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(channel) = &args.remote.archive {
        let mut remote = super::remote::connect(&args.remote, channel, &args.driver)?;
        let deleted = remote
            .client
            .truncate_recording(args.id, args.position)
            .with_context(|| format!("truncate recording {} at {channel}", args.id))?;
        println!(
            "recording {} truncated at position {}: {deleted} segment files deleted",
            args.id, args.position
        );
        return Ok(ExitCode::SUCCESS);
    }
    let dir = args.dir.path();
    let deleted = tern_archive::truncate_recording_offline(&dir, args.id, args.position)
        .map_err(explain)
        .with_context(|| format!("truncate recording {} in {}", args.id, dir.display()))?;
    println!(
        "recording {} truncated at position {}: {deleted} segment files deleted",
        args.id, args.position
    );
    Ok(ExitCode::SUCCESS)
}
