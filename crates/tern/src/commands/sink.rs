//! `tern sink file|postgres|kafka`: a recording copied into a store, exactly once, through a
//! running archive; `tern sink status`: where a destination's data ends, and its lag.

use crate::util::{parse_publication_channel, parse_size, parse_time, stop_signal, DriverArgs};
use anyhow::{bail, Context, Result};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tern_client::{ArchiveClient, ArchiveClientConfig};
use tern_sink::{
    BatchLimits, Destination, FileConfig, FileDestination, FileFormat, RecordingSource, Resume,
    SinkConfig, SinkEngine, SinkMetrics, StartAt,
};
use tern_store::{KeyFilter, KeyKind, RecordingId, TimeSource};

/// Arguments of `tern sink`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: SinkCommand,
}

// Parsed once: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
enum SinkCommand {
    /// Append a recording to files in a directory: JSON Lines or length-prefixed records,
    /// rotated by size and age; a restart resumes after the last whole record in the files.
    File {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Copy a recording into a PostgreSQL table (binary COPY, created if absent), the position
    /// stored in the same transaction in tern_sink_offsets.
    Postgres {
        #[command(flatten)]
        postgres: PostgresArgs,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Copy a recording into a Kafka topic: one transaction per batch (idempotent,
    /// transactional producer), the position in each record's headers, read back from the
    /// topic's committed tail on restart.
    Kafka {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Where a destination's data ends (recording, position), and with --archive how far it is
    /// behind the recording. Reads only: it does not disturb a sink writing there.
    Status {
        #[command(subcommand)]
        destination: StatusCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum StatusCommand {
    /// A file sink's directory.
    File {
        /// The sink's directory.
        #[arg(long, value_name = "DIR")]
        dir: std::path::PathBuf,
        /// The format it was written in.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
        #[command(flatten)]
        archive: ArchiveArgs,
    },
    /// A Kafka sink's topic (its committed tail).
    Kafka {
        /// The brokers: HOST:PORT[,HOST:PORT...].
        #[arg(long, value_name = "SERVERS")]
        kafka: String,
        /// The topic.
        #[arg(long)]
        topic: String,
        /// A librdkafka setting for the reader (KEY=VALUE; repeatable).
        #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
        properties: Vec<(String, String)>,
        #[command(flatten)]
        archive: ArchiveArgs,
    },
    /// A PostgreSQL sink's table.
    Postgres {
        #[command(flatten)]
        postgres: PostgresArgs,
        #[command(flatten)]
        archive: ArchiveArgs,
    },
}

/// Where a Kafka sink writes.
#[derive(Debug, Clone, clap::Args)]
struct KafkaArgs {
    /// The brokers: HOST:PORT[,HOST:PORT...] (bootstrap servers).
    #[arg(long, value_name = "SERVERS")]
    kafka: String,
    /// The topic (created with --partitions partitions if absent).
    #[arg(long)]
    topic: String,
    /// The producer's transactional id (default tern-sink-TOPIC); two sinks with one id fence
    /// each other.
    #[arg(long)]
    transactional_id: Option<String>,
    /// Spread records over the topic's partitions by key (murmur2, as Java's producer);
    /// default: all in partition 0.
    #[arg(long)]
    partition_by_key: bool,
    /// Partitions of a topic the sink creates.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    partitions: i32,
    /// A librdkafka setting for the producer and the tail reader (KEY=VALUE; repeatable), e.g.
    /// security.protocol=ssl.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    properties: Vec<(String, String)>,
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("{text:?}: expected KEY=VALUE")),
    }
}

impl KafkaArgs {
    fn destination(&self) -> tern_sink::KafkaDestination {
        let mut config = tern_sink::KafkaConfig::new(&self.kafka, &self.topic);
        config.transactional_id = self.transactional_id.clone();
        if self.partition_by_key {
            config.partitioning = tern_sink::KafkaPartitioning::ByKey;
        }
        config.topic_partitions = self.partitions;
        config.properties = self.properties.clone();
        tern_sink::KafkaDestination::new(config)
    }
}

/// Where a PostgreSQL sink writes.
#[derive(Debug, Clone, clap::Args)]
struct PostgresArgs {
    /// The server: a libpq connection string ('host=127.0.0.1 port=5432 user=postgres
    /// dbname=postgres') or a postgresql:// URL.
    #[arg(long, value_name = "CONNINFO")]
    postgres: String,
    /// The table (NAME or SCHEMA.NAME; created if absent: position, recording_id,
    /// timestamp_ns, key, payload).
    #[arg(long)]
    table: String,
    /// The sink's row in tern_sink_offsets (default: the table's name).
    #[arg(long)]
    sink_name: Option<String>,
}

impl PostgresArgs {
    fn destination(&self) -> Result<tern_sink::PostgresDestination> {
        let mut config = tern_sink::PostgresConfig::new(&self.postgres, &self.table);
        if let Some(name) = &self.sink_name {
            config = config.with_sink_name(name);
        }
        Ok(tern_sink::PostgresDestination::new(config)?)
    }
}

/// Where a file sink writes.
#[derive(Debug, Clone, clap::Args)]
struct FileArgs {
    /// The directory of the sink's files (created if absent; one sink per directory).
    #[arg(long, value_name = "DIR")]
    dir: std::path::PathBuf,
    /// jsonl (one JSON object per line: recording, position, timestamp_ns, key, encoding,
    /// payload) or raw (length-prefixed binary records with a CRC32C; docs/sinks.md).
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// jsonl payloads: base64, or text (UTF-8 text when the payload is valid UTF-8, base64
    /// otherwise).
    #[arg(long, value_enum, default_value_t = Payload::Base64)]
    payload: Payload,
    /// Start a new file once the current one holds this much (e.g. 256MiB).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    max_file_size: u64,
    /// Start a new file once the current one has been written to for this long (e.g. 1h,
    /// 10m); default: no limit.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_file_age: Option<Duration>,
}

impl FileArgs {
    fn config(&self) -> FileConfig {
        let mut config = FileConfig::new(&self.dir);
        config.format = match self.format {
            Format::Jsonl => FileFormat::JsonLines {
                text: self.payload == Payload::Text,
            },
            Format::Raw => FileFormat::Raw,
        };
        config.max_file_bytes = self.max_file_size.max(1);
        config.max_file_age = self.max_file_age;
        config
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Jsonl,
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Payload {
    Base64,
    Text,
}

/// How to reach the archive.
#[derive(Debug, Clone, clap::Args)]
struct ArchiveArgs {
    /// The archive's control channel (aeron:udp?endpoint=HOST:PORT, or aeron:ipc for one on
    /// the same media driver). For status: give it to see the lag.
    #[arg(long, value_name = "CHANNEL", value_parser = parse_publication_channel)]
    archive: Option<String>,
    /// Control stream id of --archive.
    #[arg(long, default_value_t = 10)]
    control_stream: i32,
    /// Credentials to present to the archive.
    #[arg(long)]
    credentials: Option<String>,
    /// How long to wait for each answer of the archive (seconds).
    #[arg(long, default_value_t = 10.0, value_parser = crate::util::parse_seconds)]
    message_timeout: f64,
    #[command(flatten)]
    driver: DriverArgs,
}

const DEFAULT_ARCHIVE: &str = "aeron:udp?endpoint=localhost:8010";

impl ArchiveArgs {
    fn channel(&self) -> &str {
        self.archive.as_deref().unwrap_or(DEFAULT_ARCHIVE)
    }

    fn is_ipc(&self) -> bool {
        self.channel().starts_with("aeron:ipc")
    }

    fn client_config(&self, dir: &str) -> ArchiveClientConfig {
        let response = if self.is_ipc() {
            "aeron:ipc?term-length=64k"
        } else {
            "aeron:udp?endpoint=localhost:0"
        };
        let mut config = ArchiveClientConfig::new(dir)
            .with_request(self.channel(), self.control_stream)
            .with_response(response, 20)
            .with_message_timeout(Duration::from_secs_f64(self.message_timeout))
            .with_client_name("tern sink");
        if let Some(credentials) = &self.credentials {
            config = config.with_credentials(credentials.as_bytes().to_vec());
        }
        config
    }
}

/// What is read and how.
#[derive(Debug, Clone, clap::Args)]
struct SourceArgs {
    #[command(flatten)]
    archive: ArchiveArgs,
    /// The recording to copy.
    #[arg(long, value_name = "ID", required_unless_present = "channel")]
    recording: Option<RecordingId>,
    /// Copy the newest recording of this channel (with --stream) instead of --recording.
    #[arg(long, conflicts_with = "recording", requires = "stream")]
    channel: Option<String>,
    /// Stream id of --channel.
    #[arg(long, requires = "channel")]
    stream: Option<i32>,
    /// An empty destination starts at this position of the recording (a message's start);
    /// default: the recording's start. A destination that holds records resumes after them.
    #[arg(long, value_name = "POSITION", conflicts_with_all = ["from_time", "from_cursor"])]
    from_position: Option<i64>,
    /// An empty destination starts at the first message at or after this time (RFC 3339, now,
    /// -5m), read with --time-source.
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true, conflicts_with = "from_cursor")]
    from_time: Option<i64>,
    /// An empty destination starts at the archive's durable cursor of this name.
    #[arg(long, value_name = "NAME")]
    from_cursor: Option<String>,
    /// Only the messages of one key (KIND:VALUE, as tern replay --key); the others are not
    /// written (their positions still count).
    #[arg(long, value_name = "KIND:VALUE", allow_hyphen_values = true)]
    key: Option<KeyFilter>,
    /// The key stored with each record: session, reserved, cluster-egress, tern-egress or
    /// field:OFFSET:i32|i64; default: none (with --key: its kind).
    #[arg(long, value_name = "KIND")]
    key_kind: Option<KeyKind>,
    /// Where a record's timestamp comes from (as tern replay --time-source); capture stores
    /// the time the sink read the message.
    #[arg(long, default_value = "capture")]
    time_source: TimeSource,
    /// A batch is written once it holds this many records.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    batch_records: u64,
    /// ... or this many payload bytes (e.g. 4MiB).
    #[arg(long, default_value = "4MiB", value_parser = parse_size)]
    batch_bytes: u64,
    /// ... or once its oldest record has waited this long (e.g. 100ms).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    batch_delay: Duration,
    /// After the replay, join the live stream on this channel (with --live-stream) instead
    /// of the recording's own (the recorded session is added to it).
    #[arg(long, value_parser = crate::util::parse_channel, requires = "live_stream")]
    live_channel: Option<String>,
    /// Stream id of --live-channel.
    #[arg(long, requires = "live_channel")]
    live_stream: Option<i32>,
    /// Channel the archive replays to; default aeron:ipc for an IPC archive, else
    /// aeron:udp?endpoint=localhost:0.
    #[arg(long, value_parser = parse_publication_channel)]
    replay_channel: Option<String>,
    /// Stream id of the replay.
    #[arg(long, default_value_t = 1_700)]
    replay_stream: i32,
    /// Serve Prometheus metrics at http://ADDR/metrics (port 0: any free port, printed).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Print a progress line to standard error this often (seconds; 0: never).
    #[arg(long, default_value_t = 5.0)]
    progress_interval: f64,
}

impl SourceArgs {
    fn config(&self, dir: &str) -> Result<SinkConfig> {
        let source = match (&self.recording, &self.channel, self.stream) {
            (Some(id), _, _) => RecordingSource::Id(*id),
            (None, Some(channel), Some(stream_id)) => RecordingSource::Stream {
                channel: channel.clone(),
                stream_id,
            },
            _ => bail!("give --recording ID or --channel CHANNEL --stream ID"),
        };
        let mut config = SinkConfig::new(self.archive.client_config(dir), source);
        config.start = match (&self.from_position, &self.from_time, &self.from_cursor) {
            (Some(position), _, _) => StartAt::Position(*position),
            (_, Some(time), _) => StartAt::Time(*time),
            (_, _, Some(cursor)) => StartAt::Cursor(cursor.clone()),
            _ => StartAt::Beginning,
        };
        config.filter = self.key;
        config.key_kind = self.key_kind.or(self.key.map(|filter| filter.kind));
        config.time_source = self.time_source;
        config.limits = BatchLimits {
            max_records: usize::try_from(self.batch_records).unwrap_or(usize::MAX),
            max_bytes: usize::try_from(self.batch_bytes.max(1)).unwrap_or(usize::MAX),
            max_delay: self.batch_delay,
        };
        config.replay_channel = match &self.replay_channel {
            Some(channel) => channel.clone(),
            None if self.archive.is_ipc() => "aeron:ipc".into(),
            None => "aeron:udp?endpoint=localhost:0".into(),
        };
        config.replay_stream_id = self.replay_stream;
        config.live = self.live_channel.clone().zip(self.live_stream);
        if !(self.progress_interval >= 0.0 && self.progress_interval.is_finite()) {
            bail!("--progress-interval must be 0 or a number of seconds");
        }
        Ok(config)
    }
}

/// Runs `tern sink`.
pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        SinkCommand::File { file, source } => {
            let destination = FileDestination::new(file.config());
            run_sink(destination, &source)
        }
        SinkCommand::Postgres { postgres, source } => run_sink(postgres.destination()?, &source),
        SinkCommand::Kafka { kafka, source } => run_sink(kafka.destination(), &source),
        SinkCommand::Status { destination } => match destination {
            StatusCommand::Kafka {
                kafka,
                topic,
                properties,
                archive,
            } => {
                let mut config = tern_sink::KafkaConfig::new(kafka, topic);
                config.properties = properties;
                let destination = tern_sink::KafkaDestination::new(config);
                let resume = destination.peek()?;
                print_status(&destination.describe(), resume, &archive)
            }
            StatusCommand::Postgres { postgres, archive } => {
                let destination = postgres.destination()?;
                let resume = destination.peek()?;
                print_status(&destination.describe(), resume, &archive)
            }
            StatusCommand::File {
                dir,
                format,
                archive,
            } => {
                let format = match format {
                    // The payload encoding is per record: either reads back.
                    Format::Jsonl => FileFormat::JsonLines { text: false },
                    Format::Raw => FileFormat::Raw,
                };
                let resume = tern_sink::file::peek(&dir, format).map_err(anyhow::Error::msg)?;
                let destination = FileDestination::new(FileConfig::new(&dir));
                print_status(&destination.describe(), resume, &archive)
            }
        },
    }
}

/// Runs one sink until the recording ends, Ctrl-C or SIGTERM.
fn run_sink<D: Destination + Send + 'static>(
    destination: D,
    source: &SourceArgs,
) -> Result<ExitCode> {
    let metrics_listener = match &source.metrics {
        Some(address) => Some(
            std::net::TcpListener::bind(address.as_str())
                .with_context(|| format!("serve metrics on {address}"))?,
        ),
        None => None,
    };
    let stop = stop_signal()?;
    let driver = source.archive.driver.resolve(false)?;
    let config = source.config(&driver.dir)?;
    let metrics = SinkMetrics::default();
    let _server = match metrics_listener {
        Some(listener) => {
            let mut registry = prometheus_client::registry::Registry::with_prefix("tern");
            metrics.register(&mut registry);
            let server = tern_archive::MetricsServer::start(
                listener,
                tern_archive::MetricsExporter::from_registry(registry),
            )
            .context("start the metrics server")?;
            println!("metrics on http://{}/metrics", server.local_addr());
            Some(server)
        }
        None => None,
    };
    let described = destination.describe();
    eprintln!("sink: {} into {described}; Ctrl-C to stop", config.source);
    let engine_stop = stop.clone();
    let engine_metrics = metrics.clone();
    let engine = std::thread::Builder::new()
        .name("tern-sink".into())
        .spawn(move || {
            let mut engine = SinkEngine::new(config, destination, engine_metrics);
            engine.run(&engine_stop)
        })
        .context("start the sink thread")?;
    let interval = Duration::from_secs_f64(source.progress_interval);
    let mut progress = Progress::new(&metrics);
    let mut next = Instant::now() + interval;
    while !engine.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        if !interval.is_zero() && Instant::now() >= next {
            next += interval;
            eprintln!("{}", progress.line(&metrics));
        }
    }
    let outcome = engine
        .join()
        .map_err(|_| anyhow::anyhow!("the sink thread panicked"))?;
    let summary = outcome?;
    let how = if summary.ended {
        "the recording ended"
    } else {
        "stopped"
    };
    println!(
        "sink {how}: {described} holds recording {} up to position {} ({} records written now)",
        summary.recording_id, summary.position, summary.records
    );
    drop(driver);
    Ok(ExitCode::SUCCESS)
}

/// Rates between two progress lines.
struct Progress {
    at: Instant,
    records: u64,
}

impl Progress {
    fn new(metrics: &SinkMetrics) -> Self {
        Self {
            at: Instant::now(),
            records: metrics.records.get(),
        }
    }

    fn line(&mut self, metrics: &SinkMetrics) -> String {
        let now = Instant::now();
        let records = metrics.records.get();
        let seconds = now.duration_since(self.at).as_secs_f64().max(1e-9);
        let rate = (records - self.records) as f64 / seconds;
        self.at = now;
        self.records = records;
        let phase = if metrics.merged.get() == 1 {
            "live"
        } else {
            "replaying"
        };
        format!(
            "sink: position {} lag {} B, {rate:.0} records/s, {records} records, {phase}, {} retries",
            metrics.position.get(),
            metrics.lag_bytes(),
            metrics.destination_retries.get() + metrics.source_retries.get()
        )
    }
}

fn print_status(what: &str, resume: Option<Resume>, archive: &ArchiveArgs) -> Result<ExitCode> {
    let Some(resume) = resume else {
        println!("{what}: empty");
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "{what}: recording {} up to position {}",
        resume.recording_id, resume.position
    );
    if archive.archive.is_some() {
        let driver = archive.driver.resolve(false)?;
        let mut client = ArchiveClient::connect(archive.client_config(&driver.dir))
            .with_context(|| format!("connect to the archive at {}", archive.channel()))?;
        let Some(descriptor) = client.list_recording(resume.recording_id)? else {
            bail!("the archive has no recording {}", resume.recording_id);
        };
        let (end, state) = if descriptor.is_active() {
            let recorded = client
                .recording_position(resume.recording_id)?
                .unwrap_or(descriptor.start_position);
            (recorded, "active")
        } else {
            (descriptor.stop_position, "stopped")
        };
        println!(
            "recording {} ({state}) ends at {end}: lag {} B",
            resume.recording_id,
            (end - resume.position).max(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}
