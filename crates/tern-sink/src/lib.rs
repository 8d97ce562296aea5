//! tern's sinks: a recorded (or live) stream copied into a store, exactly once.
//!
//! A sink reads a recording through a replay-merge (catch up from the archive, then live),
//! turns each message into a [`SinkRecord`] (its stream position, a time, a key, the payload),
//! groups records into [`Batch`]es by count, size and age ([`Batcher`], pure), and hands each
//! batch to a [`Destination`]. A destination stores the stream position with the data, in the
//! same write or transaction, and reads it back when it opens ([`Destination::open`]); the
//! engine resumes after it. So a sink killed at any instant, or a destination that failed in the
//! middle of a write, goes on with no gap and no duplicate.
//!
//! Modules: [`record`] (records, batches), [`destination`] (the contract a store keeps),
//! [`batcher`] (when a batch is full or due), [`engine`] (the loop), [`metrics`];
//! destinations: [`file`](mod@file) (files in a directory), [`postgres`] (a PostgreSQL table, one
//! transaction per batch), [`kafka`] (a Kafka topic, one transaction per batch).

#![warn(missing_docs)]

pub mod batcher;
pub mod destination;
pub mod engine;
pub mod file;
pub mod kafka;
pub mod metrics;
pub mod postgres;
pub mod record;

pub use batcher::{BatchLimits, Batcher};
pub use destination::{Destination, Resume, SinkError};
pub use engine::{
    Backoff, EngineError, RecordingSource, SinkConfig, SinkEngine, SinkSummary, StartAt,
};
pub use file::{FileConfig, FileDestination, FileFormat};
pub use kafka::{KafkaConfig, KafkaDestination, KafkaPartitioning};
pub use metrics::SinkMetrics;
pub use postgres::{PostgresConfig, PostgresDestination};
pub use record::{Batch, SinkRecord};
