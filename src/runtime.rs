//! The I/O threads shared by every session in the process.
//!
//! A fixed set of threads (named `libsession-io-N`, 2 by default, `LIBSESSION_IO_THREADS` to
//! change) runs all connections and all callbacks, however many sessions exist. Each thread runs
//! its own single-threaded runtime and sessions are spread over them in turn: a session's work
//! stays on one thread, with no hand-over between threads on its way.
//!
//! After work ([`note_activity`]) an I/O thread keeps polling its sockets for a window before it
//! sleeps, trading CPU for a quicker pick-up of answers; the window adapts to the traffic
//! ([`PollWindow`]), up to `LIBSESSION_IO_SPIN_US` (default [`DEFAULT_SPIN_US`], 0 turns it off).
//!
//! A blocking create opens its connection on the calling thread instead ([`run_here`]), as a
//! single-threaded event loop would (polling while it waits, for up to two of the longest
//! windows), and then hands the session to its I/O thread: sockets move
//! to the runtime that polls them ([`crate::transport::socket`]), and tasks a connection starts
//! go to the session's I/O thread ([`spawn`]).
//!
//! Waking a sleeping thread costs the waker a system call and an interrupt to another CPU (on
//! some virtual machines as much as a loopback round trip), so the session itself is handed over
//! without one where it can be ([`Home::park`]): it waits, parked, until the application next
//! calls on it (which wakes the thread, as any call needing the thread does) or the thread's
//! next tick ([`PARK_TICK`]), whichever comes first. A thread ticks only for [`PARK_LINGER`]
//! after its last hand-over; an idle one is woken at once.
//!
//! `LIBSESSION_RUNTIME=plain` turns all of that off ([`Mode::Plain`]): no poll window, no
//! parking, and a blocking create waits while the session's I/O thread connects; each session
//! then lives on its I/O thread from start to end, and its sockets never move. The test suite
//! runs the session tests in both modes.
//!
//! What sessions use of this module, and nothing more: [`get`] and [`IoThreads::pick`] for a
//! session's thread, [`Home::spawn`] and [`Home::park`] to start its task there, [`run_here`]
//! for a blocking create in the tuned mode, [`spawn`] for a connection's background task,
//! [`on_io_thread`] and [`here`] to know where a call runs, [`note_activity`], and [`Alarm`].

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use once_cell::sync::OnceCell;
use parking_lot::Mutex;
use tokio::runtime::{Builder, Handle, Runtime};
use tokio::sync::Notify;

use crate::error::{Error, ErrorCode, Result};

/// How the I/O threads work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The default: poll windows after work, parked hand-overs, blocking creates connecting on
    /// the calling thread.
    Tuned,
    /// `LIBSESSION_RUNTIME=plain`: none of these; a thread sleeps whenever it has nothing to do.
    Plain,
}

/// The mode the process runs in, from `LIBSESSION_RUNTIME` (`plain`, or anything else for
/// [`Mode::Tuned`]), read once.
pub fn mode() -> Mode {
    static MODE: OnceCell<Mode> = OnceCell::new();
    *MODE.get_or_init(|| match std::env::var("LIBSESSION_RUNTIME") {
        Ok(v) if v.trim().eq_ignore_ascii_case("plain") => Mode::Plain,
        _ => Mode::Tuned,
    })
}

/// Default number of I/O threads.
pub const DEFAULT_IO_THREADS: usize = 2;

/// How often an I/O thread takes up the sessions parked with it, while it ticks.
pub const PARK_TICK: Duration = Duration::from_millis(100);
/// How long after its last hand-over an I/O thread keeps ticking.
pub const PARK_LINGER: Duration = Duration::from_secs(10);

/// The I/O threads.
pub struct IoThreads {
    homes: Vec<Home>,
    next: AtomicUsize,
    /// The longest poll window ([`PollWindow`]).
    poll_max: Duration,
}

/// One I/O thread, where sessions live.
#[derive(Clone)]
pub struct Home {
    handle: Handle,
    parking: Arc<Parking>,
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A task parked with an I/O thread: taken up by the first of [`Parked::take_up`] and the
/// thread's tick.
pub struct Parked {
    handle: Handle,
    slot: Arc<Slot>,
}

/// Where a parked task waits.
struct Slot {
    task: Mutex<Option<Task>>,
    /// Set once the task has been taken up: tells it without locking.
    taken: AtomicBool,
}

impl Slot {
    fn take(&self) -> Option<Task> {
        if self.taken.load(Ordering::Acquire) || self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        self.task.lock().take()
    }
}

impl Parked {
    /// Runs the task on its thread now (waking it), unless it has been taken up already; then
    /// this costs one atomic load.
    pub fn take_up(&self) {
        if let Some(task) = self.slot.take() {
            self.handle.spawn(task);
        }
    }

    /// Whether the task still waits.
    pub fn waiting(&self) -> bool {
        !self.slot.taken.load(Ordering::Acquire)
    }
}

/// The tasks parked with an I/O thread.
struct Parking {
    state: Mutex<ParkingState>,
    /// Starts the tick again (notified on the thread itself).
    restart: Notify,
    /// [`PARK_TICK`] and [`PARK_LINGER`], but for tests.
    tick: Duration,
    linger: Duration,
}

#[derive(Default)]
struct ParkingState {
    /// Whether the thread ticks: tasks may be parked only then.
    ticking: bool,
    last_hand_over: Option<Instant>,
    parked: Vec<Arc<Slot>>,
}

impl Home {
    /// The thread's runtime.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `task` on the thread, waking it now.
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) -> tokio::task::JoinHandle<()> {
        self.handle.spawn(task)
    }

    /// Gives `task` to the thread, parked without waking the thread if it ticks (`Some`: the
    /// caller takes it up when it needs it to run), else spawned at once (and the thread starts
    /// ticking).
    pub fn park<F: Future<Output = ()> + Send + 'static>(&self, task: F) -> Option<Parked> {
        if mode() == Mode::Plain {
            self.handle.spawn(task);
            return None;
        }
        let mut state = self.parking.state.lock();
        if state.ticking {
            state.last_hand_over = Some(Instant::now());
            let slot = Arc::new(Slot { task: Mutex::new(Some(Box::pin(task))), taken: AtomicBool::new(false) });
            state.parked.push(slot.clone());
            return Some(Parked { handle: self.handle.clone(), slot });
        }
        drop(state);
        let parking = self.parking.clone();
        self.handle.spawn(async move {
            parking.tick_again();
            task.await
        });
        None
    }
}

impl Parking {
    fn new(tick: Duration, linger: Duration) -> Parking {
        Parking { state: Mutex::default(), restart: Notify::new(), tick, linger }
    }

    /// On the thread: ticks from now on (again).
    fn tick_again(&self) {
        let mut state = self.state.lock();
        state.last_hand_over = Some(Instant::now());
        if !state.ticking {
            state.ticking = true;
            self.restart.notify_one();
        }
    }

    /// On the thread: every tick while it ticks, takes up the tasks parked meanwhile (a spawn on
    /// the thread itself wakes nothing); stops ticking once it lingered that long after the last
    /// hand-over, until the next one.
    async fn tick(self: Arc<Self>) {
        loop {
            self.restart.notified().await;
            loop {
                tokio::time::sleep(self.tick).await;
                let mut state = self.state.lock();
                let parked = std::mem::take(&mut state.parked);
                if parked.is_empty() && state.last_hand_over.is_none_or(|at| at.elapsed() >= self.linger) {
                    state.ticking = false;
                    break;
                }
                drop(state);
                for task in parked.iter().filter_map(|slot| slot.take()) {
                    tokio::spawn(task);
                }
            }
        }
    }
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
    pub fn pick(&self) -> Home {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.homes.len();
        self.homes[n].clone()
    }

    /// `park`: the tick and the linger of [`Home::park`].
    fn start(count: usize, spin: Duration, park: (Duration, Duration)) -> Result<IoThreads> {
        let failed =
            |e: &dyn std::fmt::Display| Error::new(ErrorCode::Unknown, format!("cannot start the I/O threads: {e}"));
        let mut homes = Vec::with_capacity(count);
        for i in 0..count {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("libsession-io-{i}"))
                .spawn(move || {
                    ON_IO_THREAD.with(|f| f.set(true));
                    HERE.with(|h| h.set(i as u64 + 1));
                    match Builder::new_current_thread().enable_all().thread_name("libsession-blocking").build() {
                        Ok(rt) => {
                            let parking = Arc::new(Parking::new(park.0, park.1));
                            let _ = tx.send(Ok(Home { handle: rt.handle().clone(), parking: parking.clone() }));
                            // As tasks, not the future `block_on` runs: waking that future
                            // writes the runtime's eventfd (a system call) even from the thread
                            // itself, and the idle loop is woken at every activity.
                            rt.spawn(idle(spin));
                            rt.spawn(parking.tick());
                            rt.block_on(std::future::pending::<()>());
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                })
                .map_err(|e| failed(&e))?;
            homes.push(rx.recv().map_err(|e| failed(&e))?.map_err(|e| failed(&e))?);
        }
        Ok(IoThreads { homes, next: AtomicUsize::new(0), poll_max: spin })
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
            .unwrap_or(DEFAULT_SPIN_US);
        let spin = if mode() == Mode::Plain { 0 } else { spin };
        crate::logging::init_from_env();
        IoThreads::start(count, Duration::from_micros(spin), (PARK_TICK, PARK_LINGER))
    })
}

/// The longest `LIBSESSION_IO_SPIN_US` taken.
const MAX_SPIN_US: u64 = 10_000;
/// The longest poll window of an I/O thread unless `LIBSESSION_IO_SPIN_US` says otherwise.
pub const DEFAULT_SPIN_US: u64 = 100;
/// A blocking create polls while it waits for up to this many of the longest poll window.
const CONNECT_POLL_WINDOWS: u32 = 2;

/// Records that a session's task woke on this I/O thread (work came in).
pub fn note_activity() {
    ACTIVITY.with(|a| a.set(a.get().wrapping_add(1)));
    if let Some(waiter) = IDLE_WAITER.with(|w| w.borrow_mut().take()) {
        waiter.wake();
    }
}

/// How long an I/O thread polls its sockets after work before it sleeps, adapted to how long
/// the thread has been idle lately, as Linux adapts a virtual CPU's halt polling
/// (`cpuidle-haltpoll`): the window grows while the next work comes a little after it (polling a
/// little longer would have caught it) and shrinks while the next work comes after the longest
/// window (polling is wasted). Sparse traffic thus polls not at all, and request/response traffic
/// with short turns polls just long enough to catch the answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PollWindow {
    now: Duration,
    max: Duration,
}

impl PollWindow {
    /// The window a grown window starts at (or the longest, if shorter).
    const GROW_START: Duration = Duration::from_micros(10);

    /// Starts closed; `max` zero turns polling off.
    fn new(max: Duration) -> PollWindow {
        PollWindow { now: Duration::ZERO, max }
    }

    /// Takes in that the thread was idle for `idle`, from the end of its work to the next work.
    fn after_idle(&mut self, idle: Duration) {
        if idle <= self.now {
            // Caught by polling.
        } else if idle <= self.max {
            self.now = (self.now * 2).max(Self::GROW_START).min(self.max);
        } else {
            self.now /= 2;
            if self.now < Self::GROW_START {
                self.now = Duration::ZERO;
            }
        }
    }
}

/// What an I/O thread does besides its tasks: after work, it keeps polling its sockets for its
/// [`PollWindow`] without sleeping, so that an answer arriving soon is picked up without a
/// wake-up; then it sleeps until the next work. While it polls, it lets any other thread that is
/// ready to run on its CPU go first.
async fn idle(max: Duration) {
    if max.is_zero() {
        return std::future::pending().await;
    }
    let activity = || ACTIVITY.with(|a| a.get());
    let mut window = PollWindow::new(max);
    let mut seen = activity();
    loop {
        let since = Instant::now();
        while activity() == seen && since.elapsed() < window.now {
            poll_once().await;
        }
        std::future::poll_fn(|cx| {
            if activity() != seen {
                return std::task::Poll::Ready(());
            }
            IDLE_WAITER.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
            std::task::Poll::Pending
        })
        .await;
        window.after_idle(since.elapsed());
        seen = activity();
    }
}

/// One turn of polling without sleeping: yielding lets the runtime poll its sockets without
/// waiting and run what is ready; then any other thread ready to run on this CPU goes first.
async fn poll_once() {
    tokio::task::yield_now().await;
    std::thread::yield_now();
}

/// A timer for a task that waits in a loop: it lives across the waits and is moved, not made
/// anew for each wait. Registering a timer due before the runtime's next planned wake-up wakes
/// the runtime's driver (a system call, even from its own thread), while moving a live timer
/// later is an atomic store. Boxed, so that the tasks holding one stay small.
#[doc(hidden)]
pub struct Alarm(Pin<Box<tokio::time::Sleep>>);

impl Alarm {
    pub fn new(at: tokio::time::Instant) -> Alarm {
        Alarm(Box::pin(tokio::time::sleep_until(at)))
    }

    /// Makes it go off at `at`, unless it already would.
    pub fn set(&mut self, at: tokio::time::Instant) {
        if self.0.deadline() != at {
            self.0.as_mut().reset(at);
        }
    }
}

impl Future for Alarm {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.0.as_mut().poll(cx)
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
        // The answer usually comes within a few windows: waiting for it without sleeping saves
        // the wake-up of this thread.
        let budget = THREADS.get().map_or(Duration::ZERO, |threads| threads.poll_max * CONNECT_POLL_WINDOWS);
        rt.block_on(polling_for(budget, work))
    };
    let mut spare = SPARE.lock();
    if spare.len() < SPARE_MAX {
        spare.push(rt);
    }
    Ok(output)
}

/// Runs `work`, polling the runtime's sockets without sleeping while it waits, for up to
/// `budget` from now; then as usual.
async fn polling_for<F: Future>(budget: Duration, work: F) -> F::Output {
    let start = Instant::now();
    let spin = async {
        while start.elapsed() < budget {
            poll_once().await;
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        biased;
        output = work => output,
        _ = spin => unreachable!("pending forever"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[tokio::test]
    async fn an_alarm_goes_off_when_it_was_last_set_to() {
        use tokio::time::Instant;
        let start = Instant::now();
        let mut alarm = Alarm::new(start + Duration::from_millis(10));
        alarm.set(start + Duration::from_millis(80));
        (&mut alarm).await;
        assert!(start.elapsed() >= Duration::from_millis(80), "went off at the first time set");
        // Set again after going off, to earlier than a later setting.
        let again = Instant::now();
        alarm.set(again + Duration::from_secs(60));
        alarm.set(again + Duration::from_millis(20));
        tokio::time::timeout(Duration::from_secs(5), &mut alarm).await.expect("went off at the earlier time");
        assert!(again.elapsed() >= Duration::from_millis(20));
    }

    /// A task that reports when it runs.
    fn reporting() -> (impl Future<Output = ()> + Send + 'static, mpsc::Receiver<Instant>) {
        let (tx, rx) = mpsc::channel();
        (
            async move {
                let _ = tx.send(Instant::now());
            },
            rx,
        )
    }

    #[test]
    fn the_poll_window_grows_while_work_comes_soon_after_it_and_closes_while_it_comes_late() {
        let us = Duration::from_micros;
        let mut window = PollWindow::new(us(100));
        assert_eq!(window.now, Duration::ZERO, "starts closed");
        // Turns of 30 µs: it grows until it covers them, and stays.
        let mut sizes = Vec::new();
        for _ in 0..5 {
            window.after_idle(us(30));
            sizes.push(window.now.as_micros());
        }
        assert_eq!(sizes, [10, 20, 40, 40, 40]);
        // Never beyond the longest window.
        for _ in 0..10 {
            window.after_idle(us(90));
        }
        assert_eq!(window.now, us(100));
        // Work that comes later than the longest window halves it, down to closed.
        let mut sizes = Vec::new();
        for _ in 0..5 {
            window.after_idle(Duration::from_millis(5));
            sizes.push(window.now.as_micros());
        }
        assert_eq!(sizes, [50, 25, 12, 0, 0]);
        // Off: never opens.
        let mut off = PollWindow::new(Duration::ZERO);
        off.after_idle(Duration::ZERO);
        off.after_idle(us(5));
        assert_eq!(off.now, Duration::ZERO);
    }

    /// CPU time of the calling thread, from /proc.
    fn thread_cpu() -> Duration {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
        Duration::from_nanos(stat.split_whitespace().next().unwrap().parse().unwrap())
    }

    #[test]
    fn waiting_work_is_polled_for_without_sleeping_within_the_budget_only() {
        let rt = Builder::new_current_thread().enable_all().build().unwrap();
        let cpu = |budget: Duration, wait: Duration| {
            let before = thread_cpu();
            let output = rt.block_on(polling_for(budget, async move {
                tokio::time::sleep(wait).await;
                7
            }));
            assert_eq!(output, 7);
            thread_cpu() - before
        };
        // Within the budget the thread keeps running while the work waits (it gets at least a
        // fifth of a CPU even on a loaded machine).
        let polled = cpu(Duration::from_secs(10), Duration::from_millis(200));
        assert!(polled >= Duration::from_millis(40), "{polled:?}");
        // Past it, the thread sleeps.
        let slept = cpu(Duration::from_millis(1), Duration::from_millis(200));
        assert!(slept < Duration::from_millis(50), "{slept:?}");
    }

    #[test]
    fn an_idle_thread_runs_a_hand_over_at_once_and_then_parks_the_next() {
        let threads = IoThreads::start(1, Duration::ZERO, (Duration::from_secs(30), Duration::from_secs(60))).unwrap();
        let home = threads.pick();
        let (task, ran) = reporting();
        assert!(home.park(task).is_none(), "an idle thread does not tick: the task is spawned");
        ran.recv_timeout(Duration::from_secs(5)).expect("spawned at once");
        // Now it ticks (every 30 s): the next task waits until it is taken up.
        let (task, ran) = reporting();
        let parked = home.park(task).expect("parked");
        assert!(ran.recv_timeout(Duration::from_millis(200)).is_err(), "a parked task waits");
        let taken_up = Instant::now();
        parked.take_up();
        let at = ran.recv_timeout(Duration::from_secs(5)).expect("taken up at once");
        assert!(at >= taken_up);
        parked.take_up(); // a second time: nothing to run
    }

    #[test]
    fn the_tick_takes_up_parked_tasks_and_stops_after_the_linger() {
        let tick = Duration::from_millis(50);
        let threads = IoThreads::start(1, Duration::ZERO, (tick, Duration::from_millis(300))).unwrap();
        let home = threads.pick();
        let (task, ran) = reporting();
        assert!(home.park(task).is_none());
        ran.recv_timeout(Duration::from_secs(5)).unwrap();
        let (task, ran) = reporting();
        let parked = home.park(task).expect("parked");
        ran.recv_timeout(Duration::from_secs(5)).expect("taken up by the tick without a call");
        parked.take_up(); // already running: nothing happens
                          // No hand-over for longer than the linger: the thread stops ticking, so the next
                          // hand-over is spawned (and starts the tick again).
        std::thread::sleep(Duration::from_millis(900));
        let (task, ran) = reporting();
        assert!(home.park(task).is_none(), "stopped ticking");
        ran.recv_timeout(Duration::from_secs(5)).unwrap();
        let (task, ran) = reporting();
        assert!(home.park(task).is_some(), "ticking again");
        ran.recv_timeout(Duration::from_secs(5)).unwrap();
    }
}
