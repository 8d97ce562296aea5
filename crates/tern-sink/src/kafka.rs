//! A Kafka topic as a sink's destination: one transaction per batch, the stream position in
//! every record's headers.
//!
//! [`KafkaDestination`] writes each [`Batch`] in one Kafka transaction of an idempotent,
//! transactional producer (librdkafka through `rdkafka`). Every record carries its stream
//! position and recording id in two headers ([`POSITION_HEADER`], [`RECORDING_HEADER`], 8 bytes
//! big-endian each), so the topic itself says where it ends: [`Destination::open`] reads the
//! last committed record of each partition with a `read_committed` consumer and resumes after
//! the highest position it finds. A batch is all in the topic or, for a consumer that reads
//! committed records, not at all; a crashed or fenced writer's open transaction is aborted by
//! the next producer with the same transactional id when it opens.
//!
//! The record layout, the transactions and the way the tail is read back are described in
//! `docs/sinks.md` (section Kafka).

use crate::destination::{Destination, Resume, SinkError};
use crate::record::{Batch, SinkRecord};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tern_store::RecordingId;

/// The header holding a record's stream position ([`SinkRecord::position`]): 8 bytes, the
/// `i64` big-endian.
pub const POSITION_HEADER: &str = "tern-position";

/// The header holding the id of the recording a record comes from: 8 bytes, the `i64`
/// big-endian.
pub const RECORDING_HEADER: &str = "tern-recording";

/// How records are spread over the topic's partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaPartitioning {
    /// Every record into this one partition (the default: partition 0), so the topic holds
    /// the stream in order.
    Fixed(i32),
    /// By the record's key, with the Java client's default partitioner (murmur2 of the key's
    /// 8 bytes, so a Java producer would choose the same partition); records without a key go
    /// to a partition chosen at random. The order holds within a partition only; a batch is
    /// still one transaction over all the partitions it touches.
    ByKey,
}

impl Default for KafkaPartitioning {
    fn default() -> Self {
        Self::Fixed(0)
    }
}

/// Where and how a [`KafkaDestination`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// The brokers to bootstrap from, `host:port[,host:port…]` (librdkafka's
    /// `bootstrap.servers`).
    pub bootstrap_servers: String,
    /// The topic written to.
    pub topic: String,
    /// The producer's `transactional.id`; `None`: `tern-sink-<topic>`
    /// ([`KafkaConfig::transactional_id`]). Two writers with one id fence each other: the one
    /// that opened last wins, the other's writes fail with [`SinkError::Fatal`].
    pub transactional_id: Option<String>,
    /// Which partition a record goes to.
    pub partitioning: KafkaPartitioning,
    /// Create the topic when it does not exist (with the admin API); otherwise a missing topic
    /// is [`SinkError::Fatal`].
    pub create_topic: bool,
    /// Partitions of a topic this destination creates.
    pub topic_partitions: i32,
    /// Replication factor of a topic this destination creates; `None`: the broker's
    /// `default.replication.factor`.
    pub replication_factor: Option<i32>,
    /// How long opening (connecting, initialising transactions, reading the tail back) and
    /// committing one batch may take before they fail with [`SinkError::Unavailable`].
    pub timeout: Duration,
    /// Further librdkafka settings for the producer, the consumer that reads the tail back and
    /// the admin client (`security.protocol`, `client.id`, `message.max.bytes`, …), applied
    /// after this destination's own, so they override them.
    pub properties: Vec<(String, String)>,
}

impl KafkaConfig {
    /// Writes into `topic` of the cluster at `bootstrap_servers`: partition 0, transactional
    /// id `tern-sink-<topic>`, the topic created (1 partition) when missing, 30 s timeout.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            transactional_id: None,
            partitioning: KafkaPartitioning::default(),
            create_topic: true,
            topic_partitions: 1,
            replication_factor: None,
            timeout: Duration::from_secs(30),
            properties: Vec::new(),
        }
    }

    /// The producer's transactional id: the configured one, or `tern-sink-<topic>`.
    pub fn transactional_id(&self) -> String {
        self.transactional_id
            .clone()
            .unwrap_or_else(|| format!("tern-sink-{}", self.topic))
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", "tern-sink")
            .set("allow.auto.create.topics", "false")
            .set_log_level(RDKafkaLogLevel::Warning);
        config
    }

    fn with_properties(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// A Kafka topic a sink writes into: one transaction per batch, positions in the headers.
///
/// See the [module](self) documentation.
pub struct KafkaDestination {
    config: KafkaConfig,
    transactional_id: String,
    producer: Option<BaseProducer<SinkContext>>,
}

impl std::fmt::Debug for KafkaDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaDestination")
            .field("config", &self.config)
            .field("transactional_id", &self.transactional_id)
            .field("open", &self.producer.is_some())
            .finish()
    }
}

impl KafkaDestination {
    /// A destination for `config`; it connects in [`Destination::open`].
    pub fn new(config: KafkaConfig) -> Self {
        let transactional_id = config.transactional_id();
        Self {
            config,
            transactional_id,
            producer: None,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// The producer's transactional id.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    fn validate(&self) -> Result<(), SinkError> {
        let config = &self.config;
        if config.bootstrap_servers.trim().is_empty() {
            return Err(SinkError::Fatal(
                "kafka: no bootstrap servers configured".to_owned(),
            ));
        }
        if config.topic.is_empty() {
            return Err(SinkError::Fatal("kafka: no topic configured".to_owned()));
        }
        if self.transactional_id.is_empty() {
            return Err(SinkError::Fatal(
                "kafka: the transactional id is empty".to_owned(),
            ));
        }
        if config.topic_partitions < 1 {
            return Err(SinkError::Fatal(format!(
                "kafka: topic_partitions is {}; a topic has at least one partition",
                config.topic_partitions
            )));
        }
        if let KafkaPartitioning::Fixed(partition) = config.partitioning {
            if partition < 0 {
                return Err(SinkError::Fatal(format!(
                    "kafka: partition {partition} is negative"
                )));
            }
        }
        Ok(())
    }

    /// The topic's partition count, the topic created first if it is missing and may be.
    fn ensure_topic(&self, deadline: Instant) -> Result<i32, SinkError> {
        self.partition_count(deadline, self.config.create_topic)?
            .ok_or_else(|| {
                SinkError::Fatal(format!(
                    "{}: the topic does not exist (and creating it is off)",
                    self.describe()
                ))
            })
    }

    /// Where the stored data ends, read only (for `tern sink status`): no topic created, no
    /// producer, so a running sink is not fenced; a transaction it has open is not seen.
    /// `None`: no topic or no record.
    ///
    /// # Errors
    /// As [`Destination::open`] for the broker and the tail.
    pub fn peek(&self) -> Result<Option<Resume>, SinkError> {
        self.validate()?;
        let deadline = Instant::now() + self.config.timeout;
        match self.partition_count(deadline, false)? {
            Some(partitions) => self.read_tail(partitions, deadline),
            None => Ok(None),
        }
    }

    /// The topic's partition count (`None`: no such topic), the topic created first if it is
    /// missing and `create`.
    fn partition_count(&self, deadline: Instant, create: bool) -> Result<Option<i32>, SinkError> {
        let config = &self.config;
        let topic = config.topic.as_str();
        let admin: AdminClient<DefaultClientContext> = config
            .with_properties(config.client_config())
            .create()
            .map_err(|e| self.fatal("cannot create the admin client", &e))?;
        let mut created = false;
        loop {
            let metadata = admin
                .inner()
                .fetch_metadata(Some(topic), remaining(deadline))
                .map_err(|e| self.unavailable("cannot read the topic's metadata", &e))?;
            let found = metadata.topics().iter().find(|t| t.name() == topic);
            match found {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    return i32::try_from(t.partitions().len()).map(Some).map_err(|_| {
                        SinkError::Fatal(format!("kafka topic {topic}: too many partitions"))
                    });
                }
                Some(t)
                    if t.error().is_some_and(|e| {
                        RDKafkaErrorCode::from(e) != RDKafkaErrorCode::UnknownTopicOrPartition
                            && RDKafkaErrorCode::from(e) != RDKafkaErrorCode::LeaderNotAvailable
                    }) =>
                {
                    let code = t.error().map(RDKafkaErrorCode::from);
                    return Err(SinkError::Unavailable(format!(
                        "{}: the topic's metadata reports {code:?}",
                        self.describe()
                    )));
                }
                _ => {}
            }
            if !create {
                return Ok(None);
            }
            if !created {
                self.create_topic(&admin, deadline)?;
                created = true;
            }
            if Instant::now() >= deadline {
                return Err(SinkError::Unavailable(format!(
                    "{}: the topic was created but has no partitions in its metadata after {:?}",
                    self.describe(),
                    config.timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn create_topic(
        &self,
        admin: &AdminClient<DefaultClientContext>,
        deadline: Instant,
    ) -> Result<(), SinkError> {
        let config = &self.config;
        let replication = TopicReplication::Fixed(config.replication_factor.unwrap_or(-1));
        let new_topic = NewTopic::new(&config.topic, config.topic_partitions, replication);
        let options = AdminOptions::new()
            .request_timeout(Some(remaining(deadline)))
            .operation_timeout(Some(remaining(deadline)));
        let results = futures_executor::block_on(admin.create_topics([&new_topic], &options))
            .map_err(|e| self.unavailable("cannot create the topic", &e))?;
        for result in results {
            match result {
                Ok(_) => tracing::info!(
                    topic = %config.topic,
                    partitions = config.topic_partitions,
                    "kafka sink: created the topic"
                ),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    let message = format!("{}: cannot create the topic: {code}", self.describe());
                    return Err(match code {
                        RDKafkaErrorCode::TopicAuthorizationFailed
                        | RDKafkaErrorCode::ClusterAuthorizationFailed
                        | RDKafkaErrorCode::InvalidTopic
                        | RDKafkaErrorCode::InvalidPartitions
                        | RDKafkaErrorCode::InvalidReplicationFactor
                        | RDKafkaErrorCode::InvalidConfig
                        | RDKafkaErrorCode::PolicyViolation => SinkError::Fatal(message),
                        _ => SinkError::Unavailable(message),
                    });
                }
            }
        }
        Ok(())
    }

    fn create_producer(&self) -> Result<BaseProducer<SinkContext>, SinkError> {
        let mut config = self.config.client_config();
        let transaction_timeout = self.config.timeout.max(Duration::from_secs(10)) * 2;
        config
            .set("transactional.id", &self.transactional_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("compression.codec", "none")
            .set("linger.ms", "1")
            .set("batch.size", "1048576")
            .set("batch.num.messages", "10000")
            // bounds what waits in the client: messages and bytes queued or in flight
            .set("queue.buffering.max.messages", "100000")
            .set("queue.buffering.max.kbytes", "65536")
            .set(
                "transaction.timeout.ms",
                transaction_timeout.as_millis().to_string(),
            )
            .set(
                "message.timeout.ms",
                (transaction_timeout - Duration::from_secs(5))
                    .as_millis()
                    .to_string(),
            );
        if self.config.partitioning == KafkaPartitioning::ByKey {
            config.set("partitioner", "murmur2_random");
        }
        self.config
            .with_properties(config)
            .create_with_context(SinkContext::default())
            .map_err(|e| self.fatal("cannot create the producer", &e))
    }

    /// The last committed record's position and recording over all partitions.
    fn read_tail(&self, partitions: i32, deadline: Instant) -> Result<Option<Resume>, SinkError> {
        let mut config = self.config.client_config();
        config
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "100")
            // an offset that retention deleted meanwhile is an error (read again), not a jump
            // to the end that would make the partition look empty
            .set("auto.offset.reset", "error")
            // librdkafka assigns partitions only to a consumer with a group; it never joins
            // (no subscribe) and never commits offsets
            .set("group.id", format!("{}-resume", self.transactional_id));
        let consumer: BaseConsumer = self
            .config
            .with_properties(config)
            .create()
            .map_err(|e| self.fatal("cannot create the consumer that reads the tail", &e))?;
        let mut best: Option<TailRecord> = None;
        for partition in 0..partitions {
            if let Some(tail) = self.read_partition_tail(&consumer, partition, deadline)? {
                if best.is_none_or(|b| tail.position > b.position) {
                    best = Some(tail);
                }
            }
        }
        Ok(best.map(|tail| Resume {
            recording_id: tail.recording_id,
            position: tail.position,
        }))
    }

    /// The last committed data record of one partition: reads the last `window` offsets up
    /// to the end that a `read_committed` consumer sees (the last stable offset), and the
    /// window grows backwards while it holds no committed data record (only commit or abort
    /// markers and aborted records, which the consumer skips).
    fn read_partition_tail(
        &self,
        consumer: &BaseConsumer,
        partition: i32,
        deadline: Instant,
    ) -> Result<Option<TailRecord>, SinkError> {
        let topic = self.config.topic.as_str();
        // With read_committed the high offset librdkafka asks for is the last stable offset.
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, remaining(deadline))
            .map_err(|e| {
                self.unavailable(&format!("cannot read partition {partition}'s offsets"), &e)
            })?;
        // Records deleted by retention (the partition starts after 0) take the resume point
        // with them when no committed record is left: starting over would write everything
        // again, so it is refused.
        let lost = || {
            SinkError::Fatal(format!(
                "{}: partition {partition} holds no committed tern record, but starts at \
                 offset {low}: retention deleted the records that held the resume point; give \
                 the sink a new topic, or a longer retention",
                self.describe()
            ))
        };
        if high <= low {
            return if low > 0 { Err(lost()) } else { Ok(None) };
        }
        let mut window: i64 = 64;
        loop {
            let start = high.saturating_sub(window).max(low);
            let mut assignment = TopicPartitionList::new();
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(start))
                .map_err(|e| self.fatal("cannot build the consumer's assignment", &e))?;
            consumer
                .assign(&assignment)
                .map_err(|e| self.unavailable("cannot assign the consumer", &e))?;
            let mut last: Option<TailRecord> = None;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return Err(SinkError::Unavailable(format!(
                        "{}: reading the end of partition {partition} (offsets {start}..{high}) \
                         took longer than {:?}",
                        self.describe(),
                        self.config.timeout
                    )));
                }
                match consumer.poll(deadline - now) {
                    None => {}
                    Some(Ok(message)) => {
                        if message.partition() != partition || message.offset() < start {
                            continue;
                        }
                        let tail =
                            TailRecord::from_headers(message.headers()).ok_or_else(|| {
                                SinkError::Fatal(format!(
                                    "{}: the record at partition {partition} offset {} has no \
                                 {POSITION_HEADER} and {RECORDING_HEADER} headers of 8 bytes: \
                                 the topic holds records that a tern sink did not write",
                                    self.describe(),
                                    message.offset()
                                ))
                            })?;
                        last = Some(tail);
                    }
                    Some(Err(KafkaError::PartitionEOF(eof))) if eof == partition => break,
                    Some(Err(KafkaError::PartitionEOF(_))) => {}
                    Some(Err(e)) => {
                        return Err(self.unavailable(
                            &format!("cannot read the end of partition {partition}"),
                            &e,
                        ))
                    }
                }
            }
            if last.is_some() {
                return Ok(last);
            }
            if start == low {
                return if low > 0 { Err(lost()) } else { Ok(None) };
            }
            window = window.saturating_mul(16);
        }
    }

    /// The error of a failed transaction step: [`SinkError::Fatal`] once the producer is
    /// fenced or otherwise unusable, [`SinkError::Unavailable`] (after aborting what can be)
    /// for the rest.
    fn transaction_failed(&mut self, what: &str, error: &KafkaError) -> SinkError {
        let Some(producer) = self.producer.take() else {
            return SinkError::Unavailable(format!("{}: not open", self.describe()));
        };
        let delivery = producer.context().take_delivery_error();
        if let Some((code, reason)) = producer.client().fatal_error() {
            return SinkError::Fatal(format!(
                "{}: {what}: the producer failed for good ({code:?}: {reason}){}",
                self.describe(),
                fenced_hint(code)
            ));
        }
        let unusable = match error {
            KafkaError::Transaction(e) => e.is_fatal(),
            _ => false,
        };
        let refused = [Some(error), delivery.as_ref()]
            .into_iter()
            .flatten()
            .any(refused_for_good);
        let delivery = delivery
            .map(|e| format!(" (first failed delivery: {e})"))
            .unwrap_or_default();
        let message = format!("{}: {what}: {error}{delivery}", self.describe());
        if unusable {
            return SinkError::Fatal(message);
        }
        if refused {
            // A record refused for good stops the sink, but its transaction is aborted first:
            // left open it would hold the partitions' last stable offset (and every
            // read_committed reader) until the transaction timeout.
            if let Err(abort) = producer.abort_transaction(Duration::from_secs(5)) {
                tracing::debug!(error = %abort, "kafka sink: aborting the refused transaction failed");
            }
            return SinkError::Fatal(message);
        }
        // Abort so the partitions' last stable offset moves on now; the next open's
        // init_transactions would abort it as well.
        if let Err(abort) = producer.abort_transaction(Duration::from_secs(5)) {
            tracing::debug!(error = %abort, "kafka sink: aborting the failed transaction failed");
        }
        SinkError::Unavailable(message)
    }

    fn unavailable(&self, what: &str, error: &KafkaError) -> SinkError {
        SinkError::Unavailable(format!("{}: {what}: {error}", self.describe()))
    }

    fn fatal(&self, what: &str, error: &KafkaError) -> SinkError {
        SinkError::Fatal(format!("{}: {what}: {error}", self.describe()))
    }

    fn produce(
        &self,
        producer: &BaseProducer<SinkContext>,
        batch: &Batch,
        deadline: Instant,
    ) -> Result<(), KafkaError> {
        let topic = self.config.topic.as_str();
        for record in &batch.records {
            let key = record.key.map(i64::to_be_bytes);
            let headers = record_headers(record.position, batch.recording_id);
            let mut message: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
                .payload(record.payload.as_slice())
                .headers(headers)
                .timestamp(timestamp_ms(record));
            if let Some(key) = &key {
                message = message.key(key.as_slice());
            }
            if let KafkaPartitioning::Fixed(partition) = self.config.partitioning {
                message = message.partition(partition);
            }
            loop {
                match producer.send(message) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        if Instant::now() >= deadline {
                            return Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull));
                        }
                        // the client's queue is full: wait for deliveries to free it
                        producer.poll(POLL_STEP);
                        message = back;
                    }
                    Err((error, _)) => return Err(error),
                }
            }
        }
        // serve delivery reports now and then so they do not pile up
        producer.poll(Duration::ZERO);
        Ok(())
    }
}

impl Destination for KafkaDestination {
    fn describe(&self) -> String {
        format!(
            "kafka topic {} at {}",
            self.config.topic, self.config.bootstrap_servers
        )
    }

    fn open(&mut self) -> Result<Option<Resume>, SinkError> {
        self.validate()?;
        // Drop the old producer first: the new one, with the same transactional id, fences
        // it anyway, and aborts a transaction it left open.
        self.producer = None;
        let deadline = Instant::now() + self.config.timeout;
        let partitions = self.ensure_topic(deadline)?;
        if let KafkaPartitioning::Fixed(partition) = self.config.partitioning {
            if partition >= partitions {
                return Err(SinkError::Fatal(format!(
                    "{}: partition {partition} does not exist (the topic has {partitions})",
                    self.describe()
                )));
            }
        }
        let producer = self.create_producer()?;
        // Fences any older producer with this id and completes (commits or aborts) what it
        // left; only then is the tail that read_committed sees final.
        producer
            .init_transactions(remaining(deadline))
            .map_err(|e| match &e {
                KafkaError::Transaction(t) if t.is_fatal() => {
                    self.fatal("cannot initialise transactions", &e)
                }
                _ => self.unavailable("cannot initialise transactions", &e),
            })?;
        let resume = self.read_tail(partitions, deadline)?;
        tracing::debug!(
            destination = %self.describe(),
            transactional_id = %self.transactional_id,
            ?resume,
            "kafka sink: opened"
        );
        self.producer = Some(producer);
        Ok(resume)
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let Some(producer) = self.producer.as_ref() else {
            return Err(SinkError::Unavailable(format!(
                "{}: not open (open it after a failed write)",
                self.describe()
            )));
        };
        if batch.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.config.timeout;
        if let Err(e) = producer.begin_transaction() {
            return Err(self.transaction_failed("cannot begin a transaction", &e));
        }
        if let Err(e) = self.produce(producer, batch, deadline) {
            return Err(self.transaction_failed("cannot produce a record", &e));
        }
        // commit_transaction flushes too, but in steps of 100 ms
        if let Err(e) = flush(producer, deadline) {
            return Err(self.transaction_failed("cannot deliver the records", &e));
        }
        if let Err(e) = producer.commit_transaction(remaining(deadline)) {
            return Err(self.transaction_failed("cannot commit the transaction", &e));
        }
        Ok(())
    }
}

/// The tail of a partition: the last committed record's headers.
#[derive(Debug, Clone, Copy)]
struct TailRecord {
    position: i64,
    recording_id: RecordingId,
}

impl TailRecord {
    fn from_headers<H: Headers>(headers: Option<&H>) -> Option<Self> {
        let headers = headers?;
        let mut position = None;
        let mut recording = None;
        for header in headers.iter() {
            let value = header.value.and_then(|v| <[u8; 8]>::try_from(v).ok());
            match header.key {
                POSITION_HEADER => position = value.map(i64::from_be_bytes),
                RECORDING_HEADER => recording = value.map(i64::from_be_bytes),
                _ => {}
            }
        }
        Some(Self {
            position: position?,
            recording_id: RecordingId::new(recording?),
        })
    }
}

/// The headers of a record at `position` of `recording_id`: `tern-position`, then
/// `tern-recording`, each an i64 big-endian (`docs/sinks.md` §4).
pub fn record_headers(position: i64, recording_id: RecordingId) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(2)
        .insert(Header {
            key: POSITION_HEADER,
            value: Some(&position.to_be_bytes()),
        })
        .insert(Header {
            key: RECORDING_HEADER,
            value: Some(&recording_id.get().to_be_bytes()),
        })
}

/// A record's Kafka timestamp: its time in milliseconds since the epoch (rounded down).
fn timestamp_ms(record: &SinkRecord) -> i64 {
    record.timestamp_ns.div_euclid(1_000_000)
}

/// How long one wait for delivery reports lasts. `BaseProducer::poll` waits its whole timeout
/// (and `flush` polls 100 ms at a time), so waits are short and repeated.
const POLL_STEP: Duration = Duration::from_millis(1);

/// Waits until every record produced is delivered (acknowledged by the broker or failed), its
/// report served, or `deadline` passes. `BaseProducer::flush` would also do, but it waits in
/// steps of 100 ms, which would cost a batch of 10,000 records most of its time.
fn flush(producer: &BaseProducer<SinkContext>, deadline: Instant) -> Result<(), KafkaError> {
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::MessageTimedOut));
        }
        producer.poll(POLL_STEP);
    }
    Ok(())
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Whether the broker or the client refuses a record for good (resending it cannot help).
fn refused_for_good(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidTimestamp
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
        )
    )
}

fn fenced_hint(code: RDKafkaErrorCode) -> &'static str {
    match code {
        RDKafkaErrorCode::Fenced
        | RDKafkaErrorCode::ProducerFenced
        | RDKafkaErrorCode::InvalidProducerEpoch => {
            ": another writer with the same transactional id opened after this one"
        }
        _ => "",
    }
}

/// The producer's callbacks: remembers the first failed delivery (its error explains why the
/// commit failed) and logs client errors.
#[derive(Default)]
struct SinkContext {
    delivery_error: Mutex<Option<KafkaError>>,
}

impl SinkContext {
    fn take_delivery_error(&self) -> Option<KafkaError> {
        self.delivery_error
            .lock()
            .map(|mut e| e.take())
            .unwrap_or(None)
    }
}

impl ClientContext for SinkContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka sink: producer error");
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            if let Ok(mut first) = self.delivery_error.lock() {
                first.get_or_insert_with(|| error.clone());
            }
        }
    }
}
