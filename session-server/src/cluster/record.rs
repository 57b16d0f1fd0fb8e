//! A session's record in the cluster's session bucket: who opened it, the digests of its
//! recovery tokens, and a checkpoint from which any node rebuilds what the session must deliver
//! (the stream position, the number of the last message delivered there, the subscriptions
//! then, and the refusals numbered after it that are not in the stream).

use serde::{Deserialize, Serialize};
use session::protocol::{Credentials, Message, RefusedAction};

use super::entry::{action_from_byte, action_to_byte};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub principal: String,
    /// The kind of credentials the session was opened with ([`credentials_kind`]).
    pub credentials: u8,
    pub properties: Vec<(String, String)>,
    /// SHA-256 of the token handed out last and, until the client confirms it, of the one it
    /// recovered with.
    pub token: Vec<u8>,
    pub previous_token: Option<Vec<u8>>,
    pub checkpoint: Checkpoint,
    /// The last of the client's messages stored (acknowledged to the client).
    pub received: u64,
}

/// Where the session stood at a message its client acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Stream sequence of the last entry applied.
    pub position: u64,
    /// Number of the last message delivered by then.
    pub delivered: u64,
    pub subscriptions: Vec<String>,
    /// Refusals numbered after `delivered` that are not in the stream (a publication the
    /// stream could not store), each after the stream entry `position`.
    pub locals: Vec<Local>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Local {
    pub position: u64,
    pub action: u8,
    pub path: String,
    pub message: String,
}

impl Local {
    pub fn of(position: u64, message: &Message) -> Option<Local> {
        match message {
            Message::Refused { action, path, message } => {
                Some(Local { position, action: action_to_byte(*action), path: path.clone(), message: message.clone() })
            }
            _ => None,
        }
    }

    pub fn message(&self) -> Message {
        Message::Refused {
            action: action_from_byte(self.action).unwrap_or(RefusedAction::Publish),
            path: self.path.clone(),
            message: self.message.clone(),
        }
    }
}

/// The kind of credentials, as recorded: only the identity that opened a session recovers it.
pub fn credentials_kind(credentials: &Credentials) -> u8 {
    match credentials {
        Credentials::None => 0,
        Credentials::Password(_) => 1,
        Credentials::Custom(_) => 2,
    }
}

impl Record {
    pub fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self).unwrap_or_default().into()
    }

    pub fn decode(bytes: &[u8]) -> Result<Record, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("unreadable session record: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_encoding_and_garbage_is_an_error() {
        let record = Record {
            principal: "alice".into(),
            credentials: 1,
            properties: vec![("k".into(), "v".into())],
            token: vec![1; 32],
            previous_token: None,
            checkpoint: Checkpoint {
                position: 5,
                delivered: 3,
                subscriptions: vec!["a/".into()],
                locals: vec![Local { position: 6, action: 1, path: "p".into(), message: "m".into() }],
            },
            received: 9,
        };
        assert_eq!(Record::decode(&record.encode()).unwrap(), record);
        assert!(Record::decode(b"{").is_err());
        assert!(Record::decode(b"").is_err());
    }
}
