//! `ipc-raw`: Aeron IPC throughput without the archive, one publisher thread to one subscriber
//! thread, each with its own client.

use super::{join_worker, spawn_worker, Abort, Bench};
use crate::report::CaseResult;
use crate::traffic::{self, CHANNEL, CONNECT_TIMEOUT};
use anyhow::bail;
use std::sync::mpsc;
use tern_transport::Client;

/// Send `messages` messages of `size` bytes from a publisher thread to a subscriber thread; time
/// from the first offer to the last message received.
///
/// # Errors
/// Either side failed, or the subscriber received something other than the messages in order.
pub fn run(bench: &Bench, size: usize, messages: u64) -> anyhow::Result<CaseResult> {
    let stream = bench.next_stream();
    let abort = Abort::default();
    let (ready, subscribed) = mpsc::channel();
    let aeron_dir = bench.aeron_dir.clone();
    let subscriber = spawn_worker("ipc-subscriber", &abort, move |abort| {
        let client = Client::connect(&aeron_dir)?;
        let subscription = client.add_subscription(CHANNEL, stream)?;
        let _ = ready.send(());
        traffic::count(&subscription, size, messages, abort)
    })?;
    if subscribed.recv_timeout(CONNECT_TIMEOUT).is_err() {
        abort.store(true, std::sync::atomic::Ordering::Release);
        join_worker(subscriber)?;
        bail!("the subscriber did not start");
    }
    let aeron_dir = bench.aeron_dir.clone();
    let publisher = spawn_worker("ipc-publisher", &abort, move |abort| {
        let client = Client::connect(&aeron_dir)?;
        let publication = client.add_exclusive_publication(CHANNEL, stream)?;
        traffic::wait_connected(&publication)?;
        traffic::publish(&publication, size, messages, 0, abort)
    })?;
    let published = join_worker(publisher);
    let counted = join_worker(subscriber)?;
    let published = published?;
    if counted.messages != messages || counted.bytes != messages * size as u64 {
        bail!(
            "received {} messages, {} bytes; expected {messages}, {}",
            counted.messages,
            counted.bytes,
            messages * size as u64
        );
    }
    let seconds = counted
        .finished
        .duration_since(published.started)
        .as_secs_f64();
    Ok(CaseResult::new("ipc-raw", size as u64, messages, seconds))
}
