//! Session lifecycle: connect (with authentication), challenge, keep-alive, archive id, close.

use crate::types::SemanticVersion;

sbe_message! {
    /// Client → archive: open a control session, with credentials if the archive authenticates.
    /// Answered by a `ControlResponse` whose relevant id is the new control session id, or by a
    /// `Challenge`.
    AuthConnectRequest {
        template_id: 58,
        block_length: 16,
        since_version: 0,
        fields {
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 0,
            /// Stream id of the client's response channel.
            response_stream_id: i32 = "responseStreamId" @ 8,
            /// The client's protocol version (`None` on the wire is 0).
            version: Option<SemanticVersion> = "version" @ 12,
        }
        var_data {
            /// Channel the archive answers on.
            response_channel: String = "responseChannel",
            /// Opaque credentials for the authenticator.
            encoded_credentials: Vec<u8> = "encodedCredentials",
            /// Free text describing the client (empty from senders before version 12).
            client_info: String = "clientInfo" since 12,
        }
    }
}

sbe_message! {
    /// Archive → client: the authenticator asks for more credentials before accepting a session.
    Challenge {
        template_id: 59,
        block_length: 20,
        since_version: 0,
        fields {
            /// The control session being authenticated.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlation id of the connect request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The archive's protocol version.
            version: Option<SemanticVersion> = "version" @ 16,
        }
        var_data {
            /// Opaque challenge for the client's credentials supplier.
            encoded_challenge: Vec<u8> = "encodedChallenge",
        }
    }
}

sbe_message! {
    /// Client → archive: credentials answering a `Challenge`.
    ChallengeResponse {
        template_id: 60,
        block_length: 16,
        since_version: 0,
        fields {
            /// The control session being authenticated.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
        }
        var_data {
            /// Opaque credentials for the authenticator.
            encoded_credentials: Vec<u8> = "encodedCredentials",
        }
    }
}

sbe_message! {
    /// Client → archive: the client is alive; keeps an idle control session from timing out.
    KeepAliveRequest {
        template_id: 61,
        block_length: 16,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlation id (no response is sent).
            correlation_id: i64 = "correlationId" @ 8,
        }
        var_data {}
    }
}

sbe_message! {
    /// Client → archive: ask for the archive's id (answered in the relevant id of a
    /// `ControlResponse`).
    ArchiveIdRequest {
        template_id: 68,
        block_length: 16,
        since_version: 9,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
        }
        var_data {}
    }
}

sbe_message! {
    /// Client → archive: close the control session and free what it holds.
    CloseSessionRequest {
        template_id: 3,
        block_length: 8,
        since_version: 0,
        fields {
            /// The control session to close.
            control_session_id: i64 = "controlSessionId" @ 0,
        }
        var_data {}
    }
}
