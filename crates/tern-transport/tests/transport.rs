//! The transport against a real embedded media driver.

use std::time::{Duration, Instant};
use tern_transport::{BackoffIdle, Client, DriverConfig, FragmentAssembler, Idle, MediaDriver};

/// A driver with 1 MiB IPC terms (messages longer than the MTU, many of them).
fn driver() -> MediaDriver {
    tern_testkit::driver_with("transport", |config| {
        config.ipc_term_length = Some(1024 * 1024);
        config.term_length = None;
        config.spies_simulate_connection = false;
    })
}

#[test]
fn ipc_messages_longer_than_the_mtu_are_reassembled_and_blocks_carry_raw_frames() {
    let driver = driver();
    let client = Client::connect(driver.dir()).expect("client connects");
    let subscription = client
        .add_subscription("aeron:ipc", 7)
        .expect("subscription");
    let publication = client.add_publication("aeron:ipc", 7).expect("publication");
    let spy = client
        .add_subscription("aeron:ipc", 7)
        .expect("second subscription");
    // Less than the publication window (half a term), as nothing reads until all are offered.
    let messages: Vec<Vec<u8>> = (0..50usize).map(|i| vec![i as u8; 1 + i * 300]).collect();
    let mut idle = BackoffIdle::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while spy.image_count() == 0 {
        assert!(Instant::now() < deadline, "image never appeared");
        idle.idle(0);
    }
    for message in &messages {
        loop {
            match publication.offer(message) {
                Ok(_) => break,
                Err(error) if error.is_retryable() => idle.idle(0),
                Err(error) => panic!("offer failed: {error}"),
            }
        }
    }
    let mut assembler = FragmentAssembler::new();
    let mut received: Vec<Vec<u8>> = Vec::new();
    while received.len() < messages.len() {
        assert!(
            Instant::now() < deadline,
            "got {} of {}",
            received.len(),
            messages.len()
        );
        let work = subscription
            .poll(
                |fragment, header| {
                    assembler.on_fragment(fragment, header, &mut |message, _| {
                        received.push(message.to_vec())
                    })
                },
                10,
            )
            .expect("poll");
        idle.idle(work);
    }
    assert_eq!(received, messages);

    // The same stream as raw blocks: frames with headers, positions contiguous from the join.
    let image = spy.images().pop().expect("an image");
    assert_eq!(image.info().session_id, publication.session_id());
    let mut next = image.info().join_position;
    let end = publication.position();
    while next < end {
        assert!(
            Instant::now() < deadline,
            "blocks stopped at {next} of {end}"
        );
        let consumed = image
            .block_poll(
                |block, position| {
                    assert_eq!(position, next);
                    let frame_length = i32::from_le_bytes(block[0..4].try_into().unwrap());
                    assert!(frame_length >= 32);
                    next += block.len() as i64;
                },
                64 * 1024,
            )
            .expect("block poll");
        idle.idle(consumed);
    }
    assert_eq!(next, end);
}

#[test]
fn image_events_report_a_publisher_coming_and_going() {
    let driver = driver();
    let client = Client::connect(driver.dir()).expect("client connects");
    let subscription = client
        .add_subscription("aeron:ipc", 8)
        .expect("subscription");
    let publication = client
        .add_exclusive_publication("aeron:ipc", 8)
        .expect("publication");
    let session_id = publication.session_id();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.is_empty() {
        assert!(Instant::now() < deadline, "no available event");
        events.extend(subscription.take_image_events());
        std::thread::sleep(Duration::from_millis(5));
    }
    let correlation_id = match &events[0] {
        tern_transport::ImageEvent::Available(info) => {
            assert_eq!(info.session_id, session_id);
            info.correlation_id
        }
        other => panic!("expected available, got {other:?}"),
    };
    drop(publication);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "no unavailable event");
        let more = subscription.take_image_events();
        if more.iter().any(|event| {
            matches!(event, tern_transport::ImageEvent::Unavailable { correlation_id: id, session_id: s, .. }
                if *id == correlation_id && *s == session_id)
        }) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Median, over `count` publishers coming one after another, of the time from a publisher being
/// added (by another client) to `client`'s subscription seeing its image: the subscriber's
/// conductor learns of the image when it wakes.
fn median_image_time(
    driver: &MediaDriver,
    client: &Client,
    stream_id: i32,
    count: usize,
) -> Duration {
    let publisher = Client::connect(driver.dir()).expect("publisher client");
    let subscription = client
        .add_subscription("aeron:ipc", stream_id)
        .expect("subscription");
    let mut times: Vec<Duration> = (0..count)
        .map(|_| {
            let publication = publisher
                .add_exclusive_publication("aeron:ipc", stream_id)
                .expect("publication");
            let added = Instant::now();
            while subscription.image_count() == 0 {
                assert!(added.elapsed() < Duration::from_secs(10), "no image");
                std::thread::sleep(Duration::from_micros(100));
            }
            let took = added.elapsed();
            drop(publication);
            while subscription.image_count() > 0 {
                assert!(added.elapsed() < Duration::from_secs(20), "the image stays");
                std::thread::sleep(Duration::from_millis(1));
            }
            took
        })
        .collect();
    times.sort();
    times[count / 2]
}

#[test]
fn the_client_conductor_idles_as_configured() {
    let driver = driver();
    let short = Client::connect_with_idle(driver.dir(), Duration::from_millis(1)).expect("client");
    let long = Client::connect_with_idle(driver.dir(), Duration::from_millis(200)).expect("client");
    let short_median = median_image_time(&driver, &short, 31, 5);
    let long_median = median_image_time(&driver, &long, 32, 5);
    // A 200 ms sleep puts the median near 100 ms; below 10 ms in 3 of 5 draws is ~0.1% likely.
    assert!(
        long_median > Duration::from_millis(10),
        "a 200 ms idle client saw images after {long_median:?}: the setting is not applied"
    );
    assert!(
        short_median < long_median / 2 && short_median < Duration::from_millis(50),
        "a 1 ms idle client saw images after {short_median:?} (200 ms idle: {long_median:?})"
    );
}

#[test]
fn counters_are_visible_with_the_value_set() {
    let driver = driver();
    let client = Client::connect(driver.dir()).expect("client connects");
    let counter = client
        .add_counter(1100, &7i64.to_le_bytes(), "tern test counter")
        .expect("counter");
    counter.set(42);
    assert_eq!(counter.get(), 42);
    assert!(counter.id() >= 0);
}

#[test]
fn a_client_without_a_driver_fails_with_a_clear_error() {
    let missing = std::env::temp_dir().join("tern-no-driver-here");
    let error = Client::connect(&missing.to_string_lossy())
        .err()
        .expect("no driver, no client");
    assert!(error.to_string().contains("tern-no-driver-here"), "{error}");
}

#[test]
fn a_second_driver_on_a_live_drivers_directory_is_refused_and_leaves_it_alone() {
    let first = driver();
    let cnc = std::path::Path::new(first.dir()).join("cnc.dat");
    let before = std::fs::metadata(&cnc)
        .expect("cnc.dat")
        .modified()
        .expect("mtime");
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&cnc).expect("cnc.dat"));
    let second = MediaDriver::launch(&DriverConfig {
        dir: Some(first.dir().to_string()),
        ..DriverConfig::default()
    });
    assert!(
        second.is_err(),
        "a live driver's directory must not be taken over"
    );
    let after = std::fs::metadata(&cnc).expect("cnc.dat still there");
    assert_eq!(std::os::unix::fs::MetadataExt::ino(&after), inode);
    assert!(after.modified().expect("mtime") >= before);
    let client = Client::connect(first.dir()).expect("the first driver still serves");
    client
        .add_subscription("aeron:ipc", 9)
        .expect("and takes requests");
}

#[test]
fn a_wildcard_udp_port_resolves_to_the_bound_port_and_session_ids_do_not_clash() {
    let driver = driver();
    let client = Client::connect(driver.dir()).expect("client connects");
    let subscription = client
        .add_subscription("aeron:udp?endpoint=127.0.0.1:0", 21)
        .expect("subscription");
    let mut idle = BackoffIdle::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let resolved = loop {
        if let Some(channel) = subscription
            .try_resolve_channel_endpoint_port()
            .expect("resolve")
        {
            break channel;
        }
        assert!(Instant::now() < deadline, "port never resolved");
        idle.idle(0);
    };
    let port: u16 = resolved
        .split("endpoint=127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('|').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {resolved}"));
    assert_ne!(port, 0, "{resolved}");

    // A publication to the resolved channel reaches the subscription.
    let publication = client
        .add_exclusive_publication(&resolved, 21)
        .expect("publication to the resolved channel");
    while !publication.is_connected() {
        assert!(Instant::now() < deadline, "publication never connected");
        idle.idle(0);
    }

    // Not UDP, or no wildcard: the channel as it is.
    let ipc = client
        .add_subscription("aeron:ipc?term-length=64k", 21)
        .expect("ipc subscription");
    assert_eq!(
        ipc.try_resolve_channel_endpoint_port()
            .expect("resolve ipc"),
        Some("aeron:ipc?term-length=64k".to_string())
    );

    let first = client.next_session_id(21).expect("a session id");
    let second = client.next_session_id(21).expect("another session id");
    assert_ne!(first, second);
    assert_ne!(first, publication.session_id());
    let a = client.next_correlation_id();
    let b = client.next_correlation_id();
    assert!(b > a, "{a} then {b}");
}
