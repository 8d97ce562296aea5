//! Extending a stopped recording with a new image (Aeron's `extendRecording`): the checks an
//! image must pass (Aeron's `validateImageForExtendRecording`) and the files and catalog record
//! prepared for the recorder to go on writing the recording where it stopped.

use super::{Report, Reporter};
use crate::config::ArchiveConfig;
use crate::error::{ArchiveError, Result};
use std::sync::Arc;
use tern_store::descriptor::{RecordState, RecordingDescriptor, NULL_POSITION};
use tern_store::progress::RecordingProgress;
use tern_store::segment_writer::{SegmentGeometry, SegmentWriter};
use tern_store::time_index::TimeIndexWriter;
use tern_store::RecordingId;
use tern_transport::ImageInfo;

/// A stopped recording made active again, ready to take the image's frames from `position`.
pub(crate) struct Extension {
    /// Its record, active again (stop position and time [`NULL_POSITION`]).
    pub descriptor: RecordingDescriptor,
    /// Positioned at the old stop position.
    pub writer: SegmentWriter,
    /// The time index, continued.
    pub time_index: TimeIndexWriter,
    /// Registered with the archive.
    pub progress: Arc<RecordingProgress>,
}

/// Check that the image fits the recording: it must join at the recording's stop position with
/// the same initial term id, term length and MTU.
fn check_image(
    descriptor: &RecordingDescriptor,
    image: &ImageInfo,
    position: i64,
) -> Result<(), String> {
    let recording_id = descriptor.recording_id;
    let mismatch = |what: &str, image: i64, recording: i64| {
        let recording_what = if what.ends_with("position") {
            "stop position"
        } else {
            what
        };
        Err(format!(
            "cannot extend recording {recording_id}: image {what} {image} != recording {recording_what} {recording}"
        ))
    };
    if image.join_position != descriptor.stop_position {
        return mismatch(
            "join position",
            image.join_position,
            descriptor.stop_position,
        );
    }
    if position != descriptor.stop_position {
        return mismatch("position", position, descriptor.stop_position);
    }
    if image.initial_term_id != descriptor.initial_term_id {
        return mismatch(
            "initial term id",
            image.initial_term_id.into(),
            descriptor.initial_term_id.into(),
        );
    }
    if image.term_length != descriptor.term_length {
        return mismatch(
            "term length",
            image.term_length.into(),
            descriptor.term_length.into(),
        );
    }
    if image.mtu_length != descriptor.mtu_length {
        return mismatch("MTU", image.mtu_length.into(), descriptor.mtu_length.into());
    }
    Ok(())
}

/// Make recording `recording_id` active again for an image of subscription `subscription_id`
/// whose next frame is at `position`. In order: the recording is reserved as active (refused if
/// it is active or a truncate or purge works on it), the image is checked, whatever follows the
/// stop position in the files is removed (leftovers of an interrupted truncate, say), the
/// segment and time index are reopened, and only then is the catalog record made active (stop
/// position [`NULL_POSITION`]), so a failure before leaves the recording stopped as it was, and a
/// crash after is recovered like any interrupted recording.
///
/// # Errors
/// The recording is unknown, deleted, active or busy; the image does not fit; a file or catalog
/// error. The recording is then as it was.
pub(crate) fn open_extension(
    config: &ArchiveConfig,
    report: &Reporter,
    recording_id: RecordingId,
    subscription_id: i64,
    image: &ImageInfo,
    position: i64,
) -> Result<Extension> {
    let descriptor = super::ask(report, |reply| Report::ReserveExtension {
        recording_id,
        subscription_id,
        reply,
    })?;
    let opened = prepare(config, report, descriptor, image, position);
    if opened.is_err() {
        report(Report::ReleaseExtension(recording_id));
    }
    opened
}

/// Whether a recording can be extended at all: stopped, and valid.
pub(crate) fn check_extensible(descriptor: &RecordingDescriptor) -> Result<()> {
    let recording_id = descriptor.recording_id;
    if descriptor.is_active() {
        return Err(ArchiveError::Active {
            recording_id,
            operation: "extend",
        });
    }
    if descriptor.state != RecordState::Valid {
        return Err(ArchiveError::Invalid(format!(
            "cannot extend recording {recording_id}: its state is {}",
            descriptor.state.name()
        )));
    }
    Ok(())
}

/// The files of a reserved extension; the record made active last (on the conductor, which
/// releases the recording if that fails).
fn prepare(
    config: &ArchiveConfig,
    report: &Reporter,
    mut descriptor: RecordingDescriptor,
    image: &ImageInfo,
    position: i64,
) -> Result<Extension> {
    let recording_id = descriptor.recording_id;
    check_image(&descriptor, image, position).map_err(ArchiveError::Invalid)?;
    let stop = descriptor.stop_position;
    crate::operations::cut_files(&config.io.storage, &config.dir, &descriptor, stop)?;
    let geometry = SegmentGeometry {
        dir: config.dir.clone(),
        recording_id,
        start_position: descriptor.start_position,
        term_length: i64::from(descriptor.term_length),
        segment_length: i64::from(descriptor.segment_length),
    };
    let writer = SegmentWriter::resume_on(
        &config.io,
        geometry,
        stop,
        config.write_mode,
        config.preallocate,
        config.write_buffer_length,
    )?;
    let time_index = TimeIndexWriter::resume_on(
        &config.io.storage,
        &config.dir,
        recording_id,
        config.time_index_interval.as_nanos() as i64,
        stop,
    )?;
    descriptor.stop_position = NULL_POSITION;
    descriptor.stop_timestamp_ns = NULL_POSITION;
    let progress = super::ask(report, |reply| Report::ExtensionOpened {
        descriptor: descriptor.clone(),
        position: stop,
        reply,
    })?;
    Ok(Extension {
        descriptor,
        writer,
        time_index,
        progress,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_must_join_at_the_stop_with_the_recordings_geometry() {
        let mut descriptor = tern_store::descriptor::sample(RecordingId::new(4));
        descriptor.stop_position = 8192;
        let image = ImageInfo {
            correlation_id: 1,
            session_id: 2,
            source_identity: "aeron:ipc".into(),
            join_position: 8192,
            initial_term_id: descriptor.initial_term_id,
            term_length: descriptor.term_length,
            mtu_length: descriptor.mtu_length,
        };
        assert_eq!(check_image(&descriptor, &image, 8192), Ok(()));
        let error = check_image(
            &descriptor,
            &ImageInfo {
                join_position: 0,
                ..image.clone()
            },
            0,
        )
        .expect_err("wrong join position");
        assert!(
            error.contains("image join position 0 != recording stop position 8192"),
            "{error}"
        );
        for wrong in [
            ImageInfo {
                initial_term_id: 99,
                ..image.clone()
            },
            ImageInfo {
                term_length: 1 << 20,
                ..image.clone()
            },
            ImageInfo {
                mtu_length: 9000,
                ..image.clone()
            },
        ] {
            assert!(check_image(&descriptor, &wrong, 8192).is_err());
        }
    }
}
