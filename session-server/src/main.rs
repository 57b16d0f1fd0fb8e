//! session-server: the bundled server for demos and tests.
//!
//! ```text
//! session-server --listen 127.0.0.1:8080 --user alice:secret --allow-anonymous
//! session-server --config server.toml
//! session-server hash-password < password.txt
//! ```

mod hash_password;
mod reload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use session_server::{Server, ServerConfig};

/// Serves libsession protocol v1 sessions over WebSocket and HTTP long polling.
#[derive(Parser, Debug)]
#[command(name = "session-server", version, args_conflicts_with_subcommands = true)]
struct Args {
    /// Read options, users and roles from this TOML file (keys named as the options, e.g.
    /// ping_interval_ms; [[user]], [[role]], [anonymous]); options given here override it.
    /// SIGHUP reads it again: users and roles change at once, other options need a restart.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on; port 0 picks a free port (see --port-file).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Accept this principal with this password and all permissions (repeatable; for tests
    /// and demos: other local users see it in the process list, see --config for hashes).
    #[arg(long = "user", value_name = "NAME:PASSWORD", value_parser = split_pair)]
    users: Vec<(String, String)>,
    /// Accept this principal with these custom credentials and all permissions (repeatable).
    #[arg(long = "custom", value_name = "NAME:VALUE", value_parser = split_pair)]
    custom: Vec<(String, String)>,
    /// Accept sessions with no principal and no credentials, with all permissions.
    #[arg(long)]
    allow_anonymous: bool,
    /// Request path that accepts sessions (repeatable; default /diffusion).
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// Interval between keep-alive pings, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    ping_interval_ms: u64,
    /// Largest frame accepted, in bytes.
    #[arg(long, default_value_t = session::protocol::DEFAULT_MAX_FRAME_SIZE,
          value_parser = clap::value_parser!(u32).range(1024..))]
    max_frame_size: u32,
    /// Sessions served at once.
    #[arg(long, default_value_t = 100_000)]
    max_sessions: usize,
    /// Server instance number used in session ids (default: random).
    #[arg(long)]
    instance: Option<u64>,
    /// How long a session whose connection was lost waits for its client to reconnect, in
    /// milliseconds.
    #[arg(long, default_value_t = 60_000)]
    session_keep_ms: u64,
    /// Messages kept per session for recovery (sent, not yet acknowledged by the client).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    recovery_buffer: u64,
    /// Bytes kept per session for recovery (at least --max-frame-size); over it the oldest
    /// messages go, and a recovery that needs them reports message loss.
    #[arg(long, default_value_t = session_server::DEFAULT_SESSION_RETAINED_BYTES)]
    session_retained_bytes: usize,
    /// Bytes kept for recovery over all sessions; over it the sessions detached longest are
    /// dropped.
    #[arg(long, default_value_t = session_server::DEFAULT_RETAINED_BYTES)]
    retained_bytes: usize,
    /// Serve wss:// with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Threads serving connections, each with a runtime of its own; they share the listening
    /// socket and each serves the connections it accepts.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: u64,
    /// Write the bound port to this file once listening.
    #[arg(long, value_name = "FILE")]
    port_file: Option<PathBuf>,
    #[command(flatten)]
    metrics: session_server::metrics::MetricsOptions,
    #[command(flatten)]
    cluster: session_server::cluster::ClusterOptions,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Read a password from standard input (without echo from a terminal) and print its
    /// argon2id hash, for a user's password_hash in the --config file.
    HashPassword,
}

fn split_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err("expected NAME:VALUE".into()),
    }
}

/// Keeps freed memory in the heap: message buffers come and go by the tens of kilobytes, and by
/// default glibc hands the top of the heap back to the system and takes it again (a page fault
/// and a zeroed page per 4 KiB), which cost the server about a tenth of its CPU under load.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only adjusts allocator parameters; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    let filter = tracing_subscriber::EnvFilter::try_from_env(session::logging::LOG_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let matches = Args::command().get_matches();
    let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(Command::HashPassword) = args.command {
        return hash_password::run();
    }
    let file = match reload::apply_file(&mut args, &matches) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("session-server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if !args.users.is_empty() {
        tracing::warn!("--user puts passwords where other local users see them (ps, /proc); give users password hashes in a --config file instead");
    }
    for path in &args.paths {
        if let Err(e) = session::http::url::validate_request_path(path) {
            eprintln!("session-server: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    let mut config = ServerConfig {
        listen: args.listen,
        allow_anonymous: args.allow_anonymous,
        ping_interval: Duration::from_millis(args.ping_interval_ms),
        max_frame_size: args.max_frame_size,
        max_sessions: args.max_sessions,
        session_keep: Duration::from_millis(args.session_keep_ms),
        recovery_buffer: args.recovery_buffer as usize,
        session_retained_bytes: args.session_retained_bytes,
        retained_bytes: args.retained_bytes,
        ..ServerConfig::default()
    };
    if !args.paths.is_empty() {
        config.paths = args.paths;
    }
    if !args.cluster.urls.is_empty() {
        config.cluster = Some(args.cluster.clone());
    }
    if let Some(instance) = args.instance {
        config.server_instance = instance;
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        match session::tls::server_config(cert, key) {
            Ok(tls) => config.tls = Some(tls),
            Err(e) => {
                eprintln!("session-server: cannot use the TLS certificate: {e}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    config.users = args.users.into_iter().map(|(n, p)| (n, p.into_bytes())).collect();
    config.custom_credentials = args.custom.into_iter().map(|(n, v)| (n, v.into_bytes())).collect();
    if let Some(file) = &file {
        config.access = file.access().clone();
    }

    // One single-thread runtime per thread: a connection is served on the thread that accepted
    // it, so serving it never wakes another thread.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("session-server: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let paths = config.paths.join(", ");
        let instance = config.server_instance;
        let secure = config.tls.is_some();
        let server = match Server::bind(config).await {
            Ok(server) => server,
            Err(e) => {
                match (&args.cluster.urls[..], e.kind()) {
                    ([_, ..], std::io::ErrorKind::Other) => eprintln!("session-server: cannot join the cluster: {e}"),
                    _ => eprintln!("session-server: cannot listen on {}: {e}", args.listen),
                }
                return std::process::ExitCode::FAILURE;
            }
        };
        let addr = match server.local_addr() {
            Ok(addr) => addr,
            Err(e) => {
                eprintln!("session-server: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        if let Some(file) = file {
            if let Err(e) = file.reload_on_hangup(server.access()) {
                eprintln!("session-server: cannot handle SIGHUP: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
        if let Err(e) = args.metrics.start(&server) {
            eprintln!("session-server: {e}");
            return std::process::ExitCode::FAILURE;
        }
        if let Some(file) = &args.port_file {
            // Write then rename, so a reader never sees a half-written port.
            let tmp = file.with_extension("tmp");
            if let Err(e) = std::fs::write(&tmp, format!("{}\n", addr.port())).and_then(|_| std::fs::rename(&tmp, file))
            {
                eprintln!("session-server: cannot write {}: {e}", file.display());
                return std::process::ExitCode::FAILURE;
            }
        }
        for n in 1..args.threads {
            if let Err(e) = spawn_acceptor(&server, n) {
                eprintln!("session-server: cannot start thread {n}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
        tracing::info!(%addr, paths = %paths, tls = secure, instance = format!("{instance:016x}"), "listening");
        server.run(stop_signal()).await;
        tracing::info!("stopped");
        std::process::ExitCode::SUCCESS
    })
}

/// Runs one more acceptor of `server` on a thread with a runtime of its own.
fn spawn_acceptor(server: &Server, n: u64) -> std::io::Result<()> {
    let acceptor = server.acceptor()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name(format!("session-server-{n}")).spawn(move || {
        if let Err(e) = runtime.block_on(acceptor.run()) {
            tracing::error!(error = %e, thread = n, "cannot accept connections");
        }
    })?;
    Ok(())
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
