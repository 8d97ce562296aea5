//! A small archive for merge tests: it records one live stream in memory (raw frames, as
//! Aeron's archive does) and replays it through exclusive publications placed at the recorded
//! positions (initial term id, term id, term offset, term length, MTU), as tern's replayer
//! does; it answers the control requests a replay-merge makes, the Aeron way.

use super::{error, ok, response, wait_until, ControlServer, ARCHIVE_ID};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tern_protocol::{
    AnyMessage, ControlResponseCode, CursorDescriptor, Message, RecordingDescriptor, TernMessage,
};
use tern_transport::{BackoffIdle, Client, ExclusivePublication, Idle, Image, OfferError};

/// The id of the one recording.
pub const RECORDING_ID: i64 = 0;

const HEADER_LENGTH: usize = 32;
const PADDING_TYPE: u16 = 0;
/// Largest block a replay offers at once.
const BLOCK_LIMIT: usize = 16 * 1024;

fn align(length: usize) -> usize {
    (length + 31) & !31
}

struct Recording {
    image: Image,
    start: i64,
    frames: Vec<u8>,
    stopped: bool,
}

impl Recording {
    fn position(&self) -> i64 {
        self.start + self.frames.len() as i64
    }
}

struct Replay {
    replay_session_id: i64,
    publication: ExclusivePublication,
    position: i64,
    padding_left: usize,
    session_id: i32,
    stream_id: i32,
}

/// What the test can see of the archive while it runs.
#[derive(Default)]
pub struct Observed {
    /// Replays started, by replay session id.
    pub replays_started: Mutex<Vec<i64>>,
    /// The position of each replay request, as sent.
    pub replay_positions: Mutex<Vec<i64>>,
    /// Replays stopped by request.
    pub replays_stopped: Mutex<Vec<i64>>,
    /// The recorded position.
    pub recorded: AtomicI64,
    /// Recording-position requests answered.
    pub position_requests: AtomicI64,
    /// The positions `PositionAtTimeRequest` answers, by (timestamp, time source), as the test
    /// sets them; other times are an ERROR.
    pub times: Mutex<HashMap<(i64, String), i64>>,
    /// The durable cursors `GetCursorRequest` answers: name → (recording id, position).
    pub cursors: Mutex<HashMap<String, (i64, i64)>>,
    /// The tern requests received.
    pub tern_requests: Mutex<Vec<TernMessage>>,
}

/// The archive's thread.
pub struct MiniArchive {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub observed: Arc<Observed>,
}

/// Where the mini archive listens and what it records.
#[derive(Clone)]
pub struct MiniArchiveConfig {
    pub dir: String,
    pub control_channel: String,
    pub control_stream_id: i32,
    pub live_channel: String,
    pub live_stream_id: i32,
}

impl MiniArchive {
    pub fn start(config: MiniArchiveConfig) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let observed = Arc::new(Observed::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let stop = stop.clone();
            let observed = observed.clone();
            std::thread::Builder::new()
                .name("mini-archive".into())
                .spawn(move || {
                    let client = Client::connect(&config.dir).expect("mini archive client");
                    let live = client
                        .add_subscription(&config.live_channel, config.live_stream_id)
                        .expect("recording subscription");
                    let mut server = ControlServer::new(
                        client,
                        &config.control_channel,
                        config.control_stream_id,
                    );
                    let _ = ready_tx.send(());
                    let mut state = State {
                        config,
                        recording: None,
                        replays: Vec::new(),
                        next_replay: 1,
                        observed,
                    };
                    let mut idle = BackoffIdle::new();
                    while !stop.load(Ordering::Acquire) {
                        let mut work = state.record(&live);
                        work += server.poll(|server, control_session_id, message| match message {
                            AnyMessage::Aeron(message) => {
                                state.on_request(server, control_session_id, message)
                            }
                            AnyMessage::Tern(message) => {
                                state.on_tern_request(server, control_session_id, message)
                            }
                        });
                        work += state.replay();
                        idle.idle(work);
                    }
                })
                .expect("spawn the mini archive")
        };
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the mini archive started");
        Self {
            stop,
            thread: Some(thread),
            observed,
        }
    }
}

impl Drop for MiniArchive {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct State {
    config: MiniArchiveConfig,
    recording: Option<Recording>,
    replays: Vec<Replay>,
    next_replay: i64,
    observed: Arc<Observed>,
}

impl State {
    fn record(&mut self, live: &tern_transport::Subscription) -> usize {
        if self.recording.is_none() {
            if let Some(image) = live.images().into_iter().next() {
                self.recording = Some(Recording {
                    start: image.info().join_position,
                    image,
                    frames: Vec::new(),
                    stopped: false,
                });
            }
        }
        let Some(recording) = self.recording.as_mut() else {
            return 0;
        };
        if recording.stopped {
            return 0;
        }
        let frames = &mut recording.frames;
        let start = recording.start;
        let consumed = recording
            .image
            .block_poll(
                |block, position| {
                    assert_eq!(
                        position,
                        start + frames.len() as i64,
                        "blocks arrive in order"
                    );
                    frames.extend_from_slice(block)
                },
                64 * 1024,
            )
            .expect("block poll");
        if consumed == 0 && (recording.image.is_end_of_stream() || recording.image.is_closed()) {
            recording.stopped = true;
        }
        self.observed
            .recorded
            .store(recording.position(), Ordering::Release);
        consumed
    }

    fn descriptor(&self, control_session_id: i64, correlation_id: i64) -> Option<Message> {
        let recording = self.recording.as_ref()?;
        let info = recording.image.info();
        Some(Message::RecordingDescriptor(RecordingDescriptor {
            control_session_id,
            correlation_id,
            recording_id: RECORDING_ID,
            start_timestamp: 0,
            stop_timestamp: -1,
            start_position: recording.start,
            stop_position: if recording.stopped {
                recording.position()
            } else {
                -1
            },
            initial_term_id: info.initial_term_id,
            segment_file_length: 128 * 1024 * 1024,
            term_buffer_length: info.term_length,
            mtu_length: info.mtu_length,
            session_id: info.session_id,
            stream_id: self.config.live_stream_id,
            stripped_channel: self.config.live_channel.clone(),
            original_channel: self.config.live_channel.clone(),
            source_identity: info.source_identity.clone(),
        }))
    }

    fn on_request(
        &mut self,
        server: &mut ControlServer,
        control_session_id: i64,
        message: Message,
    ) {
        let answers = match &message {
            Message::AuthConnectRequest(connect) => {
                vec![ok(
                    control_session_id,
                    connect.correlation_id,
                    control_session_id,
                )]
            }
            Message::ArchiveIdRequest(request) => {
                vec![ok(control_session_id, request.correlation_id, ARCHIVE_ID)]
            }
            Message::ListRecordingRequest(request) => {
                match self
                    .descriptor(control_session_id, request.correlation_id)
                    .filter(|_| request.recording_id == RECORDING_ID)
                {
                    Some(descriptor) => vec![descriptor],
                    None => vec![response(
                        control_session_id,
                        request.correlation_id,
                        request.recording_id,
                        ControlResponseCode::RecordingUnknown,
                    )],
                }
            }
            Message::RecordingPositionRequest(request) => {
                self.observed
                    .position_requests
                    .fetch_add(1, Ordering::AcqRel);
                let position = match &self.recording {
                    Some(recording) if !recording.stopped => recording.position(),
                    _ => -1,
                };
                vec![ok(control_session_id, request.correlation_id, position)]
            }
            Message::ReplayRequest(request) => match self.start_replay(server.client(), request) {
                Ok(replay_session_id) => {
                    vec![ok(
                        control_session_id,
                        request.correlation_id,
                        replay_session_id,
                    )]
                }
                Err(message) => vec![error(
                    control_session_id,
                    request.correlation_id,
                    16,
                    &message,
                )],
            },
            Message::StopReplayRequest(request) => {
                let before = self.replays.len();
                self.replays
                    .retain(|replay| replay.replay_session_id != request.replay_session_id);
                if self.replays.len() < before {
                    self.observed
                        .replays_stopped
                        .lock()
                        .expect("stopped")
                        .push(request.replay_session_id);
                    vec![ok(control_session_id, request.correlation_id, 0)]
                } else {
                    vec![error(
                        control_session_id,
                        request.correlation_id,
                        6,
                        "unknown replay",
                    )]
                }
            }
            _ => Vec::new(),
        };
        for answer in answers {
            server.send(control_session_id, &answer);
        }
    }

    /// Answers the two requests a merge from a time or a cursor makes.
    fn on_tern_request(
        &mut self,
        server: &mut ControlServer,
        control_session_id: i64,
        message: TernMessage,
    ) {
        self.observed
            .tern_requests
            .lock()
            .expect("tern requests")
            .push(message.clone());
        match message {
            TernMessage::PositionAtTimeRequest(request) => {
                let key = (request.timestamp, request.time_source.clone());
                let answer = match self.observed.times.lock().expect("times").get(&key) {
                    Some(position) if request.recording_id == RECORDING_ID => {
                        ok(control_session_id, request.correlation_id, *position)
                    }
                    _ => error(
                        control_session_id,
                        request.correlation_id,
                        0,
                        &format!("no position for {key:?}"),
                    ),
                };
                server.send(control_session_id, &answer);
            }
            TernMessage::GetCursorRequest(request) => {
                let cursor = self
                    .observed
                    .cursors
                    .lock()
                    .expect("cursors")
                    .get(&request.name)
                    .copied();
                match cursor {
                    Some((recording_id, position)) => server.send_tern(
                        control_session_id,
                        &TernMessage::CursorDescriptor(CursorDescriptor {
                            control_session_id,
                            correlation_id: request.correlation_id,
                            recording_id,
                            position,
                            updated_timestamp: 1,
                            name: request.name,
                        }),
                    ),
                    None => server.send(
                        control_session_id,
                        &error(
                            control_session_id,
                            request.correlation_id,
                            0,
                            &format!("unknown cursor: {}", request.name),
                        ),
                    ),
                }
            }
            other => panic!("the merge sent {other:?}"),
        }
    }

    fn start_replay(
        &mut self,
        client: &Client,
        request: &tern_protocol::ReplayRequest,
    ) -> Result<i64, String> {
        self.observed
            .replay_positions
            .lock()
            .expect("replay positions")
            .push(request.position);
        let recording = self.recording.as_ref().ok_or("no recording yet")?;
        let info = recording.image.info();
        let position = if request.position == -1 {
            recording.start
        } else {
            request.position
        };
        if position < recording.start || position > recording.position() || position % 32 != 0 {
            return Err(format!(
                "position {position} outside {}..{}",
                recording.start,
                recording.position()
            ));
        }
        let term_length = i64::from(info.term_length);
        let shift = term_length.trailing_zeros();
        let term_id = info
            .initial_term_id
            .wrapping_add((position >> shift) as i32);
        let term_offset = position & (term_length - 1);
        let counter = self.next_replay;
        self.next_replay += 1;
        let session_id = 0x5e00 + counter as i32;
        let separator = if request.replay_channel.contains('?') {
            '|'
        } else {
            '?'
        };
        let channel = format!(
            "{}{separator}init-term-id={}|term-id={term_id}|term-offset={term_offset}|\
             term-length={}|mtu={}|session-id={session_id}",
            request.replay_channel, info.initial_term_id, info.term_length, info.mtu_length
        );
        let publication = client
            .add_exclusive_publication(&channel, request.replay_stream_id)
            .map_err(|error| error.to_string())?;
        let replay_session_id = (counter << 32) | i64::from(session_id as u32);
        self.replays.push(Replay {
            replay_session_id,
            publication,
            position,
            padding_left: 0,
            session_id,
            stream_id: request.replay_stream_id,
        });
        self.observed
            .replays_started
            .lock()
            .expect("started")
            .push(replay_session_id);
        Ok(replay_session_id)
    }

    /// Offers the next block of each replay, following the recording.
    fn replay(&mut self) -> usize {
        let Some(recording) = self.recording.as_ref() else {
            return 0;
        };
        let mut work = 0;
        let term_length = recording.image.info().term_length as i64;
        // As Aeron's archive does, a replay of a stopped recording ends at its stop position.
        if recording.stopped {
            let end = recording.position();
            self.replays
                .retain(|replay| replay.padding_left > 0 || replay.position < end);
        }
        for replay in &mut self.replays {
            if !replay.publication.is_connected() {
                continue;
            }
            if replay.padding_left > 0 {
                let largest = replay.publication.max_message_length() & !31;
                let payload = (replay.padding_left - HEADER_LENGTH).min(largest);
                match replay.publication.append_padding(payload) {
                    Ok(_) => {
                        replay.padding_left -= HEADER_LENGTH + payload;
                        replay.position += (HEADER_LENGTH + payload) as i64;
                        work += 1;
                    }
                    Err(error) if error.is_retryable() => {}
                    Err(error) => panic!("replay padding: {error}"),
                }
                continue;
            }
            let available = recording.position();
            if replay.position >= available {
                continue;
            }
            let from = (replay.position - recording.start) as usize;
            let frames = &recording.frames;
            let frame_type = u16::from_le_bytes([frames[from + 6], frames[from + 7]]);
            let frame_length =
                i32::from_le_bytes(frames[from..from + 4].try_into().expect("4 bytes")) as usize;
            if frame_type == PADDING_TYPE {
                replay.padding_left = align(frame_length);
                continue;
            }
            // Data frames up to a padding frame, the term's end, or the block limit.
            let term_end = (replay.position / term_length + 1) * term_length;
            let mut end = from;
            while end < frames.len() {
                let length =
                    i32::from_le_bytes(frames[end..end + 4].try_into().expect("4 bytes")) as usize;
                let kind = u16::from_le_bytes([frames[end + 6], frames[end + 7]]);
                let next = end + align(length);
                if kind == PADDING_TYPE
                    || recording.start + next as i64 > term_end
                    || (next - from > BLOCK_LIMIT && end > from)
                {
                    break;
                }
                end = next;
            }
            let mut block = frames[from..end].to_vec();
            let mut at = 0;
            while at < block.len() {
                let length =
                    i32::from_le_bytes(block[at..at + 4].try_into().expect("4 bytes")) as usize;
                block[at + 12..at + 16].copy_from_slice(&replay.session_id.to_le_bytes());
                block[at + 16..at + 20].copy_from_slice(&replay.stream_id.to_le_bytes());
                at += align(length);
            }
            match replay.publication.offer_block(&block) {
                Ok(_) => {
                    replay.position += block.len() as i64;
                    work += 1;
                }
                Err(OfferError::NotConnected) => {}
                Err(error) if error.is_retryable() => {}
                Err(error) => panic!("replay block at {}: {error}", replay.position),
            }
        }
        work
    }
}

/// Waits until the archive recorded at least `position`.
pub fn await_recorded(archive: &MiniArchive, position: i64) {
    wait_until("the recording to grow", Duration::from_secs(20), || {
        archive.observed.recorded.load(Ordering::Acquire) >= position
    });
}
