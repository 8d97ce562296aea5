//! What a running sink counts, as Prometheus metrics (prometheus-client's atomics, so the
//! engine's thread updates them and a scrape or a progress line reads them from another).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A sink's counters and gauges. Clones share the values.
#[derive(Debug, Clone, Default)]
pub struct SinkMetrics {
    /// Records stored by the destination.
    pub records: Counter,
    /// Payload bytes stored.
    pub bytes: Counter,
    /// Batches written.
    pub batches: Counter,
    /// Microseconds spent in destination writes.
    pub write_micros: Counter,
    /// Failed destination opens and writes (each retried).
    pub destination_retries: Counter,
    /// Failed archive connections and merges (each retried).
    pub source_retries: Counter,
    /// Stream position up to which the destination holds the stream.
    pub position: Gauge,
    /// The recording's recorded position, last asked (once a second).
    pub recorded_position: Gauge,
    /// 1 once the merge reads the live stream, 0 while it replays.
    pub merged: Gauge,
}

impl SinkMetrics {
    /// Registers every metric (names `<prefix>_sink_...`) in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let sink = registry.sub_registry_with_prefix("sink");
        sink.register(
            "records",
            "Records stored by the destination",
            self.records.clone(),
        );
        sink.register(
            "bytes",
            "Payload bytes stored by the destination",
            self.bytes.clone(),
        );
        sink.register(
            "batches",
            "Batches written to the destination",
            self.batches.clone(),
        );
        sink.register(
            "write_microseconds",
            "Microseconds spent writing batches",
            self.write_micros.clone(),
        );
        sink.register(
            "destination_retries",
            "Failed destination opens and writes, each retried",
            self.destination_retries.clone(),
        );
        sink.register(
            "source_retries",
            "Failed archive connections and merges, each retried",
            self.source_retries.clone(),
        );
        sink.register(
            "position",
            "Stream position up to which the destination holds the stream",
            self.position.clone(),
        );
        sink.register(
            "recorded_position",
            "The source recording's recorded position",
            self.recorded_position.clone(),
        );
        sink.register(
            "merged",
            "1 once the sink reads the live stream, 0 while it replays",
            self.merged.clone(),
        );
    }

    /// Bytes of the stream recorded but not yet stored (0 before the first lag reading).
    pub fn lag_bytes(&self) -> i64 {
        let recorded = self.recorded_position.get();
        if recorded <= 0 {
            return 0;
        }
        (recorded - self.position.get().max(0)).max(0)
    }
}
