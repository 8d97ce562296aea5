//! The PostgreSQL destination against a real server: `scripts/postgres.sh start` and
//! `eval "$(scripts/postgres.sh env)"` first (scripts/test.sh does both).

use postgres::{Client, NoTls};
use std::time::Instant;
use tern_sink::{
    Batch, Destination, PostgresConfig, PostgresDestination, Resume, SinkError, SinkRecord,
};
use tern_store::RecordingId;

/// The server's connection string; a test without one fails (it must not pass unseen).
fn server() -> String {
    tern_testkit::service("TERN_TEST_POSTGRES", "postgres.sh")
}

fn admin() -> Client {
    let connection = server();
    Client::connect(&connection, NoTls)
        .unwrap_or_else(|error| panic!("connecting to {connection:?}: {error}"))
}

/// A table name of this test and process, dropped (with its offsets row) before the test.
fn fresh_table(test: &str) -> String {
    let table = format!("tern_test_{test}_{}", std::process::id());
    let mut admin = admin();
    admin
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .unwrap();
    let offsets_exist: bool = admin
        .query_one("SELECT to_regclass('tern_sink_offsets') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    if offsets_exist {
        admin
            .execute("DELETE FROM tern_sink_offsets WHERE sink = $1", &[&table])
            .unwrap();
    }
    table
}

fn destination(table: &str) -> PostgresDestination {
    PostgresDestination::new(PostgresConfig::new(server(), table)).unwrap()
}

/// `count` records after `after`, 64 positions apart, payload `len` bytes; every third without
/// a key.
fn batch(recording: i64, after: i64, count: usize, len: usize) -> Batch {
    let mut batch = Batch::new(RecordingId::new(recording), after);
    for i in 0..count {
        let position = after + 64 * (i as i64 + 1);
        let payload: Vec<u8> = (0..len).map(|b| (position as usize + b) as u8).collect();
        batch.payload_bytes += payload.len();
        batch.records.push(SinkRecord {
            position,
            timestamp_ns: 1_700_000_000_000_000_000 + position,
            key: (i % 3 != 0).then_some(position * 7),
            payload,
        });
    }
    batch.end_position = after + 64 * count as i64;
    batch
}

fn stored_records(table: &str) -> Vec<(i64, SinkRecord)> {
    admin()
        .query(
            &format!(
                "SELECT recording_id, position, timestamp_ns, key, payload FROM {table} \
                 ORDER BY position"
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.get(0),
                SinkRecord {
                    position: row.get(1),
                    timestamp_ns: row.get(2),
                    key: row.get(3),
                    payload: row.get(4),
                },
            )
        })
        .collect()
}

fn row_count(table: &str) -> i64 {
    admin()
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0)
}

/// Terminates the backend `pid` and waits until it is gone.
fn terminate(admin: &mut Client, pid: i32) {
    let terminated: bool = admin
        .query_one("SELECT pg_terminate_backend($1, 10000)", &[&pid])
        .unwrap()
        .get(0);
    assert!(terminated, "backend {pid} did not terminate");
}

fn resume(recording: i64, position: i64) -> Option<Resume> {
    Some(Resume {
        recording_id: RecordingId::new(recording),
        position,
    })
}

#[test]
fn round_trip_stores_every_record_in_order_with_the_position() {
    let table = fresh_table("round_trip");
    let mut destination = destination(&table);
    assert_eq!(destination.open().unwrap(), None);
    let first = batch(5, 0, 100, 64);
    let mut second = batch(5, first.end_position, 50, 0);
    // Messages after the last record were filtered out: the batch ends further.
    second.end_position += 640;
    let third = batch(5, second.end_position, 1000, 300);
    for batch in [&first, &second, &third] {
        destination.write(batch).unwrap();
    }
    let expected: Vec<(i64, SinkRecord)> = [&first, &second, &third]
        .iter()
        .flat_map(|batch| batch.records.iter().cloned())
        .map(|record| (5, record))
        .collect();
    assert_eq!(stored_records(&table), expected);
    assert_eq!(destination.open().unwrap(), resume(5, third.end_position));
    let offsets = admin()
        .query_one(
            "SELECT recording_id, position, updated_at IS NOT NULL FROM tern_sink_offsets \
             WHERE sink = $1",
            &[&table],
        )
        .unwrap();
    assert_eq!(offsets.get::<_, i64>(0), 5);
    assert_eq!(offsets.get::<_, i64>(1), third.end_position);
    assert!(offsets.get::<_, bool>(2));
}

#[test]
fn a_new_destination_resumes_from_the_stored_position() {
    let table = fresh_table("resume");
    let first = batch(9, 1024, 200, 64);
    {
        let mut destination = destination(&table);
        assert_eq!(destination.open().unwrap(), None);
        destination.write(&first).unwrap();
    }
    let mut reopened = destination(&table);
    assert_eq!(reopened.open().unwrap(), resume(9, first.end_position));
    let second = batch(9, first.end_position, 10, 64);
    reopened.write(&second).unwrap();
    assert_eq!(row_count(&table), 210);
    assert_eq!(
        destination(&table).open().unwrap(),
        resume(9, second.end_position)
    );
    // Another sink name on the same table does not take these rows for its own.
    let mut other = PostgresDestination::new(
        PostgresConfig::new(server(), table.as_str()).with_sink_name(format!("{table}_other")),
    )
    .unwrap();
    match other.open() {
        Err(SinkError::Fatal(message)) => assert!(message.contains("no row for sink"), "{message}"),
        other => panic!("expected Fatal, got {other:?}"),
    }
}

#[test]
fn another_recording_is_fatal() {
    let table = fresh_table("other_recording");
    let mut destination = destination(&table);
    destination.open().unwrap();
    let first = batch(1, 0, 10, 64);
    destination.write(&first).unwrap();
    assert_eq!(destination.open().unwrap(), resume(1, first.end_position));
    match destination.write(&batch(2, first.end_position, 10, 64)) {
        Err(SinkError::Fatal(message)) => {
            assert!(
                message.contains("recording 1") && message.contains("recording 2"),
                "{message}"
            );
        }
        other => panic!("expected Fatal, got {other:?}"),
    }
    assert_eq!(row_count(&table), 10);
    assert_eq!(destination.open().unwrap(), resume(1, first.end_position));
}

#[test]
fn a_table_of_another_shape_is_fatal_and_named() {
    let table = fresh_table("other_shape");
    admin()
        .batch_execute(&format!(
            "CREATE TABLE {table} (position BIGINT PRIMARY KEY, recording_id BIGINT NOT NULL, \
             timestamp_ns BIGINT NOT NULL, key BIGINT, payload TEXT NOT NULL, note TEXT)"
        ))
        .unwrap();
    match destination(&table).open() {
        Err(SinkError::Fatal(message)) => {
            assert!(message.contains(&table), "{message}");
            assert!(
                message.contains("column payload is text, expected bytea"),
                "{message}"
            );
            assert!(message.contains("unexpected column note"), "{message}");
        }
        other => panic!("expected Fatal, got {other:?}"),
    }
    admin()
        .batch_execute(&format!(
            "DROP TABLE {table}; CREATE TABLE {table} (position BIGINT, payload BYTEA)"
        ))
        .unwrap();
    match destination(&table).open() {
        Err(SinkError::Fatal(message)) => {
            assert!(message.contains(&table), "{message}");
            assert!(message.contains("no column recording_id"), "{message}");
            assert!(message.contains("no primary key"), "{message}");
        }
        other => panic!("expected Fatal, got {other:?}"),
    }
}

#[test]
fn a_server_that_cannot_be_reached_is_unavailable() {
    // Port 1 on loopback: nothing listens there.
    let mut destination = PostgresDestination::new(PostgresConfig::new(
        "host=127.0.0.1 port=1 user=postgres dbname=postgres connect_timeout=5",
        "unreachable",
    ))
    .unwrap();
    match destination.open() {
        Err(SinkError::Unavailable(message)) => {
            assert!(message.contains("127.0.0.1:1"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let error = destination.write(&batch(1, 0, 1, 8)).unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}

#[test]
fn a_lost_connection_is_unavailable_and_open_resumes_without_duplicates() {
    let table = fresh_table("lost_connection");
    let mut admin = admin();
    let mut destination = destination(&table);
    destination.open().unwrap();
    let first = batch(3, 0, 500, 64);
    destination.write(&first).unwrap();
    let pid = destination.backend_pid().unwrap();
    terminate(&mut admin, pid);
    let second = batch(3, first.end_position, 500, 64);
    match destination.write(&second) {
        Err(SinkError::Unavailable(message)) => assert!(message.contains(&table), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(
        destination.backend_pid(),
        None,
        "the broken connection is kept"
    );
    assert_eq!(destination.open().unwrap(), resume(3, first.end_position));
    assert_ne!(destination.backend_pid(), Some(pid));
    destination.write(&second).unwrap();
    assert_eq!(row_count(&table), 1000);
    let positions: Vec<i64> = stored_records(&table)
        .iter()
        .map(|(_, record)| record.position)
        .collect();
    let expected: Vec<i64> = (1..=1000).map(|i| i * 64).collect();
    assert_eq!(positions, expected);
    assert_eq!(destination.open().unwrap(), resume(3, second.end_position));
}

#[test]
fn a_connection_lost_before_commit_stores_nothing_of_the_batch() {
    let table = fresh_table("lost_before_commit");
    let mut destination = destination(&table);
    destination.open().unwrap();
    let first = batch(4, 0, 100, 64);
    destination.write(&first).unwrap();
    let pid = destination.backend_pid().unwrap();
    let mut killer = admin();
    let mut fired = false;
    destination.set_before_commit(move || {
        if !fired {
            fired = true;
            // The COPY and the position are sent: the transaction is open on the server.
            let rows: i64 = killer
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 \
                     AND state = 'idle in transaction'",
                    &[&pid],
                )
                .unwrap()
                .get(0);
            assert_eq!(rows, 1, "the write's transaction is not open");
            terminate(&mut killer, pid);
        }
    });
    let second = batch(4, first.end_position, 1000, 64);
    match destination.write(&second) {
        Err(SinkError::Unavailable(message)) => assert!(message.contains("COMMIT"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(row_count(&table), 100);
    assert_eq!(destination.open().unwrap(), resume(4, first.end_position));
    destination.write(&second).unwrap();
    assert_eq!(row_count(&table), 1100);
    assert_eq!(destination.open().unwrap(), resume(4, second.end_position));
}

/// The child half of [`a_process_killed_before_commit_stores_nothing_of_the_batch`]: writes a
/// batch, then aborts the process in the next write just before `COMMIT`.
#[test]
#[ignore = "run by a_process_killed_before_commit_stores_nothing_of_the_batch in a child process"]
fn crash_child() {
    let Ok(table) = std::env::var("TERN_TEST_POSTGRES_CRASH_TABLE") else {
        panic!("run by a_process_killed_before_commit_stores_nothing_of_the_batch only");
    };
    let mut destination = destination(&table);
    destination.open().unwrap();
    let first = batch(6, 0, 100, 64);
    destination.write(&first).unwrap();
    destination.set_before_commit(|| std::process::abort());
    destination
        .write(&batch(6, first.end_position, 1000, 64))
        .unwrap();
    panic!("the process was to die before COMMIT");
}

#[test]
fn a_process_killed_before_commit_stores_nothing_of_the_batch() {
    let table = fresh_table("killed_before_commit");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--ignored", "--nocapture"])
        .env("TERN_TEST_POSTGRES_CRASH_TABLE", &table)
        .env("TERN_TEST_POSTGRES", server())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child did not die: {status:?}");
    assert_eq!(status.code(), None, "the child did not abort: {status:?}");
    // The server notices the closed socket and rolls the transaction back.
    let mut destination = destination(&table);
    assert_eq!(destination.open().unwrap(), resume(6, 100 * 64));
    assert_eq!(row_count(&table), 100);
    let second = batch(6, 100 * 64, 1000, 64);
    destination.write(&second).unwrap();
    assert_eq!(row_count(&table), 1100);
}

/// Binary COPY rate through the destination: 1,000,000 rows of 64 B in batches of 10,000.
/// `cargo test --release -p tern-sink --test postgres -- --ignored bench_copy_rate --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn bench_copy_rate() {
    const ROWS: usize = 1_000_000;
    const BATCH: usize = 10_000;
    let table = fresh_table("bench");
    let mut destination = destination(&table);
    destination.open().unwrap();
    let batches: Vec<Batch> = (0..ROWS / BATCH)
        .map(|i| batch(1, (i * BATCH * 64) as i64, BATCH, 64))
        .collect();
    let started = Instant::now();
    for batch in &batches {
        destination.write(batch).unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(row_count(&table), ROWS as i64);
    println!(
        "bench_copy_rate: {ROWS} rows of 64 B in batches of {BATCH} into {table}: {:.3} s, \
         {:.0} rows/s",
        elapsed.as_secs_f64(),
        ROWS as f64 / elapsed.as_secs_f64()
    );
}
