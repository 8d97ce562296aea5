//! Reassembly of messages that Aeron split into several fragments (messages longer than the MTU):
//! [`StreamAssembler`] for one stream in position order (one image, or a replay-merge's replay
//! then live image), [`FragmentAssembler`] for a subscription's images, one stream per session.

use crate::header::{Header, BEGIN_FLAG, END_FLAG};
use std::collections::HashMap;

/// Joins fragments into messages regardless of the image (session) they came from: the merge
/// feeds it one stream in position order.
///
/// A fragment that continues a message whose beginning was never seen (a replay that starts
/// mid-message) is dropped, as Aeron's assembler does.
#[derive(Debug, Default)]
pub struct StreamAssembler {
    partial: Vec<u8>,
    in_message: bool,
}

impl StreamAssembler {
    /// An assembler with no partial message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one fragment; calls `on_message` with a whole message (and the last fragment's
    /// header) when `fragment` completes one.
    pub fn on_fragment(
        &mut self,
        fragment: &[u8],
        header: &Header,
        on_message: &mut (impl FnMut(&[u8], &Header) + ?Sized),
    ) {
        let begin = header.flags & BEGIN_FLAG != 0;
        let end = header.flags & END_FLAG != 0;
        if begin && end {
            self.partial.clear();
            self.in_message = false;
            on_message(fragment, header);
            return;
        }
        if begin {
            self.partial.clear();
            self.partial.extend_from_slice(fragment);
            self.in_message = true;
            return;
        }
        if !self.in_message {
            return;
        }
        self.partial.extend_from_slice(fragment);
        if end {
            self.in_message = false;
            on_message(&self.partial, header);
            self.partial.clear();
        }
    }

    /// Whether a message has begun and not ended.
    pub fn in_message(&self) -> bool {
        self.in_message
    }
}

/// Joins fragments into whole messages, one [`StreamAssembler`] per publisher session.
///
/// Fragments of one session arrive in order (Aeron guarantees it per image), so a message is the
/// bytes from a BEGIN fragment to the next END fragment of the same session. A fragment that
/// continues a message whose beginning was never seen (a subscriber that joined mid-message) is
/// dropped, as Aeron's assembler does.
#[derive(Debug, Default)]
pub struct FragmentAssembler {
    sessions: HashMap<i32, StreamAssembler>,
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
        self.sessions
            .entry(header.session_id)
            .or_default()
            .on_fragment(fragment, header, on_message);
    }

    /// Drop the partial message of a session whose image went away.
    pub fn forget_session(&mut self, session_id: i32) {
        self.sessions.remove(&session_id);
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
    fn a_message_whose_first_fragment_is_empty_is_kept() {
        let mut assembler = FragmentAssembler::new();
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut sink = |message: &[u8], _: &Header| out.push(message.to_vec());
        assembler.on_fragment(b"", &header(5, BEGIN_FLAG), &mut sink);
        assembler.on_fragment(b"cd", &header(5, 0), &mut sink);
        assembler.on_fragment(b"ef", &header(5, END_FLAG), &mut sink);
        assert_eq!(out, vec![b"cdef".to_vec()]);
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

    #[test]
    fn a_message_begun_on_one_image_ends_on_the_other() {
        let mut assembler = StreamAssembler::new();
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut sink = |message: &[u8], _: &Header| out.push(message.to_vec());
        assembler.on_fragment(b"orphan", &header(9, END_FLAG), &mut sink);
        assembler.on_fragment(b"ab", &header(9, BEGIN_FLAG), &mut sink);
        assert!(assembler.in_message());
        // The switch: the replay's session was 9, the live session is 4.
        assembler.on_fragment(b"cd", &header(4, 0), &mut sink);
        assembler.on_fragment(b"ef", &header(4, END_FLAG), &mut sink);
        assembler.on_fragment(b"whole", &header(4, BEGIN_FLAG | END_FLAG), &mut sink);
        assert!(!assembler.in_message());
        assert_eq!(out, vec![b"abcdef".to_vec(), b"whole".to_vec()]);
    }
}
