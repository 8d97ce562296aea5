//! Errors of the transport layer.

use rusteron_client::AeronCError;

/// An error from the Aeron client or media driver, with what tern was doing when it happened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The Aeron C client returned an error.
    #[error("{context}: {source}")]
    Aeron {
        /// What tern asked Aeron to do.
        context: String,
        /// The error the C library returned.
        #[source]
        source: AeronCError,
    },
    /// The media driver could not be started.
    #[error("media driver: {0}")]
    Driver(String),
    /// A value passed to the transport was not acceptable (a channel with a NUL byte, say).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The publication was closed, or reached its maximum position, and cannot be offered to again.
    #[error("publication closed or at its maximum position ({0})")]
    PublicationClosed(String),
    /// A resource did not become ready in time.
    #[error("timed out: {0}")]
    TimedOut(String),
}

pub(crate) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, TransportError>;
}

impl<T> Context<T> for Result<T, AeronCError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, TransportError> {
        self.map_err(|source| TransportError::Aeron {
            context: what(),
            source,
        })
    }
}
