//! `tern cluster`: run a member (`node`), ask members for their status (`status`), make them
//! snapshot (`snapshot`), try the example service as a client (`send`), and print the egress a
//! member recorded (`egress`).
//!
//! One config file describes the cluster (every member's endpoints) and, for a node, which member
//! it is and where its data goes:
//!
//! ```toml
//! member_id = 1                      # for `tern cluster node` (or --member)
//! data_dir = "data/cluster"          # the node's files go in <data_dir>/node-<id>
//! cluster_id = 0                     # in every consensus message; another cluster's are refused
//! record_egress = true               # each member records its egress in <node dir>/egress
//! [[members]]
//! id = 1
//! consensus = "localhost:20110"      # UDP host:port of its consensus subscription
//! ingress = "localhost:20111"        # UDP host:port of its ingress subscription
//! ```

use crate::util::{stop_signal, DriverArgs};
use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, Subcommand};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tern_cluster::agent::{MemberEndpoints, NodeAgent};
use tern_cluster::client::ClusterClient;
use tern_cluster::{KvService, NodeConfig, NodeStatus};
use tern_transport::{
    default_aeron_dir, BackoffIdle, Client, DriverConfig, Idle, MediaDriver, ThreadingMode,
};

/// Arguments of `tern cluster`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Run one member of the cluster (the example key-value service) until Ctrl-C.
    Node(NodeArgs),
    /// Print each member's role, term, commit and applied index, sessions and log position.
    Status(ClientArgs),
    /// Make every member (or --member) take a snapshot now, then print its status.
    Snapshot(ClientArgs),
    /// Connect as a client, send each MESSAGE to the service and print its reply.
    Send(SendArgs),
    /// Print the egress the service sent (one client's with --session), read from a member's
    /// egress recording: running or not.
    Egress(EgressArgs),
}

#[derive(Debug, ClapArgs)]
struct NodeArgs {
    /// The cluster's config file (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The member to run (default: the config's member_id).
    #[arg(long, value_name = "ID")]
    member: Option<u64>,
    #[command(flatten)]
    driver: DriverArgs,
}

#[derive(Debug, ClapArgs)]
struct ClientArgs {
    /// The cluster's config file (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Only this member.
    #[arg(long, value_name = "ID")]
    member: Option<u64>,
    /// How long to wait for each member's answer, in ms.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    timeout_ms: u64,
    #[command(flatten)]
    driver: DriverArgs,
}

#[derive(Debug, ClapArgs)]
struct SendArgs {
    /// The cluster's config file (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The messages, one request each (`put KEY VALUE`, `get KEY`, `del KEY`, `count`, or any
    /// text to echo).
    #[arg(required = true, value_name = "MESSAGE")]
    messages: Vec<String>,
    /// How long to wait for the session and for each reply, in ms.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    timeout_ms: u64,
    #[command(flatten)]
    driver: DriverArgs,
}

#[derive(Debug, ClapArgs)]
struct EgressArgs {
    /// The cluster's config file (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Read this member's egress recording (default: the first member of the config whose
    /// directory exists).
    #[arg(long, value_name = "ID")]
    member: Option<u64>,
    /// Only the egress of this cluster session (a client; `tern cluster send` prints its id).
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    session: Option<i64>,
    /// Start at the first message made at or after this cluster time: RFC 3339
    /// (2026-11-24T23:25:28Z), now, or relative to now (-5m, -90s).
    #[arg(long, value_name = "TIME", value_parser = crate::util::parse_time, allow_hyphen_values = true)]
    from_time: Option<i64>,
    /// Print at the original pace (the messages' cluster times) times this factor (0.01 to
    /// 1000). Default: as fast as possible.
    #[arg(long, value_parser = super::replay::parse_speed)]
    speed: Option<f64>,
    /// Keep printing as the member records more, until it stops (or Ctrl-C).
    #[arg(long)]
    follow: bool,
    /// How to print each message's payload, after its position, session, sequence, egress
    /// number, log index and cluster time: text, hex, or none (only the count at the end).
    #[arg(long, value_enum, default_value_t = EgressPrint::Text)]
    print: EgressPrint,
    /// Print a progress line to standard error every second.
    #[arg(long)]
    progress: bool,
    /// Ask the members over Aeron (from any machine that reaches them) instead of reading a
    /// member's files: --session's recorded egress after --after, from --member first, from
    /// the next member when one is down. The position column is `-`.
    /// With --session 0 (the shared output stream) and --follow: follow it live from the
    /// leader after --after, across leader changes, until Ctrl-C.
    #[arg(long, requires = "session", conflicts_with_all = ["from_time", "speed"])]
    remote: bool,
    /// With --remote: start after this session sequence (the last message the client has).
    #[arg(long, value_name = "SEQ", requires = "remote", default_value_t = 0)]
    after: u64,
    /// With --remote: give up after this long, in ms (a replay; --follow runs until stopped).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 30_000,
        requires = "remote",
        conflicts_with = "follow"
    )]
    timeout_ms: u64,
    #[command(flatten)]
    driver: DriverArgs,
}

/// How `tern cluster egress` prints a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EgressPrint {
    Text,
    Hex,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    member_id: Option<u64>,
    data_dir: Option<PathBuf>,
    credentials: Option<String>,
    session_timeout_ms: Option<u64>,
    snapshot_every: Option<u64>,
    cluster_id: Option<u64>,
    record_egress: Option<bool>,
    members: Vec<MemberFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberFile {
    id: u64,
    consensus: String,
    ingress: String,
}

fn load(path: &PathBuf) -> Result<(ConfigFile, Vec<MemberEndpoints>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read cluster config {}", path.display()))?;
    let file: ConfigFile = toml::from_str(&text).map_err(|error| {
        // One line: where, and what (TOML's own text draws the line under it).
        let line = error
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        anyhow::anyhow!(
            "cluster config {}{}: {}",
            path.display(),
            line.map_or(String::new(), |line| format!(" line {line}")),
            error.message().trim()
        )
    })?;
    if ![1, 3, 5].contains(&file.members.len()) {
        bail!(
            "cluster config {}: {} members (1, 3 or 5)",
            path.display(),
            file.members.len()
        );
    }
    let mut ids: Vec<u64> = file.members.iter().map(|member| member.id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != file.members.len() || ids.contains(&0) {
        bail!(
            "cluster config {}: member ids must be distinct and start at 1",
            path.display()
        );
    }
    let members = file
        .members
        .iter()
        .map(|member| MemberEndpoints {
            id: member.id,
            consensus: member.consensus.clone(),
            ingress: member.ingress.clone(),
        })
        .collect();
    Ok((file, members))
}

impl Args {
    /// Whether this is `tern cluster node` (a long-running process).
    pub fn is_node(&self) -> bool {
        matches!(self.command, ClusterCommand::Node(_))
    }
}

/// Run `tern cluster`.
pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        ClusterCommand::Node(args) => node(args),
        ClusterCommand::Status(args) => status(args, false),
        ClusterCommand::Snapshot(args) => status(args, true),
        ClusterCommand::Send(args) => send(args),
        ClusterCommand::Egress(args) => egress(args),
    }
}

/// Where the members' directories are: `<data_dir>/node-<id>`.
fn data_dir(file: &ConfigFile) -> PathBuf {
    file.data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("data/cluster"))
}

fn node_dir(data_dir: &std::path::Path, member_id: u64) -> PathBuf {
    data_dir.join(format!("node-{member_id}"))
}

fn node(args: NodeArgs) -> Result<ExitCode> {
    let (file, members) = load(&args.config)?;
    let Some(member_id) = args.member.or(file.member_id) else {
        bail!(
            "which member? set member_id in {} or pass --member",
            args.config.display()
        );
    };
    if !members.iter().any(|member| member.id == member_id) {
        bail!("member {member_id} is not in {}", args.config.display());
    }
    let mut config = NodeConfig::new(
        member_id,
        members.iter().map(|member| member.id).collect(),
        node_dir(&data_dir(&file), member_id),
    );
    config.credentials = file.credentials.map(String::into_bytes);
    if let Some(millis) = file.session_timeout_ms {
        config.session_timeout_ns = millis as i64 * 1_000_000;
    }
    if let Some(every) = file.snapshot_every {
        config.snapshot_every = every;
    }
    if let Some(record) = file.record_egress {
        config.record_egress = record;
    }
    if let Some(cluster_id) = file.cluster_id {
        config.cluster_id = cluster_id;
    }
    // One process per member and data directory: its lock says so (and who holds it).
    std::fs::create_dir_all(&config.dir)
        .with_context(|| format!("create {}", config.dir.display()))?;
    let _lock = match tern_store::lock_directory(&config.dir) {
        Ok(lock) => lock,
        Err(tern_store::StoreError::Locked { holder, .. }) => bail!(
            "member {member_id} runs already in {} ({holder})",
            config.dir.display()
        ),
        Err(error) => return Err(error).context(format!("lock {}", config.dir.display())),
    };
    // Members on one machine each embed their own driver, by default in a directory of the
    // member's: with the lock held, a driver's files there are a dead member's (a kill -9) and
    // are replaced at once rather than after Aeron's 10 s liveness timeout. --aeron-dir alone
    // attaches to a running driver.
    let driver = if args.driver.aeron_dir.is_none() || args.driver.embedded_driver {
        let dir = args
            .driver
            .aeron_dir
            .clone()
            .unwrap_or_else(|| format!("{}-cluster-{member_id}", default_aeron_dir()));
        let embedded = MediaDriver::launch(&DriverConfig {
            dir: Some(dir.clone()),
            threading: ThreadingMode::Shared,
            delete_dir_on_start: true,
            ..DriverConfig::default()
        })
        .with_context(|| format!("start an embedded media driver in {dir}"))?;
        crate::util::DriverHandle {
            dir,
            embedded: Some(embedded),
        }
    } else {
        args.driver.resolve(false)?
    };
    let client = Client::connect(&driver.dir).context("connect to the media driver")?;
    let dir = config.dir.clone();
    let agent = NodeAgent::new(config, members, client, KvService::new())
        .with_context(|| format!("start member {member_id} in {}", dir.display()))?;
    let status = agent.node().status();
    eprintln!(
        "member {member_id} running in {} (term {}, log to index {}, snapshot at {}); Ctrl-C to stop",
        dir.display(),
        status.term,
        status.last_index,
        status.snapshot_index
    );
    let stop = stop_signal()?;
    agent.run(&stop).context("the node stopped")?;
    drop(driver);
    Ok(ExitCode::SUCCESS)
}

fn client_driver(driver: &mut DriverArgs) -> Result<crate::util::DriverHandle> {
    if driver.aeron_dir.is_none() {
        driver.aeron_dir = Some(format!(
            "{}-client-{}",
            default_aeron_dir(),
            std::process::id()
        ));
        driver.embedded_driver = true;
    }
    driver.resolve(true)
}

fn status(mut args: ClientArgs, snapshot: bool) -> Result<ExitCode> {
    let (_, members) = load(&args.config)?;
    if let Some(member) = args.member {
        if !members.iter().any(|known| known.id == member) {
            bail!("member {member} is not in {}", args.config.display());
        }
    }
    let driver = client_driver(&mut args.driver)?;
    let aeron = Client::connect(&driver.dir).context("connect to the media driver")?;
    let ids: Vec<u64> = members
        .iter()
        .map(|member| member.id)
        .filter(|id| args.member.is_none_or(|only| only == *id))
        .collect();
    let mut client = ClusterClient::new(aeron, members, "localhost:0")?;
    println!(
        "{:>6}  {:<9}  {:>6}  {:>5}  {:>12}  {:>12}  {:>12}  {:>9}  {:>8}  {:>12}  {:>12}  {:>12}",
        "member",
        "role",
        "leader",
        "term",
        "commit",
        "applied",
        "last",
        "snapshot",
        "sessions",
        "log_pos",
        "egress",
        "egress_synced"
    );
    let mut missing = 0;
    for id in ids {
        match client.status_of(id, snapshot, Duration::from_millis(args.timeout_ms)) {
            Some(status) => print_status(&status),
            None => {
                missing += 1;
                println!("{id:>6}  no answer in {} ms", args.timeout_ms);
            }
        }
    }
    drop(client);
    drop(driver);
    Ok(if missing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_status(status: &NodeStatus) {
    println!(
        "{:>6}  {:<9}  {:>6}  {:>5}  {:>12}  {:>12}  {:>12}  {:>9}  {:>8}  {:>12}  {:>12}  {:>12}",
        status.member_id,
        status.role.name(),
        status
            .leader
            .map_or("-".to_string(), |leader| leader.to_string()),
        status.term,
        status.commit_index,
        status.applied_index,
        status.last_index,
        status.snapshot_index,
        status.sessions,
        status.log_position,
        status.egress_recorded,
        status.egress_synced
    );
}

fn send(mut args: SendArgs) -> Result<ExitCode> {
    let (file, members) = load(&args.config)?;
    let driver = client_driver(&mut args.driver)?;
    let aeron = Client::connect(&driver.dir).context("connect to the media driver")?;
    let mut client = ClusterClient::new(aeron, members, "localhost:0")?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let credentials = file.credentials.unwrap_or_default().into_bytes();
    let session = client.connect(&credentials, timeout)?;
    eprintln!(
        "session {session} with leader {}",
        client.leader().unwrap_or(0)
    );
    for message in &args.messages {
        let reply = client
            .request(message.as_bytes(), timeout)
            .with_context(|| format!("send {message:?}"))?;
        println!("{}", String::from_utf8_lossy(&reply.payload));
    }
    client.close();
    // Let the close reach the leader before the driver goes.
    std::thread::sleep(Duration::from_millis(50));
    drop(client);
    drop(driver);
    Ok(ExitCode::SUCCESS)
}

/// Print a member's egress recording through `tern replay`'s printer: recording 0 of
/// `<node dir>/egress`, filtered by the tern egress key (the cluster session id), timed by the
/// tern egress header's cluster timestamp.
fn egress(mut args: EgressArgs) -> Result<ExitCode> {
    if args.remote {
        return remote_egress(&mut args);
    }
    let (file, members) = load(&args.config)?;
    let data_dir = data_dir(&file);
    let member_id = match args.member {
        Some(id) => {
            if !members.iter().any(|member| member.id == id) {
                bail!("member {id} is not in {}", args.config.display());
            }
            let dir = node_dir(&data_dir, id);
            if !dir.is_dir() {
                bail!(
                    "member {id} has no directory {} (has it run with this config here?)",
                    dir.display()
                );
            }
            id
        }
        None => members
            .iter()
            .map(|member| member.id)
            .find(|id| node_dir(&data_dir, *id).is_dir())
            .with_context(|| {
                format!(
                    "no member has a directory in {} (has the cluster run with this config here?)",
                    data_dir.display()
                )
            })?,
    };
    let dir = node_dir(&data_dir, member_id).join(tern_cluster::egress::EGRESS_DIR);
    let recording = tern_cluster::egress::EGRESS_RECORDING_ID;
    let is_egress = dir.join(tern_archive::CATALOG_FILE).is_file()
        && tern_archive::ArchiveView::open(&dir)
            .and_then(|view| view.recording(recording))
            .is_ok_and(|view| {
                view.descriptor.stripped_channel == tern_cluster::egress::EGRESS_CHANNEL
            });
    if !is_egress {
        bail!(
            "member {member_id} has no egress recording in {}",
            dir.display()
        );
    }
    eprintln!("member {member_id}'s egress in {}", dir.display());
    let printing = super::replay::Printing {
        id: recording,
        from: None,
        from_time: args.from_time,
        length: None,
        follow: args.follow,
        speed: args.speed,
        time_source: tern_archive::TimeSource::TernEgress,
        key: args.session.map(|session| tern_archive::KeyFilter {
            kind: tern_archive::KeyKind::TernEgress,
            value: session,
        }),
        controls: false,
        progress: args.progress,
        print: args.print.format(),
    };
    super::replay::print(&printing, &dir)
}

impl EgressPrint {
    fn format(self) -> super::replay::PrintFormat {
        match self {
            Self::Text => super::replay::PrintFormat::Egress,
            Self::Hex => super::replay::PrintFormat::EgressHex,
            Self::None => super::replay::PrintFormat::None,
        }
    }
}

/// `tern cluster egress --remote`: a session's recorded egress read over Aeron from the
/// members ([`ClusterClient::replay_egress`]).
fn remote_egress(args: &mut EgressArgs) -> Result<ExitCode> {
    let (_, members) = load(&args.config)?;
    if let Some(id) = args.member {
        if !members.iter().any(|member| member.id == id) {
            bail!("member {id} is not in {}", args.config.display());
        }
    }
    let session = args.session.context("--remote needs --session")?;
    if args.follow && session != tern_cluster::SHARED_SESSION_ID {
        bail!(
            "--remote --follow follows the shared output stream (--session 0), not session {session}: a session's live egress goes to its own client"
        );
    }
    if args.follow && args.member.is_some() {
        bail!(
            "--remote --follow asks every member (the leader serves it): --member is for a replay"
        );
    }
    let driver = client_driver(&mut args.driver)?;
    let aeron = Client::connect(&driver.dir).context("connect to the media driver")?;
    let mut client = ClusterClient::new(aeron, members, "localhost:0")?;
    let after = tern_cluster::client::EgressMark {
        sequence: args.after,
        number: 0,
        timestamp_ns: 0,
    };
    let format = args.print.format();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.follow {
        let stop = stop_signal()?;
        client.follow_shared(after);
        let mut idle = BackoffIdle::new();
        let mut printed = 0u64;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let work = client.poll();
            let messages = client.take_shared();
            for egress in &messages {
                let bytes = tern_cluster::protocol::encode_egress(egress);
                super::replay::write_message(&mut out, format, "-", &bytes)
                    .context("write the egress")?;
            }
            if !messages.is_empty() {
                printed += messages.len() as u64;
                std::io::Write::flush(&mut out).context("write the egress")?;
            }
            idle.idle(work);
        }
        let last = client
            .shared_mark()
            .map_or(args.after, |(mark, _)| mark.sequence);
        eprintln!(
            "the shared stream: {printed} messages after sequence {}, up to {last}",
            args.after
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = None;
    let mut on_message = |egress: &tern_cluster::service::Egress| {
        if failed.is_none() {
            let bytes = tern_cluster::protocol::encode_egress(egress);
            if let Err(error) = super::replay::write_message(&mut out, format, "-", &bytes) {
                failed = Some(error);
            }
        }
    };
    let replayed = client.replay_egress(
        session,
        after,
        args.member,
        Duration::from_millis(args.timeout_ms),
        &mut on_message,
    )?;
    if let Some(error) = failed {
        return Err(error).context("write the egress");
    }
    std::io::Write::flush(&mut out).context("write the egress")?;
    eprintln!(
        "session {session}: {} messages after sequence {} from member {} ({})",
        replayed.messages, args.after, replayed.member, replayed.detail
    );
    Ok(ExitCode::SUCCESS)
}
