//! The `tern archive --metrics` endpoint, read as Prometheus would.

mod support;

use std::time::{Duration, Instant};
use tern_transport::{BackoffIdle, Client, Idle};

use support::*;

// ---- Metrics ---------------------------------------------------------------------------------

/// The body of an HTTP GET of `path` at `address`, and the status line.
fn http_get(address: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the metrics server");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of the metric sample whose line starts with `sample` (name and labels).
fn metric(body: &str, sample: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

#[test]
fn a_running_archive_serves_its_recordings_replays_and_control_requests_as_prometheus_metrics() {
    let aeron_dir = std::env::temp_dir()
        .join(format!(
            "tern-cli-metrics-{}-{}",
            std::process::id(),
            Client::nano_clock()
        ))
        .to_string_lossy()
        .into_owned();
    let _driver = TernProcess::spawn(
        &["driver", "--aeron-dir", &aeron_dir],
        "media driver running",
    );
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let control = "aeron:ipc@7301";
    let mut archive = TernProcess::spawn(
        &[
            "archive",
            "--aeron-dir",
            &aeron_dir,
            "--dir",
            &data_dir,
            "--fsync",
            "always",
            "--control",
            control,
            "--metrics",
            "127.0.0.1:0",
            "--status-interval",
            "0",
            "--record",
            "aeron:ipc@7302",
        ],
        "archive running",
    );
    let address = archive
        .startup
        .iter()
        .find_map(|line| line.strip_prefix("metrics on http://"))
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics line in {:?}", archive.startup))
        .to_string();

    // 200 messages of 64 B recorded, each frame 96 B: 19,200 B.
    let client = Client::connect(&aeron_dir).expect("client");
    let publication = client
        .add_exclusive_publication("aeron:ipc", 7302)
        .expect("publication");
    let mut idle = BackoffIdle::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    for sequence in 0..200u64 {
        let mut bytes = message(sequence);
        bytes.resize(64, 0);
        while let Err(error) = publication.offer(&bytes) {
            assert!(error.is_retryable() && Instant::now() < deadline, "{error}");
            idle.idle(0);
        }
    }
    let end = publication.position();
    assert_eq!(end, 200 * 96);
    let recorded = "tern_archive_recorded_bytes_total{recording_id=\"0\",stream_id=\"7302\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = http_get(&address, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        if metric(&body, recorded) == Some(end as f64) {
            break body;
        }
        assert!(Instant::now() < deadline, "never recorded {end}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let labels = "{recording_id=\"0\",stream_id=\"7302\"}";
    assert_eq!(
        metric(
            &body,
            &format!("tern_archive_recorded_fragments_total{labels}")
        ),
        Some(200.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, &format!("tern_archive_recording_active{labels}")),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "tern_archive_recording_failures_total"),
        Some(0.0),
        "{body}"
    );
    assert!(
        metric(&body, "tern_archive_disk_free_bytes").is_some_and(|free| free > 0.0),
        "{body}"
    );
    assert!(
        metric(&body, "tern_archive_fsync_seconds_count").is_some_and(|syncs| syncs >= 1.0),
        "fsync always: {body}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "{body}");

    // A replay and two requests through the control server, one of them refused.
    let (code, stdout, stderr) = tern(&[
        "replay",
        "0",
        "--archive",
        "aeron:ipc",
        "--control-stream",
        "7301",
        "--aeron-dir",
        &aeron_dir,
        "--length",
        &end.to_string(),
        "--print",
        "none",
    ]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    let (code, _, _) = tern(&[
        "replay",
        "99",
        "--archive",
        "aeron:ipc",
        "--control-stream",
        "7301",
        "--aeron-dir",
        &aeron_dir,
    ]);
    assert_ne!(code, 0, "recording 99 does not exist");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http_get(&address, "/metrics");
        let sent = metric(&body, "tern_archive_replay_sent_bytes_total");
        let errors: f64 = body
            .lines()
            .filter(|line| line.starts_with("tern_archive_control_errors_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        let requests: f64 = body
            .lines()
            .filter(|line| line.starts_with("tern_archive_control_requests_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if sent == Some(end as f64) && errors >= 1.0 && requests >= 2.0 {
            // tern's client asks with the tern schema's replay request; 5 is UNKNOWN_RECORDING.
            assert_eq!(
                metric(
                    &body,
                    "tern_archive_control_requests_total{request=\"TernReplayRequest\"}"
                ),
                Some(2.0),
                "{body}"
            );
            assert_eq!(
                metric(&body, "tern_archive_control_errors_total{code=\"5\"}"),
                Some(1.0),
                "{body}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sent {sent:?}, errors {errors}, requests {requests}: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = http_get(&address, "/");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    archive.stop();

    // A metrics address that cannot be served is one line and a non-zero exit, before anything
    // starts.
    let (code, _, stderr) = tern(&[
        "archive",
        "--aeron-dir",
        &aeron_dir,
        "--dir",
        &data_dir,
        "--record",
        "aeron:ipc@7303",
        "--no-control",
        "--metrics",
        "not-an-address",
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.starts_with("tern: ") && stderr.contains("not-an-address"),
        "{stderr}"
    );
}
