//! An Aeron client that adds nothing costs next to no CPU. Alone in its test binary: it reads the
//! CPU time of every client conductor thread of the process.

use std::time::Duration;
use tern_transport::Client;

/// CPU time (clock ticks, 100 a second) of each of this process's threads named `name`.
fn thread_ticks(name: &str) -> std::collections::HashMap<String, u64> {
    let mut threads = std::collections::HashMap::new();
    for task in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // After the parenthesised name: utime and stime are the 12th and 13th fields.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks: u64 = [11, 12]
            .iter()
            .map(|&index| {
                fields
                    .get(index)
                    .and_then(|value| value.parse::<u64>().ok())
                    .expect("a stat field")
            })
            .sum();
        threads.insert(task.file_name().to_string_lossy().into_owned(), ticks);
    }
    threads
}

#[test]
fn a_client_that_adds_nothing_costs_little_cpu() {
    // Aeron's C client finds its heartbeat counter, which the driver makes on the client's first
    // command, by scanning every counter slot on each duty cycle from its first keepalive check
    // (500 ms in) until it is there: a quarter of a core at a 1 ms idle sleep, for as long as a
    // client adds nothing (a replayer before its first replay). tern's clients register as they
    // connect.
    let driver = tern_testkit::driver("idle-client");
    // One client that subscribes, one that adds nothing.
    let busy =
        Client::connect_with_idle(driver.dir(), Duration::from_millis(1)).expect("client connects");
    let _subscription = busy.add_subscription("aeron:ipc", 5).expect("subscription");
    let idle =
        Client::connect_with_idle(driver.dir(), Duration::from_millis(1)).expect("client connects");
    std::thread::sleep(Duration::from_millis(1500));
    let before = thread_ticks("aeron-client");
    std::thread::sleep(Duration::from_secs(2));
    let after = thread_ticks("aeron-client");
    assert_eq!(after.len(), 2, "two client conductors: {after:?}");
    let used = after
        .iter()
        .map(|(thread, ticks)| ticks - before.get(thread).copied().unwrap_or(0))
        .max()
        .unwrap_or(0);
    drop(idle);
    // 2 s is 200 ticks of one core: 20 ticks is 10% (the scan took about 50).
    assert!(
        used < 20,
        "a client conductor used {used} ticks of 200 in 2 s"
    );
}
