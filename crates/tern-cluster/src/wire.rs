//! Consensus messages between members (pure, no I/O). Drawn byte by byte in `docs/cluster.md`
//! §7.
//!
//! ```text
//!  0       1       2               4                               8                               16
//!  +-------+-------+---------------+-------------------------------+-------------------------------+------+
//!  |version| kind  |     zero      | body length (u32)             | cluster id (u64)              | body |
//!  +-------+-------+---------------+-------------------------------+-------------------------------+------+
//! ```
//! Kind 1 is a whole Raft message; its body is raft-rs's `eraftpb.Message` in the protobuf
//! encoding (the crate's protobuf codec). Kind 2 is one chunk of a Raft message whose encoding is
//! longer than the sender's maximum peer message (a snapshot, a long append): a 40-byte chunk
//! header (from, to, message id, chunk index, chunk count, total length) and a piece of the
//! encoding. The receiver puts the pieces together again ([`Reassembly`]): one message at a time
//! per sender; a chunk lost means the message is lost, and Raft sends again as it does for any
//! lost message.
//!
//! Kinds 3 and 4 copy the egress recording between members ([`EgressFetch`], [`EgressFrames`]):
//! a member that installed a leader's snapshot past its own recording's end asks a peer for the
//! frames from where its recording ends (the recordings are the same byte for byte, so a
//! position means the same on every member), and the peer sends whole frames from there.

use crate::error::{ClusterError, Result};
use protobuf::Message as _;
use raft::prelude::Message;
use std::collections::BTreeMap;

/// The header's version (2: the cluster id and chunks).
pub const WIRE_VERSION: u8 = 2;
/// The kind of a whole Raft message.
pub const KIND_RAFT: u8 = 1;
/// The kind of a chunk of a Raft message.
pub const KIND_CHUNK: u8 = 2;
/// The kind of a request for egress recording frames.
pub const KIND_EGRESS_FETCH: u8 = 3;
/// The kind of egress recording frames sent to a member that asked.
pub const KIND_EGRESS_FRAMES: u8 = 4;
/// Bytes of an egress fetch's or frames' header, after the wire header.
pub const EGRESS_COPY_HEADER_LENGTH: usize = 32;
/// Bytes of the header.
pub const WIRE_HEADER_LENGTH: usize = 16;
/// Bytes of a chunk's header, after the wire header.
pub const CHUNK_HEADER_LENGTH: usize = 40;
/// The shortest maximum peer message a node accepts (headers and a useful piece of a chunk).
pub const MIN_PEER_MESSAGE_LENGTH: usize = 1024;
/// The longest Raft message encoding sent in chunks, and put together again by a receiver (its
/// memory for one sender's message).
pub const MAX_CHUNKED_LENGTH: usize = 1 << 30;

/// What one consensus message holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame<'a> {
    /// A whole Raft message.
    Raft(Message),
    /// A piece of one.
    Chunk(Chunk<'a>),
    /// A member asks for egress recording frames.
    EgressFetch(EgressFetch),
    /// Egress recording frames for a member that asked.
    EgressFrames(EgressFrames<'a>),
}

/// A request for a peer's egress recording frames (kind 3). Body: from u64, to u64, position
/// i64, egress number u64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressFetch {
    /// The member asking.
    pub from: u64,
    /// The member asked.
    pub to: u64,
    /// Where the asking member's recording ends: the frames from here are wanted.
    pub position: i64,
    /// The egress number of the first message wanted (one more than the asker's last).
    pub number: u64,
}

/// Whole frames of a member's egress recording (kind 4). Body: from u64, to u64, position i64,
/// egress number u64 (of the first message in them), the frames as the recording holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressFrames<'a> {
    /// The member sending.
    pub from: u64,
    /// The member that asked.
    pub to: u64,
    /// The stream position of the first frame.
    pub position: i64,
    /// The egress number of the first message.
    pub number: u64,
    /// The frames (checksummed, as in the segment files).
    pub frames: &'a [u8],
}

fn copy_header(from: u64, to: u64, position: i64, number: u64) -> [u8; EGRESS_COPY_HEADER_LENGTH] {
    let mut header = [0u8; EGRESS_COPY_HEADER_LENGTH];
    header[0..8].copy_from_slice(&from.to_le_bytes());
    header[8..16].copy_from_slice(&to.to_le_bytes());
    header[16..24].copy_from_slice(&position.to_le_bytes());
    header[24..32].copy_from_slice(&number.to_le_bytes());
    header
}

/// The bytes of an egress fetch.
pub fn encode_egress_fetch(cluster_id: u64, fetch: &EgressFetch) -> Vec<u8> {
    let header = copy_header(fetch.from, fetch.to, fetch.position, fetch.number);
    frame(cluster_id, KIND_EGRESS_FETCH, &[&header])
}

/// The bytes of egress frames sent to a member.
pub fn encode_egress_frames(cluster_id: u64, frames: &EgressFrames<'_>) -> Vec<u8> {
    let header = copy_header(frames.from, frames.to, frames.position, frames.number);
    frame(cluster_id, KIND_EGRESS_FRAMES, &[&header, frames.frames])
}

/// One chunk of a Raft message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// The sending member.
    pub from: u64,
    /// The member it is for.
    pub to: u64,
    /// The sender's id of the message (a new one for each message it sends in chunks).
    pub message_id: u64,
    /// Which chunk (0..count).
    pub index: u32,
    /// The message's chunks.
    pub count: u32,
    /// The length of the message's encoding, all chunks together.
    pub total_length: usize,
    /// This chunk's piece of it.
    pub bytes: &'a [u8],
}

fn frame(cluster_id: u64, kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let body: usize = parts.iter().map(|part| part.len()).sum();
    let mut out = Vec::with_capacity(WIRE_HEADER_LENGTH + body);
    out.extend_from_slice(&[WIRE_VERSION, kind, 0, 0]);
    out.extend_from_slice(&(body as u32).to_le_bytes());
    out.extend_from_slice(&cluster_id.to_le_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

fn body_of(message: &Message) -> Vec<u8> {
    message
        .write_to_bytes()
        .expect("a raft message always encodes")
}

/// The bytes of `message` as one consensus message of cluster `cluster_id`, however long.
pub fn encode(cluster_id: u64, message: &Message) -> Vec<u8> {
    frame(cluster_id, KIND_RAFT, &[&body_of(message)])
}

/// The consensus messages that carry `message`, none longer than `max_length` (at least
/// [`MIN_PEER_MESSAGE_LENGTH`]): one whole message when it fits, else chunks with `message_id`.
///
/// # Errors
/// The message's encoding is longer than [`MAX_CHUNKED_LENGTH`]: no member would take it.
pub fn encode_frames(
    cluster_id: u64,
    message: &Message,
    max_length: usize,
    message_id: u64,
) -> Result<Vec<Vec<u8>>> {
    let body = body_of(message);
    if WIRE_HEADER_LENGTH + body.len() <= max_length {
        return Ok(vec![frame(cluster_id, KIND_RAFT, &[&body])]);
    }
    if body.len() > MAX_CHUNKED_LENGTH {
        return Err(ClusterError::Peer(format!(
            "a raft message ({:?} to member {}) of {} bytes is longer than the {MAX_CHUNKED_LENGTH} a member puts together",
            message.get_msg_type(),
            message.to,
            body.len()
        )));
    }
    let piece = max_length
        .max(MIN_PEER_MESSAGE_LENGTH)
        .saturating_sub(WIRE_HEADER_LENGTH + CHUNK_HEADER_LENGTH);
    let count = body.len().div_ceil(piece);
    let mut header = [0u8; CHUNK_HEADER_LENGTH];
    header[0..8].copy_from_slice(&message.from.to_le_bytes());
    header[8..16].copy_from_slice(&message.to.to_le_bytes());
    header[16..24].copy_from_slice(&message_id.to_le_bytes());
    header[28..32].copy_from_slice(&(count as u32).to_le_bytes());
    header[32..36].copy_from_slice(&(body.len() as u32).to_le_bytes());
    Ok(body
        .chunks(piece)
        .enumerate()
        .map(|(index, bytes)| {
            header[24..28].copy_from_slice(&(index as u32).to_le_bytes());
            frame(cluster_id, KIND_CHUNK, &[&header, bytes])
        })
        .collect())
}

fn bad(reason: String) -> ClusterError {
    ClusterError::Peer(reason)
}

/// What one consensus message of cluster `cluster_id` holds.
///
/// # Errors
/// What is wrong with the bytes: too short, another version, another cluster
/// ([`ClusterError::OtherCluster`]), another kind, lengths that do not add up, no Raft message.
pub fn decode(cluster_id: u64, bytes: &[u8]) -> Result<Frame<'_>> {
    if bytes.len() < WIRE_HEADER_LENGTH {
        return Err(bad(format!(
            "a consensus message of {} bytes is shorter than its header",
            bytes.len()
        )));
    }
    if bytes[0] != WIRE_VERSION {
        return Err(bad(format!(
            "consensus message version {} (this build speaks {WIRE_VERSION})",
            bytes[0]
        )));
    }
    let theirs = u64::from_le_bytes(bytes[8..16].try_into().expect("8"));
    if theirs != cluster_id {
        return Err(ClusterError::OtherCluster {
            cluster_id: theirs,
            expected: cluster_id,
        });
    }
    let length = u32::from_le_bytes(bytes[4..8].try_into().expect("4")) as usize;
    let body = &bytes[WIRE_HEADER_LENGTH..];
    if body.len() != length {
        return Err(bad(format!(
            "a consensus message body of {} bytes where the header says {length}",
            body.len()
        )));
    }
    match bytes[1] {
        KIND_RAFT => Message::parse_from_bytes(body)
            .map(Frame::Raft)
            .map_err(|error| bad(format!("a bad consensus message: {error}"))),
        KIND_CHUNK => decode_chunk(body).map(Frame::Chunk),
        KIND_EGRESS_FETCH | KIND_EGRESS_FRAMES => {
            if body.len() < EGRESS_COPY_HEADER_LENGTH
                || (bytes[1] == KIND_EGRESS_FETCH && body.len() != EGRESS_COPY_HEADER_LENGTH)
            {
                return Err(bad(format!(
                    "an egress copy message of {} bytes",
                    body.len()
                )));
            }
            let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8"));
            let (from, to, position, number) =
                (u64_at(0), u64_at(8), u64_at(16) as i64, u64_at(24));
            Ok(if bytes[1] == KIND_EGRESS_FETCH {
                Frame::EgressFetch(EgressFetch {
                    from,
                    to,
                    position,
                    number,
                })
            } else {
                Frame::EgressFrames(EgressFrames {
                    from,
                    to,
                    position,
                    number,
                    frames: &body[EGRESS_COPY_HEADER_LENGTH..],
                })
            })
        }
        kind => Err(bad(format!("consensus message kind {kind}"))),
    }
}

fn decode_chunk(body: &[u8]) -> Result<Chunk<'_>> {
    if body.len() <= CHUNK_HEADER_LENGTH {
        return Err(bad(format!(
            "a consensus chunk of {} bytes holds no more than its header",
            body.len()
        )));
    }
    let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4"));
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8"));
    let chunk = Chunk {
        from: u64_at(0),
        to: u64_at(8),
        message_id: u64_at(16),
        index: u32_at(24),
        count: u32_at(28),
        total_length: u32_at(32) as usize,
        bytes: &body[CHUNK_HEADER_LENGTH..],
    };
    let name = format!(
        "chunk {} of {} of message {} from member {}",
        chunk.index, chunk.count, chunk.message_id, chunk.from
    );
    if chunk.total_length > MAX_CHUNKED_LENGTH {
        return Err(bad(format!(
            "{name}: a message of {} bytes is longer than the {MAX_CHUNKED_LENGTH} a member puts together",
            chunk.total_length
        )));
    }
    if chunk.index >= chunk.count
        || chunk.count as usize > chunk.total_length
        || chunk.bytes.len() > chunk.total_length
        || u32_at(36) != 0
    {
        return Err(bad(format!(
            "{name}: {} bytes of a message of {} cannot be",
            chunk.bytes.len(),
            chunk.total_length
        )));
    }
    Ok(chunk)
}

/// What a [`Reassembly`] did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyCounts {
    /// Messages put together from their chunks.
    pub reassembled: u64,
    /// Incomplete messages given up (a chunk was lost: a newer message from the same sender came).
    pub discarded: u64,
    /// Chunks taken again (a duplicate, or one of a message already put together).
    pub duplicates: u64,
}

#[derive(Debug)]
struct Assembly {
    message_id: u64,
    to: u64,
    count: u32,
    total_length: usize,
    received: usize,
    chunks: BTreeMap<u32, Vec<u8>>,
}

#[derive(Debug, Default)]
struct Sender {
    assembly: Option<Assembly>,
    completed: Option<u64>,
}

/// Raft messages put together from their chunks: at most one message per sender at a time, its
/// memory at most [`MAX_CHUNKED_LENGTH`] (the caller takes chunks only from members).
#[derive(Debug, Default)]
pub struct Reassembly {
    senders: BTreeMap<u64, Sender>,
    counts: ReassemblyCounts,
}

impl Reassembly {
    /// None in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// What it did so far.
    pub fn counts(&self) -> ReassemblyCounts {
        self.counts
    }

    /// Take in `chunk`: the message once its last chunk came, in any order. A chunk of another
    /// message from the same sender gives up the one in progress; duplicates are ignored.
    ///
    /// # Errors
    /// The chunk contradicts the earlier ones of its message (count, length, addressee), or the
    /// chunks put together are no Raft message from their sender (the message is dropped).
    pub fn add(&mut self, chunk: &Chunk<'_>) -> Result<Option<Message>> {
        let sender = self.senders.entry(chunk.from).or_default();
        if sender.completed == Some(chunk.message_id) {
            self.counts.duplicates += 1;
            return Ok(None);
        }
        if sender
            .assembly
            .as_ref()
            .is_some_and(|assembly| assembly.message_id != chunk.message_id)
        {
            sender.assembly = None;
            self.counts.discarded += 1;
        }
        let assembly = sender.assembly.get_or_insert_with(|| Assembly {
            message_id: chunk.message_id,
            to: chunk.to,
            count: chunk.count,
            total_length: chunk.total_length,
            received: 0,
            chunks: BTreeMap::new(),
        });
        let name = || {
            format!(
                "chunk {} of message {} from member {}",
                chunk.index, chunk.message_id, chunk.from
            )
        };
        if assembly.count != chunk.count
            || assembly.total_length != chunk.total_length
            || assembly.to != chunk.to
        {
            let reason = format!(
                "{}: {} chunks of {} bytes for member {} where its first said {} of {} for member {}",
                name(),
                chunk.count,
                chunk.total_length,
                chunk.to,
                assembly.count,
                assembly.total_length,
                assembly.to
            );
            sender.assembly = None;
            return Err(bad(reason));
        }
        if assembly.chunks.contains_key(&chunk.index) {
            self.counts.duplicates += 1;
            return Ok(None);
        }
        assembly.received += chunk.bytes.len();
        if assembly.received > assembly.total_length {
            let reason = format!(
                "{}: its chunks hold more than the message's {} bytes",
                name(),
                assembly.total_length
            );
            sender.assembly = None;
            return Err(bad(reason));
        }
        assembly.chunks.insert(chunk.index, chunk.bytes.to_vec());
        if assembly.chunks.len() < assembly.count as usize {
            return Ok(None);
        }
        let assembly = sender.assembly.take().expect("in progress");
        sender.completed = Some(assembly.message_id);
        if assembly.received != assembly.total_length {
            return Err(bad(format!(
                "message {} from member {}: {} chunks of {} bytes where it has {}",
                assembly.message_id,
                chunk.from,
                assembly.count,
                assembly.received,
                assembly.total_length
            )));
        }
        let mut body = Vec::with_capacity(assembly.total_length);
        for piece in assembly.chunks.into_values() {
            body.extend_from_slice(&piece);
        }
        let message = Message::parse_from_bytes(&body).map_err(|error| {
            bad(format!(
                "message {} from member {}, put together from {} chunks, is no raft message: {error}",
                assembly.message_id, chunk.from, assembly.count
            ))
        })?;
        if message.from != chunk.from || message.to != chunk.to {
            return Err(bad(format!(
                "message {} in chunks from member {} to {} holds a raft message from {} to {}",
                assembly.message_id, chunk.from, chunk.to, message.from, message.to
            )));
        }
        self.counts.reassembled += 1;
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::{Entry, MessageType, Snapshot, SnapshotMetadata};

    fn append() -> Message {
        let entry = Entry {
            index: 4,
            data: b"data".to_vec().into(),
            ..Entry::default()
        };
        Message {
            msg_type: MessageType::MsgAppend,
            from: 1,
            to: 2,
            term: 3,
            entries: vec![entry].into(),
            ..Message::default()
        }
    }

    /// A snapshot message of `length` data bytes from `from` to 3.
    fn snapshot(from: u64, length: usize) -> Message {
        let data: Vec<u8> = (0..length)
            .map(|at| (at * 7 + from as usize) as u8)
            .collect();
        Message {
            msg_type: MessageType::MsgSnapshot,
            from,
            to: 3,
            term: 2,
            snapshot: Some(Snapshot {
                data: data.into(),
                metadata: Some(SnapshotMetadata {
                    index: 40,
                    term: 2,
                    ..SnapshotMetadata::default()
                })
                .into(),
                ..Snapshot::default()
            })
            .into(),
            ..Message::default()
        }
    }

    fn chunk_of(bytes: &[u8]) -> Chunk<'_> {
        match decode(7, bytes).expect("decodes") {
            Frame::Chunk(chunk) => chunk,
            other => panic!("not a chunk: {other:?}"),
        }
    }

    #[test]
    fn egress_copy_messages_round_trip_and_bad_ones_are_named() {
        let fetch = EgressFetch {
            from: 2,
            to: 1,
            position: 4096,
            number: 77,
        };
        let bytes = encode_egress_fetch(7, &fetch);
        assert_eq!(
            decode(7, &bytes).expect("decodes"),
            Frame::EgressFetch(fetch)
        );
        let frames = EgressFrames {
            from: 1,
            to: 2,
            position: 4096,
            number: 77,
            frames: &[1, 2, 3, 4],
        };
        let bytes = encode_egress_frames(7, &frames);
        assert_eq!(
            decode(7, &bytes).expect("decodes"),
            Frame::EgressFrames(frames)
        );
        let mut long_fetch = encode_egress_fetch(7, &fetch);
        long_fetch.push(0);
        long_fetch[4..8].copy_from_slice(&33u32.to_le_bytes());
        let error = decode(7, &long_fetch).expect_err("refused");
        assert!(
            error.to_string().contains("egress copy message of 33"),
            "{error}"
        );
    }

    #[test]
    fn a_message_round_trips_and_bad_bytes_are_named() {
        let message = append();
        let bytes = encode(7, &message);
        assert_eq!(decode(7, &bytes).expect("decodes"), Frame::Raft(message));
        let error = |bytes: &[u8]| decode(7, bytes).expect_err("refused").to_string();
        assert!(error(&bytes[..5]).contains("header"));
        assert!(error(&bytes[..bytes.len() - 1]).contains("where the header says"));
        let mut version = bytes.clone();
        version[0] = 1;
        assert!(error(&version).contains("version 1 (this build speaks 2)"));
        let mut kind = bytes.clone();
        kind[1] = 9;
        assert!(error(&kind).contains("kind 9"));
        let mut garbage = bytes.clone();
        for byte in &mut garbage[WIRE_HEADER_LENGTH..] {
            *byte = 0xff;
        }
        assert!(error(&garbage).contains("bad consensus message"));
        // Another cluster's message is refused before anything else is read of it.
        let other = decode(8, &bytes).expect_err("another cluster");
        assert!(
            matches!(
                other,
                ClusterError::OtherCluster {
                    cluster_id: 7,
                    expected: 8
                }
            ),
            "{other}"
        );
        assert!(other.to_string().contains("cluster 7"), "{other}");
    }

    #[test]
    fn a_message_that_fits_goes_whole_and_a_longer_one_in_chunks_no_longer_than_the_maximum() {
        let small = append();
        let frames = encode_frames(7, &small, MIN_PEER_MESSAGE_LENGTH, 1).expect("encodes");
        assert_eq!(frames, vec![encode(7, &small)]);
        let big = snapshot(1, 10_000);
        let frames = encode_frames(7, &big, 2048, 5).expect("encodes");
        let total = big.write_to_bytes().expect("encodes").len();
        assert_eq!(frames.len(), total.div_ceil(2048 - 56));
        assert!(frames.iter().all(|frame| frame.len() <= 2048));
        for (index, frame) in frames.iter().enumerate() {
            let chunk = chunk_of(frame);
            assert_eq!(
                (chunk.from, chunk.to, chunk.message_id, chunk.index as usize),
                (1, 3, 5, index)
            );
            assert_eq!(
                (chunk.count as usize, chunk.total_length),
                (frames.len(), total)
            );
        }
        let mut reassembly = Reassembly::new();
        let mut out = Vec::new();
        for frame in &frames {
            out.extend(reassembly.add(&chunk_of(frame)).expect("adds"));
        }
        assert_eq!(out, vec![big]);
    }

    #[test]
    fn chunks_reassemble_through_loss_duplication_reordering_and_two_senders() {
        let first = snapshot(1, 9_000);
        let second = snapshot(2, 7_000);
        let a = encode_frames(7, &first, 1024, 10).expect("encodes");
        let b = encode_frames(7, &second, 1024, 10).expect("encodes");
        assert!(a.len() > 4 && b.len() > 4);
        let mut reassembly = Reassembly::new();
        let mut out = Vec::new();
        // Reordered, duplicated, and the two senders' chunks interleaved (the same message id
        // from two senders is two messages).
        let mut order: Vec<&Vec<u8>> = Vec::new();
        for index in (0..a.len().max(b.len())).rev() {
            order.extend(a.get(index));
            order.extend(b.get(index));
            if index % 3 == 0 {
                order.extend(a.get(index));
            }
        }
        for frame in order {
            out.extend(reassembly.add(&chunk_of(frame)).expect("adds"));
        }
        assert_eq!(out.len(), 2);
        assert!(out.contains(&first) && out.contains(&second));
        // A chunk of a message put together already is a duplicate, not a new message.
        assert_eq!(reassembly.add(&chunk_of(&a[1])).expect("adds"), None);
        let counts = reassembly.counts();
        assert_eq!((counts.reassembled, counts.discarded), (2, 0));
        assert!(counts.duplicates > 0);

        // A chunk lost: the message never comes, and the sender's next message gives it up.
        let again = encode_frames(7, &first, 1024, 11).expect("encodes");
        for frame in again.iter().skip(1) {
            assert_eq!(reassembly.add(&chunk_of(frame)).expect("adds"), None);
        }
        let next = encode_frames(7, &first, 1024, 12).expect("encodes");
        for frame in &next {
            out.extend(reassembly.add(&chunk_of(frame)).expect("adds"));
        }
        assert_eq!(out.len(), 3);
        assert_eq!(out[2], first);
        assert_eq!(reassembly.counts().discarded, 1);
        // The lost chunk coming late starts an assembly that the sender's next message gives up.
        assert_eq!(reassembly.add(&chunk_of(&again[0])).expect("adds"), None);
        let last = encode_frames(7, &first, 1024, 13).expect("encodes");
        let mut got = None;
        for frame in &last {
            got = got.or(reassembly.add(&chunk_of(frame)).expect("adds"));
        }
        assert_eq!(got, Some(first));
        assert_eq!(reassembly.counts().discarded, 2);
    }

    #[test]
    fn bad_chunks_are_refused_with_their_reason() {
        let big = snapshot(1, 5_000);
        let frames = encode_frames(7, &big, 1024, 3).expect("encodes");
        let error = |bytes: &[u8]| decode(7, bytes).expect_err("refused").to_string();
        // A total length above the bound.
        let mut huge = frames[0].clone();
        huge[WIRE_HEADER_LENGTH + 32..WIRE_HEADER_LENGTH + 36]
            .copy_from_slice(&((MAX_CHUNKED_LENGTH + 1) as u32).to_le_bytes());
        assert!(error(&huge).contains("longer than the 1073741824 a member puts together"));
        // An index past the count.
        let mut index = frames[0].clone();
        index[WIRE_HEADER_LENGTH + 24..WIRE_HEADER_LENGTH + 28]
            .copy_from_slice(&1000u32.to_le_bytes());
        assert!(error(&index).contains("cannot be"));
        // A header and no piece.
        let empty = frame(
            7,
            KIND_CHUNK,
            &[&frames[0][WIRE_HEADER_LENGTH..][..CHUNK_HEADER_LENGTH]],
        );
        assert!(error(&empty).contains("no more than its header"));
        // A chunk that contradicts its message's first.
        let mut reassembly = Reassembly::new();
        reassembly.add(&chunk_of(&frames[0])).expect("adds");
        let mut count = frames[1].clone();
        count[WIRE_HEADER_LENGTH + 28..WIRE_HEADER_LENGTH + 32]
            .copy_from_slice(&99u32.to_le_bytes());
        let refused = reassembly
            .add(&chunk_of(&count))
            .expect_err("contradicts")
            .to_string();
        assert!(refused.contains("where its first said"), "{refused}");
        // Chunks that put together are no raft message.
        let mut garbage = frames.clone();
        for byte in &mut garbage[0][WIRE_HEADER_LENGTH + CHUNK_HEADER_LENGTH..] {
            *byte = 0xff;
        }
        let mut result = Ok(None);
        for frame in &garbage {
            result = reassembly.add(&chunk_of(frame));
        }
        assert!(result
            .expect_err("garbage")
            .to_string()
            .contains("is no raft message"));
    }
}
