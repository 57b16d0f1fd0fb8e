//! session-server nodes in cluster mode (`--cluster nats://...`): real nats-server processes
//! with JetStream, three session-server processes and haproxy balancing round robin without
//! stickiness in front of them, with libsession clients. Publications must reach the
//! subscriptions of every node exactly once and in order, through connection cuts, a killed
//! node, a killed NATS node and a NATS outage.
//!
//! Needs nats-server and haproxy (scripts/install-deps.sh installs them): without them the tests
//! say why and pass, except under CI=true where they fail.

#[path = "cluster/harness.rs"]
mod harness;
#[path = "cluster/relay.rs"]
mod relay;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use harness::{cluster_args, nats_cluster, nats_single, node_of, nodes, tail, tools, Haproxy, NatsServer, Node};
use relay::{Cutter, Relay};
use session::reconnect::{ReconnectPolicy, ReconnectionStrategy};
use session::{Error, ErrorCode, MessageHandler, Session, SessionConfig, State};

/// The path of the numbered messages.
const NUMBERS: &str = "cluster/numbers";
/// Messages that only tell that publications get through.
const PROBE: &str = "cluster/probe";

/// The tests run one at a time: each runs a dozen processes, and they measure time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether the programs the tests run are installed (else the test is skipped, or fails under CI).
fn programs_installed() -> bool {
    tools(&["nats-server", "haproxy"])
}

// ---------------------------------------------------------------------------------------------
// The rig: every process of a test, with their logs printed when it fails.

struct Rig {
    name: &'static str,
    started: Instant,
    // Dropped in this order: the relay and the balancer first, the NATS servers last.
    relay: Option<Arc<Relay>>,
    haproxy: Option<Haproxy>,
    nodes: Vec<Node>,
    nats: Vec<NatsServer>,
}

impl Rig {
    fn new(name: &'static str) -> Rig {
        let rig =
            Rig { name, started: Instant::now(), relay: None, haproxy: None, nodes: Vec::new(), nats: Vec::new() };
        rig.progress("starting");
        rig
    }

    fn progress(&self, what: &str) {
        eprintln!("[{} {:>7.2}s] {what}", self.name, self.started.elapsed().as_secs_f64());
    }

    /// Three session-server nodes with `extra` arguments, haproxy in front of them.
    fn start_nodes(&mut self, extra: &[String]) {
        self.progress(&format!("starting three session-server nodes with {}", extra.join(" ")));
        self.nodes = nodes(extra);
        let addrs: Vec<_> = self.nodes.iter().map(|n| n.addr()).collect();
        self.haproxy = Some(Haproxy::start(&addrs));
        let ports: Vec<u16> = self.nodes.iter().map(|n| n.port).collect();
        self.progress(&format!("nodes on ports {ports:?}, haproxy on {}", self.haproxy.as_ref().unwrap().port));
    }

    /// A cuttable relay in front of haproxy.
    fn start_relay(&mut self) -> Arc<Relay> {
        let relay = Arc::new(Relay::start(self.haproxy.as_ref().expect("haproxy runs").addr()));
        self.relay = Some(relay.clone());
        relay
    }

    /// Where clients connect: the relay if there is one, else haproxy.
    fn url(&self) -> String {
        match &self.relay {
            Some(relay) => relay.url(),
            None => self.haproxy.as_ref().expect("haproxy runs").url(),
        }
    }

    /// Fails the test if a node or haproxy ended without the test stopping it.
    fn check_alive(&mut self) {
        for node in &mut self.nodes {
            if let Err(e) = node.check() {
                panic!("{} {e}", node.name);
            }
        }
        if let Some(haproxy) = &mut self.haproxy {
            if let Err(e) = haproxy.check() {
                panic!("haproxy {e}");
            }
        }
    }

    /// A subscriber (to the numbers' prefix) and a publisher, each with a session through
    /// [`Rig::url`], connected in that order (so that round robin puts them on different nodes).
    fn subscriber_and_publisher(&self) -> (Client, Client) {
        let url = self.url();
        let subscriber = Client::connect(self, "subscriber", &url);
        subscriber.subscribe();
        (subscriber, Client::connect(self, "publisher", &url))
    }

    /// SIGKILLs node `index`.
    fn kill_node(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        node.kill();
        let name = node.name.clone();
        self.progress(&format!("SIGKILLed {name}"));
    }

    fn dump(&self) -> String {
        let mut text = format!("===== logs of {} ({:.2}s)\n", self.name, self.started.elapsed().as_secs_f64());
        for nats in &self.nats {
            text.push_str(&format!("----- {} ({})\n", nats.describe(), nats.dir().display()));
            text.push_str(&tail(&nats.output(), 80));
        }
        for node in &self.nodes {
            text.push_str(&format!("----- {}\n", node.describe()));
            text.push_str(&tail(&node.output(), 150));
        }
        if let Some(haproxy) = &self.haproxy {
            text.push_str(&format!("----- haproxy (port {})\n", haproxy.port));
            text.push_str(&tail(&haproxy.output(), 60));
        }
        if let Some(relay) = &self.relay {
            text.push_str(&format!(
                "----- relay (port {}): {} connections open\n",
                relay.port,
                relay.open_connections()
            ));
        }
        text
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.dump());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// Messages received, in order.
#[derive(Default)]
struct Inbox {
    messages: Mutex<Vec<(String, Vec<u8>)>>,
    changed: Condvar,
}

impl Inbox {
    fn handler(self: &Arc<Self>) -> Arc<dyn MessageHandler> {
        let inbox = self.clone();
        Arc::new(move |path: &str, data: &[u8]| {
            inbox.messages.lock().unwrap().push((path.to_string(), data.to_vec()));
            inbox.changed.notify_all();
        })
    }

    fn count(&self, path: &str) -> usize {
        self.messages.lock().unwrap().iter().filter(|(p, _)| p == path).count()
    }

    fn count_below(&self, prefix: &str) -> usize {
        self.messages.lock().unwrap().iter().filter(|(p, _)| p.starts_with(prefix)).count()
    }

    /// The numbers received on `path`, in order.
    fn numbers(&self, path: &str) -> Vec<u64> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, data)| {
                std::str::from_utf8(data)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(|| panic!("not a number on {path}: {data:?}"))
            })
            .collect()
    }

    /// Waits until `count` messages on `path` have arrived, or `limit` has passed.
    fn wait_for(&self, path: &str, count: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut messages = self.messages.lock().unwrap();
        loop {
            if messages.iter().filter(|(p, _)| p == path).count() >= count {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            messages = self.changed.wait_timeout(messages, deadline - now).unwrap().0;
        }
    }
}

/// A session through the balancer with its state changes, refusals and received messages.
struct Client {
    name: &'static str,
    session: Session,
    states: Arc<Mutex<Vec<State>>>,
    refusals: Arc<Mutex<Vec<(String, Error, Instant)>>>,
    inbox: Arc<Inbox>,
}

/// A session configuration that keeps reconnecting, every 10 ms for up to 20 s.
fn reconnecting(url: &str) -> SessionConfig {
    let mut config = SessionConfig::new(url).expect("valid url");
    config.options.reconnection = ReconnectionStrategy {
        timeout: Some(Duration::from_secs(20)),
        policy: ReconnectPolicy::Repeating { attempts: 100_000, delay: Duration::from_millis(10) },
    };
    config.options.maximum_queue_size = 20_000;
    config
}

impl Client {
    /// Connects to `url`, trying again for up to 20 s (a node just killed may still be in the
    /// balancer's rotation).
    fn connect(rig: &Rig, name: &'static str, url: &str) -> Client {
        let states = Arc::new(Mutex::new(Vec::new()));
        let deadline = Instant::now() + Duration::from_secs(20);
        let session = loop {
            let log = states.clone();
            let listener = Box::new(move |_: State, new: State| log.lock().unwrap().push(new));
            match Session::connect(reconnecting(url), Some(listener)) {
                Ok(session) => break session,
                Err(e) if Instant::now() < deadline => {
                    rig.progress(&format!("{name}: cannot connect yet: {e}"));
                    states.lock().unwrap().clear();
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{name} cannot connect to {url}: {e}"),
            }
        };
        let refusals = Arc::new(Mutex::new(Vec::new()));
        let log = refusals.clone();
        session.set_error_handler(Some(Box::new(move |path: &str, error: &Error| {
            log.lock().unwrap().push((path.to_string(), error.clone(), Instant::now()));
        })));
        let client = Client { name, session, states, refusals, inbox: Arc::default() };
        rig.progress(&format!("{name} connected: session {}", client.id()));
        client
    }

    fn id(&self) -> String {
        self.session.id().map(|id| id.to_string()).unwrap_or_default()
    }

    /// Subscribes to everything below cluster/.
    fn subscribe(&self) {
        self.session.subscribe("cluster/", self.inbox.handler()).unwrap();
    }

    fn states(&self) -> Vec<State> {
        self.states.lock().unwrap().clone()
    }

    fn refusals(&self) -> Vec<(String, Error, Instant)> {
        self.refusals.lock().unwrap().clone()
    }

    /// Fails the test if the session was ever closed.
    fn assert_never_closed(&self) {
        let states = self.states();
        assert!(
            !states.iter().any(|s| s.is_closed()),
            "{} was closed ({:?}): {:?}; states {states:?}",
            self.name,
            self.session.state(),
            self.session.error()
        );
    }

    /// Waits until the session is CONNECTED_ACTIVE (it must never have been closed).
    fn wait_connected(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.session.state() != State::ConnectedActive && Instant::now() < deadline {
            self.assert_never_closed();
            std::thread::sleep(Duration::from_millis(10));
        }
        self.assert_never_closed();
        assert_eq!(self.session.state(), State::ConnectedActive, "{} not connected in time", self.name);
    }

    /// Fails the test if a numbered publication was refused.
    fn assert_numbers_never_refused(&self) {
        let refused: Vec<String> =
            self.refusals().iter().filter(|(p, _, _)| p == NUMBERS).map(|(p, e, _)| format!("{p}: {e}")).collect();
        assert!(refused.is_empty(), "{} had {} numbered publications refused: {refused:?}", self.name, refused.len());
    }

    /// Publishes, waiting while the session's queue is full (for up to 60 s).
    fn publish(&self, path: &str, data: &[u8]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.session.publish(path, data) {
                Ok(()) => return,
                Err(e) if e.code() == ErrorCode::QueueFull && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("{} cannot publish on {path}: {e} (state {})", self.name, self.session.state()),
            }
        }
    }
}

/// Which node each client's session was opened on (by its id), printed; fails if two were
/// opened on the same node when that can be told.
fn report_placement(rig: &Rig, clients: &[&Client]) -> Vec<Option<usize>> {
    let placement: Vec<Option<usize>> = clients.iter().map(|c| node_of(&rig.nodes, &c.id())).collect();
    for (client, node) in clients.iter().zip(&placement) {
        let node = node.map_or("an unknown node".to_string(), |i| rig.nodes[i].name.clone());
        rig.progress(&format!("{} (session {}) was opened on {node}", client.name, client.id()));
    }
    let known: Vec<usize> = placement.iter().flatten().copied().collect();
    let mut distinct = known.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), known.len(), "round robin put two sessions on the same node: {placement:?}");
    placement
}

/// Publishes probes from `publisher` until `subscriber` receives one (its subscription is in
/// place, and publications get through), for up to `limit`.
fn wait_until_delivered(rig: &Rig, publisher: &Client, subscriber: &Client, limit: Duration) {
    let deadline = Instant::now() + limit;
    let before = subscriber.inbox.count(PROBE);
    let mut sent = 0;
    loop {
        publisher.publish(PROBE, b"probe");
        sent += 1;
        if subscriber.inbox.wait_for(PROBE, before + 1, Duration::from_millis(500)) {
            rig.progress(&format!("a probe from {} reached {} ({sent} sent)", publisher.name, subscriber.name));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no probe from {} reached {} in {limit:?} ({sent} sent; refusals: {:?})",
            publisher.name,
            subscriber.name,
            publisher.refusals().iter().map(|(p, e, _)| format!("{p}: {e}")).collect::<Vec<_>>()
        );
    }
}

/// Publishes `range` on NUMBERS in batches of `batch` with `pause` after each, calling `after`
/// with the count published so far after each batch.
fn publish_numbers(
    publisher: &Client,
    range: std::ops::Range<u64>,
    batch: u64,
    pause: Duration,
    mut after: impl FnMut(u64),
) {
    for n in range {
        publisher.publish(NUMBERS, n.to_string().as_bytes());
        if (n + 1) % batch == 0 {
            std::thread::sleep(pause);
            after(n + 1);
        }
    }
}

/// What is wrong with `got` as the sequence 0..n.
fn describe(got: &[u64], n: u64) -> String {
    let mut seen = vec![0u32; n as usize];
    let mut outside = Vec::new();
    for &k in got {
        match seen.get_mut(k as usize) {
            Some(count) => *count += 1,
            None => outside.push(k),
        }
    }
    let missing: Vec<u64> = (0..n).filter(|&k| seen[k as usize] == 0).collect();
    let repeated: Vec<u64> = (0..n).filter(|&k| seen[k as usize] > 1).collect();
    let first_wrong = got.iter().enumerate().find(|(i, &k)| *i as u64 != k);
    let out_of_order = got.windows(2).filter(|w| w[1] <= w[0]).count();
    format!(
        "received {} of {n}: {} missing (first {:?}), {} repeated (first {:?}), {} out of order, {} outside the range \
         {:?}; first wrong position: {:?}",
        got.len(),
        missing.len(),
        &missing[..missing.len().min(10)],
        repeated.len(),
        &repeated[..repeated.len().min(10)],
        out_of_order,
        outside.len(),
        &outside[..outside.len().min(10)],
        first_wrong.map(|(i, k)| format!("#{i} is {k}")),
    )
}

/// Waits until `subscriber` has received n numbers, then checks they are 0..n, each once, in
/// order (waiting a little more for any repeat).
fn expect_exactly_once_in_order(rig: &mut Rig, subscriber: &Client, n: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last_report = Instant::now();
    while (subscriber.inbox.count(NUMBERS) as u64) < n && Instant::now() < deadline {
        subscriber.inbox.wait_for(NUMBERS, n as usize, Duration::from_millis(200));
        rig.check_alive();
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            let numbers = subscriber.inbox.numbers(NUMBERS);
            rig.progress(&format!(
                "{} has {} of {n} numbers (last {:?}), state {}",
                subscriber.name,
                numbers.len(),
                numbers.last(),
                subscriber.session.state()
            ));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let got = subscriber.inbox.numbers(NUMBERS);
    let expected: Vec<u64> = (0..n).collect();
    assert!(got == expected, "{} did not get 0..{n} exactly once in order: {}", subscriber.name, describe(&got, n));
    rig.progress(&format!("{} got 0..{n} exactly once, in order", subscriber.name));
}

// ---------------------------------------------------------------------------------------------
// The harness itself

#[test]
fn the_harness_starts_a_three_node_jetstream_cluster() {
    let _serial = serial();
    if !programs_installed() {
        return;
    }
    let mut rig = Rig::new("nats-cluster");
    rig.nats = nats_cluster();
    let leader = rig.nats[0].meta_leader().expect("a meta leader");
    rig.progress(&format!("meta leader: {leader}"));
    assert!(rig.nats.iter().any(|n| n.name == leader), "the leader {leader} is one of the three");
    for nats in &rig.nats {
        assert_eq!(nats.meta_leader().as_deref(), Some(leader.as_str()), "{} agrees on the leader", nats.name);
    }
    // A replicated stream has a leader, as the monitoring endpoint tells.
    let answer = rig.nats[0].create_stream("HARNESS", "harness.>", 3);
    assert!(answer.contains("stream_create_response") && !answer.contains("\"error\""), "{answer}");
    let deadline = Instant::now() + harness::NATS_READY;
    let stream_leader = loop {
        if let Some(leader) = rig.nats.iter().find_map(|n| n.stream_leader()) {
            break leader;
        }
        assert!(Instant::now() < deadline, "no stream leader reported");
        std::thread::sleep(Duration::from_millis(100));
    };
    rig.progress(&format!("streams: {:?}", rig.nats.iter().map(|n| n.streams()).collect::<Vec<_>>()));
    assert!(rig.nats.iter().any(|n| n.name == stream_leader), "the stream leader {stream_leader} is one of the three");
    // A SIGKILLed leader is replaced by one of the two others.
    let index = rig.nats.iter().position(|n| n.name == leader).unwrap();
    rig.nats[index].kill();
    rig.progress(&format!("SIGKILLed {leader}"));
    let new_leader = harness::wait_meta_leader(&mut rig.nats, Instant::now() + harness::NATS_READY);
    rig.progress(&format!("new meta leader: {new_leader}"));
    assert_ne!(new_leader, leader);
}

#[test]
fn the_harness_stops_and_restarts_a_single_jetstream_server_on_its_port() {
    let _serial = serial();
    if !programs_installed() {
        return;
    }
    let mut rig = Rig::new("nats-restart");
    rig.nats.push(nats_single());
    let port = rig.nats[0].port;
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    rig.nats[0].stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "nothing listens while it is stopped");
    rig.nats[0].restart(Instant::now() + harness::NATS_READY);
    assert_eq!(rig.nats[0].port, port);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(), "listening on the same port again");
    assert!(rig.nats[0].dir().join("jetstream").is_dir(), "the same store directory");
}

#[test]
fn the_harness_balances_plain_nodes_round_robin_through_haproxy_and_a_relay() {
    let _serial = serial();
    if !tools(&["haproxy"]) {
        return;
    }
    let mut rig = Rig::new("plain-nodes");
    rig.start_nodes(&[]);
    let relay = rig.start_relay();
    let url = rig.url();
    let first = Client::connect(&rig, "first", &url);
    let second = Client::connect(&rig, "second", &url);
    let placement = report_placement(&rig, &[&first, &second]);
    assert!(placement.iter().all(Option::is_some), "sessions are placed by their ids: {placement:?}");

    // Messages flow through the relay and haproxy (a plain node delivers its own sessions' only).
    first.subscribe();
    wait_until_delivered(&rig, &first, &first, Duration::from_secs(10));

    // The relay's cut breaks the connections.
    assert!(relay.open_connections() >= 2);
    relay.cut();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !second.states().contains(&State::RecoveringReconnect) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(second.states().contains(&State::RecoveringReconnect), "states {:?}", second.states());

    // A killed node is taken out of the rotation: new sessions go to the two others.
    let killed = placement[0].unwrap();
    rig.kill_node(killed);
    std::thread::sleep(Duration::from_millis(600));
    for name in ["third", "fourth", "fifth"] {
        let client = Client::connect(&rig, name, &url);
        let node = node_of(&rig.nodes, &client.id()).expect("placed by its id");
        assert_ne!(node, killed, "{name} went to the killed node");
    }
    rig.check_alive();
}

// ---------------------------------------------------------------------------------------------
// Cluster mode

#[test]
fn ten_thousand_messages_cross_nodes_exactly_once_while_connections_are_cut() {
    let _serial = serial();
    if !programs_installed() {
        return;
    }
    const N: u64 = 10_000;
    let mut rig = Rig::new("cuts");
    rig.nats.push(nats_single());
    let args = cluster_args(&[&rig.nats[0]], &[]);
    rig.start_nodes(&args);
    let relay = rig.start_relay();
    let (subscriber, publisher) = rig.subscriber_and_publisher();
    report_placement(&rig, &[&subscriber, &publisher]);
    wait_until_delivered(&rig, &publisher, &subscriber, Duration::from_secs(30));

    let mut cutter = Cutter::start(relay.clone(), Duration::from_millis(300));
    rig.progress("cutting every connection every 300 ms; publishing");
    let cuts = cutter.count.clone();
    publish_numbers(&publisher, 0..N, 100, Duration::from_millis(30), |done| {
        if done % 2000 == 0 {
            rig.progress(&format!(
                "published {done}; {} received; {} cuts",
                subscriber.inbox.count(NUMBERS),
                cuts.load(Ordering::SeqCst)
            ));
        }
    });
    expect_exactly_once_in_order(&mut rig, &subscriber, N, Duration::from_secs(60));
    let cuts = cutter.stop();
    rig.progress(&format!("{cuts} cuts"));
    assert!(cuts >= 5, "the connections were cut only {cuts} times");
    subscriber.wait_connected(Duration::from_secs(20));
    publisher.wait_connected(Duration::from_secs(20));
    assert!(
        subscriber.states().contains(&State::RecoveringReconnect),
        "the subscriber's connection was never cut: {:?}",
        subscriber.states()
    );
    publisher.assert_numbers_never_refused();
}

#[test]
fn a_killed_node_s_sessions_recover_on_the_others() {
    let _serial = serial();
    if !programs_installed() {
        return;
    }
    const N: u64 = 6_000;
    let mut rig = Rig::new("killed-node");
    rig.nats.push(nats_single());
    let args = cluster_args(&[&rig.nats[0]], &[]);
    rig.start_nodes(&args);
    let (subscriber, publisher) = rig.subscriber_and_publisher();
    let placement = report_placement(&rig, &[&subscriber, &publisher]);
    wait_until_delivered(&rig, &publisher, &subscriber, Duration::from_secs(30));

    // The node the subscriber is on, else the node that opened the most sessions.
    let victim = placement[0].unwrap_or_else(|| {
        let opened: Vec<usize> = rig.nodes.iter().map(|n| n.log_lines("session opened").len()).collect();
        rig.progress(&format!("sessions opened per node: {opened:?}"));
        (0..rig.nodes.len()).max_by_key(|&i| opened[i]).unwrap()
    });
    let on_victim = placement.iter().filter(|p| **p == Some(victim)).count();
    assert!(
        on_victim > 0 || !rig.nodes[victim].log_lines("session opened").is_empty(),
        "no session on {}",
        rig.nodes[victim].name
    );

    publish_numbers(&publisher, 0..N / 3, 100, Duration::from_millis(30), |_| {});
    rig.kill_node(victim);
    publish_numbers(&publisher, N / 3..N, 100, Duration::from_millis(30), |done| {
        if done % 1000 == 0 {
            rig.progress(&format!("published {done}; {} received", subscriber.inbox.count(NUMBERS)));
        }
    });
    expect_exactly_once_in_order(&mut rig, &subscriber, N, Duration::from_secs(60));
    subscriber.wait_connected(Duration::from_secs(20));
    publisher.wait_connected(Duration::from_secs(20));
    if placement[0] == Some(victim) {
        assert!(
            subscriber.states().contains(&State::RecoveringReconnect),
            "the subscriber was on the killed node: {:?}",
            subscriber.states()
        );
    }
    publisher.assert_numbers_never_refused();
}

#[test]
fn one_nats_node_of_three_killed_mid_stream_loses_nothing() {
    let _serial = serial();
    if !programs_installed() {
        return;
    }
    const N: u64 = 6_000;
    let mut rig = Rig::new("nats-node-killed");
    rig.nats = nats_cluster();
    let all: Vec<&NatsServer> = rig.nats.iter().collect();
    let args = cluster_args(&all, &["--cluster-replicas", "3"]);
    rig.start_nodes(&args);
    let (subscriber, publisher) = rig.subscriber_and_publisher();
    report_placement(&rig, &[&subscriber, &publisher]);
    wait_until_delivered(&rig, &publisher, &subscriber, Duration::from_secs(30));

    publish_numbers(&publisher, 0..N / 3, 100, Duration::from_millis(30), |_| {});
    // The leader of the servers' stream, else the meta leader: the most disruptive to lose.
    let stream_leader = rig.nats.iter().find_map(|n| n.stream_leader());
    let meta_leader = rig.nats.iter().find_map(|n| n.meta_leader());
    rig.progress(&format!("stream leader {stream_leader:?}, meta leader {meta_leader:?}"));
    let victim =
        stream_leader.or(meta_leader).and_then(|name| rig.nats.iter().position(|n| n.name == name)).unwrap_or(0);
    rig.nats[victim].kill();
    rig.progress(&format!("SIGKILLed {}", rig.nats[victim].name));
    publish_numbers(&publisher, N / 3..N, 100, Duration::from_millis(30), |done| {
        if done % 1000 == 0 {
            rig.progress(&format!("published {done}; {} received", subscriber.inbox.count(NUMBERS)));
        }
    });
    expect_exactly_once_in_order(&mut rig, &subscriber, N, Duration::from_secs(90));
    subscriber.wait_connected(Duration::from_secs(20));
    publisher.wait_connected(Duration::from_secs(20));
    publisher.assert_numbers_never_refused();
}

#[test]
fn nats_down_then_back_refuses_publications_and_sessions_carry_on() {
    let _serial = serial();
    if !programs_installed() {
        return;
    }
    const N: u64 = 1_000;
    const OUTAGE_PUBLICATIONS: usize = 3;
    let mut rig = Rig::new("nats-outage");
    rig.nats.push(nats_single());
    let args = cluster_args(&[&rig.nats[0]], &[]);
    rig.start_nodes(&args);
    let (subscriber, publisher) = rig.subscriber_and_publisher();
    report_placement(&rig, &[&subscriber, &publisher]);
    wait_until_delivered(&rig, &publisher, &subscriber, Duration::from_secs(30));

    rig.nats[0].stop();
    rig.progress("nats-server stopped");
    let states_before = (subscriber.states().len(), publisher.states().len());
    for k in 0..OUTAGE_PUBLICATIONS {
        let path = format!("cluster/outage/{k}");
        let published = Instant::now();
        publisher.publish(&path, format!("outage {k}").as_bytes());
        let deadline = published + Duration::from_secs(10);
        let refusal = loop {
            if let Some(refusal) = publisher.refusals().into_iter().find(|(p, _, _)| *p == path) {
                break refusal;
            }
            rig.check_alive();
            assert!(
                Instant::now() < deadline,
                "no refusal of the publication on {path} within 10 s (refusals: {:?}; states {:?})",
                publisher.refusals().iter().map(|(p, e, _)| format!("{p}: {e}")).collect::<Vec<_>>(),
                publisher.states()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let (_, error, at) = refusal;
        rig.progress(&format!("{path} refused after {:?}: {:?} {}", at - published, error.code(), error.message()));
        // The library puts "server URL: " before the server's own message.
        let said = error.message().split_once(": ").map_or(error.message(), |(_, said)| said);
        assert!(!said.trim().is_empty(), "the refusal says why: {}", error.message());
        assert!(error.message().contains(&path), "the refusal names the path {path}: {}", error.message());
        assert_eq!(subscriber.session.state(), State::ConnectedActive, "the subscriber stays connected");
        assert_eq!(publisher.session.state(), State::ConnectedActive, "the publisher stays connected");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        (subscriber.states().len(), publisher.states().len()),
        states_before,
        "the sessions stayed connected through the outage: subscriber {:?}, publisher {:?}",
        subscriber.states(),
        publisher.states()
    );

    rig.nats[0].restart(Instant::now() + harness::NATS_READY);
    rig.progress("nats-server restarted on the same port and store");
    wait_until_delivered(&rig, &publisher, &subscriber, Duration::from_secs(30));
    publish_numbers(&publisher, 0..N, 100, Duration::from_millis(20), |_| {});
    expect_exactly_once_in_order(&mut rig, &subscriber, N, Duration::from_secs(30));
    publisher.assert_numbers_never_refused();
    assert_eq!(subscriber.inbox.count_below("cluster/outage/"), 0, "a refused publication was delivered");
    subscriber.wait_connected(Duration::from_secs(5));
    publisher.wait_connected(Duration::from_secs(5));
    assert_eq!(subscriber.states(), vec![State::ConnectedActive], "the subscriber never lost its connection");
}

#[test]
fn nodes_authenticate_to_nats_and_keep_its_password_out_of_their_output() {
    let _serial = serial();
    if !programs_installed() {
        return;
    }
    const PASSWORD: &str = "nats-pass-7f3a";
    let mut rig = Rig::new("nats-auth");
    rig.nats
        .push(harness::nats_single_with(&format!("authorization {{\n  user: node\n  password: \"{PASSWORD}\"\n}}\n")));
    let url = rig.nats[0].url();
    let dir = harness::TempDir::new("session-cluster-auth");
    let node = |password: &str, port_file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_session-server"))
            .args(["--listen", "127.0.0.1:0", "--allow-anonymous", "--cluster", &url, "--nats-user", "node"])
            .arg("--port-file")
            .arg(port_file)
            .env("NATS_PASSWORD", password)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };

    // A wrong password: the node says it cannot connect, without the password, and exits.
    let refused = node("wrong-password-91c2", &dir.path().join("refused-port")).wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    rig.progress(&format!("with a wrong password: {} {}", refused.status, tail(&said, 3)));
    assert!(!refused.status.success());
    assert!(said.contains("cannot connect to NATS"), "{said}");
    assert!(!said.contains("wrong-password-91c2"), "the password is not shown: {said}");

    // The right password, from the environment: the node joins and serves sessions.
    let port_file = dir.path().join("port");
    let mut child = node(PASSWORD, &port_file);
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        if let Some(port) = std::fs::read_to_string(&port_file).ok().and_then(|t| t.trim().parse::<u16>().ok()) {
            break port;
        }
        assert!(child.try_wait().unwrap().is_none(), "the node exited");
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let url = format!("ws://127.0.0.1:{port}/diffusion");
    let subscriber = Client::connect(&rig, "subscriber", &url);
    subscriber.subscribe();
    let publisher = Client::connect(&rig, "publisher", &url);
    wait_until_delivered(&rig, &publisher, &subscriber, Duration::from_secs(30));
    drop((subscriber, publisher));
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!said.contains(PASSWORD), "the password is not in the log: {said}");
}
