//! The control session's two streams: the exclusive request publication, the response
//! subscription, and the inbox that sorts what comes back.
//!
//! Everything that waits goes through here: [`Control::await_response`] and
//! [`Control::await_list`] poll the response stream, keep what answers a correlation id someone
//! waits for, queue recording signals, keep ERROR responses that answer nobody, and drop the rest
//! (responses of other control sessions on a shared stream, late answers to requests that timed
//! out, the archive's repeated connect response, pings).

use crate::error::{ArchiveErrorCode, ClientError};
use crate::types::{RecordingSignalEvent, StrayError};
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};
use tern_protocol::{
    AnyMessage, Challenge, ControlResponse, ControlResponseCode, CursorDescriptor, DecodeError,
    EncodeError, KeepAliveRequest, Message, MessageHeader, RecordingDescriptor,
    RecordingGroupDescriptor, RecordingSubscriptionDescriptor, TernMessage, SCHEMA_ID,
    TERN_SCHEMA_ID,
};
use tern_transport::{
    BackoffIdle, ExclusivePublication, FragmentAssembler, Header, Idle, OfferError, Subscription,
};

/// Fragments taken from the response stream per poll (Aeron's archive client takes 10).
const FRAGMENT_LIMIT: usize = 10;

/// A message of the response stream that answers a request someone waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A `ControlResponse`.
    Response(ControlResponse),
    /// A `RecordingDescriptor` of a listing.
    Descriptor(RecordingDescriptor),
    /// A `RecordingSubscriptionDescriptor` of a listing.
    Subscription(RecordingSubscriptionDescriptor),
    /// A `Challenge` of the authenticator.
    Challenge(Challenge),
    /// A `CursorDescriptor` (schema 1101): the answer to a `GetCursorRequest`, or one of a
    /// cursor listing.
    Cursor(CursorDescriptor),
    /// A `RecordingGroupDescriptor` (schema 1101) of a group listing.
    Group(RecordingGroupDescriptor),
}

impl Incoming {
    fn correlation_id(&self) -> i64 {
        match self {
            Self::Response(message) => message.correlation_id,
            Self::Descriptor(message) => message.correlation_id,
            Self::Subscription(message) => message.correlation_id,
            Self::Challenge(message) => message.correlation_id,
            Self::Cursor(message) => message.correlation_id,
            Self::Group(message) => message.correlation_id,
        }
    }

    fn control_session_id(&self) -> i64 {
        match self {
            Self::Response(message) => message.control_session_id,
            Self::Descriptor(message) => message.control_session_id,
            Self::Subscription(message) => message.control_session_id,
            Self::Challenge(message) => message.control_session_id,
            Self::Cursor(message) => message.control_session_id,
            Self::Group(message) => message.control_session_id,
        }
    }
}

/// What one poll of the response stream decoded, before sorting.
enum Decoded {
    Message(Message),
    /// A message of tern's extension schema (1101).
    Tern(TernMessage),
    /// A template this codec does not know (Aeron's ping, a newer archive's messages): skipped.
    Unknown,
    Malformed {
        error: DecodeError,
        control_session_id: Option<i64>,
    },
}

/// What a listing collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// `RecordingDescriptor`s, ended early by a `RECORDING_UNKNOWN` response.
    Recordings,
    /// `RecordingSubscriptionDescriptor`s, ended early by a `SUBSCRIPTION_UNKNOWN` response.
    Subscriptions,
    /// `CursorDescriptor`s (schema 1101), ended by a `RECORDING_UNKNOWN` response whose
    /// relevant id is the number sent.
    Cursors,
    /// `RecordingGroupDescriptor`s (schema 1101), ended as cursor listings are.
    Groups,
}

impl ListKind {
    fn end_code(self) -> ControlResponseCode {
        match self {
            Self::Recordings | Self::Cursors | Self::Groups => {
                ControlResponseCode::RecordingUnknown
            }
            Self::Subscriptions => ControlResponseCode::SubscriptionUnknown,
        }
    }

    /// Whether the end marker's relevant id counts the descriptors sent (tern's listings;
    /// Aeron's carry a recording id or nothing there).
    fn end_counts(self) -> bool {
        matches!(self, Self::Cursors | Self::Groups)
    }

    /// Whether `incoming` is one of this listing's descriptors.
    fn takes(self, incoming: &Incoming) -> bool {
        matches!(
            (self, incoming),
            (Self::Recordings, Incoming::Descriptor(_))
                | (Self::Subscriptions, Incoming::Subscription(_))
                | (Self::Cursors, Incoming::Cursor(_))
                | (Self::Groups, Incoming::Group(_))
        )
    }
}

/// The request publication, the response subscription and what arrived on it.
pub(crate) struct Control {
    pub(crate) publication: ExclusivePublication,
    pub(crate) request_channel: String,
    pub(crate) subscription: Subscription,
    assembler: FragmentAssembler,
    buffer: Vec<u8>,
    /// The control session, once the archive named it; until then only correlation ids filter.
    pub(crate) control_session_id: Option<i64>,
    /// Correlation ids whose answers are kept in `inbox`.
    awaited: HashSet<i64>,
    inbox: VecDeque<Incoming>,
    signals: VecDeque<RecordingSignalEvent>,
    errors: VecDeque<StrayError>,
    pub(crate) message_timeout: Duration,
    keep_alive_interval: Duration,
    last_sent: Instant,
    /// Whether waits check that the response stream is still connected (after connect).
    pub(crate) check_connected: bool,
}

impl Control {
    pub(crate) fn new(
        publication: ExclusivePublication,
        request_channel: String,
        subscription: Subscription,
        message_timeout: Duration,
        keep_alive_interval: Duration,
    ) -> Self {
        Self {
            publication,
            request_channel,
            subscription,
            assembler: FragmentAssembler::new(),
            buffer: Vec::with_capacity(256),
            control_session_id: None,
            awaited: HashSet::new(),
            inbox: VecDeque::new(),
            signals: VecDeque::new(),
            errors: VecDeque::new(),
            message_timeout,
            keep_alive_interval,
            last_sent: Instant::now(),
            check_connected: false,
        }
    }

    /// Encodes a message with `encode` and offers it, retrying while back pressured until the
    /// message timeout.
    pub(crate) fn send_with(
        &mut self,
        what: &str,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<usize, EncodeError>,
    ) -> Result<(), ClientError> {
        self.buffer.clear();
        encode(&mut self.buffer)
            .map_err(|error| ClientError::InvalidArgument(format!("{what}: {error}")))?;
        let deadline = Instant::now() + self.message_timeout;
        let mut idle = BackoffIdle::new();
        loop {
            match self.publication.offer(&self.buffer) {
                Ok(_) => {
                    self.last_sent = Instant::now();
                    return Ok(());
                }
                Err(OfferError::NotConnected) => {
                    return Err(ClientError::NotConnected(format!(
                        "sending {what}: no archive subscribes to the request channel {} stream {}",
                        self.request_channel,
                        self.publication.stream_id()
                    )))
                }
                Err(OfferError::Closed) => return Err(ClientError::Closed),
                Err(error) if error.is_retryable() => {
                    if Instant::now() >= deadline {
                        return Err(ClientError::Timeout {
                            waiting_for: format!("sending {what} ({error})"),
                            timeout: self.message_timeout,
                        });
                    }
                    idle.idle(0);
                }
                Err(error) => {
                    return Err(ClientError::InvalidArgument(format!(
                        "sending {what}: {error}"
                    )))
                }
            }
        }
    }

    /// Sends a decoded message.
    pub(crate) fn send(&mut self, message: &Message) -> Result<(), ClientError> {
        self.send_with(message.name(), |buf| message.encode(buf))
    }

    /// Keep the answers to `correlation_id` until they are taken.
    pub(crate) fn expect(&mut self, correlation_id: i64) {
        self.awaited.insert(correlation_id);
    }

    /// Stop keeping answers to `correlation_id`; drop those kept.
    pub(crate) fn forget(&mut self, correlation_id: i64) {
        self.awaited.remove(&correlation_id);
        self.inbox
            .retain(|message| message.correlation_id() != correlation_id);
    }

    /// Sends a keep-alive if nothing was sent for the keep-alive interval and the session is
    /// known.
    pub(crate) fn keep_alive_if_due(&mut self, correlation_id: impl FnOnce() -> i64) {
        if let Some(control_session_id) = self.control_session_id {
            if self.last_sent.elapsed() >= self.keep_alive_interval {
                let message = Message::KeepAliveRequest(KeepAliveRequest {
                    control_session_id,
                    correlation_id: correlation_id(),
                });
                if let Err(error) = self.send(&message) {
                    tracing::debug!("keep-alive not sent: {error}");
                }
            }
        }
    }

    /// Polls the response stream once and sorts what came. Returns the number of fragments.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] for a malformed message of this session (or of no session the
    /// client can tell); the other messages of the poll are sorted first.
    pub(crate) fn poll(&mut self) -> Result<usize, ClientError> {
        let mut decoded: Vec<Decoded> = Vec::new();
        let Self {
            subscription,
            assembler,
            ..
        } = self;
        let fragments = subscription.poll(
            |fragment: &[u8], header: &Header| {
                assembler.on_fragment(fragment, header, &mut |message, _| {
                    decoded.push(decode(message))
                })
            },
            FRAGMENT_LIMIT,
        )?;
        let mut malformed = None;
        for message in decoded {
            if let Err(error) = self.sort(message) {
                malformed.get_or_insert(error);
            }
        }
        match malformed {
            Some(error) => Err(error),
            None => Ok(fragments),
        }
    }

    fn is_other_session(&self, control_session_id: i64) -> bool {
        self.control_session_id
            .is_some_and(|own| own != control_session_id)
    }

    fn sort(&mut self, decoded: Decoded) -> Result<(), ClientError> {
        let incoming = match decoded {
            Decoded::Unknown => return Ok(()),
            Decoded::Malformed {
                error,
                control_session_id,
            } => {
                if control_session_id.is_some_and(|id| self.is_other_session(id)) {
                    return Ok(());
                }
                return Err(ClientError::Protocol(format!(
                    "malformed message on the response stream: {error}"
                )));
            }
            Decoded::Message(Message::RecordingSignalEvent(event)) => {
                if self.control_session_id == Some(event.control_session_id) {
                    self.signals.push_back(event.into());
                }
                return Ok(());
            }
            Decoded::Message(Message::ControlResponse(message)) => Incoming::Response(message),
            Decoded::Message(Message::RecordingDescriptor(message)) => {
                Incoming::Descriptor(message)
            }
            Decoded::Message(Message::RecordingSubscriptionDescriptor(message)) => {
                Incoming::Subscription(message)
            }
            Decoded::Message(Message::Challenge(message)) => Incoming::Challenge(message),
            Decoded::Tern(TernMessage::CursorDescriptor(message)) => Incoming::Cursor(message),
            Decoded::Tern(TernMessage::RecordingGroupDescriptor(message)) => {
                Incoming::Group(message)
            }
            // A request on the response stream is nothing this client asked for.
            Decoded::Message(_) | Decoded::Tern(_) => return Ok(()),
        };
        if self.is_other_session(incoming.control_session_id()) {
            return Ok(());
        }
        if self.awaited.contains(&incoming.correlation_id()) {
            self.inbox.push_back(incoming);
        } else if let Incoming::Response(response) = incoming {
            if response.code == ControlResponseCode::Error && self.control_session_id.is_some() {
                tracing::debug!(
                    "archive error for correlation id {} that nothing waits for: {}",
                    response.correlation_id,
                    response.error_message
                );
                self.errors.push_back(StrayError {
                    correlation_id: response.correlation_id,
                    relevant_id: response.relevant_id,
                    message: response.error_message,
                });
            }
        }
        Ok(())
    }

    /// Takes the first kept message that answers `correlation_id`, if any.
    pub(crate) fn take(&mut self, correlation_id: i64) -> Option<Incoming> {
        let index = self
            .inbox
            .iter()
            .position(|message| message.correlation_id() == correlation_id)?;
        self.inbox.remove(index)
    }

    /// Recording signals received so far, oldest first.
    pub(crate) fn take_signals(&mut self) -> Vec<RecordingSignalEvent> {
        self.signals.drain(..).collect()
    }

    /// Puts signals back at the front of the queue, in their order.
    pub(crate) fn requeue_signals(&mut self, signals: Vec<RecordingSignalEvent>) {
        for signal in signals.into_iter().rev() {
            self.signals.push_front(signal);
        }
    }

    /// ERROR responses nobody waited for, oldest first.
    pub(crate) fn take_errors(&mut self) -> Vec<StrayError> {
        self.errors.drain(..).collect()
    }

    /// Fails if the response stream has no image any more (checked once connected).
    pub(crate) fn check_connected(&mut self) -> Result<(), ClientError> {
        if self.check_connected && !self.subscription.is_connected() {
            return Err(ClientError::NotConnected(format!(
                "the response channel {} stream {} has no image from the archive",
                self.subscription.channel(),
                self.subscription.stream_id()
            )));
        }
        Ok(())
    }

    /// Polls until the first message answering `correlation_id` arrives; returns it. Keeps the
    /// session alive while it waits.
    pub(crate) fn await_incoming(
        &mut self,
        correlation_id: i64,
        what: &str,
        next_correlation_id: &mut dyn FnMut() -> i64,
    ) -> Result<Incoming, ClientError> {
        self.expect(correlation_id);
        let deadline = Instant::now() + self.message_timeout;
        let result = self.await_until(correlation_id, what, deadline, next_correlation_id);
        if result.is_err() {
            self.forget(correlation_id);
        }
        result
    }

    fn await_until(
        &mut self,
        correlation_id: i64,
        what: &str,
        deadline: Instant,
        next_correlation_id: &mut dyn FnMut() -> i64,
    ) -> Result<Incoming, ClientError> {
        let mut idle = BackoffIdle::new();
        loop {
            if let Some(message) = self.take(correlation_id) {
                return Ok(message);
            }
            let fragments = self.poll()?;
            if fragments > 0 {
                idle.reset();
                continue;
            }
            self.check_connected()?;
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout {
                    waiting_for: format!("awaiting {what} (correlation id {correlation_id})"),
                    timeout: self.message_timeout,
                });
            }
            self.keep_alive_if_due(&mut *next_correlation_id);
            idle.idle(0);
        }
    }

    /// Waits for the `ControlResponse` to `correlation_id`: its relevant id when OK, the
    /// archive's error when ERROR.
    pub(crate) fn await_response(
        &mut self,
        correlation_id: i64,
        what: &str,
        next_correlation_id: &mut dyn FnMut() -> i64,
    ) -> Result<ControlResponse, ClientError> {
        loop {
            match self.await_incoming(correlation_id, what, next_correlation_id)? {
                Incoming::Response(response) => {
                    self.forget(correlation_id);
                    return check_ok(response, correlation_id);
                }
                // A descriptor or challenge with this correlation id is not an answer here.
                other => tracing::debug!("ignored {other:?} while awaiting {what}"),
            }
        }
    }

    /// Collects up to `count` descriptors answering `correlation_id`, ended early by the
    /// listing's end marker. The deadline moves on with each descriptor, as Aeron's does.
    pub(crate) fn await_list(
        &mut self,
        correlation_id: i64,
        count: usize,
        kind: ListKind,
        what: &str,
        next_correlation_id: &mut dyn FnMut() -> i64,
    ) -> Result<Vec<Incoming>, ClientError> {
        let mut collected = Vec::new();
        self.expect(correlation_id);
        let result = loop {
            if collected.len() >= count {
                break Ok(());
            }
            let deadline = Instant::now() + self.message_timeout;
            match self.await_until(correlation_id, what, deadline, next_correlation_id) {
                Ok(Incoming::Response(response)) => {
                    if response.code == kind.end_code() {
                        if kind.end_counts() && response.relevant_id != collected.len() as i64 {
                            break Err(ClientError::Protocol(format!(
                                "{what}: the archive ended the listing after {} descriptors, \
                                 {} arrived (correlation id {correlation_id})",
                                response.relevant_id,
                                collected.len()
                            )));
                        }
                        break Ok(());
                    }
                    if let Err(error) = check_ok(response, correlation_id) {
                        break Err(error);
                    }
                    break Err(ClientError::Protocol(format!(
                        "{what}: OK response in the middle of a listing (correlation id \
                         {correlation_id})"
                    )));
                }
                Ok(descriptor) if kind.takes(&descriptor) => collected.push(descriptor),
                Ok(other) => tracing::debug!("ignored {other:?} while awaiting {what}"),
                Err(error) => break Err(error),
            }
        };
        self.forget(correlation_id);
        result.map(|()| collected)
    }
}

/// The response when its code is OK; the archive's error when ERROR; a protocol error else.
pub(crate) fn check_ok(
    response: ControlResponse,
    correlation_id: i64,
) -> Result<ControlResponse, ClientError> {
    match response.code {
        ControlResponseCode::Ok => Ok(response),
        ControlResponseCode::Error => Err(archive_error(&response)),
        code => Err(ClientError::Protocol(format!(
            "unexpected response code {code:?} for correlation id {correlation_id}"
        ))),
    }
}

/// The [`ClientError::Archive`] an ERROR response stands for.
pub(crate) fn archive_error(response: &ControlResponse) -> ClientError {
    ClientError::Archive {
        code: ArchiveErrorCode::from_value(response.relevant_id),
        message: response.error_message.clone(),
        relevant_id: response.relevant_id,
        correlation_id: response.correlation_id,
    }
}

fn decode(buffer: &[u8]) -> Decoded {
    match AnyMessage::decode(buffer) {
        Ok(AnyMessage::Aeron(message)) => Decoded::Message(message),
        Ok(AnyMessage::Tern(message)) => Decoded::Tern(message),
        // Aeron 1.54's archive pings its clients (template 106), and newer archives may send
        // templates this codec does not know (of either schema): skipped, as Aeron's pollers
        // skip them.
        Err(DecodeError::UnknownTemplate { .. }) => Decoded::Unknown,
        Err(error) => Decoded::Malformed {
            error,
            control_session_id: control_session_id_of(buffer),
        },
    }
}

/// Every archive-to-client message of schema 101 and 1101 starts its block with the control
/// session id.
fn control_session_id_of(buffer: &[u8]) -> Option<i64> {
    let header = MessageHeader::decode(buffer).ok()?;
    if header.schema_id != SCHEMA_ID && header.schema_id != TERN_SCHEMA_ID {
        return None;
    }
    let bytes = buffer.get(8..16)?;
    Some(i64::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_and_unknown_templates_are_skipped_extensions_decoded_and_garbage_is_malformed() {
        let ping = [
            0x10, 0, 106, 0, 101, 0, 14, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert!(matches!(decode(&ping), Decoded::Unknown));
        // A template of schema 1101 this codec does not know (a newer archive's).
        let unknown_extension = [
            0x10, 0, 99, 0, 0x4d, 0x04, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert!(matches!(decode(&unknown_extension), Decoded::Unknown));
        let cursor = TernMessage::CursorDescriptor(CursorDescriptor {
            control_session_id: 78,
            correlation_id: 3,
            recording_id: 4,
            position: 128,
            updated_timestamp: 5,
            name: "orders".into(),
        });
        let mut bytes = Vec::new();
        cursor.encode(&mut bytes).expect("encodes");
        match decode(&bytes) {
            Decoded::Tern(decoded) => assert_eq!(decoded, cursor),
            _ => panic!("a cursor descriptor decodes"),
        }
        bytes.truncate(bytes.len() - 2);
        match decode(&bytes) {
            Decoded::Malformed {
                control_session_id, ..
            } => assert_eq!(control_session_id, Some(78)),
            _ => panic!("a truncated cursor descriptor is malformed"),
        }
        let mut truncated = Vec::new();
        Message::ControlResponse(ControlResponse {
            control_session_id: 77,
            correlation_id: 1,
            relevant_id: 0,
            code: ControlResponseCode::Ok,
            version: None,
            error_message: "long enough to cut".into(),
        })
        .encode(&mut truncated)
        .expect("encodes");
        truncated.truncate(truncated.len() - 3);
        match decode(&truncated) {
            Decoded::Malformed {
                control_session_id, ..
            } => assert_eq!(control_session_id, Some(77)),
            _ => panic!("a truncated message is malformed"),
        }
        assert!(matches!(
            decode(&[1, 2, 3]),
            Decoded::Malformed {
                control_session_id: None,
                ..
            }
        ));
    }

    #[test]
    fn check_ok_maps_codes() {
        let response = |code, relevant_id| ControlResponse {
            control_session_id: 1,
            correlation_id: 2,
            relevant_id,
            code,
            version: None,
            error_message: "no such recording".into(),
        };
        assert!(check_ok(response(ControlResponseCode::Ok, 9), 2).is_ok());
        match check_ok(response(ControlResponseCode::Error, 5), 2) {
            Err(ClientError::Archive {
                code,
                message,
                relevant_id,
                correlation_id,
            }) => {
                assert_eq!(code, ArchiveErrorCode::UnknownRecording);
                assert_eq!(message, "no such recording");
                assert_eq!((relevant_id, correlation_id), (5, 2));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check_ok(response(ControlResponseCode::RecordingUnknown, 0), 2),
            Err(ClientError::Protocol(_))
        ));
    }
}
