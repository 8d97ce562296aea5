//! Prometheus metrics of a running archive, and a tiny HTTP server that serves them.
//!
//! The threads update plain `prometheus-client` metrics ([`Metrics`], kept in the archive's
//! shared state): the I/O thread of each recording times its `fdatasync`s, the replayer counts
//! what it sends and how late a paced replay sends, the control conductor counts sessions,
//! requests and errors. All of them are atomics except the two histograms (a short mutex, per
//! `fdatasync` and per paced block, never per message). What every recording has reached is
//! not copied anywhere: the recorder already keeps it in atomics ([`RecordingProgress`]), and
//! the collector reads them, with the free space of the archive's file system, when a scrape
//! asks. [`MetricsExporter`] encodes all of it in the OpenMetrics text format (the encoding is
//! prometheus-client's); [`MetricsServer`] answers `GET /metrics` with it on its own thread.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The prefix of every metric name.
pub const METRICS_PREFIX: &str = "tern_archive";

/// The label of a control request counter: the request's message name.
type RequestLabel = [(&'static str, &'static str); 1];
/// The label of a control error counter: the error code sent (Aeron's `ArchiveException` codes).
type CodeLabel = [(&'static str, i64); 1];

/// `fdatasync` latency buckets, 10 us to 1 s.
const FSYNC_BUCKETS: [f64; 16] = [
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 0.1,
    0.25, 0.5, 1.0,
];
/// Pacing error buckets, 1 us to 1 s.
const PACING_BUCKETS: [f64; 13] = [
    1e-6, 5e-6, 10e-6, 50e-6, 100e-6, 500e-6, 1e-3, 5e-3, 10e-3, 50e-3, 0.1, 0.5, 1.0,
];

/// The metrics the archive's threads update (handles: clones share their values).
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// Seconds each segment `fdatasync` took (timed on the recording's I/O thread).
    pub fsync_seconds: Histogram,
    /// Replays being run by the replayer.
    pub replays_running: Gauge,
    /// Bytes of frames replays offered (data frames; re-created padding not counted).
    pub replay_sent_bytes: Counter,
    /// How late a paced replay sent each block against its schedule, in seconds.
    pub pacing_error_seconds: Histogram,
    /// Control sessions open (including those being refused).
    pub control_sessions: Gauge,
    /// Control requests received, by message name.
    control_requests: Family<RequestLabel, Counter>,
    /// ERROR responses sent, by code.
    control_errors: Family<CodeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            fsync_seconds: Histogram::new(FSYNC_BUCKETS),
            replays_running: Gauge::default(),
            replay_sent_bytes: Counter::default(),
            pacing_error_seconds: Histogram::new(PACING_BUCKETS),
            control_sessions: Gauge::default(),
            control_requests: Family::default(),
            control_errors: Family::default(),
        }
    }
}

impl Metrics {
    /// Count a control request (`name`: its message name, e.g. `ListRecordingsRequest`).
    pub fn control_request(&self, name: &'static str) {
        self.control_requests
            .get_or_create(&[("request", name)])
            .inc();
    }

    /// Count an ERROR response with `code`.
    pub fn control_error(&self, code: tern_protocol::ArchiveErrorCode) {
        self.control_errors
            .get_or_create(&[("code", code.value())])
            .inc();
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "fsync_seconds",
            "Seconds each fdatasync of a segment file took",
            self.fsync_seconds.clone(),
        );
        registry.register(
            "replays_running",
            "Replays running",
            self.replays_running.clone(),
        );
        registry.register(
            "replay_sent_bytes",
            "Bytes of recorded frames replays sent",
            self.replay_sent_bytes.clone(),
        );
        registry.register(
            "replay_pacing_error_seconds",
            "How late a paced replay sent each block against its schedule, in seconds",
            self.pacing_error_seconds.clone(),
        );
        registry.register(
            "control_sessions",
            "Control sessions open",
            self.control_sessions.clone(),
        );
        registry.register(
            "control_requests",
            "Control requests received, by request",
            self.control_requests.clone(),
        );
        registry.register(
            "control_errors",
            "Control ERROR responses sent, by error code",
            self.control_errors.clone(),
        );
    }
}
