//! Recording events: what Aeron's archive sends as `RecordingSignal`s, delivered to every
//! subscriber of [`Archive::subscribe_events`](crate::Archive::subscribe_events).

use std::sync::mpsc::{self, Receiver, Sender};
use tern_store::RecordingId;

/// What happened to a recording (Aeron's `RecordingSignal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordingSignalKind {
    /// A new recording began; the position is its start position.
    Start,
    /// A recording stopped; the position is its stop position.
    Stop,
    /// A stopped recording is being extended; the position is where it resumes (its old stop).
    Extend,
    /// Files of the recording were deleted (truncate or purge); no subscription, no position.
    Delete,
    /// The recording could not be written (a full disk, a file error): what its image carries
    /// from here on is not stored. The position is where it stopped (its start position if it
    /// failed to open, and -1 with no recording id if it failed before it had one); the error
    /// is in [`Archive::recording_failures`](crate::Archive::recording_failures). A `Stop`
    /// follows for a recording that had started.
    Failed,
}

/// One recording event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingEvent {
    /// What happened.
    pub signal: RecordingSignalKind,
    /// The recording; `None` only for a [`RecordingSignalKind::Failed`] before it had an id.
    pub recording_id: Option<RecordingId>,
    /// The recording subscription it came through (-1 for [`RecordingSignalKind::Delete`]).
    pub subscription_id: i64,
    /// The position (see [`RecordingSignalKind`]; -1 for [`RecordingSignalKind::Delete`]).
    pub position: i64,
}

/// The subscribers to recording events (owned by the archive conductor, which alone sends them).
#[derive(Debug, Default)]
pub(crate) struct EventBus {
    subscribers: Vec<Sender<RecordingEvent>>,
}

impl EventBus {
    /// A new subscriber: it sees every event sent from now on.
    pub(crate) fn subscribe(&mut self) -> Receiver<RecordingEvent> {
        let (sender, receiver) = mpsc::channel();
        self.subscribers.push(sender);
        receiver
    }

    /// Send an event to every subscriber; a subscriber whose receiver was dropped is forgotten.
    pub(crate) fn send(&mut self, event: RecordingEvent) {
        tracing::debug!("recording event {event:?}");
        self.subscribers
            .retain(|subscriber| subscriber.send(event).is_ok());
    }

    /// Send `signal` for a recording.
    pub(crate) fn signal(
        &mut self,
        signal: RecordingSignalKind,
        recording_id: RecordingId,
        subscription_id: i64,
        position: i64,
    ) {
        self.send(RecordingEvent {
            signal,
            recording_id: Some(recording_id),
            subscription_id,
            position,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscriber_gets_every_event_and_dropped_ones_are_forgotten() {
        let mut bus = EventBus::default();
        let first = bus.subscribe();
        let second = bus.subscribe();
        bus.signal(RecordingSignalKind::Start, RecordingId::new(3), 7, 64);
        drop(second);
        bus.signal(RecordingSignalKind::Stop, RecordingId::new(3), 7, 128);
        assert_eq!(bus.subscribers.len(), 1);
        let seen: Vec<RecordingSignalKind> = first.try_iter().map(|event| event.signal).collect();
        assert_eq!(
            seen,
            vec![RecordingSignalKind::Start, RecordingSignalKind::Stop]
        );
    }
}
