//! What a spy can learn of the network publication it reads: the publication's log buffer
//! metadata, in the driver's directory, which says whether the publication is connected (its
//! publishers can send) and whether spies count as subscribers for it.

use crate::error::TransportError;
use crate::subscription::ImageInfo;
use rusteron_client::bindings::aeron_logbuffer_metadata_stct;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Aeron's log buffers have three terms, then the metadata.
const PARTITION_COUNT: u64 = 3;

/// The state of the publication a spy image reads, from its log metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiedPublication {
    /// Whether the publication is connected: its publishers' offers are accepted (otherwise they
    /// are refused as not connected, and nothing reaches the log).
    pub connected: bool,
    /// Whether the publication counts spies as subscribers (the driver's
    /// `spies-simulate-connection`, or `ssc=true` on the publication's channel).
    pub spies_simulate_connection: bool,
}

/// The log file of the network publication a spy image in the driver directory `aeron_dir`
/// reads: a spy image's correlation id is the publication's registration id, and network
/// publications' logs are `publications/<registration id>.logbuffer` (the C and Java drivers
/// alike).
fn log_file(aeron_dir: &str, image: &ImageInfo) -> PathBuf {
    PathBuf::from(aeron_dir)
        .join("publications")
        .join(format!("{}.logbuffer", image.correlation_id))
}

/// The state of the publication that the spy image `image` of the driver in `aeron_dir` reads.
///
/// # Errors
/// The log file cannot be read (the image is no spy image, or the publication is gone).
pub fn spied_publication(
    aeron_dir: &str,
    image: &ImageInfo,
) -> Result<SpiedPublication, TransportError> {
    let path = log_file(aeron_dir, image);
    let unreadable = |error: std::io::Error| {
        TransportError::Invalid(format!(
            "log metadata of publication {} ({}): {error}",
            image.correlation_id,
            path.display()
        ))
    };
    let file = std::fs::File::open(&path).map_err(unreadable)?;
    let metadata = PARTITION_COUNT * u64::try_from(image.term_length).unwrap_or(0);
    let read_at = |offset: usize, bytes: &mut [u8]| {
        file.read_exact_at(bytes, metadata + offset as u64)
            .map_err(unreadable)
    };
    let mut connected = [0u8; 4];
    read_at(
        std::mem::offset_of!(aeron_logbuffer_metadata_stct, is_connected),
        &mut connected,
    )?;
    let mut simulate = [0u8; 1];
    read_at(
        std::mem::offset_of!(aeron_logbuffer_metadata_stct, spies_simulate_connection),
        &mut simulate,
    )?;
    Ok(SpiedPublication {
        connected: i32::from_ne_bytes(connected) != 0,
        spies_simulate_connection: simulate[0] != 0,
    })
}
