//! What clients supply reaches the server's log escaped and capped: no forged lines, no field
//! that fills the log.

mod common;

use common::logs::LogBuffer;
use common::*;
use session::protocol::ResponseCode;
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

    // A flood of refused connects with 64 KiB principals, 50 at once: ten refusal lines a minute
    // from one address, however many come.
    let principal = "q".repeat(64 * 1024);
    let answers = raw::run(futures_util::future::join_all(
        (0..50).map(|_| async { raw::connect(&server.url(), &principal, &[]).await.1.code }),
    ));
    assert!(answers.iter().all(|code| *code == ResponseCode::AuthenticationFailed), "{answers:?}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let flooded = buffer.text();
    let refusals = flooded.lines().filter(|l| l.contains("session refused")).count();
    assert_eq!(refusals, session_server::refusals::LOGGED_PER_WINDOW as usize, "{flooded}");
    assert!(flooded.len() - log.len() < 10 * 2048, "{} bytes of log for 50 refusals", flooded.len() - log.len());
}
