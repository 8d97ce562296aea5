//! tern's cluster: a deterministic service replicated with Raft (tikv's `raft` crate, sans
//! I/O), its log on tern's segment files, client sessions, timers and snapshots.
//!
//! Where to look: [`node`] (one member: consensus, ingress, the duty cycle's work), [`service`]
//! (the [`ClusteredService`] trait and the container that applies the log), [`command`] (what a
//! log entry carries), [`log`] (the log's files), [`state`] (term, vote, snapshot index),
//! [`snapshot`] (snapshot files), [`storage`] (`raft::Storage` over them), [`wire`] (consensus
//! messages), [`protocol`] (what clients send and get), [`agent`] (the node over Aeron),
//! [`responses`] (the agent's publications to clients), [`egress`] (every node's egress
//! recording), [`catchup`] (a client's catch-up from it), [`client`] (a client over Aeron),
//! [`kv`] (the example service), [`sim`] (the deterministic simulation).

pub mod agent;
mod bytes;
pub mod catchup;
pub mod client;
pub mod command;
pub mod egress;
pub mod error;
pub mod kv;
pub mod log;
pub mod node;
pub mod protocol;
pub mod responses;
pub mod service;
pub mod sim;
pub mod snapshot;
pub mod state;
pub mod storage;
pub mod wire;

pub use command::CloseReason;
pub use error::{ClusterError, Result};
pub use kv::KvService;
pub use log::LogConfig;
pub use node::{
    Action, ConsensusNode, Ingress, IngressReply, NodeConfig, NodeStatus, Now, PeerCounts,
};
pub use service::{
    ClientSession, Cluster, ClusteredService, Egress, OfferError, Output, Role, SHARED_SESSION_ID,
};
