//! One member's agent over a real media driver (a single-member cluster): its publications to
//! clients stay bounded however many clients ask for its status, each on a channel of its own
//! (as `tern cluster status` does), and those no session uses are closed when idle.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tern_cluster::agent::{AgentCounts, MemberEndpoints, NodeAgent};
use tern_cluster::client::ClusterClient;
use tern_cluster::{KvService, NodeConfig, Role};
use tern_transport::{
    BackoffIdle, Client, DriverConfig, Idle, MediaDriver, ThreadingMode, DEFAULT_CLIENT_IDLE_SLEEP,
};

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .map(|address| address.port())
        .expect("a free UDP port")
}

/// The agent on a thread of its own (Aeron's handles stay on the thread that made them); asked
/// for its counts through `ask`.
struct Member {
    stop: Arc<AtomicBool>,
    ask: mpsc::Sender<mpsc::Sender<(AgentCounts, Role)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    fn start(aeron_dir: &str, dir: &Path, member: MemberEndpoints) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ask, asked) = mpsc::channel::<mpsc::Sender<(AgentCounts, Role)>>();
        let aeron_dir = aeron_dir.to_string();
        let mut config = NodeConfig::new(1, vec![1], dir.to_path_buf());
        config.session_timeout_ns = 120_000_000_000;
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let client = Client::connect(&aeron_dir).expect("agent client");
            let mut agent =
                NodeAgent::new(config, vec![member], client, KvService::new()).expect("agent");
            let mut idle = BackoffIdle::new();
            while !stopping.load(Ordering::Acquire) {
                let work = agent.do_work().expect("work");
                while let Ok(answer) = asked.try_recv() {
                    let _ = answer.send((agent.counts(), agent.node().role()));
                }
                idle.idle(work);
            }
        });
        Self {
            stop,
            ask,
            thread: Some(thread),
        }
    }

    fn counts(&self) -> (AgentCounts, Role) {
        let (answer, answered) = mpsc::channel();
        self.ask.send(answer).expect("agent running");
        answered
            .recv_timeout(Duration::from_secs(5))
            .expect("agent answers")
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn many_status_requests_do_not_grow_the_members_publications() {
    let aeron_dir = std::env::temp_dir()
        .join(format!(
            "tern-test-cluster-agent-{}-{}",
            std::process::id(),
            Client::nano_clock()
        ))
        .to_string_lossy()
        .into_owned();
    let _driver = MediaDriver::launch(&DriverConfig {
        dir: Some(aeron_dir.clone()),
        threading: ThreadingMode::Shared,
        delete_dir_on_start: true,
        delete_dir_on_shutdown: true,
        term_length: Some(64 << 10),
        ipc_term_length: Some(64 << 10),
        ..DriverConfig::default()
    })
    .expect("media driver");
    let data = tempfile::tempdir().expect("temp dir");
    let member = MemberEndpoints {
        id: 1,
        consensus: format!("localhost:{}", free_udp_port()),
        ingress: format!("localhost:{}", free_udp_port()),
    };
    let running = Member::start(&aeron_dir, data.path(), member.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while running.counts().1 != Role::Leader {
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(20));
    }
    let connect = || {
        let aeron = Client::connect_with_idle(&aeron_dir, DEFAULT_CLIENT_IDLE_SLEEP)
            .expect("client connects");
        ClusterClient::new(aeron, vec![member.clone()], "localhost:0").expect("cluster client")
    };
    // A session: its channel's publication stays.
    let mut session = connect();
    session
        .connect(b"", Duration::from_secs(10))
        .expect("a session");
    assert_eq!(running.counts().0.response_publications, 1);
    // Many clients, each asking once on a channel of its own.
    let asked = 80;
    for i in 0..asked {
        let mut client = connect();
        let status = client
            .status_of(1, false, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("status {i} answered"));
        assert_eq!(status.sessions, 1);
    }
    let (counts, _) = running.counts();
    eprintln!("after {asked} status requests: {counts:?}");
    assert!(
        counts.response_publications > 1 && counts.response_publications <= 1 + 64,
        "{} response publications after {asked} status requests",
        counts.response_publications
    );
    // Unused for 5 s, the status channels' publications are closed; the session's stays.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        session.poll();
        let (counts, _) = running.counts();
        if counts.response_publications == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} response publications left",
            counts.response_publications
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let reply = session
        .request(b"put k 1", Duration::from_secs(5))
        .expect("the session still answered");
    assert_eq!(reply.payload, b"ok k");
}
