//! CPU time and write calls of the library's I/O threads, from /proc. Shared by the tests and
//! the bench.

use std::time::Duration;

/// CPU time the threads named `libsession-io-N` of this process have used (nanosecond
/// precision).
pub fn io_threads_cpu() -> Duration {
    Duration::from_nanos(io_threads_sum("schedstat", |stat| stat.split_whitespace().next()))
}

/// `write` and `writev` calls the I/O threads have made (socket sends go through `send` and
/// `sendmsg`, which this does not count).
#[allow(dead_code)]
pub fn io_threads_write_calls() -> u64 {
    io_threads_sum("io", |io| io.lines().find_map(|l| l.strip_prefix("syscw:")))
}

/// The sum over the I/O threads of a number `pick` finds in their `/proc/self/task/N/<file>`.
fn io_threads_sum(file: &str, pick: impl Fn(&str) -> Option<&str>) -> u64 {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if name.starts_with("libsession-io") {
            let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            total += pick(&text).and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0);
        }
    }
    total
}
