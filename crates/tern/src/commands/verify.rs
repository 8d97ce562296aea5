//! `tern verify`: check every frame's header and CRC32C.

use super::settings::DirArg;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use tern_archive::CatalogEntry;
use tern_archive::RecordingId;

/// Arguments of `tern verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this recording (default: all).
    id: Option<RecordingId>,
    #[command(flatten)]
    dir: DirArg,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Report the key index files found wrong (and rebuilt, unless that failed) and a summary.
pub fn print_key_indexes(id: RecordingId, checks: &[tern_archive::KeyIndexCheck]) {
    if checks.is_empty() {
        return;
    }
    for check in checks.iter().filter(|check| !check.is_ok()) {
        println!(
            "recording {id}: key index {} {}: {}",
            check.file_name(id),
            if check.rebuilt {
                "rebuilt"
            } else {
                "NOT rebuilt"
            },
            check.found
        );
    }
    let rebuilt = checks.iter().filter(|check| check.rebuilt).count();
    println!(
        "recording {id}: key indexes: {} files, {} ok, {rebuilt} rebuilt",
        checks.len(),
        checks.iter().filter(|check| check.is_ok()).count()
    );
}

/// Verify; exit 1 if anything is damaged.
pub fn run(args: Args) -> Result<ExitCode> {
    let view = args.dir.open()?;
    let mut damaged = 0;
    let ids: Vec<RecordingId> = match args.id {
        Some(id) => {
            view.recording(id)?;
            vec![id]
        }
        None => {
            for entry in view.entries() {
                if let CatalogEntry::Damaged {
                    recording_id,
                    offset,
                    reason,
                } = entry
                {
                    damaged += 1;
                    println!(
                        "recording {recording_id}: catalog record damaged: {} at offset {offset}: {reason}",
                        view.dir().join(tern_archive::CATALOG_FILE).display()
                    );
                }
            }
            view.recordings()?
                .iter()
                .map(|r| r.descriptor.recording_id)
                .collect()
        }
    };
    for id in ids {
        let recording = view.recording(id)?;
        let total = (recording.end_position - recording.descriptor.start_position).max(0) as u64;
        let bar = if args.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "recording {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(id.to_string());
        let report = view.verify(id, |done| bar.set_position(done.max(0) as u64))?;
        bar.finish_and_clear();
        print_key_indexes(id, &report.key_indexes);
        let time_index = &report.time_index;
        if let Some((offset, reason)) = &time_index.problem {
            damaged += 1;
            let last = if time_index.entries == 0 {
                "the recording's start".to_string()
            } else {
                format!("its {} sound entries", time_index.entries)
            };
            println!(
                "recording {id}: time index {} DAMAGED at offset {offset}: {reason}; {}",
                time_index.path.display(),
                if time_index.rebuilt {
                    format!(
                        "rebuilt from {last} ({} entries dropped; the capture times after the \
                         last one kept are lost: a replay from a later time starts at the end, a \
                         paced replay sends what follows it unpaced)",
                        time_index.dropped
                    )
                } else {
                    "NOT rebuilt (the recording is active)".to_string()
                }
            );
        }
        match report.problem {
            None => println!(
                "recording {id}: ok, {} frames, {} bytes",
                report.frames, report.bytes
            ),
            Some(problem) => {
                damaged += 1;
                println!(
                    "recording {id}: DAMAGED after {} good frames: segment {} offset {} (position {}): {}",
                    report.frames,
                    problem.path.display(),
                    problem.file_offset,
                    problem.position,
                    problem.problem
                );
            }
        }
    }
    Ok(if damaged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
