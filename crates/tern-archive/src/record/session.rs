//! One image being recorded: frames to the segment writer, the time index, fsync by policy,
//! and the stop.

use super::{RecordingStop, Report, Reporter};
use crate::config::{ArchiveConfig, FsyncPolicy};
use crate::error::{ArchiveError, Result};
use crate::types::RecordingFailure;
use std::sync::Arc;
use std::time::Instant;
use tern_store::descriptor::RecordingDescriptor;
use tern_store::progress::RecordingProgress;
use tern_store::segment_writer::SegmentWriter;
use tern_store::time_index::TimeIndexWriter;
use tern_transport::{BlockSource, Counter, Image, PositionCounter};

/// One image being recorded: generic over where its frames come from (an Aeron [`Image`], or a
/// simulated one in tests).
pub(crate) struct RecordingSession<I = Image, C = Counter> {
    pub(crate) descriptor: RecordingDescriptor,
    pub(crate) image: I,
    pub(crate) writer: SegmentWriter,
    pub(crate) time_index: TimeIndexWriter,
    pub(crate) progress: Arc<RecordingProgress>,
    pub(crate) counter: Option<C>,
    pub(crate) last_sync: Instant,
    /// The recording subscription the image came through.
    pub(crate) subscription_id: i64,
    /// For a spy image (a local recording of a UDP channel): when to check that its publication
    /// is connected, until it is or has been reported.
    pub(crate) spy_check: Option<Instant>,
}

const MIN_BLOCK_SPACE: usize = 64 * 1024;

/// Have the segment writer's I/O thread sync the time index after each segment sync.
pub(super) fn sync_time_index_with(writer: &mut SegmentWriter, time_index: &TimeIndexWriter) {
    let (path, file) = time_index.file_handle();
    writer.sync_with(path, file);
}

impl<I: BlockSource, C: PositionCounter> RecordingSession<I, C> {
    /// Copy what the image has into the segments, hand full buffers to the I/O thread, take in
    /// finished writes and syncs, and ask for syncs as the policy says.
    pub(crate) fn do_work(
        &mut self,
        config: &ArchiveConfig,
        timestamp_ns: i64,
        now: Instant,
    ) -> Result<usize> {
        let mut bytes = 0usize;
        let budget = config.write_buffer_length;
        let mut failure = None;
        while bytes < budget {
            if self.writer.buffer_space() < MIN_BLOCK_SPACE {
                self.writer.flush()?;
            }
            let space = self.writer.space();
            let writer = &mut self.writer;
            let time_index = &mut self.time_index;
            let first = bytes == 0;
            let consumed = self.image.block_poll(
                |block, position| {
                    if first {
                        time_index.record(timestamp_ns, position);
                    }
                    if failure.is_none() {
                        if let Err(error) = writer.append(block, position) {
                            failure = Some(error);
                        }
                    }
                },
                space,
            )?;
            if let Some(error) = failure.take() {
                return Err(error.into());
            }
            if consumed == 0 {
                break;
            }
            bytes += consumed;
        }
        if bytes > 0 {
            self.writer.flush()?;
            if let Err(error) = self.time_index.flush() {
                tracing::warn!(
                    "recording {}: time index stopped: {error}",
                    self.descriptor.recording_id
                );
            }
        }
        let finished = self.writer.poll()?;
        let flushed = self.writer.flushed_position();
        let durable = match config.fsync {
            FsyncPolicy::None => flushed,
            FsyncPolicy::Always => {
                if bytes > 0 {
                    self.writer.request_sync()?;
                }
                self.writer.synced_position()
            }
            FsyncPolicy::Interval(interval) => {
                if now.duration_since(self.last_sync) >= interval
                    && self.writer.synced_position() < self.writer.position()
                {
                    // The I/O thread syncs the time index after the segment.
                    self.writer.request_sync()?;
                    self.last_sync = now;
                }
                self.writer.synced_position()
            }
        };
        if finished || durable != self.progress.durable() {
            self.progress.update(flushed, durable, self.writer.frames());
            if let Some(counter) = &self.counter {
                counter.set(flushed);
            }
        }
        Ok(bytes + usize::from(finished))
    }

    /// Write and sync what is buffered and record the stop in the catalog. If the data cannot be
    /// written and synced, the catalog keeps the recording active, so the next start finds its
    /// end by scanning what really is on disk.
    pub(crate) fn finish(mut self, report: &Reporter, error: Option<&ArchiveError>) -> I {
        let recording_id = self.descriptor.recording_id;
        let synced = self.writer.sync();
        if let Err(index_error) = self
            .time_index
            .flush()
            .and_then(|()| self.time_index.sync())
        {
            tracing::warn!("recording {recording_id}: time index not saved: {index_error}");
        }
        let stop = self.writer.flushed_position();
        let durable = self.writer.synced_position();
        self.progress.update(stop, durable, self.writer.frames());
        let stopped = match &synced {
            Ok(()) => {
                self.writer.finish_keys(stop);
                self.descriptor.stop_position = stop;
                self.descriptor.stop_timestamp_ns = tern_store::epoch_nanos();
                Some(self.descriptor.clone())
            }
            Err(sync_error) => {
                tracing::error!(
                    "recording {recording_id}: final write or sync failed, left for recovery at the next start: {sync_error}"
                );
                None
            }
        };
        let failure = error.map(|error| RecordingFailure {
            recording_id: Some(recording_id),
            subscription_id: self.subscription_id,
            session_id: self.descriptor.session_id,
            stream_id: self.descriptor.stream_id,
            channel: self.descriptor.original_channel.clone(),
            position: stop,
            code: error.code(),
            error: error.to_string(),
        });
        let subscription_id = self.subscription_id;
        report(Report::Stopped(RecordingStop {
            recording_id,
            subscription_id,
            record: stopped,
            stop,
            failure,
            signal: true,
        }));
        match error {
            Some(error) => tracing::error!(
                "recording {recording_id} stopped at position {stop} after an error: {error}"
            ),
            None => tracing::info!("recording {recording_id} stopped at position {stop}"),
        }
        self.image
    }
}
