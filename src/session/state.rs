//! Session states and the transitions between them.

/// Where a session is in its life. Closed states are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started yet.
    Unknown,
    /// Establishing the connection.
    Connecting,
    /// Connected and usable.
    ConnectedActive,
    /// Connection lost; trying to recover the session.
    RecoveringReconnect,
    /// Closed by the application.
    ClosedByClient,
    /// Closed by the server.
    ClosedByServer,
    /// Closed because of a failure.
    ClosedFailed,
}

impl State {
    /// Whether the state is one of the terminal closed states.
    pub fn is_closed(self) -> bool {
        matches!(self, State::ClosedByClient | State::ClosedByServer | State::ClosedFailed)
    }

    /// Whether the session may move from `self` to `to`.
    pub fn can_move_to(self, to: State) -> bool {
        use State::*;
        match (self, to) {
            (Unknown, Connecting) => true,
            (Connecting, ConnectedActive) => true,
            (ConnectedActive, RecoveringReconnect) => true,
            (RecoveringReconnect, ConnectedActive) => true,
            (from, to) if to.is_closed() => !from.is_closed(),
            _ => false,
        }
    }

    /// The state's name as in the C API (`CONNECTED_ACTIVE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "UNKNOWN",
            State::Connecting => "CONNECTING",
            State::ConnectedActive => "CONNECTED_ACTIVE",
            State::RecoveringReconnect => "RECOVERING_RECONNECT",
            State::ClosedByClient => "CLOSED_BY_CLIENT",
            State::ClosedByServer => "CLOSED_BY_SERVER",
            State::ClosedFailed => "CLOSED_FAILED",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::State::*;

    #[test]
    fn closed_states_are_terminal() {
        for closed in [ClosedByClient, ClosedByServer, ClosedFailed] {
            for to in [Connecting, ConnectedActive, RecoveringReconnect, ClosedByClient, ClosedFailed] {
                assert!(!closed.can_move_to(to), "{closed} -> {to}");
            }
        }
    }

    #[test]
    fn the_documented_transitions_are_allowed() {
        assert!(Unknown.can_move_to(Connecting));
        assert!(Connecting.can_move_to(ConnectedActive));
        assert!(Connecting.can_move_to(ClosedFailed));
        assert!(ConnectedActive.can_move_to(RecoveringReconnect));
        assert!(RecoveringReconnect.can_move_to(ConnectedActive));
        assert!(ConnectedActive.can_move_to(ClosedByServer));
    }

    #[test]
    fn shortcuts_are_refused() {
        assert!(!Unknown.can_move_to(ConnectedActive));
        assert!(!Connecting.can_move_to(RecoveringReconnect));
        assert!(!ConnectedActive.can_move_to(Connecting));
    }
}
