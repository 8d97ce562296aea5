//! [`ReplayMerge`]: catch up on a recording with a replay, then go on with the live stream, with
//! no gap and no duplicate, over IPC and UDP alike.
//!
//! Aeron's `ReplayMerge` joins the replay and the live stream in one multi-destination UDP
//! subscription and lets the image do the merge; that works only over UDP. tern merges by
//! position instead: the replay's positions are the recording's, which are the live stream's,
//! so the client itself can tell which live fragments the replay already delivered. The
//! decisions are in [`MergeDecider`] (pure); this module does the I/O around it. The algorithm
//! and its trade-offs are described in `docs/client.md`.

mod decider;

pub use decider::{aligned_frame_length, MergeDecider, MergePhase, Misaligned};
pub use tern_transport::StreamAssembler;

use crate::client::ArchiveClient;
use crate::error::ClientError;
use crate::types::{RecordingDescriptor, NULL_VALUE, REPLAY_FOLLOW};
use crate::uri::{with_param, ChannelUri};
use std::time::{Duration, Instant};
use tern_protocol::{Message, RecordingPositionRequest, StopReplayRequest};
use tern_store::{RecordingId, ReplayId};
use tern_transport::{BackoffIdle, Header, Idle, Image, Subscription};

/// How long a merge may go without progress before it fails (Aeron's is 5 s).
pub const DEFAULT_MERGE_PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);

/// First wait between two questions about the recorded position (Aeron's 8 ms); it doubles up
/// to [`MAX_POSITION_BACKOFF`].
const INITIAL_POSITION_BACKOFF: Duration = Duration::from_millis(8);
/// Longest wait between two questions about the recorded position.
const MAX_POSITION_BACKOFF: Duration = Duration::from_millis(250);
/// How often the control session is polled when nothing else asks the archive (keep-alives).
const ARCHIVE_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Where a late joiner starts.
///
/// [`MergeStart::Time`] and [`MergeStart::Cursor`] use tern's extension schema (id 1101): the
/// merge asks the archive for the position (`PositionAtTimeRequest`, `GetCursorRequest`) when
/// it starts, then goes on as for [`MergeStart::Position`]. Only a tern archive answers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeStart {
    /// From a stream position of the recording (a frame boundary; at a message's start to get
    /// that message whole).
    Position(i64),
    /// From the recording's start position.
    RecordingStart,
    /// From the first message whose time (read with [`ReplayMergeConfig::time_source`]) is at
    /// or after this many nanoseconds since the epoch, as
    /// [`ArchiveClient::position_at_time`] finds it: the recording's start for a time before
    /// its first message, its end for a time after its last.
    Time(i64),
    /// From the position of the named durable cursor ([`ArchiveClient::cursor`]); it must point
    /// into the merged recording, else the merge fails to start ([`ClientError::Merge`]).
    Cursor(String),
}

/// Settings of a [`ReplayMerge`].
#[derive(Debug, Clone)]
pub struct ReplayMergeConfig {
    /// The recording of the live stream.
    pub recording_id: RecordingId,
    /// Where to start.
    pub start: MergeStart,
    /// Channel the archive replays to. A UDP endpoint with port 0 is resolved before the replay
    /// is asked for; the channel should then be the merge's own (the subscription takes every
    /// session on it). Otherwise the subscription is limited to the replay's session.
    pub replay_channel: String,
    /// Stream id of the replay.
    pub replay_stream_id: i32,
    /// Channel of the live stream; `None`: the recording's original channel. The recorded
    /// session's id is added (`session-id=`), so only that publication is joined.
    pub live_channel: Option<String>,
    /// Stream id of the live stream; `None`: the recording's.
    pub live_stream_id: Option<i32>,
    /// Add the live subscription once the replay is this close to the recorded position, in
    /// bytes; `None`: a quarter of the recording's term length, at most 32 MiB (Aeron's).
    /// Keep it well under the live stream's term window: the live image is not read until the
    /// replay catches up with it, and over IPC that holds the publisher back.
    pub live_add_window: Option<i64>,
    /// How long the merge may go without progress before it fails.
    pub progress_timeout: Duration,
    /// Where a message's time comes from for [`MergeStart::Time`], in the archive's syntax
    /// (as [`TernReplay::time_source`](crate::TernReplay::time_source)); `""` (default): when
    /// the archive captured it.
    pub time_source: String,
}

impl ReplayMergeConfig {
    /// A merge of `recording_id` from `start`, replayed to `replay_channel` and
    /// `replay_stream_id`, joining the recording's own channel and stream.
    pub fn new(
        recording_id: RecordingId,
        start: MergeStart,
        replay_channel: impl Into<String>,
        replay_stream_id: i32,
    ) -> Self {
        Self {
            recording_id,
            start,
            replay_channel: replay_channel.into(),
            replay_stream_id,
            live_channel: None,
            live_stream_id: None,
            live_add_window: None,
            progress_timeout: DEFAULT_MERGE_PROGRESS_TIMEOUT,
            time_source: String::new(),
        }
    }

    /// Joins this live channel and stream instead of the recording's.
    pub fn with_live(mut self, channel: impl Into<String>, stream_id: i32) -> Self {
        self.live_channel = Some(channel.into());
        self.live_stream_id = Some(stream_id);
        self
    }

    /// Sets the time source of [`MergeStart::Time`].
    pub fn with_time_source(mut self, time_source: impl Into<String>) -> Self {
        self.time_source = time_source.into();
        self
    }

    /// Sets the live-add window in bytes.
    pub fn with_live_add_window(mut self, window: i64) -> Self {
        self.live_add_window = Some(window);
        self
    }
}

/// A replay of a recording that becomes the live stream: [`ReplayMerge::poll`] delivers whole
/// messages from the start position on, first from the replay, then, once the replay has
/// caught up with where the live image joined, from the live image, each message once and in
/// order.
///
/// It borrows the archive client for its life (it asks the archive for the recorded position
/// and stops the replay); [`ReplayMerge::client`] lends it out.
///
/// Headers passed to the handler carry the live stream's session and stream ids, whichever
/// image the message came from; their positions are stream positions (the end of the message).
pub struct ReplayMerge<'a> {
    client: &'a mut ArchiveClient,
    recording: RecordingDescriptor,
    live_channel: String,
    live_stream_id: i32,
    live_session_id: i32,
    replay_session_id: ReplayId,
    replay_active: bool,
    replay_subscription: Option<Subscription>,
    replay_image: Option<Image>,
    live_subscription: Option<Subscription>,
    live_image: Option<Image>,
    decider: MergeDecider,
    assembler: StreamAssembler,
    position_request: Option<i64>,
    stop_request: Option<i64>,
    next_position_request: Instant,
    position_backoff: Duration,
    last_archive_poll: Instant,
    progress_timeout: Duration,
    last_progress: Instant,
    last_delivered: Option<i64>,
    last_phase: MergePhase,
    failure: Option<String>,
}

impl std::fmt::Debug for ReplayMerge<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ReplayMerge")
            .field("recording_id", &self.recording.recording_id)
            .field("replay_session_id", &self.replay_session_id)
            .field("live_channel", &self.live_channel)
            .field("live_stream_id", &self.live_stream_id)
            .field("decider", &self.decider)
            .field("failure", &self.failure)
            .finish()
    }
}

impl<'a> ReplayMerge<'a> {
    /// Starts the merge: describes the recording, resolves a start time or cursor to a
    /// position, subscribes to the replay channel, asks the archive to replay from the start
    /// position, following the live recording.
    ///
    /// # Errors
    /// [`ClientError::Merge`] for an unknown recording or a cursor in another recording; the
    /// archive's errors of the position or cursor request (an unknown cursor, a time source it
    /// cannot parse) and of the replay request (`INVALID_POSITION`, say); transport errors of
    /// the subscription.
    pub fn new(
        client: &'a mut ArchiveClient,
        config: ReplayMergeConfig,
    ) -> Result<Self, ClientError> {
        let recording = client.list_recording(config.recording_id)?.ok_or_else(|| {
            ClientError::Merge(format!("recording {} is unknown", config.recording_id))
        })?;
        let start = match &config.start {
            MergeStart::Position(position) => *position,
            MergeStart::RecordingStart => recording.start_position,
            MergeStart::Time(epoch_ns) => {
                client.position_at_time(recording.recording_id, *epoch_ns, &config.time_source)?
            }
            MergeStart::Cursor(name) => {
                let cursor = client.cursor(name)?;
                if cursor.recording_id != recording.recording_id {
                    return Err(ClientError::Merge(format!(
                        "cursor {name:?} points into recording {}, not the merged recording {}",
                        cursor.recording_id, recording.recording_id
                    )));
                }
                cursor.position
            }
        };
        tracing::debug!(
            "replay-merge of recording {}: start {:?} is position {start}",
            recording.recording_id,
            config.start
        );
        let live_stream_id = config.live_stream_id.unwrap_or(recording.stream_id);
        let live_channel = with_param(
            config
                .live_channel
                .as_deref()
                .unwrap_or(&recording.original_channel),
            "session-id",
            recording.session_id.to_string(),
        );
        let live_add_window = config
            .live_add_window
            .unwrap_or_else(|| MergeDecider::default_live_add_window(recording.term_length));

        let replay_uri = ChannelUri::parse(&config.replay_channel);
        let wildcard_port = !replay_uri.is_ipc()
            && replay_uri
                .get("endpoint")
                .is_some_and(|endpoint| endpoint.ends_with(":0"));
        let (replay_session_id, replay_subscription) = if wildcard_port {
            // The port must be known before the archive can send there: subscribe first.
            let subscription = client
                .transport()
                .add_subscription(&config.replay_channel, config.replay_stream_id)?;
            let resolved = resolve_endpoint(&subscription, config.progress_timeout)?;
            let replay_session_id = client.replay(
                recording.recording_id,
                start,
                REPLAY_FOLLOW,
                &resolved,
                config.replay_stream_id,
            )?;
            (replay_session_id, subscription)
        } else {
            let replay_session_id = client.replay(
                recording.recording_id,
                start,
                REPLAY_FOLLOW,
                &config.replay_channel,
                config.replay_stream_id,
            )?;
            let channel = with_param(
                &config.replay_channel,
                "session-id",
                replay_session_id.image_session_id().to_string(),
            );
            let subscription = match client
                .transport()
                .add_subscription(&channel, config.replay_stream_id)
            {
                Ok(subscription) => subscription,
                Err(error) => {
                    stop_replay_quietly(client, replay_session_id);
                    return Err(error.into());
                }
            };
            (replay_session_id, subscription)
        };
        let now = Instant::now();
        Ok(Self {
            client,
            live_session_id: recording.session_id,
            recording,
            live_channel,
            live_stream_id,
            replay_session_id,
            replay_active: true,
            replay_subscription: Some(replay_subscription),
            replay_image: None,
            live_subscription: None,
            live_image: None,
            decider: MergeDecider::new(live_add_window),
            assembler: StreamAssembler::new(),
            position_request: None,
            stop_request: None,
            next_position_request: now,
            position_backoff: INITIAL_POSITION_BACKOFF,
            last_archive_poll: now,
            progress_timeout: config.progress_timeout,
            last_progress: now,
            last_delivered: None,
            last_phase: MergePhase::Replaying,
            failure: None,
        })
    }

    /// Does the merge's work and delivers up to `fragment_limit` fragments' worth of whole
    /// messages to `handler`. Returns the number of fragments read (skipped live fragments
    /// included), so it can drive an idle strategy.
    ///
    /// # Errors
    /// [`ClientError::Merge`] if the merge cannot go on (the replay ended before the merge
    /// while the recording is still active, frames that do not line up), a
    /// [`ClientError::Timeout`] if it made no progress within the progress timeout, the
    /// archive's errors. After an error the merge has failed: every later call returns
    /// [`ClientError::Merge`] with the first error's text.
    pub fn poll(
        &mut self,
        mut handler: impl FnMut(&[u8], &Header),
        fragment_limit: usize,
    ) -> Result<usize, ClientError> {
        if let Some(reason) = &self.failure {
            return Err(ClientError::Merge(format!("the merge failed: {reason}")));
        }
        match self.do_poll(&mut handler, fragment_limit.max(1)) {
            Ok(work) => Ok(work),
            Err(error) => {
                self.failure = Some(error.to_string());
                if self.replay_active {
                    stop_replay_quietly(self.client, self.replay_session_id);
                    self.replay_active = false;
                }
                Err(error)
            }
        }
    }

    fn do_poll(
        &mut self,
        handler: &mut dyn FnMut(&[u8], &Header),
        fragment_limit: usize,
    ) -> Result<usize, ClientError> {
        let mut work = self.check_archive()?;
        let mut fragments = 0;
        let (live_session_id, live_stream_id) = (self.live_session_id, self.live_stream_id);
        let rewrite = |header: &Header| Header {
            session_id: live_session_id,
            stream_id: live_stream_id,
            ..*header
        };

        if self.decider.polls_replay() {
            if self.replay_image.is_none() {
                let image = self.replay_subscription.as_ref().and_then(|subscription| {
                    subscription.image_by_session_id(self.replay_session_id.image_session_id())
                });
                if let Some(image) = image {
                    self.decider.on_replay_image(image.info().join_position);
                    self.replay_image = Some(image);
                    work += 1;
                }
            }
            if let Some(image) = self.replay_image.clone() {
                let assembler = &mut self.assembler;
                fragments += image.poll(
                    |fragment, header| {
                        assembler.on_fragment(fragment, &rewrite(header), &mut *handler)
                    },
                    fragment_limit,
                )?;
                self.decider.on_replay_progress(image.position());
                if fragments == 0 && (image.is_end_of_stream() || image.is_closed()) {
                    self.on_replay_end()?;
                }
            }
            if self.decider.phase() == MergePhase::AwaitingLive && self.live_image.is_none() {
                let image = self
                    .live_subscription
                    .as_ref()
                    .and_then(|subscription| subscription.image_by_session_id(live_session_id));
                if let Some(image) = image {
                    self.decider.on_live_image(image.info().join_position);
                    self.live_image = Some(image);
                    work += 1;
                }
            }
            if self.decider.switch_due() {
                self.switch_to_live()?;
                work += 1;
            }
        }

        if self.decider.polls_live() && fragments < fragment_limit {
            if let Some(image) = self.live_image.clone() {
                let mut misaligned = None;
                let decider = &mut self.decider;
                let assembler = &mut self.assembler;
                let live = image.poll(
                    |fragment, header| match decider
                        .accept_live(header.position, header.frame_length)
                    {
                        Ok(true) => {
                            assembler.on_fragment(fragment, &rewrite(header), &mut *handler)
                        }
                        Ok(false) => {}
                        Err(error) => {
                            misaligned.get_or_insert(error);
                        }
                    },
                    fragment_limit - fragments,
                )?;
                fragments += live;
                if let Some(error) = misaligned {
                    return Err(ClientError::Merge(format!(
                        "a live frame at {}..{} crosses the delivered position {}: the live \
                         stream and the recording do not line up",
                        error.start, error.end, error.delivered
                    )));
                }
                self.decider.on_live_progress(image.position());
                if live == 0 && (image.is_end_of_stream() || image.is_closed()) {
                    self.decider.on_end();
                    work += 1;
                }
            }
        }

        self.check_progress()?;
        Ok(work + fragments)
    }

    /// Asks the archive for the recorded position now and then, takes its answers, and keeps
    /// the control session polled. Once merged (or ended) the archive is not needed any more:
    /// its errors are logged, not raised, so a live stream goes on without it.
    fn check_archive(&mut self) -> Result<usize, ClientError> {
        let result = self.check_archive_inner();
        match result {
            Err(error)
                if matches!(self.decider.phase(), MergePhase::Merged | MergePhase::Ended) =>
            {
                tracing::debug!(
                    "replay-merge of recording {}: archive error after the merge: {error}",
                    self.recording.recording_id
                );
                self.stopped();
                Ok(0)
            }
            other => other,
        }
    }

    fn check_archive_inner(&mut self) -> Result<usize, ClientError> {
        let now = Instant::now();
        let mut work = 0;
        if let Some(correlation_id) = self.stop_request {
            match self.client.poll_response(correlation_id) {
                Ok(Some(_)) => self.stopped(),
                Ok(None) => {}
                // The replay may have ended on its own meanwhile (UNKNOWN_REPLAY): nothing lost.
                Err(ClientError::Archive { message, .. }) => {
                    tracing::debug!("stopping the merge's replay: {message}");
                    self.stopped();
                }
                Err(error) => return Err(error),
            }
            self.last_archive_poll = now;
        }
        if let Some(correlation_id) = self.position_request {
            if let Some(response) = self.client.poll_response(correlation_id)? {
                self.position_request = None;
                let recorded = (response.relevant_id != NULL_VALUE).then_some(response.relevant_id);
                if self.decider.on_recording_position(recorded) {
                    self.add_live()?;
                }
                self.next_position_request = now + self.position_backoff;
                self.position_backoff = (self.position_backoff * 2).min(MAX_POSITION_BACKOFF);
                work += 1;
            }
            self.last_archive_poll = now;
        } else if self.decider.wants_recording_position()
            && self.replay_image.is_some()
            && now >= self.next_position_request
        {
            let recording_id = self.recording.recording_id;
            self.position_request = Some(self.client.send_request(
                "RecordingPositionRequest",
                |control_session_id, correlation_id, buffer| {
                    Message::RecordingPositionRequest(RecordingPositionRequest {
                        control_session_id,
                        correlation_id,
                        recording_id: recording_id.get(),
                    })
                    .encode(buffer)
                },
            )?);
            self.last_archive_poll = now;
            work += 1;
        } else if now.duration_since(self.last_archive_poll) >= ARCHIVE_POLL_INTERVAL {
            self.last_archive_poll = now;
            work += self.client.poll()?;
        }
        Ok(work)
    }

    fn add_live(&mut self) -> Result<(), ClientError> {
        let subscription = self
            .client
            .transport()
            .add_subscription(&self.live_channel, self.live_stream_id)?;
        tracing::debug!(
            "replay-merge of recording {}: live subscription {} stream {} added at delivered \
             position {:?}",
            self.recording.recording_id,
            self.live_channel,
            self.live_stream_id,
            self.decider.delivered()
        );
        self.live_subscription = Some(subscription);
        Ok(())
    }

    fn switch_to_live(&mut self) -> Result<(), ClientError> {
        let replay_session_id = self.replay_session_id;
        let correlation_id = self.client.send_request(
            "StopReplayRequest",
            |control_session_id, correlation_id, buffer| {
                Message::StopReplayRequest(StopReplayRequest {
                    control_session_id,
                    correlation_id,
                    replay_session_id: replay_session_id.get(),
                })
                .encode(buffer)
            },
        )?;
        self.stop_request = Some(correlation_id);
        self.replay_active = false;
        self.replay_image = None;
        // The replay's subscription stays until the stop is answered: the archive stops the
        // replay as asked, rather than finding its subscriber gone first (a failed replay).
        self.decider.on_switch();
        tracing::debug!(
            "replay-merge of recording {}: merged at position {:?} (live joined at {:?})",
            self.recording.recording_id,
            self.decider.delivered(),
            self.decider.live_join()
        );
        Ok(())
    }

    /// The replay's stop was answered (or need not be any more): its subscription goes.
    fn stopped(&mut self) {
        self.stop_request = None;
        self.replay_subscription = None;
    }

    /// The replay's image ended before the merge: fine if the recording stopped (the stream is
    /// over and all of it was delivered), a failure otherwise.
    fn on_replay_end(&mut self) -> Result<(), ClientError> {
        self.replay_active = false;
        let recorded = self
            .client
            .recording_position(self.recording.recording_id)?;
        if recorded.is_none() {
            self.decider.on_end();
            self.replay_image = None;
            self.replay_subscription = None;
            return Ok(());
        }
        Err(ClientError::Merge(format!(
            "the replay of recording {} ended at {:?} before the merge, while the recording is \
             active",
            self.recording.recording_id,
            self.decider.delivered()
        )))
    }

    fn check_progress(&mut self) -> Result<(), ClientError> {
        let now = Instant::now();
        let phase = self.decider.phase();
        let delivered = self.decider.delivered();
        if phase != self.last_phase || delivered != self.last_delivered {
            self.last_phase = phase;
            self.last_delivered = delivered;
            self.last_progress = now;
            return Ok(());
        }
        if matches!(phase, MergePhase::Merged | MergePhase::Ended) {
            return Ok(());
        }
        if now.duration_since(self.last_progress) > self.progress_timeout {
            return Err(ClientError::Timeout {
                waiting_for: format!(
                    "the replay-merge of recording {} to make progress (phase {phase:?}, \
                     delivered {delivered:?}, live joined at {:?}, replay image {})",
                    self.recording.recording_id,
                    self.decider.live_join(),
                    if self.replay_image.is_some() {
                        "present"
                    } else {
                        "absent"
                    }
                ),
                timeout: self.progress_timeout,
            });
        }
        Ok(())
    }

    /// Whether the merge switched to the live stream.
    pub fn is_merged(&self) -> bool {
        self.decider.phase() == MergePhase::Merged
    }

    /// Whether the stream ended: the recording stopped and its replay was delivered whole, or
    /// the live image ended after the merge.
    pub fn is_ended(&self) -> bool {
        self.decider.phase() == MergePhase::Ended
    }

    /// Whether the merge failed (every [`ReplayMerge::poll`] returns an error).
    pub fn has_failed(&self) -> bool {
        self.failure.is_some()
    }

    /// The phase.
    pub fn phase(&self) -> MergePhase {
        self.decider.phase()
    }

    /// The stream position up to which everything was delivered; `None` before the replay's
    /// image appeared.
    pub fn position(&self) -> Option<i64> {
        self.decider.delivered()
    }

    /// Where the live image joined, once it did.
    pub fn live_join_position(&self) -> Option<i64> {
        self.decider.live_join()
    }

    /// The replay session the archive started for the merge.
    pub fn replay_session_id(&self) -> ReplayId {
        self.replay_session_id
    }

    /// The recording being merged, as the archive described it when the merge started.
    pub fn recording(&self) -> &RecordingDescriptor {
        &self.recording
    }

    /// The live channel joined (with the recorded session's id).
    pub fn live_channel(&self) -> &str {
        &self.live_channel
    }

    /// The archive client, for other requests while the merge runs.
    pub fn client(&mut self) -> &mut ArchiveClient {
        self.client
    }
}

impl Drop for ReplayMerge<'_> {
    fn drop(&mut self) {
        if self.replay_active {
            stop_replay_quietly(self.client, self.replay_session_id);
        }
        if let Some(correlation_id) = self.stop_request.take() {
            self.client.forget_request(correlation_id);
        }
        if let Some(correlation_id) = self.position_request.take() {
            self.client.forget_request(correlation_id);
        }
    }
}

/// Sends a `StopReplayRequest` without waiting for its answer.
fn stop_replay_quietly(client: &mut ArchiveClient, replay_session_id: ReplayId) {
    let sent = client.send_request(
        "StopReplayRequest",
        |control_session_id, correlation_id, buffer| {
            Message::StopReplayRequest(StopReplayRequest {
                control_session_id,
                correlation_id,
                replay_session_id: replay_session_id.get(),
            })
            .encode(buffer)
        },
    );
    match sent {
        Ok(correlation_id) => client.forget_request(correlation_id),
        Err(error) => tracing::debug!("could not stop replay {replay_session_id}: {error}"),
    }
}

/// Waits for the driver to bind a wildcard port; returns the channel with the port.
fn resolve_endpoint(subscription: &Subscription, timeout: Duration) -> Result<String, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut idle = BackoffIdle::new();
    loop {
        if let Some(channel) = subscription.try_resolve_channel_endpoint_port()? {
            return Ok(channel);
        }
        if Instant::now() >= deadline {
            return Err(ClientError::Timeout {
                waiting_for: format!(
                    "for the driver to bind the replay channel {}",
                    subscription.channel()
                ),
                timeout,
            });
        }
        idle.idle(0);
    }
}
