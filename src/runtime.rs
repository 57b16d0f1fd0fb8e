//! The I/O threads shared by every session in the process.
//!
//! A fixed set of threads (named `libsession-io-N`, 2 by default, `LIBSESSION_IO_THREADS` to
//! change) runs all connections and all callbacks, however many sessions exist. Each thread runs
//! its own single-threaded runtime and sessions are spread over them in turn: a session's work
//! stays on one thread, with no hand-over between threads on its way.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use once_cell::sync::OnceCell;
use tokio::runtime::{Builder, Handle};

use crate::error::{Error, ErrorCode, Result};

/// Default number of I/O threads.
pub const DEFAULT_IO_THREADS: usize = 2;

/// The I/O threads.
pub struct IoThreads {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

static THREADS: OnceCell<IoThreads> = OnceCell::new();

thread_local! {
    static ON_IO_THREAD: Cell<bool> = const { Cell::new(false) };
}

impl IoThreads {
    /// Runs `task` on the next I/O thread.
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[n].spawn(task);
    }

    fn start(count: usize) -> Result<IoThreads> {
        let failed =
            |e: &dyn std::fmt::Display| Error::new(ErrorCode::Unknown, format!("cannot start the I/O threads: {e}"));
        let mut handles = Vec::with_capacity(count);
        for i in 0..count {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("libsession-io-{i}"))
                .spawn(move || {
                    ON_IO_THREAD.with(|f| f.set(true));
                    match Builder::new_current_thread().enable_all().thread_name("libsession-blocking").build() {
                        Ok(rt) => {
                            let _ = tx.send(Ok(rt.handle().clone()));
                            rt.block_on(std::future::pending::<()>());
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                })
                .map_err(|e| failed(&e))?;
            handles.push(rx.recv().map_err(|e| failed(&e))?.map_err(|e| failed(&e))?);
        }
        Ok(IoThreads { handles, next: AtomicUsize::new(0) })
    }
}

/// The I/O threads, started on first use.
pub fn get() -> Result<&'static IoThreads> {
    THREADS.get_or_try_init(|| {
        let count = std::env::var("LIBSESSION_IO_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| (1..=64).contains(n))
            .unwrap_or(DEFAULT_IO_THREADS);
        crate::logging::init_from_env();
        IoThreads::start(count)
    })
}

/// Whether the calling thread is one of the library's I/O threads, where callbacks run and
/// blocking on a session would deadlock.
pub fn on_io_thread() -> bool {
    ON_IO_THREAD.with(|f| f.get())
}
