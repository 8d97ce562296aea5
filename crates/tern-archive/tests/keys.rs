//! Replays filtered by key against a real embedded media driver: every key kind, back to back or
//! keeping positions, following, pacing, pausing, seeking, truncation, live reading in passes.

mod support;

use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::{Duration, Instant};
use tern_archive::{
    egress_header, Archive, ArchiveConfig, ArchiveView, FieldWidth, KeyFilter, KeyKind,
    RecordingId, ReplayRequest, ReplayState, SourceLocation, TimeSource,
};
use tern_transport::{BackoffIdle, Client, FragmentAssembler, Idle, Publication};

use support::*;
use tern_testkit::{archive, driver, offer, offer_with, seed, wait_recorded, wait_until, TERM};

// ---- Replays filtered by key ------------------------------------------------------------------

/// A message of `publisher`: an Aeron Cluster egress `SessionMessageHeader` (template 1, or 2 when
/// `egress` is false: not an egress message) with `cluster_session`, then the publisher (i32 at
/// 32) and its sequence (u32 at 36), then filler to `length` (at least 40).
fn keyed_message(
    publisher: u32,
    sequence: u32,
    cluster_session: i64,
    egress: bool,
    length: usize,
) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(length.max(40));
    bytes.extend_from_slice(&24u16.to_le_bytes());
    bytes.extend_from_slice(&(if egress { 1u16 } else { 2u16 }).to_le_bytes());
    bytes.extend_from_slice(&111u16.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&3i64.to_le_bytes()); // leadershipTermId
    bytes.extend_from_slice(&cluster_session.to_le_bytes());
    bytes.extend_from_slice(&1_700_000_000_000i64.to_le_bytes()); // timestamp
    bytes.extend_from_slice(&(publisher as i32).to_le_bytes());
    bytes.extend_from_slice(&sequence.to_le_bytes());
    while bytes.len() < length {
        bytes.push((publisher as usize * 31 + sequence as usize * 7 + bytes.len()) as u8);
    }
    bytes
}

/// One message sent, with the keys a test expects it to have.
#[derive(Debug, Clone)]
struct Keyed {
    bytes: Vec<u8>,
    /// The frame header's reserved value of its first fragment.
    reserved: i64,
    /// Its clusterSessionId if it is an egress message.
    cluster: Option<i64>,
    /// The i64 at 16 (the clusterSessionId field, whatever the template).
    field16: i64,
    /// The i32 at 32 (the publisher).
    field32: i64,
}

impl Keyed {
    /// Whether the message has `filter`'s key, worked out from what was sent.
    fn has(&self, filter: &KeyFilter) -> bool {
        let key = match filter.kind {
            KeyKind::Reserved => Some(self.reserved),
            KeyKind::ClusterEgress => self.cluster,
            KeyKind::Field {
                offset: 16,
                width: FieldWidth::I64,
            } => Some(self.field16),
            KeyKind::Field {
                offset: 32,
                width: FieldWidth::I32,
            } => Some(self.field32),
            other => panic!("no expectation for {other}"),
        };
        key == Some(filter.value)
    }
}

/// Replay `request` on a new IPC stream and collect (message, position after it) until the replay
/// has finished and the subscriber has consumed up to its last position (padding included).
fn replay_keyed(
    archive: &Archive,
    client: &Client,
    mut request: ReplayRequest,
) -> (
    Vec<(Vec<u8>, i64)>,
    std::sync::Arc<tern_archive::ReplayStatus>,
) {
    request.channel = "aeron:ipc".into();
    request.stream_id = 20_000 + (Client::nano_clock() % 10_000) as i32;
    let subscription = client
        .add_subscription(&request.channel, request.stream_id)
        .expect("replay subscription");
    let replay_id = archive.start_replay(&request).expect("replay starts");
    let status = archive.replay_status(replay_id).expect("status");
    let mut assembler = FragmentAssembler::new();
    let mut received = Vec::new();
    let mut idle = BackoffIdle::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "replay {:?} stuck after {} messages: {:?} {:?}",
            request.key,
            received.len(),
            status.state(),
            status.error()
        );
        let work = subscription
            .poll(
                |fragment, header| {
                    assert_eq!(header.session_id, replay_id.image_session_id());
                    assembler.on_fragment(fragment, header, &mut |message, header| {
                        received.push((message.to_vec(), header.position))
                    })
                },
                64,
            )
            .expect("poll");
        if work == 0 && status.is_finished() {
            let consumed = subscription
                .image_by_session_id(replay_id.image_session_id())
                .map_or(i64::MIN, |image| image.position());
            if consumed >= status.position() || status.state() != ReplayState::Done {
                break;
            }
        }
        idle.idle(work);
    }
    assert_eq!(status.state(), ReplayState::Done, "{:?}", status.error());
    (received, status)
}

fn keyed_request(recording_id: RecordingId, key: &str) -> ReplayRequest {
    ReplayRequest {
        recording_id,
        key: Some(key.parse().expect("key")),
        keep_positions: true,
        ..ReplayRequest::default()
    }
}

fn index_file(
    dir: &Path,
    recording_id: RecordingId,
    base: i64,
    kind: &KeyKind,
) -> std::path::PathBuf {
    dir.join(tern_archive::key_index::key_index_file_name(
        recording_id,
        base,
        kind,
    ))
}

#[test]
fn key_filters_of_every_kind_replay_exactly_one_keys_messages_of_interleaved_publishers() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let driver = driver("keys");
    let data = tempfile::tempdir().expect("temp dir");
    let indexed: Vec<KeyKind> = ["reserved", "cluster-egress", "field:16:i64"]
        .iter()
        .map(|kind| kind.parse().expect("kind"))
        .collect();
    let mut config = ArchiveConfig::new(data.path(), driver.dir());
    config.segment_length = 2 * TERM as i32;
    config.key_index = indexed.clone();
    let archive = Archive::launch(config).expect("archive starts");
    let client = Client::connect(driver.dir()).expect("client");
    let subscription_id = archive
        .start_recording("aeron:ipc", 1020, SourceLocation::Remote)
        .expect("record");
    // Four concurrent publications on one IPC channel share one log: one image, one recording.
    let publications: Vec<Publication> = (0..4)
        .map(|_| client.add_publication("aeron:ipc", 1020).expect("pub"))
        .collect();
    let session_id = publications[0].session_id();
    wait_until("the recording to start", Duration::from_secs(10), || {
        archive.find_recording(1020, session_id).is_some()
    });
    let recording_id = archive
        .find_recording(1020, session_id)
        .expect("recording")
        .descriptor
        .recording_id;
    // A follow replay of one cluster session, started before anything is published.
    let live_key: KeyFilter = "cluster-egress:1002".parse().expect("key");
    let live = client.add_subscription("aeron:ipc", 4300).expect("sub");
    let live_replay = archive
        .start_replay(&ReplayRequest {
            follow: true,
            channel: "aeron:ipc".into(),
            stream_id: 4300,
            ..keyed_request(recording_id, "cluster-egress:1002")
        })
        .expect("follow replay");
    let live_status = archive.replay_status(live_replay).expect("status");
    let mut live_assembler = FragmentAssembler::new();
    let mut live_received: Vec<Vec<u8>> = Vec::new();
    let mut poll_live = |received: &mut Vec<Vec<u8>>| {
        live.poll(
            |fragment, header| {
                live_assembler.on_fragment(fragment, header, &mut |message, _| {
                    received.push(message.to_vec())
                })
            },
            64,
        )
        .expect("poll")
    };

    let max_payload = publications[0].max_payload_length();
    let mut sent: Vec<Keyed> = Vec::new();
    let mut sequences = [0u32; 4];
    for _ in 0..1500 {
        let publisher = rng.gen_range(0..4u32);
        let sequence = sequences[publisher as usize];
        sequences[publisher as usize] += 1;
        let cluster_session = 1000 + rng.gen_range(0..5i64);
        let egress = rng.gen_range(0..7) != 0;
        let fragmented = rng.gen_bool(0.1);
        let length = if fragmented {
            rng.gen_range(max_payload + 1..4 * max_payload)
        } else {
            rng.gen_range(40..300)
        };
        let bytes = keyed_message(publisher, sequence, cluster_session, egress, length);
        let publication = &publications[publisher as usize];
        // Small messages carry their publisher in the reserved value; a fragmented one cannot be
        // claimed, and has the default, 0.
        let reserved = if fragmented {
            offer(publication, &bytes);
            0
        } else {
            let reserved = i64::from(publisher) + 1;
            offer_with(|| {
                publication.try_claim(bytes.len(), reserved, |buffer| {
                    buffer.copy_from_slice(&bytes)
                })
            });
            reserved
        };
        sent.push(Keyed {
            reserved,
            cluster: egress.then_some(cluster_session),
            field16: cluster_session,
            field32: i64::from(publisher),
            bytes,
        });
        poll_live(&mut live_received);
    }
    // A publisher of its own session on the same stream: a second recording.
    let exclusive = client
        .add_exclusive_publication("aeron:ipc", 1020)
        .expect("exclusive");
    wait_until("the second recording", Duration::from_secs(10), || {
        archive
            .find_recording(1020, exclusive.session_id())
            .is_some()
    });
    for sequence in 0..3 {
        offer_with(|| exclusive.offer(&keyed_message(9, sequence, 1002, true, 64)));
    }
    let second = archive
        .find_recording(1020, exclusive.session_id())
        .expect("second")
        .descriptor
        .recording_id;
    let end = publications[0].position();
    wait_recorded(&archive, recording_id, end);
    wait_recorded(&archive, second, exclusive.position());
    let live_expected: Vec<Vec<u8>> = sent
        .iter()
        .filter(|message| message.has(&live_key))
        .map(|message| message.bytes.clone())
        .collect();
    wait_until("the live filtered replay", Duration::from_secs(20), || {
        poll_live(&mut live_received);
        live_received.len() >= live_expected.len()
    });
    assert!(!live_status.is_finished(), "a follow replay waits for more");
    archive.stop_recording(subscription_id).expect("stop");
    wait_until("the follow replay to end", Duration::from_secs(10), || {
        poll_live(&mut live_received);
        live_status.is_finished()
    });
    assert_eq!(
        live_status.state(),
        ReplayState::Done,
        "{:?}",
        live_status.error()
    );
    assert_eq!(
        live_received, live_expected,
        "live: exactly the key's messages, in order"
    );
    assert!(
        live_status.search_stats().scanned_bytes > 0,
        "the segment being written is scanned"
    );

    // Every finished segment gets an index file per kind once the recording stopped.
    let view = ArchiveView::open(data.path()).expect("view");
    let segments: Vec<i64> = view
        .segment_files(recording_id)
        .iter()
        .map(|segment| segment.base)
        .filter(|base| *base < end)
        .collect();
    assert!(segments.len() >= 4, "several segments: {segments:?}");
    wait_until("the index files", Duration::from_secs(10), || {
        segments.iter().all(|base| {
            indexed
                .iter()
                .all(|kind| index_file(data.path(), recording_id, *base, kind).exists())
        })
    });
    // Ground truth: every message as recorded (with its position), filtered by what was sent.
    let mut recorded: Vec<(Vec<u8>, i64)> = Vec::new();
    view.messages(recording_id, None, None, |message, header| {
        recorded.push((message.to_vec(), header.position));
        true
    })
    .expect("read all");
    assert_eq!(
        recorded.iter().map(|(bytes, _)| bytes).collect::<Vec<_>>(),
        sent.iter()
            .map(|message| &message.bytes)
            .collect::<Vec<_>>()
    );
    // The messages `range` of the recording that have the key.
    let expected = |filter: &KeyFilter, range: std::ops::Range<usize>| -> Vec<(Vec<u8>, i64)> {
        sent[range.clone()]
            .iter()
            .zip(&recorded[range])
            .filter(|(message, _)| message.has(filter))
            .map(|(_, recorded)| recorded.clone())
            .collect()
    };
    let every = 0..sent.len();
    let start = archive
        .recording(recording_id)
        .expect("info")
        .descriptor
        .start_position;
    let filters = [
        "reserved:1",
        "reserved:2",
        "reserved:3",
        "reserved:4",
        "reserved:0",
        "reserved:77",
        "cluster-egress:1000",
        "cluster-egress:1003",
        "cluster-egress:5",
        "field:16:i64:1003",
        "field:32:i32:2",
    ];
    let mut nonempty = 0;
    for text in filters {
        let filter: KeyFilter = text.parse().expect("filter");
        let wanted = expected(&filter, every.clone());
        nonempty += usize::from(!wanted.is_empty());
        let (received, status) = replay_keyed(&archive, &client, keyed_request(recording_id, text));
        assert_eq!(received.len(), wanted.len(), "{text}: how many");
        assert!(
            received == wanted,
            "{text}: exactly the key's messages, in order, at their recorded positions"
        );
        assert_eq!(
            status.position(),
            end,
            "{text}: padded to the recording's end"
        );
        let stats = status.search_stats();
        if indexed.contains(&filter.kind) {
            assert_eq!(
                (stats.index_segments, stats.scanned_bytes),
                (segments.len() as u64, 0),
                "{text}: found through the index alone"
            );
        } else {
            assert_eq!(stats.index_segments, 0, "{text}");
            assert_eq!(stats.scanned_bytes, (end - start) as u64, "{text}: scanned");
        }
        let mut offline = Vec::new();
        let read = view
            .messages_with_key(recording_id, None, None, &filter, |message, header| {
                offline.push((message.to_vec(), header.position));
                true
            })
            .expect("offline filtered read");
        assert!(offline == wanted, "{text}: offline");
        assert_eq!(read.resume, end);
    }
    assert!(nonempty >= 8, "most filters select something");

    // From message 500 (where message 499 ends is a frame start) to the end of message 1000.
    let from = recorded[498].1;
    let to = recorded[1000].1;
    let filter: KeyFilter = "reserved:3".parse().expect("filter");
    let (received, status) = replay_keyed(
        &archive,
        &client,
        ReplayRequest {
            position: Some(from),
            length: Some(to - from),
            ..keyed_request(recording_id, "reserved:3")
        },
    );
    assert!(received == expected(&filter, 499..1001), "from and length");
    assert!(status.position() <= to);

    // A missing index file and a damaged one: those segments are scanned, nothing changes.
    let reserved = KeyKind::Reserved;
    let egress = KeyKind::ClusterEgress;
    std::fs::remove_file(index_file(
        data.path(),
        recording_id,
        segments[1],
        &reserved,
    ))
    .expect("remove");
    let damaged = index_file(data.path(), recording_id, segments[2], &egress);
    let mut bytes = std::fs::read(&damaged).expect("read");
    bytes[64 + 9] ^= 0x04; // a run's first position in the key table
    std::fs::write(&damaged, bytes).expect("damage");
    for text in ["reserved:2", "cluster-egress:1003"] {
        let filter: KeyFilter = text.parse().expect("filter");
        let (received, status) = replay_keyed(&archive, &client, keyed_request(recording_id, text));
        assert!(
            received == expected(&filter, every.clone()),
            "{text} without its index"
        );
        let stats = status.search_stats();
        assert_eq!(stats.index_segments, segments.len() as u64 - 1, "{text}");
        assert_eq!(stats.scanned_segments, 1, "{text}");
    }
    // verify finds both, rebuilds them, and the replays use the index again.
    let report = view.verify(recording_id, |_| {}).expect("verify");
    assert!(report.problem.is_none());
    let rebuilt: Vec<(i64, KeyKind)> = report
        .key_indexes
        .iter()
        .filter(|check| check.rebuilt)
        .map(|check| (check.segment_base, check.kind))
        .collect();
    assert_eq!(
        rebuilt,
        vec![(segments[1], reserved), (segments[2], egress)],
        "{:?}",
        report.key_indexes
    );
    assert_eq!(report.key_indexes.len(), segments.len() * indexed.len());
    assert!(report.key_indexes.iter().any(|c| c.found == "missing"));
    assert!(report
        .key_indexes
        .iter()
        .any(|c| c.found.contains("key table checksum")));
    let again = view.verify(recording_id, |_| {}).expect("verify again");
    assert!(again.key_indexes.iter().all(|check| check.is_ok()));
    let (_, status) = replay_keyed(&archive, &client, keyed_request(recording_id, "reserved:2"));
    assert_eq!(status.search_stats().scanned_bytes, 0);

    // A session key selects a whole recording, or names the recording of that session.
    let (received, _) = replay_keyed(
        &archive,
        &client,
        keyed_request(recording_id, &format!("session:{session_id}")),
    );
    assert!(received == recorded, "the whole recording");
    let other = archive
        .start_replay(&ReplayRequest {
            channel: "aeron:ipc".into(),
            stream_id: 4400,
            ..keyed_request(recording_id, &format!("session:{}", exclusive.session_id()))
        })
        .expect_err("another session's key");
    assert!(
        other
            .to_string()
            .contains(&format!("is recording {second}")),
        "{other}"
    );
    let nowhere = view
        .messages_with_key(
            recording_id,
            None,
            None,
            &"session:12345".parse().expect("key"),
            |_, _| true,
        )
        .expect_err("no such session");
    assert!(
        nowhere.to_string().contains("no recording of stream 1020"),
        "{nowhere}"
    );
    // A field no first fragment can hold is refused, not scanned for in vain.
    let beyond = archive
        .start_replay(&ReplayRequest {
            channel: "aeron:ipc".into(),
            stream_id: 4401,
            ..keyed_request(recording_id, "field:1400:i32:1")
        })
        .expect_err("a field past the MTU");
    assert!(
        beyond.to_string().contains("past the first fragment"),
        "{beyond}"
    );
}

/// A message as tern's cluster sends a client and records it: tern's egress header v1 (48 bytes)
/// with `session`, its `sequence`, the cluster time `timestamp_ns`, then a payload of `length`
/// bytes derived from `number`. With `egress` false the same bytes but kind 11: not an egress
/// message, so no key and no time of its own.
fn tern_egress_message(
    session: i64,
    sequence: u64,
    number: u64,
    timestamp_ns: i64,
    egress: bool,
    length: usize,
) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(egress_header::LENGTH + length);
    egress_header::encode_header(
        session,
        sequence,
        2 * number,
        timestamp_ns,
        number,
        &mut bytes,
    );
    if !egress {
        bytes[egress_header::KIND_OFFSET] = 11;
    }
    bytes.extend((0..length).map(|at| (number as usize * 13 + at) as u8));
    bytes
}

#[test]
fn tern_egress_messages_are_indexed_and_replayed_by_cluster_session_from_a_cluster_time() {
    let driver = driver("ternegress");
    let data = tempfile::tempdir().expect("temp dir");
    let kind: KeyKind = "tern-egress".parse().expect("kind");
    assert_eq!(kind, KeyKind::TernEgress);
    let mut config = ArchiveConfig::new(data.path(), driver.dir());
    config.segment_length = 2 * TERM as i32;
    config.key_index = vec![kind];
    let archive = Archive::launch(config).expect("archive starts");
    let client = Client::connect(driver.dir()).expect("client");
    let subscription_id = archive
        .start_recording("aeron:ipc", 1050, SourceLocation::Remote)
        .expect("record");
    let publication = client.add_publication("aeron:ipc", 1050).expect("pub");
    let session_id = publication.session_id();
    wait_until("the recording to start", Duration::from_secs(10), || {
        archive.find_recording(1050, session_id).is_some()
    });
    let recording_id = archive
        .find_recording(1050, session_id)
        .expect("recording")
        .descriptor
        .recording_id;
    // Cluster sessions 7, 8 and 9 in turn, one message a millisecond of cluster time (published
    // back to back: only the cluster's clock says when); every tenth is not egress; some are
    // fragmented.
    let base_ns = 1_700_000_000_000_000_000i64;
    let time_of = |number: u64| base_ns + number as i64 * 1_000_000;
    let max_payload = publication.max_payload_length();
    let mut sequences = std::collections::HashMap::new();
    // (number, cluster session if egress)
    let mut sent: Vec<(u64, Option<i64>)> = Vec::new();
    let mut starts = Vec::new();
    for number in 1..=600u64 {
        let session = 7 + (number % 3) as i64;
        let egress = !number.is_multiple_of(10);
        let sequence = if egress {
            let sequence = sequences.entry(session).or_insert(0u64);
            *sequence += 1;
            *sequence
        } else {
            0
        };
        let length = if number % 50 == 7 {
            3 * max_payload
        } else {
            (number as usize * 37) % 400
        };
        let bytes = tern_egress_message(session, sequence, number, time_of(number), egress, length);
        starts.push(publication.position());
        offer(&publication, &bytes);
        sent.push((number, egress.then_some(session)));
    }
    let end = publication.position();
    wait_recorded(&archive, recording_id, end);
    archive.stop_recording(subscription_id).expect("stop");

    // Every segment gets its tern-egress index once the recording stopped.
    let view = ArchiveView::open(data.path()).expect("view");
    let segments: Vec<i64> = view
        .segment_files(recording_id)
        .iter()
        .map(|segment| segment.base)
        .filter(|base| *base < end)
        .collect();
    assert!(segments.len() >= 2, "several segments: {segments:?}");
    wait_until("the index files", Duration::from_secs(10), || {
        segments
            .iter()
            .all(|base| index_file(data.path(), recording_id, *base, &kind).exists())
    });
    assert!(index_file(data.path(), recording_id, segments[0], &kind)
        .to_string_lossy()
        .ends_with("-0.tern-egress.kix"));
    let mut recorded: Vec<(Vec<u8>, i64)> = Vec::new();
    view.messages(recording_id, None, None, |message, header| {
        recorded.push((message.to_vec(), header.position));
        true
    })
    .expect("read all");
    assert_eq!(recorded.len(), sent.len());
    // The recorded messages of `session` from message `first` on.
    let expected = |session: i64, first: u64| -> Vec<(Vec<u8>, i64)> {
        sent.iter()
            .zip(&recorded)
            .filter(|((number, key), _)| *number >= first && *key == Some(session))
            .map(|(_, recorded)| recorded.clone())
            .collect()
    };

    // By key, through the index alone: each session's egress, in order, nothing else.
    for session in [7, 8, 9, 5] {
        let text = format!("tern-egress:{session}");
        let wanted = expected(session, 0);
        assert_eq!(wanted.is_empty(), session == 5, "{text}");
        let (received, status) =
            replay_keyed(&archive, &client, keyed_request(recording_id, &text));
        assert!(received == wanted, "{text}: exactly the session's messages");
        let headers: Vec<_> = received
            .iter()
            .map(|(bytes, _)| egress_header::decode(bytes).expect("a tern egress header"))
            .collect();
        assert!(headers.iter().all(|header| header.session_id == session));
        assert_eq!(
            headers
                .iter()
                .map(|header| header.sequence)
                .collect::<Vec<_>>(),
            (1..=headers.len() as u64).collect::<Vec<_>>(),
            "{text}: the session's sequence, none missing"
        );
        let stats = status.search_stats();
        assert_eq!(
            (stats.index_segments, stats.scanned_bytes),
            (segments.len() as u64, 0),
            "{text}: found through the index alone"
        );
        let filter: KeyFilter = text.parse().expect("filter");
        let mut offline = Vec::new();
        view.messages_with_key(recording_id, None, None, &filter, |message, header| {
            offline.push((message.to_vec(), header.position));
            true
        })
        .expect("offline filtered read");
        assert!(offline == wanted, "{text}: offline");
    }

    // From a cluster time: 300.5 ms after the base is message 301 (300 is not egress and keeps
    // the time of 299), as the archive and the offline view find it.
    let source: TimeSource = "tern-egress".parse().expect("source");
    assert_eq!(source, TimeSource::TernEgress);
    let at = time_of(300) + 500_000;
    let from = archive
        .position_at_time_from(recording_id, at, source)
        .expect("position at a cluster time");
    assert_eq!(from, starts[300], "message 301");
    assert_eq!(
        view.position_at_time_from(recording_id, at, source)
            .expect("offline"),
        from
    );
    assert_eq!(
        archive
            .position_at_time_from(recording_id, time_of(1) - 1, source)
            .expect("before"),
        starts[0]
    );
    assert_eq!(
        archive
            .position_at_time_from(recording_id, time_of(601), source)
            .expect("after"),
        end
    );
    // Session 8 from there, back to back, paced at 4x by the cluster's clock: its messages from
    // 301 to 598 span 297 ms of cluster time, about 74 ms of replay.
    let wanted = expected(8, 301);
    let span = egress_header::decode(&wanted[wanted.len() - 1].0)
        .expect("header")
        .timestamp_ns
        - egress_header::decode(&wanted[0].0)
            .expect("header")
            .timestamp_ns;
    assert_eq!(span, 297_000_000);
    let started = Instant::now();
    let (received, status) = replay_keyed(
        &archive,
        &client,
        ReplayRequest {
            position: Some(from),
            speed: Some(4.0),
            time_source: source,
            keep_positions: false,
            ..keyed_request(recording_id, "tern-egress:8")
        },
    );
    let took = started.elapsed();
    assert_eq!(
        received.iter().map(|(bytes, _)| bytes).collect::<Vec<_>>(),
        wanted.iter().map(|(bytes, _)| bytes).collect::<Vec<_>>(),
        "session 8 from message 301"
    );
    assert_eq!(status.search_stats().scanned_bytes, 0);
    let paced = Duration::from_nanos(span as u64 / 4);
    assert!(
        took >= paced.mul_f64(0.8),
        "{took:?} for {paced:?} of paced cluster time"
    );
    assert!(took < paced * 20, "{took:?} for {paced:?}");
    // verify finds the index files as the segments give them.
    let report = view.verify(recording_id, |_| {}).expect("verify");
    assert!(report.problem.is_none());
    assert!(report.key_indexes.iter().all(|check| check.is_ok()));
    assert_eq!(report.key_indexes.len(), segments.len());
}

#[test]
fn a_key_filtered_replay_back_to_back_follows_paces_pauses_and_seeks() {
    let driver = driver("keypace");
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = ArchiveConfig::new(data.path(), driver.dir());
    config.segment_length = 2 * TERM as i32;
    config.key_index = vec![KeyKind::Reserved];
    let archive = Archive::launch(config).expect("archive starts");
    let client = Client::connect(driver.dir()).expect("client");
    let (publication, recording_id) = start_live_recording(&archive, &client, 1030);
    // Key 1 in every third message, followed live, back to back.
    let follow = client.add_subscription("aeron:ipc", 8500).expect("sub");
    let follow_id = archive
        .start_replay(&ReplayRequest {
            follow: true,
            channel: "aeron:ipc".into(),
            stream_id: 8500,
            keep_positions: false,
            ..keyed_request(recording_id, "reserved:1")
        })
        .expect("follow");
    let follow_status = archive.replay_status(follow_id).expect("status");
    let mut followed: Vec<(i32, u32)> = Vec::new();
    let mut starts = Vec::new();
    for sequence in 0..60u32 {
        std::thread::sleep(Duration::from_millis(3));
        starts.push(publication.position());
        let bytes = message(0, sequence, 64);
        offer_with(|| {
            publication.try_claim(bytes.len(), i64::from(sequence % 3), |buffer| {
                buffer.copy_from_slice(&bytes)
            })
        });
        poll_sequences(&follow, &mut followed);
    }
    let end = publication.position();
    wait_recorded(&archive, recording_id, end);
    let ones: Vec<u32> = (0..60).filter(|s| s % 3 == 1).collect();
    wait_until("the followed messages", Duration::from_secs(10), || {
        poll_sequences(&follow, &mut followed);
        followed.len() >= ones.len()
    });
    assert_eq!(
        followed.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        ones,
        "followed live, key 1 only"
    );
    archive.stop_recording(1 << 20).expect("stop");
    wait_until("the follow replay to end", Duration::from_secs(10), || {
        follow_status.is_finished()
    });
    assert_eq!(follow_status.state(), ReplayState::Done);

    // Paced at 1x, back to back: 20 messages 9 ms apart in the recording take about 171 ms.
    let subscription = client.add_subscription("aeron:ipc", 8501).expect("sub");
    let replay_id = archive
        .start_replay(&ReplayRequest {
            channel: "aeron:ipc".into(),
            stream_id: 8501,
            speed: Some(1.0),
            keep_positions: false,
            ..keyed_request(recording_id, "reserved:1")
        })
        .expect("paced");
    let status = archive.replay_status(replay_id).expect("status");
    let mut arrivals: Vec<(u32, i64, Instant)> = Vec::new();
    let poll = |arrivals: &mut Vec<(u32, i64, Instant)>| {
        subscription
            .poll(
                |fragment, header| {
                    arrivals.push((
                        u32::from_le_bytes(fragment[4..8].try_into().expect("4 bytes")),
                        header.position,
                        Instant::now(),
                    ))
                },
                16,
            )
            .expect("poll")
    };
    wait_until("five messages", Duration::from_secs(10), || {
        poll(&mut arrivals);
        std::thread::yield_now();
        arrivals.len() >= 5
    });
    archive.pause_replay(replay_id).expect("pause");
    wait_until("the pause", Duration::from_secs(5), || {
        status.state() == ReplayState::Paused
    });
    std::thread::sleep(Duration::from_millis(20));
    poll(&mut arrivals);
    let at_pause = arrivals.len();
    let paused = Instant::now();
    while paused.elapsed() < Duration::from_millis(200) {
        poll(&mut arrivals);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(arrivals.len(), at_pause, "nothing while paused");
    archive.resume_replay(replay_id).expect("resume");
    wait_until("the rest", Duration::from_secs(10), || {
        poll(&mut arrivals);
        std::thread::yield_now();
        arrivals.len() >= ones.len()
    });
    wait_until("the end", Duration::from_secs(5), || status.is_finished());
    assert_eq!(status.state(), ReplayState::Done, "{:?}", status.error());
    assert_eq!(
        arrivals.iter().map(|(s, _, _)| *s).collect::<Vec<_>>(),
        ones,
        "once each, in order"
    );
    // Back to back: each message right after the one before (64 + 32 bytes, aligned: 96).
    let start = starts[0];
    for (index, (_, position, _)) in arrivals.iter().enumerate() {
        assert_eq!(
            *position,
            start + 96 * (index as i64 + 1),
            "message {index}"
        );
    }
    let before = arrivals[at_pause - 1].2.duration_since(arrivals[0].2);
    let after = arrivals[ones.len() - 1]
        .2
        .duration_since(arrivals[at_pause].2);
    let paced = before + after;
    let expected = Duration::from_millis(9 * (ones.len() as u64 - 2));
    assert!(
        paced >= expected.mul_f64(0.7) && paced <= expected.mul_f64(1.6),
        "paced: {paced:?} for about {expected:?} of recorded time"
    );

    // Seek to message 30: a new image, key 1 from there.
    let slow = client.add_subscription("aeron:ipc", 8502).expect("sub");
    let replay_id = archive
        .start_replay(&ReplayRequest {
            channel: "aeron:ipc".into(),
            stream_id: 8502,
            speed: Some(0.2),
            keep_positions: false,
            ..keyed_request(recording_id, "reserved:1")
        })
        .expect("slow");
    let mut seen: Vec<(i32, u32)> = Vec::new();
    wait_until("the first message", Duration::from_secs(10), || {
        poll_sequences(&slow, &mut seen);
        !seen.is_empty()
    });
    let session = archive.seek_replay(replay_id, starts[30]).expect("seek");
    let after_seek: Vec<u32> = ones.iter().copied().filter(|s| *s >= 30).collect();
    wait_until(
        "the messages after the seek",
        Duration::from_secs(20),
        || {
            poll_sequences(&slow, &mut seen);
            seen.iter().filter(|(s, _)| *s == session).count() >= after_seek.len()
        },
    );
    assert_eq!(
        seen.iter()
            .filter(|(s, _)| *s == session)
            .map(|(_, m)| *m)
            .collect::<Vec<_>>(),
        after_seek
    );
    assert!(
        seen.iter()
            .filter(|(s, _)| *s != session)
            .all(|(_, m)| m % 3 == 1),
        "the first image had key 1 only"
    );
    archive.stop_replay(replay_id).expect("stop");

    // From a time: the first capture time at or after message 45 (the recorder may have taken
    // 45 with the messages before it in one batch, under load: then the next batch's), then
    // key 1 only from there.
    let index = tern_archive::TimeIndexReader::open(data.path(), recording_id).expect("index");
    let at = index.first_after_position(starts[45] - 1).expect("entry");
    let entry = index.entry(at).expect("entry");
    let from = archive
        .position_at_time(recording_id, entry.timestamp_ns)
        .expect("position");
    assert_eq!(from, entry.position);
    let first = starts
        .iter()
        .position(|start| *start == from)
        .expect("a message starts there") as u32;
    assert!(first >= 45, "the entry is at or after message 45");
    let (received, status) = replay_keyed(
        &archive,
        &client,
        ReplayRequest {
            position: Some(from),
            keep_positions: false,
            ..keyed_request(recording_id, "reserved:1")
        },
    );
    assert_eq!(
        received
            .iter()
            .map(|(bytes, _)| u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")))
            .collect::<Vec<_>>(),
        ones.iter()
            .copied()
            .filter(|s| *s >= first)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        status.search_stats().index_segments,
        1,
        "the stopped segment's index"
    );
    assert_eq!(status.search_stats().scanned_bytes, 0);
}

#[test]
fn truncating_an_indexed_recording_drops_the_cut_segment_index_and_keyed_replays_stay_exact() {
    let driver = driver("keytrunc");
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = ArchiveConfig::new(data.path(), driver.dir());
    config.segment_length = 2 * TERM as i32;
    config.key_index = vec![KeyKind::Reserved];
    let archive = Archive::launch(config).expect("archive starts");
    let client = Client::connect(driver.dir()).expect("client");
    let (publication, recording_id) = start_live_recording(&archive, &client, 1040);
    let mut starts = Vec::new();
    // Enough 1 KiB messages to finish a few 128 KiB segments (each then gets its index).
    for sequence in 0..600u32 {
        starts.push(publication.position());
        let bytes = message(0, sequence, 1000);
        offer_with(|| {
            publication.try_claim(bytes.len(), i64::from(sequence % 4), |buffer| {
                buffer.copy_from_slice(&bytes)
            })
        });
    }
    let end = publication.position();
    wait_recorded(&archive, recording_id, end);
    archive.stop_recording(1 << 20).expect("stop");
    drop(archive);
    // Relaunch: every finished segment's index is written (or rebuilt) by now.
    let mut config = ArchiveConfig::new(data.path(), driver.dir());
    config.segment_length = 2 * TERM as i32;
    config.key_index = vec![KeyKind::Reserved];
    let archive = Archive::launch(config).expect("archive restarts");
    // Cut in the middle of the first segment (which was finished and indexed).
    let first_segment_index = index_file(data.path(), recording_id, 0, &KeyKind::Reserved);
    wait_until("the first segment's index", Duration::from_secs(10), || {
        first_segment_index.exists()
    });
    let cut = starts[50];
    archive
        .truncate_recording(recording_id, cut)
        .expect("truncate");
    assert!(
        !first_segment_index.exists(),
        "the cut segment's index is gone: it described what was cut away"
    );
    let subscription = client.add_subscription("aeron:ipc", 8600).expect("sub");
    let replay = archive
        .start_replay(&ReplayRequest {
            channel: "aeron:ipc".into(),
            stream_id: 8600,
            keep_positions: false,
            ..keyed_request(recording_id, "reserved:3")
        })
        .expect("keyed replay");
    let status = archive.replay_status(replay).expect("status");
    let mut seen: Vec<(i32, u32)> = Vec::new();
    wait_until("the keyed replay to end", Duration::from_secs(10), || {
        poll_sequences(&subscription, &mut seen);
        status.is_finished()
    });
    poll_sequences(&subscription, &mut seen);
    assert_eq!(
        seen.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        (0..50).filter(|s| s % 4 == 3).collect::<Vec<u32>>(),
        "only messages before the cut, key 3 only"
    );
}

#[test]
fn reading_a_live_recording_by_key_in_passes_resumes_without_loss_or_repeat() {
    let driver = driver("keypasses");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let (publication, recording_id) = start_live_recording(&archive, &client, 1031);
    let filter: KeyFilter = "field:0:i32:2".parse().expect("key");
    let mut printed: Vec<u32> = Vec::new();
    let mut resume = None;
    let max = publication.max_payload_length();
    // Three passes, as `tern replay --follow --key` makes, each after more messages, some
    // fragmented, across segments.
    for pass in 0..3u32 {
        for sequence in pass * 200..(pass + 1) * 200 {
            let length = if sequence % 17 == 0 { 3 * max } else { 100 };
            let bytes = message(sequence % 5, sequence, length);
            offer_with(|| publication.offer(&bytes));
        }
        wait_recorded(&archive, recording_id, publication.position());
        let view = ArchiveView::open(data.path()).expect("view");
        let read = view
            .messages_with_key(recording_id, resume, None, &filter, |message, _| {
                printed.push(u32::from_le_bytes(
                    message[4..8].try_into().expect("4 bytes"),
                ));
                true
            })
            .expect("a pass");
        assert!(read.stats.scanned_bytes > 0, "a live recording is scanned");
        resume = Some(read.resume);
    }
    assert_eq!(
        printed,
        (0..600).filter(|s| s % 5 == 2).collect::<Vec<_>>(),
        "every message of the key once, in order"
    );
}
