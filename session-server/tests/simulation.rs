//! A deterministic fault simulation: two clients' `ClientSession`s and the server's session logic
//! (`Node`, `Attached`) exchange bytes through a simulated network driven by a seeded random
//! generator, on a simulated clock. Connections are cut at any byte, delayed, read slowly;
//! partitions shorter and longer than the reconnection timeout refuse new connections; the
//! server restarts; both clients publish, subscribe and unsubscribe throughout.
//!
//! After each seed: every message published by a client that stayed up reached every client that
//! stayed up exactly once, in order; every client that did not is closed with an error, and what
//! it received is a gap-free prefix; state changes follow the documented graph; the recovery
//! buffers stayed within their caps.
//!
//! `SIM_SEEDS=n` sets the number of seeds (10,000 by default); `SIM_SEED=n` replays one seed and
//! prints what happened.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use session::error::{Error, ErrorCode};
use session::protocol::{self, Frame, FrameDecoder, Message};
use session::session::client::{ClientSession, CoreOptions, Ended, Event, Item, Window};
use session::session::State;
use session_server::{Attached, Ending, Node, ServerConfig};

/// Milliseconds of simulated time a step covers.
const STEP: u64 = 5;
/// How long faults and publications go on.
const ACTIVE: u64 = 2_500;
/// How long the network is then left alone to settle, at most.
const SETTLE: u64 = 6_000;
const RECONNECTION_TIMEOUT: u64 = 1_000;
const PING_INTERVAL: u64 = 200;
const RECOVERY_BUFFER: usize = 16;
const QUEUE: usize = 24;
const LIMIT: u32 = 64 * 1024;
const PUBLICATIONS: u32 = 60;
const CLIENTS: usize = 2;

/// xorshift64*: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// One direction of a connection: chunks of bytes and when they arrive.
#[derive(Default)]
struct Pipe {
    chunks: VecDeque<(u64, Vec<u8>)>,
}

/// A simulated connection.
struct Conn {
    to_server: Pipe,
    to_client: Pipe,
    server_in: FrameDecoder,
    client_in: FrameDecoder,
    /// The server's side once the connect request arrived.
    attached: Option<Attached>,
    /// Bytes it carries (both ways) before it breaks, if it is to break.
    budget: Option<usize>,
    latency: u64,
    /// Bytes delivered to the client per step (a slow reader), if limited.
    read_rate: Option<usize>,
    next_ping: u64,
    pings: u64,
    broken: bool,
    /// The server closed it (after its last bytes arrive).
    server_closed: bool,
}

impl Conn {
    fn send(&mut self, to_server: bool, at: u64, bytes: Vec<u8>) {
        if self.broken || bytes.is_empty() {
            return;
        }
        let bytes = match &mut self.budget {
            Some(left) if *left < bytes.len() => {
                // Cut at this byte: what went before it arrives, then the connection breaks.
                let cut = bytes[..*left].to_vec();
                *left = 0;
                self.broken = true;
                cut
            }
            Some(left) => {
                *left -= bytes.len();
                bytes
            }
            None => bytes,
        };
        let pipe = if to_server { &mut self.to_server } else { &mut self.to_client };
        pipe.chunks.push_back((at + self.latency, bytes));
    }

    fn idle(&self) -> bool {
        self.to_server.chunks.is_empty() && self.to_client.chunks.is_empty()
    }
}

type Core = ClientSession<Message, u32>;

struct Client {
    core: Core,
    conn: Option<usize>,
    /// When to try to connect next.
    retry_at: Option<u64>,
    /// When the attempt under way is abandoned.
    attempt_deadline: u64,
    published: u32,
    /// Per publisher, the publication numbers received, in order.
    received: [Vec<u32>; CLIENTS],
    state: State,
    error: Option<Error>,
    subscribed_extra: Vec<u32>,
}

struct World {
    rng: Rng,
    base: Instant,
    now: u64,
    node: Node,
    conns: Vec<Conn>,
    clients: Vec<Client>,
    /// Until when new connections are refused.
    partition_until: u64,
    /// Whether a client may have failed: a partition at least half the reconnection timeout
    /// long, or a server restart.
    excuse: Option<String>,
    /// Where the current run of partitions (each beginning within a reconnection timeout of the
    /// last one's end) began.
    outage_from: u64,
    log: Vec<String>,
    verbose: bool,
}

fn server_config(seed: u64) -> ServerConfig {
    ServerConfig {
        allow_anonymous: true,
        ping_interval: Duration::from_millis(PING_INTERVAL),
        server_instance: seed & 0xffff,
        session_retained_bytes: 64 * 1024,
        ..Default::default()
    }
}

impl World {
    fn new(seed: u64, verbose: bool) -> World {
        let base = Instant::now();
        let clients = (0..CLIENTS)
            .map(|_| Client {
                core: Core::new(CoreOptions {
                    request: protocol::ConnectRequest { max_frame_size: LIMIT, ..Default::default() },
                    queue_capacity: QUEUE,
                    recovery_buffer: RECOVERY_BUFFER,
                    reconnection_timeout: Some(Duration::from_millis(RECONNECTION_TIMEOUT)),
                }),
                conn: None,
                retry_at: Some(0),
                attempt_deadline: 0,
                published: 0,
                received: Default::default(),
                state: State::Unknown,
                error: None,
                subscribed_extra: Vec::new(),
            })
            .collect();
        World {
            rng: Rng::new(seed),
            base,
            now: 0,
            node: Node::new(server_config(seed)),
            conns: Vec::new(),
            clients,
            partition_until: 0,
            excuse: None,
            outage_from: 0,
            log: Vec::new(),
            verbose,
        }
    }

    fn at(&self) -> Instant {
        self.base + Duration::from_millis(self.now)
    }

    fn note(&mut self, what: String) {
        if self.verbose {
            self.log.push(format!("{:>6} ms  {what}", self.now));
        }
    }

    /// Passes the client's events on: state changes checked against the graph, deliveries
    /// recorded.
    fn events(&mut self, c: usize) -> Result<(), String> {
        while let Some(event) = self.clients[c].core.poll_event() {
            match event {
                Event::State { from, to, error } => {
                    let client = &mut self.clients[c];
                    if from != client.state || !from.can_move_to(to) {
                        return Err(format!("client {c}: state change {from} -> {to} after {}", client.state));
                    }
                    if to == State::ClosedFailed && error.is_none() {
                        return Err(format!("client {c}: CLOSED_FAILED without an error"));
                    }
                    client.state = to;
                    client.error = error.clone();
                    self.note(format!(
                        "client {c}: {from} -> {to} {}",
                        error.map(|e| e.to_string()).unwrap_or_default()
                    ));
                }
                Event::Deliver { path, data } => {
                    let Some(publisher) = path.strip_prefix("t/").and_then(|p| p.parse::<usize>().ok()) else {
                        continue;
                    };
                    let n = u32::from_be_bytes(data[..4].try_into().unwrap());
                    self.clients[c].received[publisher].push(n);
                }
                Event::Refused { error, .. } => {
                    return Err(format!("client {c}: refused although anonymous sessions may do anything: {error}"));
                }
            }
        }
        Ok(())
    }

    /// The client's connection is gone (or its attempt failed) with `error`.
    fn lost(&mut self, c: usize, error: Error) {
        let now = self.at();
        if let Some(i) = self.clients[c].conn.take() {
            self.break_conn(i);
        }
        let client = &mut self.clients[c];
        if client.state.is_closed() {
            return;
        }
        client.core.connection_lost(now, error);
        client.retry_at = Some(self.now + self.rng.below(200));
    }

    fn break_conn(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        conn.broken = true;
        if let Some(attached) = conn.attached.take() {
            attached.detach();
        }
    }

    fn connect(&mut self, c: usize) {
        self.clients[c].retry_at = None;
        if self.now < self.partition_until {
            let error = Error::new(ErrorCode::SocketConnectFail, "cannot connect: Connection refused").try_later();
            self.note(format!("client {c}: refused"));
            self.lost(c, error);
            return;
        }
        let budget = self.rng.chance(300).then(|| self.rng.below(6000) as usize);
        let read_rate = self.rng.chance(300).then(|| 50 + self.rng.below(2000) as usize);
        let latency = self.rng.below(25);
        let mut conn = Conn {
            to_server: Pipe::default(),
            to_client: Pipe::default(),
            server_in: FrameDecoder::new(LIMIT),
            client_in: FrameDecoder::new(LIMIT),
            attached: None,
            budget,
            latency,
            read_rate,
            next_ping: self.now + PING_INTERVAL,
            pings: 0,
            broken: false,
            server_closed: false,
        };
        let request = self.clients[c].core.connect_request_to("sim".into());
        conn.send(true, self.now, protocol::encode(&request));
        self.note(format!("client {c}: connection {} (budget {budget:?}, rate {read_rate:?})", self.conns.len()));
        self.conns.push(conn);
        self.clients[c].conn = Some(self.conns.len() - 1);
        self.clients[c].attempt_deadline = self.now + 500;
    }

    /// The server reads what arrived on connection `i` and answers.
    fn serve(&mut self, i: usize) -> Result<(), String> {
        let now = self.at();
        let step = self.now;
        let conn = &mut self.conns[i];
        while conn.to_server.chunks.front().is_some_and(|(at, _)| *at <= step) {
            let (_, bytes) = conn.to_server.chunks.pop_front().unwrap();
            conn.server_in.push(&bytes);
        }
        let mut out: Vec<Frame> = Vec::new();
        let mut closing = false;
        while !conn.server_closed {
            let frame = match conn.server_in.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return Err(format!("server: a client sent a bad frame: {e}")),
            };
            match &mut conn.attached {
                None => {
                    let Frame::ConnectRequest(request) = frame else {
                        return Err(format!("server: first frame {}", protocol::frame_name(&frame)));
                    };
                    let (first, attached) = self.node.attach(&request);
                    out.extend(first);
                    closing = attached.is_none();
                    conn.attached = attached;
                }
                Some(attached) => match attached.handle_frames(vec![frame], now) {
                    Ok(replies) => out.extend(replies),
                    Err(Ending::Closed { reason, close }) => {
                        out.extend(close);
                        closing = true;
                        if !reason.starts_with("closed by the client") {
                            return Err(format!("server closed a session: {reason}"));
                        }
                    }
                    Err(Ending::Detached(_)) => closing = true,
                },
            }
            if closing {
                break;
            }
        }
        if let Some(attached) = &mut conn.attached {
            if !attached.owns() {
                conn.attached = None;
                closing = true;
            } else if !closing {
                match attached.poll_transmit() {
                    Ok(frames) => out.extend(frames),
                    Err(Ending::Closed { close, .. }) => {
                        out.extend(close);
                        closing = true;
                    }
                    Err(Ending::Detached(_)) => closing = true,
                }
                out.extend(attached.handle_timeout(now));
                if step >= conn.next_ping {
                    conn.pings += 1;
                    out.push(Frame::Ping(conn.pings));
                    conn.next_ping = step + PING_INTERVAL;
                }
            }
        }
        let bytes: Vec<u8> = out.iter().flat_map(protocol::encode).collect();
        conn.send(false, step, bytes);
        if closing {
            conn.server_closed = true;
            conn.attached = None;
        }
        Ok(())
    }

    /// Client `c` reads what arrived and acts.
    fn run_client(&mut self, c: usize, active: bool) -> Result<(), String> {
        let now = self.at();
        if self.clients[c].state.is_closed() {
            return Ok(());
        }
        // What arrived.
        if let Some(i) = self.clients[c].conn {
            let step = self.now;
            let conn = &mut self.conns[i];
            let mut allowance = conn.read_rate.unwrap_or(usize::MAX);
            while allowance > 0 && conn.to_client.chunks.front().is_some_and(|(at, _)| *at <= step) {
                let (at, mut bytes) = conn.to_client.chunks.pop_front().unwrap();
                if bytes.len() > allowance {
                    let rest = bytes.split_off(allowance);
                    conn.to_client.chunks.push_front((at, rest));
                }
                allowance -= bytes.len();
                conn.client_in.push(&bytes);
            }
            let gone = (conn.broken || conn.server_closed) && conn.to_client.chunks.is_empty();
            loop {
                let conn = &mut self.conns[i];
                let frame = match conn.client_in.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => return Err(format!("client {c}: the server sent a bad frame: {e}")),
                };
                let client = &mut self.clients[c];
                if client.core.is_open() {
                    match client.core.handle_frame(now, frame) {
                        Ok(()) => {}
                        Err(Ended::Lost(e)) => {
                            self.events(c)?;
                            self.lost(c, e);
                            return Ok(());
                        }
                        Err(Ended::Failed(e)) | Err(Ended::ByServer(e)) => {
                            self.events(c)?;
                            return Err(format!("client {c}: the session ended: {e}"));
                        }
                    }
                } else {
                    match client.core.handle_handshake(now, frame) {
                        Ok(()) => self.note(format!("client {c}: handshake done on connection {i}")),
                        Err(e) if e.code() == ErrorCode::UnknownSession || e.code() == ErrorCode::MessageLoss => {
                            // The server lost the session (restarted, or its buffer overflowed):
                            // the client must close, reporting it.
                            client.core.close(State::ClosedFailed, Some(e));
                            client.conn = None;
                            self.events(c)?;
                            return Ok(());
                        }
                        Err(e) => return Err(format!("client {c}: handshake refused: {e}")),
                    }
                }
                self.events(c)?;
            }
            if gone {
                let error = Error::new(ErrorCode::CommunicationError, "connection lost").try_later();
                self.lost(c, error);
                self.events(c)?;
                return Ok(());
            }
            if !self.clients[c].core.is_open() && self.now >= self.clients[c].attempt_deadline {
                let error = Error::new(ErrorCode::RequestTimeOut, "no answer to the connect request").try_later();
                self.lost(c, error);
                self.events(c)?;
                return Ok(());
            }
        }
        // Timers.
        if self.clients[c].core.poll_timeout().is_some_and(|at| at <= now) {
            match self.clients[c].core.handle_timeout(now) {
                Ok(()) => {}
                Err(Ended::Lost(e)) => self.lost(c, e),
                Err(_) => {}
            }
            self.events(c)?;
            if self.clients[c].state.is_closed() {
                return Ok(());
            }
        }
        if self.clients[c].retry_at.is_some_and(|at| at <= self.now) && self.clients[c].conn.is_none() {
            self.connect(c);
        }
        // The application.
        if active && self.clients[c].state == State::ConnectedActive || active && self.rng.chance(100) {
            self.application(c);
        }
        // What to send.
        if let Some(i) = self.clients[c].conn {
            let items = self.clients[c].core.poll_transmit(now, protocol::BATCH_BYTES, Window::Kept);
            let frames: Vec<u8> = items
                .into_iter()
                .flat_map(|item| match item {
                    Item::Frame(frame) => protocol::encode(&frame),
                    Item::Message(seq, body) => protocol::encode(&Frame::Message { seq, body }),
                })
                .collect();
            self.conns[i].send(true, self.now, frames);
        }
        let client = &self.clients[c];
        if client.core.retained() > RECOVERY_BUFFER {
            return Err(format!(
                "client {c}: {} messages kept, over the buffer of {RECOVERY_BUFFER}",
                client.core.retained()
            ));
        }
        Ok(())
    }

    /// What the application does in a step: publish, subscribe, unsubscribe.
    fn application(&mut self, c: usize) {
        let roll = self.rng.below(1000);
        let client = &mut self.clients[c];
        if roll < 400 && client.published < PUBLICATIONS {
            let mut data = client.published.to_be_bytes().to_vec();
            data.resize(4 + self.rng.below(600) as usize, c as u8);
            if client.core.publish(&format!("t/{c}"), &data).is_ok() {
                client.published += 1;
            }
        } else if roll < 420 {
            let n = self.rng.below(4) as u32;
            let client = &mut self.clients[c];
            if let Some(at) = client.subscribed_extra.iter().position(|s| *s == n) {
                if client.core.unsubscribe(&format!("x/{n}")).is_ok() {
                    client.subscribed_extra.remove(at);
                }
            } else if client.core.subscribe(&format!("x/{n}"), n).is_ok() {
                client.subscribed_extra.push(n);
            }
        }
    }

    fn faults(&mut self) {
        if self.rng.chance(4) {
            // A cut of every connection.
            self.note("cut".into());
            for i in 0..self.conns.len() {
                self.conns[i].broken = true;
            }
        }
        if self.rng.chance(2) && self.now >= self.partition_until {
            let length = 100 + self.rng.below(2 * RECONNECTION_TIMEOUT);
            self.note(format!("partition of {length} ms"));
            if self.now > self.partition_until + RECONNECTION_TIMEOUT || self.partition_until == 0 {
                self.outage_from = self.now;
            }
            self.partition_until = self.now + length;
            let span = self.partition_until - self.outage_from;
            if span >= RECONNECTION_TIMEOUT / 2 {
                self.excuse.get_or_insert(format!("partitions over {span} ms"));
            }
            for i in 0..self.conns.len() {
                self.conns[i].broken = true;
            }
        }
        if self.rng.chance(1) && self.rng.chance(150) {
            self.note("server restart".into());
            for conn in &mut self.conns {
                conn.broken = true;
                conn.attached = None;
            }
            self.node = Node::new(server_config(self.rng.next()));
            self.excuse.get_or_insert("a server restart".into());
        }
    }

    fn quiet(&self) -> bool {
        self.clients.iter().all(|c| {
            c.state.is_closed() || (c.state == State::ConnectedActive && !c.core.has_queued() && c.core.retained() == 0)
        }) && self.conns.iter().all(|c| c.broken || c.server_closed || c.idle())
    }

    fn run(&mut self) -> Result<(), String> {
        // Both clients connect and subscribe before anything goes wrong.
        for c in 0..CLIENTS {
            self.clients[c].core.start();
            self.clients[c].core.subscribe("t/", 0).map_err(|e| e.to_string())?;
            self.events(c)?;
        }
        while self.now < 1000 && !self.quiet() || self.clients.iter().any(|c| c.state != State::ConnectedActive) {
            self.step(false)?;
            if self.now > 5_000 {
                return Err("the clients did not connect".into());
            }
        }
        let end = self.now + ACTIVE;
        while self.now < end {
            self.faults();
            self.step(true)?;
        }
        let end = self.now + SETTLE;
        self.partition_until = 0;
        while self.now < end && !(self.quiet() && self.now > end - SETTLE + 2 * RECONNECTION_TIMEOUT) {
            self.step(false)?;
        }
        self.check()
    }

    fn step(&mut self, active: bool) -> Result<(), String> {
        for i in 0..self.conns.len() {
            if !self.conns[i].broken {
                self.serve(i)?;
            }
        }
        for c in 0..CLIENTS {
            self.run_client(c, active)?;
        }
        // Connections no one uses any more are forgotten.
        for i in 0..self.conns.len() {
            let used = self.clients.iter().any(|c| c.conn == Some(i));
            let conn = &mut self.conns[i];
            if !used && !conn.broken {
                conn.broken = true;
                if let Some(attached) = conn.attached.take() {
                    attached.detach();
                }
            }
        }
        if self.node.retained_bytes() > 2 * 64 * 1024 + 2 * LIMIT as usize {
            return Err(format!("the server keeps {} bytes", self.node.retained_bytes()));
        }
        self.now += STEP;
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        for (c, client) in self.clients.iter().enumerate() {
            match client.state {
                State::ConnectedActive => {}
                State::ClosedFailed if client.error.is_some() && self.excuse.is_some() => {}
                State::ClosedFailed => {
                    let error = client.error.as_ref().map(|e| e.to_string()).unwrap_or_default();
                    return Err(format!("client {c} failed with neither a long partition nor a restart: {error}"));
                }
                other => return Err(format!("client {c} ended {other}, neither connected nor closed with an error")),
            }
            for (p, got) in client.received.iter().enumerate() {
                if got.iter().enumerate().any(|(i, n)| *n != i as u32) {
                    return Err(format!(
                        "client {c} received from client {p} out of order, twice or with a gap: {got:?}"
                    ));
                }
                let publisher = &self.clients[p];
                let both_up = client.state == State::ConnectedActive && publisher.state == State::ConnectedActive;
                if both_up && got.len() as u32 != publisher.published {
                    return Err(format!(
                        "client {c} received {} of the {} messages client {p} published, both connected",
                        got.len(),
                        publisher.published
                    ));
                }
                if got.len() as u32 > publisher.published {
                    return Err(format!("client {c} received more than client {p} published"));
                }
            }
        }
        Ok(())
    }
}

fn run_seed(seed: u64, verbose: bool) -> Result<(String, bool), String> {
    let mut world = World::new(seed, verbose);
    let outcome = world.run();
    if verbose {
        for line in &world.log {
            println!("{line}");
        }
    }
    if verbose {
        for (c, client) in world.clients.iter().enumerate() {
            let received: Vec<usize> = client.received.iter().map(Vec::len).collect();
            println!("client {c}: {}, published {}, received {received:?}", client.state, client.published);
        }
    }
    let recovered = world.clients.iter().all(|c| c.state == State::ConnectedActive);
    outcome.map(|()| (format!("{:?}", world.clients.iter().map(|c| c.state).collect::<Vec<_>>()), recovered))
}

#[test]
fn sessions_survive_every_seeded_fault_schedule_or_fail_loudly() {
    let replay = "cargo test --release -p session-server --test simulation";
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        match run_seed(seed, true) {
            Ok((states, _)) => println!("seed {seed}: {states}"),
            Err(why) => panic!("seed {seed} failed: {why}"),
        }
        return;
    }
    let seeds: u64 = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let started = Instant::now();
    let threads = 2;
    let results: Vec<(u64, u64, Vec<(u64, String)>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let (mut ran, mut recovered, mut failed) = (0, 0, Vec::new());
                    for seed in (t..seeds).step_by(threads as usize) {
                        ran += 1;
                        match run_seed(seed, false) {
                            Ok((_, all_up)) => recovered += all_up as u64,
                            Err(why) => failed.push((seed, why)),
                        }
                    }
                    (ran, recovered, failed)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ran: u64 = results.iter().map(|r| r.0).sum();
    let recovered: u64 = results.iter().map(|r| r.1).sum();
    let failed: Vec<&(u64, String)> = results.iter().flat_map(|r| &r.2).collect();
    println!(
        "{ran} seeds in {:.1} s: {recovered} with every session up at the end, the others closed with an error",
        started.elapsed().as_secs_f64()
    );
    if let Some((seed, why)) = failed.first() {
        panic!(
            "{} of {ran} seeds failed; the first, seed {seed}: {why}\nreplay: SIM_SEED={seed} {replay}",
            failed.len()
        );
    }
}
