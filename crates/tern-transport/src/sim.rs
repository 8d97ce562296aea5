//! The transport seams: what a recording reads ([`BlockSource`]: an image's raw frames) and what
//! a replay writes ([`BlockSink`]: an exclusive publication that takes whole frames), implemented
//! by the real [`Image`] and [`ExclusivePublication`] and by [`SimLog`], an in-memory stream laid
//! out as an Aeron log is (frames with their headers, 32-byte aligned, a padding frame where a
//! frame does not fit in the rest of its term, messages longer than the MTU fragmented with the
//! BEGIN/END flags). With it a recording and a replay run in one test thread, with no media driver.
//!
//! What a recorder needs of the transport besides the frames is a seam too ([`Transport`]:
//! subscriptions, their images, position counters), implemented by the real [`Client`] and by
//! [`SimTransport`], where the test adds streams ([`SimTransport::publish`]) and ends them
//! ([`SimLog::close`]), so the recorder agent runs in one test thread as well.

use crate::client::{Client, Counter, CountersReader};
use crate::error::TransportError;
use crate::header::Header;
use crate::logbuffer::SpiedPublication;
use crate::publication::{ExclusivePublication, OfferError};
use crate::subscription::{Image, ImageEvent, ImageInfo, Subscription};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use tern_store::frame::{
    align_frame, term_of, FrameHeader, BEGIN_FLAG, END_FLAG, FRAME_ALIGNMENT, HEADER_LENGTH,
    TYPE_DATA, TYPE_PAD,
};

/// Raw frames of one stream, as a recording reads them.
pub trait BlockSource {
    /// Deliver one block of whole frames within one term from the consumed position, at most
    /// `limit` bytes (a padding frame may come alone and be longer); `handler` gets the block and
    /// the stream position of its first byte. Returns the bytes consumed.
    ///
    /// # Errors
    /// The transport failed.
    fn block_poll(
        &self,
        handler: impl FnMut(&[u8], i64),
        limit: usize,
    ) -> Result<usize, TransportError>;
}

/// A publication a replay appends whole frames to.
pub trait BlockSink {
    /// Whether a subscriber is connected.
    fn is_connected(&self) -> bool;
    /// Append a block of whole data frames at the current position (see
    /// [`ExclusivePublication::offer_block`]). Returns the new position.
    ///
    /// # Errors
    /// See [`OfferError`].
    fn offer_block(&self, block: &[u8]) -> Result<i64, OfferError>;
    /// Append a padding frame with a `length`-byte payload. Returns the new position.
    ///
    /// # Errors
    /// See [`OfferError`].
    fn append_padding(&self, length: usize) -> Result<i64, OfferError>;
    /// The longest message (payload) one offer may carry.
    fn max_message_length(&self) -> usize;
}

impl BlockSource for Image {
    fn block_poll(
        &self,
        handler: impl FnMut(&[u8], i64),
        limit: usize,
    ) -> Result<usize, TransportError> {
        Image::block_poll(self, handler, limit)
    }
}

impl BlockSink for ExclusivePublication {
    fn is_connected(&self) -> bool {
        ExclusivePublication::is_connected(self)
    }

    fn offer_block(&self, block: &[u8]) -> Result<i64, OfferError> {
        ExclusivePublication::offer_block(self, block)
    }

    fn append_padding(&self, length: usize) -> Result<i64, OfferError> {
        ExclusivePublication::append_padding(self, length)
    }

    fn max_message_length(&self) -> usize {
        ExclusivePublication::max_message_length(self)
    }
}

/// An image a recorder reads: its frames, what it is, where it is, whether it has ended.
pub trait RecordingImage: BlockSource + Clone {
    /// What the image is (its correlation id, session, geometry).
    fn info(&self) -> &ImageInfo;
    /// The position consumed so far.
    fn position(&self) -> i64;
    /// Whether the image was closed (its subscription let it go).
    fn is_closed(&self) -> bool;
    /// Whether its publication ended and everything was consumed.
    fn is_end_of_stream(&self) -> bool;
}

/// A subscription a recorder lists images of.
pub trait ImageSubscription {
    /// Its images.
    type Image: RecordingImage;
    /// The images it has now.
    fn images(&self) -> Vec<Self::Image>;
    /// The images that came and went since the last call.
    fn take_image_events(&self) -> Vec<ImageEvent>;
    /// Its stream id.
    fn stream_id(&self) -> i32;
}

/// A counter a recorder publishes a recording's position on.
pub trait PositionCounter {
    /// Set its value.
    fn set(&self, value: i64);
}

/// What a recorder asks of the transport: subscriptions and counters, and whether a spied
/// publication is connected.
pub trait Transport {
    /// Its subscriptions.
    type Subscription: ImageSubscription;
    /// Its counters.
    type Counter: PositionCounter;
    /// Subscribe to `channel` and `stream_id`.
    ///
    /// # Errors
    /// The channel is refused.
    fn add_subscription(
        &self,
        channel: &str,
        stream_id: i32,
    ) -> Result<Self::Subscription, TransportError>;
    /// A counter of `type_id` with `key` and `label`.
    ///
    /// # Errors
    /// The driver refuses one.
    fn add_counter(
        &self,
        type_id: i32,
        key: &[u8],
        label: &str,
    ) -> Result<Self::Counter, TransportError>;
    /// The state of the publication a spy image reads.
    ///
    /// # Errors
    /// Its log cannot be read.
    fn spied_publication(
        &self,
        aeron_dir: &str,
        image: &ImageInfo,
    ) -> Result<SpiedPublication, TransportError>;
}

/// The driver's counters, read by id (what bounds a replay).
pub trait CounterValues {
    /// Whether `counter_id` is allocated.
    fn is_allocated(&self, counter_id: i32) -> bool;
    /// The registration id of counter `counter_id`.
    ///
    /// # Errors
    /// It is not allocated.
    fn registration_id(&self, counter_id: i32) -> Result<i64, TransportError>;
    /// The value of counter `counter_id`.
    ///
    /// # Errors
    /// It is not allocated.
    fn value(&self, counter_id: i32) -> Result<i64, TransportError>;
}

/// What a replayer asks of the transport: exclusive publications (placed at a recorded position
/// by their channel's `init-term-id`, `term-id`, `term-offset`, `term-length`, `mtu` and
/// `session-id`), and the driver's counters.
pub trait ReplayTransport {
    /// Its publications.
    type Publication: BlockSink;
    /// Add an exclusive publication on `channel` and `stream_id`.
    ///
    /// # Errors
    /// The channel is refused.
    fn add_exclusive_publication(
        &self,
        channel: &str,
        stream_id: i32,
    ) -> Result<Self::Publication, TransportError>;
    /// The driver's counters.
    fn counter_values(&self) -> Box<dyn CounterValues>;
}

impl CounterValues for CountersReader {
    fn is_allocated(&self, counter_id: i32) -> bool {
        CountersReader::is_allocated(self, counter_id)
    }
    fn registration_id(&self, counter_id: i32) -> Result<i64, TransportError> {
        CountersReader::registration_id(self, counter_id)
    }
    fn value(&self, counter_id: i32) -> Result<i64, TransportError> {
        CountersReader::value(self, counter_id)
    }
}

impl ReplayTransport for Client {
    type Publication = ExclusivePublication;
    fn add_exclusive_publication(
        &self,
        channel: &str,
        stream_id: i32,
    ) -> Result<ExclusivePublication, TransportError> {
        Client::add_exclusive_publication(self, channel, stream_id)
    }
    fn counter_values(&self) -> Box<dyn CounterValues> {
        Box::new(self.counters_reader())
    }
}

impl RecordingImage for Image {
    fn info(&self) -> &ImageInfo {
        Image::info(self)
    }
    fn position(&self) -> i64 {
        Image::position(self)
    }
    fn is_closed(&self) -> bool {
        Image::is_closed(self)
    }
    fn is_end_of_stream(&self) -> bool {
        Image::is_end_of_stream(self)
    }
}

impl ImageSubscription for Subscription {
    type Image = Image;
    fn images(&self) -> Vec<Image> {
        Subscription::images(self)
    }
    fn take_image_events(&self) -> Vec<ImageEvent> {
        Subscription::take_image_events(self)
    }
    fn stream_id(&self) -> i32 {
        Subscription::stream_id(self)
    }
}

impl PositionCounter for Counter {
    fn set(&self, value: i64) {
        Counter::set(self, value);
    }
}

impl Transport for Client {
    type Subscription = Subscription;
    type Counter = Counter;
    fn add_subscription(
        &self,
        channel: &str,
        stream_id: i32,
    ) -> Result<Subscription, TransportError> {
        Client::add_subscription(self, channel, stream_id)
    }
    fn add_counter(
        &self,
        type_id: i32,
        key: &[u8],
        label: &str,
    ) -> Result<Counter, TransportError> {
        Client::add_counter(self, type_id, key, label)
    }
    fn spied_publication(
        &self,
        aeron_dir: &str,
        image: &ImageInfo,
    ) -> Result<SpiedPublication, TransportError> {
        crate::logbuffer::spied_publication(aeron_dir, image)
    }
}

/// The constants of a simulated stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimStream {
    /// The publication's session id.
    pub session_id: i32,
    /// The stream id.
    pub stream_id: i32,
    /// Term id at position 0.
    pub initial_term_id: i32,
    /// Term length (a power of two, at least 64 KiB as in Aeron).
    pub term_length: i32,
    /// Longest frame, header included.
    pub mtu: usize,
    /// Where the stream starts (a frame start).
    pub start_position: i64,
}

#[derive(Debug)]
struct LogState {
    stream: SimStream,
    /// The log from `start_position`.
    bytes: Vec<u8>,
    connected: bool,
    /// Bytes a publication may be ahead of the slowest image before offers are back-pressured.
    window: usize,
    /// Consumed positions of the images.
    images: Vec<i64>,
    /// The publication closed: its images end once they have consumed everything.
    closed: bool,
    /// A publication that is connected once an image reads it (an exclusive publication a
    /// replay adds), rather than from the start.
    connects_on_image: bool,
}

impl LogState {
    fn end(&self) -> i64 {
        self.stream.start_position + self.bytes.len() as i64
    }

    fn term_remaining(&self) -> usize {
        let term = i64::from(self.stream.term_length);
        (term - self.end().rem_euclid(term)) as usize
    }

    fn frame(&mut self, frame_length: usize, frame_type: u16, flags: u8, payload: &[u8]) {
        let position = self.end();
        let (term_id, term_offset) = term_of(
            position,
            self.stream.initial_term_id,
            self.stream.term_length,
        );
        let aligned = align_frame(frame_length);
        let start = self.bytes.len();
        self.bytes.resize(start + aligned, 0);
        FrameHeader {
            frame_length: frame_length as i32,
            flags,
            frame_type,
            term_offset,
            session_id: self.stream.session_id,
            stream_id: self.stream.stream_id,
            term_id,
            reserved_value: 0,
        }
        .encode(&mut self.bytes[start..]);
        self.bytes[start + HEADER_LENGTH..start + HEADER_LENGTH + payload.len()]
            .copy_from_slice(payload);
    }

    /// Pad to the term's end if `aligned` bytes do not fit in the rest of it.
    fn pad_if_needed(&mut self, aligned: usize) {
        let remaining = self.term_remaining();
        if aligned > remaining {
            self.frame(remaining, TYPE_PAD, BEGIN_FLAG | END_FLAG, &[]);
        }
    }

    fn check_offer(&self) -> Result<(), OfferError> {
        if !self.connected {
            return Err(OfferError::NotConnected);
        }
        // As Aeron's publications: refused once the position has reached the limit (the slowest
        // image plus the window), whatever the length; an offer below it may cross it.
        let slowest = self.images.iter().copied().min().unwrap_or(self.end());
        if (self.end() - slowest) as usize >= self.window {
            return Err(OfferError::BackPressured);
        }
        Ok(())
    }
}

/// An in-memory log: one publication and its images, on one thread. Clones share the log.
#[derive(Debug, Clone)]
pub struct SimLog {
    state: Rc<RefCell<LogState>>,
}

impl SimLog {
    /// An empty, connected stream; offers are back-pressured when the slowest image is more than
    /// half a term behind (Aeron's default publication window).
    pub fn new(stream: SimStream) -> Self {
        assert!(
            stream.term_length.count_ones() == 1 && stream.term_length >= 64 * 1024,
            "term length a power of two of at least 64 KiB"
        );
        Self {
            state: Rc::new(RefCell::new(LogState {
                stream,
                bytes: Vec::new(),
                connected: true,
                window: stream.term_length as usize / 2,
                images: Vec::new(),
                closed: false,
                connects_on_image: false,
            })),
        }
    }

    /// The stream's constants.
    pub fn stream(&self) -> SimStream {
        self.state.borrow().stream
    }

    /// Whether offers find a subscriber.
    pub fn set_connected(&self, connected: bool) {
        self.state.borrow_mut().connected = connected;
    }

    /// The position after the last frame.
    pub fn position(&self) -> i64 {
        self.state.borrow().end()
    }

    /// The log's bytes from the start position.
    pub fn bytes(&self) -> Vec<u8> {
        self.state.borrow().bytes.clone()
    }

    /// Publish `message`: one frame, or fragments of at most the MTU. Returns the new position.
    ///
    /// # Errors
    /// [`OfferError::NotConnected`], [`OfferError::BackPressured`] (nothing appended).
    pub fn offer(&self, message: &[u8]) -> Result<i64, OfferError> {
        let mut state = self.state.borrow_mut();
        let chunk = state.stream.mtu - HEADER_LENGTH;
        state.check_offer()?;
        let fragments: Vec<&[u8]> = if message.is_empty() {
            vec![message]
        } else {
            message.chunks(chunk).collect()
        };
        let last = fragments.len() - 1;
        for (index, fragment) in fragments.into_iter().enumerate() {
            let mut flags = 0;
            if index == 0 {
                flags |= BEGIN_FLAG;
            }
            if index == last {
                flags |= END_FLAG;
            }
            let length = HEADER_LENGTH + fragment.len();
            state.pad_if_needed(align_frame(length));
            state.frame(length, TYPE_DATA, flags, fragment);
        }
        Ok(state.end())
    }

    /// A new image reading from the current position.
    pub fn image(&self) -> SimImage {
        self.image_with(0, "aeron:ipc")
    }

    /// A new image reading from the current position, with this correlation id and source.
    fn image_with(&self, correlation_id: i64, source_identity: &str) -> SimImage {
        let mut state = self.state.borrow_mut();
        let position = state.end();
        state.images.push(position);
        if state.connects_on_image {
            state.connected = true;
        }
        let stream = state.stream;
        SimImage {
            log: self.clone(),
            index: state.images.len() - 1,
            info: Rc::new(ImageInfo {
                correlation_id,
                session_id: stream.session_id,
                source_identity: source_identity.to_string(),
                join_position: position,
                initial_term_id: stream.initial_term_id,
                term_length: stream.term_length,
                mtu_length: stream.mtu as i32,
            }),
        }
    }

    /// Not connected until an image reads it (as an Aeron publication with no subscriber: offers
    /// are refused as not connected, and the first image joins where the stream is, its start).
    fn connect_on_image(&self) {
        let mut state = self.state.borrow_mut();
        state.connected = !state.images.is_empty();
        state.connects_on_image = true;
    }

    /// Close the publication: its images end (end of stream) once they have consumed all of it,
    /// and no more is offered.
    pub fn close(&self) {
        let mut state = self.state.borrow_mut();
        state.closed = true;
        state.connected = false;
    }
}

impl BlockSink for SimLog {
    fn is_connected(&self) -> bool {
        self.state.borrow().connected
    }

    fn offer_block(&self, block: &[u8]) -> Result<i64, OfferError> {
        let mut state = self.state.borrow_mut();
        state.check_offer()?;
        if block.len() < HEADER_LENGTH || !block.len().is_multiple_of(FRAME_ALIGNMENT) {
            return Err(OfferError::Failed(format!(
                "block of {} bytes is not whole aligned frames",
                block.len()
            )));
        }
        let first = FrameHeader::decode(block);
        if first.frame_type != TYPE_DATA {
            return Err(OfferError::Failed(format!(
                "a block must start with a data frame: {first:?}"
            )));
        }
        let (term_id, term_offset) = term_of(
            state.end(),
            state.stream.initial_term_id,
            state.stream.term_length,
        );
        if block.len() > state.term_remaining()
            || first.term_offset != term_offset
            || first.term_id != term_id
            || first.session_id != state.stream.session_id
            || first.stream_id != state.stream.stream_id
        {
            return Err(OfferError::Failed(format!(
                "block at term {term_id} offset {term_offset} does not continue the stream: {first:?}"
            )));
        }
        state.bytes.extend_from_slice(block);
        Ok(state.end())
    }

    fn append_padding(&self, length: usize) -> Result<i64, OfferError> {
        let mut state = self.state.borrow_mut();
        let frame_length = HEADER_LENGTH + length;
        state.check_offer()?;
        state.pad_if_needed(align_frame(frame_length));
        state.frame(
            frame_length,
            TYPE_PAD,
            BEGIN_FLAG | END_FLAG,
            &vec![0; length],
        );
        Ok(state.end())
    }

    fn max_message_length(&self) -> usize {
        // Aeron allows a message of up to an eighth of the term.
        self.state.borrow().stream.term_length as usize / 8
    }
}

/// One subscriber's view of a [`SimLog`]. Clones share the view (its position), as an
/// [`Image`]'s do.
#[derive(Debug, Clone)]
pub struct SimImage {
    log: SimLog,
    index: usize,
    info: Rc<ImageInfo>,
}

impl SimImage {
    /// The position consumed so far.
    pub fn position(&self) -> i64 {
        self.log.state.borrow().images[self.index]
    }

    /// Deliver up to `fragment_limit` fragments (data frames; padding is skipped) with their
    /// headers.
    pub fn poll(&self, mut handler: impl FnMut(&[u8], &Header), fragment_limit: usize) -> usize {
        let mut delivered = 0;
        loop {
            let (frame, header, next) = {
                let state = self.log.state.borrow();
                let position = state.images[self.index];
                if delivered == fragment_limit || position >= state.end() {
                    return delivered;
                }
                let offset = (position - state.stream.start_position) as usize;
                let frame = FrameHeader::decode(&state.bytes[offset..]);
                let next = position + frame.aligned_length() as i64;
                let payload = (frame.frame_type == TYPE_DATA).then(|| {
                    state.bytes[offset + HEADER_LENGTH..offset + frame.frame_length as usize]
                        .to_vec()
                });
                let header = Header::from_frame(&frame, next, frame.session_id);
                (payload, header, next)
            };
            self.log.state.borrow_mut().images[self.index] = next;
            if let Some(payload) = frame {
                handler(&payload, &header);
                delivered += 1;
            }
        }
    }
}

impl BlockSource for SimImage {
    fn block_poll(
        &self,
        mut handler: impl FnMut(&[u8], i64),
        limit: usize,
    ) -> Result<usize, TransportError> {
        let (block, position) = {
            let state = self.log.state.borrow();
            let position = state.images[self.index];
            let start = (position - state.stream.start_position) as usize;
            let term = i64::from(state.stream.term_length);
            let term_end = start + (term - position.rem_euclid(term)) as usize;
            let available = state.bytes.len().min(term_end);
            let mut end = start;
            // As Aeron's block scanner: whole frames up to `limit`; a padding frame ends the
            // block before it, or is the block alone when it comes first (whatever its length).
            while end < available {
                let frame = FrameHeader::decode(&state.bytes[end..]);
                let next = end + frame.aligned_length();
                if frame.frame_type == TYPE_PAD {
                    if end == start {
                        end = next;
                    }
                    break;
                }
                if next - start > limit {
                    break;
                }
                end = next;
            }
            (state.bytes[start..end].to_vec(), position)
        };
        if block.is_empty() {
            return Ok(0);
        }
        handler(&block, position);
        self.log.state.borrow_mut().images[self.index] = position + block.len() as i64;
        Ok(block.len())
    }
}

impl RecordingImage for SimImage {
    fn info(&self) -> &ImageInfo {
        &self.info
    }
    fn position(&self) -> i64 {
        SimImage::position(self)
    }
    fn is_closed(&self) -> bool {
        false
    }
    fn is_end_of_stream(&self) -> bool {
        let state = self.log.state.borrow();
        state.closed && state.images[self.index] >= state.end()
    }
}

/// A simulated transport for a recorder: the streams the test publishes, by channel and stream
/// id; a subscription sees an image of each stream on its channel and stream id, joining where
/// the stream is when the subscription first lists it. Counters keep their last value.
#[derive(Debug, Clone, Default)]
pub struct SimTransport {
    streams: Rc<RefCell<Vec<(String, SimLog)>>>,
    next_correlation_id: Rc<Cell<i64>>,
    counters: Rc<RefCell<Vec<(String, SimCounter)>>>,
}

impl SimTransport {
    /// A transport with no streams.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new stream on `channel`, seen by the subscriptions to its channel and stream id.
    pub fn publish(&self, channel: &str, stream: SimStream) -> SimLog {
        let log = SimLog::new(stream);
        log.connect_on_image();
        self.streams
            .borrow_mut()
            .push((channel.to_string(), log.clone()));
        log
    }

    /// The last value of each counter added, by label, in the order they were added.
    pub fn counters(&self) -> Vec<(String, i64)> {
        self.counters
            .borrow()
            .iter()
            .map(|(label, counter)| (label.clone(), counter.value.get()))
            .collect()
    }
}

/// A subscription of a [`SimTransport`].
#[derive(Debug)]
pub struct SimSubscription {
    transport: SimTransport,
    channel: String,
    stream_id: i32,
    /// The image of each stream seen so far (by its index in the transport), and whether it was
    /// reported.
    images: RefCell<Vec<(usize, SimImage)>>,
    events: RefCell<Vec<ImageEvent>>,
}

impl SimSubscription {
    fn refresh(&self) {
        let streams = self.transport.streams.borrow();
        let mut images = self.images.borrow_mut();
        for (index, (channel, log)) in streams.iter().enumerate() {
            if *channel != self.channel
                || log.stream().stream_id != self.stream_id
                || images.iter().any(|(seen, _)| *seen == index)
            {
                continue;
            }
            let correlation_id = self.transport.next_correlation_id.get() + 1;
            self.transport.next_correlation_id.set(correlation_id);
            let image = log.image_with(correlation_id, "aeron:ipc");
            self.events
                .borrow_mut()
                .push(ImageEvent::Available(image.info().clone()));
            images.push((index, image));
        }
    }
}

impl ImageSubscription for SimSubscription {
    type Image = SimImage;
    fn images(&self) -> Vec<SimImage> {
        self.refresh();
        self.images
            .borrow()
            .iter()
            .map(|(_, image)| image.clone())
            .collect()
    }
    fn take_image_events(&self) -> Vec<ImageEvent> {
        self.refresh();
        std::mem::take(&mut *self.events.borrow_mut())
    }
    fn stream_id(&self) -> i32 {
        self.stream_id
    }
}

/// A counter of a [`SimTransport`].
#[derive(Debug, Clone)]
pub struct SimCounter {
    id: i32,
    value: Rc<Cell<i64>>,
}

impl SimCounter {
    /// Its counter id (what a bounded replay names).
    pub fn id(&self) -> i32 {
        self.id
    }
}

impl PositionCounter for SimCounter {
    fn set(&self, value: i64) {
        self.value.set(value);
    }
}

/// The counters of a [`SimTransport`], by id.
#[derive(Debug, Clone)]
struct SimCounters(SimTransport);

impl CounterValues for SimCounters {
    fn is_allocated(&self, counter_id: i32) -> bool {
        usize::try_from(counter_id).is_ok_and(|id| id < self.0.counters.borrow().len())
    }
    fn registration_id(&self, counter_id: i32) -> Result<i64, TransportError> {
        self.value(counter_id).map(|_| i64::from(counter_id))
    }
    fn value(&self, counter_id: i32) -> Result<i64, TransportError> {
        usize::try_from(counter_id)
            .ok()
            .and_then(|id| self.0.counters.borrow().get(id).map(|(_, c)| c.value.get()))
            .ok_or_else(|| {
                TransportError::Invalid(format!("counter {counter_id} is not allocated"))
            })
    }
}

/// A channel parameter's value (`name=value` after `?`, separated by `|`).
fn channel_param<T: std::str::FromStr>(channel: &str, name: &str) -> Option<T> {
    let (_, params) = channel.split_once('?')?;
    params
        .split('|')
        .find_map(|param| param.strip_prefix(name)?.strip_prefix('='))
        .and_then(|value| value.parse().ok())
}

/// The parameters that place an exclusive publication (and name its session): not part of the
/// channel its subscribers name.
const PLACEMENT: [&str; 6] = [
    "init-term-id",
    "term-id",
    "term-offset",
    "term-length",
    "mtu",
    "session-id",
];

/// `channel` without its placement parameters: what a subscriber to it names.
fn subscribed_channel(channel: &str) -> String {
    let Some((media, params)) = channel.split_once('?') else {
        return channel.to_string();
    };
    let kept: Vec<&str> = params
        .split('|')
        .filter(|param| {
            let name = param.split('=').next().unwrap_or_default();
            !PLACEMENT.contains(&name)
        })
        .collect();
    if kept.is_empty() {
        media.to_string()
    } else {
        format!("{media}?{}", kept.join("|"))
    }
}

/// An exclusive publication of a [`SimTransport`]: a stream of its own; dropping it closes the
/// stream (its images reach end of stream once they have read it all), as closing an Aeron
/// publication does.
#[derive(Debug)]
pub struct SimPublication {
    log: SimLog,
}

impl SimPublication {
    /// Its stream.
    pub fn log(&self) -> &SimLog {
        &self.log
    }
}

impl Drop for SimPublication {
    fn drop(&mut self) {
        self.log.close();
    }
}

impl BlockSink for SimPublication {
    fn is_connected(&self) -> bool {
        self.log.is_connected()
    }
    fn offer_block(&self, block: &[u8]) -> Result<i64, OfferError> {
        self.log.offer_block(block)
    }
    fn append_padding(&self, length: usize) -> Result<i64, OfferError> {
        self.log.append_padding(length)
    }
    fn max_message_length(&self) -> usize {
        self.log.max_message_length()
    }
}

/// A replay's exclusive publication is a new stream, placed where its channel says, seen by the
/// subscriptions to its channel without the placement parameters (`aeron:ipc`,
/// `aeron:udp?endpoint=...`) and its stream id; connected once one of them lists its image.
impl ReplayTransport for SimTransport {
    type Publication = SimPublication;
    fn add_exclusive_publication(
        &self,
        channel: &str,
        stream_id: i32,
    ) -> Result<SimPublication, TransportError> {
        let param = |name: &str| {
            channel_param::<i64>(channel, name)
                .ok_or_else(|| TransportError::Invalid(format!("{channel}: no {name}")))
        };
        let initial_term_id = param("init-term-id")? as i32;
        let term_length = param("term-length")? as i32;
        let start_position = (param("term-id")? - i64::from(initial_term_id))
            * i64::from(term_length)
            + param("term-offset")?;
        let log = SimLog::new(SimStream {
            session_id: param("session-id")? as i32,
            stream_id,
            initial_term_id,
            term_length,
            mtu: param("mtu")? as usize,
            start_position,
        });
        log.connect_on_image();
        self.streams
            .borrow_mut()
            .push((subscribed_channel(channel), log.clone()));
        Ok(SimPublication { log })
    }
    fn counter_values(&self) -> Box<dyn CounterValues> {
        Box::new(SimCounters(self.clone()))
    }
}

impl Transport for SimTransport {
    type Subscription = SimSubscription;
    type Counter = SimCounter;
    fn add_subscription(
        &self,
        channel: &str,
        stream_id: i32,
    ) -> Result<SimSubscription, TransportError> {
        Ok(SimSubscription {
            transport: self.clone(),
            channel: channel.to_string(),
            stream_id,
            images: RefCell::new(Vec::new()),
            events: RefCell::new(Vec::new()),
        })
    }
    fn add_counter(&self, _: i32, _: &[u8], label: &str) -> Result<SimCounter, TransportError> {
        let counter = SimCounter {
            id: self.counters.borrow().len() as i32,
            value: Rc::new(Cell::new(0)),
        };
        self.counters
            .borrow_mut()
            .push((label.to_string(), counter.clone()));
        Ok(counter)
    }
    fn spied_publication(
        &self,
        _: &str,
        _: &ImageInfo,
    ) -> Result<SpiedPublication, TransportError> {
        Ok(SpiedPublication {
            connected: true,
            spies_simulate_connection: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> SimStream {
        SimStream {
            session_id: 7,
            stream_id: 1001,
            initial_term_id: -3,
            term_length: 64 * 1024,
            mtu: 1408,
            start_position: 0,
        }
    }

    #[test]
    fn messages_are_framed_fragmented_and_padded_at_term_ends() {
        let log = SimLog::new(stream());
        let image = log.image();
        let mut sent = Vec::new();
        for index in 0..200u32 {
            let message = vec![index as u8; 100 + (index as usize * 97) % 4000];
            log.offer(&message).expect("offer");
            sent.push(message);
            // Keep the image close so nothing is back-pressured.
            if index % 10 == 9 {
                let mut assembled = Vec::new();
                let mut current = Vec::new();
                while image.poll(
                    |fragment, header| {
                        current.extend_from_slice(fragment);
                        if header.flags & END_FLAG != 0 {
                            assembled.push(std::mem::take(&mut current));
                        }
                    },
                    100,
                ) > 0
                {}
                assert_eq!(assembled, sent[sent.len() - 10..]);
            }
        }
        assert!(log.position() > 2 * 64 * 1024, "several terms");
        // Every frame is aligned and none crosses a term end.
        let bytes = log.bytes();
        let mut offset = 0;
        while offset < bytes.len() {
            let frame = FrameHeader::decode(&bytes[offset..]);
            assert!(frame.frame_length as usize <= stream().mtu || frame.frame_type == TYPE_PAD);
            let term = 64 * 1024;
            assert!(offset % term + frame.aligned_length() <= term);
            let (term_id, term_offset) = term_of(offset as i64, -3, term as i32);
            assert_eq!((frame.term_id, frame.term_offset), (term_id, term_offset));
            offset += frame.aligned_length();
        }
    }

    #[test]
    fn blocks_are_whole_frames_within_a_term_and_offers_wait_for_the_slowest_image() {
        let log = SimLog::new(stream());
        let image = log.image();
        let mut offered = 0;
        while log.offer(&[1; 1000]).is_ok() {
            offered += 1;
        }
        // Half a term (Aeron's default window): offers go on while the position is below it, the
        // last one crossing it (31 frames of 1056 bytes end at 32736, the 32nd at 33792).
        assert_eq!(offered, 32, "{offered} before back pressure");
        let mut read = Vec::new();
        loop {
            let consumed = image
                .block_poll(
                    |block, position| {
                        assert_eq!(position, read.len() as i64);
                        let term = 64 * 1024;
                        assert!(position as usize % term + block.len() <= term);
                        read.extend_from_slice(block);
                    },
                    5000,
                )
                .expect("poll");
            if consumed == 0 {
                break;
            }
        }
        assert_eq!(read, log.bytes());
        log.offer(&[2; 10]).expect("room again");
        log.set_connected(false);
        assert_eq!(log.offer(&[3; 10]), Err(OfferError::NotConnected));
    }

    #[test]
    fn a_block_that_does_not_continue_the_stream_is_refused() {
        let source = SimLog::new(stream());
        source.offer(&[9; 500]).expect("offer");
        let block = source.bytes();
        let sink = SimLog::new(stream());
        let _image = sink.image();
        sink.offer_block(&block).expect("continues an empty stream");
        assert!(matches!(
            sink.offer_block(&block),
            Err(OfferError::Failed(_))
        ));
        sink.append_padding(100).expect("padding");
        assert_eq!(sink.position(), 544 + 160);
    }
}
