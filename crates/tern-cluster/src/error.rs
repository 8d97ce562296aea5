//! The cluster's errors.

use std::path::PathBuf;

/// What went wrong in the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A file of the log, the state or a snapshot could not be read or written.
    #[error(transparent)]
    Store(#[from] tern_store::StoreError),
    /// The log's frames do not form one log (a corrupt entry found on restart).
    #[error("cluster log damaged at position {position}: {reason}")]
    CorruptLog {
        /// Stream position of the frame.
        position: i64,
        /// What is wrong.
        reason: String,
    },
    /// A committed entry that is no batch (every node finds the same).
    #[error("cluster log entry {index} cannot be applied: {reason}")]
    BadEntry {
        /// The entry's index.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier write or sync of the log failed: the node takes no more entries.
    #[error("the cluster log failed earlier and takes no more entries")]
    LogBroken,
    /// An earlier write or sync of the egress recording failed: it takes no more messages.
    #[error("the egress recording failed earlier and takes no more messages")]
    EgressBroken,
    /// Entries that do not follow the log.
    #[error("entry {index} does not follow the log (entries {first}..={last})")]
    Gap {
        /// The first new entry's index.
        index: u64,
        /// The log's first index.
        first: u64,
        /// The log's last index.
        last: u64,
    },
    /// An entry longer than a log frame holds.
    #[error("a log entry of {length} bytes is longer than the {max} a log frame holds")]
    EntryTooLong {
        /// Its length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The node's state file or a snapshot is damaged or missing.
    #[error("{}: {reason}", path.display())]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The consensus module refused something.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// A consensus message that cannot be taken (it does not decode, its chunks do not add up,
    /// it is not from another member or not for this one): it is dropped, the node goes on.
    #[error("peer message refused: {0}")]
    Peer(String),
    /// A consensus message of another cluster (one on the same ports): dropped, not applied.
    #[error("a consensus message of cluster {cluster_id} reached a member of cluster {expected}")]
    OtherCluster {
        /// The cluster id the message carries.
        cluster_id: u64,
        /// This node's cluster id.
        expected: u64,
    },
    /// A configuration that cannot work.
    #[error("cluster config: {0}")]
    Config(String),
    /// Aeron refused or did not finish something: a channel, a publication, a subscription.
    #[error("transport: {0}")]
    Transport(#[from] tern_transport::TransportError),
    /// What a client of the cluster could not do: open a session (refused, or no member
    /// answered), have a message taken, get a reply in time.
    #[error("cluster client: {0}")]
    Client(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::ClusterError;

    #[test]
    fn transport_and_client_errors_say_what_they_are() {
        let transport = ClusterError::from(tern_transport::TransportError::TimedOut(
            "the response channel's port was not bound in 5 s".into(),
        ));
        assert_eq!(
            transport.to_string(),
            "transport: timed out: the response channel's port was not bound in 5 s"
        );
        let client = ClusterError::Client("no reply in 500 ms".into());
        assert_eq!(client.to_string(), "cluster client: no reply in 500 ms");
    }
}
