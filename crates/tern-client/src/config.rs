//! How to reach an archive: channels, streams, credentials, timeouts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Aeron's default control request channel of a remote archive.
pub const DEFAULT_CONTROL_REQUEST_CHANNEL: &str = "aeron:udp?endpoint=localhost:8010";
/// Aeron's default control request stream id.
pub const DEFAULT_CONTROL_REQUEST_STREAM_ID: i32 = 10;
/// Aeron's default control response channel: UDP on a port the driver picks.
pub const DEFAULT_CONTROL_RESPONSE_CHANNEL: &str = "aeron:udp?endpoint=localhost:0";
/// Aeron's default control response stream id.
pub const DEFAULT_CONTROL_RESPONSE_STREAM_ID: i32 = 20;
/// Aeron's local (same media driver) control channel, for requests and responses alike.
pub const LOCAL_CONTROL_CHANNEL: &str = "aeron:ipc?term-length=64k";
/// Aeron's default time to wait for each answer of the archive.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the client may stay silent before a blocking call sends a keep-alive.
pub const DEFAULT_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Term length of the control channels unless the channel sets one (Aeron's 64 KiB).
pub const CONTROL_TERM_LENGTH: &str = "64k";
/// MTU of the control channels unless the channel sets one (Aeron's default MTU).
pub const CONTROL_MTU_LENGTH: &str = "1408";

/// Answers an archive's authentication challenge: gets the challenge's bytes, returns the
/// credentials to send back.
pub type ChallengeHandler = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// Settings of an [`ArchiveClient`](crate::ArchiveClient) connection, with Aeron's defaults.
///
/// As Aeron's archive client does, the client takes a session id of its own from the media
/// driver and puts it (`session-id=`) on both control channels, and adds `term-length=64k`,
/// `mtu=1408` and `sparse=true` to them unless they set those; so several clients can share one
/// response channel and stream (the IPC default) without seeing each other's responses.
#[derive(Clone)]
pub struct ArchiveClientConfig {
    /// The media driver's directory.
    pub aeron_dir: String,
    /// Channel the archive takes requests on.
    pub control_request_channel: String,
    /// Stream id of the request channel.
    pub control_request_stream_id: i32,
    /// Channel the archive answers on. A UDP endpoint with port 0 is resolved to the port the
    /// driver bound before it is sent to the archive.
    pub control_response_channel: String,
    /// Stream id of the response channel.
    pub control_response_stream_id: i32,
    /// Credentials sent with the connect request (`AuthConnectRequest.encodedCredentials`);
    /// `None` sends none.
    pub credentials: Option<Vec<u8>>,
    /// Answers a challenge from the archive's authenticator; without one a challenge fails the
    /// connect.
    pub challenge_handler: Option<ChallengeHandler>,
    /// How long to wait for each answer (and for the whole connect).
    pub message_timeout: Duration,
    /// A blocking call that waits sends a keep-alive when the client has sent nothing for this
    /// long (Aeron's archive closes sessions it considers idle).
    pub keep_alive_interval: Duration,
    /// Name sent to the archive in the connect request's client info.
    pub client_name: String,
}

impl ArchiveClientConfig {
    /// Aeron's defaults for a remote archive: requests to UDP `localhost:8010` stream 10,
    /// responses on UDP `localhost:0` (a port the driver picks) stream 20.
    pub fn new(aeron_dir: impl Into<String>) -> Self {
        Self {
            aeron_dir: aeron_dir.into(),
            control_request_channel: DEFAULT_CONTROL_REQUEST_CHANNEL.to_string(),
            control_request_stream_id: DEFAULT_CONTROL_REQUEST_STREAM_ID,
            control_response_channel: DEFAULT_CONTROL_RESPONSE_CHANNEL.to_string(),
            control_response_stream_id: DEFAULT_CONTROL_RESPONSE_STREAM_ID,
            credentials: None,
            challenge_handler: None,
            message_timeout: DEFAULT_MESSAGE_TIMEOUT,
            keep_alive_interval: DEFAULT_KEEP_ALIVE_INTERVAL,
            client_name: String::new(),
        }
    }

    /// Aeron's local control channel, for an archive on the same media driver: requests on
    /// `aeron:ipc?term-length=64k` stream 10, responses on `aeron:ipc?term-length=64k` stream 20.
    pub fn local(aeron_dir: impl Into<String>) -> Self {
        Self {
            control_request_channel: LOCAL_CONTROL_CHANNEL.to_string(),
            control_response_channel: LOCAL_CONTROL_CHANNEL.to_string(),
            ..Self::new(aeron_dir)
        }
    }

    /// Sets the request channel and stream.
    pub fn with_request(mut self, channel: impl Into<String>, stream_id: i32) -> Self {
        self.control_request_channel = channel.into();
        self.control_request_stream_id = stream_id;
        self
    }

    /// Sets the response channel and stream.
    pub fn with_response(mut self, channel: impl Into<String>, stream_id: i32) -> Self {
        self.control_response_channel = channel.into();
        self.control_response_stream_id = stream_id;
        self
    }

    /// Sets the credentials sent on connect.
    pub fn with_credentials(mut self, credentials: impl Into<Vec<u8>>) -> Self {
        self.credentials = Some(credentials.into());
        self
    }

    /// Sets what answers a challenge.
    pub fn with_challenge_handler(
        mut self,
        handler: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
    ) -> Self {
        self.challenge_handler = Some(Arc::new(handler));
        self
    }

    /// Sets the time to wait for each answer.
    pub fn with_message_timeout(mut self, timeout: Duration) -> Self {
        self.message_timeout = timeout;
        self
    }

    /// Sets the client name sent on connect.
    pub fn with_client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = name.into();
        self
    }
}

impl fmt::Debug for ArchiveClientConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ArchiveClientConfig")
            .field("aeron_dir", &self.aeron_dir)
            .field("control_request_channel", &self.control_request_channel)
            .field("control_request_stream_id", &self.control_request_stream_id)
            .field("control_response_channel", &self.control_response_channel)
            .field(
                "control_response_stream_id",
                &self.control_response_stream_id,
            )
            // Never print credentials.
            .field(
                "credentials",
                &self.credentials.as_ref().map(|bytes| bytes.len()),
            )
            .field("challenge_handler", &self.challenge_handler.is_some())
            .field("message_timeout", &self.message_timeout)
            .field("keep_alive_interval", &self.keep_alive_interval)
            .field("client_name", &self.client_name)
            .finish()
    }
}
