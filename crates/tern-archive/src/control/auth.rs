//! Who may open a control session: no check, or one of a set of credentials, optionally asked
//! for with a challenge (Aeron's Challenge / ChallengeResponse exchange).

/// What an authenticator decided about a connecting client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The client may use the archive.
    Accept,
    /// Send the client this challenge; its response decides.
    Challenge(Vec<u8>),
    /// The client may not connect.
    Reject,
}

/// The archive's authenticator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Authenticator {
    /// Anyone may connect (Aeron's default).
    #[default]
    None,
    /// A client must present one of `accepted` (as the `AuthConnect` credentials, or in
    /// response to `challenge` when it connected without credentials and a challenge is set).
    Credentials {
        /// The credentials that are let in (compared byte for byte, in constant time).
        accepted: Vec<Vec<u8>>,
        /// Sent to a client that connects without credentials, if set; otherwise such a
        /// client is refused.
        challenge: Option<Vec<u8>>,
    },
}

fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

impl Authenticator {
    fn accepts(accepted: &[Vec<u8>], credentials: &[u8]) -> bool {
        // Every candidate is compared, so the time taken does not say which one was close.
        accepted.iter().fold(false, |found, candidate| {
            equal_in_constant_time(candidate, credentials) | found
        })
    }

    /// Decide on a client that connected with `credentials` (empty: none).
    pub fn on_connect(&self, credentials: &[u8]) -> Decision {
        match self {
            Authenticator::None => Decision::Accept,
            Authenticator::Credentials {
                accepted,
                challenge,
            } => {
                if !credentials.is_empty() && Self::accepts(accepted, credentials) {
                    Decision::Accept
                } else if credentials.is_empty() {
                    match challenge {
                        Some(challenge) => Decision::Challenge(challenge.clone()),
                        None => Decision::Reject,
                    }
                } else {
                    Decision::Reject
                }
            }
        }
    }

    /// Decide on a challenged client's response.
    pub fn on_challenge_response(&self, credentials: &[u8]) -> Decision {
        match self {
            Authenticator::None => Decision::Accept,
            Authenticator::Credentials { accepted, .. } => {
                if !credentials.is_empty() && Self::accepts(accepted, credentials) {
                    Decision::Accept
                } else {
                    Decision::Reject
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(challenge: Option<&str>) -> Authenticator {
        Authenticator::Credentials {
            accepted: vec![b"alice:secret".to_vec(), b"bob:hunter2".to_vec()],
            challenge: challenge.map(|c| c.as_bytes().to_vec()),
        }
    }

    #[test]
    fn no_authenticator_lets_everyone_in() {
        assert_eq!(Authenticator::None.on_connect(b""), Decision::Accept);
        assert_eq!(Authenticator::None.on_connect(b"x"), Decision::Accept);
    }

    #[test]
    fn credentials_must_match_one_exactly() {
        let auth = credentials(None);
        assert_eq!(auth.on_connect(b"alice:secret"), Decision::Accept);
        assert_eq!(auth.on_connect(b"bob:hunter2"), Decision::Accept);
        assert_eq!(auth.on_connect(b"alice:secreT"), Decision::Reject);
        assert_eq!(auth.on_connect(b"alice:secret "), Decision::Reject);
        assert_eq!(auth.on_connect(b""), Decision::Reject);
    }

    #[test]
    fn a_client_without_credentials_is_challenged_when_a_challenge_is_set() {
        let auth = credentials(Some("who are you?"));
        assert_eq!(
            auth.on_connect(b""),
            Decision::Challenge(b"who are you?".to_vec())
        );
        assert_eq!(auth.on_challenge_response(b"bob:hunter2"), Decision::Accept);
        assert_eq!(auth.on_challenge_response(b"bob:hunter"), Decision::Reject);
        assert_eq!(auth.on_challenge_response(b""), Decision::Reject);
        // Wrong credentials up front are not given a second chance.
        assert_eq!(auth.on_connect(b"mallory"), Decision::Reject);
    }
}
