//! `tern truncate` and `tern purge` on an archive directory no archive runs on.

use std::path::Path;
use std::time::{Duration, Instant};
use tern_archive::{Archive, ArchiveConfig, ArchiveView, RecordingId};
use tern_transport::{BackoffIdle, Client, Idle, MediaDriver};

use tern_testkit::driver;
const TERN: &str = env!("CARGO_BIN_EXE_tern");

fn tern(args: &[&str]) -> (i32, String, String) {
    tern_testkit::run(TERN, args)
}

fn config(dir: &Path, aeron_dir: &str) -> ArchiveConfig {
    let mut config = ArchiveConfig::new(dir, aeron_dir);
    config.segment_length = 128 * 1024;
    config
}

/// Three stopped recordings of 300 messages each, several segments each.
fn archive_of_three(driver: &MediaDriver, dir: &Path) {
    let archive = Archive::launch(config(dir, driver.dir())).expect("archive");
    archive
        .start_recording("aeron:ipc", 5, tern_archive::SourceLocation::Remote)
        .expect("record");
    let client = Client::connect(driver.dir()).expect("client");
    let mut idle = BackoffIdle::new();
    for recording in 0..3 {
        let publication = client
            .add_exclusive_publication("aeron:ipc", 5)
            .expect("pub");
        let deadline = Instant::now() + Duration::from_secs(10);
        while archive.recordings().len() <= recording {
            assert!(
                Instant::now() < deadline,
                "recording {recording} did not start"
            );
            idle.idle(0);
        }
        for sequence in 0..300u64 {
            let mut bytes = vec![sequence as u8; 16 + (sequence as usize * 37) % 3000];
            bytes[0..8].copy_from_slice(&sequence.to_le_bytes());
            while publication.offer(&bytes).is_err() {
                idle.idle(0);
            }
        }
        let id = archive.recordings()[recording].descriptor.recording_id;
        while archive.recording(id).expect("info").recorded_position < publication.position() {
            idle.idle(0);
        }
    }
    archive.shutdown();
}

fn listed_ids(dir: &str) -> Vec<(i64, i64)> {
    let (code, stdout, stderr) = tern(&["list", "--dir", dir, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    stdout
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("json");
            (
                row["recording_id"].as_i64().expect("id"),
                row["end_position"].as_i64().expect("end"),
            )
        })
        .collect()
}

#[test]
fn truncate_and_purge_change_an_offline_directory_and_refuse_bad_requests() {
    let driver = driver("truncate");
    let data = tempfile::tempdir().expect("temp dir");
    archive_of_three(&driver, data.path());
    let dir = data.path().to_string_lossy().into_owned();
    let mut ends = Vec::new();
    ArchiveView::open(data.path())
        .expect("view")
        .messages(RecordingId::new(0), None, None, |_, header| {
            ends.push(header.position);
            true
        })
        .expect("messages");
    assert_eq!(ends.len(), 300);
    let position = ends[99];

    let (code, _, stderr) = tern(&["truncate", "0", "17", "--dir", &dir]);
    assert_ne!(code, 0);
    assert!(stderr.contains("not frame aligned"), "{stderr}");
    let (code, stdout, stderr) = tern(&["truncate", "0", &position.to_string(), "--dir", &dir]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("recording 0 truncated at position {position}"))
            && stdout.contains("segment files deleted"),
        "{stdout}"
    );
    let listed = listed_ids(&dir);
    assert_eq!(listed[0], (0, position));
    let mut count = 0;
    ArchiveView::open(data.path())
        .expect("view")
        .messages(RecordingId::new(0), None, None, |_, _| {
            count += 1;
            true
        })
        .expect("messages");
    assert_eq!(count, 100);

    let (code, stdout, stderr) = tern(&["purge", "1", "--dir", &dir]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("recording 1 purged"), "{stdout}");
    let ids: Vec<i64> = listed_ids(&dir).iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![0, 2]);
    assert!(!data.path().join("1.tix").exists());
    assert!(std::fs::read_dir(data.path())
        .expect("list")
        .all(|entry| !entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .starts_with("1-")));
    let (code, stdout, stderr) = tern(&["verify", "--dir", &dir, "--quiet"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stdout.contains("recording 1"), "{stdout}");
    let (code, _, stderr) = tern(&["describe", "1", "--dir", &dir]);
    assert_ne!(code, 0);
    assert!(stderr.contains("unknown recording id 1"), "{stderr}");
    let (code, _, stderr) = tern(&["purge", "1", "--dir", &dir]);
    assert_ne!(code, 0);
    assert!(stderr.contains("unknown recording id 1"), "{stderr}");

    // A running archive holds the directory: ask it instead.
    let archive = Archive::launch(config(data.path(), driver.dir())).expect("archive");
    let (code, _, stderr) = tern(&["purge", "2", "--dir", &dir]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("in use by another process") && stderr.contains("stop the archive"),
        "{stderr}"
    );
    assert!(archive.recording(RecordingId::new(2)).is_ok());
}
