//! Byte-exact encodings worked out by hand from `aeron-archive-codecs.xml` (schema 101,
//! version 14, little-endian). Each message is checked both ways: the encoder writes exactly
//! these bytes and the decoder reads them back into the same message.

use tern_protocol::*;

fn check(message: Message, expected: &[u8]) {
    let mut buf = Vec::new();
    let written = message.encode(&mut buf).expect("encodes");
    assert_eq!(buf, expected, "{} encoding", message.name());
    assert_eq!(written, expected.len());
    assert_eq!(
        Message::decode_prefix(expected),
        Ok((message, expected.len()))
    );
}

#[test]
fn recording_position_request_golden_bytes() {
    let message = RecordingPositionRequest {
        control_session_id: 1,
        correlation_id: 2,
        recording_id: 3,
    };
    #[rustfmt::skip]
    let expected = [
        // messageHeader
        0x18, 0x00,             // blockLength = 24 (three int64)
        0x0C, 0x00,             // templateId = 12 (RecordingPositionRequest)
        0x65, 0x00,             // schemaId = 101
        0x0E, 0x00,             // version = 14
        // root block
        0x01, 0, 0, 0, 0, 0, 0, 0, // offset 0: controlSessionId = 1 (int64)
        0x02, 0, 0, 0, 0, 0, 0, 0, // offset 8: correlationId = 2 (int64)
        0x03, 0, 0, 0, 0, 0, 0, 0, // offset 16: recordingId = 3 (int64)
    ];
    check(message.into(), &expected);
}

#[test]
fn control_response_error_golden_bytes() {
    let message = ControlResponse {
        control_session_id: 0x0102_0304_0506_0708,
        correlation_id: -1,
        relevant_id: 5,
        code: ControlResponseCode::Error,
        version: Some(ARCHIVE_PROTOCOL_VERSION),
        error_message: "no".to_string(),
    };
    #[rustfmt::skip]
    let expected = [
        // messageHeader
        0x20, 0x00,             // blockLength = 32
        0x01, 0x00,             // templateId = 1 (ControlResponse)
        0x65, 0x00,             // schemaId = 101
        0x0E, 0x00,             // version = 14
        // root block
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // offset 0: controlSessionId (int64 LE)
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // offset 8: correlationId = -1
        0x05, 0, 0, 0, 0, 0, 0, 0,                      // offset 16: relevantId = 5
        0x01, 0x00, 0x00, 0x00,                         // offset 24: code = ERROR (int32 enum)
        0x00, 0x0C, 0x01, 0x00,                         // offset 28: version = 1.12.0 = 0x010C00
        // var data
        0x02, 0x00, 0x00, 0x00, // errorMessage length = 2 (uint32)
        b'n', b'o',             // errorMessage
    ];
    check(message.into(), &expected);
}

#[test]
fn start_recording_request2_golden_bytes() {
    let message = StartRecordingRequest2 {
        control_session_id: 7,
        correlation_id: 9,
        stream_id: 1001,
        source_location: SourceLocation::Remote,
        auto_stop: true,
        channel: "aeron:ipc".to_string(),
    };
    #[rustfmt::skip]
    let expected = [
        // messageHeader
        0x1C, 0x00,             // blockLength = 28
        0x3F, 0x00,             // templateId = 63 (StartRecordingRequest2)
        0x65, 0x00,             // schemaId = 101
        0x0E, 0x00,             // version = 14
        // root block
        0x07, 0, 0, 0, 0, 0, 0, 0, // offset 0: controlSessionId = 7
        0x09, 0, 0, 0, 0, 0, 0, 0, // offset 8: correlationId = 9
        0xE9, 0x03, 0x00, 0x00,    // offset 16: streamId = 1001 (0x3E9)
        0x01, 0x00, 0x00, 0x00,    // offset 20: sourceLocation = REMOTE
        0x01, 0x00, 0x00, 0x00,    // offset 24: autoStop = TRUE (BooleanType)
        // var data
        0x09, 0x00, 0x00, 0x00,    // channel length = 9
        b'a', b'e', b'r', b'o', b'n', b':', b'i', b'p', b'c',
    ];
    check(message.into(), &expected);
}

#[test]
fn auth_connect_request_golden_bytes() {
    let message = AuthConnectRequest {
        correlation_id: 42,
        response_stream_id: 20,
        version: Some(ARCHIVE_PROTOCOL_VERSION),
        response_channel: "aeron:ipc".to_string(),
        encoded_credentials: vec![0xDE, 0xAD],
        client_info: String::new(),
    };
    #[rustfmt::skip]
    let expected = [
        // messageHeader
        0x10, 0x00,             // blockLength = 16
        0x3A, 0x00,             // templateId = 58 (AuthConnectRequest)
        0x65, 0x00,             // schemaId = 101
        0x0E, 0x00,             // version = 14
        // root block
        0x2A, 0, 0, 0, 0, 0, 0, 0, // offset 0: correlationId = 42
        0x14, 0x00, 0x00, 0x00,    // offset 8: responseStreamId = 20
        0x00, 0x0C, 0x01, 0x00,    // offset 12: version = 1.12.0 (version_t)
        // var data, in schema order
        0x09, 0x00, 0x00, 0x00,    // responseChannel length = 9
        b'a', b'e', b'r', b'o', b'n', b':', b'i', b'p', b'c',
        0x02, 0x00, 0x00, 0x00,    // encodedCredentials length = 2 (varDataEncoding)
        0xDE, 0xAD,
        0x00, 0x00, 0x00, 0x00,    // clientInfo length = 0 (sinceVersion 12)
    ];
    check(message.into(), &expected);
}

#[test]
fn replay_request_golden_bytes() {
    let message = ReplayRequest {
        control_session_id: 1,
        correlation_id: 2,
        recording_id: 3,
        position: 0,
        length: i64::MAX,
        replay_stream_id: 2,
        file_io_max_length: -1,
        replay_token: -1,
        replay_channel: "aeron:ipc".to_string(),
    };
    #[rustfmt::skip]
    let expected = [
        // messageHeader
        0x38, 0x00,             // blockLength = 56
        0x06, 0x00,             // templateId = 6 (ReplayRequest)
        0x65, 0x00,             // schemaId = 101
        0x0E, 0x00,             // version = 14
        // root block
        0x01, 0, 0, 0, 0, 0, 0, 0,                      // offset 0: controlSessionId = 1
        0x02, 0, 0, 0, 0, 0, 0, 0,                      // offset 8: correlationId = 2
        0x03, 0, 0, 0, 0, 0, 0, 0,                      // offset 16: recordingId = 3
        0x00, 0, 0, 0, 0, 0, 0, 0,                      // offset 24: position = 0
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, // offset 32: length = i64::MAX (follow)
        0x02, 0x00, 0x00, 0x00,                         // offset 40: replayStreamId = 2
        0xFF, 0xFF, 0xFF, 0xFF,                         // offset 44: fileIoMaxLength = -1 (v7)
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // offset 48: replayToken = -1 (v10)
        // var data
        0x09, 0x00, 0x00, 0x00,                         // replayChannel length = 9
        b'a', b'e', b'r', b'o', b'n', b':', b'i', b'p', b'c',
    ];
    check(message.into(), &expected);
}
