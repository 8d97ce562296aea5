//! CRC32C (Castagnoli) over a few byte ranges as if they were one, the way frames are checksummed.
//!
//! Frames are often tiny (a 32-byte message is a 64-byte frame), so the per-call cost of a general
//! CRC library dominated recording small messages. On x86-64 with SSE 4.2 this runs the `crc32`
//! instruction over the ranges directly, 8 bytes at a time; elsewhere it uses the `crc32c` crate.
//! Both give the standard CRC32C (initial value and final xor `0xFFFF_FFFF`).

/// The CRC32C of the concatenation of `parts`.
pub fn crc32c_parts(parts: &[&[u8]]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE 4.2, checked just above.
            return unsafe { hardware::crc32c_parts(parts) };
        }
    }
    let mut crc = 0;
    for part in parts {
        crc = crc32c::crc32c_append(crc, part);
    }
    crc
}

#[cfg(target_arch = "x86_64")]
mod hardware {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};

    /// From this length a range goes to the `crc32c` crate.
    const LONG_PART: usize = 256;

    #[target_feature(enable = "sse4.2")]
    pub(super) unsafe fn crc32c_parts(parts: &[&[u8]]) -> u32 {
        let mut crc: u64 = 0xFFFF_FFFF;
        for part in parts {
            if part.len() >= LONG_PART {
                // Long ranges (payloads): the crate's three interleaved streams are faster than
                // one (measured 10 GB/s against 8 GB/s over 1 KiB here).
                crc = u64::from(!crc32c::crc32c_append(!(crc as u32), part));
                continue;
            }
            let mut chunks = part.chunks_exact(8);
            for chunk in &mut chunks {
                let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                crc = _mm_crc32_u64(crc, word);
            }
            let mut small = crc as u32;
            for byte in chunks.remainder() {
                small = _mm_crc32_u8(small, *byte);
            }
            crc = u64::from(small);
        }
        !(crc as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_the_crc32c_of_the_concatenation(parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..1200), 0..5)) {
            let joined: Vec<u8> = parts.concat();
            let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(crc32c_parts(&slices), crc32c::crc32c(&joined));
        }
    }

    #[test]
    fn known_value() {
        // The CRC32C check value of "123456789".
        assert_eq!(crc32c_parts(&[b"1234", b"56789"]), 0xE306_9283);
    }
}
