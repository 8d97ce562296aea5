//! One replay: frames read from the recording, checked, re-headered and offered on the replay
//! publication, at the recorded positions; key filters, limits, seeks and pacing applied.

use super::pacing::Pacing;
use super::{ReplayEnd, ReplayPlan, ReplayState};
use crate::config::ArchiveConfig;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::replay::key_search::{Found, KeySearch};
use std::sync::Arc;
use std::time::Instant;
use tern_store::clock::Clock;
use tern_store::frame::{
    FrameHeader, FrameProblem, HEADER_LENGTH, SESSION_ID_OFFSET, STREAM_ID_OFFSET,
};
use tern_store::recording_reader::RecordingReader;
use tern_store::segment::AlignedBuffer;
use tern_transport::{BlockSink, ExclusivePublication, OfferError};

/// One replay: generic over where its frames go (an Aeron [`ExclusivePublication`], or a
/// simulated log in tests); its time comes from `clock`.
pub(super) struct ReplaySession<P = ExclusivePublication> {
    pub(super) plan: ReplayPlan,
    pub(super) reader: RecordingReader,
    pub(super) publication: P,
    pub(super) clock: Arc<dyn Clock>,
    /// Where the replay is in the recording.
    pub(super) position: i64,
    /// The replay publication's position: `position`, except in a compact filtered replay.
    pub(super) out_position: i64,
    pub(super) deadline: Instant,
    pub(super) buffer: AlignedBuffer,
    /// A prepared block waiting to be offered: its length in `buffer`.
    pub(super) pending: usize,
    /// Bytes of a recorded padding frame still to be re-created.
    pub(super) padding_left: usize,
    /// The schedule, for a paced replay.
    pub(super) pacing: Option<Pacing>,
    /// When the replay was paused, while it is.
    pub(super) paused_at: Option<Instant>,
    /// When the pending block is due (paced by times inside messages).
    pub(super) pending_due: Option<Instant>,
    /// The message time of the block prepared last, if its messages carry one.
    pub(super) block_time: Option<i64>,
    /// When the pending block was due by the pacing schedule, moved by pauses (for the pacing
    /// error metric).
    pub(super) scheduled: Option<Instant>,
    /// The counter a bounded replay never goes past.
    pub(super) limit: Option<crate::replay::limit::LimitCounter>,
    /// For a replay filtered by key: where the key's messages are, and which is being sent.
    pub(super) keys: Option<KeyReplay>,
}

/// The state of a replay filtered by key.
pub(super) struct KeyReplay {
    pub(super) search: KeySearch,
    /// The first frame of a message with the key went out (or is pending), its last has not.
    pub(super) in_message: bool,
    /// The pending block holds the last frame of the message.
    pub(super) pending_ends_message: bool,
    /// The key's messages go back to back (their positions are not the recorded ones).
    pub(super) compact: bool,
}

/// What [`ReplaySession::prepare_message`] prepared.
pub(super) enum MessageBlock {
    /// Frames of the message are in the buffer; the last one ends the message if `ends`.
    Block { length: usize, ends: bool },
    /// The next frame is not recorded yet.
    NotYet,
    /// The next frame ends past the end the replay may reach now.
    CrossesEnd,
    /// The frame at the position does not start a message with the key (a wrong index).
    Mismatch(String),
    /// The message ended without its last frame (a padding frame came first).
    Cut,
}

/// What [`ReplaySession::parse_message`] found.
pub(super) enum MessageParse {
    Done(MessageBlock),
    /// The bytes read end inside the message: read more.
    ReadMore,
}

/// Bytes a filtered replay reads at first for a message (a small one). A longer one is read again
/// 4 times longer: a page, the amount the key search announces to the kernel per message, so
/// that read does not wait for the disk either. (Growing 8 times went past the announced page on
/// every 1 KiB message: 79 us a message cold instead of 16.)
pub(super) const MESSAGE_READ: usize = 1024;

/// Bytes of frames a filtered replay scans at most per duty cycle, in replay blocks.
pub(super) const SCAN_BLOCKS: usize = 4;

pub(super) enum Step {
    Worked(usize),
    Idle,
    /// Nothing to send before this instant (a paced replay).
    Wait(Instant),
    Finished(ReplayState),
}

impl<P: BlockSink> ReplaySession<P> {
    /// What a replay that meets a bad frame at `position` says: the file, offset and problem.
    fn frame_error(&self, position: i64, problem: FrameProblem) -> String {
        let path = self.reader.segment_path(position);
        let base = self.reader.segment_base(position);
        format!(
            "{} at offset {} (position {position}): {problem}",
            path.display(),
            position - base,
        )
    }

    /// A replay of `plan` from `reader` to `publication`, unpaced, unfiltered and unbounded until
    /// told otherwise; it waits for a subscriber up to the configured connect timeout.
    pub(super) fn new(
        plan: ReplayPlan,
        reader: RecordingReader,
        publication: P,
        clock: Arc<dyn Clock>,
        config: &ArchiveConfig,
    ) -> Self {
        Self {
            position: plan.position,
            out_position: plan.position,
            deadline: clock.now() + config.replay_connect_timeout,
            buffer: AlignedBuffer::new(config.replay_block_length),
            pending: 0,
            padding_left: 0,
            pacing: None,
            paused_at: None,
            pending_due: None,
            block_time: None,
            scheduled: None,
            limit: None,
            keys: None,
            reader,
            publication,
            clock,
            plan,
        }
    }

    /// Where the recording's data ends now, and whether it has stopped.
    pub(super) fn available(&self) -> (i64, bool) {
        let stop = match &self.plan.progress {
            Some(progress) if progress.stop_position() < 0 => None,
            Some(progress) => Some(progress.stop_position()),
            None => Some(self.plan.descriptor.stop_position),
        };
        let available = match (&self.plan.progress, stop) {
            (_, Some(stop)) => stop,
            (Some(progress), None) => progress.recorded(),
            (None, None) => self.plan.descriptor.start_position,
        };
        (available, stop.is_some())
    }

    pub(super) fn end_now(&self) -> (i64, bool) {
        let (available, stopped) = self.available();
        let stop = stopped.then_some(available);
        match self.plan.end {
            ReplayEnd::At(limit) => (limit.min(available), true),
            ReplayEnd::Follow(limit) => {
                let limit = limit.unwrap_or(i64::MAX);
                let end = limit.min(available);
                (end, stop.is_some() || end == limit)
            }
        }
    }

    /// Stop sending until resumed: a block already prepared stays pending, so nothing is lost
    /// or sent twice.
    pub(super) fn pause(&mut self) {
        if self.paused_at.is_none() && !self.plan.status.is_finished() {
            self.paused_at = Some(self.clock.now());
            self.plan.status.set_state(ReplayState::Paused);
        }
    }

    /// Go on from where the replay paused; a paced replay's schedule moves by the pause.
    pub(super) fn resume(&mut self) {
        if let Some(paused_at) = self.paused_at.take() {
            if let Some((start, _)) = self
                .pacing
                .as_mut()
                .and_then(|pacing| pacing.origin.as_mut())
            {
                *start += self.clock.now() - paused_at;
            }
            if let Some(scheduled) = self.scheduled.as_mut() {
                *scheduled += self.clock.now() - paused_at;
            }
            let state = if self.publication.is_connected() {
                ReplayState::Replaying
            } else {
                ReplayState::Connecting
            };
            self.plan.status.set_state(state);
        }
    }

    pub(super) fn do_work(&mut self, config: &ArchiveConfig, metrics: &Metrics) -> Step {
        if self.paused_at.is_some() {
            return Step::Idle;
        }
        if self.plan.status.state() == ReplayState::Connecting {
            if self.publication.is_connected() {
                self.plan.status.set_state(ReplayState::Replaying);
            } else if self.clock.now() > self.deadline {
                self.plan.status.fail(format!(
                    "no subscriber connected to {} stream {} within {:?}",
                    self.plan.channel, self.plan.stream_id, config.replay_connect_timeout
                ));
                return Step::Finished(ReplayState::Failed);
            } else {
                return Step::Idle;
            }
        }
        if self.padding_left > 0 {
            return self.send_padding();
        }
        if self.pending == 0 && self.keys.is_some() {
            match self.prepare_keyed(config) {
                Ok(None) => {}
                Ok(Some(step)) => return step,
                Err(message) => return self.fail(message),
            }
        } else if self.pending == 0 {
            let (mut end, mut final_end) = self.end_now();
            if let Some(limit) = self.limit.as_mut() {
                (end, final_end) = limit.bound(end, final_end);
            }
            let by_capture = !self.plan.time_source.is_in_message();
            if let Some(pacing) = self.pacing.as_mut().filter(|_| by_capture) {
                match pacing.due(self.position, self.clock.now()) {
                    Ok((due, group_end)) => {
                        if self.clock.now() < due {
                            return Step::Wait(due);
                        }
                        self.scheduled = Some(due);
                        // One capture time per block: the next group has its own time.
                        end = end.min(group_end);
                    }
                    Err(error) => return self.fail(format!("pacing: {error}")),
                }
            }
            if self.position >= end {
                return if final_end {
                    Step::Finished(ReplayState::Done)
                } else {
                    Step::Idle
                };
            }
            match self.prepare(end, config.replay_block_length) {
                Ok(PrepareOutcome::Block(length)) => {
                    self.pending = length;
                    if !by_capture {
                        let block_time = self.block_time;
                        self.pending_due = self
                            .pacing
                            .as_mut()
                            .zip(block_time)
                            .map(|(pacing, time)| pacing.message_due(time, self.clock.now()));
                        self.scheduled = self.pending_due;
                    }
                }
                Ok(PrepareOutcome::Padding(length)) => {
                    self.padding_left = length;
                    return self.send_padding();
                }
                // The next frame ends past the replay's end (a length that cuts a frame): done.
                Ok(PrepareOutcome::CrossesEnd) if final_end => {
                    return Step::Finished(ReplayState::Done)
                }
                Ok(PrepareOutcome::CrossesEnd) => return Step::Idle,
                Err(message) => return self.fail(message),
            }
        }
        if let Some(due) = self.pending_due {
            if self.clock.now() < due {
                return Step::Wait(due);
            }
        }
        let block = &self.buffer.as_slice()[..self.pending];
        match self.publication.offer_block(block) {
            Ok(_) => {
                let length = self.pending;
                metrics.replay_sent_bytes.inc_by(length as u64);
                if let Some(due) = self.scheduled.take() {
                    let late = self.clock.now().saturating_duration_since(due);
                    metrics.pacing_error_seconds.observe(late.as_secs_f64());
                }
                self.pending = 0;
                self.pending_due = None;
                self.advance(length);
                if let Some(keys) = self.keys.as_mut() {
                    if keys.pending_ends_message {
                        keys.in_message = false;
                        keys.pending_ends_message = false;
                    }
                }
                Step::Worked(length)
            }
            Err(OfferError::NotConnected) => self.fail("the replay's subscriber went away".into()),
            Err(error) if error.is_retryable() => Step::Idle,
            Err(error) => self.fail(format!(
                "offer block at position {}: {error}",
                self.position
            )),
        }
    }

    /// Send `padding_left` bytes of padding: a recorded padding frame re-created, or the messages
    /// a filtered replay leaves out. In pieces no longer than the publication accepts (a padding
    /// frame can run to the end of the term, longer than any one message) and never across the
    /// end of a term.
    /// In a compact filtered replay, padding only fills the replay stream's term ends: the
    /// recording's position does not move.
    pub(super) fn send_padding(&mut self) -> Step {
        let largest =
            self.publication.max_message_length() & !(tern_store::frame::FRAME_ALIGNMENT - 1);
        let term_length = self.plan.descriptor.term_length as usize;
        let term_left = term_length - (self.out_position as usize & (term_length - 1));
        let payload = (self.padding_left.min(term_left) - HEADER_LENGTH).min(largest);
        match self.publication.append_padding(payload) {
            Ok(_) => {
                self.padding_left -= HEADER_LENGTH + payload;
                if self.keys.as_ref().is_some_and(|keys| keys.compact) {
                    self.out_position += (HEADER_LENGTH + payload) as i64;
                    self.plan
                        .status
                        .set_positions(self.out_position, self.position);
                } else {
                    self.advance(HEADER_LENGTH + payload);
                }
                Step::Worked(1)
            }
            Err(OfferError::NotConnected) => self.fail("the replay's subscriber went away".into()),
            Err(error) if error.is_retryable() => Step::Idle,
            Err(error) => self.fail(format!("append padding: {error}")),
        }
    }

    pub(super) fn advance(&mut self, length: usize) {
        let aligned = tern_store::frame::align_frame(length) as i64;
        self.position += aligned;
        self.out_position += aligned;
        self.plan
            .status
            .set_positions(self.out_position, self.position);
    }

    pub(super) fn fail(&mut self, message: String) -> Step {
        let message = format!(
            "replay {} of recording {}: {message}",
            self.plan.replay_id, self.plan.descriptor.recording_id
        );
        tracing::error!("{message}");
        self.plan.status.fail(message);
        Step::Finished(ReplayState::Failed)
    }

    /// A filtered replay's next step: find the next message with the key, send padding up to it,
    /// and prepare its frames. `Ok(None)`: a block is pending.
    pub(super) fn prepare_keyed(&mut self, config: &ArchiveConfig) -> Result<Option<Step>, String> {
        let (mut end, mut final_end) = self.end_now();
        if let Some(limit) = self.limit.as_mut() {
            (end, final_end) = limit.bound(end, final_end);
        }
        let (available, stopped) = self.available();
        let block_length = config.replay_block_length;
        let keys = self.keys.as_mut().expect("a filtered replay");
        let starts_message = !keys.in_message;
        if starts_message {
            let found = keys
                .search
                .next(end, available, stopped, block_length * SCAN_BLOCKS);
            self.plan.status.set_search_stats(keys.search.stats());
            match found.map_err(|error| error.to_string())? {
                Found::Budget => return Ok(Some(Step::Worked(1))),
                Found::Exhausted(reached) => {
                    if !final_end {
                        return Ok(Some(Step::Idle));
                    }
                    // At the recording's end (a frame boundary) the replay ends where an
                    // unfiltered one does; a length that ends inside the recording ends it after
                    // its last message.
                    if !keys.compact && reached == available && self.position < reached {
                        self.padding_left = (reached - self.position) as usize;
                        return Ok(Some(self.send_padding()));
                    }
                    return Ok(Some(Step::Finished(ReplayState::Done)));
                }
                Found::At(start) if start < self.position => {
                    keys.search.take();
                    return Ok(Some(Step::Worked(1)));
                }
                Found::At(start) if start > self.position && !keys.compact => {
                    keys.search.read_ahead();
                    self.padding_left = (start - self.position) as usize;
                    return Ok(Some(self.send_padding()));
                }
                Found::At(start) => {
                    keys.search.read_ahead();
                    // Compact: the messages between are left out, the stream does not move.
                    self.position = start;
                    self.plan.status.set_positions(self.out_position, start);
                }
            }
        }
        let compact = self.keys.as_ref().is_some_and(|keys| keys.compact);
        match self.prepare_message(end, block_length, starts_message)? {
            MessageBlock::Block { length, ends } => {
                if compact && starts_message {
                    // The whole message must fit in the replay stream's term: pad to its end
                    // first when it does not (as a publisher's log does).
                    let total = if ends {
                        Some(length)
                    } else {
                        self.message_length(end)
                            .map_err(|error| error.to_string())?
                    };
                    let Some(total) = total else {
                        // Its last fragments are not recorded yet.
                        return Ok(Some(if final_end {
                            Step::Finished(ReplayState::Done)
                        } else {
                            Step::Idle
                        }));
                    };
                    let term_length = self.plan.descriptor.term_length as usize;
                    let term_left = term_length - (self.out_position as usize & (term_length - 1));
                    if total > term_left {
                        self.padding_left = term_left;
                        return Ok(Some(self.send_padding()));
                    }
                }
                if compact {
                    self.place_block(length);
                }
                let keys = self.keys.as_mut().expect("a filtered replay");
                if starts_message {
                    keys.search.take();
                    keys.in_message = true;
                }
                keys.pending_ends_message = ends;
                self.pending = length;
                if starts_message {
                    let position = self.position;
                    let block_time = self.block_time;
                    let by_capture = !self.plan.time_source.is_in_message();
                    self.pending_due = match self.pacing.as_mut() {
                        Some(pacing) if by_capture => Some(
                            pacing
                                .due(position, self.clock.now())
                                .map_err(|e| format!("pacing: {e}"))?
                                .0,
                        ),
                        Some(pacing) => {
                            block_time.map(|time| pacing.message_due(time, self.clock.now()))
                        }
                        None => None,
                    };
                    self.scheduled = self.pending_due;
                }
                Ok(None)
            }
            MessageBlock::NotYet | MessageBlock::CrossesEnd if final_end => {
                Ok(Some(Step::Finished(ReplayState::Done)))
            }
            MessageBlock::NotYet | MessageBlock::CrossesEnd => Ok(Some(Step::Idle)),
            MessageBlock::Mismatch(why) => {
                let keys = self.keys.as_mut().expect("a filtered replay");
                keys.search.distrust(self.position, &why);
                Ok(Some(Step::Worked(1)))
            }
            MessageBlock::Cut => {
                // Fragments of a message are contiguous, so this is damage Aeron never writes:
                // go on with the search from the padding frame.
                let keys = self.keys.as_mut().expect("a filtered replay");
                keys.in_message = false;
                Ok(Some(Step::Worked(1)))
            }
        }
    }

    /// The aligned length of all the frames of the message at the position, or `None` if its
    /// last frame is not before `end` (not recorded yet).
    pub(super) fn message_length(&mut self, end: i64) -> Result<Option<usize>> {
        let mut total = 0usize;
        let mut complete = false;
        let (_, problem) = self
            .reader
            .scan_reading(self.position, end, MESSAGE_READ, |frame| {
                total += frame.aligned_length;
                complete = frame.header.flags & tern_transport::END_FLAG != 0;
                !complete && !frame.header.is_padding()
            })?;
        if let Some(problem) = problem {
            return Err(problem.to_error().into());
        }
        Ok(complete.then_some(total))
    }

    /// Give the frames of the prepared block (read at the recording's position) the term id and
    /// term offsets of the replay stream's position, where a compact replay appends them.
    pub(super) fn place_block(&mut self, length: usize) {
        let descriptor = &self.plan.descriptor;
        let (term_id, term_offset) = tern_store::frame::term_of(
            self.out_position,
            descriptor.initial_term_id,
            descriptor.term_length,
        );
        let buffer = self.buffer.as_mut_slice();
        let mut offset = 0;
        while offset < length {
            let frame = FrameHeader::decode(&buffer[offset..]);
            buffer[offset + tern_store::frame::TERM_OFFSET_OFFSET
                ..offset + tern_store::frame::TERM_OFFSET_OFFSET + 4]
                .copy_from_slice(&(term_offset + offset as i32).to_le_bytes());
            buffer[offset + tern_store::frame::TERM_ID_OFFSET
                ..offset + tern_store::frame::TERM_ID_OFFSET + 4]
                .copy_from_slice(&term_id.to_le_bytes());
            offset += frame.aligned_length();
        }
    }

    /// Read the frames of the message with the key at the position into the buffer (its first
    /// frame when `first`, else the ones after those sent), check them and rewrite their session
    /// and stream ids; stop after its last frame (END flag), at the end of the term or of the
    /// block, or before a frame that ends past `end`.
    pub(super) fn prepare_message(
        &mut self,
        end: i64,
        block_length: usize,
        first: bool,
    ) -> Result<MessageBlock, String> {
        if self.position >= end {
            return Ok(MessageBlock::NotYet);
        }
        let descriptor = &self.plan.descriptor;
        let term_length = i64::from(descriptor.term_length);
        let term_remaining = term_length - (self.position & (term_length - 1));
        let wanted = term_remaining.min(block_length as i64) as usize;
        // One message is usually far shorter than a block: read a page first, the block only for
        // a message that goes on past it.
        let mut length = wanted.min(MESSAGE_READ);
        loop {
            match self.parse_message(end, length, length < wanted, first)? {
                MessageParse::Done(block) => return Ok(block),
                MessageParse::ReadMore if length < wanted => length = (length * 4).min(wanted),
                MessageParse::ReadMore => {
                    let header = FrameHeader::decode(&self.buffer.as_slice()[..HEADER_LENGTH]);
                    return Err(format!(
                        "frame at position {} ({} bytes) does not fit the {wanted} bytes a block may have",
                        self.position, header.frame_length
                    ));
                }
            }
        }
    }

    /// Read `length` bytes at the position and prepare what they hold of the message (see
    /// [`Self::prepare_message`]); `ReadMore` when the bytes end inside its first frame, or (if
    /// `can_grow`) early inside the message.
    pub(super) fn parse_message(
        &mut self,
        end: i64,
        length: usize,
        can_grow: bool,
        first: bool,
    ) -> Result<MessageParse, String> {
        let buffer = self.buffer.as_mut_slice();
        let read = self
            .reader
            .read_at(self.position, &mut buffer[..length])
            .map_err(|error| error.to_string())?;
        let expectation = self.reader.expectation();
        let filter = *self
            .keys
            .as_ref()
            .expect("a filtered replay")
            .search
            .filter();
        let source = self.plan.time_source;
        let mut offset = 0;
        let mut ends = false;
        let mut cut_by_read = false;
        while offset < read && self.position + (offset as i64) < end && !ends {
            let position = self.position + offset as i64;
            match expectation.check(&buffer[offset..read], position) {
                Ok((header, aligned)) => {
                    if position + aligned as i64 > end {
                        if offset == 0 {
                            return Ok(MessageParse::Done(MessageBlock::CrossesEnd));
                        }
                        break;
                    }
                    if offset + aligned > read {
                        cut_by_read = read == length;
                        break;
                    }
                    if offset == 0 && first {
                        let payload = &buffer
                            [HEADER_LENGTH..(header.frame_length as usize).max(HEADER_LENGTH)];
                        if header.is_padding() || header.flags & tern_transport::BEGIN_FLAG == 0 {
                            return Ok(MessageParse::Done(MessageBlock::Mismatch(
                                "not the first frame of a message".into(),
                            )));
                        }
                        if !filter.matches(header.reserved_value, payload) {
                            return Ok(MessageParse::Done(MessageBlock::Mismatch(format!(
                                "a message without key {filter}"
                            ))));
                        }
                        self.block_time = source.message_time(payload);
                    } else if header.is_padding() {
                        // Fragments of a message are contiguous: a padding frame ends it.
                        ends = true;
                        break;
                    }
                    ends = header.flags & tern_transport::END_FLAG != 0;
                    buffer[offset + SESSION_ID_OFFSET..offset + SESSION_ID_OFFSET + 4]
                        .copy_from_slice(&self.plan.session_id.to_le_bytes());
                    buffer[offset + STREAM_ID_OFFSET..offset + STREAM_ID_OFFSET + 4]
                        .copy_from_slice(&self.plan.stream_id.to_le_bytes());
                    offset += aligned;
                }
                Err(FrameProblem::Truncated) if offset > 0 || read == length => {
                    cut_by_read = read == length;
                    break;
                }
                Err(problem) => return Err(self.frame_error(position, problem)),
            }
        }
        // The read ended inside the message: read more first when little of it was read.
        if cut_by_read && !ends && can_grow && offset < length / 2 {
            return Ok(MessageParse::ReadMore);
        }
        if offset == 0 {
            if ends {
                return Ok(MessageParse::Done(MessageBlock::Cut));
            }
            return Ok(MessageParse::ReadMore);
        }
        Ok(MessageParse::Done(MessageBlock::Block {
            length: offset,
            ends,
        }))
    }

    /// Read frames from the position into the buffer, check them and rewrite their session and
    /// stream ids; stop before a padding frame, at the end of the term, or before a frame that
    /// ends past `end`. Bytes past `end` may be read (they are in the file) but only frames that
    /// start before it are looked at, and those are complete.
    pub(super) fn prepare(
        &mut self,
        end: i64,
        block_length: usize,
    ) -> Result<PrepareOutcome, String> {
        let descriptor = &self.plan.descriptor;
        let term_length = i64::from(descriptor.term_length);
        let term_remaining = term_length - (self.position & (term_length - 1));
        let wanted = term_remaining.min(block_length as i64) as usize;
        let buffer = self.buffer.as_mut_slice();
        let read = self
            .reader
            .read_at(self.position, &mut buffer[..wanted])
            .map_err(|error| error.to_string())?;
        let expectation = self.reader.expectation();
        let source = self.plan.time_source;
        self.block_time = None;
        let mut offset = 0;
        while offset < read && self.position + (offset as i64) < end {
            let position = self.position + offset as i64;
            match expectation.check(&buffer[offset..read], position) {
                Ok((header, aligned)) => {
                    if position + aligned as i64 > end {
                        if offset == 0 {
                            return Ok(PrepareOutcome::CrossesEnd);
                        }
                        break;
                    }
                    if header.is_padding() {
                        if offset == 0 {
                            return Ok(PrepareOutcome::Padding(aligned));
                        }
                        break;
                    }
                    if offset + aligned > read {
                        break;
                    }
                    // Paced by times inside messages: one message time per block.
                    if source.is_in_message() && header.flags & tern_transport::BEGIN_FLAG != 0 {
                        let payload =
                            &buffer[offset + HEADER_LENGTH..offset + header.frame_length as usize];
                        if let Some(time) = source.message_time(payload) {
                            if offset == 0 {
                                self.block_time = Some(time);
                            } else if self.block_time != Some(time) {
                                break;
                            }
                        }
                    }
                    buffer[offset + SESSION_ID_OFFSET..offset + SESSION_ID_OFFSET + 4]
                        .copy_from_slice(&self.plan.session_id.to_le_bytes());
                    buffer[offset + STREAM_ID_OFFSET..offset + STREAM_ID_OFFSET + 4]
                        .copy_from_slice(&self.plan.stream_id.to_le_bytes());
                    offset += aligned;
                }
                // Send the good frames before a bad one first: the next block starts at the bad
                // frame and fails there, naming it.
                Err(_) if offset > 0 => break,
                Err(problem) => return Err(self.frame_error(position, problem)),
            }
        }
        if offset == 0 {
            let header = FrameHeader::decode(&buffer[..HEADER_LENGTH]);
            return Err(format!(
                "frame at position {} ({} bytes) does not fit the {wanted} bytes a block may have",
                self.position, header.frame_length
            ));
        }
        Ok(PrepareOutcome::Block(offset))
    }
}

pub(super) enum PrepareOutcome {
    /// This many bytes of data frames are ready in the buffer.
    Block(usize),
    /// A padding frame of this aligned length comes next.
    Padding(usize),
    /// The next frame ends past the end the replay may reach now.
    CrossesEnd,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_store::{RecordingId, ReplayId};

    /// A recording and its replays in one test thread, on the simulated transport, disk and
    /// clock: what the cluster's simulation builds on.
    mod simulated {
        use super::*;
        use crate::config::FsyncPolicy;
        use crate::metrics::Metrics;
        use crate::record::RecordingSession;
        use crate::replay::{ReplayEnd, ReplayPlan, ReplayStatus};
        use std::path::Path;
        use std::time::Duration;
        use tern_store::descriptor::RecordState;
        use tern_store::descriptor::RecordingDescriptor;
        use tern_store::message_time::TimeSource;
        use tern_store::progress::RecordingProgress;
        use tern_store::segment_writer::{SegmentGeometry, SegmentWriter};
        use tern_store::storage::Storage;
        use tern_store::{Io, SimClock, SimDisk, WriteMode, NULL_POSITION};
        use tern_transport::{BlockSource, SimImage, SimLog, SimStream};

        const DIR: &str = "/archive";
        const TERM: i32 = 64 * 1024;

        fn stream() -> SimStream {
            SimStream {
                session_id: 77,
                stream_id: 1001,
                initial_term_id: 5,
                term_length: TERM,
                mtu: 1408,
                start_position: 0,
            }
        }

        struct Recorded {
            storage: Arc<dyn Storage>,
            clock: SimClock,
            descriptor: RecordingDescriptor,
            log: SimLog,
            /// Simulated time from the first message to the last.
            span: Duration,
        }

        /// Publish 2000 messages (some fragmented, padding at every term end) 1 ms of simulated
        /// time apart in bursts of 20, recording them as they go with fsync on every write.
        fn record() -> Recorded {
            let disk = SimDisk::new();
            disk.create_dir_all(Path::new(DIR)).expect("dir");
            let storage: Arc<dyn Storage> = Arc::new(disk);
            let clock = SimClock::new(1_700_000_000_000_000_000);
            let mut config = ArchiveConfig::new(DIR, "/no-aeron-dir");
            config.fsync = FsyncPolicy::Always;
            let log = SimLog::new(stream());
            let descriptor = RecordingDescriptor {
                recording_id: RecordingId::new(0),
                state: RecordState::Valid,
                start_timestamp_ns: clock.epoch_nanos(),
                stop_timestamp_ns: NULL_POSITION,
                start_position: 0,
                stop_position: NULL_POSITION,
                initial_term_id: stream().initial_term_id,
                segment_length: 2 * TERM,
                term_length: TERM,
                mtu_length: 1408,
                session_id: stream().session_id,
                stream_id: stream().stream_id,
                stripped_channel: "aeron:ipc".into(),
                original_channel: "aeron:ipc".into(),
                source_identity: "aeron:ipc".into(),
            };
            let io = Io::inline(storage.clone());
            let geometry = SegmentGeometry {
                dir: DIR.into(),
                recording_id: RecordingId::new(0),
                start_position: 0,
                term_length: i64::from(TERM),
                segment_length: 2 * i64::from(TERM),
            };
            let progress = Arc::new(RecordingProgress::new(0));
            let mut session: RecordingSession<SimImage> = RecordingSession {
                image: log.image(),
                writer: SegmentWriter::new_on(
                    &io,
                    geometry,
                    WriteMode::Direct,
                    true,
                    config.write_buffer_length,
                )
                .expect("writer"),
                time_index: tern_store::time_index::TimeIndexWriter::create_on(
                    &storage,
                    Path::new(DIR),
                    RecordingId::new(0),
                    0,
                )
                .expect("time index"),
                progress: progress.clone(),
                counter: None,
                last_sync: clock.now(),
                subscription_id: 1,
                spy_check: None,
                descriptor: descriptor.clone(),
            };
            let started = clock.now();
            for index in 0..2000usize {
                let message = vec![(index % 251) as u8; 1 + (index * 131) % 3000];
                // Back-pressured (half a term ahead of the recording): the recorder polls, at the
                // same simulated instant, and the offer goes again.
                while let Err(error) = log.offer(&message) {
                    assert_eq!(error, OfferError::BackPressured);
                    session
                        .do_work(&config, clock.epoch_nanos(), clock.now())
                        .expect("record");
                }
                if index % 20 == 19 {
                    session
                        .do_work(&config, clock.epoch_nanos(), clock.now())
                        .expect("record");
                    clock.advance(Duration::from_millis(1));
                }
            }
            let span = clock.now() - started - Duration::from_millis(1);
            while session
                .do_work(&config, clock.epoch_nanos(), clock.now())
                .expect("record")
                > 0
            {}
            session.writer.sync().expect("sync");
            session.time_index.flush().expect("time index");
            let end = log.position();
            assert_eq!(session.writer.synced_position(), end, "all of it durable");
            assert_eq!(session.image.position(), end);
            assert!(progress.durable() <= end);
            let mut descriptor = descriptor;
            descriptor.stop_position = end;
            Recorded {
                storage,
                clock,
                descriptor,
                log,
                span,
            }
        }

        /// Replay all of the recording at `speed` to a simulated log; returns its bytes and the
        /// simulated time the replay took.
        fn replay(recorded: &Recorded, speed: Option<f64>) -> (Vec<u8>, Duration) {
            let config = ArchiveConfig::new(DIR, "/no-aeron-dir");
            let metrics = Metrics::default();
            let out = SimLog::new(stream());
            let subscriber = out.image();
            let dir = Path::new(DIR);
            let descriptor = recorded.descriptor.clone();
            let clock = recorded.clock.clone();
            let pacing = speed.map(|speed| {
                Pacing::new(&recorded.storage, dir, RecordingId::new(0), 0, speed).expect("pacing")
            });
            let plan = ReplayPlan {
                replay_id: ReplayId::new(1),
                descriptor: descriptor.clone(),
                position: 0,
                end: ReplayEnd::At(descriptor.stop_position),
                channel: "aeron:ipc".into(),
                stream_id: stream().stream_id,
                session_id: stream().session_id,
                progress: None,
                status: Arc::new(ReplayStatus::new_at(
                    RecordingId::new(0),
                    0,
                    stream().session_id,
                )),
                speed,
                time_source: TimeSource::default(),
                limit_counter_id: None,
                key: None,
                keep_positions: false,
            };
            let mut session = ReplaySession::new(
                plan,
                RecordingReader::new_on(&recorded.storage, dir, &descriptor),
                out.clone(),
                Arc::new(clock.clone()),
                &config,
            );
            session.pacing = pacing;
            let started = clock.now();
            let mut received = Vec::new();
            let state = loop {
                match session.do_work(&config, &metrics) {
                    Step::Finished(state) => break state,
                    Step::Wait(due) => clock.sleep_until(due),
                    Step::Idle | Step::Worked(_) => {}
                }
                while subscriber
                    .block_poll(|block, _| received.extend_from_slice(block), 1 << 20)
                    .expect("poll")
                    > 0
                {}
            };
            assert_eq!(
                state,
                ReplayState::Done,
                "{:?}",
                session.plan.status.error()
            );
            (received, clock.now() - started)
        }

        #[test]
        fn a_replay_of_a_simulated_recording_is_the_log_byte_for_byte() {
            let recorded = record();
            let (replayed, took) = replay(&recorded, None);
            assert!(
                recorded.log.position() > 20 * 2 * i64::from(TERM),
                "over 20 segments"
            );
            assert_eq!(replayed.len(), recorded.log.bytes().len());
            assert!(replayed == recorded.log.bytes(), "the replay is the log");
            assert_eq!(
                took,
                Duration::ZERO,
                "as fast as possible: no simulated time"
            );
        }

        #[test]
        fn a_paced_replay_takes_the_recorded_time_divided_by_the_speed() {
            let recorded = record();
            for speed in [1.0, 2.0, 0.5] {
                let (replayed, took) = replay(&recorded, Some(speed));
                assert!(
                    replayed == recorded.log.bytes(),
                    "{speed}x: the replay is the log"
                );
                let expected = recorded.span.as_secs_f64() / speed;
                assert!(
                    (took.as_secs_f64() - expected).abs() < 1e-6,
                    "{speed}x: took {took:?}, expected {expected} s"
                );
            }
        }
    }
}
