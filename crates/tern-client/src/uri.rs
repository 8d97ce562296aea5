//! Minimal handling of Aeron channel URIs (`aeron:udp?endpoint=host:port|session-id=7`): read,
//! set and remove one parameter, keeping the others in their order.

/// An Aeron channel split into its prefix (`aeron:udp`, `aeron-spy:aeron:udp`) and its
/// parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelUri {
    prefix: String,
    params: Vec<(String, String)>,
}

impl ChannelUri {
    /// Splits `channel` at its `?` and its `|`s. A parameter without `=` keeps an empty value.
    pub(crate) fn parse(channel: &str) -> Self {
        let (prefix, query) = match channel.split_once('?') {
            Some((prefix, query)) => (prefix, query),
            None => (channel, ""),
        };
        let params = query
            .split('|')
            .filter(|param| !param.is_empty())
            .map(|param| match param.split_once('=') {
                Some((key, value)) => (key.to_string(), value.to_string()),
                None => (param.to_string(), String::new()),
            })
            .collect();
        Self {
            prefix: prefix.to_string(),
            params,
        }
    }

    /// The value of `key`, if set.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// Sets `key` to `value`, in place if it was set, else at the end.
    pub(crate) fn put(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        let value = value.into();
        match self.params.iter_mut().find(|(name, _)| name == key) {
            Some((_, old)) => *old = value,
            None => self.params.push((key.to_string(), value)),
        }
        self
    }

    /// Sets `key` to `value` unless it is set already.
    pub(crate) fn put_if_absent(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        if self.get(key).is_none() {
            self.put(key, value);
        }
        self
    }

    /// Whether the channel is IPC (`aeron:ipc`).
    pub(crate) fn is_ipc(&self) -> bool {
        self.prefix.ends_with("aeron:ipc")
    }
}

impl std::fmt::Display for ChannelUri {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.prefix)?;
        for (index, (key, value)) in self.params.iter().enumerate() {
            formatter.write_str(if index == 0 { "?" } else { "|" })?;
            formatter.write_str(key)?;
            formatter.write_str("=")?;
            formatter.write_str(value)?;
        }
        Ok(())
    }
}

/// `channel` with `key=value` set (replacing an existing value).
pub(crate) fn with_param(channel: &str, key: &str, value: impl Into<String>) -> String {
    let mut uri = ChannelUri::parse(channel);
    uri.put(key, value);
    uri.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_set_and_replaced_in_order() {
        let mut uri = ChannelUri::parse("aeron:udp?endpoint=localhost:0|mtu=1408");
        assert_eq!(uri.get("endpoint"), Some("localhost:0"));
        assert_eq!(uri.get("session-id"), None);
        uri.put("session-id", "-7").put("mtu", "8k");
        uri.put_if_absent("mtu", "1k")
            .put_if_absent("sparse", "true");
        assert_eq!(
            uri.to_string(),
            "aeron:udp?endpoint=localhost:0|mtu=8k|session-id=-7|sparse=true"
        );
        assert!(!uri.is_ipc());
    }

    #[test]
    fn a_channel_without_parameters_gains_a_question_mark() {
        assert_eq!(
            with_param("aeron:ipc", "session-id", "5"),
            "aeron:ipc?session-id=5"
        );
        assert!(ChannelUri::parse("aeron:ipc").is_ipc());
        assert!(ChannelUri::parse("aeron-spy:aeron:ipc?term-length=64k").is_ipc());
        assert_eq!(
            ChannelUri::parse("aeron:ipc?").to_string(),
            "aeron:ipc",
            "an empty query is dropped"
        );
    }
}
