//! One struct per supported message of schema 101, grouped by family. Struct and field names
//! follow the schema (`ReplayRequest.replayStreamId` is `ReplayRequest::replay_stream_id`).

mod query;
mod recording;
mod replay;
mod response;
mod session;

pub use query::{
    FindLastMatchingRecordingRequest, ListRecordingRequest, ListRecordingSubscriptionsRequest,
    ListRecordingsForUriRequest, ListRecordingsRequest, MaxRecordedPositionRequest,
    RecordingPositionRequest, StartPositionRequest, StopPositionRequest,
};
pub use recording::{
    ExtendRecordingRequest2, PurgeRecordingRequest, StartRecordingRequest, StartRecordingRequest2,
    StopRecordingByIdentityRequest, StopRecordingRequest, StopRecordingSubscriptionRequest,
    TruncateRecordingRequest,
};
pub use replay::{BoundedReplayRequest, ReplayRequest, StopAllReplaysRequest, StopReplayRequest};
pub use response::{
    ControlResponse, RecordingDescriptor, RecordingSignalEvent, RecordingSubscriptionDescriptor,
};
pub use session::{
    ArchiveIdRequest, AuthConnectRequest, Challenge, ChallengeResponse, CloseSessionRequest,
    KeepAliveRequest,
};
