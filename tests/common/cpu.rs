//! CPU time of the library's I/O threads, from /proc (nanosecond precision). Shared by the tests
//! and the bench.

use std::time::Duration;

/// CPU time the threads named `libsession-io-N` of this process have used.
pub fn io_threads_cpu() -> Duration {
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
