//! libsession next to other publish/subscribe stacks doing the same work on the same loopback:
//! a publisher process, a server or broker process, a subscriber process (and a client
//! publishing to its own subscription for round trips). The peers' clients are small C programs
//! (benches/mqtt_client.c, mosquitto_client.c, nats_client.c, built here with `cc`) and modes of
//! this bench (libsession through its C API, and a raw tokio-tungstenite relay); all take
//! MODE COUNT SIZE after their own arguments, as benches/peer_common.h describes.

use super::*;
use std::path::{Path, PathBuf};

/// Connects per peer: turns of a few, as the main connect figure takes them.
const PEER_CONNECT_TURNS: usize = 5;
const PEER_CONNECTS_PER_TURN: usize = 10;
const PEER_ROUND_TRIPS: usize = 2000;
const PEER_REPEATS: usize = 3;
/// Idle sessions per peer, but for nats.c, whose connections have two threads each, and for
/// libmosquitto, whose clients take three descriptors each (a socket pair besides the
/// connection), which the descriptor limit here (20000) would not allow for 10000.
const PEER_IDLE: usize = 10_000;
const NATS_IDLE: usize = 1_000;
const MOSQUITTO_IDLE: usize = 5_000;
/// Cuts per recovery run, and the pause between them (ms).
const CUTS: usize = 5;
const CUT_EVERY_MS: u64 = 1500;

/// One client of the comparison.
pub struct Peer {
    pub name: String,
    /// What a delivered message is worth.
    pub guarantee: &'static str,
    program: PathBuf,
    /// The client's arguments before MODE COUNT SIZE, given the port to connect to and an HTTP
    /// proxy's port.
    args: Box<dyn Fn(u16, Option<u16>) -> Vec<String>>,
    /// The server or broker's port and process.
    port: u16,
    server_pid: u32,
    /// Connects through an HTTP proxy (tinyproxy).
    proxy: bool,
    /// Recovers from a cut by itself, so the recovery figure applies.
    recovers: bool,
    idle: usize,
    /// The first peer of a client library; connect and idle figures do not depend on the QoS,
    /// so only these take them.
    pub first_of_library: bool,
}

impl Peer {
    fn command(&self, port: u16, proxy: Option<u16>, mode: &str, count: usize, size: usize) -> Command {
        let mut command = Command::new(&self.program);
        command.args((self.args)(port, proxy)).args([mode.to_string(), count.to_string(), size.to_string()]);
        command
    }

    /// Runs a mode that prints one figure per line and exits.
    fn figures(&self, proxy: Option<u16>, mode: &str, count: usize, size: usize) -> Vec<f64> {
        let output = self.command(self.port, proxy, mode, count, size).stderr(Stdio::inherit()).output().unwrap();
        assert!(output.status.success(), "{}: {mode} failed", self.name);
        samples(&output.stdout)
    }
}

/// The servers and brokers of the comparison, in processes of their own, on ephemeral loopback
/// ports, stopped (by PID) when dropped.
pub struct Brokers {
    children: Vec<Child>,
    dir: PathBuf,
    pub peers: Vec<Peer>,
    proxies: Vec<Tinyproxy>,
}

impl Drop for Brokers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free now on 127.0.0.1 (bound, read back and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Compiles a C client; None (with a note) when its library is missing.
fn build_client(name: &str, lib: &str) -> Option<PathBuf> {
    let out = std::env::temp_dir().join(format!("libsession-bench-{name}"));
    let source = format!("{}/benches/{name}.c", env!("CARGO_MANIFEST_DIR"));
    let built = Command::new("cc").args(["-O2", "-o"]).arg(&out).arg(&source).arg(lib).status();
    match built {
        Ok(status) if status.success() => Some(out),
        _ => {
            eprintln!("{name} not built (is the library for {lib} installed?): its rows are missing");
            None
        }
    }
}

fn find_program(candidates: &[&str]) -> Option<&'static str> {
    candidates
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| -> &'static str { Box::leak(p.to_string().into_boxed_str()) })
}

const ACKED: &str = "acknowledged, numbered, replayed after a reconnect";
const QOS0: &str = "QoS 0: at most once, unacknowledged";
const QOS1: &str = "QoS 1: at least once, acknowledged (PUBACK)";
const NATS: &str = "core NATS: at most once, unacknowledged";
const NONE: &str = "none: TCP only, lost on a cut";

impl Brokers {
    /// Starts mosquitto (TCP and WebSocket listeners), nats-server, the raw relay and tinyproxy
    /// where installed, and builds the C clients; `server` is libsession's.
    pub fn start(server: &BundledServer) -> Brokers {
        let dir = std::env::temp_dir().join(format!("libsession-bench-peers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut brokers = Brokers { children: vec![], dir: dir.clone(), peers: vec![], proxies: vec![] };
        brokers.proxies.extend(Tinyproxy::start(server.port));
        let me = std::env::current_exe().unwrap();

        // libsession, and the raw relay.
        brokers.peers.push(Peer {
            name: "libsession".into(),
            guarantee: ACKED,
            program: me.clone(),
            args: Box::new(|port, proxy| {
                vec![
                    "--peer-session".into(),
                    format!("ws://127.0.0.1:{port}/diffusion"),
                    proxy.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                ]
            }),
            port: server.port,
            server_pid: server.child.id(),
            proxy: brokers.proxies.len() == 1,
            recovers: true,
            idle: PEER_IDLE,
            first_of_library: true,
        });
        let mut relay = Command::new(&me).arg("--ws-relay").stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(relay.stdout.take().unwrap()).read_line(&mut line).unwrap();
        brokers.peers.push(Peer {
            name: "raw tokio-tungstenite relay".into(),
            guarantee: NONE,
            program: me.clone(),
            args: Box::new(|port, _| vec!["--peer-raw".into(), format!("ws://127.0.0.1:{port}")]),
            port: line.trim().parse().unwrap(),
            server_pid: relay.id(),
            proxy: false,
            recovers: false,
            idle: PEER_IDLE,
            first_of_library: true,
        });
        brokers.children.push(relay);

        // mosquitto: a TCP and a WebSocket listener.
        let mqtt = build_client("mqtt_client", "-lpaho-mqtt3a");
        let mosq = build_client("mosquitto_client", "-lmosquitto");
        if let (Some(mosquitto), true) =
            (find_program(&["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]), mqtt.is_some() || mosq.is_some())
        {
            let (tcp, ws) = (free_port(), free_port());
            let conf = dir.join("mosquitto.conf");
            // No limit on queued messages (the default, 1000, would drop a fast publisher's
            // messages to a slower subscriber), no logging, Nagle off as libsession's sockets.
            std::fs::write(
                &conf,
                format!(
                    "per_listener_settings false\nallow_anonymous true\nset_tcp_nodelay true\n\
                     max_queued_messages 0\nmax_inflight_messages 1000\nlog_dest none\n\
                     listener {tcp} 127.0.0.1\nlistener {ws} 127.0.0.1\nprotocol websockets\n"
                ),
            )
            .unwrap();
            let child =
                Command::new(mosquitto).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
            if let Ok(child) = child {
                wait_listening(tcp, "mosquitto");
                wait_listening(ws, "mosquitto (WebSocket)");
                let pid = child.id();
                brokers.children.push(child);
                let proxy_tcp = Tinyproxy::start(tcp);
                let proxy_ws = Tinyproxy::start(ws);
                if let Some(paho) = &mqtt {
                    for (transport, port, proxied) in
                        [("TCP", tcp, proxy_tcp.is_some()), ("WebSocket", ws, proxy_ws.is_some())]
                    {
                        for qos in [0, 1] {
                            let scheme = if transport == "TCP" { "tcp" } else { "ws" };
                            brokers.peers.push(Peer {
                                name: format!("Paho MQTT C, {transport}, QoS {qos}"),
                                guarantee: if qos == 0 { QOS0 } else { QOS1 },
                                program: paho.clone(),
                                args: Box::new(move |port, proxy| {
                                    vec![
                                        format!("{scheme}://127.0.0.1:{port}"),
                                        qos.to_string(),
                                        proxy.map(|p| format!("http://127.0.0.1:{p}")).unwrap_or_else(|| "-".into()),
                                    ]
                                }),
                                port,
                                server_pid: pid,
                                proxy: proxied,
                                recovers: qos == 1,
                                idle: PEER_IDLE,
                                first_of_library: qos == 0,
                            });
                        }
                    }
                }
                if let Some(client) = &mosq {
                    for qos in [0, 1] {
                        brokers.peers.push(Peer {
                            name: format!("libmosquitto, TCP, QoS {qos}"),
                            guarantee: if qos == 0 { QOS0 } else { QOS1 },
                            program: client.clone(),
                            args: Box::new(move |port, _| vec![port.to_string(), qos.to_string()]),
                            port: tcp,
                            server_pid: pid,
                            proxy: false,
                            recovers: qos == 1,
                            idle: MOSQUITTO_IDLE,
                            first_of_library: qos == 0,
                        });
                    }
                }
                brokers.proxies.extend(proxy_tcp);
                brokers.proxies.extend(proxy_ws);
            }
        }

        // nats-server.
        if let (Some(nats), Some(client)) =
            (find_program(&["/usr/sbin/nats-server", "/usr/bin/nats-server"]), build_client("nats_client", "-lnats"))
        {
            let port = free_port();
            let conf = dir.join("nats.conf");
            // A subscriber may fall behind by the whole run without being cut as a slow consumer.
            std::fs::write(&conf, format!("listen: 127.0.0.1:{port}\nmax_pending: 1GB\nmax_payload: 1MB\n")).unwrap();
            if let Ok(child) =
                Command::new(nats).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn()
            {
                wait_listening(port, "nats-server");
                brokers.peers.push(Peer {
                    name: "nats.c".into(),
                    guarantee: NATS,
                    program: client,
                    args: Box::new(|port, _| vec![format!("nats://127.0.0.1:{port}")]),
                    port,
                    server_pid: child.id(),
                    proxy: false,
                    recovers: true,
                    idle: NATS_IDLE,
                    first_of_library: true,
                });
                brokers.children.push(child);
            }
        }
        brokers
    }

    /// The raw relay's throughput (messages/s) in one run: the main table's baseline.
    pub fn relay_rate(&self, count: usize, size: usize) -> f64 {
        let relay = self.peers.iter().find(|p| p.name.starts_with("raw")).unwrap();
        throughput_run(relay, count, size).rate
    }

    /// The tinyproxy in front of `port`, if any.
    fn proxy_for(&self, port: u16) -> Option<u16> {
        self.proxies.iter().find(|p| p.target == port).map(|p| p.port)
    }
}

// --- measurements ----------------------------------------------------------------------------

/// CPU time (user + system) of a process so far, from /proc/PID/stat.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let total = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_secs_f64(total as f64 / ticks)
}

/// Resident memory of a process, in KiB, from /proc/PID/status.
fn process_rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits for a child, killing it after `limit`, and returns its CPU time (user + system), from
/// wait4's resource usage.
fn wait_cpu(mut child: Child, limit: Duration) -> Duration {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let (pid, start) = (child.id() as libc::pid_t, Instant::now());
    while unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) } == 0 {
        if start.elapsed() > limit {
            let _ = child.kill();
            unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let time = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// One throughput run: messages delivered per second, what was delivered, and the CPU the
/// clients (publisher and subscriber) and the server spent.
struct Run {
    rate: f64,
    delivered: usize,
    client_cpu: Duration,
    server_cpu: Duration,
}

fn throughput_run(peer: &Peer, count: usize, size: usize) -> Run {
    let mut sub = peer.command(peer.port, None, "sub", count, size).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready", "{}: subscriber", peer.name);
    let server_before = process_cpu(peer.server_pid);
    // The subscription surely in place at the server.
    std::thread::sleep(Duration::from_millis(100));
    let mut publisher = peer.command(peer.port, None, "pub", count, size).stdin(Stdio::piped()).spawn().unwrap();
    let result = lines.next().unwrap().unwrap();
    // A publisher that holds its session until told (libsession, the raw client) lets go now;
    // one still publishing after the subscriber's 10 s is stopped.
    drop(publisher.stdin.take());
    let client_cpu = wait_cpu(publisher, Duration::from_secs(2)) + wait_cpu(sub, Duration::from_secs(10));
    let server_cpu = process_cpu(peer.server_pid) - server_before;
    let mut fields = result.split_whitespace().map(|f| f.parse::<f64>().unwrap());
    let (delivered, elapsed_us) = (fields.next().unwrap() as usize, fields.next().unwrap());
    eprintln!("bench: {}, {size} B: {delivered} of {count} delivered in {:.0} ms", peer.name, elapsed_us / 1e3);
    Run { rate: (delivered.max(2) - 1) as f64 / (elapsed_us / 1e6), delivered, client_cpu, server_cpu }
}

/// Memory per idle session: the client's and the server's resident memory after the first
/// connection and after all, per connection beyond the first (KiB).
fn idle_run(peer: &Peer) -> (f64, f64) {
    let mut child = peer
        .command(peer.port, None, "idle", peer.idle, SMALL)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "one", "{}: idle", peer.name);
    std::thread::sleep(Duration::from_millis(200));
    let (client_before, server_before) = (process_rss_kib(child.id()), process_rss_kib(peer.server_pid));
    writeln!(stdin, "go").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "ready", "{}: idle", peer.name);
    std::thread::sleep(Duration::from_millis(500));
    let (client_after, server_after) = (process_rss_kib(child.id()), process_rss_kib(peer.server_pid));
    drop(stdin);
    let _ = child.wait();
    let n = (peer.idle - 1) as f64;
    ((client_after - client_before) / n, (server_after - server_before) / n)
}

/// Recovery: the client publishes a numbered message every 2 ms to its own subscription through
/// a relay that cuts its connections `CUTS` times; returns the pauses in delivery (µs) and the
/// messages lost.
fn recovery_run(peer: &Peer) -> (Vec<f64>, usize) {
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], peer.port)));
    let mut child = peer
        .command(relay.port, None, "recover", CUTS, SMALL)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready", "{}: recover", peer.name);
    for _ in 0..CUTS {
        std::thread::sleep(Duration::from_millis(CUT_EVERY_MS));
        relay.cut();
    }
    std::thread::sleep(Duration::from_millis(CUT_EVERY_MS));
    writeln!(stdin, "stop").unwrap();
    let (mut gaps, mut lost) = (vec![], 0);
    for line in lines.map_while(Result::ok) {
        if let Some(gap) = line.strip_prefix("gap ") {
            gaps.push(gap.parse().unwrap());
        } else if let Some(n) = line.strip_prefix("lost ") {
            lost = n.parse().unwrap();
        }
    }
    let _ = child.wait();
    (gaps, lost)
}

/// Runs each peer in turn, `turns` times, the order rotating; returns each peer's results.
fn turns<T>(peers: &[&Peer], turns: usize, mut run: impl FnMut(&Peer) -> T) -> Vec<Vec<T>> {
    let mut results: Vec<Vec<T>> = peers.iter().map(|_| Vec::new()).collect();
    for turn in 0..turns {
        for k in 0..peers.len() {
            let i = (turn + k) % peers.len();
            results[i].push(run(peers[i]));
        }
    }
    results
}

// --- tables ----------------------------------------------------------------------------------

/// A figure for each peer; `higher` when more is better.
struct Table {
    title: String,
    columns: Vec<String>,
    /// Per peer: its values (None: not measured), and a note.
    rows: Vec<(String, &'static str, Vec<Option<f64>>, String)>,
    /// Which column the ratio against libsession uses, and whether higher is better.
    ratio_of: usize,
    higher: bool,
}

impl Table {
    fn render(&self) -> String {
        let mut out = format!("### {}\n\n| peer | delivery guarantee |", self.title);
        for column in &self.columns {
            out.push_str(&format!(" {column} |"));
        }
        out.push_str(&format!(" libsession vs this ({}) | note |\n|---|---|", self.columns[self.ratio_of]));
        out.push_str(&"---:|".repeat(self.columns.len()));
        out.push_str("---|---|\n");
        let ours = self.rows.iter().find(|r| r.0 == "libsession").and_then(|r| r.2[self.ratio_of]);
        for (name, guarantee, values, note) in &self.rows {
            out.push_str(&format!("| {name} | {guarantee} |"));
            for v in values {
                out.push_str(&match v {
                    Some(v) if *v >= 100.0 || v.fract() == 0.0 => format!(" {v:.0} |"),
                    Some(v) => format!(" {v:.2} |"),
                    None => " - |".into(),
                });
            }
            let ratio = match (ours, values[self.ratio_of]) {
                (Some(o), Some(t)) if t > 0.0 && o > 0.0 => {
                    let ahead = if self.higher { o >= t } else { o <= t };
                    let ratio = o / t;
                    let ratio = if ratio < 0.1 { format!("{ratio:.3}") } else { format!("{ratio:.2}") };
                    format!("{ratio}x {}", if ahead { "(libsession at or ahead)" } else { "(libsession BEHIND)" })
                }
                _ => "-".into(),
            };
            out.push_str(&format!(" {ratio} | {note} |\n"));
        }
        out
    }

    /// Where libsession trails a peer in this table: (peer, ratio).
    fn behind(&self) -> Vec<(String, f64)> {
        let Some(ours) = self.rows.iter().find(|r| r.0 == "libsession").and_then(|r| r.2[self.ratio_of]) else {
            return vec![];
        };
        self.rows
            .iter()
            .filter_map(|(name, _, values, _)| {
                let theirs = values[self.ratio_of]?;
                let behind = if self.higher { ours < theirs } else { ours > theirs };
                (name != "libsession" && behind && theirs > 0.0).then(|| (name.clone(), ours / theirs))
            })
            .collect()
    }
}

/// The peers' tables and a summary, in Markdown.
pub struct PeerResults {
    pub markdown: String,
}

/// The peers' figures; `parts` picks which (all when empty): connect, rtt, throughput, idle,
/// recovery.
pub fn run(brokers: &Brokers, parts: &[&str]) -> PeerResults {
    let wanted = |p: &str| parts.is_empty() || parts.contains(&p);
    let peers: Vec<&Peer> = brokers.peers.iter().collect();
    let mut tables: Vec<Table> = Vec::new();

    if wanted("connect") {
        enter("peers: connect");
        let firsts: Vec<&Peer> = peers.iter().copied().filter(|p| p.first_of_library).collect();
        let direct = turns(&firsts, PEER_CONNECT_TURNS, |p| p.figures(None, "connect", PEER_CONNECTS_PER_TURN, SMALL));
        let proxied: Vec<&Peer> = firsts.iter().copied().filter(|p| p.proxy).collect();
        let tiny = turns(&proxied, PEER_CONNECT_TURNS, |p| {
            p.figures(brokers.proxy_for(p.port), "connect", PEER_CONNECTS_PER_TURN, SMALL)
        });
        let rows = firsts
            .iter()
            .zip(&direct)
            .map(|(p, d)| {
                let through = proxied.iter().position(|q| q.name == p.name).map(|i| tiny[i].concat());
                let direct = d.concat();
                let wanted = PEER_CONNECT_TURNS * PEER_CONNECTS_PER_TURN;
                let note = if direct.len() < wanted || through.as_ref().is_some_and(|t| t.len() < wanted) {
                    format!(
                        "{} and {} connects (5 s per run)",
                        direct.len(),
                        through.as_ref().map(Vec::len).unwrap_or(0)
                    )
                } else {
                    String::new()
                };
                (
                    library(&p.name),
                    p.guarantee_of_connect(),
                    vec![Some(median(&direct)), through.map(|t| median(&t))],
                    note,
                )
            })
            .collect();
        tables.push(Table {
            title: format!(
                "Connect: create to usable session (µs, median of {} connects)",
                PEER_CONNECT_TURNS * PEER_CONNECTS_PER_TURN
            ),
            columns: vec!["direct".into(), "through tinyproxy".into()],
            rows,
            ratio_of: 0,
            higher: false,
        });
    }

    if wanted("rtt") {
        enter("peers: round trip");
        let results = turns(&peers, PEER_REPEATS, |p| p.figures(None, "rtt", PEER_ROUND_TRIPS, SMALL));
        let rows = peers
            .iter()
            .zip(&results)
            .map(|(p, r)| {
                let all = r.concat();
                let note = if all.len() < PEER_REPEATS * PEER_ROUND_TRIPS {
                    format!("{} round trips (5 s per run)", all.len())
                } else {
                    String::new()
                };
                (p.name.clone(), p.guarantee, vec![Some(percentile(&all, 50.0)), Some(percentile(&all, 99.0))], note)
            })
            .collect();
        tables.push(Table {
            title: format!(
                "Round trip, 64 B, publish to own subscription (µs, {} round trips)",
                PEER_REPEATS * PEER_ROUND_TRIPS
            ),
            columns: vec!["p50".into(), "p99".into()],
            rows,
            ratio_of: 0,
            higher: false,
        });
    }

    if wanted("throughput") {
        let mut cpu_rows: Vec<(String, &'static str, Vec<Option<f64>>, String)> =
            peers.iter().map(|p| (p.name.clone(), p.guarantee, vec![], String::new())).collect();
        for (size, count) in [(SMALL, SMALL_COUNT), (LARGE, LARGE_COUNT)] {
            enter(if size == SMALL { "peers: throughput, 64 B" } else { "peers: throughput, 16 KiB" });
            throughput_run(peers[0], count / 10, size); // warm-up
            let results = turns(&peers, PEER_REPEATS, |p| throughput_run(p, count, size));
            let label = if size == SMALL { "64 B" } else { "16 KiB" };
            let rows = peers
                .iter()
                .zip(&results)
                .map(|(p, runs)| {
                    let rate = median(&runs.iter().map(|r| r.rate).collect::<Vec<_>>());
                    let lost: usize = runs.iter().map(|r| count - r.delivered.min(count)).sum();
                    let note = if lost > 0 {
                        format!("{lost} of {} messages not delivered within 10 s or lost", count * runs.len())
                    } else {
                        String::new()
                    };
                    (p.name.clone(), p.guarantee, vec![Some(rate), Some(rate * size as f64 / 1e6)], note)
                })
                .collect();
            for (i, runs) in results.iter().enumerate() {
                let per_message = |cpu: fn(&Run) -> Duration| {
                    median(
                        &runs
                            .iter()
                            .map(|r| cpu(r).as_secs_f64() * 1e6 / r.delivered.max(1) as f64)
                            .collect::<Vec<_>>(),
                    )
                };
                cpu_rows[i].2.push(Some(per_message(|r| r.client_cpu)));
                cpu_rows[i].2.push(Some(per_message(|r| r.server_cpu)));
            }
            tables.push(Table {
                title: format!("Throughput, {label}: publisher process to subscriber process through the server ({count} messages, median of {PEER_REPEATS})"),
                columns: vec!["messages/s".into(), "MB/s".into()],
                rows,
                ratio_of: 0,
                higher: true,
            });
        }
        for row in &mut cpu_rows {
            // Client and server together, at 64 B, for the ratio.
            let total = row.2[0].unwrap() + row.2[1].unwrap();
            row.2.push(Some(total));
        }
        tables.push(Table {
            title: "CPU time per delivered message (µs), from the throughput runs: clients (publisher + subscriber processes) and server".into(),
            columns: vec![
                "64 B client".into(),
                "64 B server".into(),
                "16 KiB client".into(),
                "16 KiB server".into(),
                "64 B client + server".into(),
            ],
            rows: cpu_rows,
            ratio_of: 4,
            higher: false,
        });
    }

    if wanted("idle") {
        enter("peers: idle sessions");
        let firsts: Vec<&Peer> = peers.iter().copied().filter(|p| p.first_of_library).collect();
        let rows = firsts
            .iter()
            .map(|p| {
                // Fresh servers for each: one that has carried other sessions or messages keeps
                // the freed memory in its heap, and new sessions take it without the resident
                // size growing.
                let server = BundledServer::start();
                let fresh = Brokers::start(&server);
                let peer = fresh.peers.iter().find(|q| q.name == p.name).unwrap();
                let (client, server) = idle_run(peer);
                (
                    library(&p.name),
                    p.guarantee_of_connect(),
                    vec![Some(client), Some(server), Some(client + server)],
                    format!("{} sessions", p.idle),
                )
            })
            .collect();
        tables.push(Table {
            title: "Memory per idle session (KiB of resident memory)".into(),
            columns: vec!["client".into(), "server".into(), "client + server".into()],
            rows,
            ratio_of: 2,
            higher: false,
        });
    }

    if wanted("recovery") {
        enter("peers: recovery");
        let recovering: Vec<&Peer> = peers.iter().copied().filter(|p| p.recovers).collect();
        let rows = recovering
            .iter()
            .map(|p| {
                let (mut gaps, lost) = recovery_run(p);
                let note = match gaps.len() {
                    0 => {
                        format!("no pause over 5 ms: each of the {CUTS} cuts paused delivery for less (5 is the bound)")
                    }
                    n if n < CUTS => {
                        format!("{n} pauses over 5 ms for {CUTS} cuts: the others paused it for less (counted as 5)")
                    }
                    n => format!("{n} pauses over 5 ms for {CUTS} cuts"),
                };
                // The longest, one per cut; a cut that paused delivery for less than 5 ms counts
                // as 5 ms, the bound.
                gaps.sort_by(|a, b| b.partial_cmp(a).unwrap());
                gaps.resize(CUTS, 5000.0);
                let pause = Some(median(&gaps) / 1e3);
                (p.name.clone(), p.guarantee, vec![pause, Some(lost as f64)], note)
            })
            .collect();
        tables.push(Table {
            title: format!(
                "Recovery: {CUTS} cuts of the connection (a relay resets it) while a message is published every 2 ms"
            ),
            columns: vec!["pause in delivery (ms)".into(), "messages lost".into()],
            rows,
            ratio_of: 0,
            higher: false,
        });
    }

    let mut markdown = String::new();
    for table in &tables {
        markdown.push_str(&table.render());
        markdown.push('\n');
    }
    markdown.push_str("### Where libsession leads and where it trails (generated)\n\n");
    markdown.push_str(&summary(&tables));
    PeerResults { markdown }
}

impl Peer {
    /// Connect and idle rows stand for the client library, whatever the QoS.
    fn guarantee_of_connect(&self) -> &'static str {
        if self.guarantee == QOS0 {
            "MQTT (QoS of the messages)"
        } else {
            self.guarantee
        }
    }
}

/// A peer's name without its QoS, for rows that stand for the library.
fn library(name: &str) -> String {
    name.trim_end_matches(", QoS 0").trim_end_matches(", QoS 1").to_string()
}

/// Plain words from the tables: for each, which peers libsession trails and by how much.
fn summary(tables: &[Table]) -> String {
    let mut out = String::new();
    for table in tables {
        let behind = table.behind();
        let column = &table.columns[table.ratio_of];
        if behind.is_empty() {
            out.push_str(&format!("- {} ({column}): libsession at or ahead of every peer.\n", table.title));
        } else {
            let names: Vec<String> = behind
                .iter()
                .map(|(name, ratio)| {
                    if table.higher {
                        format!("{name} ({:.0}% of its figure)", ratio * 100.0)
                    } else {
                        format!("{name} ({ratio:.2}x its figure)")
                    }
                })
                .collect();
            let total = table.rows.len() - 1;
            out.push_str(&format!(
                "- {} ({column}): libsession ahead of {} of {total} peers, behind {}.\n",
                table.title,
                total - behind.len(),
                names.join(", ")
            ));
        }
    }
    out
}
