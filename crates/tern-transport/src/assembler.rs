//! Reassembly of messages that Aeron split into several fragments (messages longer than the MTU).

use crate::header::{Header, BEGIN_FLAG, END_FLAG};
use std::collections::HashMap;

/// Joins fragments into whole messages, one buffer per publisher session.
///
/// Fragments of one session arrive in order (Aeron guarantees it per image), so a message is the
/// bytes from a BEGIN fragment to the next END fragment of the same session. A fragment that
/// continues a message whose beginning was never seen (a subscriber that joined mid-message) is
/// dropped, as Aeron's assembler does.
#[derive(Debug, Default)]
pub struct FragmentAssembler {
    partial: HashMap<i32, Vec<u8>>,
}

impl FragmentAssembler {
    /// An assembler with no partial message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one fragment; calls `on_message` with a whole message when `fragment` completes one.
    /// The header passed on is the last fragment's.
    pub fn on_fragment(
        &mut self,
        fragment: &[u8],
        header: &Header,
        on_message: &mut impl FnMut(&[u8], &Header),
    ) {
        let begin = header.flags & BEGIN_FLAG != 0;
        let end = header.flags & END_FLAG != 0;
        if begin && end {
            on_message(fragment, header);
            return;
        }
        if begin {
            let buffer = self.partial.entry(header.session_id).or_default();
            buffer.clear();
            buffer.extend_from_slice(fragment);
            return;
        }
        let Some(buffer) = self.partial.get_mut(&header.session_id) else {
            return;
        };
        if buffer.is_empty() {
            return;
        }
        buffer.extend_from_slice(fragment);
        if end {
            on_message(buffer, header);
            buffer.clear();
        }
    }

    /// Drop the partial message of a session whose image went away.
    pub fn forget_session(&mut self, session_id: i32) {
        self.partial.remove(&session_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(session_id: i32, flags: u8) -> Header {
        Header {
            session_id,
            flags,
            ..Header::default()
        }
    }

    #[test]
    fn joins_interleaved_sessions_and_drops_orphan_fragments() {
        let mut assembler = FragmentAssembler::new();
        let mut out: Vec<(i32, Vec<u8>)> = Vec::new();
        let mut sink =
            |message: &[u8], header: &Header| out.push((header.session_id, message.to_vec()));
        assembler.on_fragment(b"zz", &header(3, END_FLAG), &mut sink);
        assembler.on_fragment(b"ab", &header(1, BEGIN_FLAG), &mut sink);
        assembler.on_fragment(b"xy", &header(2, BEGIN_FLAG | END_FLAG), &mut sink);
        assembler.on_fragment(b"cd", &header(1, 0), &mut sink);
        assembler.on_fragment(b"ef", &header(1, END_FLAG), &mut sink);
        assert_eq!(out, vec![(2, b"xy".to_vec()), (1, b"abcdef".to_vec())]);
    }
}
