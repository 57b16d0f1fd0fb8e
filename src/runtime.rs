//! The I/O threads shared by every session in the process.
//!
//! A fixed set of threads (named `libsession-io-N`, 2 by default, `LIBSESSION_IO_THREADS` to
//! change) runs all connections and all callbacks, however many sessions exist. Each thread runs
//! its own single-threaded runtime and sessions are spread over them in turn: a session's work
//! stays on one thread, with no hand-over between threads on its way.
//!
//! An idle I/O thread sleeps; with `LIBSESSION_IO_SPIN_US` set it first keeps polling its sockets
//! for that long after work ([`note_activity`]), trading CPU for a quicker pick-up of answers.
//!
//! A blocking create opens its connection on the calling thread instead ([`run_here`]), as a
//! single-threaded event loop would, and then hands the session to its I/O thread: sockets move
//! to the runtime that polls them ([`crate::transport::socket`]), and tasks a connection starts
//! go to the session's I/O thread ([`spawn`]).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use once_cell::sync::OnceCell;
use parking_lot::Mutex;
use tokio::runtime::{Builder, Handle, Runtime};

use crate::error::{Error, ErrorCode, Result};

/// Default number of I/O threads.
pub const DEFAULT_IO_THREADS: usize = 2;

/// The I/O threads.
pub struct IoThreads {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

static THREADS: OnceCell<IoThreads> = OnceCell::new();

/// Runtimes for connecting on calling threads, kept between uses; at most this many are kept.
static SPARE: Mutex<Vec<Runtime>> = Mutex::new(Vec::new());
const SPARE_MAX: usize = 8;
/// Runtime identities for [`here`]: I/O thread `n` is `n + 1`; connecting runtimes count from here.
static NEXT_CALLER_RUNTIME: AtomicU64 = AtomicU64::new(1 << 32);

thread_local! {
    static ON_IO_THREAD: Cell<bool> = const { Cell::new(false) };
    static HERE: Cell<u64> = const { Cell::new(0) };
    static SPAWN_ON: RefCell<Option<Handle>> = const { RefCell::new(None) };
    /// Counts the session tasks' wake-ups on this I/O thread, for [`idle`].
    static ACTIVITY: Cell<u64> = const { Cell::new(0) };
    /// The waiting [`idle`] loop of this I/O thread, woken by the next activity.
    static IDLE_WAITER: RefCell<Option<std::task::Waker>> = const { RefCell::new(None) };
}

impl IoThreads {
    /// The I/O thread for the next session, in turn.
    pub fn pick(&self) -> Handle {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[n].clone()
    }

    fn start(count: usize, spin: Duration) -> Result<IoThreads> {
        let failed =
            |e: &dyn std::fmt::Display| Error::new(ErrorCode::Unknown, format!("cannot start the I/O threads: {e}"));
        let mut handles = Vec::with_capacity(count);
        for i in 0..count {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("libsession-io-{i}"))
                .spawn(move || {
                    ON_IO_THREAD.with(|f| f.set(true));
                    HERE.with(|h| h.set(i as u64 + 1));
                    match Builder::new_current_thread().enable_all().thread_name("libsession-blocking").build() {
                        Ok(rt) => {
                            let _ = tx.send(Ok(rt.handle().clone()));
                            rt.block_on(idle(spin));
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
        let spin = std::env::var("LIBSESSION_IO_SPIN_US")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|us| *us <= MAX_SPIN_US)
            .unwrap_or(0);
        crate::logging::init_from_env();
        IoThreads::start(count, Duration::from_micros(spin))
    })
}

/// The longest `LIBSESSION_IO_SPIN_US` taken.
const MAX_SPIN_US: u64 = 10_000;

/// Records that a session's task woke on this I/O thread (work came in).
pub fn note_activity() {
    ACTIVITY.with(|a| a.set(a.get().wrapping_add(1)));
    if let Some(waiter) = IDLE_WAITER.with(|w| w.borrow_mut().take()) {
        waiter.wake();
    }
}

/// What an I/O thread does besides its tasks. With `spin` zero: nothing, it sleeps whenever its
/// tasks wait. Otherwise, after work it keeps polling its sockets for `spin` without sleeping, so
/// that an answer arriving soon is picked up without a wake-up; then it sleeps until the next
/// work.
async fn idle(spin: Duration) {
    if spin.is_zero() {
        return std::future::pending().await;
    }
    let activity = || ACTIVITY.with(|a| a.get());
    let mut seen = activity();
    loop {
        std::future::poll_fn(|cx| {
            if activity() != seen {
                return std::task::Poll::Ready(());
            }
            IDLE_WAITER.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
            std::task::Poll::Pending
        })
        .await;
        let mut since = std::time::Instant::now();
        seen = activity();
        while since.elapsed() < spin {
            // Yielding lets the runtime poll its sockets without waiting, then run what is ready.
            tokio::task::yield_now().await;
            if activity() != seen {
                seen = activity();
                since = std::time::Instant::now();
            }
        }
    }
}

/// Whether the calling thread is one of the library's I/O threads, where callbacks run and
/// blocking on a session would deadlock.
pub fn on_io_thread() -> bool {
    ON_IO_THREAD.with(|f| f.get())
}

/// Which library runtime is running on this thread: an I/O thread's, a connecting caller's, or
/// 0 for none (a runtime of the application's own, or no runtime).
pub fn here() -> u64 {
    HERE.with(|h| h.get())
}

/// Spawns a connection's background task: on the session's I/O thread while a blocking create
/// connects on the calling thread, else on the current runtime.
pub fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> tokio::task::JoinHandle<()> {
    match SPAWN_ON.with(|s| s.borrow().clone()) {
        Some(home) => home.spawn(task),
        None => tokio::spawn(task),
    }
}

/// Runs `work` to completion on the calling thread, with a runtime of its own, for a session
/// whose I/O thread is `home`. While it runs the thread counts as a library thread (blocking
/// calls from callbacks fail as they do on I/O threads).
pub fn run_here<F: Future>(home: &Handle, work: F) -> Result<F::Output> {
    let rt = match SPARE.lock().pop() {
        Some(rt) => rt,
        None => Builder::new_current_thread()
            .enable_all()
            .thread_name("libsession-blocking")
            .build()
            .map_err(|e| Error::new(ErrorCode::Unknown, format!("cannot start a runtime to connect on: {e}")))?,
    };
    let output = {
        let _context = CallerContext::enter(home);
        rt.block_on(work)
    };
    let mut spare = SPARE.lock();
    if spare.len() < SPARE_MAX {
        spare.push(rt);
    }
    Ok(output)
}

/// The thread-local context of [`run_here`], restored when dropped (also on unwinding).
struct CallerContext {
    io: bool,
    here: u64,
    spawn_on: Option<Handle>,
}

impl CallerContext {
    fn enter(home: &Handle) -> CallerContext {
        let id = NEXT_CALLER_RUNTIME.fetch_add(1, Ordering::Relaxed);
        CallerContext {
            io: ON_IO_THREAD.with(|f| f.replace(true)),
            here: HERE.with(|h| h.replace(id)),
            spawn_on: SPAWN_ON.with(|s| s.replace(Some(home.clone()))),
        }
    }
}

impl Drop for CallerContext {
    fn drop(&mut self) {
        ON_IO_THREAD.with(|f| f.set(self.io));
        HERE.with(|h| h.set(self.here));
        SPAWN_ON.with(|s| *s.borrow_mut() = self.spawn_on.take());
    }
}
