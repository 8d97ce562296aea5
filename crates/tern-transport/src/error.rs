//! Errors of the transport layer.

use rusteron_client::{AeronCError, AeronErrorType};

/// An error from the Aeron client or media driver, with what tern was doing when it happened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The Aeron C client returned an error.
    #[error("{context}: {message}")]
    Aeron {
        /// What tern asked Aeron to do.
        context: String,
        /// Aeron's own description of the error (its `aeron_errmsg`, read on the thread and at
        /// the moment the error happened, flattened to one line), or the error code's name when
        /// Aeron left none.
        message: String,
        /// The error the C library returned (not a `source`: `message` already says what it
        /// says, and its own text spans several lines).
        error: AeronCError,
    },
    /// The media driver could not be started.
    #[error("media driver: {0}")]
    Driver(String),
    /// A value passed to the transport was not acceptable (a channel with a NUL byte, say).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A channel URI that Aeron would refuse (checked before it is handed to Aeron).
    #[error("invalid channel {channel}: {problem}")]
    InvalidChannel {
        /// The channel as given.
        channel: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The publication was closed, or reached its maximum position, and cannot be offered to again.
    #[error("publication closed or at its maximum position ({0})")]
    PublicationClosed(String),
    /// A resource did not become ready in time.
    #[error("timed out: {0}")]
    TimedOut(String),
}

/// Aeron's error text, one line: `aeron_errmsg` is per thread and rewritten by the next error
/// (or cleared), so it must be read where the call failed. Its form is `(code) code text\n`
/// then one `[function, file:line] message\n` per layer the error went through; the layers'
/// messages are kept, innermost first, without the source locations.
pub(crate) fn aeron_message(error: &AeronCError) -> String {
    if error.kind() == AeronErrorType::TimedOut {
        return "timed out waiting for the media driver".into();
    }
    let fallback = || format!("Aeron error {} ({:?})", error.code, error.kind());
    let raw = error.message().map_or_else(
        || rusteron_client::Aeron::errmsg().to_string(),
        str::to_string,
    );
    tracing::debug!("aeron errmsg of error {}: {raw:?}", error.code);
    flatten_errmsg(&raw).unwrap_or_else(fallback)
}

/// `(code) text\n[f, file:line] message\n...` as `message: message (code text)`, one line, the
/// layers in Aeron's order (innermost first): source locations, the `(code) text` lines (repeated
/// where the driver's error is nested in the client's; the innermost specific one is kept at the
/// end) and the client's generic "registration error" layer are left out. `None` for an empty or "no error"
/// text.
fn flatten_errmsg(raw: &str) -> Option<String> {
    let mut code_text: Option<String> = None;
    let mut parts: Vec<String> = Vec::new();
    let code_line = |line: &str| -> Option<String> {
        line.strip_prefix('(')
            .and_then(|rest| rest.split_once(") "))
            .filter(|(code, _)| code.parse::<i64>().is_ok())
            .map(|(_, text)| text.trim().to_string())
    };
    for line in raw.lines().map(str::trim).filter(|line| !line.is_empty()) {
        if line == "no error" || line.starts_with("...") {
            continue;
        }
        let message = match line.strip_prefix('[') {
            Some(rest) => rest
                .split_once("] ")
                .map_or("", |(_, message)| message.trim()),
            None => line,
        };
        // The code's text, `(code) text`: the innermost layer's that says more than "see message".
        if let Some(text) = code_line(message) {
            if !text.is_empty() && !text.starts_with("generic error") {
                code_text = Some(text);
            }
            continue;
        }
        if message.is_empty()
            || message.ends_with("registration error")
            || parts.iter().any(|part| part == message)
        {
            continue;
        }
        parts.push(message.to_string());
    }
    if parts.is_empty() {
        return code_text;
    }
    let mut text = parts.join(": ");
    if let Some(code_text) = code_text {
        if !text.contains(&code_text) {
            text.push_str(&format!(" ({code_text})"));
        }
    }
    Some(text)
}

pub(crate) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, TransportError>;
}

impl<T> Context<T> for Result<T, AeronCError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, TransportError> {
        self.map_err(|source| {
            let message = aeron_message(&source);
            TransportError::Aeron {
                context: what(),
                message,
                error: source.capture_errmsg(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::flatten_errmsg;

    #[test]
    fn aeron_error_texts_become_one_line_without_source_locations() {
        let raw = "(-1) invalid channel\n[aeron_client_conductor_async_resource_poll, aeron_client_conductor.c:3807] async_add_subscription registration error\n(-1) invalid channel\n[aeron_uri_parse, aeron_uri.c:324] invalid URI scheme or transport: aeron:bogus\n[aeron_driver_conductor_on_add_network_subscription, aeron_driver_conductor.c:5271] \n\n";
        assert_eq!(
            flatten_errmsg(raw).as_deref(),
            Some("invalid URI scheme or transport: aeron:bogus (invalid channel)")
        );
        assert_eq!(flatten_errmsg("no error"), None);
        assert_eq!(flatten_errmsg(""), None);
        assert_eq!(
            flatten_errmsg("(-11) generic error, see message\n[f, a.c:1] registration error\n(22) Invalid argument\n[g, b.c:2] (22) Invalid argument\n[h, c.c:3] port invalid: ''\n").as_deref(),
            Some("port invalid: '' (Invalid argument)")
        );
    }
}
