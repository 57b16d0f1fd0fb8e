//! What the server counts, and its rendering in the Prometheus text exposition format 0.0.4
//! (`text.rs`), which `--metrics ADDR` serves at `/metrics` (`listener.rs`).
//!
//! Events (connections, publications, deliveries, bytes, refusals, recoveries) are counted where
//! they happen by a relaxed atomic addition; what the sessions hold (their states and retained
//! bytes) is read from the registry when the metrics are rendered.

mod listener;
mod text;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use session::protocol::RefusedAction;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use listener::MetricsOptions;
use text::{Exposition, Kind};

use super::sessions::Transport;
use super::{Closer, ServerHandle, Shared};

/// Why a session was not opened before authentication (the `reason` label of
/// `session_server_refused_connections_total`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refusal {
    /// The server holds `max_sessions` sessions.
    MaxSessions,
    /// Not a request this server takes: not HTTP, not a WebSocket upgrade or polling request, a
    /// path with no session endpoint, a failed TLS handshake, no valid CONNECT_REQUEST in time,
    /// no protocol version in common.
    BadHandshake,
}

const REFUSALS: [(Refusal, &str); 2] =
    [(Refusal::MaxSessions, "max_sessions"), (Refusal::BadHandshake, "bad_handshake")];

/// Why a reconnection did not recover its session (the `reason` label of
/// `session_server_failed_recoveries_total`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum FailedRecovery {
    /// No session has the token (never had, expired, or dropped).
    UnknownSession,
    /// The token's session was opened by another principal or kind of credentials.
    OtherIdentity,
    /// Messages the client missed are no longer in the session's recovery buffer.
    MessageLoss,
}

const FAILED_RECOVERIES: [(FailedRecovery, &str); 3] = [
    (FailedRecovery::UnknownSession, "unknown_session"),
    (FailedRecovery::OtherIdentity, "other_identity"),
    (FailedRecovery::MessageLoss, "message_loss"),
];

/// The server's counters (see the module documentation).
#[derive(Default)]
pub(crate) struct Counters {
    connections_accepted: AtomicU64,
    connections_open: AtomicU64,
    publications_received: AtomicU64,
    deliveries_sent: AtomicU64,
    received_bytes: AtomicU64,
    sent_bytes: AtomicU64,
    recoveries: AtomicU64,
    failed_recoveries: [AtomicU64; FAILED_RECOVERIES.len()],
    authentication_failures: AtomicU64,
    refusals: [AtomicU64; REFUSALS.len()],
    /// Denied subscriptions (refused and withdrawn) and publications.
    denials: [AtomicU64; DENIALS.len()],
    overflows: AtomicU64,
}

/// The `action` label of `session_server_denials_total`, by index.
const DENIALS: [&str; 2] = ["subscribe", "publish"];

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

impl Counters {
    /// A client's publication, the first time it arrives.
    pub(crate) fn publication_received(&self) {
        add(&self.publications_received, 1);
    }

    /// Deliveries handed to a client's connection (resent ones included).
    pub(crate) fn deliveries_sent(&self, n: usize) {
        add(&self.deliveries_sent, n as u64);
    }

    /// A session recovered by its client's reconnection.
    pub(crate) fn recovered(&self) {
        add(&self.recoveries, 1);
    }

    pub(crate) fn recovery_failed(&self, why: FailedRecovery) {
        add(&self.failed_recoveries[why as usize], 1);
    }

    /// A connect request with unknown principal or wrong credentials.
    pub(crate) fn authentication_failed(&self) {
        add(&self.authentication_failures, 1);
    }

    pub(crate) fn refused(&self, why: Refusal) {
        add(&self.refusals[why as usize], 1);
    }

    /// A subscription or publication the policy does not permit (a withdrawn subscription counts
    /// as a denied one).
    pub(crate) fn denied(&self, action: RefusedAction) {
        let index = match action {
            RefusedAction::Subscribe | RefusedAction::Withdrawn => 0,
            RefusedAction::Publish => 1,
        };
        add(&self.denials[index], 1);
    }

    /// A session closed because its recovery buffer overflowed.
    pub(crate) fn overflowed(&self) {
        add(&self.overflows, 1);
    }
}

/// A connection on the session listener: counted accepted when made and open while it lives,
/// and its bytes as they pass (TLS records included, as on the wire).
pub(crate) struct Metered<T> {
    inner: T,
    shared: Arc<Shared>,
}

impl<T> Metered<T> {
    pub(crate) fn new(inner: T, shared: &Arc<Shared>) -> Metered<T> {
        add(&shared.metrics.connections_accepted, 1);
        add(&shared.metrics.connections_open, 1);
        Metered { inner, shared: shared.clone() }
    }
}

impl<T> Drop for Metered<T> {
    fn drop(&mut self) {
        self.shared.metrics.connections_open.fetch_sub(1, Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            add(&this.shared.metrics.received_bytes, read as u64);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        this.count_written(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.count_written(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T> Metered<T> {
    fn count_written(&self, polled: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = polled {
            if *n > 0 {
                add(&self.shared.metrics.sent_bytes, *n as u64);
            }
        }
    }
}

/// The metric families' names, types and help texts.
mod family {
    pub(super) const SESSIONS: &str = "session_server_sessions";
    pub(super) const CONNECTIONS_OPEN: &str = "session_server_connections_open";
    pub(super) const CONNECTIONS_ACCEPTED: &str = "session_server_connections_accepted_total";
    pub(super) const PUBLICATIONS: &str = "session_server_publications_received_total";
    pub(super) const DELIVERIES: &str = "session_server_deliveries_sent_total";
    pub(super) const RECEIVED_BYTES: &str = "session_server_received_bytes_total";
    pub(super) const SENT_BYTES: &str = "session_server_sent_bytes_total";
    pub(super) const RECOVERIES: &str = "session_server_recoveries_total";
    pub(super) const FAILED_RECOVERIES: &str = "session_server_failed_recoveries_total";
    pub(super) const AUTHENTICATION_FAILURES: &str = "session_server_authentication_failures_total";
    pub(super) const DENIALS: &str = "session_server_denials_total";
    pub(super) const REFUSED: &str = "session_server_refused_connections_total";
    pub(super) const RETAINED_BYTES: &str = "session_server_retained_bytes";
    pub(super) const DETACHED_RETAINED_BYTES: &str = "session_server_detached_retained_bytes";
    pub(super) const OVERFLOWS: &str = "session_server_recovery_buffer_overflows_total";
}

/// What the sessions hold, read from the registry.
#[derive(Debug, Default)]
struct Census {
    /// Sessions by state (attached, detached) and transport (WebSocket, polling).
    sessions: [[u64; 2]; 2],
    /// Bytes retained for recovery by detached sessions.
    detached_bytes: u64,
}

impl Census {
    fn of(shared: &Shared) -> Census {
        let mut census = Census::default();
        for session in shared.registry.snapshot() {
            let state = session.state.lock();
            let detached = state.detached_since.is_some();
            census.sessions[detached as usize][(state.transport == Transport::Polling) as usize] += 1;
            if detached {
                census.detached_bytes += state.out.retained_bytes() as u64;
            }
        }
        census
    }
}

/// The server's metrics in the text exposition format.
fn render(shared: &Shared) -> String {
    let counters = &shared.metrics;
    let census = Census::of(shared);
    let load = |counter: &AtomicU64| counter.load(Relaxed);
    let mut out = Exposition::default();
    out.family(
        family::SESSIONS,
        Kind::Gauge,
        "Sessions held, by state (attached to a connection, or detached and awaiting their client's \
         reconnection) and by the transport of the connection that took them last.",
    );
    for (s, state) in ["attached", "detached"].into_iter().enumerate() {
        for (t, transport) in ["websocket", "polling"].into_iter().enumerate() {
            out.sample(&[("state", state), ("transport", transport)], census.sessions[s][t]);
        }
    }
    out.family(family::CONNECTIONS_OPEN, Kind::Gauge, "TCP connections open on the session listener.")
        .sample(&[], load(&counters.connections_open));
    out.family(family::CONNECTIONS_ACCEPTED, Kind::Counter, "TCP connections accepted on the session listener.")
        .sample(&[], load(&counters.connections_accepted));
    out.family(
        family::PUBLICATIONS,
        Kind::Counter,
        "Publications received from clients (repeats on recovery not counted).",
    )
    .sample(&[], load(&counters.publications_received));
    out.family(
        family::DELIVERIES,
        Kind::Counter,
        "Deliveries of publications sent to clients, those resent on recovery included.",
    )
    .sample(&[], load(&counters.deliveries_sent));
    out.family(
        family::RECEIVED_BYTES,
        Kind::Counter,
        "Bytes received on the session listener's connections (HTTP, WebSocket and TLS included).",
    )
    .sample(&[], load(&counters.received_bytes));
    out.family(
        family::SENT_BYTES,
        Kind::Counter,
        "Bytes sent on the session listener's connections (HTTP, WebSocket and TLS included).",
    )
    .sample(&[], load(&counters.sent_bytes));
    out.family(family::RECOVERIES, Kind::Counter, "Sessions recovered by their client's reconnection.")
        .sample(&[], load(&counters.recoveries));
    out.family(
        family::FAILED_RECOVERIES,
        Kind::Counter,
        "Reconnections that could not recover their session, by reason.",
    );
    for ((_, reason), counter) in FAILED_RECOVERIES.iter().zip(&counters.failed_recoveries) {
        out.sample(&[("reason", reason)], load(counter));
    }
    out.family(
        family::AUTHENTICATION_FAILURES,
        Kind::Counter,
        "Connect requests refused for an unknown principal, wrong credentials or anonymity not allowed.",
    )
    .sample(&[], load(&counters.authentication_failures));
    out.family(
        family::DENIALS,
        Kind::Counter,
        "Subscriptions and publications denied by permissions, by action (a subscription withdrawn by a \
         reload counts as subscribe).",
    );
    for (action, counter) in DENIALS.iter().zip(&counters.denials) {
        out.sample(&[("action", action)], load(counter));
    }
    out.family(
        family::REFUSED,
        Kind::Counter,
        "Connections refused before authentication: at the session limit (max_sessions), or not a \
         request this server takes (bad_handshake).",
    );
    for ((_, reason), counter) in REFUSALS.iter().zip(&counters.refusals) {
        out.sample(&[("reason", reason)], load(counter));
    }
    out.family(family::RETAINED_BYTES, Kind::Gauge, "Bytes of deliveries kept for recovery by all sessions.")
        .sample(&[], shared.registry.retained_bytes() as u64);
    out.family(
        family::DETACHED_RETAINED_BYTES,
        Kind::Gauge,
        "Bytes of deliveries kept for recovery by detached sessions.",
    )
    .sample(&[], census.detached_bytes);
    out.family(
        family::OVERFLOWS,
        Kind::Counter,
        "Sessions closed because their recovery buffer overflowed (a slow or absent client).",
    )
    .sample(&[], load(&counters.overflows));
    out.into_text()
}

pub(crate) fn render_text(shared: &Shared) -> String {
    render(shared)
}

impl Closer {
    /// The server's metrics in the Prometheus text exposition format, as `/metrics` serves them.
    pub fn metrics_text(&self) -> String {
        render(&self.0)
    }
}

impl ServerHandle {
    /// The server's metrics in the Prometheus text exposition format, as `/metrics` serves them.
    pub fn metrics_text(&self) -> String {
        self.closer.metrics_text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_rendered_with_help_type_and_its_labels() {
        let shared = Shared::new(crate::ServerConfig::default(), None);
        let text = render(&shared);
        for name in [
            family::SESSIONS,
            family::CONNECTIONS_OPEN,
            family::CONNECTIONS_ACCEPTED,
            family::PUBLICATIONS,
            family::DELIVERIES,
            family::RECEIVED_BYTES,
            family::SENT_BYTES,
            family::RECOVERIES,
            family::FAILED_RECOVERIES,
            family::AUTHENTICATION_FAILURES,
            family::DENIALS,
            family::REFUSED,
            family::RETAINED_BYTES,
            family::DETACHED_RETAINED_BYTES,
            family::OVERFLOWS,
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name} is a {kind}");
        }
        for line in [
            r#"session_server_sessions{state="detached",transport="polling"} 0"#,
            r#"session_server_denials_total{action="subscribe"} 0"#,
            r#"session_server_denials_total{action="publish"} 0"#,
            r#"session_server_failed_recoveries_total{reason="message_loss"} 0"#,
            r#"session_server_refused_connections_total{reason="max_sessions"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn counted_events_show_in_the_rendering() {
        let shared = Shared::new(crate::ServerConfig::default(), None);
        shared.metrics.refused(Refusal::BadHandshake);
        shared.metrics.recovery_failed(FailedRecovery::OtherIdentity);
        shared.metrics.deliveries_sent(3);
        shared.metrics.deliveries_sent(2);
        let text = render(&shared);
        for line in [
            r#"session_server_refused_connections_total{reason="bad_handshake"} 1"#,
            r#"session_server_failed_recoveries_total{reason="other_identity"} 1"#,
            r#"session_server_failed_recoveries_total{reason="unknown_session"} 0"#,
            "session_server_deliveries_sent_total 5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
