//! I/O threads that poll for a while after work before they sleep (`LIBSESSION_IO_SPIN_US`).
//! A test binary of its own: the setting is read once, when the I/O threads start.

mod common;

use std::time::Duration;

use common::*;
use session::Session;

/// CPU time the library's I/O threads have used, from /proc (nanosecond precision).
fn io_threads_cpu() -> Duration {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if name.starts_with("libsession-io") {
            let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
            total += stat.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

#[test]
fn io_threads_poll_for_the_window_after_work_then_sleep() {
    std::env::set_var("LIBSESSION_IO_SPIN_US", "10000");
    let server = start_server();
    let session = Session::connect(config(&server.url()), None).unwrap();
    let inbox = Inbox::default();
    session.subscribe("spin", inbox.handler()).unwrap();
    for n in 0..100u8 {
        session.publish("spin", &[n]).unwrap();
    }
    assert!(inbox.wait_for(100, Duration::from_secs(5)));
    let received: Vec<u8> = inbox.0.lock().unwrap().iter().map(|(_, d)| d[0]).collect();
    assert_eq!(received, (0..100).collect::<Vec<u8>>());

    // Work, then the window: the session's I/O thread keeps running for about 10 ms.
    std::thread::sleep(Duration::from_millis(100));
    let before = io_threads_cpu();
    session.publish("spin", b"one more").unwrap();
    assert!(inbox.wait_for(101, Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(50));
    let polled = io_threads_cpu() - before;
    assert!(polled >= Duration::from_millis(3), "{polled:?} of CPU after work");

    // Idle: after the window the threads sleep.
    let before = io_threads_cpu();
    std::thread::sleep(Duration::from_millis(500));
    let idle = io_threads_cpu() - before;
    assert!(idle < Duration::from_millis(20), "{idle:?} of CPU while idle");
}
