//! [`ArchiveClient`]: a control session with an archive, every operation a blocking call.

use crate::config::{ArchiveClientConfig, CONTROL_MTU_LENGTH, CONTROL_TERM_LENGTH};
use crate::control::{check_ok, Control, Incoming, ListKind};
use crate::error::ClientError;
use crate::types::{
    RecordingDescriptor, RecordingSignalEvent, RecordingSubscription, StrayError, NULL_VALUE,
};
use crate::uri::ChannelUri;
use std::time::{Duration, Instant};
use tern_protocol::{
    AnyMessage, ArchiveIdRequest, AuthConnectRequest, BoundedReplayRequest, ChallengeResponse,
    CloseSessionRequest, ControlResponse, EncodeError, ExtendRecordingRequest2,
    FindLastMatchingRecordingRequest, KeepAliveRequest, ListRecordingRequest,
    ListRecordingSubscriptionsRequest, ListRecordingsForUriRequest, ListRecordingsRequest,
    MaxRecordedPositionRequest, Message, PurgeRecordingRequest, RecordingPositionRequest,
    ReplayRequest, SemanticVersion, SourceLocation, StartPositionRequest, StartRecordingRequest2,
    StopAllReplaysRequest, StopPositionRequest, StopRecordingByIdentityRequest,
    StopRecordingRequest, StopRecordingSubscriptionRequest, StopReplayRequest,
    TruncateRecordingRequest, ARCHIVE_PROTOCOL_VERSION,
};
use tern_store::{RecordingId, ReplayId};
use tern_transport::{BackoffIdle, Client, Idle};

/// The first archive protocol version that answers `ArchiveIdRequest` (Aeron's 1.11.0).
const PROTOCOL_VERSION_WITH_ARCHIVE_ID: i32 = (1 << 16) | (11 << 8);

/// Offers of a `CloseSessionRequest` when the client is dropped (Aeron's retry attempts).
const CLOSE_ATTEMPTS: usize = 3;

/// A control session with an archive, used from the thread that made it (its Aeron handles are
/// not `Send`).
///
/// Every operation sends one request and waits for its answer, at most
/// [`ArchiveClientConfig::message_timeout`] (a listing waits that long for each descriptor).
/// While it waits it keeps the session alive and sorts what else arrives: recording signals
/// are queued for [`ArchiveClient::poll_signals`], ERROR responses that answer no waiting
/// request for [`ArchiveClient::take_errors`]. Dropping the client closes the session
/// (`CloseSessionRequest`).
pub struct ArchiveClient {
    control: Control,
    /// The Aeron client the control streams were made with; dropped after them.
    transport: Client,
    control_session_id: i64,
    archive_id: Option<i64>,
    archive_version: Option<SemanticVersion>,
    last_correlation_id: i64,
    disconnected: Option<String>,
    closed: bool,
}

impl std::fmt::Debug for ArchiveClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ArchiveClient")
            .field("control_session_id", &self.control_session_id)
            .field("archive_id", &self.archive_id)
            .field("request_channel", &self.control.request_channel)
            .field("response_channel", &self.control.subscription.channel())
            .field("closed", &self.closed)
            .finish()
    }
}

/// Puts Aeron's control-channel defaults and the client's own session id on a channel.
fn control_channel(channel: &str, session_id: i32) -> String {
    let mut uri = ChannelUri::parse(channel);
    uri.put_if_absent("term-length", CONTROL_TERM_LENGTH)
        .put_if_absent("mtu", CONTROL_MTU_LENGTH)
        .put_if_absent("sparse", "true")
        .put("session-id", session_id.to_string());
    uri.to_string()
}

fn wait_for(
    deadline: Instant,
    timeout: Duration,
    what: impl Fn() -> String,
    mut ready: impl FnMut() -> Result<bool, ClientError>,
) -> Result<(), ClientError> {
    let mut idle = BackoffIdle::new();
    loop {
        if ready()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ClientError::Timeout {
                waiting_for: what(),
                timeout,
            });
        }
        idle.idle(0);
    }
}

impl ArchiveClient {
    /// Connects to an archive: a new Aeron client on `config.aeron_dir`, then as
    /// [`ArchiveClient::connect_with`].
    ///
    /// # Errors
    /// See [`ArchiveClient::connect_with`]; also no media driver in `aeron_dir`.
    pub fn connect(config: ArchiveClientConfig) -> Result<Self, ClientError> {
        let transport = Client::connect(&config.aeron_dir)?;
        Self::connect_with(transport, config)
    }

    /// Connects to an archive with an Aeron client of this thread: adds the response
    /// subscription and the request publication (both with a session id of their own), waits for
    /// the archive to subscribe, resolves a wildcard response port, sends `AuthConnectRequest`
    /// (protocol 1.12.0, credentials, client info), answers challenges, and asks for the
    /// archive id. The whole connect has [`ArchiveClientConfig::message_timeout`].
    ///
    /// # Errors
    /// [`ClientError::Timeout`] naming the step it waited in (no archive on the request channel,
    /// no response, ...); [`ClientError::Archive`] if the archive refused
    /// (`AUTHENTICATION_REJECTED`, say); [`ClientError::Protocol`] for a challenge without a
    /// [`ArchiveClientConfig::challenge_handler`]; [`ClientError::Transport`] if the driver
    /// refused a channel.
    pub fn connect_with(
        transport: Client,
        config: ArchiveClientConfig,
    ) -> Result<Self, ClientError> {
        let timeout = config.message_timeout;
        let deadline = Instant::now() + timeout;
        let session_id = transport.next_session_id(config.control_request_stream_id)?;
        let request_channel = control_channel(&config.control_request_channel, session_id);
        let response_channel = control_channel(&config.control_response_channel, session_id);
        let subscription =
            transport.add_subscription(&response_channel, config.control_response_stream_id)?;
        let publication = transport
            .add_exclusive_publication(&request_channel, config.control_request_stream_id)?;
        let mut control = Control::new(
            publication,
            request_channel.clone(),
            subscription,
            timeout,
            config.keep_alive_interval,
        );

        wait_for(
            deadline,
            timeout,
            || {
                format!(
                    "for an archive to subscribe to the control request channel {request_channel} \
                     stream {}",
                    config.control_request_stream_id
                )
            },
            || Ok(control.publication.is_connected()),
        )?;

        let mut resolved = None;
        wait_for(
            deadline,
            timeout,
            || format!("for the driver to bind the response channel {response_channel}"),
            || {
                resolved = control.subscription.try_resolve_channel_endpoint_port()?;
                Ok(resolved.is_some())
            },
        )?;
        let resolved_response_channel = resolved.unwrap_or(response_channel);

        let mut correlation_id = transport.next_correlation_id();
        let connect = Message::AuthConnectRequest(AuthConnectRequest {
            correlation_id,
            response_stream_id: config.control_response_stream_id,
            version: Some(ARCHIVE_PROTOCOL_VERSION),
            response_channel: resolved_response_channel.clone(),
            encoded_credentials: config.credentials.clone().unwrap_or_default(),
            client_info: tern_protocol::to_ascii_lossy(&format!(
                "name={} tern-client version={}",
                config.client_name,
                env!("CARGO_PKG_VERSION")
            )),
        });
        control.expect(correlation_id);
        control.send(&connect)?;

        wait_for(
            deadline,
            timeout,
            || {
                format!(
                    "for the archive to connect to the response channel {resolved_response_channel} \
                     stream {}",
                    config.control_response_stream_id
                )
            },
            || {
                // Answers may come as soon as the image is there: keep them.
                control.poll()?;
                Ok(control.subscription.is_connected())
            },
        )?;

        let mut next_id = || transport.next_correlation_id();
        let result = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            control.message_timeout = remaining;
            let incoming = control.await_incoming(
                correlation_id,
                "the archive's answer to the connect request",
                &mut next_id,
            );
            control.message_timeout = timeout;
            match incoming {
                Err(ClientError::Timeout { waiting_for, .. }) => {
                    break Err(ClientError::Timeout {
                        waiting_for,
                        timeout,
                    })
                }
                Err(error) => break Err(error),
                Ok(Incoming::Challenge(challenge)) => {
                    control.forget(correlation_id);
                    control.control_session_id = Some(challenge.control_session_id);
                    let Some(handler) = config.challenge_handler.as_ref() else {
                        break Err(ClientError::Protocol(
                            "the archive sent an authentication challenge and no challenge \
                             handler is configured"
                                .into(),
                        ));
                    };
                    let credentials = handler(&challenge.encoded_challenge);
                    correlation_id = next_id();
                    control.expect(correlation_id);
                    if let Err(error) =
                        control.send(&Message::ChallengeResponse(ChallengeResponse {
                            control_session_id: challenge.control_session_id,
                            correlation_id,
                            encoded_credentials: credentials,
                        }))
                    {
                        break Err(error);
                    }
                }
                Ok(Incoming::Response(response)) => {
                    control.forget(correlation_id);
                    control.control_session_id = Some(response.control_session_id);
                    break check_ok(response, correlation_id);
                }
                Ok(other) => {
                    tracing::debug!("ignored {other:?} while connecting");
                }
            }
        };
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                if let Some(control_session_id) = control.control_session_id {
                    close_session(&mut control, control_session_id);
                }
                return Err(error);
            }
        };
        let control_session_id = response.control_session_id;
        let archive_version = response.version;
        control.check_connected = true;

        let mut client = Self {
            control,
            transport,
            control_session_id,
            archive_id: None,
            archive_version,
            last_correlation_id: correlation_id,
            disconnected: None,
            closed: false,
        };
        if archive_version.is_some_and(|version| version.raw() >= PROTOCOL_VERSION_WITH_ARCHIVE_ID)
        {
            // Aeron asks within the connect's deadline; the remaining time bounds this request.
            let remaining = deadline.saturating_duration_since(Instant::now());
            client.control.message_timeout = remaining.max(Duration::from_millis(1));
            let archive_id = client.request_archive_id();
            client.control.message_timeout = timeout;
            client.archive_id = Some(archive_id.map_err(|error| match error {
                ClientError::Timeout { waiting_for, .. } => ClientError::Timeout {
                    waiting_for,
                    timeout,
                },
                other => other,
            })?);
        }
        // Aeron's archive repeats its connect response until the session's first request: this
        // keep-alive is that request (Aeron's client sends the same).
        client
            .control
            .send(&Message::KeepAliveRequest(KeepAliveRequest {
                control_session_id,
                correlation_id: NULL_VALUE,
            }))?;
        Ok(client)
    }

    /// The control session id the archive gave this client.
    pub fn control_session_id(&self) -> i64 {
        self.control_session_id
    }

    /// The archive's id, as asked on connect; `None` from archives before protocol 1.11.
    pub fn archive_id(&self) -> Option<i64> {
        self.archive_id
    }

    /// The protocol version the archive announced in its connect response.
    pub fn archive_version(&self) -> Option<SemanticVersion> {
        self.archive_version
    }

    /// The correlation id of the last request sent.
    pub fn last_correlation_id(&self) -> i64 {
        self.last_correlation_id
    }

    /// The Aeron client of this archive client, to add subscriptions (of replays, say) on the
    /// same thread.
    pub fn transport(&self) -> &Client {
        &self.transport
    }

    /// The response channel as subscribed (with the client's session id).
    pub fn response_channel(&self) -> &str {
        self.control.subscription.channel()
    }

    /// A correlation id unique among the clients of this media driver.
    pub fn next_correlation_id(&mut self) -> i64 {
        self.transport.next_correlation_id()
    }

    fn ensure_open(&self) -> Result<(), ClientError> {
        if self.closed {
            return Err(ClientError::Closed);
        }
        if let Some(reason) = &self.disconnected {
            return Err(ClientError::NotConnected(reason.clone()));
        }
        Ok(())
    }

    fn note<T>(&mut self, result: Result<T, ClientError>) -> Result<T, ClientError> {
        if let Err(ClientError::NotConnected(reason)) = &result {
            self.disconnected = Some(reason.clone());
        }
        result
    }

    /// Sends a request encoded by `encode(control_session_id, correlation_id, buffer)` and keeps
    /// its answers for [`ArchiveClient::poll_response`]; returns the correlation id. The one way
    /// every request goes out, so a message of another schema (tern's extensions) needs only its
    /// encoder.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] if `encode` refuses; sending errors as for any request.
    pub fn send_request(
        &mut self,
        what: &str,
        encode: impl FnOnce(i64, i64, &mut Vec<u8>) -> Result<usize, EncodeError>,
    ) -> Result<i64, ClientError> {
        self.ensure_open()?;
        let correlation_id = self.transport.next_correlation_id();
        self.last_correlation_id = correlation_id;
        let control_session_id = self.control_session_id;
        self.control.expect(correlation_id);
        let sent = self.control.send_with(what, |buffer| {
            encode(control_session_id, correlation_id, buffer)
        });
        if sent.is_err() {
            self.control.forget(correlation_id);
        }
        self.note(sent).map(|()| correlation_id)
    }

    /// Sends a request and waits for its `ControlResponse`: the response if OK.
    ///
    /// # Errors
    /// [`ClientError::Archive`] for an ERROR response, [`ClientError::Timeout`] if none came,
    /// [`ClientError::Protocol`] for another code.
    pub fn request(
        &mut self,
        what: &str,
        encode: impl FnOnce(i64, i64, &mut Vec<u8>) -> Result<usize, EncodeError>,
    ) -> Result<ControlResponse, ClientError> {
        let correlation_id = self.send_request(what, encode)?;
        let transport = &self.transport;
        let result = self.control.await_response(correlation_id, what, &mut || {
            transport.next_correlation_id()
        });
        self.note(result)
    }

    /// Sends a request (of either schema) built by `build(control_session_id, correlation_id)`;
    /// returns its correlation id and the message's name.
    fn send_message<M: Into<AnyMessage>>(
        &mut self,
        build: impl FnOnce(i64, i64) -> M,
    ) -> Result<(i64, &'static str), ClientError> {
        let message_name = std::cell::Cell::new("request");
        let correlation_id =
            self.send_request("request", |control_session_id, correlation_id, buffer| {
                let message: AnyMessage = build(control_session_id, correlation_id).into();
                message_name.set(message.name());
                message.encode(buffer)
            })?;
        Ok((correlation_id, message_name.get()))
    }

    /// Sends a request built by `build(control_session_id, correlation_id)` and waits for its
    /// OK response.
    pub(crate) fn request_message<M: Into<AnyMessage>>(
        &mut self,
        build: impl FnOnce(i64, i64) -> M,
    ) -> Result<ControlResponse, ClientError> {
        let (correlation_id, name) = self.send_message(build)?;
        let transport = &self.transport;
        let what = format!("the response to {name}");
        let result = self.control.await_response(correlation_id, &what, &mut || {
            transport.next_correlation_id()
        });
        self.note(result)
    }

    /// Sends a request and waits for the first message that answers it, whatever it is (a
    /// response, a descriptor): for requests answered with a descriptor.
    pub(crate) fn request_answer<M: Into<AnyMessage>>(
        &mut self,
        build: impl FnOnce(i64, i64) -> M,
    ) -> Result<Incoming, ClientError> {
        let (correlation_id, name) = self.send_message(build)?;
        let transport = &self.transport;
        let what = format!("the answer to {name}");
        let result = self.control.await_incoming(correlation_id, &what, &mut || {
            transport.next_correlation_id()
        });
        self.control.forget(correlation_id);
        self.note(result)
    }

    /// Sends a request whose answers are a listing and collects them.
    pub(crate) fn list<M: Into<AnyMessage>>(
        &mut self,
        count: usize,
        kind: ListKind,
        build: impl FnOnce(i64, i64) -> M,
    ) -> Result<Vec<Incoming>, ClientError> {
        let (correlation_id, name) = self.send_message(build)?;
        let what = match kind {
            ListKind::Recordings => "recording descriptors",
            ListKind::Subscriptions => "recording subscription descriptors",
            ListKind::Cursors => "cursor descriptors",
            ListKind::Groups => "recording group descriptors",
        };
        let what = format!("{what} for {name}");
        let transport = &self.transport;
        let result = self
            .control
            .await_list(correlation_id, count, kind, &what, &mut || {
                transport.next_correlation_id()
            });
        self.note(result)
    }

    /// Checks for a kept answer to `correlation_id` (after one poll of the response stream),
    /// without waiting: `Some(response)` when its OK `ControlResponse` came. For callers that
    /// keep several requests in flight, such as [`ReplayMerge`](crate::ReplayMerge).
    ///
    /// # Errors
    /// [`ClientError::Archive`] if the answer is an ERROR; transport and protocol errors of the
    /// poll.
    pub fn poll_response(
        &mut self,
        correlation_id: i64,
    ) -> Result<Option<ControlResponse>, ClientError> {
        self.ensure_open()?;
        let polled = self.poll_inner();
        self.note(polled)?;
        loop {
            match self.control.take(correlation_id) {
                None => return Ok(None),
                Some(Incoming::Response(response)) => {
                    self.control.forget(correlation_id);
                    return check_ok(response, correlation_id).map(Some);
                }
                Some(other) => tracing::debug!("ignored {other:?} polling for {correlation_id}"),
            }
        }
    }

    /// Stops keeping answers to `correlation_id` (an ERROR that comes later goes to
    /// [`ArchiveClient::take_errors`]).
    pub fn forget_request(&mut self, correlation_id: i64) {
        self.control.forget(correlation_id);
    }

    fn poll_inner(&mut self) -> Result<usize, ClientError> {
        let fragments = self.control.poll()?;
        if fragments == 0 {
            self.control.check_connected()?;
        }
        let transport = &self.transport;
        self.control
            .keep_alive_if_due(|| transport.next_correlation_id());
        Ok(fragments)
    }

    /// Polls the response stream once: queues recording signals and stray errors, and sends a
    /// keep-alive if the client was silent for the keep-alive interval. Call it now and then
    /// when the client is otherwise idle. Returns the number of fragments read.
    ///
    /// # Errors
    /// [`ClientError::NotConnected`] if the archive's response stream is gone;
    /// [`ClientError::Protocol`] for a malformed message.
    pub fn poll(&mut self) -> Result<usize, ClientError> {
        self.ensure_open()?;
        let result = self.poll_inner();
        self.note(result)
    }

    /// Polls once, then returns the recording signals received so far, oldest first.
    ///
    /// # Errors
    /// As [`ArchiveClient::poll`].
    pub fn poll_signals(&mut self) -> Result<Vec<RecordingSignalEvent>, ClientError> {
        self.poll()?;
        Ok(self.control.take_signals())
    }

    /// Waits (at most the message timeout) for a recording signal that `matches`; signals that
    /// do not match stay queued for [`ArchiveClient::poll_signals`].
    ///
    /// # Errors
    /// [`ClientError::Timeout`] if none came; as [`ArchiveClient::poll`].
    pub fn await_signal(
        &mut self,
        mut matches: impl FnMut(&RecordingSignalEvent) -> bool,
    ) -> Result<RecordingSignalEvent, ClientError> {
        let deadline = Instant::now() + self.control.message_timeout;
        let mut idle = BackoffIdle::new();
        let mut seen: Vec<RecordingSignalEvent> = Vec::new();
        let found = loop {
            let fragments = match self.poll() {
                Ok(fragments) => fragments,
                Err(error) => break Err(error),
            };
            let mut found = None;
            for signal in self.control.take_signals() {
                if found.is_none() && matches(&signal) {
                    found = Some(signal);
                } else {
                    seen.push(signal);
                }
            }
            if let Some(signal) = found {
                break Ok(signal);
            }
            if Instant::now() >= deadline {
                break Err(ClientError::Timeout {
                    waiting_for: "awaiting a matching recording signal".into(),
                    timeout: self.control.message_timeout,
                });
            }
            idle.idle(fragments);
        };
        self.control.requeue_signals(seen);
        found
    }

    /// ERROR responses that answered no request the client was waiting for (a request that
    /// timed out, a request sent with [`ArchiveClient::send_request`] and forgotten), oldest
    /// first.
    pub fn take_errors(&mut self) -> Vec<StrayError> {
        self.control.take_errors()
    }

    /// Sends a keep-alive now.
    ///
    /// # Errors
    /// Sending failed.
    pub fn keep_alive(&mut self) -> Result<(), ClientError> {
        self.ensure_open()?;
        let correlation_id = self.transport.next_correlation_id();
        let sent = self
            .control
            .send(&Message::KeepAliveRequest(KeepAliveRequest {
                control_session_id: self.control_session_id,
                correlation_id,
            }));
        self.note(sent)
    }

    /// Asks the archive for its id again (connect already did: see [`ArchiveClient::archive_id`]).
    ///
    /// # Errors
    /// As any request.
    pub fn request_archive_id(&mut self) -> Result<i64, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::ArchiveIdRequest(ArchiveIdRequest {
                control_session_id,
                correlation_id,
            })
        })
        .map(|response| response.relevant_id)
    }

    /// Starts recording a channel and stream (`StartRecordingRequest2`); with `auto_stop` the
    /// archive removes the recording subscription when the recording ends. Returns the recording
    /// subscription's id. The recording's id comes in a START signal
    /// ([`ArchiveClient::await_signal`]).
    ///
    /// # Errors
    /// As any request (`ACTIVE_SUBSCRIPTION` if the channel is recorded already, say).
    pub fn start_recording(
        &mut self,
        channel: &str,
        stream_id: i32,
        source_location: SourceLocation,
        auto_stop: bool,
    ) -> Result<i64, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::StartRecordingRequest2(StartRecordingRequest2 {
                control_session_id,
                correlation_id,
                stream_id,
                source_location,
                auto_stop,
                channel: channel.to_string(),
            })
        })
        .map(|response| response.relevant_id)
    }

    /// Stops the recording of a channel and stream.
    ///
    /// # Errors
    /// As any request (`UNKNOWN_SUBSCRIPTION` if nothing records it).
    pub fn stop_recording(&mut self, channel: &str, stream_id: i32) -> Result<(), ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::StopRecordingRequest(StopRecordingRequest {
                control_session_id,
                correlation_id,
                stream_id,
                channel: channel.to_string(),
            })
        })
        .map(drop)
    }

    /// Stops the recording subscription `subscription_id` (what `start_recording` returned).
    ///
    /// # Errors
    /// As any request (`UNKNOWN_SUBSCRIPTION`).
    pub fn stop_recording_subscription(&mut self, subscription_id: i64) -> Result<(), ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::StopRecordingSubscriptionRequest(StopRecordingSubscriptionRequest {
                control_session_id,
                correlation_id,
                subscription_id,
            })
        })
        .map(drop)
    }

    /// Stops the recording `recording_id`; `false` if it was not active.
    ///
    /// # Errors
    /// As any request.
    pub fn stop_recording_by_identity(
        &mut self,
        recording_id: RecordingId,
    ) -> Result<bool, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::StopRecordingByIdentityRequest(StopRecordingByIdentityRequest {
                control_session_id,
                correlation_id,
                recording_id: recording_id.get(),
            })
        })
        .map(|response| response.relevant_id != 0)
    }

    /// Extends a stopped recording with a new publication of the same stream
    /// (`ExtendRecordingRequest2`); returns the recording subscription's id.
    ///
    /// # Errors
    /// As any request.
    pub fn extend_recording(
        &mut self,
        recording_id: RecordingId,
        channel: &str,
        stream_id: i32,
        source_location: SourceLocation,
        auto_stop: bool,
    ) -> Result<i64, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::ExtendRecordingRequest2(ExtendRecordingRequest2 {
                control_session_id,
                correlation_id,
                recording_id: recording_id.get(),
                stream_id,
                source_location,
                auto_stop,
                channel: channel.to_string(),
            })
        })
        .map(|response| response.relevant_id)
    }

    /// Truncates a stopped recording to `position`; returns the archive's relevant id (the
    /// number of segment files deleted, in Aeron).
    ///
    /// # Errors
    /// As any request.
    pub fn truncate_recording(
        &mut self,
        recording_id: RecordingId,
        position: i64,
    ) -> Result<i64, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::TruncateRecordingRequest(TruncateRecordingRequest {
                control_session_id,
                correlation_id,
                recording_id: recording_id.get(),
                position,
            })
        })
        .map(|response| response.relevant_id)
    }

    /// Purges a stopped recording (descriptor invalidated, files deleted); returns the
    /// archive's relevant id (the number of segment files deleted, in Aeron).
    ///
    /// # Errors
    /// As any request.
    pub fn purge_recording(&mut self, recording_id: RecordingId) -> Result<i64, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::PurgeRecordingRequest(PurgeRecordingRequest {
                control_session_id,
                correlation_id,
                recording_id: recording_id.get(),
            })
        })
        .map(|response| response.relevant_id)
    }

    /// Up to `count` recordings from `from_recording_id` on.
    ///
    /// # Errors
    /// As any request; a timeout if a descriptor is more than the message timeout apart from
    /// the previous one.
    pub fn list_recordings(
        &mut self,
        from_recording_id: RecordingId,
        count: i32,
    ) -> Result<Vec<RecordingDescriptor>, ClientError> {
        if count <= 0 {
            return Ok(Vec::new());
        }
        let listed = self.list(
            count as usize,
            ListKind::Recordings,
            |session, correlation| {
                Message::ListRecordingsRequest(ListRecordingsRequest {
                    control_session_id: session,
                    correlation_id: correlation,
                    from_recording_id: from_recording_id.get(),
                    record_count: count,
                })
            },
        )?;
        Ok(recording_descriptors(listed))
    }

    /// Up to `count` recordings from `from_recording_id` on whose stream id is `stream_id` and
    /// whose stripped channel contains `channel_fragment`.
    ///
    /// # Errors
    /// As [`ArchiveClient::list_recordings`].
    pub fn list_recordings_for_uri(
        &mut self,
        from_recording_id: RecordingId,
        count: i32,
        channel_fragment: &str,
        stream_id: i32,
    ) -> Result<Vec<RecordingDescriptor>, ClientError> {
        if count <= 0 {
            return Ok(Vec::new());
        }
        let listed = self.list(
            count as usize,
            ListKind::Recordings,
            |session, correlation| {
                Message::ListRecordingsForUriRequest(ListRecordingsForUriRequest {
                    control_session_id: session,
                    correlation_id: correlation,
                    from_recording_id: from_recording_id.get(),
                    record_count: count,
                    stream_id,
                    channel: channel_fragment.to_string(),
                })
            },
        )?;
        Ok(recording_descriptors(listed))
    }

    /// The descriptor of one recording; `None` if the archive does not know it.
    ///
    /// # Errors
    /// As any request.
    pub fn list_recording(
        &mut self,
        recording_id: RecordingId,
    ) -> Result<Option<RecordingDescriptor>, ClientError> {
        let listed = self.list(1, ListKind::Recordings, |session, correlation| {
            Message::ListRecordingRequest(ListRecordingRequest {
                control_session_id: session,
                correlation_id: correlation,
                recording_id: recording_id.get(),
            })
        })?;
        Ok(recording_descriptors(listed).into_iter().next())
    }

    /// The id of the last recording at or after `min_recording_id` that matches the channel
    /// fragment, stream id and session id; `None` if none does.
    ///
    /// # Errors
    /// As any request.
    pub fn find_last_matching_recording(
        &mut self,
        min_recording_id: RecordingId,
        channel_fragment: &str,
        stream_id: i32,
        session_id: i32,
    ) -> Result<Option<RecordingId>, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::FindLastMatchingRecordingRequest(FindLastMatchingRecordingRequest {
                control_session_id,
                correlation_id,
                min_recording_id: min_recording_id.get(),
                session_id,
                stream_id,
                channel: channel_fragment.to_string(),
            })
        })
        .map(|response| {
            (response.relevant_id != NULL_VALUE).then_some(RecordingId::new(response.relevant_id))
        })
    }

    /// Up to `count` active recording subscriptions from `pseudo_index` on whose channel
    /// contains `channel_fragment` (and whose stream id is `stream_id` when `apply_stream_id`).
    ///
    /// # Errors
    /// As [`ArchiveClient::list_recordings`].
    pub fn list_recording_subscriptions(
        &mut self,
        pseudo_index: i32,
        count: i32,
        channel_fragment: &str,
        stream_id: i32,
        apply_stream_id: bool,
    ) -> Result<Vec<RecordingSubscription>, ClientError> {
        if count <= 0 {
            return Ok(Vec::new());
        }
        let listed = self.list(
            count as usize,
            ListKind::Subscriptions,
            |session, correlation| {
                Message::ListRecordingSubscriptionsRequest(ListRecordingSubscriptionsRequest {
                    control_session_id: session,
                    correlation_id: correlation,
                    pseudo_index,
                    subscription_count: count,
                    apply_stream_id,
                    stream_id,
                    channel: channel_fragment.to_string(),
                })
            },
        )?;
        Ok(listed
            .into_iter()
            .filter_map(|incoming| match incoming {
                Incoming::Subscription(descriptor) => Some(descriptor.into()),
                _ => None,
            })
            .collect())
    }

    /// The recorded position of an active recording; `None` if it is not active.
    ///
    /// # Errors
    /// As any request.
    pub fn recording_position(
        &mut self,
        recording_id: RecordingId,
    ) -> Result<Option<i64>, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::RecordingPositionRequest(RecordingPositionRequest {
                control_session_id,
                correlation_id,
                recording_id: recording_id.get(),
            })
        })
        .map(|response| (response.relevant_id != NULL_VALUE).then_some(response.relevant_id))
    }

    /// The start position of a recording.
    ///
    /// # Errors
    /// As any request.
    pub fn start_position(&mut self, recording_id: RecordingId) -> Result<i64, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::StartPositionRequest(StartPositionRequest {
                control_session_id,
                correlation_id,
                recording_id: recording_id.get(),
            })
        })
        .map(|response| response.relevant_id)
    }

    /// The stop position of a recording; `None` while it is active.
    ///
    /// # Errors
    /// As any request.
    pub fn stop_position(&mut self, recording_id: RecordingId) -> Result<Option<i64>, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::StopPositionRequest(StopPositionRequest {
                control_session_id,
                correlation_id,
                recording_id: recording_id.get(),
            })
        })
        .map(|response| (response.relevant_id != NULL_VALUE).then_some(response.relevant_id))
    }

    /// The recorded position if the recording is active, else its stop position.
    ///
    /// # Errors
    /// As any request.
    pub fn max_recorded_position(&mut self, recording_id: RecordingId) -> Result<i64, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::MaxRecordedPositionRequest(MaxRecordedPositionRequest {
                control_session_id,
                correlation_id,
                recording_id: recording_id.get(),
            })
        })
        .map(|response| response.relevant_id)
    }

    /// Replays a recording to `channel` and `stream_id` from `position` (Aeron's -1: the
    /// recording's start) for `length` bytes ([`REPLAY_FOLLOW`](crate::REPLAY_FOLLOW) or -1: follow
    /// a live recording). Returns the replay session id; its low 32 bits are the session id of
    /// the replay's image ([`ReplayId::image_session_id`]), and its positions are the recording's.
    ///
    /// # Errors
    /// As any request.
    pub fn replay(
        &mut self,
        recording_id: RecordingId,
        position: i64,
        length: i64,
        channel: &str,
        stream_id: i32,
    ) -> Result<ReplayId, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::ReplayRequest(ReplayRequest {
                control_session_id,
                correlation_id,
                recording_id: recording_id.get(),
                position,
                length,
                replay_stream_id: stream_id,
                file_io_max_length: NULL_VALUE as i32,
                replay_token: NULL_VALUE,
                replay_channel: channel.to_string(),
            })
        })
        .map(|response| ReplayId::new(response.relevant_id))
    }

    /// A replay that never passes the value of the counter `limit_counter_id`
    /// (`BoundedReplayRequest`); otherwise as [`ArchiveClient::replay`].
    ///
    /// # Errors
    /// As any request.
    pub fn bounded_replay(
        &mut self,
        recording_id: RecordingId,
        position: i64,
        length: i64,
        limit_counter_id: i32,
        channel: &str,
        stream_id: i32,
    ) -> Result<ReplayId, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::BoundedReplayRequest(BoundedReplayRequest {
                control_session_id,
                correlation_id,
                recording_id: recording_id.get(),
                position,
                length,
                limit_counter_id,
                replay_stream_id: stream_id,
                file_io_max_length: NULL_VALUE as i32,
                replay_token: NULL_VALUE,
                replay_channel: channel.to_string(),
            })
        })
        .map(|response| ReplayId::new(response.relevant_id))
    }

    /// Stops a replay session.
    ///
    /// # Errors
    /// As any request (`UNKNOWN_REPLAY`).
    pub fn stop_replay(&mut self, replay_session_id: ReplayId) -> Result<(), ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            Message::StopReplayRequest(StopReplayRequest {
                control_session_id,
                correlation_id,
                replay_session_id: replay_session_id.get(),
            })
        })
        .map(drop)
    }

    /// Stops every replay of `recording_id`, or of every recording for `None`.
    ///
    /// # Errors
    /// As any request.
    pub fn stop_all_replays(
        &mut self,
        recording_id: Option<RecordingId>,
    ) -> Result<(), ClientError> {
        let recording_id = recording_id.map_or(NULL_VALUE, RecordingId::get);
        self.request_message(|control_session_id, correlation_id| {
            Message::StopAllReplaysRequest(StopAllReplaysRequest {
                control_session_id,
                correlation_id,
                recording_id,
            })
        })
        .map(drop)
    }

    /// Closes the session (`CloseSessionRequest`) and the control streams.
    ///
    /// # Errors
    /// The close request could not be sent (the session ends anyway when the archive sees the
    /// streams go).
    pub fn close(mut self) -> Result<(), ClientError> {
        self.closed = true;
        if self.disconnected.is_some() {
            return Ok(());
        }
        let control_session_id = self.control_session_id;
        self.control
            .send(&Message::CloseSessionRequest(CloseSessionRequest {
                control_session_id,
            }))
    }
}

fn recording_descriptors(listed: Vec<Incoming>) -> Vec<RecordingDescriptor> {
    listed
        .into_iter()
        .filter_map(|incoming| match incoming {
            Incoming::Descriptor(descriptor) => {
                Some(crate::types::descriptor_from_wire(descriptor))
            }
            _ => None,
        })
        .collect()
}

/// Offers a `CloseSessionRequest` a few times, without waiting long: for drops and failed
/// connects.
fn close_session(control: &mut Control, control_session_id: i64) {
    let message = Message::CloseSessionRequest(CloseSessionRequest { control_session_id });
    let mut buffer = Vec::new();
    if message.encode(&mut buffer).is_err() {
        return;
    }
    let mut idle = BackoffIdle::new();
    for _ in 0..CLOSE_ATTEMPTS {
        match control.publication.offer(&buffer) {
            Ok(_) => return,
            Err(error) if error.is_retryable() => idle.idle(0),
            Err(_) => return,
        }
    }
}

impl Drop for ArchiveClient {
    fn drop(&mut self) {
        if !self.closed && self.disconnected.is_none() {
            close_session(&mut self.control, self.control_session_id);
        }
    }
}
