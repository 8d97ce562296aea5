//! `tern describe`: everything about one recording.

use super::settings::DirArg;
use crate::util::{format_bytes, format_time};
use anyhow::Result;
use std::process::ExitCode;
use tern_archive::RecordingId;

/// Arguments of `tern describe`.
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

/// Print the descriptor, positions, segments and time range.
pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(channel) = &args.remote.archive {
        let mut remote = super::remote::connect(&args.remote, channel, &args.driver)?;
        super::remote::describe(&mut remote.client, args.id)?;
        return Ok(ExitCode::SUCCESS);
    }
    let view = args.dir.open()?;
    let recording = view.recording(args.id)?;
    let d = &recording.descriptor;
    let state = if recording.active {
        "active (or interrupted)"
    } else {
        d.state.name()
    };
    let end_line = if recording.active {
        format!(
            "end position      {} (scanned; the recording has not stopped)",
            recording.end_position
        )
    } else {
        format!("stop position     {}", d.stop_position)
    };
    print_descriptor(
        d,
        state,
        &end_line,
        recording.end_position,
        recording.active,
    );
    match view.time_index(&recording) {
        Ok(index) => match (index.first(), index.last()) {
            (Some(first), Some(last)) => println!(
                "  time index        {} entries, {} .. {}",
                index.len(),
                format_time(first.timestamp_ns),
                format_time(last.timestamp_ns)
            ),
            _ => println!("  time index        empty"),
        },
        Err(error) => println!("  time index        unreadable: {error}"),
    }
    match view.key_indexes(d.recording_id) {
        Ok((kinds, _)) if kinds.is_empty() => println!("  key indexes       none"),
        Ok((kinds, checks)) => {
            let names: Vec<String> = kinds.iter().map(ToString::to_string).collect();
            let ok = checks.iter().filter(|check| check.is_ok()).count();
            println!(
                "  key indexes       {} ({ok} of {} files ok; the segment being written has none)",
                names.join(", "),
                checks.len()
            );
            for check in checks {
                println!(
                    "    {}  {}",
                    view.dir().join(check.file_name(d.recording_id)).display(),
                    check.found
                );
            }
        }
        Err(error) => println!("  key indexes       unreadable: {error}"),
    }
    let segments = view.segment_files(d.recording_id);
    println!("  segments          {}", segments.len());
    for segment in segments {
        println!(
            "    {}  base {}  {}",
            segment.path.display(),
            segment.base,
            format_bytes(segment.file_length as f64)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The lines every description of a recording has, for a directory or a remote archive alike:
/// `state` and `end_line` (what is known of its end) as the caller can tell them; `end` where
/// its data ends now.
pub(super) fn print_descriptor(
    d: &tern_archive::RecordingDescriptor,
    state: &str,
    end_line: &str,
    end: i64,
    active: bool,
) {
    let bytes = end - d.start_position;
    println!("recording {}", d.recording_id);
    println!("  state             {state}");
    println!("  channel           {}", d.stripped_channel);
    println!("  original channel  {}", d.original_channel);
    println!("  stream id         {}", d.stream_id);
    println!("  session id        {}", d.session_id);
    println!("  source identity   {}", d.source_identity);
    println!("  start position    {}", d.start_position);
    println!("  {end_line}");
    println!(
        "  recorded          {} ({bytes} bytes)",
        format_bytes(bytes as f64)
    );
    println!("  started           {}", format_time(d.start_timestamp_ns));
    println!(
        "  stopped           {}",
        if active {
            "-".into()
        } else {
            format_time(d.stop_timestamp_ns)
        }
    );
    println!("  initial term id   {}", d.initial_term_id);
    println!("  term length       {}", d.term_length);
    println!("  segment length    {}", d.segment_length);
    println!("  mtu               {}", d.mtu_length);
}
