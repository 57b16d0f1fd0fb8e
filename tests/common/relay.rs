//! A loopback TCP relay owned by the tests, between a client and a server: it can reset every
//! connection, go silent without closing, drop or refuse new connections, or switch to another
//! server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

struct Control {
    target: Mutex<SocketAddr>,
    silent: AtomicBool,
    down: AtomicBool,
    refusing: watch::Sender<bool>,
    /// Bytes a connection carries from the server before it is reset (0: no limit).
    budget: AtomicUsize,
    cuts: watch::Sender<u64>,
    open: AtomicUsize,
}

pub struct Relay {
    pub port: u16,
    control: Arc<Control>,
}

impl Relay {
    /// A relay on a free loopback port forwarding to `target`, running until the process ends.
    pub fn start(target: SocketAddr) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let control = Arc::new(Control {
            target: Mutex::new(target),
            silent: AtomicBool::new(false),
            down: AtomicBool::new(false),
            refusing: watch::channel(false).0,
            budget: AtomicUsize::new(0),
            cuts: watch::channel(0).0,
            open: AtomicUsize::new(0),
        });
        let shared = control.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            rt.block_on(async move {
                let mut refusing = shared.refusing.subscribe();
                let mut listener = Some(TcpListener::from_std(listener).unwrap());
                loop {
                    let Some(open) = &listener else {
                        // Closed: connections are refused until it listens again.
                        if refusing.changed().await.is_err() {
                            return;
                        }
                        if !*refusing.borrow_and_update() {
                            listener = Some(listen_again(port).await);
                        }
                        continue;
                    };
                    tokio::select! {
                        accepted = open.accept() => {
                            let Ok((client, _)) = accepted else { continue };
                            if shared.down.load(Ordering::SeqCst) {
                                drop(client);
                                continue;
                            }
                            tokio::spawn(forward(client, shared.clone()));
                        }
                        changed = refusing.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            if *refusing.borrow_and_update() {
                                listener = None;
                            }
                        }
                    }
                }
            });
        });
        Relay { port, control }
    }

    /// Resets every open connection (RST, as a crashed middlebox would).
    pub fn cut(&self) {
        self.control.cuts.send_modify(|n| *n += 1);
    }

    /// Stops (or resumes) forwarding bytes, without closing anything.
    pub fn set_silent(&self, silent: bool) {
        self.control.silent.store(silent, Ordering::SeqCst);
    }

    /// Refuses (or accepts again) new connections.
    pub fn set_down(&self, down: bool) {
        self.control.down.store(down, Ordering::SeqCst);
    }

    /// Closes (or opens again) the listening socket: new connections are refused as by a port
    /// where nothing listens (ECONNREFUSED), where `set_down` accepts and drops them.
    pub fn set_refusing(&self, refusing: bool) {
        self.control.refusing.send_replace(refusing);
    }

    /// Resets each new connection once it has carried `bytes` from the server to the client (a
    /// link that breaks under load); `None`: no limit.
    pub fn set_budget(&self, bytes: Option<usize>) {
        self.control.budget.store(bytes.unwrap_or(0), Ordering::SeqCst);
    }

    /// Sends new connections to another server.
    pub fn set_target(&self, target: SocketAddr) {
        *self.control.target.lock() = target;
    }

    /// Connections open through the relay.
    pub fn open_connections(&self) -> usize {
        self.control.open.load(Ordering::SeqCst)
    }

    pub fn url(&self, scheme: &str, host: &str) -> String {
        format!("{scheme}://{host}:{}/diffusion", self.port)
    }
}

/// Listens on `port` again (address reuse, so that connections of the previous listener in
/// TIME_WAIT do not stand in the way).
async fn listen_again(port: u16) -> TcpListener {
    loop {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        if socket.bind(SocketAddr::from(([127, 0, 0, 1], port))).is_ok() {
            if let Ok(listener) = socket.listen(1024) {
                return listener;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn forward(client: TcpStream, control: Arc<Control>) {
    let target = *control.target.lock();
    let Ok(server) = TcpStream::connect(target).await else { return };
    let mut cuts = control.cuts.subscribe();
    control.open.fetch_add(1, Ordering::SeqCst);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Linger 0: dropping sends RST instead of FIN, at once (only a non-zero linger blocks).
    #[allow(deprecated)]
    {
        let _ = client.set_linger(Some(Duration::ZERO));
        let _ = server.set_linger(Some(Duration::ZERO));
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let budget = match control.budget.load(Ordering::SeqCst) {
        0 => usize::MAX,
        bytes => bytes,
    };
    tokio::select! {
        _ = pump(&mut client_read, &mut server_write, &control.silent, usize::MAX) => {}
        _ = pump(&mut server_read, &mut client_write, &control.silent, budget) => {}
        _ = cuts.changed() => {}
    }
    control.open.fetch_sub(1, Ordering::SeqCst);
}

/// Copies `from` to `to`, at most `budget` bytes.
async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    silent: &AtomicBool,
    mut budget: usize,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while silent.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                while silent.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let n = n.min(budget);
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                budget -= n;
                if budget == 0 {
                    // Time for the peer to read what it got before the reset discards it.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return;
                }
            }
        }
    }
}
