//! Three `tern cluster node` processes on loopback, for the CLI's cluster tests: a config file
//! with free UDP ports, each member with a media driver of its own in a fresh directory. Knows
//! nothing of tern-cluster's types: the members are host:port text, as in the config.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One member of a [`Cluster`], as the config file names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member id (1, 2, 3).
    pub id: u64,
    /// UDP host:port of its consensus subscription.
    pub consensus: String,
    /// UDP host:port of its ingress subscription.
    pub ingress: String,
}

/// Three members run by the `tern` binary, killed (and their driver directories deleted) when
/// dropped.
pub struct Cluster {
    /// The config file (`cluster.toml` in the test's directory; data in `<dir>/data`).
    pub config: PathBuf,
    /// The members, 1 to 3.
    pub members: Vec<Member>,
    tern: String,
    nodes: Vec<Option<Child>>,
    aeron_dirs: Vec<String>,
}

impl Cluster {
    /// Write `dir/cluster.toml` (members 1 to 3 on free loopback ports, data in `dir/data`,
    /// cluster id `cluster_id`) and start every member with the `tern` binary at `tern`.
    pub fn start(tern: &str, dir: &Path, cluster_id: u64) -> Self {
        let members: Vec<Member> = (1..=3)
            .map(|id| Member {
                id,
                consensus: format!("localhost:{}", crate::free_udp_port()),
                ingress: format!("localhost:{}", crate::free_udp_port()),
            })
            .collect();
        let mut text = format!(
            "data_dir = {:?}\ncluster_id = {cluster_id}\n",
            dir.join("data")
        );
        for member in &members {
            text.push_str(&format!(
                "[[members]]\nid = {}\nconsensus = {:?}\ningress = {:?}\n",
                member.id, member.consensus, member.ingress
            ));
        }
        let config = dir.join("cluster.toml");
        std::fs::write(&config, text).expect("config");
        let aeron_dirs = (1..=3)
            .map(|id| crate::temp_aeron_dir(&format!("cluster-{id}")))
            .collect();
        let mut cluster = Self {
            config,
            members,
            tern: tern.to_string(),
            nodes: vec![None, None, None],
            aeron_dirs,
        };
        for id in 1..=3 {
            cluster.spawn(id);
        }
        cluster
    }

    /// The config file's path as text, for command lines.
    pub fn config_arg(&self) -> String {
        self.config.to_string_lossy().into_owned()
    }

    /// Start member `id` (again).
    pub fn spawn(&mut self, id: u64) {
        let index = (id - 1) as usize;
        let child = Command::new(&self.tern)
            .args(["cluster", "node", "--config"])
            .arg(&self.config)
            .args([
                "--member",
                &id.to_string(),
                "--embedded-driver",
                "--aeron-dir",
            ])
            .arg(&self.aeron_dirs[index])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a node");
        self.nodes[index] = Some(child);
    }

    /// Kill member `id` (SIGKILL) and wait for it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.nodes[(id - 1) as usize].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop every member cleanly (SIGTERM) and wait for it (killed after 10 s).
    pub fn stop(&mut self) {
        for node in self.nodes.iter_mut() {
            if let Some(mut child) = node.take() {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=3 {
            self.kill(id);
        }
        for dir in &self.aeron_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
