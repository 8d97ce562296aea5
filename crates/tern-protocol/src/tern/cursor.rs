//! Durable named cursors: a (recording, position) pair kept by the archive under a name, so a
//! consumer can resume a replay where it left off.

/// Longest cursor name, in bytes. Names are printable US-ASCII (no spaces), at least one byte.
pub const CURSOR_NAME_MAX_LENGTH: usize = 128;

/// Whether `name` is a valid cursor name: 1..=[`CURSOR_NAME_MAX_LENGTH`] bytes of printable
/// US-ASCII, no spaces (the rule tern's archive applies, `tern_store::check_cursor_name`).
///
/// The codec carries any ASCII text; a server answers a request with an invalid name (in
/// [`SetCursorRequest`]) with an ERROR `ControlResponse`.
pub fn cursor_name_is_valid(name: &str) -> bool {
    (1..=CURSOR_NAME_MAX_LENGTH).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic())
}

sbe_message! {
    /// Client → archive: create or move the cursor `name` to a position of a recording.
    /// Answered with an OK `ControlResponse`.
    SetCursorRequest {
        schema: tern,
        template_id: 3,
        block_length: 32,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording the cursor points into.
            recording_id: i64 = "recordingId" @ 16,
            /// The position in that recording.
            position: i64 = "position" @ 24,
        }
        var_data {
            /// The cursor's name (1..=[`CURSOR_NAME_MAX_LENGTH`] ASCII bytes).
            name: String = "name",
        }
    }
}

sbe_message! {
    /// Client → archive: read the cursor `name`. Answered with a [`CursorDescriptor`], or an
    /// ERROR `ControlResponse` if there is no such cursor.
    GetCursorRequest {
        schema: tern,
        template_id: 4,
        block_length: 16,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
        }
        var_data {
            /// The cursor's name.
            name: String = "name",
        }
    }
}

sbe_message! {
    /// Archive → client: one cursor, in answer to a [`GetCursorRequest`] or
    /// [`ListCursorsRequest`].
    CursorDescriptor {
        schema: tern,
        template_id: 5,
        block_length: 40,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// The correlation id of the request this answers.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording the cursor points into.
            recording_id: i64 = "recordingId" @ 16,
            /// The position in that recording.
            position: i64 = "position" @ 24,
            /// When the cursor was last set (epoch ns).
            updated_timestamp: i64 = "updatedTimestamp" @ 32,
        }
        var_data {
            /// The cursor's name.
            name: String = "name",
        }
    }
}

sbe_message! {
    /// Client → archive: delete the cursor `name`. Answered with an OK `ControlResponse` whose
    /// `relevant_id` is 1 if the cursor existed, 0 if not.
    DeleteCursorRequest {
        schema: tern,
        template_id: 6,
        block_length: 16,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
        }
        var_data {
            /// The cursor's name.
            name: String = "name",
        }
    }
}

sbe_message! {
    /// Client → archive: list the cursors whose names start with `name_prefix`. Answered with a
    /// [`CursorDescriptor`] per cursor, then a `ControlResponse` with code `RECORDING_UNKNOWN`
    /// as the end marker (as Aeron's listings end).
    ListCursorsRequest {
        schema: tern,
        template_id: 7,
        block_length: 16,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the descriptors and the end marker with this request.
            correlation_id: i64 = "correlationId" @ 8,
        }
        var_data {
            /// Prefix the names must start with; "" lists every cursor.
            name_prefix: String = "namePrefix",
        }
    }
}
