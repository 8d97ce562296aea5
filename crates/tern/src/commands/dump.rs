//! `tern dump`: the frames of a recording, one line each.

use super::settings::DirArg;
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;
use tern_archive::RecordingId;

/// Arguments of `tern dump`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The recording id.
    id: RecordingId,
    /// Start at this position (a frame start; default: the recording's start).
    #[arg(long)]
    from: Option<i64>,
    /// At most this many frames.
    #[arg(long)]
    count: Option<u64>,
    /// Payload bytes shown per frame, in hex.
    #[arg(long, default_value_t = 16)]
    bytes: usize,
    #[command(flatten)]
    dir: DirArg,
}

/// Print the frames.
pub fn run(args: Args) -> Result<ExitCode> {
    let view = args.dir.open()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut shown = 0u64;
    let mut write_error = None;
    view.frames(args.id, args.from, None, |frame| {
        let header = &frame.header;
        let kind = if header.is_padding() { "PAD " } else { "DATA" };
        let payload = frame.payload();
        let hex: String = payload
            .iter()
            .take(args.bytes)
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let line = writeln!(
            out,
            "{:>14} {kind} len={:<6} flags={:#04x} term={}/{} reserved={} crc={:#010x} {hex}{}",
            frame.position,
            header.frame_length,
            header.flags,
            header.term_id,
            header.term_offset,
            header.reserved_value,
            header.session_id as u32,
            if payload.len() > args.bytes { ".." } else { "" }
        );
        if let Err(error) = line {
            write_error = Some(error);
            return false;
        }
        shown += 1;
        args.count.is_none_or(|count| shown < count)
    })?;
    match write_error {
        Some(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Some(error) => Err(error.into()),
        None => {
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
