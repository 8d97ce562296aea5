//! The position logic of a replay-merge, without I/O: when to add the live subscription, when to
//! switch from the replay to the live image, which live fragments to skip.
//!
//! Everything rests on one fact: a replay's positions are the recording's positions, which are
//! the live stream's positions, and both carry the very same frames. So "delivered up to
//! position p" means the same bytes on either image, and frame boundaries line up.

/// Where a replay-merge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergePhase {
    /// Delivering the replay; the live stream is not subscribed yet.
    Replaying,
    /// The live subscription was added; its image has not appeared yet. The replay goes on.
    AwaitingLive,
    /// The live image joined at a position the replay has not delivered up to yet. The replay
    /// goes on; the live image is not polled, so it keeps everything from its join position.
    CatchingUp,
    /// The replay was stopped; live fragments past the delivered position are delivered.
    Merged,
    /// The stream ended: the recording stopped and the replay delivered all of it, or the live
    /// image ended after the merge.
    Ended,
}

/// Why a fragment of the live image cannot be placed after what was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Misaligned {
    /// Where the fragment starts.
    pub start: i64,
    /// Where it ends.
    pub end: i64,
    /// The position delivered so far, strictly inside the fragment.
    pub delivered: i64,
}

/// The aligned length of a frame of `frame_length` bytes (a multiple of Aeron's
/// `FRAME_ALIGNMENT`, [`tern_store::frame::FRAME_ALIGNMENT`]).
pub fn aligned_frame_length(frame_length: i32) -> i64 {
    tern_store::frame::align_frame(frame_length.max(0) as usize) as i64
}

/// The decisions of a replay-merge from positions alone.
///
/// The caller (`ReplayMerge`) reports what it sees, in this order of life:
/// [`MergeDecider::on_replay_image`] when the replay's image appears,
/// [`MergeDecider::on_replay_progress`] after each poll of it,
/// [`MergeDecider::on_recording_position`] with each answer of the archive (true: add the live
/// subscription now), [`MergeDecider::on_live_image`] when the live image appears; then, when
/// [`MergeDecider::switch_due`], it stops the replay and calls [`MergeDecider::on_switch`], and
/// asks [`MergeDecider::accept_live`] for every live fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeDecider {
    phase: MergePhase,
    delivered: Option<i64>,
    live_join: Option<i64>,
    live_add_window: i64,
    recording_stopped: bool,
}

impl MergeDecider {
    /// A merge that adds the live subscription once the replay is within `live_add_window`
    /// bytes of the recorded position.
    pub fn new(live_add_window: i64) -> Self {
        Self {
            phase: MergePhase::Replaying,
            delivered: None,
            live_join: None,
            live_add_window: live_add_window.max(0),
            recording_stopped: false,
        }
    }

    /// Aeron's window for adding the live destination: a quarter of the term, at most 32 MiB.
    pub fn default_live_add_window(term_length: i32) -> i64 {
        (i64::from(term_length) / 4).min(32 * 1024 * 1024)
    }

    /// The phase.
    pub fn phase(&self) -> MergePhase {
        self.phase
    }

    /// The stream position up to which everything was delivered (the replay image's position,
    /// then the live fragments'); `None` before the replay's image appeared.
    pub fn delivered(&self) -> Option<i64> {
        self.delivered
    }

    /// Where the live image joined, once it did.
    pub fn live_join(&self) -> Option<i64> {
        self.live_join
    }

    /// Whether the replay image is still the one to poll.
    pub fn polls_replay(&self) -> bool {
        matches!(
            self.phase,
            MergePhase::Replaying | MergePhase::AwaitingLive | MergePhase::CatchingUp
        )
    }

    /// Whether the live image is the one to poll.
    pub fn polls_live(&self) -> bool {
        self.phase == MergePhase::Merged
    }

    /// Whether the recorded position is worth asking for (to decide when to add the live
    /// subscription).
    pub fn wants_recording_position(&self) -> bool {
        self.phase == MergePhase::Replaying && !self.recording_stopped
    }

    /// The replay's image appeared; it starts at `join_position` (the replay's start).
    pub fn on_replay_image(&mut self, join_position: i64) {
        if self.delivered.is_none() {
            self.delivered = Some(join_position);
        }
    }

    /// The replay image's position after a poll: everything before it was delivered (padding
    /// frames included, which carry no message).
    pub fn on_replay_progress(&mut self, image_position: i64) {
        if self.polls_replay() {
            self.delivered = Some(
                self.delivered
                    .map_or(image_position, |d| d.max(image_position)),
            );
        }
    }

    /// The archive's answer about the recording: `Some(recorded position)` while it is active,
    /// `None` once it stopped (there is no live stream left to merge with; the replay goes on to
    /// the end). Returns true when the live subscription should be added now: the replay is
    /// within the add window of the recorded position.
    pub fn on_recording_position(&mut self, recorded: Option<i64>) -> bool {
        if self.phase != MergePhase::Replaying {
            return false;
        }
        let Some(recorded) = recorded else {
            self.recording_stopped = true;
            return false;
        };
        let Some(delivered) = self.delivered else {
            return false;
        };
        if recorded - delivered <= self.live_add_window {
            self.phase = MergePhase::AwaitingLive;
            return true;
        }
        false
    }

    /// The live image appeared, joined at `join_position`.
    pub fn on_live_image(&mut self, join_position: i64) {
        if self.phase == MergePhase::AwaitingLive {
            self.live_join = Some(join_position);
            self.phase = MergePhase::CatchingUp;
        }
    }

    /// Whether the replay delivered up to the live image's join position: time to stop the
    /// replay and go live.
    pub fn switch_due(&self) -> bool {
        self.phase == MergePhase::CatchingUp
            && matches!((self.delivered, self.live_join), (Some(d), Some(j)) if d >= j)
    }

    /// The replay was stopped; from now on the live image is polled.
    pub fn on_switch(&mut self) {
        if self.switch_due() {
            self.phase = MergePhase::Merged;
        }
    }

    /// A live fragment ending at `end` (its header's position) with a frame of `frame_length`
    /// bytes: `Ok(true)` to deliver it, `Ok(false)` to skip it (the replay delivered it).
    ///
    /// # Errors
    /// [`Misaligned`] if the fragment starts before the delivered position and ends after it:
    /// the live and replayed frames do not line up, so the stream cannot be joined without a
    /// gap or a duplicate.
    pub fn accept_live(&mut self, end: i64, frame_length: i32) -> Result<bool, Misaligned> {
        if self.phase != MergePhase::Merged {
            return Ok(false);
        }
        let delivered = self.delivered.unwrap_or(i64::MIN);
        if end <= delivered {
            return Ok(false);
        }
        let start = end - aligned_frame_length(frame_length);
        if start < delivered {
            return Err(Misaligned {
                start,
                end,
                delivered,
            });
        }
        self.delivered = Some(end);
        Ok(true)
    }

    /// The live image's position after a poll (padding frames are consumed without a fragment).
    pub fn on_live_progress(&mut self, image_position: i64) {
        if self.phase == MergePhase::Merged {
            self.delivered = Some(
                self.delivered
                    .map_or(image_position, |d| d.max(image_position)),
            );
        }
    }

    /// Whether the archive said the recording stopped.
    pub fn recording_stopped(&self) -> bool {
        self.recording_stopped
    }

    /// The stream ended (the replay of a stopped recording finished, or the live image ended).
    pub fn on_end(&mut self) {
        self.phase = MergePhase::Ended;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: i64 = 16 * 1024;

    #[test]
    fn the_live_subscription_waits_until_the_replay_is_within_the_window() {
        let mut decider = MergeDecider::new(WINDOW);
        assert!(decider.wants_recording_position());
        assert!(
            !decider.on_recording_position(Some(10_000)),
            "no replay image yet"
        );
        decider.on_replay_image(1024);
        assert_eq!(decider.delivered(), Some(1024));
        assert!(!decider.on_recording_position(Some(1024 + WINDOW + 32)));
        assert_eq!(decider.phase(), MergePhase::Replaying);
        decider.on_replay_progress(2048);
        assert!(decider.on_recording_position(Some(2048 + WINDOW)));
        assert_eq!(decider.phase(), MergePhase::AwaitingLive);
        assert!(!decider.wants_recording_position());
        assert!(!decider.on_recording_position(Some(0)), "only once");
    }

    #[test]
    fn the_switch_comes_when_the_replay_reaches_the_live_join_and_overlap_is_skipped() {
        let mut decider = MergeDecider::new(WINDOW);
        decider.on_replay_image(0);
        decider.on_replay_progress(4096);
        assert!(decider.on_recording_position(Some(5000)));
        assert!(!decider.switch_due());
        decider.on_live_image(6144);
        assert_eq!(decider.phase(), MergePhase::CatchingUp);
        assert!(!decider.switch_due(), "replay at 4096, live joined at 6144");
        assert!(decider.polls_replay() && !decider.polls_live());
        // The replay overshoots the join position: that part must not come again from live.
        decider.on_replay_progress(7168);
        assert!(decider.switch_due());
        decider.on_switch();
        assert_eq!(decider.phase(), MergePhase::Merged);
        assert!(decider.polls_live() && !decider.polls_replay());
        // Replay progress after the switch does not count.
        decider.on_replay_progress(9000);
        assert_eq!(decider.delivered(), Some(7168));
        // Live fragments from 6144: those ending at or before 7168 are skipped.
        assert_eq!(decider.accept_live(6144 + 512, 500), Ok(false));
        assert_eq!(decider.accept_live(7168, 512), Ok(false));
        assert_eq!(decider.accept_live(7168 + 96, 90), Ok(true));
        assert_eq!(decider.delivered(), Some(7264));
        assert_eq!(decider.accept_live(7264 + 32, 32), Ok(true));
    }

    #[test]
    fn a_live_join_behind_the_replay_switches_at_once() {
        let mut decider = MergeDecider::new(WINDOW);
        decider.on_replay_image(0);
        decider.on_replay_progress(8192);
        assert!(decider.on_recording_position(Some(8192)));
        decider.on_live_image(4096);
        assert!(decider.switch_due());
        decider.on_switch();
        assert_eq!(decider.accept_live(8192, 4096), Ok(false));
        assert_eq!(decider.accept_live(8192 + 64, 40), Ok(true));
    }

    #[test]
    fn a_live_fragment_across_the_delivered_position_is_refused() {
        let mut decider = MergeDecider::new(WINDOW);
        decider.on_replay_image(0);
        decider.on_replay_progress(1000);
        decider.on_recording_position(Some(1000));
        decider.on_live_image(0);
        decider.on_switch();
        assert_eq!(
            decider.accept_live(1024, 64),
            Err(Misaligned {
                start: 960,
                end: 1024,
                delivered: 1000
            })
        );
    }

    #[test]
    fn a_stopped_recording_never_adds_live() {
        let mut decider = MergeDecider::new(WINDOW);
        decider.on_replay_image(0);
        assert!(!decider.on_recording_position(None));
        assert!(decider.recording_stopped());
        assert!(!decider.wants_recording_position());
        decider.on_end();
        assert_eq!(decider.phase(), MergePhase::Ended);
        assert!(!decider.polls_replay() && !decider.polls_live());
    }

    #[test]
    fn the_default_window_is_a_quarter_term_up_to_32_mib() {
        assert_eq!(MergeDecider::default_live_add_window(64 * 1024), 16 * 1024);
        assert_eq!(
            MergeDecider::default_live_add_window(1 << 30),
            32 * 1024 * 1024
        );
        assert_eq!(aligned_frame_length(33), 64);
        assert_eq!(aligned_frame_length(64), 64);
    }

    mod model {
        use super::super::*;
        use proptest::prelude::*;

        /// One frame of a stream: where it starts, its unaligned length, whether it is padding.
        #[derive(Debug, Clone, Copy)]
        struct Frame {
            start: i64,
            length: i32,
            padding: bool,
        }

        impl Frame {
            fn end(&self) -> i64 {
                self.start + aligned_frame_length(self.length)
            }
        }

        fn stream(lengths: &[(i32, bool)]) -> Vec<Frame> {
            let mut start = 0;
            lengths
                .iter()
                .map(|&(length, padding)| {
                    let frame = Frame {
                        start,
                        length,
                        padding,
                    };
                    start = frame.end();
                    frame
                })
                .collect()
        }

        proptest! {
            /// The merge against a model: the replay and the live image carry the same frames;
            /// the replay is polled in batches, the live image joins at any frame boundary at or
            /// after the replay's start, the replay may overshoot the join. Every data frame
            /// from the start on must be delivered once, in order, whatever the batches.
            #[test]
            fn every_frame_from_the_start_is_delivered_once_in_order(
                lengths in prop::collection::vec((33i32..3000, prop::bool::weighted(0.1)), 20..200),
                start_pick in 0usize..1000,
                join_pick in 0usize..1000,
                batches in prop::collection::vec(1usize..8, 1..64),
                lead in 0i64..40_000,
                window in 0i64..20_000,
                extra_replay_batches in 0usize..4,
            ) {
                let frames = stream(&lengths);
                let first = start_pick % frames.len();
                let mut decider = MergeDecider::new(window);
                let mut delivered_frames: Vec<usize> = Vec::new();
                let mut batch = batches.iter().cycle();
                let mut replay_next = first;
                decider.on_replay_image(frames[first].start);
                let mut live_next: Option<usize> = None;
                let mut steps_after_add: Option<usize> = None;
                let mut guard = 0;
                while replay_next < frames.len() || live_next.is_some_and(|n| n < frames.len()) {
                    guard += 1;
                    prop_assert!(guard < 10_000, "no progress");
                    if decider.polls_replay() && replay_next < frames.len() {
                        let take = *batch.next().unwrap_or(&1);
                        for _ in 0..take {
                            if replay_next >= frames.len() {
                                break;
                            }
                            if !frames[replay_next].padding {
                                delivered_frames.push(replay_next);
                            }
                            replay_next += 1;
                        }
                        let position = frames
                            .get(replay_next)
                            .map_or_else(|| frames[frames.len() - 1].end(), |f| f.start);
                        decider.on_replay_progress(position);
                        // The recording is ahead of the replay by up to `lead`.
                        if decider.wants_recording_position() {
                            let end = frames[frames.len() - 1].end();
                            let recorded = (position + lead).min(end);
                            if decider.on_recording_position(Some(recorded)) {
                                steps_after_add = Some(0);
                            }
                        }
                    } else if decider.polls_replay() {
                        // The replay ran out of frames: the recording's end is the stream's.
                        if decider.phase() == MergePhase::Replaying {
                            let end = frames[frames.len() - 1].end();
                            if decider.on_recording_position(Some(end)) {
                                steps_after_add = Some(0);
                            }
                        }
                    }
                    if let Some(steps) = steps_after_add.as_mut() {
                        *steps += 1;
                        if *steps > extra_replay_batches && decider.phase() == MergePhase::AwaitingLive {
                            // The live image joins at a frame boundary at or after the start.
                            let join = first + join_pick % (frames.len() - first);
                            live_next = Some(join);
                            decider.on_live_image(frames[join].start);
                        }
                    }
                    if decider.switch_due() {
                        decider.on_switch();
                    }
                    if decider.polls_live() {
                        let Some(next) = live_next.as_mut() else {
                            prop_assert!(false, "merged without a live image");
                            break;
                        };
                        let take = *batch.next().unwrap_or(&1);
                        for _ in 0..take {
                            if *next >= frames.len() {
                                break;
                            }
                            let frame = frames[*next];
                            if !frame.padding {
                                match decider.accept_live(frame.end(), frame.length) {
                                    Ok(true) => delivered_frames.push(*next),
                                    Ok(false) => {}
                                    Err(error) => prop_assert!(false, "{error:?}"),
                                }
                            }
                            *next += 1;
                        }
                        let position = frames
                            .get(*next)
                            .map_or_else(|| frames[frames.len() - 1].end(), |f| f.start);
                        decider.on_live_progress(position);
                        replay_next = frames.len();
                    }
                }
                let expected: Vec<usize> =
                    (first..frames.len()).filter(|&index| !frames[index].padding).collect();
                prop_assert_eq!(delivered_frames, expected);
            }
        }
    }
}
