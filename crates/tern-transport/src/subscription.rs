//! Subscriptions and the images (one per publisher session) they hold.

use crate::error::{Context, TransportError};
use crate::header::Header;
use rusteron_client::bindings::{aeron_header_values, aeron_header_values_t};
use rusteron_client::{AeronHeader, AeronImage, AeronSubscription};
use std::sync::{Arc, Mutex};

/// An image of a subscription came or went, as the media driver told the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageEvent {
    /// A publisher session became available.
    Available(ImageInfo),
    /// A publisher session went away (its publication closed, or it timed out).
    Unavailable {
        /// The image's correlation id.
        correlation_id: i64,
        /// Its session id.
        session_id: i32,
        /// The position consumed when it went.
        position: i64,
    },
}

pub(crate) type ImageEvents = Arc<Mutex<Vec<ImageEvent>>>;

pub(crate) fn image_info(image: &AeronImage) -> Result<ImageInfo, TransportError> {
    let constants = image.get_constants().context(|| "image constants".into())?;
    Ok(ImageInfo {
        correlation_id: constants.correlation_id(),
        session_id: constants.session_id(),
        source_identity: constants.source_identity().to_string(),
        join_position: constants.join_position(),
        initial_term_id: constants.initial_term_id(),
        term_length: constants.term_buffer_length() as i32,
        mtu_length: constants.mtu_length() as i32,
    })
}

fn copy_header(header: &AeronHeader) -> Header {
    let mut values = std::mem::MaybeUninit::<aeron_header_values_t>::zeroed();
    // SAFETY: `header` is valid for the duration of the poll callback this runs in, and
    // `aeron_header_values` only copies its fields into `values`.
    let values = unsafe {
        aeron_header_values(header.get_inner(), values.as_mut_ptr());
        values.assume_init()
    };
    let frame = values.frame;
    Header {
        session_id: frame.session_id,
        stream_id: frame.stream_id,
        term_id: frame.term_id,
        term_offset: frame.term_offset,
        position: header.position(),
        reserved_value: frame.reserved_value,
        flags: frame.flags,
        frame_length: frame.frame_length,
    }
}

/// A subscription to one channel and stream.
pub struct Subscription {
    inner: AeronSubscription,
    channel: String,
    stream_id: i32,
    events: ImageEvents,
}

impl Subscription {
    pub(crate) fn new(
        inner: AeronSubscription,
        channel: String,
        stream_id: i32,
        events: ImageEvents,
    ) -> Self {
        Self {
            inner,
            channel,
            stream_id,
            events,
        }
    }

    /// The image events since the last call, oldest first.
    pub fn take_image_events(&self) -> Vec<ImageEvent> {
        match self.events.lock() {
            Ok(mut events) => std::mem::take(&mut *events),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    /// The channel subscribed to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The stream id subscribed to.
    pub fn stream_id(&self) -> i32 {
        self.stream_id
    }

    /// Deliver up to `fragment_limit` fragments to `handler`, each with a copy of its header.
    /// Messages longer than the MTU arrive as several fragments: put a
    /// [`FragmentAssembler`](crate::FragmentAssembler) in `handler` to join them.
    ///
    /// # Errors
    /// The C client reported an error.
    pub fn poll(
        &self,
        mut handler: impl FnMut(&[u8], &Header),
        fragment_limit: usize,
    ) -> Result<usize, TransportError> {
        let count = self
            .inner
            .poll_fn(
                |buffer: &[u8], header: AeronHeader| handler(buffer, &copy_header(&header)),
                fragment_limit,
            )
            .context(|| format!("poll {} stream {}", self.channel, self.stream_id))?;
        Ok(count as usize)
    }

    /// The subscription's channel with a wildcard UDP endpoint port (`endpoint=host:0`) replaced
    /// by the port the driver bound, as Aeron's `tryResolveChannelEndpointPort`: the channel a
    /// publisher elsewhere must use to reach this subscription. `None` while the driver has not
    /// bound the port yet; the channel unchanged when it is not UDP or has no wildcard port.
    ///
    /// # Errors
    /// The C client reported an error (an unparsable channel).
    pub fn try_resolve_channel_endpoint_port(&self) -> Result<Option<String>, TransportError> {
        // Aeron copies an unresolvable channel whole (no length check), so the buffer must hold
        // the channel and its NUL; a URI never exceeds AERON_URI_MAX_LENGTH.
        let capacity = (rusteron_client::bindings::AERON_URI_MAX_LENGTH as usize + 1)
            .max(self.channel.len() + 1);
        let mut buffer = vec![0u8; capacity];
        let written = self
            .inner
            .try_resolve_channel_endpoint_port(&mut buffer)
            .context(|| format!("resolve the endpoint port of {}", self.channel))?;
        let written = written.max(0) as usize;
        if written == 0 {
            return Ok(None);
        }
        if written >= capacity {
            return Err(TransportError::Invalid(format!(
                "resolved channel of {} longer than {capacity} bytes",
                self.channel
            )));
        }
        let text = std::str::from_utf8(&buffer[..written]).map_err(|_| {
            TransportError::Invalid(format!("resolved channel of {} is not UTF-8", self.channel))
        })?;
        Ok(Some(text.to_string()))
    }

    /// Whether at least one image is connected.
    pub fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    /// The number of images (publisher sessions) currently connected.
    pub fn image_count(&self) -> usize {
        self.inner
            .image_count()
            .map(|count| count.max(0) as usize)
            .unwrap_or(0)
    }

    /// The images currently held, retained: each stays valid while its handle lives, even after its
    /// publisher goes (then [`Image::is_closed`] turns true).
    pub fn images(&self) -> Vec<Image> {
        let mut images = Vec::new();
        for index in 0..self.image_count() {
            if let Some(image) = self.inner.image_at_index(index) {
                if let Ok(image) = Image::new(image) {
                    images.push(image);
                }
            }
        }
        images
    }

    /// The image of one session, if connected.
    pub fn image_by_session_id(&self, session_id: i32) -> Option<Image> {
        self.inner
            .image_by_session_id(session_id)
            .and_then(|image| Image::new(image).ok())
    }
}

/// What does not change over an image's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Unique id of this image (a publisher that comes back gets a new image with a new id).
    pub correlation_id: i64,
    /// The publisher's session id.
    pub session_id: i32,
    /// Where the publisher is (`aeron:ipc`, or an address for UDP).
    pub source_identity: String,
    /// The position at which this subscriber joined the stream.
    pub join_position: i64,
    /// The term id at position 0 of the stream.
    pub initial_term_id: i32,
    /// Length of each term of the log.
    pub term_length: i32,
    /// Maximum frame length of the stream.
    pub mtu_length: i32,
}

/// One publisher session seen by a subscription. Clones share one retained handle.
#[derive(Clone)]
pub struct Image {
    inner: AeronImage,
    info: ImageInfo,
}

impl Image {
    fn new(inner: AeronImage) -> Result<Self, TransportError> {
        let info = image_info(&inner)?;
        Ok(Self { inner, info })
    }

    /// The image's constants.
    pub fn info(&self) -> &ImageInfo {
        &self.info
    }

    /// The position consumed so far.
    pub fn position(&self) -> i64 {
        self.inner.position()
    }

    /// Whether the image was closed (its publisher went, or it timed out).
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Whether the consumed position is at the end of the stream (the publisher closed cleanly).
    pub fn is_end_of_stream(&self) -> bool {
        self.inner.is_end_of_stream()
    }

    /// Deliver raw term bytes, frame headers included, from the consumed position: one block of
    /// whole frames within one term, at most `limit` bytes (a padding frame may come alone and be
    /// longer). `handler` gets the block and the stream position of its first byte.
    /// Returns the number of bytes consumed.
    ///
    /// # Errors
    /// The C client reported an error.
    pub fn block_poll(
        &self,
        mut handler: impl FnMut(&[u8], i64),
        limit: usize,
    ) -> Result<usize, TransportError> {
        let position = self.inner.position();
        let consumed = self
            .inner
            .block_poll_fn(
                |block: &[u8], _session_id: i32, _term_id: i32| handler(block, position),
                limit,
            )
            .context(|| format!("block poll of session {}", self.info.session_id))?;
        Ok(consumed.max(0) as usize)
    }

    /// Deliver up to `fragment_limit` fragments of this image only.
    ///
    /// # Errors
    /// The C client reported an error.
    pub fn poll(
        &self,
        mut handler: impl FnMut(&[u8], &Header),
        fragment_limit: usize,
    ) -> Result<usize, TransportError> {
        let count = self
            .inner
            .poll_fn(
                |buffer: &[u8], header: AeronHeader| handler(buffer, &copy_header(&header)),
                fragment_limit,
            )
            .context(|| format!("poll of session {}", self.info.session_id))?;
        Ok(count as usize)
    }
}
