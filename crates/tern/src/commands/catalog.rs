//! `tern catalog rebuild`: the way back from a lost or damaged catalog, offline.

use super::settings::DirArg;
use anyhow::{Context, Result};
use std::process::ExitCode;
use tern_archive::RebuiltFrom;

/// Arguments of `tern catalog`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Rebuild catalog.tern from what the old one still holds and from the segment files' frames
    /// (no archive may run on the directory; the old catalog is kept as catalog.tern.old-SECONDS).
    Rebuild {
        #[command(flatten)]
        dir: DirArg,
    },
}

/// Run `tern catalog ...`.
pub fn run(args: Args) -> Result<ExitCode> {
    match args.action {
        Action::Rebuild { dir } => rebuild(&dir.path()),
    }
}

fn rebuild(dir: &std::path::Path) -> Result<ExitCode> {
    if !dir.is_dir() {
        anyhow::bail!("{}: not a directory", dir.display());
    }
    let report = tern_archive::rebuild_catalog(dir)
        .with_context(|| format!("rebuild the catalog of {}", dir.display()))?;
    let (mut kept, mut rebuilt, mut missing) = (0, 0, 0);
    for recording in &report.recordings {
        let descriptor = &recording.descriptor;
        match &recording.from {
            RebuiltFrom::Kept => kept += 1,
            RebuiltFrom::Missing => {
                missing += 1;
                println!(
                    "recording {}: no record and no files: written as deleted",
                    descriptor.recording_id
                );
            }
            RebuiltFrom::Segments { notes } => {
                rebuilt += 1;
                println!(
                    "recording {}: rebuilt from its segment files: stream {} positions {}..{} \
                     term length {} segment length {} initial term id {}",
                    descriptor.recording_id,
                    descriptor.stream_id,
                    descriptor.start_position,
                    descriptor.stop_position,
                    descriptor.term_length,
                    descriptor.segment_length,
                    descriptor.initial_term_id
                );
                for note in notes {
                    println!("  {note}");
                }
            }
        }
    }
    if let Some(old) = &report.old_catalog {
        println!("old catalog kept as {}", old.display());
    }
    println!(
        "catalog rebuilt: {} ({kept} records kept, {rebuilt} rebuilt from segment files, {missing} \
         missing written as deleted); run `tern verify` to check every frame",
        report.catalog.display()
    );
    Ok(ExitCode::SUCCESS)
}
