//! The control proxy: what goes out to a client, encoded: descriptors, cursors, recording
//! groups, listings in batches, and every ERROR response (counted).

use super::session::{ControlSession, Listing};
use super::ControlStats;
use crate::conductor::ArchiveState;
use crate::metrics::Metrics;
use crate::types::RecordingInfo;
use std::collections::HashMap;
use tern_protocol as proto;
use tern_protocol::ArchiveErrorCode;
use tern_protocol::NULL_VALUE;
use tern_protocol::{AnyMessage, ControlResponseCode, Message};
use tern_store::RecordingId;

/// Descriptors a listing adds to a session's outbox per duty cycle.
pub(super) const LISTING_BATCH: usize = 32;
/// A listing waits while its session has this many messages queued.
pub(super) const LISTING_HIGH_WATER: usize = 256;

/// Epoch nanoseconds as the protocol's epoch milliseconds (-1, Aeron's null, for none).
pub(super) fn epoch_millis(ns: i64) -> i64 {
    if ns < 0 {
        NULL_VALUE
    } else {
        ns / 1_000_000
    }
}

/// The protocol's descriptor of a recording.
pub(super) fn descriptor_message(
    control_session_id: i64,
    correlation_id: i64,
    info: &RecordingInfo,
) -> proto::RecordingDescriptor {
    let d = &info.descriptor;
    proto::RecordingDescriptor {
        control_session_id,
        correlation_id,
        recording_id: d.recording_id.get(),
        start_timestamp: epoch_millis(d.start_timestamp_ns),
        stop_timestamp: if d.is_active() {
            NULL_VALUE
        } else {
            epoch_millis(d.stop_timestamp_ns)
        },
        start_position: d.start_position,
        stop_position: d.stop_position,
        initial_term_id: d.initial_term_id,
        segment_file_length: d.segment_length,
        term_buffer_length: d.term_length,
        mtu_length: d.mtu_length,
        session_id: d.session_id,
        stream_id: d.stream_id,
        stripped_channel: proto::to_ascii_lossy(&d.stripped_channel),
        original_channel: proto::to_ascii_lossy(&d.original_channel),
        source_identity: proto::to_ascii_lossy(&d.source_identity),
    }
}

pub(super) fn cursor_descriptor(
    control_session_id: i64,
    correlation_id: i64,
    cursor: &tern_store::cursors::Cursor,
) -> proto::CursorDescriptor {
    proto::CursorDescriptor {
        control_session_id,
        correlation_id,
        recording_id: cursor.recording_id.get(),
        position: cursor.position,
        updated_timestamp: cursor.updated_ns,
        name: proto::to_ascii_lossy(&cursor.name),
    }
}

/// The recordings grouped by (stripped channel, stream id), in order of each group's first
/// recording id; optionally only one stream, and channels containing a fragment.
pub(super) fn recording_groups(
    recordings: &[RecordingInfo],
    stream_id: Option<i32>,
    channel_fragment: &str,
) -> Vec<proto::RecordingGroupDescriptor> {
    let mut groups: Vec<proto::RecordingGroupDescriptor> = Vec::new();
    let mut index: HashMap<(String, i32), usize> = HashMap::new();
    for info in recordings {
        let d = &info.descriptor;
        if stream_id.is_some_and(|stream| stream != d.stream_id)
            || !d.stripped_channel.contains(channel_fragment)
        {
            continue;
        }
        let key = (d.stripped_channel.clone(), d.stream_id);
        let slot = *index.entry(key).or_insert_with(|| {
            groups.push(proto::RecordingGroupDescriptor {
                control_session_id: 0,
                correlation_id: 0,
                first_recording_id: d.recording_id.get(),
                last_recording_id: d.recording_id.get(),
                total_bytes: 0,
                first_start_timestamp: epoch_millis(d.start_timestamp_ns),
                last_stop_timestamp: NULL_VALUE,
                stream_id: d.stream_id,
                recording_count: 0,
                active_count: 0,
                channel: proto::to_ascii_lossy(&d.stripped_channel),
            });
            groups.len() - 1
        });
        let group = &mut groups[slot];
        group.last_recording_id = d.recording_id.get();
        group.recording_count += 1;
        group.total_bytes += info.recorded_position - d.start_position;
        group.first_start_timestamp = group
            .first_start_timestamp
            .min(epoch_millis(d.start_timestamp_ns));
        if info.active {
            group.active_count += 1;
        }
        group.last_stop_timestamp = if group.active_count > 0 {
            NULL_VALUE
        } else {
            group
                .last_stop_timestamp
                .max(epoch_millis(d.stop_timestamp_ns))
        };
    }
    groups
}

/// A message of either schema, encoded (`None`: a text field is not ASCII, which tern's own
/// messages never have: they are encoded with `to_ascii_lossy`).
pub(super) fn encoded(message: impl Into<AnyMessage>) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(256);
    message.into().encode(&mut buf).ok().map(|_| buf)
}

pub(super) fn queue_message(session: &mut ControlSession, message: impl Into<AnyMessage>) {
    if let Some(buf) = encoded(message) {
        session.queue(buf);
    }
}

/// A listing adds messages while fewer than this wait in its session's outbox: at most 256, and
/// half of what the session may queue, so a listing never fills it.
pub(super) fn listing_high_water(session: &ControlSession) -> usize {
    LISTING_HIGH_WATER.min(session.max_queued() / 2)
}

/// Send the next batch of a listing; returns the number of messages queued.
pub(super) fn continue_listing(archive: &ArchiveState, session: &mut ControlSession) -> usize {
    let batch = LISTING_BATCH.min(listing_high_water(session).saturating_sub(session.queued()));
    match session.listing.take() {
        Some(Listing::Recordings {
            correlation_id,
            next_id,
            remaining,
            filter,
        }) => continue_recordings(
            archive,
            session,
            batch,
            correlation_id,
            next_id,
            remaining,
            filter,
        ),
        Some(Listing::Prepared {
            correlation_id,
            mut messages,
            count,
        }) => {
            let mut queued = 0;
            while queued < batch {
                let Some(message) = messages.pop_front() else {
                    break;
                };
                session.queue(message);
                queued += 1;
            }
            if messages.is_empty() {
                session.respond(
                    correlation_id,
                    count,
                    ControlResponseCode::RecordingUnknown,
                    "",
                );
                return queued + 1;
            }
            session.listing = Some(Listing::Prepared {
                correlation_id,
                messages,
                count,
            });
            queued
        }
        None => 0,
    }
}

/// Most catalog ids a recording listing looks at per duty cycle (a filter that matches little
/// must not hold the conductor on a large catalog).
pub(super) const LISTING_SCAN: i64 = 1024;

pub(super) fn continue_recordings(
    archive: &ArchiveState,
    session: &mut ControlSession,
    batch: usize,
    correlation_id: i64,
    mut next_id: i64,
    mut remaining: i64,
    filter: Option<(i32, String)>,
) -> usize {
    let limit = archive.recording_id_limit();
    let scan_end = next_id.saturating_add(LISTING_SCAN);
    let mut queued = 0;
    while remaining > 0 && queued < batch && next_id < limit && next_id < scan_end {
        let id = next_id;
        next_id += 1;
        let Ok(info) = archive.recording(RecordingId::new(id)) else {
            continue; // purged or damaged: not listed
        };
        let accepted = filter.as_ref().is_none_or(|(stream_id, fragment)| {
            info.descriptor.stream_id == *stream_id
                && info.descriptor.original_channel.contains(fragment.as_str())
        });
        if accepted {
            let message = descriptor_message(session.id, correlation_id, &info);
            queue_message(session, Message::RecordingDescriptor(message));
            remaining -= 1;
            queued += 1;
        }
    }
    if remaining > 0 && next_id >= limit {
        session.respond(
            correlation_id,
            next_id,
            ControlResponseCode::RecordingUnknown,
            "",
        );
        return queued + 1;
    }
    if remaining > 0 {
        session.listing = Some(Listing::Recordings {
            correlation_id,
            next_id,
            remaining,
            filter,
        });
    }
    queued.max(1)
}

/// Sends an ERROR response with `code` to `session`, counted in the control stats and the
/// metrics' errors by code: every error a client gets goes this way.
pub(super) fn send_error(
    stats: &ControlStats,
    metrics: &Metrics,
    session: &mut ControlSession,
    correlation_id: i64,
    code: ArchiveErrorCode,
    message: &str,
) {
    ControlStats::add(&stats.errors_sent);
    metrics.control_error(code);
    session.respond(
        correlation_id,
        code.value(),
        ControlResponseCode::Error,
        message,
    );
}
