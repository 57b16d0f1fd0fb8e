//! Cluster benchmarks (`make bench`): publish-to-deliver round trips and throughput through one
//! node of a cluster and across two nodes, against the single-process server in the same run,
//! and recovery on another node after a cut. Real nats-server (JetStream, one server) and
//! session-server processes on 127.0.0.1; writes docs/CLUSTER-BENCHMARKS.md.

#[allow(dead_code)]
#[path = "../tests/cluster/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../tests/cluster/relay.rs"]
mod relay;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use harness::{cluster_args, nats_single, tools, Haproxy, Node};
use relay::Relay;
use session::reconnect::{ReconnectPolicy, ReconnectionStrategy};
use session::{Session, SessionConfig};

const ROUND_TRIPS: usize = 2_000;
const SMALL: usize = 64;
const SMALL_COUNT: usize = 20_000;
const LARGE: usize = 16 * 1024;
const LARGE_COUNT: usize = 2_000;
const RECOVERIES: usize = 10;

fn connect(url: &str) -> Session {
    let mut config = SessionConfig::new(url).expect("url");
    config.options.reconnection = ReconnectionStrategy {
        timeout: Some(Duration::from_secs(20)),
        policy: ReconnectPolicy::Repeating { attempts: 100_000, delay: Duration::from_millis(5) },
    };
    Session::connect(config, None).expect("session")
}

/// Publishes, waiting while the session's queue is full.
fn publish(session: &Session, path: &str, data: &[u8]) {
    while session.publish(path, data).is_err() {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Counts deliveries and wakes a waiter.
#[derive(Default)]
struct Counter {
    count: AtomicUsize,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Counter {
    fn wait_for(&self, count: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut guard = self.lock.lock().unwrap();
        while self.count.load(Ordering::SeqCst) < count {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = self.changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
        true
    }

    fn add(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        let _guard = self.lock.lock().unwrap();
        self.changed.notify_all();
    }
}

/// Ping-pong: `a` publishes on ping, `b` answers on pong from its handler; microseconds per
/// round trip (two publish-to-deliver trips).
fn round_trips(a_url: &str, b_url: &str, tag: &str) -> Vec<f64> {
    let a = connect(a_url);
    let b = Arc::new(connect(b_url));
    let (ping, pong) = (format!("bench/{tag}/ping"), format!("bench/{tag}/pong"));
    let answer = b.clone();
    let pong_path = pong.clone();
    b.subscribe(&ping, Arc::new(move |_: &str, data: &[u8]| publish(&answer, &pong_path, data))).expect("subscribe");
    let counter = Arc::new(Counter::default());
    let seen = counter.clone();
    a.subscribe(&pong, Arc::new(move |_: &str, _: &[u8]| seen.add())).expect("subscribe");
    // Until both subscriptions are in place everywhere.
    let payload = vec![7u8; SMALL];
    let warm = Instant::now();
    loop {
        publish(&a, &ping, &payload);
        if counter.wait_for(1, Duration::from_millis(200)) {
            break;
        }
        assert!(warm.elapsed() < Duration::from_secs(30), "{tag}: no answer");
    }
    std::thread::sleep(Duration::from_millis(200));
    let base = counter.count.load(Ordering::SeqCst);
    let mut rtts = Vec::with_capacity(ROUND_TRIPS);
    for i in 1..=ROUND_TRIPS {
        let start = Instant::now();
        publish(&a, &ping, &payload);
        assert!(counter.wait_for(base + i, Duration::from_secs(10)), "{tag}: round trip {i} lost");
        rtts.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let _ = b.close();
    let _ = a.close();
    rtts
}

/// `count` messages of `size` bytes from a session on `pub_url` to one on `sub_url`: messages
/// per second, from the first publication to the last delivery.
fn throughput(pub_url: &str, sub_url: &str, tag: &str, count: usize, size: usize) -> f64 {
    let subscriber = connect(sub_url);
    let publisher = connect(pub_url);
    let path = format!("bench/{tag}/flow");
    let counter = Arc::new(Counter::default());
    let seen = counter.clone();
    subscriber.subscribe(&path, Arc::new(move |_: &str, _: &[u8]| seen.add())).expect("subscribe");
    let warm = Instant::now();
    loop {
        publish(&publisher, &path, b"warm");
        if counter.wait_for(1, Duration::from_millis(200)) {
            break;
        }
        assert!(warm.elapsed() < Duration::from_secs(30), "{tag}: no delivery");
    }
    std::thread::sleep(Duration::from_millis(200));
    let base = counter.count.load(Ordering::SeqCst);
    let payload = vec![1u8; size];
    let start = Instant::now();
    for _ in 0..count {
        publish(&publisher, &path, &payload);
    }
    assert!(counter.wait_for(base + count, Duration::from_secs(120)), "{tag}: deliveries lost");
    let rate = count as f64 / start.elapsed().as_secs_f64();
    let _ = publisher.close();
    let _ = subscriber.close();
    rate
}

/// Milliseconds from a cut of the subscriber's connection (behind haproxy, round robin over the
/// nodes, so it recovers on the other node) to the next delivery, with a publication every
/// millisecond; and messages lost over all the cuts.
fn recoveries(relay: &Relay, pub_url: &str) -> (Vec<f64>, u64) {
    let subscriber = connect(&relay.url());
    let publisher = Arc::new(connect(pub_url));
    let path = "bench/recovery/numbers";
    let received = Arc::new(Mutex::new(Vec::<u64>::new()));
    let last_at = Arc::new(Mutex::new(Instant::now()));
    let (got, at) = (received.clone(), last_at.clone());
    subscriber
        .subscribe(
            path,
            Arc::new(move |_: &str, data: &[u8]| {
                if let Some(n) = std::str::from_utf8(data).ok().and_then(|t| t.parse::<u64>().ok()) {
                    got.lock().unwrap().push(n);
                }
                *at.lock().unwrap() = Instant::now();
            }),
        )
        .expect("subscribe");
    // Numbering starts once the subscription is in place.
    let start = Instant::now();
    loop {
        publish(&publisher, path, b"warm");
        std::thread::sleep(Duration::from_millis(50));
        if *last_at.lock().unwrap() > start {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "recovery: no delivery");
    }
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (source, numbering, stopping) = (publisher.clone(), next.clone(), stop.clone());
    let feeder = std::thread::spawn(move || {
        while !stopping.load(Ordering::SeqCst) {
            let n = numbering.fetch_add(1, Ordering::SeqCst);
            publish(&source, path, n.to_string().as_bytes());
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let wait_delivery = |after: Instant| -> Option<f64> {
        let deadline = after + Duration::from_secs(20);
        while Instant::now() < deadline {
            let at = *last_at.lock().unwrap();
            if at > after {
                return Some((at - after).as_secs_f64() * 1e3);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        None
    };
    let mut times = Vec::new();
    for _ in 0..RECOVERIES {
        std::thread::sleep(Duration::from_millis(300));
        let cut = Instant::now();
        relay.cut();
        times.push(wait_delivery(cut).expect("delivery resumed after a cut"));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    feeder.join().unwrap();
    let sent = next.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().len() < sent as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = received.lock().unwrap().clone();
    if let Some(i) = got.iter().enumerate().position(|(i, n)| *n != i as u64) {
        panic!(
            "recovery: delivery {i} is {} (around it: {:?})",
            got[i],
            &got[i.saturating_sub(3)..(i + 3).min(got.len())]
        );
    }
    let lost = sent - got.len() as u64;
    let _ = subscriber.close();
    let _ = publisher.close();
    (times, lost)
}

/// CPU time (user and system) process `pid` has used, in milliseconds.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) in parentheses; utime and stime are the
    // 14th and 15th fields, in clock ticks (100 per second on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    ticks as f64 * 10.0
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    sorted[((sorted.len() - 1) as f64 * p / 100.0).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !tools(&["nats-server", "haproxy"]) {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "nats-server and haproxy are needed");
        eprintln!("cluster bench skipped: nats-server or haproxy is not installed (make bench installs them)");
        return;
    }
    let nats = nats_single();
    let args = cluster_args(&[&nats], &[]);
    let single = Node::start("single", 1, &[]);
    // Nodes 2 and 3 serve the sessions; node 4 serves none, and shows what a node pays for the
    // cluster's traffic that no session of its own wants (every node reads the whole stream).
    let clustered: Vec<Node> = (2..=4).map(|i| Node::start(&format!("node-{i}"), i, &args)).collect();
    let idle_pid = clustered[2].pid().expect("node-4 runs");
    let url = |node: &Node| format!("ws://{}/diffusion", node.addr());
    let (single_url, one, two) = (url(&single), url(&clustered[0]), url(&clustered[1]));

    let mut rows = Vec::new();
    let setups = [
        ("single-process server", single_url.as_str(), single_url.as_str()),
        ("cluster, both sessions on one node", one.as_str(), one.as_str()),
        ("cluster, sessions on two nodes", one.as_str(), two.as_str()),
    ];
    for (name, a, b) in setups {
        eprintln!("cluster bench: {name}");
        let tag: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let rtts = round_trips(a, b, &tag);
        let idle_before = cpu_ms(idle_pid);
        let small = throughput(a, b, &format!("{tag}s"), SMALL_COUNT, SMALL);
        let idle_small = (cpu_ms(idle_pid) - idle_before) * 1e3 / SMALL_COUNT as f64;
        let large = throughput(a, b, &format!("{tag}l"), LARGE_COUNT, LARGE);
        let idle = (name != setups[0].0).then_some(idle_small);
        rows.push((name, percentile(&rtts, 50.0), percentile(&rtts, 99.0), small, large, idle));
    }
    eprintln!("cluster bench: recovery on another node");
    let haproxy = Haproxy::start(&[clustered[0].addr(), clustered[1].addr()]);
    let relay = Relay::start(std::net::SocketAddr::from(([127, 0, 0, 1], haproxy.port)));
    let (times, lost) = recoveries(&relay, &two);

    let mut out = String::from(
        "# Cluster benchmarks\n\nWritten by `make bench` (session-server/benches/cluster.rs). One nats-server 2.9 with \
         JetStream (file storage, one replica) and session-server processes on 127.0.0.1, on the machine that ran \
         `make bench`. Round trip: a session publishes 64 bytes, a session subscribed answers from its handler, and \
         the first receives the answer (two publish-to-deliver trips), "
    );
    out.push_str(&format!(
        "{ROUND_TRIPS} times. Throughput: {SMALL_COUNT} messages of {SMALL} B and {LARGE_COUNT} of {LARGE} B from one \
         session to another, first publication to last delivery. Every row has libsession's delivery guarantee \
         (acknowledged, recoverable); in a cluster a publication is also stored by JetStream before it is \
         acknowledged and delivered.\n\n"
    ));
    out.push_str("| setup | round trip p50 (µs) | round trip p99 (µs) | 64 B (messages/s) | 16 KiB (messages/s) | 16 KiB (MB/s) | node without sessions: CPU per 64 B message (µs) |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (name, p50, p99, small, large, idle) in &rows {
        let idle = idle.map_or("-".to_string(), |us| format!("{us:.1}"));
        out.push_str(&format!(
            "| {name} | {p50:.0} | {p99:.0} | {small:.0} | {large:.0} | {:.1} | {idle} |\n",
            large * LARGE as f64 / 1e6
        ));
    }
    out.push_str(
        "\nThe last column is the limit of reading the whole stream: a third node, serving no session, \
         spends that much CPU per message published elsewhere in the cluster (clock ticks of 10 ms, over the \
         64 B run).\n",
    );
    out.push_str(&format!(
        "\nRecovery on another node: a subscriber behind haproxy (round robin over two nodes, no \
         stickiness) while a publication goes out every millisecond; its connection is cut {RECOVERIES} times. \
         Time from the cut to the next delivery: median {:.1} ms, worst {:.1} ms; messages lost: {lost} \
         (deliveries checked in order, none repeated).\n",
        percentile(&times, 50.0),
        percentile(&times, 100.0)
    ));
    println!("{out}");
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CLUSTER-BENCHMARKS.md");
    std::fs::write(file, out).expect("write docs/CLUSTER-BENCHMARKS.md");
    drop((relay, haproxy, clustered, single, nats));
}
