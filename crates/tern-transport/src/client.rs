//! A connection to a media driver, and the publications, subscriptions and counters made with it.

use crate::error::{Context, TransportError};
use crate::publication::{ExclusivePublication, Publication};
use crate::subscription::{image_info, ImageEvent, ImageEvents, Subscription};
use crate::uri::{check_channel, ChannelUse};
use rusteron_client::{
    Aeron, AeronAsyncAddPublication, AeronContext, AeronImage, AeronSubscription, Handler,
    IntoCString,
};
use std::ffi::CString;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ADD_TIMEOUT: Duration = Duration::from_secs(10);

/// The type of the counter each client adds and closes as it connects (tern's own range).
pub const REGISTRATION_COUNTER_TYPE_ID: i32 = 0x7465_0001;

/// A client of a media driver.
///
/// Not `Send`: rusteron's handles are reference counted per thread. A thread that needs Aeron
/// connects its own client; publications and subscriptions stay on the thread that made them.
pub struct Client {
    aeron: Aeron,
    dir: String,
}

pub(crate) fn c_string(text: &str) -> Result<CString, TransportError> {
    CString::new(text).map_err(|_| TransportError::Invalid(format!("{text:?} contains a NUL byte")))
}

/// How long tern's Aeron clients' conductors sleep when idle, unless told otherwise: 1 ms
/// (Aeron's 16 ms default delays every new image and publication by up to that).
pub const DEFAULT_CLIENT_IDLE_SLEEP: Duration = Duration::from_millis(1);

/// A channel checked as Aeron would parse it (so a bad one is named with the reason instead of
/// Aeron's generic error), as a C string.
fn channel_c_string(channel: &str, usage: ChannelUse) -> Result<CString, TransportError> {
    check_channel(channel, usage).map_err(|problem| TransportError::InvalidChannel {
        channel: channel.to_string(),
        problem,
    })?;
    c_string(channel)
}

impl Client {
    /// Connect to the media driver whose directory is `dir`, the client conductor sleeping
    /// [`DEFAULT_CLIENT_IDLE_SLEEP`] when idle.
    ///
    /// # Errors
    /// No driver is active in `dir`, or the client could not start.
    pub fn connect(dir: &str) -> Result<Self, TransportError> {
        Self::connect_with_idle(dir, DEFAULT_CLIENT_IDLE_SLEEP)
    }

    /// Connect as [`Self::connect`], with the client conductor sleeping `idle_sleep` when it has
    /// nothing to do (Aeron's default is 16 ms; new images and publications wait up to that).
    ///
    /// # Errors
    /// No driver is active in `dir`, or the client could not start.
    pub fn connect_with_idle(dir: &str, idle_sleep: Duration) -> Result<Self, TransportError> {
        let context = AeronContext::new().context(|| "client context".into())?;
        let idle_ns = idle_sleep.as_nanos().clamp(1, u128::from(u64::MAX)) as u64;
        // The C client loads its conductor's idle strategy when the context is created, from
        // AERON_CLIENT_IDLE_SLEEP_DURATION or the 16 ms default: setting the duration afterwards
        // alone changes nothing. Reload the strategy with the duration as its argument.
        context
            .set_idle_sleep_duration_ns(idle_ns)
            .and_then(|_| context.set_idle_strategy_init_args(&idle_ns.to_string().into_c_string()))
            .and_then(|_| context.set_idle_strategy(c"sleep-ns"))
            .context(|| format!("client idle sleep {idle_sleep:?}"))?;
        context
            .set_dir(&dir.to_string().into_c_string())
            .context(|| format!("client dir {dir}"))?;
        context
            .set_error_handler(Some(|code: i32, message: &str| {
                tracing::warn!("aeron client error {code}: {message}");
            }))
            .context(|| "client error handler".into())?;
        let aeron =
            Aeron::new(&context).context(|| format!("connect to the media driver in {dir}"))?;
        aeron
            .start()
            .context(|| format!("connect to the media driver in {dir}"))?;
        let client = Self {
            aeron,
            dir: dir.to_string(),
        };
        // The driver makes a client's heartbeat counter on its first command; until the client
        // finds it, its conductor scans every counter slot of the driver on each duty cycle from
        // its first keepalive check on (a quarter of a core at a 1 ms idle sleep, for a client
        // that adds nothing). A counter added and closed at once registers the client.
        drop(client.add_counter(
            REGISTRATION_COUNTER_TYPE_ID,
            &[],
            "tern client registration",
        )?);
        Ok(client)
    }

    /// The driver directory this client is connected to.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The id the media driver gave this client (unique among the driver's clients).
    pub fn client_id(&self) -> i64 {
        self.aeron.client_id()
    }

    /// A concurrent publication (several publications on one channel and stream share its log).
    ///
    /// # Errors
    /// The channel is invalid or the driver refused it.
    pub fn add_publication(
        &self,
        channel: &str,
        stream_id: i32,
    ) -> Result<Publication, TransportError> {
        let uri = channel_c_string(channel, ChannelUse::Publication)?;
        let publication = self
            .aeron
            .async_add_publication(&uri, stream_id)
            .and_then(|pending| pending.poll_blocking(ADD_TIMEOUT))
            .context(|| format!("add publication {channel} stream {stream_id}"))?;
        Ok(Publication::new(publication))
    }

    /// Start adding a concurrent publication without waiting for the driver: poll the
    /// [`PendingPublication`] (each poll returns at once) until it gives the publication.
    ///
    /// # Errors
    /// The channel is invalid, or the client could not send the request to the driver.
    pub fn add_publication_async(
        &self,
        channel: &str,
        stream_id: i32,
    ) -> Result<PendingPublication, TransportError> {
        let uri = channel_c_string(channel, ChannelUse::Publication)?;
        let inner = self
            .aeron
            .async_add_publication(&uri, stream_id)
            .context(|| format!("add publication {channel} stream {stream_id}"))?;
        Ok(PendingPublication {
            inner: Some(inner),
            channel: channel.to_string(),
            stream_id,
        })
    }

    /// An exclusive publication: its own session, offered to from one thread only.
    ///
    /// # Errors
    /// The channel is invalid or the driver refused it.
    pub fn add_exclusive_publication(
        &self,
        channel: &str,
        stream_id: i32,
    ) -> Result<ExclusivePublication, TransportError> {
        let uri = channel_c_string(channel, ChannelUse::Publication)?;
        let publication = self
            .aeron
            .async_add_exclusive_publication(&uri, stream_id)
            .and_then(|pending| pending.poll_blocking(ADD_TIMEOUT))
            .context(|| format!("add exclusive publication {channel} stream {stream_id}"))?;
        Ok(ExclusivePublication::new(publication))
    }

    /// A subscription to `channel` and `stream_id`. Prefix the channel with `aeron-spy:` to spy on
    /// local publications of a UDP channel.
    ///
    /// # Errors
    /// The channel is invalid or the driver refused it.
    pub fn add_subscription(
        &self,
        channel: &str,
        stream_id: i32,
    ) -> Result<Subscription, TransportError> {
        let uri = channel_c_string(channel, ChannelUse::Subscription)?;
        let events: ImageEvents = Arc::new(Mutex::new(Vec::new()));
        // The client's conductor thread calls these; the image is valid only during the call.
        let available_events = events.clone();
        let on_available =
            Handler::new(move |_subscription: AeronSubscription, image: AeronImage| {
                if let Ok(info) = image_info(&image) {
                    if let Ok(mut queue) = available_events.lock() {
                        queue.push(ImageEvent::Available(info));
                    }
                }
            });
        let unavailable_events = events.clone();
        let on_unavailable =
            Handler::new(move |_subscription: AeronSubscription, image: AeronImage| {
                if let Ok(info) = image_info(&image) {
                    if let Ok(mut queue) = unavailable_events.lock() {
                        queue.push(ImageEvent::Unavailable {
                            correlation_id: info.correlation_id,
                            session_id: info.session_id,
                            position: image.position(),
                        });
                    }
                }
            });
        let subscription = self
            .aeron
            .async_add_subscription(&uri, stream_id, Some(&on_available), Some(&on_unavailable))
            .and_then(|pending| pending.poll_blocking(ADD_TIMEOUT))
            .context(|| format!("add subscription {channel} stream {stream_id}"))?;
        Ok(Subscription::new(
            subscription,
            channel.to_string(),
            stream_id,
            events,
        ))
    }

    /// A counter in the driver's counters file, visible to every Aeron tool reading it
    /// (`AeronStat`, say). `type_id` 1000 and above are free for applications.
    ///
    /// # Errors
    /// The driver refused the counter (the counters file is full, say).
    pub fn add_counter(
        &self,
        type_id: i32,
        key: &[u8],
        label: &str,
    ) -> Result<Counter, TransportError> {
        let counter = self
            .aeron
            .add_counter(type_id, key, label, ADD_TIMEOUT)
            .context(|| format!("add counter {label}"))?;
        Ok(Counter { inner: counter })
    }

    /// A reader of the driver's counters: any counter by id, whoever allocated it.
    pub fn counters_reader(&self) -> CountersReader {
        CountersReader {
            inner: self.aeron.counters_reader(),
            _aeron: self.aeron.clone(),
        }
    }

    /// A correlation id unique among all clients of this media driver (Aeron's
    /// `nextCorrelationId`), for requests whose answers come back on a stream that other clients
    /// may share.
    pub fn next_correlation_id(&self) -> i64 {
        self.aeron.next_correlation_id()
    }

    /// A session id that no publication of `stream_id` in this media driver uses yet (Aeron's
    /// `nextSessionId`): put it in a channel's `session-id` parameter to get a session of one's
    /// own, as Aeron's archive client does for its control channels.
    ///
    /// # Errors
    /// The driver refused or did not answer within 10 s.
    pub fn next_session_id(&self, stream_id: i32) -> Result<i32, TransportError> {
        let mut pending: *mut rusteron_client::bindings::aeron_async_get_next_available_session_id_t =
            std::ptr::null_mut();
        // SAFETY: `aeron` is a started client and `pending` a valid out pointer; the C client owns
        // the registration it points to and frees it once a poll has reported completion or
        // an error.
        let started = unsafe {
            rusteron_client::bindings::aeron_async_next_session_id(
                &mut pending,
                self.aeron.get_inner(),
                stream_id,
            )
        };
        if started < 0 || pending.is_null() {
            return Err(TransportError::Invalid(format!(
                "next session id for stream {stream_id}: {}",
                Aeron::errmsg()
            )));
        }
        let deadline = std::time::Instant::now() + ADD_TIMEOUT;
        let mut idle = crate::idle::BackoffIdle::new();
        loop {
            let mut session_id = 0i32;
            // SAFETY: `pending` came from `aeron_async_next_session_id` and has not reported
            // completion yet, so the C client has not released it.
            let polled = unsafe {
                rusteron_client::bindings::aeron_async_next_session_id_poll(
                    &mut session_id,
                    pending,
                )
            };
            match polled {
                1 => return Ok(session_id),
                0 if std::time::Instant::now() < deadline => crate::idle::Idle::idle(&mut idle, 0),
                0 => {
                    return Err(TransportError::TimedOut(format!(
                        "next session id for stream {stream_id}"
                    )))
                }
                _ => {
                    return Err(TransportError::Invalid(format!(
                        "next session id for stream {stream_id}: {}",
                        Aeron::errmsg()
                    )))
                }
            }
        }
    }

    /// Aeron's monotonic clock in nanoseconds.
    pub fn nano_clock() -> i64 {
        Aeron::nano_clock()
    }
}

/// A publication the driver is adding ([`Client::add_publication_async`]). Dropped before it gave
/// the publication, the add is cancelled (a publication the driver made meanwhile is closed).
pub struct PendingPublication {
    /// `None` once it gave the publication or an error.
    inner: Option<AeronAsyncAddPublication>,
    channel: String,
    stream_id: i32,
}

impl PendingPublication {
    /// The publication, once the driver added it (`None`: not yet, or it was already given).
    /// Returns at once.
    ///
    /// # Errors
    /// The driver refused the publication (given once; polling again gives `None`).
    pub fn poll(&mut self) -> Result<Option<Publication>, TransportError> {
        let Some(inner) = &self.inner else {
            return Ok(None);
        };
        let polled = inner
            .poll()
            .context(|| format!("add publication {} stream {}", self.channel, self.stream_id));
        match polled {
            Ok(None) => Ok(None),
            Ok(Some(publication)) => {
                self.inner = None;
                Ok(Some(Publication::new(publication)))
            }
            Err(error) => {
                self.inner = None;
                Err(error)
            }
        }
    }

    /// The channel asked for.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The stream id asked for.
    pub fn stream_id(&self) -> i32 {
        self.stream_id
    }
}

/// A 64-bit counter allocated in the media driver's counters file. Freed when dropped.
pub struct Counter {
    inner: rusteron_client::AeronCounter,
}

impl Counter {
    fn cell(&self) -> &AtomicI64 {
        // The raw pointer, not rusteron's `&mut i64`: the value is shared with the driver and
        // other processes, so no exclusive reference to it may exist.
        // SAFETY: `inner` is a live counter.
        let address: *mut i64 =
            unsafe { rusteron_client::bindings::aeron_counter_addr(self.inner.get_inner()) };
        // SAFETY: the counter's value is an aligned i64 in the CnC file, mapped while `inner`
        // lives; Aeron reads and writes it with atomic operations, as this does.
        unsafe { AtomicI64::from_ptr(address) }
    }

    /// Store a value, visible to other processes.
    pub fn set(&self, value: i64) {
        self.cell().store(value, Ordering::Release);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.cell().load(Ordering::Acquire)
    }

    /// The counter's id in the counters file.
    pub fn id(&self) -> i32 {
        self.inner
            .get_constants()
            .map(|constants| constants.counter_id)
            .unwrap_or(-1)
    }
}

/// Aeron's counter record state of a counter in use (`AERON_COUNTER_RECORD_ALLOCATED`).
const COUNTER_ALLOCATED: i32 = 1;

/// Reads the media driver's counters by id (Aeron's `CountersReader`). Valid while the client it
/// came from lives (it keeps the client).
pub struct CountersReader {
    inner: rusteron_client::AeronCountersReader,
    _aeron: Aeron,
}

impl CountersReader {
    /// The value of counter `counter_id`.
    ///
    /// # Errors
    /// The id is outside the counters file.
    pub fn value(&self, counter_id: i32) -> Result<i64, TransportError> {
        self.inner
            .get_counter_value(counter_id)
            .context(|| format!("read counter {counter_id}"))
    }

    /// Whether counter `counter_id` is allocated (in use, not freed or never allocated).
    pub fn is_allocated(&self, counter_id: i32) -> bool {
        counter_id >= 0
            && counter_id <= self.inner.max_counter_id()
            && matches!(self.inner.counter_state(counter_id), Ok(COUNTER_ALLOCATED))
    }

    /// The registration id of counter `counter_id`: tells a counter from a later one that reuses
    /// its id.
    ///
    /// # Errors
    /// The id is outside the counters file.
    pub fn registration_id(&self, counter_id: i32) -> Result<i64, TransportError> {
        if counter_id < 0 || counter_id > self.inner.max_counter_id() {
            return Err(TransportError::Invalid(format!(
                "{counter_id} is not a counter id"
            )));
        }
        self.inner
            .counter_registration_id(counter_id)
            .context(|| format!("registration id of counter {counter_id}"))
    }
}
