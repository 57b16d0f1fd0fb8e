//! Real processes on loopback for the cluster tests: nats-server (single, or a three-node
//! JetStream cluster), session-server nodes and haproxy in front of them. Each runs with its
//! files in a temporary directory of its own, is stopped by PID (SIGTERM, then SIGKILL) and has
//! its output printed when a test fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a NATS server (or cluster) may take to have JetStream ready.
pub const NATS_READY: Duration = Duration::from_secs(30);

/// A program the tests need. Under `CI=true` a missing one fails the test; elsewhere the test is
/// skipped with a message saying why.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists());
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} is not installed; `make test` installs it (scripts/install-deps.sh; CI must not skip)");
        }
        eprintln!("SKIPPED: {name} is not installed (run `make test` as root to install it)");
    }
    found
}

/// Whether every program of `names` is installed (see [`tool`]).
pub fn tools(names: &[&str]) -> bool {
    names.iter().all(|name| tool(name).is_some())
}

/// A free loopback port for a program that binds it later, outside the kernel's ephemeral range:
/// a port from that range could meanwhile go to another connection, and the program's readiness
/// check would then reach the wrong listener.
pub fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    for _ in 0..1000 {
        let port = low + rand::random::<u16>() % (high - low);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {low} and {high}");
}

/// `count` distinct free ports.
pub fn free_ports(count: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < count {
        let port = free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// A temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        for _ in 0..100 {
            let path =
                std::env::temp_dir().join(format!("{prefix}-{}-{:016x}", std::process::id(), rand::random::<u64>()));
            if std::fs::create_dir(&path).is_ok() {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777));
                return TempDir(path);
            }
        }
        panic!("cannot create a temporary directory in {}", std::env::temp_dir().display());
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    let mut out = String::new();
    if from > 0 {
        out.push_str(&format!("[... {from} lines before]\n"));
    }
    for line in &all[from..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A child process with its output in a log file; stopped (SIGTERM, then SIGKILL after 5 s) and
/// reaped on drop.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Starts `program args` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path, env: &[(&str, &str)]) -> Proc {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null()).stdout(file.try_clone().unwrap()).stderr(file);
        for (key, value) in env {
            command.env(key, value);
        }
        // The process dies with the test's thread, should the test process be killed.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        Proc { name: name.to_string(), log: log.to_path_buf(), child: Some(child) }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The name and PID, for messages.
    pub fn describe(&self) -> String {
        match self.pid() {
            Some(pid) => format!("{} (pid {pid})", self.name),
            None => format!("{} (stopped)", self.name),
        }
    }

    /// Whether the process still runs; `Err` with its exit status once it has ended.
    pub fn check(&mut self) -> Result<(), String> {
        match self.child.as_mut().map(|c| c.try_wait()) {
            None => Err("stopped by the test".into()),
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => Err(format!("exited: {status}")),
            Some(Err(e)) => Err(format!("cannot wait: {e}")),
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL after 5 s; reaped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `GET path` on 127.0.0.1:`port` (HTTP/1.0): the status and the body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream =
        TcpStream::connect_timeout(&std::net::SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The string value of the first `"key":"value"` in `json` from `from` on (no JSON parser in
/// the server's dependencies; the monitoring answers are flat enough for this).
pub fn json_string_after(json: &str, from: &str, key: &str) -> Option<String> {
    let start = json.find(from)?;
    let rest = &json[start..];
    let needle = format!("\"{key}\":");
    let at = rest.find(&needle)? + needle.len();
    let value = rest[at..].trim_start();
    let value = value.strip_prefix('"')?;
    let end = value.find('"')?;
    Some(value[..end].to_string())
}

// ---------------------------------------------------------------------------------------------
// NATS

/// One nats-server with JetStream, alone or one of a cluster.
pub struct NatsServer {
    pub name: String,
    pub port: u16,
    pub monitor_port: u16,
    pub cluster_port: Option<u16>,
    conf: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
    dir: TempDir,
}

impl NatsServer {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn write_config(name: &str, port: u16, monitor_port: u16, cluster: Option<(u16, &[u16])>) -> (TempDir, PathBuf) {
        let dir = TempDir::new(&format!("session-cluster-{name}"));
        let store = dir.path().join("jetstream");
        let mut conf = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor_port}\n\
             jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 256MB\n  max_file_store: 1GB\n}}\n",
            store.display()
        );
        if let Some((cluster_port, routes)) = cluster {
            let routes: Vec<String> = routes
                .iter()
                .filter(|&&p| p != cluster_port)
                .map(|p| format!("    nats-route://127.0.0.1:{p}"))
                .collect();
            conf.push_str(&format!(
                "cluster {{\n  name: session-test\n  listen: 127.0.0.1:{cluster_port}\n  routes: [\n{}\n  ]\n}}\n",
                routes.join("\n")
            ));
        }
        let path = dir.path().join("nats.conf");
        std::fs::write(&path, conf).unwrap();
        (dir, path)
    }

    fn launch(&mut self) {
        let program = tool("nats-server").expect("nats-server is installed");
        let args = vec!["-c".to_string(), self.conf.display().to_string()];
        self.proc = Some(Proc::spawn(&self.name, &program, &args, &self.log, &[]));
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    /// The name, PID and ports, for messages.
    pub fn describe(&self) -> String {
        let proc = self.proc.as_ref().map_or(format!("{} (stopped)", self.name), |p| p.describe());
        let cluster = self.cluster_port.map_or(String::new(), |p| format!(", cluster port {p}"));
        format!("{proc}: {}, monitoring port {}{cluster}", self.url(), self.monitor_port)
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test if the process has ended.
    fn assert_alive(&mut self) {
        if let Some(proc) = self.proc.as_mut() {
            if let Err(e) = proc.check() {
                panic!("{} {e}:\n{}", self.name, tail(&self.output(), 100));
            }
        }
    }

    /// Waits until JetStream answers healthy on the monitoring port.
    pub fn wait_healthy(&mut self, deadline: Instant) {
        loop {
            self.assert_alive();
            if let Some((200, body)) = http_get(self.monitor_port, "/healthz?js-enabled-only=true") {
                if body.contains("ok") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{}: JetStream not ready in time:\n{}",
                self.name,
                tail(&self.output(), 100)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The meta leader this server knows of (from /jsz), if any.
    pub fn meta_leader(&self) -> Option<String> {
        let (status, body) = http_get(self.monitor_port, "/jsz")?;
        if status != 200 {
            return None;
        }
        json_string_after(&body, "\"meta_cluster\"", "leader").filter(|leader| !leader.is_empty())
    }

    /// The replicated streams this server reports (from /jsz), as (name, leader).
    pub fn streams(&self) -> Vec<(String, String)> {
        let Some((200, body)) = http_get(self.monitor_port, "/jsz?accounts=true&streams=true") else {
            return Vec::new();
        };
        let Some(details) = body.find("\"stream_detail\"") else { return Vec::new() };
        let body = &body[details..];
        // Each stream's object begins with its name, followed by "created", and has a "cluster"
        // object with the leader.
        let mut streams = Vec::new();
        let mut from = 0;
        while let Some(at) = body[from..].find("\"created\"") {
            let created = from + at;
            let name = body[..created].rfind("\"name\"").and_then(|n| json_string_after(&body[n..], "", "name"));
            let leader = json_string_after(&body[created..], "", "leader");
            if let (Some(name), Some(leader)) = (name, leader) {
                if !leader.is_empty() {
                    streams.push((name, leader));
                }
            }
            from = created + 1;
        }
        streams
    }

    /// The leader of the replicated stream this server reports (from /jsz), a key-value bucket's
    /// (KV_...) only if there is no other stream.
    pub fn stream_leader(&self) -> Option<String> {
        let streams = self.streams();
        streams
            .iter()
            .find(|(name, _)| !name.starts_with("KV_") && !name.starts_with("OBJ_"))
            .or(streams.first())
            .map(|(_, leader)| leader.clone())
    }

    /// Creates a file stream `name` on `subjects` with `replicas` replicas through the JetStream
    /// API, over the NATS protocol; the API's answer.
    pub fn create_stream(&self, name: &str, subjects: &str, replicas: u32) -> String {
        use std::io::BufRead;
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("INFO"), "{}: {line}", self.name);
        let config = format!(r#"{{"name":"{name}","subjects":["{subjects}"],"num_replicas":{replicas}}}"#);
        let request = format!(
            "CONNECT {{\"verbose\":false}}\r\nSUB _INBOX.harness 1\r\nPUB $JS.API.STREAM.CREATE.{name} _INBOX.harness {}\r\n{config}\r\n",
            config.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.starts_with("MSG") {
                line.clear();
                reader.read_line(&mut line).unwrap();
                return line.trim().to_string();
            }
            if line.starts_with("PING") {
                stream.write_all(b"PONG\r\n").unwrap();
            }
            assert!(!line.is_empty() && !line.starts_with("-ERR"), "{}: {line}", self.name);
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// SIGTERM (SIGKILL after 5 s).
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.stop();
        }
    }

    /// Starts it again with the same configuration: the same ports and store directory.
    pub fn restart(&mut self, deadline: Instant) {
        assert!(self.proc.is_none(), "{} is still running", self.name);
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .and_then(|mut f| f.write_all(b"--- restarted by the test ---\n"));
        self.launch();
        self.wait_healthy(deadline);
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A single nats-server with JetStream, ready.
pub fn nats_single() -> NatsServer {
    nats_single_with("")
}

/// [`nats_single`] with `extra` added to its configuration (an `authorization` block, say).
pub fn nats_single_with(extra: &str) -> NatsServer {
    let ports = free_ports(2);
    let (dir, conf) = NatsServer::write_config("nats-1", ports[0], ports[1], None);
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(extra);
    std::fs::write(&conf, text).unwrap();
    let log = dir.path().join("output.log");
    let mut server = NatsServer {
        name: "nats-1".into(),
        port: ports[0],
        monitor_port: ports[1],
        cluster_port: None,
        conf,
        log,
        proc: None,
        dir,
    };
    server.launch();
    server.wait_healthy(Instant::now() + NATS_READY);
    server
}

/// Three nats-servers forming a JetStream cluster, ready: each healthy and agreeing on a meta
/// leader.
pub fn nats_cluster() -> Vec<NatsServer> {
    let ports = free_ports(9);
    let cluster_ports = [ports[2], ports[5], ports[8]];
    let mut servers: Vec<NatsServer> = (0..3)
        .map(|i| {
            let name = format!("nats-{}", i + 1);
            let (port, monitor_port, cluster_port) = (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let (dir, conf) = NatsServer::write_config(&name, port, monitor_port, Some((cluster_port, &cluster_ports)));
            let log = dir.path().join("output.log");
            NatsServer { name, port, monitor_port, cluster_port: Some(cluster_port), conf, log, proc: None, dir }
        })
        .collect();
    for server in &mut servers {
        server.launch();
    }
    let deadline = Instant::now() + NATS_READY;
    wait_meta_leader(&mut servers, deadline);
    servers
}

/// Waits until every running server of `servers` names the same meta leader, one of the running
/// ones; returns its name.
pub fn wait_meta_leader(servers: &mut [NatsServer], deadline: Instant) -> String {
    loop {
        for server in servers.iter_mut() {
            server.assert_alive();
        }
        let running: Vec<&NatsServer> = servers.iter().filter(|s| s.is_running()).collect();
        let leaders: Vec<Option<String>> = running.iter().map(|s| s.meta_leader()).collect();
        if let Some(Some(leader)) = leaders.first() {
            let agreed = leaders.iter().all(|l| l.as_deref() == Some(leader.as_str()));
            if agreed && running.iter().any(|s| &s.name == leader) {
                return leader.clone();
            }
        }
        if Instant::now() >= deadline {
            let mut text = format!("no JetStream meta leader in time (leaders seen: {leaders:?})\n");
            for server in servers.iter() {
                text.push_str(&format!("--- {}\n{}", server.name, tail(&server.output(), 60)));
            }
            panic!("{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// session-server nodes

/// One session-server process.
pub struct Node {
    pub name: String,
    pub port: u16,
    /// The server instance number given with --instance: the first half of the ids of the
    /// sessions it opens.
    pub instance: u64,
    proc: Option<Proc>,
    log: PathBuf,
    _dir: TempDir,
}

impl Node {
    /// Starts `session-server --listen 127.0.0.1:0 --port-file FILE --allow-anonymous
    /// --instance N` plus `extra`, and waits until it has written its port.
    pub fn start(name: &str, instance: u64, extra: &[String]) -> Node {
        let dir = TempDir::new(&format!("session-cluster-{name}"));
        let port_file = dir.path().join("port");
        let log = dir.path().join("output.log");
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--port-file".into(),
            port_file.display().to_string(),
            "--allow-anonymous".into(),
            "--instance".into(),
            instance.to_string(),
        ];
        args.extend(extra.iter().cloned());
        let program = PathBuf::from(env!("CARGO_BIN_EXE_session-server"));
        let level = std::env::var("LIBSESSION_LOG").unwrap_or_else(|_| "info".into());
        let mut proc = Proc::spawn(name, &program, &args, &log, &[("LIBSESSION_LOG", &level)]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file).ok().and_then(|t| t.trim().parse::<u16>().ok()) {
                break port;
            }
            if let Err(e) = proc.check() {
                panic!("{name} ({}) {e} before listening:\n{}", args.join(" "), tail(&proc.output(), 100));
            }
            assert!(Instant::now() < deadline, "{name} did not write its port in time:\n{}", tail(&proc.output(), 100));
            std::thread::sleep(Duration::from_millis(20));
        };
        Node { name: name.to_string(), port, instance, proc: Some(proc), log, _dir: dir }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The name, PID, port and instance, for messages.
    pub fn describe(&self) -> String {
        let proc = self.proc.as_ref().map_or(format!("{} (killed)", self.name), |p| p.describe());
        format!("{proc}: port {}, instance {:016x}", self.port, self.instance)
    }

    /// Whether the process still runs (it has not ended on its own).
    pub fn check(&mut self) -> Result<(), String> {
        match self.proc.as_mut() {
            Some(proc) => proc.check(),
            None => Ok(()),
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// The process id, while running (for benches/cluster.rs).
    #[allow(dead_code)]
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }

    /// The log lines with `message` (e.g. "session opened").
    pub fn log_lines(&self, message: &str) -> Vec<String> {
        self.output().lines().filter(|l| l.contains(message)).map(str::to_string).collect()
    }

    /// Whether a session with this id (as the client displays it) was opened here, per the log
    /// line `session opened session=ID ...`.
    pub fn opened(&self, id: &str) -> bool {
        self.log_lines("session opened").iter().any(|l| l.contains(id))
    }
}

/// Three session-server nodes, each with `extra` arguments (e.g. `--cluster URL`), instance
/// numbers 0xc1..01, 0xc1..02 and 0xc1..03.
pub fn nodes(extra: &[String]) -> Vec<Node> {
    (1..=3u64).map(|i| Node::start(&format!("node-{i}"), instance_number(i), extra)).collect()
}

/// The instance number of node `i`.
pub fn instance_number(i: u64) -> u64 {
    0x00c1_u64 << 48 | i
}

/// `--cluster URL[,URL...]` plus `more`.
pub fn cluster_args(nats: &[&NatsServer], more: &[&str]) -> Vec<String> {
    let urls: Vec<String> = nats.iter().map(|n| n.url()).collect();
    let mut args = vec!["--cluster".to_string(), urls.join(",")];
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

/// Which node opened the session with id `id` (as displayed): by the instance number that begins
/// the id, else by the nodes' "session opened" log lines.
pub fn node_of(nodes: &[Node], id: &str) -> Option<usize> {
    let instance = id.split('-').next().and_then(|hex| u64::from_str_radix(hex, 16).ok());
    if let Some(i) = nodes.iter().position(|n| Some(n.instance) == instance) {
        return Some(i);
    }
    nodes.iter().position(|n| n.opened(id))
}

// ---------------------------------------------------------------------------------------------
// haproxy

/// haproxy in TCP mode balancing round robin, without stickiness, over the nodes, with health
/// checks that take a dead node out within a few hundred milliseconds.
pub struct Haproxy {
    pub port: u16,
    proc: Option<Proc>,
    log: PathBuf,
    _dir: TempDir,
}

impl Haproxy {
    pub fn start(backends: &[std::net::SocketAddr]) -> Haproxy {
        let program = tool("haproxy").expect("haproxy is installed");
        let dir = TempDir::new("session-cluster-haproxy");
        let port = free_port();
        let servers: Vec<String> = backends
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("    server node-{} {addr} check inter 200ms fall 1 rise 1", i + 1))
            .collect();
        let conf = format!(
            "global\n    maxconn 4000\n\n\
             defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 60s\n    timeout server 60s\n    \
             timeout check 1s\n    retries 2\n    option redispatch\n\n\
             frontend sessions\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\n\
             backend nodes\n    balance roundrobin\n{}\n",
            servers.join("\n")
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, conf).unwrap();
        let log = dir.path().join("output.log");
        let args = vec!["-db".to_string(), "-f".to_string(), path.display().to_string()];
        let mut proc = Proc::spawn("haproxy", &program, &args, &log, &[]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Err(e) = proc.check() {
                panic!("haproxy {e} before listening:\n{}", proc.output());
            }
            assert!(Instant::now() < deadline, "haproxy did not listen on {port}:\n{}", proc.output());
            std::thread::sleep(Duration::from_millis(25));
        }
        Haproxy { port, proc: Some(proc), log, _dir: dir }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/diffusion", self.port)
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn check(&mut self) -> Result<(), String> {
        match self.proc.as_mut() {
            Some(proc) => proc.check(),
            None => Ok(()),
        }
    }
}
