//! A loopback TCP relay in front of the balancer that the tests can cut: every connection open
//! through it is reset at once, so that clients reconnect (and, round robin, land on another node).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

struct Control {
    cuts: watch::Sender<u64>,
    open: AtomicUsize,
    stopped: AtomicBool,
}

pub struct Relay {
    pub port: u16,
    control: Arc<Control>,
}

impl Relay {
    /// A relay on a free loopback port forwarding to `target`, on a thread of its own.
    pub fn start(target: SocketAddr) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let control =
            Arc::new(Control { cuts: watch::channel(0).0, open: AtomicUsize::new(0), stopped: AtomicBool::new(false) });
        let shared = control.clone();
        std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).unwrap();
                    while !shared.stopped.load(Ordering::SeqCst) {
                        let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
                        let Ok(Ok((client, _))) = accepted else { continue };
                        tokio::spawn(forward(client, target, shared.clone()));
                    }
                    // Dropping the runtime ends the connections still open.
                });
            })
            .unwrap();
        Relay { port, control }
    }

    /// Resets every open connection (RST).
    pub fn cut(&self) {
        self.control.cuts.send_modify(|n| *n += 1);
    }

    /// Connections open through the relay.
    pub fn open_connections(&self) -> usize {
        self.control.open.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/diffusion", self.port)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.control.stopped.store(true, Ordering::SeqCst);
        self.cut();
    }
}

async fn forward(client: TcpStream, target: SocketAddr, control: Arc<Control>) {
    let mut cuts = control.cuts.subscribe();
    cuts.borrow_and_update();
    let Ok(server) = TcpStream::connect(target).await else { return };
    control.open.fetch_add(1, Ordering::SeqCst);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Linger 0: dropping sends RST instead of FIN.
    #[allow(deprecated)]
    {
        let _ = client.set_linger(Some(Duration::ZERO));
        let _ = server.set_linger(Some(Duration::ZERO));
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::select! {
        _ = pump(&mut client_read, &mut server_write) => {}
        _ = pump(&mut server_read, &mut client_write) => {}
        _ = cuts.changed() => {}
    }
    control.open.fetch_sub(1, Ordering::SeqCst);
}

async fn pump(from: &mut tokio::net::tcp::OwnedReadHalf, to: &mut tokio::net::tcp::OwnedWriteHalf) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Cuts `relay` every `every` until dropped; counts the cuts.
pub struct Cutter {
    stop: Arc<AtomicBool>,
    pub count: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Cutter {
    pub fn start(relay: Arc<Relay>, every: Duration) -> Cutter {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, count) = (stop.clone(), count.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(every);
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    relay.cut();
                    count.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        Cutter { stop, count, thread: Some(thread) }
    }

    pub fn cuts(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Stops cutting; returns how many cuts there were.
    pub fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.cuts()
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.stop();
    }
}
