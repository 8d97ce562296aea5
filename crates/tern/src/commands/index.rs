//! `tern index`: index recordings by a key kind after the fact.

use super::settings::DirArg;
use anyhow::{bail, Result};
use std::process::ExitCode;
use tern_archive::RecordingId;

/// Arguments of `tern index`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The recording id (default: every recording).
    id: Option<RecordingId>,
    /// The key kind to index by (repeatable): reserved, cluster-egress, tern-egress,
    /// field:OFFSET:i32 or field:OFFSET:i64. Added to the kinds the recording is indexed by; the index files of every
    /// kind are then checked and the missing or wrong ones built.
    #[arg(long = "key", value_name = "KIND", required = true)]
    kinds: Vec<tern_archive::KeyKind>,
    #[command(flatten)]
    dir: DirArg,
}

/// Build the index files.
pub fn run(args: Args) -> Result<ExitCode> {
    let view = args.dir.open()?;
    if let Some(kind) = args.kinds.iter().find(|kind| !kind.is_indexable()) {
        bail!("key kind {kind} cannot be indexed: a session is a whole recording (replay that recording)");
    }
    let ids: Vec<RecordingId> = match args.id {
        Some(id) => vec![id],
        None => view
            .recordings()?
            .iter()
            .map(|recording| recording.descriptor.recording_id)
            .collect(),
    };
    for id in ids {
        let checks = view.build_key_index(id, &args.kinds)?;
        let built = checks.iter().filter(|check| check.rebuilt).count();
        let failed = checks
            .iter()
            .filter(|check| !check.is_ok() && !check.rebuilt)
            .count();
        println!(
            "recording {id}: {} index files, {built} built, {} already right{}",
            checks.len(),
            checks.len() - built - failed,
            if failed > 0 {
                format!(", {failed} NOT built")
            } else {
                String::new()
            }
        );
        for check in checks
            .iter()
            .filter(|check| !check.is_ok() && !check.rebuilt)
        {
            println!(
                "recording {id}: {} NOT built: {}",
                check.file_name(id),
                check.found
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
