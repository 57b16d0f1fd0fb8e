//! Diagnostics, off by default: set `LIBSESSION_LOG` (e.g. `info`, `debug`, `session=trace`) to
//! write log lines to standard error, or give the application's own function with
//! [`set_sink`] (the C API's `libsession_set_log_callback`). Credentials are never logged.
//!
//! The library logs through `tracing`. The first of `LIBSESSION_LOG` or a sink installs a global
//! subscriber with two outputs: standard error, filtered by `LIBSESSION_LOG`, and the sink, filtered
//! by its level; while a sink is set, standard error gets nothing. Rust programs that install their
//! own `tracing` subscriber first keep it: the library's events go there and a sink gets none.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Once, RwLock};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::EnvFilter;

/// The environment variable that turns logging to standard error on and picks the level.
pub const LOG_ENV: &str = "LIBSESSION_LOG";

/// How much a log line matters; a sink gets the lines at its level and the more important ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    fn of(level: &tracing::Level) -> Level {
        match *level {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warn,
            tracing::Level::INFO => Level::Info,
            tracing::Level::DEBUG => Level::Debug,
            _ => Level::Trace,
        }
    }

    fn filter(level: u8) -> LevelFilter {
        match level {
            0 => LevelFilter::OFF,
            1 => LevelFilter::ERROR,
            2 => LevelFilter::WARN,
            3 => LevelFilter::INFO,
            4 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        }
    }
}

/// Where log lines go instead of standard error: called with the level, the module that logged
/// (e.g. `session::session::driver`) and the line, on the thread that logs.
pub type Sink = Box<dyn Fn(Level, &str, &str) + Send + Sync>;

/// The sink, and its level as a number (0 while there is none) for the filters' fast path.
static SINK: RwLock<Option<Arc<(Level, Sink)>>> = RwLock::new(None);
static SINK_LEVEL: AtomicU8 = AtomicU8::new(0);
static INSTALL: Once = Once::new();

thread_local! {
    /// Set while this thread runs the sink: what the sink's own calls log is dropped, and a
    /// `set_sink` from inside it is refused (it would wait for itself).
    static IN_SINK: Cell<bool> = const { Cell::new(false) };
}

/// Installs standard-error logging when `LIBSESSION_LOG` is set (once; later calls do nothing).
pub fn init_from_env() {
    if std::env::var_os(LOG_ENV).is_some() {
        install();
    }
}

/// Sends log lines at `level` and above to `sink`, or, with `None`, back to standard error as
/// `LIBSESSION_LOG` says. Once it returns, the previous sink is not running and is not called
/// again. Returns false, changing nothing, when called from inside the sink.
pub fn set_sink(sink: Option<(Level, Sink)>) -> bool {
    if IN_SINK.with(Cell::get) {
        return false;
    }
    install();
    let level = sink.as_ref().map_or(0, |(level, _)| *level as u8);
    {
        // The write lock waits for every call of the previous sink to return.
        let mut current = SINK.write().unwrap_or_else(|e| e.into_inner());
        *current = sink.map(Arc::new);
        SINK_LEVEL.store(level, Ordering::Release);
    }
    // The filters' answers per call site and the global level depend on the sink: ask again.
    tracing::callsite::rebuild_interest_cache();
    true
}

fn install() {
    INSTALL.call_once(|| {
        let env = EnvFilter::try_from_env(LOG_ENV).ok();
        let stderr = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .with_filter(StderrFilter { env });
        let subscriber = tracing_subscriber::registry().with(stderr).with(SinkLayer.with_filter(SinkFilter));
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// `LIBSESSION_LOG`'s filter while no sink is set; nothing while one is.
struct StderrFilter {
    env: Option<EnvFilter>,
}

impl<S: Subscriber> Filter<S> for StderrFilter {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        SINK_LEVEL.load(Ordering::Acquire) == 0 && self.env.as_ref().is_some_and(|env| Filter::enabled(env, meta, cx))
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        match &self.env {
            Some(env) if SINK_LEVEL.load(Ordering::Acquire) == 0 => Filter::<S>::callsite_enabled(env, meta),
            _ => Interest::never(),
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        match &self.env {
            Some(env) if SINK_LEVEL.load(Ordering::Acquire) == 0 => Filter::<S>::max_level_hint(env),
            _ => Some(LevelFilter::OFF),
        }
    }
}

/// The sink's level.
struct SinkFilter;

impl<S: Subscriber> Filter<S> for SinkFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        Level::filter(SINK_LEVEL.load(Ordering::Acquire)) >= *meta.level()
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if Level::filter(SINK_LEVEL.load(Ordering::Acquire)) >= *meta.level() {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(Level::filter(SINK_LEVEL.load(Ordering::Acquire)))
    }
}

/// Formats an event as one line, `message key=value ...`, and gives it to the sink.
struct SinkLayer;

impl<S: Subscriber> Layer<S> for SinkLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if IN_SINK.with(Cell::get) {
            return;
        }
        let guard = SINK.read().unwrap_or_else(|e| e.into_inner());
        let Some(sink) = guard.as_ref() else { return };
        let level = Level::of(event.metadata().level());
        if level > sink.0 {
            return;
        }
        let mut line = Line(String::new());
        event.record(&mut line);
        IN_SINK.with(|flag| flag.set(true));
        // The sink is the application's: a panic from a Rust sink stops here.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (sink.1)(level, event.metadata().target(), &line.0)
        }));
        IN_SINK.with(|flag| flag.set(false));
    }
}

struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

impl Line {
    fn field(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() != "message" {
            let _ = write!(self.0, "{}=", field.name());
        }
        let _ = self.0.write_fmt(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The sink is global: these tests take turns, and keep only what this module logged (other
    /// tests of the crate log meanwhile).
    static TURN: Mutex<()> = Mutex::new(());

    fn collect(level: Level, also: impl Fn() + Send + Sync + 'static) -> Arc<Mutex<Vec<(Level, String)>>> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        let sink: Sink = Box::new(move |level, target, line| {
            if target == module_path!() {
                seen.lock().unwrap().push((level, line.to_string()));
                also();
            }
        });
        assert!(set_sink(Some((level, sink))));
        lines
    }

    #[test]
    fn a_sink_gets_lines_at_its_level_and_none_once_removed() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let lines = collect(Level::Info, || {});
        tracing::info!(count = 3, "hello {}", "there");
        tracing::debug!("not at info");
        tracing::warn!(peer = "a b", "careful");
        assert!(set_sink(None));
        tracing::error!("after removal");
        let expected =
            vec![(Level::Info, "hello there count=3".to_string()), (Level::Warn, "careful peer=a b".to_string())];
        assert_eq!(*lines.lock().unwrap(), expected);
        if std::env::var_os(LOG_ENV).is_none() {
            assert_eq!(
                LevelFilter::current(),
                LevelFilter::OFF,
                "no sink and no LIBSESSION_LOG: logging costs nothing"
            );
        }
    }

    #[test]
    fn the_sink_cannot_replace_itself_and_its_own_logging_is_dropped() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let refused = Arc::new(Mutex::new(Vec::new()));
        let answers = refused.clone();
        let lines = collect(Level::Trace, move || {
            answers.lock().unwrap().push(set_sink(None));
            tracing::error!("from inside the sink");
        });
        tracing::trace!("outside");
        assert!(set_sink(None));
        assert_eq!(*lines.lock().unwrap(), vec![(Level::Trace, "outside".to_string())]);
        assert_eq!(*refused.lock().unwrap(), vec![false]);
    }
}
