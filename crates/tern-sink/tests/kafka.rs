//! The Kafka destination against a real broker: `scripts/kafka.sh start` and
//! `eval "$(scripts/kafka.sh env)"` first (it sets `TERN_TEST_KAFKA`).

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tern_sink::kafka::{KafkaPartitioning, POSITION_HEADER, RECORDING_HEADER};
use tern_sink::{Batch, Destination, KafkaConfig, KafkaDestination, Resume, SinkError, SinkRecord};
use tern_store::RecordingId;

const RECORDING: RecordingId = RecordingId::new(42);

fn bootstrap() -> String {
    tern_testkit::service("TERN_TEST_KAFKA", "kafka.sh")
}

fn unique_topic(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tern-test-{name}-{}-{nanos}", std::process::id())
}

fn now_ns() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

/// `count` records after `after`, 64 bytes apart in the stream; every third has no key.
fn batch(after: i64, count: usize, payload_len: usize) -> Batch {
    let mut batch = Batch::new(RECORDING, after);
    let time = now_ns();
    for i in 0..count {
        let position = after + 64 * (i as i64 + 1);
        let mut payload = vec![0u8; payload_len];
        for (j, byte) in payload.iter_mut().enumerate() {
            *byte = (position as usize + j) as u8;
        }
        batch.payload_bytes += payload.len();
        batch.records.push(SinkRecord {
            position,
            timestamp_ns: time + i as i64 * 1_000,
            key: (i % 3 != 0).then_some(position / 64 % 7),
            payload,
        });
    }
    batch.end_position = after + 64 * count as i64;
    batch
}

fn destination(topic: &str) -> KafkaDestination {
    KafkaDestination::new(KafkaConfig::new(bootstrap(), topic))
}

/// A record as a consumer reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Read {
    partition: i32,
    key: Option<Vec<u8>>,
    /// `None`: a null value.
    payload: Option<Vec<u8>>,
    timestamp_ms: Option<i64>,
    position: Option<i64>,
    recording: Option<i64>,
}

fn header_i64<H: Headers>(headers: Option<&H>, name: &str) -> Option<i64> {
    let headers = headers?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| i64::from_be_bytes(<[u8; 8]>::try_from(v).expect("8-byte header")))
}

/// Everything in the topic's partitions, from the start, as a consumer at `isolation` reads it.
fn read_all(topic: &str, partitions: i32, isolation: &str) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("isolation.level", isolation)
        .set("group.id", "tern-test-reader")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let mut at_end = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while at_end < partitions {
        assert!(Instant::now() < deadline, "reading {topic} back timed out");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => out.push(Read {
                partition: m.partition(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                timestamp_ms: m.timestamp().to_millis(),
                position: header_i64(m.headers(), POSITION_HEADER),
                recording: header_i64(m.headers(), RECORDING_HEADER),
            }),
            Some(Err(KafkaError::PartitionEOF(_))) => at_end += 1,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
        }
    }
    out
}

/// What a consumer must read for these batches, in order.
fn expected(batches: &[&Batch]) -> Vec<Read> {
    batches
        .iter()
        .flat_map(|b| b.records.iter())
        .map(|r| Read {
            partition: 0,
            key: r.key.map(|k| k.to_be_bytes().to_vec()),
            payload: Some(r.payload.clone()),
            timestamp_ms: Some(r.timestamp_ns / 1_000_000),
            position: Some(r.position),
            recording: Some(RECORDING.get()),
        })
        .collect()
}

fn last_resume(batch: &Batch) -> Option<Resume> {
    Some(Resume {
        recording_id: RECORDING,
        position: batch.records.last().unwrap().position,
    })
}

/// A raw transactional producer (not the destination) with `transactional_id`.
fn raw_producer(transactional_id: &str) -> BaseProducer {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("transactional.id", transactional_id)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    producer
}

/// Produces `batch` with the destination's record layout in an open transaction and flushes
/// it into the log.
fn produce_raw(producer: &BaseProducer, topic: &str, batch: &Batch) {
    producer.begin_transaction().unwrap();
    for record in &batch.records {
        let headers = tern_sink::kafka::record_headers(record.position, RECORDING);
        producer
            .send(
                BaseRecord::<(), [u8]>::to(topic)
                    .partition(0)
                    .payload(record.payload.as_slice())
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn high_watermark(topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap()
        .1
}

#[test]
fn round_trip_every_record_once_in_order_with_its_headers() {
    let topic = unique_topic("round-trip");
    let mut sink = destination(&topic);
    assert_eq!(sink.open().unwrap(), None, "a new topic holds nothing");
    let b1 = batch(0, 100, 64);
    let b2 = batch(b1.end_position, 1, 0);
    let b3 = batch(b2.end_position, 2_500, 200);
    for b in [&b1, &b2, &b3] {
        sink.write(b).unwrap();
    }
    let read = read_all(&topic, 1, "read_committed");
    assert_eq!(read.len(), 2_601);
    assert_eq!(read, expected(&[&b1, &b2, &b3]));

    let mut again = destination(&topic);
    assert_eq!(again.open().unwrap(), last_resume(&b3));
    assert!(sink.describe().contains(&topic));
}

#[test]
fn an_aborted_transaction_is_invisible_and_open_ignores_it() {
    let topic = unique_topic("aborted");
    let mut sink = destination(&topic);
    assert_eq!(sink.open().unwrap(), None);
    let b1 = batch(0, 50, 64);
    sink.write(&b1).unwrap();
    let committed_end = high_watermark(&topic);

    // Another writer's transaction, with records that look like the sink's and go further.
    let aborted = batch(b1.end_position, 300, 64);
    let raw = raw_producer(&format!("{topic}-other"));
    produce_raw(&raw, &topic, &aborted);
    raw.abort_transaction(Duration::from_secs(30)).unwrap();

    // The aborted records are in the log (a read_uncommitted consumer sees them) ...
    assert!(high_watermark(&topic) >= committed_end + 300);
    let uncommitted = read_all(&topic, 1, "read_uncommitted");
    assert_eq!(
        uncommitted.len(),
        350,
        "the aborted records reached the log"
    );
    // ... but not for read_committed, nor for open.
    assert_eq!(
        read_all(&topic, 1, "read_committed"),
        expected(&[&b1]),
        "read_committed shows no aborted record"
    );
    let mut reopened = destination(&topic);
    assert_eq!(reopened.open().unwrap(), last_resume(&b1));

    // A large aborted tail (more than the first window open reads) changes nothing either.
    let big = batch(b1.end_position, 5_000, 16);
    produce_raw(&raw, &topic, &big);
    raw.abort_transaction(Duration::from_secs(30)).unwrap();
    assert_eq!(reopened.open().unwrap(), last_resume(&b1));
    let b2 = batch(b1.end_position, 10, 64);
    reopened.write(&b2).unwrap();
    assert_eq!(read_all(&topic, 1, "read_committed"), expected(&[&b1, &b2]));
}

#[test]
fn open_aborts_what_a_crashed_writer_left_open() {
    let topic = unique_topic("crashed");
    let mut sink = destination(&topic);
    sink.open().unwrap();
    let b1 = batch(0, 20, 64);
    sink.write(&b1).unwrap();
    drop(sink);

    // A writer with the sink's transactional id dies in the middle of a transaction.
    let crashed = raw_producer(&format!("tern-sink-{topic}"));
    let lost = batch(b1.end_position, 100, 64);
    produce_raw(&crashed, &topic, &lost);
    drop(crashed);

    let started = Instant::now();
    let mut sink = destination(&topic);
    assert_eq!(sink.open().unwrap(), last_resume(&b1));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "open waited {:?} (for the transaction timeout?)",
        started.elapsed()
    );
    let b2 = batch(b1.end_position, 30, 64);
    sink.write(&b2).unwrap();
    assert_eq!(read_all(&topic, 1, "read_committed"), expected(&[&b1, &b2]));
    assert_eq!(read_all(&topic, 1, "read_uncommitted").len(), 150);
}

#[test]
fn another_writers_open_transaction_does_not_hold_open_up() {
    let topic = unique_topic("foreign-open");
    let mut sink = destination(&topic);
    sink.open().unwrap();
    let b1 = batch(0, 20, 64);
    sink.write(&b1).unwrap();

    // A writer with another transactional id keeps a transaction open at the topic's end:
    // the last stable offset stays before it.
    let other = raw_producer(&format!("{topic}-other"));
    produce_raw(&other, &topic, &batch(b1.end_position, 10, 64));

    let started = Instant::now();
    assert_eq!(destination(&topic).open().unwrap(), last_resume(&b1));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "open took {:?}",
        started.elapsed()
    );
    other.abort_transaction(Duration::from_secs(30)).unwrap();
}

#[test]
fn a_second_writer_with_the_same_transactional_id_fences_the_first() {
    let topic = unique_topic("fenced");
    let mut old = destination(&topic);
    old.open().unwrap();
    let b1 = batch(0, 40, 64);
    old.write(&b1).unwrap();

    let mut new = destination(&topic);
    assert_eq!(new.transactional_id(), old.transactional_id());
    assert_eq!(new.open().unwrap(), last_resume(&b1));

    let b2 = batch(b1.end_position, 40, 64);
    let err = old.write(&b2).expect_err("the fenced writer cannot write");
    assert!(
        matches!(err, SinkError::Fatal(_)),
        "a fenced writer stops for good: {err:?}"
    );
    assert!(err.to_string().contains(&topic), "{err}");
    eprintln!("fenced: {err}");
    new.write(&b2).unwrap();
    assert_eq!(read_all(&topic, 1, "read_committed"), expected(&[&b1, &b2]));
}

#[test]
fn resumes_after_reopening() {
    let topic = unique_topic("resume");
    let mut sink = destination(&topic);
    assert_eq!(sink.open().unwrap(), None);
    let b1 = batch(0, 10, 64);
    let b2 = batch(b1.end_position, 10, 64);
    sink.write(&b1).unwrap();
    sink.write(&b2).unwrap();
    assert_eq!(
        sink.open().unwrap(),
        last_resume(&b2),
        "reopening the same one"
    );

    // The engine resends a batch that overlaps what is stored: it drops the stored prefix.
    let mut b3 = batch(b1.end_position, 30, 64);
    b3.skip_through(sink.open().unwrap().unwrap().position);
    assert_eq!(b3.first_position(), Some(b2.end_position + 64));
    sink.write(&b3).unwrap();
    drop(sink);

    let mut sink = destination(&topic);
    assert_eq!(sink.open().unwrap(), last_resume(&b3));
    let read = read_all(&topic, 1, "read_committed");
    let positions: Vec<i64> = read.iter().filter_map(|r| r.position).collect();
    let want: Vec<i64> = (1..=40).map(|i| i * 64).collect();
    assert_eq!(positions, want, "every position once, in order");
}

#[test]
fn a_write_before_open_or_into_a_foreign_topic_fails() {
    let topic = unique_topic("foreign");
    let mut sink = destination(&topic);
    let err = sink.write(&batch(0, 1, 8)).unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(sink.open().unwrap(), None);

    // Someone else's record, without the headers, at the topic's end.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    producer
        .send(BaseRecord::<(), [u8]>::to(&topic).payload(b"not ours".as_slice()))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    let err = destination(&topic).open().unwrap_err();
    assert!(matches!(err, SinkError::Fatal(_)), "{err:?}");
    assert!(err.to_string().contains("did not write"), "{err}");

    let mut config = KafkaConfig::new(bootstrap(), unique_topic("missing"));
    config.create_topic = false;
    let err = KafkaDestination::new(config).open().unwrap_err();
    assert!(matches!(err, SinkError::Fatal(_)), "{err:?}");
}

#[test]
fn partitioned_by_key_resumes_from_the_highest_position() {
    let topic = unique_topic("by-key");
    let mut config = KafkaConfig::new(bootstrap(), &topic);
    config.partitioning = KafkaPartitioning::ByKey;
    config.topic_partitions = 3;
    let mut sink = KafkaDestination::new(config.clone());
    assert_eq!(sink.open().unwrap(), None);
    let b1 = batch(0, 200, 32);
    let b2 = batch(b1.end_position, 5, 32);
    sink.write(&b1).unwrap();
    sink.write(&b2).unwrap();
    assert_eq!(
        KafkaDestination::new(config).open().unwrap(),
        last_resume(&b2)
    );
    let read = read_all(&topic, 3, "read_committed");
    assert_eq!(read.len(), 205);
    // a key always lands in the same partition, and order holds within a partition
    let mut partition_of = std::collections::HashMap::new();
    for r in read.iter().filter(|r| r.key.is_some()) {
        let p = partition_of.entry(r.key.clone()).or_insert(r.partition);
        assert_eq!(*p, r.partition);
    }
    for partition in 0..3 {
        let positions: Vec<i64> = read
            .iter()
            .filter(|r| r.partition == partition)
            .filter_map(|r| r.position)
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
    }
    assert!(
        partition_of
            .values()
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1
    );
}

/// Rate of the destination: 1,000,000 records of 64 B in batches of 10,000. Run once with
/// `cargo test --release -p tern-sink --test kafka -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn rate_of_a_million_64_byte_records() {
    let topic = unique_topic("rate");
    let mut config = KafkaConfig::new(bootstrap(), &topic);
    // extra librdkafka settings to try, `key=value,key=value`
    if let Ok(extra) = std::env::var("TERN_TEST_KAFKA_PROPERTIES") {
        for pair in extra.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').expect("key=value");
            config.properties.push((key.to_owned(), value.to_owned()));
        }
    }
    let mut sink = KafkaDestination::new(config);
    sink.open().unwrap();
    let batches: Vec<Batch> = (0..100)
        .map(|i| batch(i * 10_000 * 64, 10_000, 64))
        .collect();
    let started = Instant::now();
    for b in &batches {
        sink.write(b).unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "kafka destination: 1000000 records of 64 B in batches of 10000: {:.2} s, {:.0} msg/s, {:.1} MB/s",
        elapsed.as_secs_f64(),
        1e6 / elapsed.as_secs_f64(),
        64.0 / elapsed.as_secs_f64()
    );
    let started = Instant::now();
    let resume = destination(&topic).open().unwrap();
    println!("open (read the tail back): {:?}", started.elapsed());
    assert_eq!(resume, last_resume(batches.last().unwrap()));
}

#[test]
fn a_record_the_broker_refuses_for_good_is_fatal_and_not_stored() {
    let topic = unique_topic("refused");
    let mut sink = destination(&topic);
    sink.open().unwrap();
    let b1 = batch(0, 5, 64);
    sink.write(&b1).unwrap();
    // Kafka 4 refuses times more than an hour ahead (log.message.timestamp.after.max.ms)
    let mut bad = batch(b1.end_position, 5, 64);
    bad.records[3].timestamp_ns += 3 * 3_600 * 1_000_000_000;
    let err = sink.write(&bad).unwrap_err();
    assert!(matches!(err, SinkError::Fatal(_)), "{err:?}");
    assert!(err.to_string().contains("imestamp"), "{err}");
    eprintln!("refused: {err}");
    assert_eq!(destination(&topic).open().unwrap(), last_resume(&b1));
    assert_eq!(read_all(&topic, 1, "read_committed"), expected(&[&b1]));
}

#[test]
fn an_unreachable_broker_is_unavailable() {
    // still needs the test broker's variable, so that a run without it fails as the others do
    bootstrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener); // nothing listens there now
    let mut config = KafkaConfig::new(address.to_string(), unique_topic("unreachable"));
    config.timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = KafkaDestination::new(config).open().unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains(&address.to_string()), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
