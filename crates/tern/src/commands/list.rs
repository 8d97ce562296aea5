//! `tern list`: the recordings of an archive directory.

use super::settings::DirArg;
use crate::util::{format_bytes, format_time};
use anyhow::Result;
use std::process::ExitCode;
use tern_archive::{CatalogEntry, RecordState, RecordingDescriptor};

/// Arguments of `tern list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    dir: DirArg,
    /// Print JSON, one object per recording.
    #[arg(long)]
    json: bool,
    /// Only recordings of this stream id.
    #[arg(long)]
    stream: Option<i32>,
    #[command(flatten)]
    remote: super::remote::RemoteArgs,
    #[command(flatten)]
    driver: crate::util::DriverArgs,
}

/// Print the table (or JSON).
pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(channel) = &args.remote.archive {
        let mut remote = super::remote::connect(&args.remote, channel, &args.driver)?;
        let rows = super::remote::list_rows(&mut remote.client, args.stream)?;
        return print_rows(rows, args.json, &format!("the archive at {channel}"));
    }
    let dir = args.dir.path();
    let view = args.dir.open()?;
    let mut rows = Vec::new();
    for entry in view.entries() {
        match entry {
            // Purged: the slot keeps its id, the recording is gone.
            CatalogEntry::Recording(descriptor) if descriptor.state == RecordState::Deleted => {}
            CatalogEntry::Recording(descriptor) => {
                if args.stream.is_some_and(|stream| stream != descriptor.stream_id) {
                    continue;
                }
                let recording = view.recording(descriptor.recording_id)?;
                rows.push(row(descriptor, recording.active, recording.end_position));
            }
            CatalogEntry::Damaged { recording_id, offset, reason } => rows.push(serde_json::json!({
                "recording_id": recording_id.get(),
                "state": "damaged",
                "error": format!("{} at offset {offset}: {reason}", view.dir().join(tern_archive::CATALOG_FILE).display()),
            })),
        }
    }
    print_rows(rows, args.json, &dir.display().to_string())
}

/// The row of one recording (`end`: where its data ends now), in a directory or a remote
/// archive alike.
pub(super) fn row(descriptor: &RecordingDescriptor, active: bool, end: i64) -> serde_json::Value {
    serde_json::json!({
        "recording_id": descriptor.recording_id.get(),
        "state": if active { "active" } else { descriptor.state.name() },
        "session_id": descriptor.session_id,
        "stream_id": descriptor.stream_id,
        "channel": descriptor.stripped_channel,
        "source_identity": descriptor.source_identity,
        "start_position": descriptor.start_position,
        "end_position": end,
        "bytes": end - descriptor.start_position,
        "start_time": format_time(descriptor.start_timestamp_ns),
        "stop_time": if active { "-".to_string() } else { format_time(descriptor.stop_timestamp_ns) },
    })
}

fn print_rows(rows: Vec<serde_json::Value>, json: bool, place: &str) -> Result<ExitCode> {
    if json {
        for row in &rows {
            println!("{row}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no recordings in {place}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>6}  {:<8} {:>11} {:>7} {:>14} {:>14} {:>10}  {:<24} CHANNEL",
        "ID", "STATE", "SESSION", "STREAM", "START", "END", "SIZE", "STARTED"
    );
    for row in rows {
        if row["state"] == "damaged" {
            println!(
                "{:>6}  {:<8} {}",
                row["recording_id"].as_i64().unwrap_or(-1),
                "damaged",
                row["error"].as_str().unwrap_or("")
            );
            continue;
        }
        println!(
            "{:>6}  {:<8} {:>11} {:>7} {:>14} {:>14} {:>10}  {:<24} {}",
            row["recording_id"].as_i64().unwrap_or(-1),
            row["state"].as_str().unwrap_or(""),
            row["session_id"].as_i64().unwrap_or(0),
            row["stream_id"].as_i64().unwrap_or(0),
            row["start_position"].as_i64().unwrap_or(0),
            row["end_position"].as_i64().unwrap_or(0),
            format_bytes(row["bytes"].as_f64().unwrap_or(0.0)),
            row["start_time"].as_str().unwrap_or(""),
            row["channel"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}
