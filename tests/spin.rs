//! I/O threads that poll for a while after work before they sleep, as long as that pays
//! (`LIBSESSION_IO_SPIN_US` sets the longest window).
//! A test binary of its own: the setting is read once, when the I/O threads start.

mod common;

use std::time::Duration;

use common::cpu::io_threads_cpu;
use common::*;
use session::Session;

/// Publishes `count` messages on `session`'s "spin" path, `gap` apart; returns the I/O threads'
/// CPU time and the wall time it took, once all have arrived.
fn traffic(session: &Session, inbox: &Inbox, count: usize, gap: Duration) -> (Duration, Duration) {
    let cpu = io_threads_cpu();
    let start = std::time::Instant::now();
    let already = inbox.0.lock().unwrap().len();
    for n in 0..count {
        std::thread::sleep(gap);
        session.publish("spin", &[n as u8]).unwrap();
    }
    assert!(inbox.wait_for(already + count, Duration::from_secs(5)));
    (io_threads_cpu() - cpu, start.elapsed())
}

#[test]
fn io_threads_poll_between_close_turns_and_sleep_when_work_is_sparse() {
    // Windows up to 10 ms, so that the test's own sleeps are the turns.
    std::env::set_var("LIBSESSION_IO_SPIN_US", "10000");
    let server = start_server();
    let session = Session::connect(config(&server.url()), None).unwrap();
    let inbox = Inbox::default();
    session.subscribe("spin", inbox.handler()).unwrap();

    // Turns of 2 ms: the window grows to cover them (in about ten turns), then the session's I/O
    // thread polls from one message to the next.
    traffic(&session, &inbox, 20, Duration::from_millis(2));
    let (polled, took) = traffic(&session, &inbox, 30, Duration::from_millis(2));
    assert!(polled >= took / 4, "{polled:?} of CPU over {took:?} of 2 ms turns");
    let received: Vec<u8> = inbox.0.lock().unwrap().iter().map(|(_, d)| d[0]).collect();
    assert_eq!(received, (0..20).chain(0..30).collect::<Vec<u8>>(), "in order, none lost");

    // Idle: after at most one window the threads sleep.
    std::thread::sleep(Duration::from_millis(100));
    let before = io_threads_cpu();
    std::thread::sleep(Duration::from_millis(500));
    let idle = io_threads_cpu() - before;
    assert!(idle < Duration::from_millis(20), "{idle:?} of CPU while idle");

    // Turns of 50 ms, with the acknowledgement 20 ms after each message: work comes later than
    // the longest window, and after a few turns the thread no longer polls.
    traffic(&session, &inbox, 10, Duration::from_millis(50));
    let (polled, took) = traffic(&session, &inbox, 10, Duration::from_millis(50));
    assert!(polled < Duration::from_millis(10), "{polled:?} of CPU over {took:?} of 50 ms turns");
}
