//! Segment file naming and position arithmetic (pure), and the page-aligned buffer used for
//! `O_DIRECT` writes.

use crate::ids::RecordingId;
use std::alloc::{alloc_zeroed, dealloc, Layout};

/// Alignment of `O_DIRECT` writes: offsets, lengths and buffer addresses.
pub const PAGE: usize = 4096;

/// The file name of the segment of `recording_id` that starts at stream position `base`.
pub fn segment_file_name(recording_id: RecordingId, base: i64) -> String {
    format!("{recording_id}-{base}.rec")
}

/// Parse a segment file name into (recording id, base position).
pub fn parse_segment_file_name(name: &str) -> Option<(RecordingId, i64)> {
    let stem = name.strip_suffix(".rec")?;
    let (id, base) = stem.split_once('-')?;
    Some((id.parse().ok()?, base.parse().ok()?))
}

/// The base position of the segment holding `position` of a recording that started at
/// `start_position`. Segments are aligned to the start of the recording's first term, so a term
/// never spans two segments (as in Aeron's archive).
pub fn segment_base(
    start_position: i64,
    position: i64,
    term_length: i64,
    segment_length: i64,
) -> i64 {
    let start_term_base = start_position - (start_position & (term_length - 1));
    let from_base = position - start_term_base;
    start_term_base + from_base - (from_base & (segment_length - 1))
}

/// `value` rounded down to a page.
pub fn page_floor(value: i64) -> i64 {
    value & !(PAGE as i64 - 1)
}

/// A zeroed, page-aligned heap buffer.
pub struct AlignedBuffer {
    pointer: *mut u8,
    length: usize,
}

impl AlignedBuffer {
    /// A zeroed buffer of `length` bytes (rounded up to a page), page aligned.
    pub fn new(length: usize) -> Self {
        let length = length.div_ceil(PAGE).max(1) * PAGE;
        let layout = Layout::from_size_align(length, PAGE).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let pointer = unsafe { alloc_zeroed(layout) };
        if pointer.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Self { pointer, length }
    }

    /// The whole buffer.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `pointer` is a live allocation of `length` initialised bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.pointer, self.length) }
    }

    /// The whole buffer, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.pointer, self.length) }
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.length
    }

    /// Whether it is empty (never: at least a page).
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.length, PAGE).expect("valid layout");
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.pointer, layout) };
    }
}

// SAFETY: the buffer owns its allocation exclusively; nothing is shared.
unsafe impl Send for AlignedBuffer {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_start_at_the_first_term_of_the_recording() {
        let term = 64 * 1024;
        let segment = 4 * term;
        let start = 3 * term + 4096;
        assert_eq!(segment_base(start, start, term, segment), 3 * term);
        assert_eq!(segment_base(start, 7 * term - 32, term, segment), 3 * term);
        assert_eq!(segment_base(start, 7 * term, term, segment), 7 * term);
        assert_eq!(
            segment_file_name(RecordingId::new(5), 7 * term),
            "5-458752.rec"
        );
        assert_eq!(
            parse_segment_file_name("5-458752.rec"),
            Some((RecordingId::new(5), 458752))
        );
        assert_eq!(parse_segment_file_name("catalog.tern"), None);
    }

    #[test]
    fn aligned_buffers_are_page_aligned_and_zeroed() {
        let buffer = AlignedBuffer::new(5000);
        assert_eq!(buffer.len(), 8192);
        assert_eq!(buffer.as_slice().as_ptr() as usize % PAGE, 0);
        assert!(buffer.as_slice().iter().all(|byte| *byte == 0));
    }
}
