//! Sessions behind real load balancers (haproxy, nginx): request paths, header routing, cookie
//! stickiness across reconnections.

mod common;

use std::time::{Duration, Instant};

use common::external::{haproxy, nginx};
use common::relay::Relay;
use common::*;
use session::{ErrorCode, Session, State};
use session_server::ServerHandle;

fn instance_server(instance: u64, path: &str) -> ServerHandle {
    let path = path.to_string();
    start_server_with(move |c| {
        c.server_instance = instance;
        c.paths = vec![path];
    })
}

fn landed_on(session: &Session) -> u64 {
    session.id().expect("connected").server_instance
}

#[test]
fn haproxy_routes_sessions_by_request_path_and_header() {
    let a = instance_server(0xA, "/a/diffusion");
    let b = instance_server(0xB, "/b/diffusion");
    let c = instance_server(0xC, "/a/diffusion");
    let sections = format!(
        "frontend sessions\n    mode http\n    bind 127.0.0.1:{{port}}\n    \
         use_backend c if {{ req.hdr(X-Route) -m str blue }}\n    \
         use_backend a if {{ path_beg /a/ }}\n    use_backend b if {{ path_beg /b/ }}\n\n\
         backend a\n    mode http\n    server a 127.0.0.1:{}\n\n\
         backend b\n    mode http\n    server b 127.0.0.1:{}\n\n\
         backend c\n    mode http\n    server c 127.0.0.1:{}\n",
        a.addr().port(),
        b.addr().port(),
        c.addr().port()
    );
    let Some(lb) = haproxy(&sections) else { return };
    let url = |path: &str| format!("ws://127.0.0.1:{}{path}", lb.port);
    let to_a = Session::connect(config(&url("/a/diffusion")), None).unwrap();
    let to_b = Session::connect(config(&url("/b/diffusion")), None).unwrap();
    assert_eq!((landed_on(&to_a), landed_on(&to_b)), (0xA, 0xB));
    let mut routed = config(&url("/a/diffusion"));
    routed.options.add_http_header("X-Route", "blue").unwrap();
    let to_c = Session::connect(routed, None).unwrap();
    assert_eq!(landed_on(&to_c), 0xC);
}

/// Two servers behind haproxy's round robin, a relay in front of haproxy to cut connections.
fn pool(sticky: bool) -> Option<(ServerHandle, ServerHandle, common::external::External, Relay)> {
    let a = instance_server(0xA, "/diffusion");
    let b = instance_server(0xB, "/diffusion");
    let cookie = if sticky { "    cookie SERVERID insert indirect nocache\n" } else { "" };
    let (ca, cb) = if sticky { (" cookie a", " cookie b") } else { ("", "") };
    let sections = format!(
        "frontend sessions\n    mode http\n    bind 127.0.0.1:{{port}}\n    default_backend pool\n\n\
         backend pool\n    mode http\n    balance roundrobin\n{cookie}    server a 127.0.0.1:{}{ca}\n    server b 127.0.0.1:{}{cb}\n",
        a.addr().port(),
        b.addr().port()
    );
    let lb = haproxy(&sections)?;
    let relay = Relay::start(std::net::SocketAddr::from(([127, 0, 0, 1], lb.port)));
    Some((a, b, lb, relay))
}

#[test]
fn sticky_sessions_reconnect_to_the_server_that_holds_them_and_lose_nothing() {
    let Some((a, b, _lb, relay)) = pool(true) else { return };
    let url = relay.url("ws", "127.0.0.1");
    let sessions: Vec<(Session, Inbox)> = (0..20)
        .map(|i| {
            let session = Session::connect(reconnecting(&url), None).unwrap();
            let inbox = Inbox::default();
            session.subscribe(&format!("s/{i}"), inbox.handler()).unwrap();
            session.publish(&format!("s/{i}"), b"before").unwrap();
            (session, inbox)
        })
        .collect();
    let before: Vec<(u64, session::SessionId)> =
        sessions.iter().map(|(s, _)| (landed_on(s), *s.id().unwrap())).collect();
    assert!(before.iter().any(|(i, _)| *i == 0xA) && before.iter().any(|(i, _)| *i == 0xB), "spread over both");
    assert_eq!(a.session_count() + b.session_count(), 20);
    for (_, inbox) in &sessions {
        assert!(inbox.wait_for(1, Duration::from_secs(5)));
    }

    relay.cut();
    for (i, (session, inbox)) in sessions.iter().enumerate() {
        assert!(wait_state(session, State::ConnectedActive, Duration::from_secs(10)));
        session.publish(&format!("s/{i}"), b"after").unwrap();
        assert!(inbox.wait_for(2, Duration::from_secs(5)), "session {i} lost a message");
        assert_eq!(*session.id().unwrap(), before[i].1, "same session");
    }
    std::thread::sleep(Duration::from_millis(100));
    for (session, inbox) in &sessions {
        assert_eq!(inbox.len(), 2, "exactly once");
        assert_eq!(session.state(), State::ConnectedActive);
    }
    assert_eq!(a.session_count() + b.session_count(), 20, "no session was recreated");
}

#[test]
fn without_stickiness_reconnections_that_land_elsewhere_close_with_unknown_session() {
    let Some((_a, _b, _lb, relay)) = pool(false) else { return };
    let url = relay.url("ws", "127.0.0.1");
    let sessions: Vec<Session> = (0..20).map(|_| Session::connect(reconnecting(&url), None).unwrap()).collect();
    relay.cut();
    let deadline = Instant::now() + Duration::from_secs(15);
    let settled = |s: &Session| matches!(s.state(), State::ClosedFailed) || (s.state() == State::ConnectedActive);
    std::thread::sleep(Duration::from_millis(200));
    while !sessions.iter().all(settled) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(sessions.iter().all(settled), "none hangs");
    let unknown = sessions
        .iter()
        .filter(|s| s.state() == State::ClosedFailed)
        .inspect(|s| {
            let e = s.error().unwrap();
            assert_eq!(e.code(), ErrorCode::UnknownSession, "{e}");
            assert!(e.message().contains("does not know this session"), "{e}");
        })
        .count();
    assert!(unknown > 0, "round robin sent some reconnections to the other server");
}

fn nginx_location(location: &str, upstream: &str) -> String {
    format!(
        "    server {{\n        listen 127.0.0.1:{{port}};\n        location {location} {{\n            proxy_pass {upstream};\n            \
         proxy_http_version 1.1;\n            proxy_set_header Upgrade $http_upgrade;\n            \
         proxy_set_header Connection \"upgrade\";\n            proxy_read_timeout 1h;\n        }}\n    }}"
    )
}

#[test]
fn nginx_proxies_the_upgrade_on_a_path_prefix_with_and_without_rewriting() {
    // Without rewriting: the server serves the prefixed path itself.
    let prefixed = instance_server(1, "/app/diffusion");
    let Some(plain) = nginx(&nginx_location("/app/diffusion", &format!("http://127.0.0.1:{}", prefixed.addr().port())))
    else {
        return;
    };
    let s = Session::connect(config(&format!("ws://127.0.0.1:{}/app/diffusion", plain.port)), None).unwrap();
    assert_eq!(landed_on(&s), 1);
    // With rewriting: nginx strips /app, the server serves /diffusion.
    let bare = instance_server(2, "/diffusion");
    let Some(rewriting) = nginx(&nginx_location("/app/", &format!("http://127.0.0.1:{}/", bare.addr().port()))) else {
        return;
    };
    let s = Session::connect(config(&format!("ws://127.0.0.1:{}/app/diffusion", rewriting.port)), None).unwrap();
    assert_eq!(landed_on(&s), 2);
}

#[test]
fn a_balancer_dropping_the_connect_header_costs_only_a_round_trip() {
    // nginx blanks the header that carries the CONNECT_REQUEST in the upgrade: the client sends it
    // as its first message instead, credentials included.
    let server = instance_server(3, "/diffusion");
    let location = nginx_location("/", &format!("http://127.0.0.1:{}", server.addr().port())).replace(
        "proxy_read_timeout 1h;",
        "proxy_read_timeout 1h;\n            proxy_set_header X-Session-Connect \"\";",
    );
    let Some(balancer) = nginx(&location) else { return };
    let mut c = config(&format!("ws://127.0.0.1:{}/diffusion", balancer.port));
    c.options.principal = USER.into();
    c.options.credentials = session::protocol::Credentials::Password(PASSWORD.into());
    let s = Session::connect(c, None).unwrap_or_else(|e| panic!("{e}\nnginx:\n{}", balancer.output()));
    assert_eq!(landed_on(&s), 3);
    assert_eq!(server.sessions()[0].principal, USER);
}

#[test]
fn a_stopped_nginx_leaves_no_worker_behind() {
    let server = start_server();
    let Some(balancer) = nginx(&nginx_location("/", &format!("http://127.0.0.1:{}/", server.addr().port()))) else {
        return;
    };
    let children = |pid: u32| {
        let out = std::process::Command::new("pgrep").args(["-P", &pid.to_string()]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect::<Vec<_>>()
    };
    let workers = children(balancer.pid());
    assert!(!workers.is_empty(), "nginx runs a worker process");
    drop(balancer);
    let alive =
        |pid: &String| std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "));
    assert!(wait_until(Duration::from_secs(5), || !workers.iter().any(alive)), "workers left: {workers:?}");
}
