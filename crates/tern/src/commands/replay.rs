//! `tern replay`: a recording to a channel, or its messages printed.

use super::settings::DirArg;
use crate::util::{stop_signal, DriverArgs};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tern_archive::{
    Archive, ArchiveConfig, ArchiveError, ArchiveView, RecordingId, ReplayRequest, ReplayState,
};

/// How printed messages look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrintFormat {
    /// Position, length and the message as text (non-UTF-8 bytes escaped).
    Text,
    /// Position, length and the message in hex.
    Hex,
    /// tern's cluster egress (a member's egress recording): position, then the egress header's
    /// fields (cluster session id, session sequence, egress number, log index, cluster time as
    /// RFC 3339 with nanoseconds), then the payload as text.
    Egress,
    /// As egress, with the payload in hex.
    EgressHex,
    /// Only a count at the end.
    None,
}

/// Print one message as `format` says, tab-separated: its position, its length and its bytes
/// (text with non-printable bytes escaped, or hex); or, for tern's cluster egress, its position,
/// the egress header's fields and the payload (a message without the header: `-` for each field
/// and the whole message as the payload).
pub(crate) fn write_message(
    out: &mut impl Write,
    format: PrintFormat,
    position: impl std::fmt::Display,
    message: &[u8],
) -> std::io::Result<()> {
    match format {
        PrintFormat::Text => writeln!(
            out,
            "{position}\t{}\t{}",
            message.len(),
            message.escape_ascii()
        ),
        PrintFormat::Hex => writeln!(out, "{position}\t{}\t{}", message.len(), hex(message)),
        PrintFormat::Egress | PrintFormat::EgressHex => {
            let header = tern_store::egress_header::decode(message).ok();
            let payload = tern_store::egress_header::payload(message).unwrap_or(message);
            let payload = if format == PrintFormat::Egress {
                payload.escape_ascii().to_string()
            } else {
                hex(payload)
            };
            match header {
                Some(header) => writeln!(
                    out,
                    "{position}\t{}\t{}\t{}\t{}\t{}\t{payload}",
                    header.session_id,
                    header.sequence,
                    header.egress_number,
                    header.log_index,
                    crate::util::format_time_nanos(header.timestamp_ns),
                ),
                None => writeln!(out, "{position}\t-\t-\t-\t-\t-\t{payload}"),
            }
        }
        PrintFormat::None => Ok(()),
    }
}

/// Bytes in lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Arguments of `tern replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The recording id.
    id: RecordingId,
    /// Start at this position (a frame start; default: the recording's start).
    #[arg(long, conflicts_with = "from_time")]
    from: Option<i64>,
    /// Start at the first message captured at or after this time: RFC 3339
    /// (2026-11-24T23:25:28Z), now, or relative to now (-5m, -90s).
    #[arg(long, value_name = "TIME", value_parser = crate::util::parse_time, allow_hyphen_values = true)]
    from_time: Option<i64>,
    /// Replay this many bytes (default: to the end).
    #[arg(long)]
    length: Option<i64>,
    /// Keep going as an active recording grows, until it stops.
    #[arg(long)]
    follow: bool,
    /// Publish the replay on this channel (default: print the messages).
    #[arg(long, value_parser = crate::util::parse_publication_channel)]
    channel: Option<String>,
    /// Stream id of the replay channel.
    #[arg(long, requires = "channel")]
    stream: Option<i32>,
    /// Replay at the original pace times this factor (0.01 to 1000; 2 is twice as fast), from
    /// the capture times in the recording's time index. Default: as fast as possible.
    #[arg(long, value_parser = parse_speed)]
    speed: Option<f64>,
    /// Where message times come from, for --from-time and --speed: capture (the recorder's
    /// capture time), cluster-egress or cluster-egress:UNIT (an Aeron Cluster egress header's timestamp,
    /// milliseconds by default), tern-egress (the nanosecond cluster timestamp of tern's egress
    /// header), or field:OFFSET:UNIT (a little-endian i64 in each message); UNIT is ns, us, ms
    /// or s.
    #[arg(long, default_value = "capture")]
    time_source: tern_archive::TimeSource,
    /// Only the messages of one key (KIND:VALUE): session:ID (the publisher session: a whole
    /// recording), reserved:V (the frame header's reserved value), cluster-egress:ID (an Aeron
    /// Cluster egress header's clusterSessionId), tern-egress:ID (the cluster session id of
    /// tern's egress header), field:OFFSET:i32:V or field:OFFSET:i64:V (a little-endian integer
    /// at a byte offset of the message). Positions stay the recording's.
    #[arg(long, value_name = "KIND:VALUE", allow_hyphen_values = true)]
    key: Option<tern_archive::KeyFilter>,
    /// With --key and --channel: keep the recorded positions, padding the gaps between the key's
    /// messages (costs a pass of the media driver over the recording's whole length); by default
    /// the key's messages go back to back.
    #[arg(long, requires = "key")]
    keep_positions: bool,
    /// Read commands from standard input, one per line: p (pause), r (resume), q (quit),
    /// s POSITION or t TIME (seek; a seek also resumes).
    #[arg(long)]
    controls: bool,
    /// Print a progress line to standard error every second.
    #[arg(long)]
    progress: bool,
    /// With --channel: how long to wait for a subscriber on the replay channel (seconds).
    #[arg(long, default_value_t = 30.0, value_parser = crate::util::parse_seconds)]
    connect_timeout: f64,
    /// How to print messages when not replaying to a channel: text or hex (position, length,
    /// message), egress or egress-hex (tern's cluster egress: position, cluster session id,
    /// session sequence, egress number, log index, cluster time, payload), or none.
    #[arg(long, value_enum, default_value_t = PrintFormat::Text)]
    print: PrintFormat,
    #[command(flatten)]
    dir: DirArg,
    #[command(flatten)]
    driver: DriverArgs,
    #[command(flatten)]
    remote: super::remote::RemoteArgs,
}

/// A replay speed: 0.01 to 1000.
pub(crate) fn parse_speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(speed) if (0.01..=1000.0).contains(&speed) => Ok(speed),
        Ok(_) => Err("must be between 0.01 and 1000".into()),
        Err(_) => Err("not a number (a speed is from 0.01 to 1000)".into()),
    }
}

/// Holds printed messages back to their capture times divided by the speed.
struct Pacer {
    speed: f64,
    source: tern_archive::TimeSource,
    index: tern_archive::TimeIndexReader,
    next_entry: u64,
    group_time: Option<i64>,
    origin: Option<(Instant, i64)>,
}

/// Take the commands typed so far; while paused, wait for resume. Returns how long the replay
/// was paused, or `None` to quit.
fn wait_while_paused(controls: &std::sync::mpsc::Receiver<Control>) -> Next {
    let mut paused_at: Option<Instant> = None;
    loop {
        let control = if paused_at.is_some() {
            controls.recv().ok()
        } else {
            controls.try_recv().ok()
        };
        match control {
            Some(Control::Quit) => return Next::Quit,
            Some(Control::Pause) => {
                paused_at.get_or_insert_with(Instant::now);
            }
            Some(Control::Resume) => {
                if let Some(since) = paused_at.take() {
                    return Next::Go(since.elapsed());
                }
            }
            // A seek also resumes.
            Some(seek @ (Control::SeekPosition(_) | Control::SeekTime(_))) => {
                return Next::Seek(seek)
            }
            // No command waiting (or standard input closed while running): go on.
            None if paused_at.is_none() => return Next::Go(Duration::ZERO),
            // Standard input closed while paused: nothing can resume the replay.
            None => return Next::Quit,
        }
    }
}

impl Pacer {
    /// Move the schedule later by a pause.
    fn shift(&mut self, paused: Duration) {
        if let Some((start, _)) = self.origin.as_mut() {
            *start += paused;
        }
    }

    fn new(
        dir: &std::path::Path,
        recording_id: RecordingId,
        speed: f64,
        source: tern_archive::TimeSource,
    ) -> Result<Self> {
        Ok(Self {
            speed,
            source,
            index: tern_archive::TimeIndexReader::open(dir, recording_id)?,
            next_entry: 0,
            group_time: None,
            origin: None,
        })
    }

    /// Wait until `message`, which ends at `end`, is due.
    fn wait_for(&mut self, end: i64, message: &[u8]) -> Result<()> {
        if self.source.is_in_message() {
            if let Some(time) = self.source.message_time(message) {
                self.group_time = Some(time);
            }
            return self.wait();
        }
        if self.next_entry >= self.index.len() {
            self.index.refresh()?;
        }
        // The message's capture time: the last entry that starts before its end.
        while self.next_entry < self.index.len() {
            let entry = self.index.entry(self.next_entry)?;
            if entry.position >= end {
                break;
            }
            self.group_time = Some(entry.timestamp_ns);
            self.next_entry += 1;
        }
        self.wait()
    }

    fn wait(&mut self) -> Result<()> {
        let Some(time) = self.group_time else {
            return Ok(());
        };
        let (start, first) = *self.origin.get_or_insert((Instant::now(), time));
        let due = start + Duration::from_nanos(((time - first).max(0) as f64 / self.speed) as u64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        Ok(())
    }
}

/// Commands typed on standard input while a replay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Pause,
    Resume,
    Quit,
    /// Go on from this position (a frame start).
    SeekPosition(i64),
    /// Go on from the first message captured at or after this time (epoch ns).
    SeekTime(i64),
}

/// What the print loop does after looking at the commands.
enum Next {
    /// Go on; the replay was paused this long.
    Go(Duration),
    Quit,
    Seek(Control),
}

/// Read `p`, `r`, `q`, `s POSITION` and `t TIME` lines from standard input on a thread of their
/// own.
pub(crate) fn read_controls() -> std::sync::mpsc::Receiver<Control> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            let (word, argument) = line.split_once(' ').unwrap_or((line, ""));
            let control = match (word, argument.trim()) {
                ("p" | "pause", "") => Control::Pause,
                ("r" | "resume", "") => Control::Resume,
                ("q" | "quit", "") => Control::Quit,
                ("s" | "seek", position) if position.parse::<i64>().is_ok() => {
                    Control::SeekPosition(position.parse().unwrap_or_default())
                }
                ("t" | "time", time) => match crate::util::parse_time(time) {
                    Ok(time) => Control::SeekTime(time),
                    Err(error) => {
                        eprintln!("tern: {error}");
                        continue;
                    }
                },
                ("", "") => continue,
                _ => {
                    eprintln!(
                        "tern: unknown command {line:?}: p (pause), r (resume), q (quit), s POSITION, t TIME"
                    );
                    continue;
                }
            };
            if sender.send(control).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Replay or print.
pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(archive) = &args.remote.archive {
        if args.keep_positions {
            anyhow::bail!(
                "--keep-positions is for replays of a directory; a filtered replay through an archive goes back to back"
            );
        }
        let request = super::remote::RemoteReplay {
            id: args.id,
            from: args.from,
            from_time: args.from_time,
            length: args.length,
            follow: args.follow,
            channel: args
                .channel
                .clone()
                .map(|channel| (channel, args.stream.unwrap_or(1))),
            speed: args.speed,
            time_source: args.time_source.to_string(),
            key: args.key.map(|key| key.to_string()).unwrap_or_default(),
            controls: args.controls.then(read_controls),
            progress: args.progress,
            print: args.print,
        };
        return super::remote::replay(&args.remote, archive, &args.driver, request);
    }
    let dir = args.dir.path();
    match &args.channel {
        Some(channel) => to_channel(&args, &dir, channel),
        None => print(&Printing::of(&args), &dir),
    }
}

fn to_channel(args: &Args, dir: &std::path::Path, channel: &str) -> Result<ExitCode> {
    let Some(stream_id) = args.stream else {
        bail!("--channel needs --stream");
    };
    if args.follow {
        bail!(
            "--follow with --channel needs the archive that is recording (this command opens the \
             directory itself, so nothing is being recorded into it); print with --follow instead"
        );
    }
    let stop = stop_signal()?;
    let driver = args.driver.resolve(false)?;
    ArchiveView::open(dir).with_context(|| format!("open the archive in {}", dir.display()))?;
    let mut config = ArchiveConfig::new(dir, driver.dir.clone());
    config.replay_connect_timeout = Duration::from_secs_f64(args.connect_timeout);
    let archive = match Archive::launch(config) {
        Ok(archive) => archive,
        Err(error @ ArchiveError::Store(tern_archive::StoreError::Locked { .. })) => {
            bail!("{error}; a running archive replays on request through its control channel, not from this command")
        }
        Err(error) => {
            return Err(error).with_context(|| format!("open the archive in {}", dir.display()))
        }
    };
    let position = match args.from_time {
        Some(time) => Some(archive.position_at_time_from(args.id, time, args.time_source)?),
        None => args.from,
    };
    let replay_id = archive.start_replay(&ReplayRequest {
        recording_id: args.id,
        position,
        length: args.length,
        follow: false,
        channel: channel.to_string(),
        stream_id,
        speed: args.speed,
        time_source: args.time_source,
        limit_counter_id: None,
        key: args.key,
        keep_positions: args.keep_positions,
    })?;
    let status = archive.replay_status(replay_id)?;
    eprintln!(
        "replaying recording {} on {channel} stream {stream_id} as session {} (waits up to {} s for a subscriber)",
        args.id,
        replay_id.image_session_id(),
        args.connect_timeout
    );
    let controls = args.controls.then(read_controls);
    let mut next_progress = Instant::now() + Duration::from_secs(1);
    while !status.is_finished() {
        let control = controls
            .as_ref()
            .and_then(|controls| controls.try_recv().ok());
        if stop.load(Ordering::SeqCst) || control == Some(Control::Quit) {
            archive.stop_replay(replay_id)?;
            break;
        }
        let outcome = match control {
            Some(Control::Pause) => archive.pause_replay(replay_id),
            Some(Control::Resume) => archive.resume_replay(replay_id),
            Some(Control::SeekPosition(position)) => {
                archive.seek_replay(replay_id, position).map(|session| {
                    eprintln!("seek to {position}: new image, session {session}");
                })
            }
            Some(Control::SeekTime(time)) => archive
                .seek_replay_to_time(replay_id, time, args.time_source)
                .map(|session| {
                    eprintln!("seek: new image, session {session}");
                }),
            _ => Ok(()),
        };
        if let Err(error) = outcome {
            eprintln!("tern: {error}");
        }
        if args.progress && Instant::now() >= next_progress {
            next_progress += Duration::from_secs(1);
            eprintln!(
                "progress: position {} {:?}{}{}",
                status.recording_position(),
                status.state(),
                args.key
                    .map(|key| key_progress(&key, &status.search_stats()))
                    .unwrap_or_default(),
                args.speed
                    .map(|speed| format!(" speed {speed}x"))
                    .unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if driver.embedded.is_some() {
        // The replay publication is closed; an embedded driver must live on long enough to send
        // its tail over UDP (Aeron lingers a closed publication for up to 5 s).
        std::thread::sleep(Duration::from_secs(2));
    }
    match status.state() {
        ReplayState::Failed => bail!(
            "{}",
            status.error().unwrap_or_else(|| "replay failed".into())
        ),
        state => {
            eprintln!(
                "replay {state:?} at position {}",
                status.recording_position()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The part of a progress line about a key filter: the key, and how its messages were found.
fn key_progress(key: &tern_archive::KeyFilter, stats: &tern_archive::SearchStats) -> String {
    format!(
        " key {key} (index: {} segments; scanned: {} segments, {} bytes)",
        stats.index_segments, stats.scanned_segments, stats.scanned_bytes
    )
}

/// What a printed replay of a directory's recording reads and how it prints: `tern replay`
/// without `--channel`, and `tern cluster egress` on a member's egress recording.
#[derive(Debug, Clone)]
pub(crate) struct Printing {
    /// The recording.
    pub id: RecordingId,
    /// Start at this position (default: the recording's start).
    pub from: Option<i64>,
    /// Start at the first message at or after this time (epoch ns, from `time_source`).
    pub from_time: Option<i64>,
    /// Print this many bytes of the recording (default: to the end).
    pub length: Option<i64>,
    /// Keep reading while the recording is active.
    pub follow: bool,
    /// Pace the messages at their original pace times this factor.
    pub speed: Option<f64>,
    /// Where message times come from.
    pub time_source: tern_archive::TimeSource,
    /// Only this key's messages.
    pub key: Option<tern_archive::KeyFilter>,
    /// Read pause, resume, seek and quit commands from standard input.
    pub controls: bool,
    /// A progress line on standard error every second.
    pub progress: bool,
    /// How each message is printed.
    pub print: PrintFormat,
}

impl Printing {
    fn of(args: &Args) -> Self {
        Self {
            id: args.id,
            from: args.from,
            from_time: args.from_time,
            length: args.length,
            follow: args.follow,
            speed: args.speed,
            time_source: args.time_source,
            key: args.key,
            controls: args.controls,
            progress: args.progress,
            print: args.print,
        }
    }
}

/// Print the messages of a recording in `dir` (see [`Printing`]); a count of messages and bytes
/// on standard error at the end.
pub(crate) fn print(args: &Printing, dir: &std::path::Path) -> Result<ExitCode> {
    let stop = if args.follow {
        Some(stop_signal()?)
    } else {
        None
    };
    if args.time_source.is_in_message() {
        ArchiveView::open(dir)
            .with_context(|| format!("open the archive in {}", dir.display()))?
            .check_time_source(args.id, args.time_source)?;
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut messages = 0u64;
    let mut bytes = 0u64;
    let mut from = match args.from_time {
        Some(time) => Some(
            ArchiveView::open(dir)
                .with_context(|| format!("open the archive in {}", dir.display()))?
                .position_at_time_from(args.id, time, args.time_source)?,
        ),
        None => args.from,
    };
    let controls = args.controls.then(read_controls);
    let mut quit = false;
    let mut next_progress = Instant::now() + Duration::from_secs(1);
    let mut pacer = match args.speed {
        Some(speed) => Some(Pacer::new(dir, args.id, speed, args.time_source)?),
        None => None,
    };
    // The length counts from where the replay starts: --from, or the recording's start.
    let mut limit: Option<i64> = None;
    // How the last pass of a filtered print found its messages.
    let mut searched = tern_archive::SearchStats::default();
    let mut broken_pipe = false;
    loop {
        let view = ArchiveView::open(dir)
            .with_context(|| format!("open the archive in {}", dir.display()))?;
        let recording = view.recording(args.id)?;
        let start = from.unwrap_or(recording.descriptor.start_position);
        if limit.is_none() {
            limit = args.length.map(|length| start.saturating_add(length));
        }
        let to = limit.map_or(recording.end_position, |limit| {
            limit.min(recording.end_position)
        });
        let mut write_error = None;
        let mut pace_error = None;
        let mut seek_to: Option<Control> = None;
        let mut visit = |message: &[u8], header: &tern_transport::Header| {
            if let Some(controls) = &controls {
                match wait_while_paused(controls) {
                    Next::Go(paused) => {
                        if let Some(pacer) = pacer.as_mut() {
                            pacer.shift(paused);
                        }
                    }
                    Next::Quit => {
                        quit = true;
                        return false;
                    }
                    Next::Seek(target) => {
                        seek_to = Some(target);
                        return false;
                    }
                }
            }
            if args.progress && Instant::now() >= next_progress {
                next_progress += Duration::from_secs(1);
                let at = pacer
                    .as_ref()
                    .and_then(|pacer| pacer.group_time)
                    .map(crate::util::format_time)
                    .unwrap_or_else(|| "-".into());
                eprintln!(
                    "progress: position {} messages {messages} at {at}{}{}",
                    header.position,
                    args.key
                        .map(|key| key_progress(&key, &searched))
                        .unwrap_or_default(),
                    args.speed
                        .map(|speed| format!(" speed {speed}x"))
                        .unwrap_or_default()
                );
            }
            if let Some(pacer) = pacer.as_mut() {
                if let Err(error) = pacer.wait_for(header.position, message) {
                    pace_error = Some(error);
                    return false;
                }
            }
            messages += 1;
            bytes += message.len() as u64;
            let line = write_message(&mut out, args.print, header.position, message);
            if let Err(error) = line {
                write_error = Some(error);
                return false;
            }
            true
        };
        let reached = match &args.key {
            Some(key) => {
                let read =
                    view.messages_with_key(args.id, Some(start), Some(to), key, &mut visit)?;
                searched = read.stats;
                read.resume
            }
            None => view.messages(args.id, Some(start), Some(to), &mut visit)?,
        };
        if args.progress && Instant::now() >= next_progress {
            next_progress += Duration::from_secs(1);
            eprintln!(
                "progress: position {reached} messages {messages}{}{}",
                args.key
                    .map(|key| key_progress(&key, &searched))
                    .unwrap_or_default(),
                args.speed
                    .map(|speed| format!(" speed {speed}x"))
                    .unwrap_or_default()
            );
        }
        if let Some(error) = pace_error {
            return Err(error);
        }
        if let Some(error) = write_error {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                broken_pipe = true;
                break;
            }
            return Err(error.into());
        }
        out.flush()?;
        from = Some(reached);
        if let Some(target) = seek_to {
            let position = match target {
                Control::SeekTime(time) => {
                    view.position_at_time_from(args.id, time, args.time_source)
                }
                Control::SeekPosition(position) => Ok(position),
                _ => Ok(reached),
            }
            .and_then(|position| {
                tern_archive::check_replay_position(
                    view.dir(),
                    &recording.descriptor,
                    position,
                    recording.end_position,
                )
                .map(|()| position)
                .map_err(ArchiveError::from)
            });
            match position {
                Ok(position) => {
                    from = Some(position);
                    if let Some(speed) = args.speed {
                        pacer = Some(Pacer::new(dir, args.id, speed, args.time_source)?);
                    }
                }
                Err(error) => eprintln!("tern: seek refused: {error}"),
            }
            continue;
        }
        let done = quit
            || !args.follow
            || !recording.active
            || limit.is_some_and(|limit| reached >= limit)
            || stop
                .as_ref()
                .is_some_and(|stop: &std::sync::Arc<AtomicBool>| stop.load(Ordering::SeqCst));
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !broken_pipe {
        eprintln!("{messages} messages, {bytes} bytes");
    }
    Ok(ExitCode::SUCCESS)
}
