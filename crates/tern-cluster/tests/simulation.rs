//! The deterministic simulation over many seeds (see `tern_cluster::sim`).
//!
//! `TERN_SIM_SEEDS=N` runs seeds 0..N (default 200); `TERN_SIM_SEED=S` reruns one seed;
//! `TERN_SIM_MILLIS=M` sets the simulated time of faults per seed,
//! `TERN_SIM_CRASHES_PER_MILLION_MS=C` the crash rate (default 1500).

use tern_cluster::sim::{run, SimConfig};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

#[test]
fn the_invariants_hold_under_loss_duplication_partitions_and_crashes() {
    let seeds: Vec<u64> = match env_u64("TERN_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("TERN_SIM_SEEDS").unwrap_or(200)).collect(),
    };
    let mut acknowledged = 0;
    let mut crashes = 0;
    let mut partitions = 0;
    let mut snapshots = 0;
    let mut egress_bytes = 0;
    let mut egress_behind = 0;
    let mut chunked = 0;
    let mut reassembled = 0;
    for seed in &seeds {
        let mut config = SimConfig::new(*seed);
        if let Some(millis) = env_u64("TERN_SIM_MILLIS") {
            config.millis = millis;
        }
        if let Some(per_million) = env_u64("TERN_SIM_CRASHES_PER_MILLION_MS") {
            config.crash_per_ms = per_million as f64 / 1e6;
        }
        match run(&config) {
            Ok(report) => {
                acknowledged += report.acknowledged;
                crashes += report.crashes;
                partitions += report.partitions;
                snapshots += usize::from(report.max_snapshot_index > 0);
                egress_bytes += report.egress_bytes;
                egress_behind += report.egress_behind;
                chunked += report.chunked_messages;
                reassembled += report.reassembled;
                assert!(
                    report.acknowledged > 0,
                    "seed {seed}: no message acknowledged"
                );
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    eprintln!(
        "{} seeds: {acknowledged} acknowledged messages, {crashes} crashes, {partitions} partitions, {snapshots} runs with snapshots, {chunked} messages sent in chunks, {reassembled} put together, {egress_bytes} bytes of egress recordings compared, {egress_behind} recordings behind a snapshot caught up from a peer",
        seeds.len()
    );
    // The faults the run is about really happened.
    if seeds.len() >= 20 {
        assert!(crashes > seeds.len() / 2 && partitions > 0 && snapshots > 0);
        assert!(egress_bytes > 0);
        assert!(chunked > 0 && reassembled > 0);
    }
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig::new(7);
    assert_eq!(run(&config), run(&config));
}

#[test]
fn wall_clock_steps_time_no_session_out_and_ticks_go_on() {
    // No other fault: any election past the first, or any session timeout, is the clocks'.
    for seed in 0..8 {
        let mut config = SimConfig::new(seed);
        config.loss = 0.0;
        config.duplicate = 0.0;
        config.crash_per_ms = 0.0;
        config.partition_per_ms = 0.0;
        config.clock_step_per_ms = 0.01;
        let report = run(&config).unwrap_or_else(|failure| panic!("{failure}"));
        assert!(report.clock_steps > 50, "seed {seed}: {report:?}");
        assert_eq!(report.timeouts, 0, "seed {seed}: {report:?}");
        assert_eq!(report.leaders, 1, "seed {seed}: {report:?}");
        assert!(report.acknowledged > 0, "seed {seed}: {report:?}");
    }
}
