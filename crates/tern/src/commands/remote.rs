//! Commands against a running archive over the control protocol (`--archive CHANNEL`), with
//! tern's `ArchiveClient`.

use crate::util::{DriverArgs, DriverHandle};
use anyhow::{Context, Result};
use std::time::Duration;
use tern_client::{ArchiveClient, ArchiveClientConfig, RecordingDescriptor, RecordingId, ReplayId};

/// How to reach a running archive.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// Use the archive answering on this control channel (aeron:udp?endpoint=HOST:PORT, or
    /// aeron:ipc for one on the same media driver) instead of opening a directory.
    #[arg(long, value_name = "CHANNEL", value_parser = crate::util::parse_publication_channel)]
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
        Some(stream) => {
            client.list_recordings_for_uri(RecordingId::new(0), i32::MAX, "", stream)?
        }
        None => client.list_recordings(RecordingId::new(0), i32::MAX)?,
    };
    let mut rows = Vec::new();
    for d in recordings {
        let active = d.is_active();
        let end = match active {
            false => d.stop_position,
            true => client
                .recording_position(d.recording_id)?
                .unwrap_or(d.start_position),
        };
        rows.push(super::list::row(&d, active, end));
    }
    Ok(rows)
}

/// `tern describe ID --archive`: the descriptor and live positions.
pub fn describe(client: &mut ArchiveClient, recording_id: RecordingId) -> Result<()> {
    let Some(d): Option<RecordingDescriptor> = client.list_recording(recording_id)? else {
        anyhow::bail!("the archive has no recording {recording_id}");
    };
    let active = d.is_active();
    let end = match active {
        false => d.stop_position,
        true => client
            .recording_position(recording_id)?
            .unwrap_or(d.start_position),
    };
    let state = if active { "active" } else { "valid" };
    let end_line = if active {
        format!("recorded position {end} (active)")
    } else {
        format!("stop position     {end}")
    };
    super::describe::print_descriptor(&d, state, &end_line, end, active);
    Ok(())
}

/// How long a printed replay waits for its image (the archive gives up connecting after its
/// replay connect timeout, 5 s by default).
const FIRST_IMAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// What `tern replay --archive` asks for.
pub struct RemoteReplay {
    /// The recording.
    pub id: RecordingId,
    /// Start position.
    pub from: Option<i64>,
    /// Start time (epoch ns).
    pub from_time: Option<i64>,
    /// Bytes to replay.
    pub length: Option<i64>,
    /// Follow an active recording.
    pub follow: bool,
    /// Publish on this channel and stream instead of printing.
    pub channel: Option<(String, i32)>,
    /// Pacing factor.
    pub speed: Option<f64>,
    /// Time source, in the server's syntax.
    pub time_source: String,
    /// Key filter, in the server's syntax ("" for none).
    pub key: String,
    /// Read p/r/q/s/t lines from standard input.
    pub controls: Option<std::sync::mpsc::Receiver<super::replay::Control>>,
    /// Print a progress line every second.
    pub progress: bool,
    /// How to print messages.
    pub print: super::replay::PrintFormat,
}

fn forward_control(
    client: &mut ArchiveClient,
    replay_id: ReplayId,
    control: super::replay::Control,
    time_source: &str,
) -> Result<Option<i32>> {
    use super::replay::Control;
    Ok(match control {
        Control::Pause => {
            client.pause_replay(replay_id)?;
            None
        }
        Control::Resume => {
            client.resume_replay(replay_id)?;
            None
        }
        Control::SeekPosition(position) => Some(client.seek_replay(replay_id, position)?),
        Control::SeekTime(time) => {
            Some(client.seek_replay_to_time(replay_id, time, time_source)?)
        }
        Control::Quit => None,
    })
}

/// `tern replay ID --archive CHANNEL`: ask the archive for the replay; print it here, or let the
/// archive publish it on `--channel` (forwarding `--controls` while standard input is open).
pub fn replay(
    remote: &RemoteArgs,
    archive: &str,
    driver: &DriverArgs,
    request: RemoteReplay,
) -> Result<std::process::ExitCode> {
    use super::replay::Control;
    use std::io::Write;
    use tern_client::{ReplayLength, ReplayStart, TernReplay};
    use tern_transport::Idle;
    let stop = crate::util::stop_signal()?;
    let mut connection = connect(remote, archive, driver)?;
    let client = &mut connection.client;
    let start = match (request.from_time, request.from) {
        (Some(time), _) => ReplayStart::Time(time),
        (None, Some(position)) => ReplayStart::Position(position),
        (None, None) => ReplayStart::RecordingStart,
    };
    let length = match (request.length, request.follow) {
        (Some(bytes), _) => ReplayLength::Bytes(bytes),
        (None, true) => ReplayLength::Follow,
        (None, false) => ReplayLength::ToCurrentEnd,
    };
    let build = |channel: &str, stream: i32| {
        let mut replay = TernReplay::new(request.id, channel, stream)
            .with_start(start.clone())
            .with_length(length)
            .with_time_source(request.time_source.clone())
            .with_key_filter(request.key.clone());
        if let Some(speed) = request.speed {
            replay = replay.with_speed(speed);
        }
        replay
    };
    if let Some((channel, stream)) = &request.channel {
        let replay_id = client
            .tern_replay(&build(channel, *stream))
            .with_context(|| format!("replay recording {} at {archive}", request.id))?;
        println!(
            "replay {replay_id} of recording {} on {channel} stream {stream} (image session {})",
            request.id,
            replay_id.image_session_id()
        );
        let Some(controls) = &request.controls else {
            return Ok(std::process::ExitCode::SUCCESS);
        };
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            match controls.recv_timeout(Duration::from_millis(100)) {
                Ok(Control::Quit) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(control) => {
                    match forward_control(client, replay_id, control, &request.time_source) {
                        Ok(Some(session)) => println!("seek: now on image session {session}"),
                        Ok(None) => {}
                        Err(error) => eprintln!("tern: {error:#}"),
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    client.poll()?;
                }
            }
        }
        client.stop_replay(replay_id).ok();
        return Ok(std::process::ExitCode::SUCCESS);
    }

    // Printing: subscribe here first (a wildcard UDP port is resolved), then ask for the replay.
    let (channel, stream) = if is_ipc(archive) {
        (
            "aeron:ipc".to_string(),
            0x5EED_0000 | (std::process::id() as i32 & 0xFFFF),
        )
    } else {
        ("aeron:udp?endpoint=localhost:0".to_string(), 0x5EED_0000)
    };
    let subscription = client.transport().add_subscription(&channel, stream)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let channel = loop {
        if let Some(resolved) = subscription.try_resolve_channel_endpoint_port()? {
            break resolved;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the replay subscription's port was not bound"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let replay_id = client
        .tern_replay(&build(&channel, stream))
        .with_context(|| format!("replay recording {} at {archive}", request.id))?;
    let mut session = replay_id.image_session_id();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut assembler = tern_transport::FragmentAssembler::new();
    let mut messages = 0u64;
    let mut bytes = 0u64;
    let mut position = 0i64;
    let mut idle = tern_transport::BackoffIdle::new();
    let mut next_progress = std::time::Instant::now() + Duration::from_secs(1);
    let mut seen_image = false;
    let mut first_image_deadline = std::time::Instant::now() + FIRST_IMAGE_TIMEOUT;
    let mut write_error = None;
    loop {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            client.stop_replay(replay_id).ok();
            break;
        }
        if let Some(controls) = &request.controls {
            while let Ok(control) = controls.try_recv() {
                if control == Control::Quit {
                    client.stop_replay(replay_id).ok();
                    out.flush()?;
                    eprintln!("replayed {messages} messages, {bytes} bytes");
                    return Ok(std::process::ExitCode::SUCCESS);
                }
                match forward_control(client, replay_id, control, &request.time_source) {
                    Ok(Some(new_session)) => {
                        session = new_session;
                        seen_image = false;
                        first_image_deadline = std::time::Instant::now() + FIRST_IMAGE_TIMEOUT;
                    }
                    Ok(None) => {}
                    Err(error) => eprintln!("tern: {error:#}"),
                }
            }
        }
        let Some(image) = subscription.image_by_session_id(session) else {
            if seen_image {
                break; // the replay's image went: it ended
            }
            // An image that came and went between two looks (an empty replay) ended it too.
            let ended = subscription.take_image_events().iter().any(|event| {
                matches!(event, tern_transport::ImageEvent::Unavailable { session_id, .. }
                    if *session_id == session)
            });
            if ended {
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < first_image_deadline,
                "the replay's image did not reach this process within {} s (the archive could not connect to {channel})",
                FIRST_IMAGE_TIMEOUT.as_secs()
            );
            client.poll()?;
            idle.idle(0);
            continue;
        };
        seen_image = true;
        let work = image.poll(
            |fragment, header| {
                assembler.on_fragment(fragment, header, &mut |message, header| {
                    messages += 1;
                    bytes += message.len() as u64;
                    position = header.position;
                    let line = super::replay::write_message(
                        &mut out,
                        request.print,
                        header.position,
                        message,
                    );
                    if let Err(error) = line {
                        write_error.get_or_insert(error);
                    }
                })
            },
            256,
        )?;
        if let Some(error) = write_error.take() {
            client.stop_replay(replay_id).ok();
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(std::process::ExitCode::SUCCESS);
            }
            return Err(error.into());
        }
        if request.progress && std::time::Instant::now() >= next_progress {
            next_progress += Duration::from_secs(1);
            eprintln!("progress: position {position} messages {messages}");
        }
        if work == 0 && image.is_end_of_stream() {
            break;
        }
        if work == 0 {
            client.poll()?;
        }
        idle.idle(work);
    }
    out.flush()?;
    eprintln!("replayed {messages} messages, {bytes} bytes");
    Ok(std::process::ExitCode::SUCCESS)
}
