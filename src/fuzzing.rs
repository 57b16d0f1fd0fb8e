//! Entry points for fuzzing every decoder of peer bytes, one function per target: each takes any
//! bytes and must return without panicking, whatever they hold. The cargo-fuzz targets in `fuzz/`
//! call these, and `tests/fuzz_corpora.rs` replays the committed corpora through them, so that a
//! crash once found stays fixed. Not an API for applications. The server's decoders have their
//! entry points in the session-server crate (`session_server::fuzzing`).

use bytes::BytesMut;

use crate::protocol::{self, ClientHandshake, ConnectRequest, DEFAULT_MAX_FRAME_SIZE};
use crate::proxy::socks5::{Socks5Handshake, Step, Target};
use crate::proxy::ResponseReader;
use crate::transport::wsframe::{Decoder, Peer};

/// The names of the targets, as the corpora's folders and the cargo-fuzz targets are named.
pub const TARGETS: [&str; 7] = ["codec", "wsframe", "proxy_response", "socks5", "handshake", "url", "poll_body"];

/// Runs target `name` on `data`; false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "codec" => codec(data),
        "wsframe" => wsframe(data),
        "proxy_response" => proxy_response(data),
        "socks5" => socks5(data),
        "handshake" => handshake(data),
        "url" => url(data),
        "poll_body" => poll_body(data),
        _ => return false,
    }
    true
}

/// The protocol's frame decoder (both sides), at a small limit and the default one.
pub fn codec(data: &[u8]) {
    let _ = protocol::decode_all(data, 1024);
    let _ = protocol::decode_all(data, DEFAULT_MAX_FRAME_SIZE);
}

/// The WebSocket frame decoder, as a client reads a server and as the server reads a client;
/// the bytes arrive in two reads split where the first byte says.
pub fn wsframe(data: &[u8]) {
    for from in [Peer::Server, Peer::Client] {
        let mut decoder = Decoder::new(from, 64 * 1024);
        let split = data.first().map_or(0, |b| *b as usize).min(data.len());
        let mut buf = BytesMut::new();
        for part in [&data[..split], &data[split..]] {
            buf.extend_from_slice(part);
            while let Ok(Some(_)) = decoder.decode(&mut buf) {}
        }
    }
}

/// The reader of proxy answers (to CONNECT) and of upgrade answers, fed in two reads, then
/// told the connection closed.
pub fn proxy_response(data: &[u8]) {
    let readers = [ResponseReader::new("p:1", true), ResponseReader::new("p:1", false), ResponseReader::upgrade("s:1")];
    for mut reader in readers {
        let half = data.len() / 2;
        if matches!(reader.push(&data[..half]), Ok(None)) && matches!(reader.push(&data[half..]), Ok(None)) {
            let _ = reader.end_of_stream();
        }
    }
}

/// The answers a polling client reads: bodies kept up to a limit, chunked or not.
pub fn poll_body(data: &[u8]) {
    let mut reader = ResponseReader::keeping_body("s:1", 64 * 1024);
    if let Ok(None) = reader.push(data) {
        let _ = reader.end_of_stream();
    }
}

/// The SOCKS5 handshake, with and without credentials, for a name and an address, fed the bytes
/// as the proxy's answers.
pub fn socks5(data: &[u8]) {
    let targets = [Target::Domain("example.com".into()), Target::Ip([127, 0, 0, 1].into())];
    for (target, credentials) in targets.into_iter().zip([None, Some(("user".into(), "pw".into()))]) {
        let Ok((mut handshake, _greeting)) = Socks5Handshake::new("p:1", target, 80, credentials) else { continue };
        let mut input = data;
        while let Ok(Some((used, step))) = handshake.receive(input) {
            input = &input[used.min(input.len())..];
            if matches!(step, Step::Done) || used == 0 {
                break;
            }
        }
    }
}

/// The client's handshake: the server's answer to a connect request, as decoded frames.
pub fn handshake(data: &[u8]) {
    let Ok(frames) = protocol::decode_all(data, DEFAULT_MAX_FRAME_SIZE) else { return };
    for frame in frames {
        let _ = ClientHandshake::new(ConnectRequest::default(), "s:1").on_frame(frame);
    }
}

/// URLs: session URLs, request paths and proxy URLs, as text.
pub fn url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = crate::http::url::ServerUrl::parse(text);
    let _ = crate::http::url::validate_request_path(text);
    let _ = crate::proxy::Proxy::parse_url(text);
    let _ = crate::protocol::validate_path(text);
}
