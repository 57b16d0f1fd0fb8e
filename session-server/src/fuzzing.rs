//! Entry points for fuzzing the server's decoders of client bytes, as `session::fuzzing` has
//! the library's: each takes any bytes and must return without panicking. The cargo-fuzz target
//! `server_request` in `fuzz/` calls these, and the library's `tests/fuzz_corpora.rs` replays
//! the committed corpus through them. Not an API for applications.

use session::protocol::{self, DEFAULT_MAX_FRAME_SIZE};

use crate::http::{parse_head, Head};

/// The names of the targets, as the corpora's folders and the cargo-fuzz targets are named.
pub const TARGETS: [&str; 1] = ["server_request"];

/// Runs target `name` on `data`; false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "server_request" => server_request(data),
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
