//! The benchmark's messages: each payload starts with its sequence number (little endian u64).
//! A publisher sends them as fast as the stream takes them; a subscriber counts and checks them.

use anyhow::{bail, Context};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tern_transport::{BackoffIdle, ExclusivePublication, Header, Idle, Subscription};

/// The channel every case uses.
pub const CHANNEL: &str = "aeron:ipc";
/// Fragments a subscriber takes per poll.
const FRAGMENT_LIMIT: usize = 1024;
/// How long a publisher or subscriber waits without progress before it gives up.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for a publication or subscription to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a publisher sent.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// When the first offer was made.
    pub started: Instant,
    /// When the last message was accepted.
    pub finished: Instant,
    /// The publication's position after the last message.
    pub final_position: i64,
}

/// Wait until `publication` has a subscriber, idling with backoff.
///
/// # Errors
/// No subscriber within [`CONNECT_TIMEOUT`].
pub fn wait_connected(publication: &ExclusivePublication) -> anyhow::Result<()> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut idle = BackoffIdle::new();
    while !publication.is_connected() {
        if Instant::now() > deadline {
            bail!(
                "stream {} got no subscriber within {CONNECT_TIMEOUT:?}",
                publication.stream_id()
            );
        }
        idle.idle(0);
    }
    Ok(())
}

/// The reserved value of message `sequence` when there are `keys` keys: `sequence % keys`, the
/// keys interleaved in turn (`keys` 0: the sequence itself, every message a key of its own).
pub fn key_of(sequence: u64, keys: u64) -> i64 {
    if keys == 0 {
        sequence as i64
    } else {
        (sequence % keys) as i64
    }
}

/// Send `messages` messages of `size` bytes, numbered from 0, as fast as the publication accepts
/// them: `try_claim` when a message fits one frame (its reserved value [`key_of`] the sequence and
/// `keys`), `offer` otherwise; back pressure is met with [`BackoffIdle`]. Gives up when `abort` is
/// set or nothing goes through for [`STALL_TIMEOUT`].
///
/// # Errors
/// A final offer error, an abort, or a stall.
pub fn publish(
    publication: &ExclusivePublication,
    size: usize,
    messages: u64,
    keys: u64,
    abort: &AtomicBool,
) -> anyhow::Result<Published> {
    let claim = size <= publication.max_payload_length();
    let mut message = vec![0u8; size];
    let mut idle = BackoffIdle::new();
    let started = Instant::now();
    let mut stalled_since: Option<Instant> = None;
    let mut sequence = 0u64;
    // `key_of(sequence, keys)`, kept up to date without a division per message.
    let mut key = 0i64;
    while sequence < messages {
        let bytes = sequence.to_le_bytes();
        let outcome = if claim {
            publication.try_claim(size, key, |buffer| {
                buffer[..bytes.len()].copy_from_slice(&bytes);
            })
        } else {
            message[..bytes.len()].copy_from_slice(&bytes);
            publication.offer(&message)
        };
        match outcome {
            Ok(_) => {
                sequence += 1;
                key = if keys == 0 {
                    sequence as i64
                } else if key as u64 + 1 == keys {
                    0
                } else {
                    key + 1
                };
                if stalled_since.take().is_some() {
                    idle.reset();
                }
            }
            Err(error) if error.is_retryable() => {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() > STALL_TIMEOUT {
                    bail!("publisher stalled at message {sequence} of {messages}: {error}");
                }
                if abort.load(Ordering::Relaxed) {
                    bail!("publisher aborted at message {sequence} of {messages}");
                }
                idle.idle(0);
            }
            Err(error) => bail!("offer of message {sequence}: {error}"),
        }
    }
    Ok(Published {
        started,
        finished: Instant::now(),
        final_position: publication.position(),
    })
}

/// What a subscriber received.
#[derive(Debug, Clone, Copy)]
pub struct Counted {
    /// Messages received.
    pub messages: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// When the last message arrived.
    pub finished: Instant,
    /// The session id of the first message.
    pub session_id: Option<i32>,
    /// Whether any message came from another session.
    pub mixed_sessions: bool,
}

/// Checks messages as they arrive.
#[derive(Debug)]
struct Checker {
    size: usize,
    next: u64,
    bytes: u64,
    session_id: Option<i32>,
    mixed_sessions: bool,
    problem: Option<String>,
}

impl Checker {
    fn new(size: usize) -> Self {
        Self {
            size,
            next: 0,
            bytes: 0,
            session_id: None,
            mixed_sessions: false,
            problem: None,
        }
    }

    fn on_message(&mut self, payload: &[u8], header: &Header) {
        if self.problem.is_some() {
            return;
        }
        match self.session_id {
            None => self.session_id = Some(header.session_id),
            Some(id) if id != header.session_id => self.mixed_sessions = true,
            Some(_) => {}
        }
        let sequence = payload
            .get(..8)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_le_bytes);
        if payload.len() != self.size || sequence != Some(self.next) {
            self.problem = Some(format!(
                "message {} arrived as {} bytes with sequence {sequence:?}",
                self.next,
                payload.len()
            ));
            return;
        }
        self.next += 1;
        self.bytes += payload.len() as u64;
    }
}

/// Receive `messages` messages of `size` bytes in sequence order from `subscription`, polling with
/// backoff when there is nothing. Gives up when `abort` is set or nothing arrives for
/// [`STALL_TIMEOUT`].
///
/// # Errors
/// A message out of order or of the wrong size, a poll error, an abort, or a stall.
pub fn count(
    subscription: &Subscription,
    size: usize,
    messages: u64,
    abort: &AtomicBool,
) -> anyhow::Result<Counted> {
    let mut checker = Checker::new(size);
    let mut idle = BackoffIdle::new();
    let mut last_progress = Instant::now();
    while checker.next < messages {
        let fragments = subscription
            .poll(
                |payload, header| checker.on_message(payload, header),
                FRAGMENT_LIMIT,
            )
            .context("poll")?;
        if let Some(problem) = checker.problem.take() {
            bail!("subscriber: {problem}");
        }
        if fragments > 0 {
            last_progress = Instant::now();
        } else if abort.load(Ordering::Relaxed) {
            bail!(
                "subscriber aborted at message {} of {messages}",
                checker.next
            );
        } else if last_progress.elapsed() > STALL_TIMEOUT {
            bail!(
                "subscriber stalled at message {} of {messages}",
                checker.next
            );
        }
        idle.idle(fragments);
    }
    Ok(Counted {
        messages: checker.next,
        bytes: checker.bytes,
        finished: Instant::now(),
        session_id: checker.session_id,
        mixed_sessions: checker.mixed_sessions,
    })
}

/// Receive until `total` messages came from `subscription`, keeping those whose reserved value is
/// `key`: the messages of that key, whose sequences are `key`, `key + keys`, `key + 2 keys`...
/// (checked). A filtered replay sends only those (`total` is their count), an unfiltered one every
/// message (the subscriber filters).
///
/// # Errors
/// A message of the key out of order or of the wrong size, a poll error, an abort, or a stall.
pub fn count_key(
    subscription: &Subscription,
    size: usize,
    key: i64,
    keys: u64,
    total: u64,
    abort: &AtomicBool,
) -> anyhow::Result<Counted> {
    let mut received = 0u64;
    let mut matched = 0u64;
    let mut bytes = 0u64;
    let mut problem = None;
    let mut session_id = None;
    let mut mixed_sessions = false;
    let mut idle = BackoffIdle::new();
    let mut last_progress = Instant::now();
    while received < total {
        let fragments = subscription
            .poll(
                |payload, header| {
                    received += 1;
                    match session_id {
                        None => session_id = Some(header.session_id),
                        Some(id) if id != header.session_id => mixed_sessions = true,
                        Some(_) => {}
                    }
                    if header.reserved_value != key {
                        return;
                    }
                    let sequence = payload
                        .get(..8)
                        .and_then(|bytes| bytes.try_into().ok())
                        .map(u64::from_le_bytes);
                    let expected = key as u64 + matched * keys.max(1);
                    if payload.len() != size || sequence != Some(expected) {
                        problem.get_or_insert(format!(
                            "message {matched} of key {key} arrived as {} bytes with sequence {sequence:?}, not {expected}",
                            payload.len()
                        ));
                    }
                    matched += 1;
                    bytes += payload.len() as u64;
                },
                FRAGMENT_LIMIT,
            )
            .context("poll")?;
        if let Some(problem) = problem.take() {
            bail!("subscriber: {problem}");
        }
        if fragments > 0 {
            last_progress = Instant::now();
        } else if abort.load(Ordering::Relaxed) {
            bail!("subscriber aborted after {received} of {total} messages");
        } else if last_progress.elapsed() > STALL_TIMEOUT {
            bail!("subscriber stalled after {received} of {total} messages");
        }
        idle.idle(fragments);
    }
    Ok(Counted {
        messages: matched,
        bytes,
        finished: Instant::now(),
        session_id,
        mixed_sessions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(session_id: i32) -> Header {
        Header {
            session_id,
            ..Header::default()
        }
    }

    fn message(sequence: u64, size: usize) -> Vec<u8> {
        let mut message = vec![0u8; size];
        message[..8].copy_from_slice(&sequence.to_le_bytes());
        message
    }

    #[test]
    fn the_checker_counts_in_order_and_flags_gaps_sizes_and_sessions() {
        let mut checker = Checker::new(32);
        checker.on_message(&message(0, 32), &header(7));
        checker.on_message(&message(1, 32), &header(8));
        assert_eq!((checker.next, checker.bytes), (2, 64));
        assert!(checker.mixed_sessions && checker.problem.is_none());
        checker.on_message(&message(3, 32), &header(7));
        assert!(checker
            .problem
            .take()
            .is_some_and(|p| p.contains("message 2")));
        checker.on_message(&message(2, 31), &header(7));
        assert!(checker.problem.is_some());
        assert_eq!(checker.next, 2);
    }
}
