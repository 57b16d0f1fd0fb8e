//! The one runtime shared by every session in the process.
//!
//! A fixed pool of I/O threads (named `libsession-io`, 2 by default, `LIBSESSION_IO_THREADS` to
//! change) runs all connections and all callbacks, however many sessions exist.

use std::cell::Cell;

use once_cell::sync::OnceCell;
use tokio::runtime::{Builder, Runtime};

use crate::error::{Error, ErrorCode, Result};

static RUNTIME: OnceCell<Runtime> = OnceCell::new();

/// Default number of I/O threads.
pub const DEFAULT_IO_THREADS: usize = 2;

thread_local! {
    static ON_IO_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// The shared runtime, started on first use.
pub fn get() -> Result<&'static Runtime> {
    RUNTIME.get_or_try_init(|| {
        let threads = std::env::var("LIBSESSION_IO_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| (1..=64).contains(n))
            .unwrap_or(DEFAULT_IO_THREADS);
        crate::logging::init_from_env();
        Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("libsession-io")
            .on_thread_start(|| ON_IO_THREAD.with(|f| f.set(true)))
            .enable_all()
            .build()
            .map_err(|e| Error::new(ErrorCode::Unknown, format!("cannot start the I/O threads: {e}")))
    })
}

/// Whether the calling thread is one of the library's I/O threads, where callbacks run and
/// blocking on a session would deadlock.
pub fn on_io_thread() -> bool {
    ON_IO_THREAD.with(|f| f.get())
}
