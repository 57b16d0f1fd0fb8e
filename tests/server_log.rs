//! What clients supply reaches the server's log escaped and capped: no forged lines, no field
//! that fills the log.

mod common;

use common::logs::LogBuffer;
use common::*;
use session::Session;

#[test]
fn client_supplied_fields_cannot_forge_or_flood_log_lines() {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).init();
    let server = start_server();

    let forged = "eve\n2026-12-05T00:00:00.000000Z  INFO FORGED admin logged in";
    let mut refused = config(&server.url());
    refused.options.principal = forged.into();
    assert!(Session::connect(refused, None).is_err(), "an unknown principal is refused");
    let mut flooding = config(&server.url());
    flooding.options.principal = "p".repeat(60_000);
    assert!(Session::connect(flooding, None).is_err());
    let mut with_properties = config(&server.url());
    with_properties.options.set_property("region\nFORGED", "eu\r\nFORGED");
    Session::connect(with_properties, None).unwrap().close();

    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = buffer.text();
    assert!(log.contains("session refused") && log.contains("session opened"), "{log}");
    for line in log.lines() {
        // A forged line would start with the fake time stamp, or with what follows a line break.
        assert!(!line.starts_with("2026-12-05T00:00:00") && !line.trim_start().starts_with("FORGED"), "forged: {line}");
        assert!(line.len() < 2048, "a line of {} bytes: {}...", line.len(), &line[..200]);
    }
}
