//! Helpers the archive's integration test binaries share: messages that name their publisher and
//! sequence, polling them, replaying into a subscription, recording a stream and stopping it.
#![allow(dead_code)]

use std::time::{Duration, Instant};
use tern_archive::{Archive, RecordingId, ReplayRequest, ReplayState, SourceLocation};
use tern_transport::{BackoffIdle, Client, FragmentAssembler, Idle};

use tern_testkit::{offer, wait_recorded, wait_until};

/// Poll `subscription`, adding each message's (image session id, sequence) to `seen`.
pub fn poll_sequences(
    subscription: &tern_transport::Subscription,
    seen: &mut Vec<(i32, u32)>,
) -> usize {
    subscription
        .poll(
            |fragment, header| {
                seen.push((
                    header.session_id,
                    u32::from_le_bytes(fragment[4..8].try_into().expect("4 bytes")),
                ))
            },
            16,
        )
        .expect("poll")
}

/// A message that says who sent it and its sequence, then filler derived from both.
pub fn message(publisher: u32, sequence: u32, length: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(length.max(8));
    bytes.extend_from_slice(&publisher.to_le_bytes());
    bytes.extend_from_slice(&sequence.to_le_bytes());
    while bytes.len() < length {
        bytes.push((publisher as usize * 31 + sequence as usize * 7 + bytes.len()) as u8);
    }
    bytes
}

/// Replay `request` into a subscription on the same driver and return (message, position after).
pub fn replay_messages(
    archive: &Archive,
    client: &Client,
    mut request: ReplayRequest,
    expected: usize,
) -> Vec<(Vec<u8>, i64)> {
    request.channel = "aeron:ipc".into();
    request.stream_id = 9000 + (Client::nano_clock() % 1000) as i32;
    let subscription = client
        .add_subscription(&request.channel, request.stream_id)
        .expect("replay subscription");
    let replay_id = archive.start_replay(&request).expect("replay starts");
    let status = archive.replay_status(replay_id).expect("status");
    let mut assembler = FragmentAssembler::new();
    let mut received = Vec::new();
    let mut idle = BackoffIdle::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.len() < expected {
        assert!(
            Instant::now() < deadline,
            "replay gave {} of {expected} messages: {:?} {:?}",
            received.len(),
            status.state(),
            status.error()
        );
        let work = subscription
            .poll(
                |fragment, header| {
                    assert_eq!(
                        header.session_id,
                        replay_id.image_session_id(),
                        "replay image session id"
                    );
                    assembler.on_fragment(fragment, header, &mut |message, header| {
                        received.push((message.to_vec(), header.position))
                    })
                },
                64,
            )
            .expect("poll");
        idle.idle(work);
    }
    wait_until("the replay to finish", Duration::from_secs(10), || {
        status.is_finished()
    });
    assert_eq!(status.state(), ReplayState::Done, "{:?}", status.error());
    received
}

/// Record `aeron:ipc` `stream` from an exclusive publication; returns it once its recording
/// has started, with the recording's id.
pub fn start_live_recording(
    archive: &Archive,
    client: &Client,
    stream: i32,
) -> (tern_transport::ExclusivePublication, RecordingId) {
    archive
        .start_recording("aeron:ipc", stream, SourceLocation::Remote)
        .expect("record");
    let publication = client
        .add_exclusive_publication("aeron:ipc", stream)
        .expect("pub");
    let session_id = publication.session_id();
    wait_until("the recording to start", Duration::from_secs(10), || {
        archive.find_recording(stream, session_id).is_some()
    });
    let recording_id = archive
        .find_recording(stream, session_id)
        .expect("recording")
        .descriptor
        .recording_id;
    (publication, recording_id)
}

/// Record `count` messages (of `length(sequence)` bytes) published on `aeron:ipc` `stream`, wait
/// until all are recorded, stop the recording; returns its id and end position.
pub fn record_and_stop(
    archive: &Archive,
    client: &Client,
    stream: i32,
    count: u32,
    length: impl Fn(u32) -> usize,
) -> (RecordingId, i64) {
    let subscription_id = archive
        .start_recording("aeron:ipc", stream, SourceLocation::Remote)
        .expect("record");
    let publication = client.add_publication("aeron:ipc", stream).expect("pub");
    let session_id = publication.session_id();
    wait_until("the recording to start", Duration::from_secs(10), || {
        archive.find_recording(stream, session_id).is_some()
    });
    for sequence in 0..count {
        offer(&publication, &message(0, sequence, length(sequence)));
    }
    let recording_id = archive
        .find_recording(stream, session_id)
        .expect("recording")
        .descriptor
        .recording_id;
    let end = publication.position();
    wait_recorded(archive, recording_id, end);
    archive.stop_recording(subscription_id).expect("stop");
    (recording_id, end)
}
