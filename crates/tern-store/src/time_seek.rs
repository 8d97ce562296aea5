//! Finding where to start a replay at a time: by the capture-time index, or by a timestamp inside
//! each message (a binary search over the index, reading the message at each probed entry). The
//! running archive, the read-only view and the CLI all seek here.

use crate::descriptor::RecordingDescriptor;
use crate::error::{Result, StoreError};
use crate::recording_reader::RecordingReader;
use crate::storage::{disk, Storage};
use std::path::Path;
use std::sync::Arc;

/// The most payload a message's first fragment can carry in `descriptor`'s recording: the MTU
/// less the frame header.
pub fn longest_first_fragment(descriptor: &RecordingDescriptor) -> usize {
    (descriptor.mtu_length as usize).saturating_sub(crate::frame::HEADER_LENGTH)
}

/// Refuse a time source that can read the time of no message of the recording: a field (or the
/// cluster egress timestamp) that ends past the longest first fragment its messages can have, as the
/// archive's key filter check does for a key field.
///
/// # Errors
/// [`StoreError::Invalid`] saying why.
pub fn check_time_source(
    descriptor: &RecordingDescriptor,
    source: crate::message_time::TimeSource,
) -> Result<()> {
    let Some(end) = source.message_bytes() else {
        return Ok(());
    };
    let longest = longest_first_fragment(descriptor);
    if end > longest {
        return Err(StoreError::Invalid(format!(
            "time source {source}: the timestamp ends at byte {end}, past the first fragment of any message of recording {} (MTU {}: at most {longest} bytes); a message's time is read from its first fragment",
            descriptor.recording_id, descriptor.mtu_length
        )));
    }
    Ok(())
}

/// Where to start a replay of `descriptor` (whose data ends at `end`) to begin at the first
/// message captured at or after `timestamp_ns`.
///
/// # Errors
/// A missing or unreadable time index.
pub fn position_at_time(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    end: i64,
    timestamp_ns: i64,
) -> Result<i64> {
    position_at_time_on(&disk(), dir, descriptor, end, timestamp_ns)
}

/// [`position_at_time`] in `dir` of `storage`.
///
/// # Errors
/// A missing or unreadable time index.
pub fn position_at_time_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    descriptor: &RecordingDescriptor,
    end: i64,
    timestamp_ns: i64,
) -> Result<i64> {
    let reader =
        crate::time_index::TimeIndexReader::open_on(storage, dir, descriptor.recording_id)?;
    Ok(match reader.seek(timestamp_ns, end)? {
        crate::time_index::TimeSeek::At(entry) => entry.position.max(descriptor.start_position),
        crate::time_index::TimeSeek::AfterLast => end,
    })
}

/// The time of the first message at or after `from` that `source` can read, and its position.
fn first_timed_message(
    reader: &mut RecordingReader,
    from: i64,
    end: i64,
    source: crate::message_time::TimeSource,
    at_or_after: Option<i64>,
) -> Result<Option<(i64, i64)>> {
    let mut found = None;
    reader.scan(from, end, |frame| {
        if frame.header.is_padding() || frame.header.flags & crate::frame::BEGIN_FLAG == 0 {
            return true;
        }
        match source.message_time(frame.payload()) {
            Some(time) if at_or_after.is_none_or(|target| time >= target) => {
                found = Some((time, frame.position));
                false
            }
            _ => true,
        }
    })?;
    Ok(found)
}

/// Where to start a replay of `descriptor` to begin at the first message whose own time (read by
/// `source`) is at or after `timestamp_ns`. Message times are taken to grow with positions (as a
/// cluster's egress timestamps do): a binary search over the capture-time index, reading the
/// message at each probed entry, then a scan of one stretch between two entries.
///
/// # Errors
/// An unreadable time index or segment.
pub fn position_at_message_time(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    end: i64,
    timestamp_ns: i64,
    source: crate::message_time::TimeSource,
) -> Result<i64> {
    position_at_message_time_on(&disk(), dir, descriptor, end, timestamp_ns, source)
}

/// [`position_at_message_time`] in `dir` of `storage`.
///
/// # Errors
/// An unreadable time index or segment.
pub fn position_at_message_time_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    descriptor: &RecordingDescriptor,
    end: i64,
    timestamp_ns: i64,
    source: crate::message_time::TimeSource,
) -> Result<i64> {
    if !source.is_in_message() {
        return position_at_time_on(storage, dir, descriptor, end, timestamp_ns);
    }
    check_time_source(descriptor, source)?;
    let index = crate::time_index::TimeIndexReader::open_on(storage, dir, descriptor.recording_id)?;
    let mut reader = RecordingReader::new_on(storage, dir, descriptor);
    let usable = index.first_after_position(end - 1)?;
    // The first entry whose first readable message is at or after the time.
    let (mut low, mut high) = (0u64, usable);
    while low < high {
        let middle = low + (high - low) / 2;
        let entry = index.entry(middle)?;
        match first_timed_message(
            &mut reader,
            entry.position.max(descriptor.start_position),
            end,
            source,
            None,
        )? {
            Some((time, _)) if time < timestamp_ns => low = middle + 1,
            _ => high = middle,
        }
    }
    let from = match low {
        0 => descriptor.start_position,
        later => index
            .entry(later - 1)?
            .position
            .max(descriptor.start_position),
    };
    Ok(
        first_timed_message(&mut reader, from, end, source, Some(timestamp_ns))?
            .map_or(end, |(_, position)| position),
    )
}
