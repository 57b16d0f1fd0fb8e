//! The fuzz targets' committed corpora replay through the same entry points the fuzzer drives
//! (`session::fuzzing`, and `session_server::fuzzing` for the server's), so that every input that
//! once crashed a decoder (added to `fuzz/corpus/<target>/`) stays harmless. With `FUZZ_WRITE_SEEDS` set, the test first writes the seeds the corpora started
//! from (`FUZZ_WRITE_SEEDS=1 cargo test --release --test fuzz_corpora`).

mod common;

use std::path::PathBuf;

use session::protocol::{self, CloseReason, ConnectRequest, Credentials, Frame, Message};

/// Every target: the library's, then the server's.
fn targets() -> impl Iterator<Item = &'static str> {
    session::fuzzing::TARGETS.into_iter().chain(session_server::fuzzing::TARGETS)
}

/// Runs target `name` on `data`, in the library or the server; false for an unknown name.
fn run(name: &str, data: &[u8]) -> bool {
    session::fuzzing::run(name, data) || session_server::fuzzing::run(name, data)
}

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

#[test]
fn every_corpus_replays_without_a_panic() {
    if std::env::var_os("FUZZ_WRITE_SEEDS").is_some() {
        write_seed_corpora();
    }
    let mut fuzzed: Vec<String> =
        std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets"))
            .unwrap()
            .map(|entry| entry.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
    fuzzed.sort();
    let mut named: Vec<String> = targets().map(str::to_string).collect();
    named.sort();
    assert_eq!(
        fuzzed, named,
        "fuzz/fuzz_targets and the TARGETS of session::fuzzing and session_server::fuzzing name the same targets"
    );
    for target in targets() {
        let files: Vec<_> = std::fs::read_dir(corpus(target))
            .unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}"))
            .map(|entry| entry.unwrap().path())
            .collect();
        assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
        for file in files {
            let data = std::fs::read(&file).unwrap();
            assert!(run(target, &data), "unknown target {target}");
        }
    }
}

/// Valid inputs of every kind each target reads, as seeds for the fuzzer.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let text = |items: &[&str]| items.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
    match target {
        "codec" | "handshake" => {
            let request = ConnectRequest {
                principal: "alice".into(),
                credentials: Credentials::Password(b"pw".to_vec()),
                properties: vec![("region".into(), "eu".into())],
                reconnect_token: vec![1; 16],
                last_received: 3,
                ..Default::default()
            };
            let refused = {
                let Frame::ConnectResponse(mut r) = common::ok_response(10_000) else { unreachable!() };
                r.code = protocol::ResponseCode::AuthenticationFailed;
                r.message = "no".into();
                Frame::ConnectResponse(r)
            };
            let frames = vec![
                Frame::ConnectRequest(request),
                common::ok_response(10_000),
                refused,
                Frame::Ping(1),
                Frame::Pong(1),
                Frame::Close { reason: CloseReason::Normal, message: "bye".into() },
                Frame::Message { seq: 1, body: Message::Publish { path: "a/b".into(), data: b"x".to_vec().into() } },
                Frame::Message { seq: 2, body: Message::Deliver { path: "a/b".into(), data: b"y".to_vec().into() } },
                Frame::Message { seq: 3, body: Message::Subscribe { path: "a/".into() } },
                Frame::Message { seq: 4, body: Message::Unsubscribe { path: "a/".into() } },
                Frame::Ack(4),
            ];
            frames.iter().map(protocol::encode).collect()
        }
        "wsframe" => vec![
            b"\x82\x05hello".to_vec(),
            b"\x82\x85\x01\x02\x03\x04\x69\x67\x6f\x68\x6e".to_vec(),
            b"\x02\x02he\x80\x03llo".to_vec(),
            b"\x89\x04ping\x8a\x00\x88\x02\x03\xe8".to_vec(),
            b"\x82\x7e\x00\x80".iter().copied().chain([b'x'; 128]).collect(),
            b"\x81\x02hi".to_vec(),
        ],
        "proxy_response" => text(&[
            "HTTP/1.1 200 Connection established\r\n\r\n",
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"p\"\r\nContent-Length: 4\r\n\r\ndeny",
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Digest realm=\"squid\", nonce=\"abc\", qop=\"auth\"\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndeny\r\n0\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nrest",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 403 Forbidden\r\n\r\nno",
        ]),
        "poll_body" => text(&[
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.0 200 OK\r\n\r\nuntil close",
        ]),
        "socks5" => vec![
            vec![5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0, 80],
            vec![5, 2, 1, 0, 5, 0, 0, 3, 11, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm', 0, 80],
            vec![5, 0, 5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80],
            vec![5, 0xff],
            vec![5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0],
        ],
        "url" => text(&[
            "ws://127.0.0.1:8080/diffusion",
            "wss://[::1]:443/a/diffusion",
            "xhrs://example.com/diffusion",
            "http://user:p%40ss@proxy.example:3128",
            "socks5h://127.0.0.1",
            "prices/eu/",
        ]),
        "server_request" => {
            let request = ConnectRequest { principal: "alice".into(), ..Default::default() };
            let header = protocol::connect_header(&protocol::encode(&Frame::ConnectRequest(request))).unwrap();
            let mut seeds = text(&[
                "GET /diffusion?v=1 HTTP/1.1\r\nHost: s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                "POST /diffusion?poll=open HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\n\r\nabc",
                "POST /diffusion?c=a%20b&r=2 HTTP/1.1\r\nConnection: close\r\n\r\n",
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            ]);
            seeds.push(
                format!("GET /diffusion HTTP/1.1\r\nUpgrade: websocket\r\nX-Session-Connect: {header}\r\n\r\n")
                    .into_bytes(),
            );
            seeds
        }
        other => panic!("no seeds for {other}"),
    }
}

fn write_seed_corpora() {
    for target in targets() {
        let dir = corpus(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in seeds(target).into_iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).unwrap();
        }
    }
}
