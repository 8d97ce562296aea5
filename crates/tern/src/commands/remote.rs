//! Commands against a running archive over the control protocol (`--archive CHANNEL`), with
//! tern's `ArchiveClient`.

use crate::util::{format_bytes, format_time, DriverArgs, DriverHandle};
use anyhow::{Context, Result};
use std::time::Duration;
use tern_client::{ArchiveClient, ArchiveClientConfig, RecordingDescriptor};

/// How to reach a running archive.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// Use the archive answering on this control channel (aeron:udp?endpoint=HOST:PORT, or
    /// aeron:ipc for one on the same media driver) instead of opening a directory.
    #[arg(long, value_name = "CHANNEL")]
    pub archive: Option<String>,
    /// Control stream id of --archive.
    #[arg(long, default_value_t = 10, requires = "archive")]
    pub control_stream: i32,
    /// Credentials to present to --archive.
    #[arg(long, requires = "archive")]
    pub credentials: Option<String>,
    /// How long to wait for each answer of --archive (seconds).
    #[arg(long, default_value_t = 10.0, value_parser = crate::util::parse_seconds, requires = "archive")]
    pub message_timeout: f64,
}

/// A connected client and the driver under it (kept alive as long as the client).
pub struct Remote {
    /// The client.
    pub client: ArchiveClient,
    /// The media driver it uses (embedded or not); dropped after the client.
    pub _driver: DriverHandle,
}

/// Whether a channel is IPC.
pub fn is_ipc(channel: &str) -> bool {
    channel.starts_with("aeron:ipc")
}

/// Connect to the archive at `channel` through the driver `driver` names (an embedded one with
/// --embedded-driver; otherwise one already running).
pub fn connect(remote: &RemoteArgs, channel: &str, driver: &DriverArgs) -> Result<Remote> {
    let driver = driver.resolve(false)?;
    let response = if is_ipc(channel) {
        "aeron:ipc?term-length=64k"
    } else {
        "aeron:udp?endpoint=localhost:0"
    };
    let mut config = ArchiveClientConfig::new(driver.dir.clone())
        .with_request(channel, remote.control_stream)
        .with_response(response, 20)
        .with_message_timeout(Duration::from_secs_f64(remote.message_timeout))
        .with_client_name("tern cli");
    if let Some(credentials) = &remote.credentials {
        config = config.with_credentials(credentials.as_bytes().to_vec());
    }
    let client = ArchiveClient::connect(config)
        .with_context(|| format!("connect to the archive at {channel}"))?;
    Ok(Remote {
        client,
        _driver: driver,
    })
}

/// The rows `tern list` prints for a remote archive.
pub fn list_rows(
    client: &mut ArchiveClient,
    stream: Option<i32>,
) -> Result<Vec<serde_json::Value>> {
    let recordings = match stream {
        Some(stream) => client.list_recordings_for_uri(0, i32::MAX, "", stream)?,
        None => client.list_recordings(0, i32::MAX)?,
    };
    let mut rows = Vec::new();
    for d in recordings {
        let active = d.stop_position.is_none();
        let end = match d.stop_position {
            Some(stop) => stop,
            None => client
                .recording_position(d.recording_id)?
                .unwrap_or(d.start_position),
        };
        rows.push(serde_json::json!({
            "recording_id": d.recording_id,
            "state": if active { "active" } else { "valid" },
            "session_id": d.session_id,
            "stream_id": d.stream_id,
            "channel": d.stripped_channel,
            "source_identity": d.source_identity,
            "start_position": d.start_position,
            "end_position": end,
            "bytes": end - d.start_position,
            "start_time": format_time(d.start_timestamp.saturating_mul(1_000_000)),
            "stop_time": match d.stop_timestamp {
                Some(ms) if !active => format_time(ms.saturating_mul(1_000_000)),
                _ => "-".to_string(),
            },
        }));
    }
    Ok(rows)
}

/// `tern describe ID --archive`: the descriptor and live positions.
pub fn describe(client: &mut ArchiveClient, recording_id: i64) -> Result<()> {
    let Some(d): Option<RecordingDescriptor> = client.list_recording(recording_id)? else {
        anyhow::bail!("the archive has no recording {recording_id}");
    };
    let active = d.stop_position.is_none();
    let end = match d.stop_position {
        Some(stop) => stop,
        None => client
            .recording_position(recording_id)?
            .unwrap_or(d.start_position),
    };
    println!("recording {}", d.recording_id);
    println!(
        "  state             {}",
        if active { "active" } else { "valid" }
    );
    println!("  channel           {}", d.stripped_channel);
    println!("  original channel  {}", d.original_channel);
    println!("  stream id         {}", d.stream_id);
    println!("  session id        {}", d.session_id);
    println!("  source identity   {}", d.source_identity);
    println!("  start position    {}", d.start_position);
    if active {
        println!("  recorded position {end} (active)");
    } else {
        println!("  stop position     {end}");
    }
    let bytes = end - d.start_position;
    println!(
        "  recorded          {} ({bytes} bytes)",
        format_bytes(bytes as f64)
    );
    println!(
        "  started           {}",
        format_time(d.start_timestamp.saturating_mul(1_000_000))
    );
    println!(
        "  stopped           {}",
        match d.stop_timestamp {
            Some(ms) if !active => format_time(ms.saturating_mul(1_000_000)),
            _ => "-".into(),
        }
    );
    println!("  initial term id   {}", d.initial_term_id);
    println!("  term length       {}", d.term_buffer_length);
    println!("  segment length    {}", d.segment_file_length);
    println!("  mtu               {}", d.mtu_length);
    Ok(())
}
