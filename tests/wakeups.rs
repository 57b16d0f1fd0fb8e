//! A delivery costs the I/O threads no system call beyond the socket's own: waking a session's
//! task and moving its timers stay within the thread (no write to the runtime's eventfd).
//! A test binary of its own: it counts every I/O thread's write calls.

mod common;

use std::time::Duration;

use common::cpu::io_threads_write_calls;
use common::*;

#[test]
fn a_stream_of_deliveries_makes_few_write_calls_on_the_io_threads() {
    let server = start_server();
    let (publisher, _subscriber, inbox) = publisher_and_subscriber(&server.url(), "calls");

    let count = 5000;
    let before = io_threads_write_calls();
    let data = vec![7u8; 1024];
    for _ in 0..count {
        while publisher.publish("calls", &data).is_err() {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    assert!(inbox.wait_for(count + 1, Duration::from_secs(20)));
    let calls = io_threads_write_calls() - before;
    eprintln!("{calls} write calls on the I/O threads for {count} deliveries");
    assert!(calls < count as u64 / 20, "{calls} write calls on the I/O threads for {count} deliveries");
}
