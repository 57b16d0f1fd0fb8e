//! The exactly-once test shared by the transports: 10,000 messages each way through a relay cut
//! 20 times at pseudo-random moments, or through twelve outages; every message must arrive exactly
//! once and in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use session::{ErrorCode, Session, State};

use super::relay::Relay;
use super::{config, reconnecting, start_server, Inbox};

const N: u32 = 10_000;

/// Publishes, waiting while the session's queue is full (the application's back-pressure).
pub fn publish_patiently(session: &Session, path: &str, data: &[u8]) {
    loop {
        match session.publish(path, data) {
            Ok(()) => return,
            Err(e) if e.code() == ErrorCode::QueueFull => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("{e}"),
        }
    }
}

/// What the relay does to the session's connections while messages flow.
#[derive(Clone, Copy, Debug)]
pub enum Faults {
    /// 20 resets of every connection, 10 to 70 ms apart.
    Cuts,
    /// 12 outages of 0.6 s, 100 to 400 ms apart: every connection reset and new ones refused
    /// (ECONNREFUSED).
    Outages,
}

/// Runs the test with the session connecting through the relay with `scheme` (ws or xhr).
pub fn ten_thousand_each_way_through_twenty_cuts(scheme: &str) {
    ten_thousand_each_way_through(scheme, Faults::Cuts)
}

/// Runs the test with the session connecting with `scheme` through a relay that does `faults`.
pub fn ten_thousand_each_way_through(scheme: &str, faults: Faults) {
    let server = start_server();
    let relay = Arc::new(Relay::start(server.addr()));
    let mut cfg = reconnecting(&relay.url(scheme, "127.0.0.1"));
    cfg.options.maximum_queue_size = 2 * N;
    let session = Session::connect(cfg, None).unwrap();
    let inbox = Inbox::default();
    session.subscribe("burst/", inbox.handler()).unwrap();
    // Wait until the subscription is in place before publishing.
    session.publish("burst/ready", b"").unwrap();
    assert!(inbox.wait_for(1, Duration::from_secs(10)));
    let other = Session::connect(config(&server.url()), None).unwrap();

    let cutter = {
        let relay = relay.clone();
        std::thread::spawn(move || {
            let mut seed = 0x2545F4914F6CDD1Du64;
            let (count, least, spread) = match faults {
                Faults::Cuts => (20, 10, 60),
                Faults::Outages => (12, 100, 300),
            };
            for _ in 0..count {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                std::thread::sleep(Duration::from_millis(least + seed % spread));
                if let Faults::Outages = faults {
                    relay.set_refusing(true);
                    relay.cut();
                    std::thread::sleep(Duration::from_millis(600));
                    relay.set_refusing(false);
                } else {
                    relay.cut();
                }
            }
        })
    };
    // This session publishes to itself (client to server and back); the other publishes to it.
    // Through outages, messages flow all the while: about one a millisecond each way.
    let pace = move |_: u32| {
        if matches!(faults, Faults::Outages) {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let publisher = std::thread::spawn(move || {
        for i in 0..N {
            publish_patiently(&other, "burst/in", &i.to_be_bytes());
            pace(i);
        }
        other
    });
    for i in 0..N {
        publish_patiently(&session, "burst/out", &i.to_be_bytes());
        pace(i);
    }
    let other = publisher.join().unwrap();
    cutter.join().unwrap();
    assert!(
        inbox.wait_for(1 + 2 * N as usize, Duration::from_secs(90)),
        "received {} of {}; state {:?}",
        inbox.len(),
        1 + 2 * N,
        session.state()
    );
    std::thread::sleep(Duration::from_millis(300));
    let received = inbox.0.lock().unwrap().clone();
    assert_eq!(received.len(), 1 + 2 * N as usize, "no duplicates");
    let mut next: HashMap<String, u32> = HashMap::new();
    for (path, data) in received.iter().skip(1) {
        let n = u32::from_be_bytes(data[..4].try_into().unwrap());
        let expected = next.entry(path.clone()).or_insert(0);
        assert_eq!(n, *expected, "{path}: out of order or lost");
        *expected += 1;
    }
    assert_eq!((next["burst/out"], next["burst/in"]), (N, N));
    assert_eq!(session.state(), State::ConnectedActive);
    drop(other);
}
