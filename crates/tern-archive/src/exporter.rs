//! Exporting the archive's metrics: the collector that reads each recording's positions and
//! the free disk space when a scrape asks (from the archive's conductor), the OpenMetrics
//! encoder ([`MetricsExporter`]) and the tiny HTTP server that answers `GET /metrics`
//! ([`MetricsServer`]). The counters themselves are in `metrics.rs`.

use crate::conductor::Mailbox;
use crate::metrics::METRICS_PREFIX;
use crate::types::Shared;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;
use tern_store::progress::RecordingProgress;

/// Reads, at scrape time, what the recorder keeps of each recording and the free disk space.
struct ArchiveCollector {
    shared: Weak<Shared>,
    mailbox: Weak<Mailbox>,
}

impl std::fmt::Debug for ArchiveCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveCollector").finish_non_exhaustive()
    }
}

/// One recording's values at a scrape.
struct RecordingSample {
    labels: [(&'static str, i64); 2],
    progress: Arc<RecordingProgress>,
}

fn encode_family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: &[RecordingSample],
    value: impl Fn(&RecordingProgress) -> M,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for sample in samples {
        value(&sample.progress).encode(family.encode_family(&sample.labels)?)?;
    }
    Ok(())
}

impl Collector for ArchiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (Some(shared), Some(mailbox)) = (self.shared.upgrade(), self.mailbox.upgrade()) else {
            return Ok(());
        };
        // What the conductor keeps, read on its thread (nothing if it has stopped).
        let (progress, failures) = mailbox
            .ask(|state| (state.progress_samples(), state.recording_failures().len()))
            .unwrap_or_default();
        let samples: Vec<RecordingSample> = progress
            .into_iter()
            .map(|(recording_id, stream_id, progress)| RecordingSample {
                labels: [
                    ("recording_id", recording_id.get()),
                    ("stream_id", i64::from(stream_id)),
                ],
                progress,
            })
            .collect();
        encode_family(
            &mut encoder,
            "recorded_bytes",
            "Bytes recorded to the segment files by this archive process, per recording",
            MetricType::Counter,
            &samples,
            |progress| ConstCounter::new((progress.recorded() - progress.first_position()) as u64),
        )?;
        encode_family(
            &mut encoder,
            "recorded_fragments",
            "Data frames (message fragments) recorded by this archive process, per recording",
            MetricType::Counter,
            &samples,
            |progress| ConstCounter::new(progress.frames()),
        )?;
        encode_family(
            &mut encoder,
            "recorded_position",
            "Stream position written to the segment files, per recording",
            MetricType::Gauge,
            &samples,
            |progress| ConstGauge::new(progress.recorded()),
        )?;
        encode_family(
            &mut encoder,
            "durable_position",
            "Stream position durable under the fsync policy (the archive's acknowledgement), per recording",
            MetricType::Gauge,
            &samples,
            |progress| ConstGauge::new(progress.durable()),
        )?;
        encode_family(
            &mut encoder,
            "recording_active",
            "1 while the recording is being recorded, 0 once it stopped",
            MetricType::Gauge,
            &samples,
            |progress| ConstGauge::new(i64::from(progress.stop_position() < 0)),
        )?;
        encode_family(
            &mut encoder,
            "io_waiting_seconds",
            "How long the recording's I/O thread has held a write or sync without finishing it (0: none in hand); a hung disk shows here",
            MetricType::Gauge,
            &samples,
            |progress| ConstGauge::new(progress.io_waiting().map_or(0.0, |wait| wait.as_secs_f64())),
        )?;
        let counter = ConstCounter::new(failures as u64);
        let metric = encoder.encode_descriptor(
            "recording_failures",
            "Recordings that could not be written (full disk, file error): what follows their failure position is not stored",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)?;
        if let Some(free) = disk_free_bytes(&shared.config.dir) {
            let gauge = ConstGauge::new(free as i64);
            let metric = encoder.encode_descriptor(
                "disk_free_bytes",
                "Bytes available to the archive on the file system of its directory",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

/// Bytes available to an unprivileged writer on the file system holding `dir`.
fn disk_free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct we own from a NUL-terminated path.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    Some((stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64))
}

/// Encodes an archive's metrics in the OpenMetrics text format. Cheap to clone; it does not keep
/// the archive alive (after the archive is gone only the process-wide counters remain).
#[derive(Clone)]
pub struct MetricsExporter {
    registry: Arc<Registry>,
}

impl std::fmt::Debug for MetricsExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsExporter").finish_non_exhaustive()
    }
}

impl MetricsExporter {
    pub(crate) fn new(shared: &Arc<Shared>, mailbox: &Arc<Mailbox>) -> Self {
        let mut registry = Registry::with_prefix(METRICS_PREFIX);
        shared.metrics.register(&mut registry);
        registry.register_collector(Box::new(ArchiveCollector {
            shared: Arc::downgrade(shared),
            mailbox: Arc::downgrade(mailbox),
        }));
        Self {
            registry: Arc::new(registry),
        }
    }

    /// An exporter of whatever `registry` holds (another component's metrics, such as a sink's,
    /// served by the same [`MetricsServer`]).
    pub fn from_registry(registry: Registry) -> Self {
        Self {
            registry: Arc::new(registry),
        }
    }

    /// The metrics now, as OpenMetrics text (ending with `# EOF`).
    ///
    /// # Errors
    /// Only if the encoder fails (it writes to a `String`, so it does not).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The content type of the OpenMetrics text format.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How long a scrape may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request head read.
const MAX_REQUEST: usize = 8 * 1024;

/// A blocking HTTP server on its own thread (`tern-metrics`) answering `GET /metrics` with an
/// archive's metrics, one connection at a time (a scrape is one small request). Stopped when
/// dropped.
pub struct MetricsServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Serve `exporter` on `listener` (bound by the caller, so a bad address is an error before
    /// anything else starts).
    ///
    /// # Errors
    /// The listener's address cannot be read, or the thread cannot be started.
    pub fn start(listener: TcpListener, exporter: MetricsExporter) -> std::io::Result<Self> {
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tern-metrics".into())
            .spawn(move || serve(listener, exporter, thread_stop))?;
        Ok(Self {
            address,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Stop serving and wait for the thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Wake the blocking accept with a connection of our own.
        let mut wake = self.address;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok() {
            let _ = thread.join();
        }
        // Otherwise the thread is left blocked in accept; it ends with the process.
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.halt();
    }
}

fn serve(listener: TcpListener, exporter: MetricsExporter, stop: Arc<AtomicBool>) {
    for connection in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        match connection {
            Ok(stream) => {
                if let Err(error) = answer(stream, &exporter) {
                    tracing::debug!("metrics request: {error}");
                }
            }
            Err(error) => {
                // Out of descriptors, say: do not spin on it.
                tracing::warn!("metrics server accept: {error}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Read one request head and answer it; the connection is closed after the answer.
fn answer(mut stream: TcpStream, exporter: &MetricsExporter) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut request_line = text.lines().next().unwrap_or("").split_whitespace();
    let method = request_line.next().unwrap_or("");
    let target = request_line.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => match exporter.encode() {
            Ok(body) => ("200 OK", METRICS_CONTENT_TYPE, body),
            Err(_) => (
                "500 Internal Server Error",
                "text/plain; charset=utf-8",
                "metrics could not be encoded\n".to_string(),
            ),
        },
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "tern archive metrics are at /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET /metrics\n".to_string(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn get(address: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(address).expect("connect");
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        answer
    }

    #[test]
    fn the_server_answers_get_metrics_with_openmetrics_text_and_refuses_the_rest() {
        let metrics = Metrics::default();
        metrics.control_request("ListRecordingsRequest");
        metrics.control_error(tern_protocol::ArchiveErrorCode::UnknownRecording);
        metrics.fsync_seconds.observe(0.002);
        let mut registry = Registry::with_prefix(METRICS_PREFIX);
        metrics.register(&mut registry);
        let exporter = MetricsExporter {
            registry: Arc::new(registry),
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = MetricsServer::start(listener, exporter).expect("start");
        let address = server.local_addr();

        let answer = get(address, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains(METRICS_CONTENT_TYPE), "{answer}");
        assert!(
            answer.contains(
                "tern_archive_control_requests_total{request=\"ListRecordingsRequest\"} 1"
            ),
            "{answer}"
        );
        assert!(
            answer.contains("tern_archive_control_errors_total{code=\"5\"} 1"),
            "{answer}"
        );
        assert!(
            answer.contains("tern_archive_fsync_seconds_bucket{le=\"0.0025\"} 1"),
            "{answer}"
        );
        assert!(answer.trim_end().ends_with("# EOF"), "{answer}");

        let missing = get(address, "GET / HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let refused = get(address, "POST /metrics HTTP/1.1\r\n\r\n");
        assert!(refused.starts_with("HTTP/1.1 405"), "{refused}");
        server.stop();
    }

    #[test]
    fn disk_free_space_is_read_for_a_directory_and_not_for_a_missing_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(disk_free_bytes(dir.path()).is_some_and(|free| free > 0));
        assert!(disk_free_bytes(&dir.path().join("missing")).is_none());
    }
}
