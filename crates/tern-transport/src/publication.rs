//! Publications: where messages are offered.

use rusteron_client::{AeronExclusivePublication, AeronOfferError, AeronPublication};

/// Why an offer did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// No subscriber is connected yet. Retryable.
    #[error("not connected")]
    NotConnected,
    /// Flow control holds the publisher back. Retryable after idling.
    #[error("back pressured")]
    BackPressured,
    /// A term rotation is in progress. Retryable at once.
    #[error("admin action")]
    AdminAction,
    /// The publication is closed. Final.
    #[error("publication closed")]
    Closed,
    /// The stream reached its maximum position. Final.
    #[error("maximum position exceeded")]
    MaxPositionExceeded,
    /// Any other error (a message too long, a malformed block). Final.
    #[error("offer failed: {0}")]
    Failed(String),
}

impl OfferError {
    /// Whether offering again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::NotConnected | Self::BackPressured | Self::AdminAction
        )
    }

    fn from_aeron(error: AeronOfferError) -> Self {
        match error {
            AeronOfferError::NotConnected => Self::NotConnected,
            AeronOfferError::BackPressured => Self::BackPressured,
            AeronOfferError::AdminAction => Self::AdminAction,
            AeronOfferError::Closed => Self::Closed,
            AeronOfferError::MaxPositionExceeded => Self::MaxPositionExceeded,
            other => Self::Failed(format!("{other:?}: {}", rusteron_client::Aeron::errmsg())),
        }
    }

    fn from_position(position: i64) -> Result<i64, Self> {
        AeronOfferError::from_position(position).map_err(Self::from_aeron)
    }
}

macro_rules! publication_common {
    ($type:ident) => {
        impl $type {
            /// Offer one message (fragmented by Aeron when longer than the MTU).
            ///
            /// # Errors
            /// See [`OfferError`]; retry those that are retryable.
            pub fn offer(&self, message: &[u8]) -> Result<i64, OfferError> {
                self.inner.offer(message).map_err(OfferError::from_aeron)
            }

            /// [`Self::offer`], offered again at once while a term rotation is in progress (an
            /// admin action, which Aeron resolves on the next offer); any other refusal is
            /// returned.
            ///
            /// # Errors
            /// See [`OfferError`]; never [`OfferError::AdminAction`] unless 100 offers in a row
            /// met one.
            pub fn offer_past_rotation(&self, message: &[u8]) -> Result<i64, OfferError> {
                let mut result = self.offer(message);
                for _ in 0..100 {
                    if result != Err(OfferError::AdminAction) {
                        break;
                    }
                    result = self.offer(message);
                }
                result
            }

            /// Claim `length` bytes in the log, let `fill` write them, and commit with `reserved_value`
            /// in the frame header. `length` must not exceed [`Self::max_payload_length`].
            ///
            /// # Errors
            /// See [`OfferError`].
            pub fn try_claim(
                &self,
                length: usize,
                reserved_value: i64,
                fill: impl FnOnce(&mut [u8]),
            ) -> Result<i64, OfferError> {
                let mut claim = self
                    .inner
                    .try_claim_owned(length)
                    .map_err(OfferError::from_aeron)?;
                fill(claim.data());
                claim.set_reserved_value(reserved_value);
                claim
                    .commit()
                    .map_err(|error| OfferError::Failed(format!("commit claim: {error}")))
            }

            /// The position of the next message to be offered.
            pub fn position(&self) -> i64 {
                self.inner.position()
            }

            /// The session id of this publication's log.
            pub fn session_id(&self) -> i32 {
                self.constants.session_id
            }

            /// The stream id.
            pub fn stream_id(&self) -> i32 {
                self.constants.stream_id
            }

            /// Whether a subscriber is connected.
            pub fn is_connected(&self) -> bool {
                self.inner.is_connected()
            }

            /// Whether the publication is closed.
            pub fn is_closed(&self) -> bool {
                self.inner.is_closed()
            }

            /// The longest message that fits in one frame (no fragmentation).
            pub fn max_payload_length(&self) -> usize {
                self.constants.max_payload_length
            }

            /// The longest message `offer` accepts.
            pub fn max_message_length(&self) -> usize {
                self.constants.max_message_length
            }

            /// The length of one term of the log.
            pub fn term_length(&self) -> usize {
                self.constants.term_length
            }
        }
    };
}

/// A concurrent publication: many threads and many publications share one log and session.
pub struct Publication {
    inner: AeronPublication,
    constants: Constants,
}

impl Publication {
    pub(crate) fn new(inner: AeronPublication) -> Self {
        let constants = inner
            .get_constants()
            .map(|c| Constants {
                max_payload_length: c.max_payload_length(),
                max_message_length: c.max_message_length(),
                term_length: c.term_buffer_length(),
                session_id: c.session_id(),
                stream_id: c.stream_id(),
            })
            .unwrap_or_default();
        Self { inner, constants }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Constants {
    max_payload_length: usize,
    max_message_length: usize,
    term_length: usize,
    session_id: i32,
    stream_id: i32,
}

/// An exclusive publication: its own log and session, offered to from one thread. It can append
/// pre-formatted frames, which is how a replay reproduces the positions of a recording.
pub struct ExclusivePublication {
    inner: AeronExclusivePublication,
    constants: Constants,
}

impl ExclusivePublication {
    pub(crate) fn new(inner: AeronExclusivePublication) -> Self {
        let constants = inner
            .get_constants()
            .map(|c| Constants {
                max_payload_length: c.max_payload_length(),
                max_message_length: c.max_message_length(),
                term_length: c.term_buffer_length(),
                session_id: c.session_id(),
                stream_id: c.stream_id(),
            })
            .unwrap_or_default();
        Self { inner, constants }
    }

    /// Append a block of complete data frames (headers included) at the current position. The
    /// first frame's term offset, session id, stream id and term id must be this publication's, and
    /// the block must not cross the end of the term.
    ///
    /// # Errors
    /// See [`OfferError`]; a malformed block is [`OfferError::Failed`].
    pub fn offer_block(&self, block: &[u8]) -> Result<i64, OfferError> {
        OfferError::from_position(self.inner.offer_block(block))
    }

    /// Append a padding frame whose payload is `length` bytes.
    ///
    /// # Errors
    /// See [`OfferError`].
    pub fn append_padding(&self, length: usize) -> Result<i64, OfferError> {
        OfferError::from_position(self.inner.append_padding(length))
    }
}

publication_common!(Publication);
publication_common!(ExclusivePublication);
