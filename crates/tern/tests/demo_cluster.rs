//! `tern demo --cluster` end to end, small: three member processes, the leader killed, the
//! clients recovering, a replay at 10x, every member stopped and its egress recording compared;
//! exit 0 and the narration's key lines.

use tern_testkit::run;

const TERN: &str = env!("CARGO_BIN_EXE_tern");

#[test]
fn the_cluster_demo_tells_the_whole_story_and_every_check_passes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo_dir = dir.path().join("demo");
    let demo_dir = demo_dir.to_string_lossy().into_owned();
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = run(
        TERN,
        &["demo", "--cluster", "--messages", "150", "--dir", &demo_dir],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    for expected in [
        "1. cluster: members 1-3 started",
        "2. clients: 3 sessions, each sending 150 puts",
        "3. failover: killed the leader, member ",
        "elected leader in term ",
        "restarted and caught up",
        "4. replay: client 1's egress from ",
        "5. stop: every member stopped cleanly (SIGTERM, exit 0)",
        "egress recordings identical on the 3 members, byte for byte",
        "verified every frame's CRC32C",
        "summary: 450 puts from 3 clients",
        "all checks passed",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
    for client in 1..=3 {
        let line = stdout
            .lines()
            .find(|line| line.contains(&format!("client {client} (session ")))
            .unwrap_or_else(|| panic!("no line for client {client}:\n{stdout}"));
        assert!(
            line.contains("150 puts acknowledged")
                && line.contains("with no gap")
                && line.contains("resume"),
            "{line}"
        );
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
    // The data stays for the user: every member's egress recording, readable by the archive's
    // commands.
    for id in 1..=3 {
        let egress = format!("{demo_dir}/node-{id}/egress");
        let (code, stdout, stderr) = run(TERN, &["verify", "--quiet", "--dir", &egress]);
        assert_eq!(code, 0, "member {id}: {stdout}{stderr}");
    }
    eprintln!("the demo took {:?}", started.elapsed());
}

#[test]
fn the_cluster_demo_refuses_a_directory_it_did_not_make_and_archive_flags() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("precious"), b"data").expect("a file");
    let path = dir.path().to_string_lossy().into_owned();
    let (code, _, stderr) = run(TERN, &["demo", "--cluster", "--dir", &path]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("tern: ") && stderr.contains("was not made by tern demo"),
        "{stderr}"
    );
    assert!(dir.path().join("precious").exists());
    let (code, _, stderr) = run(TERN, &["demo", "--cluster", "--size", "64"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.starts_with("tern: "), "{stderr}");
}
