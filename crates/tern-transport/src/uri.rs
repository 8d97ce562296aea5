//! A check of Aeron channel URIs before they reach Aeron (pure, no I/O), after Aeron's own rules
//! (`aeron_uri.c`: scheme and media, `key=value` parameters separated by `|`, no empty key or
//! value; `aeron_udp_channel.c`: what a UDP channel must name; the driver conductor: a spy is a
//! subscription to a UDP channel). Aeron itself gives a generic error for most of these, so the
//! message here says what is wrong and what a channel looks like.
//!
//! Host names are not resolved here: an unknown host is left to Aeron, whose message says so.

/// What a channel is used for: a spy (`aeron-spy:`) is only a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelUse {
    /// A subscription: `aeron-spy:aeron:udp?...` is allowed.
    Subscription,
    /// A publication.
    Publication,
}

const EXAMPLES: &str = "e.g. aeron:ipc or aeron:udp?endpoint=localhost:40123";

/// Check `channel` as Aeron would parse it for `usage`; `Err` says what is wrong, in words that
/// follow the channel (`invalid channel CHANNEL: ...`).
///
/// # Errors
/// The reason the channel is not one Aeron accepts.
pub fn check_channel(channel: &str, usage: ChannelUse) -> Result<(), String> {
    let (spy, uri) = match channel.strip_prefix("aeron-spy:") {
        Some(uri) => (true, uri),
        None => (false, channel),
    };
    if spy && usage == ChannelUse::Publication {
        return Err("aeron-spy: is for subscriptions (a spy reads a local publication); publish on the channel without it".into());
    }
    if channel.contains('\0') {
        return Err("it contains a NUL byte".into());
    }
    let Some(rest) = uri.strip_prefix("aeron:") else {
        return Err(format!(
            "a channel starts with aeron:ipc or aeron:udp ({EXAMPLES})"
        ));
    };
    let (media, params) = match rest.split_once('?') {
        Some((media, params)) => (media, Some(params)),
        None => (rest, None),
    };
    match (media, params) {
        ("ipc", _) if spy => {
            return Err(
                "a spy (aeron-spy:) is for UDP channels; subscribe to aeron:ipc itself".into(),
            )
        }
        ("ipc", _) => {}
        ("udp", Some(_)) => {}
        ("udp", None) => {
            return Err("a UDP channel needs parameters: aeron:udp?endpoint=HOST:PORT (or control=HOST:PORT, control-mode=manual)".into())
        }
        (other, _) => {
            return Err(format!(
                "unknown media {other:?}: a channel is aeron:ipc or aeron:udp ({EXAMPLES})"
            ))
        }
    }
    let params = parse_params(params.unwrap_or(""))?;
    if media == "udp" {
        check_udp(&params)?;
    }
    Ok(())
}

/// `key=value|key=value` as Aeron reads it (a trailing `|` is allowed), stricter in one way: a
/// key without `=` is refused (Aeron drops it silently).
fn parse_params(text: &str) -> Result<Vec<(&str, &str)>, String> {
    let text = text.strip_suffix('|').unwrap_or(text);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split('|')
        .map(|param| match param.split_once('=') {
            _ if param.is_empty() => {
                Err("an empty parameter (\"||\"): parameters are key=value separated by |".into())
            }
            Some(("", _)) => Err(format!(
                "parameter {param:?} has an empty key: parameters are key=value separated by |"
            )),
            Some((key, "")) => Err(format!(
                "parameter {key:?} has an empty value: parameters are key=value separated by |"
            )),
            Some((key, value)) => Ok((key, value)),
            None => Err(format!(
                "parameter {param:?} has no value: parameters are key=value separated by |"
            )),
        })
        .collect()
}

fn check_udp(params: &[(&str, &str)]) -> Result<(), String> {
    let get = |key: &str| {
        params
            .iter()
            .rev()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| *value)
    };
    let control_mode = get("control-mode");
    let tagged = get("tags").is_some_and(|tags| !tags.starts_with(','));
    if control_mode == Some("dynamic") && get("control").is_none() {
        return Err(
            "control-mode=dynamic needs control=HOST:PORT (the publisher's control address)".into(),
        );
    }
    if get("endpoint").is_none()
        && get("control").is_none()
        && !tagged
        && !matches!(control_mode, Some("manual" | "response"))
    {
        return Err("a UDP channel names endpoint=HOST:PORT (or control=HOST:PORT, tags, or control-mode=manual or response)".into());
    }
    for key in ["endpoint", "control"] {
        if let Some(address) = get(key) {
            check_address(key, address)?;
        }
    }
    Ok(())
}

/// `HOST:PORT` or `[IPv6]:PORT`; the port a number up to 65535 (0: any free port).
fn check_address(key: &str, address: &str) -> Result<(), String> {
    let port = match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.ends_with(':') => port,
        _ => {
            return Err(format!(
                "{key}={address}: expected HOST:PORT, e.g. localhost:40123"
            ))
        }
    };
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "{key}={address}: port {port:?} is not a number from 0 to 65535"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_channel, ChannelUse};

    fn problem(channel: &str, usage: ChannelUse) -> String {
        check_channel(channel, usage).expect_err(channel)
    }

    #[test]
    fn channels_aeron_accepts_pass() {
        for channel in [
            "aeron:ipc",
            "aeron:ipc?term-length=64k",
            "aeron:ipc?",
            "aeron:udp?endpoint=localhost:40123",
            "aeron:udp?endpoint=localhost:0|session-id=7",
            "aeron:udp?endpoint=localhost:0|",
            "aeron:udp?endpoint=[::1]:40123",
            "aeron:udp?control=localhost:8010|control-mode=dynamic",
            "aeron:udp?control-mode=manual",
            "aeron:udp?control-mode=response|control=localhost:8011",
            "aeron:udp?tags=1,2",
            "aeron:udp?endpoint=224.0.1.1:40456|interface=localhost|ttl=0",
        ] {
            assert_eq!(
                check_channel(channel, ChannelUse::Publication),
                Ok(()),
                "{channel}"
            );
            assert_eq!(
                check_channel(channel, ChannelUse::Subscription),
                Ok(()),
                "{channel}"
            );
        }
        assert_eq!(
            check_channel(
                "aeron-spy:aeron:udp?endpoint=localhost:40123",
                ChannelUse::Subscription
            ),
            Ok(())
        );
    }

    #[test]
    fn channels_aeron_refuses_are_named_with_the_reason() {
        use ChannelUse::{Publication, Subscription};
        assert!(problem("aeron:bogus", Subscription).contains("unknown media \"bogus\""));
        assert!(problem("udp://x", Subscription).contains("starts with aeron:ipc or aeron:udp"));
        assert!(problem("aeron:udp", Subscription).contains("needs parameters"));
        assert!(problem("aeron:udp?interface=localhost", Subscription).contains("names endpoint"));
        assert!(problem("aeron:udp?control-mode=dynamic", Publication).contains("needs control"));
        assert!(problem("aeron:udp?endpoint=localhost", Subscription).contains("HOST:PORT"));
        assert!(problem("aeron:udp?endpoint=localhost:99999", Subscription).contains("0 to 65535"));
        assert!(
            problem("aeron:udp?endpoint=localhost:1||ttl=1", Subscription)
                .contains("empty parameter")
        );
        assert!(problem("aeron:ipc?=3", Subscription).contains("empty key"));
        assert!(problem("aeron:ipc?term-length=", Subscription).contains("empty value"));
        assert!(problem("aeron:ipc?bogus", Subscription).contains("no value"));
        assert!(problem("aeron-spy:aeron:ipc", Subscription).contains("for UDP channels"));
        assert!(
            problem("aeron-spy:aeron:udp?endpoint=localhost:1", Publication)
                .contains("for subscriptions")
        );
    }
}
