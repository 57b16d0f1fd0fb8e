//! Entry points for fuzzing the server's decoders of client bytes, as `session::fuzzing` has
//! the library's: each takes any bytes and must return without panicking. The cargo-fuzz target
//! `server_request` in `fuzz/` calls these, and the library's `tests/fuzz_corpora.rs` replays
//! the committed corpus through them. Not an API for applications.

use session::protocol::{self, DEFAULT_MAX_FRAME_SIZE};

use crate::http::{parse_head, Head};

/// The names of the targets, as the corpora's folders and the cargo-fuzz targets are named.
pub const TARGETS: [&str; 2] = ["server_request", "cluster_storage"];

/// Runs target `name` on `data`; false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "server_request" => server_request(data),
        "cluster_storage" => cluster_storage(data),
        _ => return false,
    }
    true
}

/// What the server reads of a client before a session: the request head (upgrade or polling,
/// with its query), then the connect request an upgrade may carry in `X-Session-Connect`.
pub fn server_request(data: &[u8]) {
    for max_body in [0, 64 * 1024] {
        if let Ok(Head::Complete(request, _, _)) = parse_head(data, max_body) {
            let _ = (request.is_upgrade(), request.keep_alive());
            if let Some(header) = request.header("x-session-connect") {
                let _ = protocol::connect_from_header(header.as_bytes(), DEFAULT_MAX_FRAME_SIZE);
            }
        }
    }
}

/// What a cluster node reads back from NATS: an entry of the cluster's stream, and a session's
/// record in the bucket (then the refusals it lists, as a rebuilt session numbers them).
pub fn cluster_storage(data: &[u8]) {
    if let Ok(entry) = crate::cluster::entry::decode(&bytes::Bytes::copy_from_slice(data)) {
        let _ = (entry.subject("f"), entry.session(), entry.encode());
    }
    if let Ok(record) = crate::cluster::record::Record::decode(data) {
        for local in &record.checkpoint.locals {
            let _ = local.message();
        }
        let _ = record.encode();
    }
}
