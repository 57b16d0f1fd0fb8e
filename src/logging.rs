//! Opt-in diagnostics: set `LIBSESSION_LOG` (e.g. `info`, `debug`, `libsession=trace`) to write
//! log lines to standard error. Off by default. Credentials are never logged.

/// The environment variable that turns logging on and picks the level.
pub const LOG_ENV: &str = "LIBSESSION_LOG";

/// Installs a stderr subscriber when `LIBSESSION_LOG` is set and no subscriber exists yet.
/// Rust programs that install their own `tracing` subscriber are left alone.
pub fn init_from_env() {
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env(LOG_ENV) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
