//! A client's catch-up on the egress it missed: read from the member's egress recording, then
//! merged into the live egress with no gap and no duplicate (no I/O of its own: it reads through
//! the [`RecordingReader`] it is given and offers through a closure).
//!
//! A client that reconnects, or that a new leader told where to send, asks to resume its session
//! after the last egress it saw (its session sequence, egress number and cluster timestamp). The
//! member starts reading its recording where the time index says that time begins, and sends
//! every message of the session after it. Meanwhile the session's live egress is queued here,
//! not sent. Every message made before the catch-up began (up to the recording's appended end
//! then, the *mark*) is read from the files once the writer has written it; every message after
//! is in the queue. So when the reader has passed the mark, the queue's messages not yet read
//! from the files go, and the session is live again. A queue that grows past its bound is
//! dropped and the mark moved to the recording's end: what it held is read from the files
//! instead. A client that cannot take the messages fast enough slows the catch-up, not the
//! cluster: an offer refused is tried again in the next duty cycle from the same message.

use crate::error::{ClusterError, Result};
use crate::service::Egress;
use std::collections::VecDeque;
use tern_store::egress_header::EgressHeader;
use tern_store::frame::TYPE_DATA;
use tern_store::RecordingReader;

/// Live messages queued for a session being caught up, at most.
pub const MAX_QUEUED: usize = 4096;

/// One session's catch-up.
#[derive(Debug)]
pub struct CatchUp {
    session_id: i64,
    correlation_id: i64,
    after_sequence: u64,
    /// The highest egress number sent to the client (or that it had already).
    delivered_number: u64,
    /// Where the reader goes on.
    cursor: i64,
    /// Messages before this position are read from the files; after it, queued.
    mark: i64,
    queue: VecDeque<(u64, Vec<u8>)>,
    /// Messages sent so far.
    sent: u64,
}

/// What a step of a catch-up came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Messages sent in this step; more to come.
    Working(usize),
    /// Everything missed was sent: the session's egress goes live from now on.
    Done,
}

impl CatchUp {
    /// A catch-up of `session_id` after its egress `after_sequence` (egress number
    /// `after_number`), asked for with `correlation_id`, reading from `from` (a frame start at
    /// or before the first message it needs), while the recording's appended end is `appended`.
    pub fn new(
        session_id: i64,
        after_sequence: u64,
        after_number: u64,
        correlation_id: i64,
        from: i64,
        appended: i64,
    ) -> Self {
        Self {
            session_id,
            correlation_id,
            after_sequence,
            delivered_number: after_number,
            cursor: from,
            mark: appended,
            queue: VecDeque::new(),
            sent: 0,
        }
    }

    /// The session.
    pub fn session_id(&self) -> i64 {
        self.session_id
    }

    /// The request's correlation id.
    pub fn correlation_id(&self) -> i64 {
        self.correlation_id
    }

    /// Messages sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The highest egress number the client has now.
    pub fn delivered_number(&self) -> u64 {
        self.delivered_number
    }

    /// A live message of the session (`bytes` its egress message) while it catches up; the
    /// recording's appended end is `appended` (this message included).
    pub fn on_live(&mut self, egress: &Egress, bytes: Vec<u8>, appended: i64) {
        if self.queue.len() >= MAX_QUEUED {
            // The files have these: read them there.
            self.queue.clear();
            self.mark = appended;
            return;
        }
        self.queue.push_back((egress.number, bytes));
    }

    /// Send what the files hold up to `flushed` (whole messages), at most `budget` messages,
    /// then, past the mark, the queue. `offer` says whether the client's publication took a
    /// message; a refusal ends the step and the next one starts from that message.
    ///
    /// # Errors
    /// The recording is damaged where the reader is, or unreadable.
    pub fn step(
        &mut self,
        reader: &mut RecordingReader,
        flushed: i64,
        budget: usize,
        offer: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<Step> {
        let mut sent = 0;
        let mut refused = false;
        if self.cursor < flushed {
            let session_id = self.session_id;
            let after_sequence = self.after_sequence;
            let mut cursor = self.cursor;
            let mut delivered = self.delivered_number;
            let (_, stop) = reader.scan(self.cursor, flushed, |frame| {
                let header = (frame.header.frame_type == TYPE_DATA
                    && frame.header.reserved_value == session_id)
                    .then(|| EgressHeader::decode(frame.payload()).ok())
                    .flatten();
                if let Some(header) = header.filter(|header| header.session_id == session_id) {
                    let number = header.egress_number;
                    if number > delivered && header.sequence > after_sequence {
                        if sent == budget || !offer(frame.payload()) {
                            refused = sent < budget;
                            return false;
                        }
                        sent += 1;
                        delivered = number;
                    }
                }
                cursor = frame.position + frame.aligned_length as i64;
                true
            })?;
            self.cursor = cursor;
            self.delivered_number = delivered;
            self.sent += sent as u64;
            if let Some(stop) = stop {
                return Err(ClusterError::CorruptLog {
                    position: stop.position,
                    reason: format!("egress recording: {stop}"),
                });
            }
        }
        if refused || sent == budget || self.cursor < self.mark {
            return Ok(Step::Working(sent));
        }
        while let Some((number, bytes)) = self.queue.front() {
            if *number > self.delivered_number {
                if !offer(bytes) {
                    return Ok(Step::Working(sent));
                }
                self.delivered_number = *number;
                self.sent += 1;
                sent += 1;
            }
            self.queue.pop_front();
        }
        Ok(Step::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::EgressRecording;
    use crate::log::LogConfig;
    use crate::protocol::{encode_egress, Response};
    use std::path::Path;
    use std::sync::Arc;
    use tern_store::{Io, SimDisk, Storage, WriteMode};

    fn recording() -> EgressRecording {
        let storage: Arc<dyn Storage> = Arc::new(SimDisk::new());
        let config = LogConfig {
            term_length: 64 << 10,
            segment_length: 128 << 10,
            mode: WriteMode::Buffered,
            buffer_length: (64 << 10) + 4096,
        };
        EgressRecording::open(Io::inline(storage), Path::new("/node"), config, 1)
            .expect("open")
            .0
    }

    /// The cluster's egress: three sessions taking turns; session 2 gets every third message.
    struct Egresses {
        number: u64,
        sequences: [u64; 3],
    }

    impl Egresses {
        fn next(&mut self) -> Egress {
            self.number += 1;
            let session = (self.number % 3) as usize;
            self.sequences[session] += 1;
            Egress {
                session_id: session as i64 + 1,
                sequence: self.sequences[session],
                log_index: self.number,
                timestamp_ns: self.number as i64 * 100_000,
                number: self.number,
                payload: vec![self.number as u8; 1 + (self.number as usize * 97) % 3000],
            }
        }
    }

    /// The session sequences a client got.
    fn sequences(received: &[Vec<u8>]) -> Vec<u64> {
        received
            .iter()
            .map(|bytes| match Response::decode(bytes) {
                Ok(Response::Egress(egress)) => {
                    assert_eq!(egress.session_id, 2);
                    egress.sequence
                }
                other => panic!("not egress: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_catch_up_merges_into_live_with_no_gap_and_no_duplicate() {
        for (queue_overflows, refuse_every) in [(false, 0), (false, 7), (true, 5)] {
            let mut recording = recording();
            let mut egresses = Egresses {
                number: 0,
                sequences: [0; 3],
            };
            for _ in 0..600 {
                recording.append(&egresses.next()).expect("append");
            }
            recording.flush().expect("flush");
            // The client saw session 2's messages up to sequence 50 (egress number 149).
            let from = recording.position_before_time(149 * 100_000).expect("seek");
            assert!(from > 0, "the time index skips the start");
            let mut catch_up = CatchUp::new(2, 50, 149, 7, from, recording.position());
            let mut reader = recording.reader();
            let mut received = Vec::new();
            let mut offers = 0;
            let mut done = false;
            for cycle in 0..10_000 {
                // Live egress goes on while it catches up; the writer lags a cycle behind.
                let flushed = recording.flushed_position();
                // A burst past the queue's bound in the first cycles, then a trickle.
                let live = if queue_overflows && cycle < 3 {
                    MAX_QUEUED * 3 + 10
                } else {
                    5
                };
                for _ in 0..live {
                    let egress = egresses.next();
                    recording.append(&egress).expect("append");
                    if egress.session_id == 2 {
                        if done {
                            received.push(encode_egress(&egress));
                        } else {
                            catch_up.on_live(&egress, encode_egress(&egress), recording.position());
                        }
                    }
                }
                if !done {
                    let step = catch_up
                        .step(&mut reader, flushed, 64, &mut |bytes| {
                            offers += 1;
                            if refuse_every > 0 && offers % refuse_every == 0 {
                                return false;
                            }
                            received.push(bytes.to_vec());
                            true
                        })
                        .expect("step");
                    done = step == Step::Done;
                }
                recording.flush().expect("flush");
                if done && cycle > 30 {
                    break;
                }
            }
            assert!(done, "caught up");
            let got = sequences(&received);
            let expected: Vec<u64> = (51..51 + got.len() as u64).collect();
            assert_eq!(
                got, expected,
                "overflow {queue_overflows}, refusals {refuse_every}"
            );
            assert!(got.len() > 150, "{}", got.len());
        }
    }
}
