//! Real proxies and balancers from Debian's packages, run by the tests on loopback with configs in
//! a temporary directory, and stopped by PID.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A program the tests need. Under `CI=true` a missing one fails the test; elsewhere the test is
/// skipped with a message saying why.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists());
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} is not installed; `make test` installs it (CI must not skip)");
        }
        eprintln!("SKIPPED: {name} is not installed (run `make test` as root to install it)");
    }
    found
}

/// A free loopback port for a program that binds it later, outside the kernel's ephemeral range:
/// a port from that range could meanwhile go to another test's listener or outgoing connection
/// (run in parallel), and the program's readiness check would then reach the wrong listener.
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

/// A running external program; killed (by PID) and reaped on drop, its directory removed.
pub struct External {
    pub name: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl External {
    /// The process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `program args` and waits until it listens on `port`; `dir` holds its files.
    pub fn start(name: &str, program: &Path, args: &[&str], port: u16, dir: tempfile::TempDir) -> External {
        let log = std::fs::File::create(dir.path().join("output.log")).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut external = External { name: name.to_string(), port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = external.child.try_wait() {
                panic!("{name} exited ({status}) before listening:\n{}", external.output());
            }
            assert!(Instant::now() < deadline, "{name} did not listen on {port}:\n{}", external.output());
            std::thread::sleep(Duration::from_millis(25));
        }
        external
    }

    /// What the program printed, and its log files.
    pub fn output(&self) -> String {
        let mut text = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "log") {
                    text.push_str(&format!("--- {}\n", path.display()));
                    text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
                }
            }
        }
        text
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

impl Drop for External {
    /// SIGTERM first, so that a master process (nginx, squid) ends its workers too (SIGKILL
    /// would leave them running, listening); SIGKILL after 5 s.
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory that programs dropping root privileges can write to.
pub fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("libsession-test-").tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// tinyproxy allowing CONNECT to `connect_port`, with Basic authentication when `user` is given.
pub fn tinyproxy(connect_port: u16, user: Option<(&str, &str)>) -> Option<External> {
    let program = tool("tinyproxy")?;
    let dir = shared_dir();
    let port = free_port();
    let d = dir.path().display();
    let mut conf = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Info\nLogFile \"{d}/tinyproxy.log\"\n\
         PidFile \"{d}/tinyproxy.pid\"\nAllow 127.0.0.1\nConnectPort {connect_port}\nMaxClients 100\n"
    );
    if let Some((name, password)) = user {
        conf.push_str(&format!("BasicAuth {name} {password}\n"));
    }
    let conf = write(dir.path(), "tinyproxy.conf", &conf);
    Some(External::start("tinyproxy", &program, &["-d", "-c", conf.to_str().unwrap()], port, dir))
}

/// Which authentication squid asks for.
pub enum SquidAuth {
    Basic,
    Digest,
}

/// squid allowing CONNECT to `connect_port` for `user` authenticated with `auth`.
pub fn squid(connect_port: u16, auth: SquidAuth, user: (&str, &str)) -> Option<External> {
    let program = tool("squid")?;
    let dir = shared_dir();
    let port = free_port();
    let d = dir.path().display();
    let auth_lines = match auth {
        SquidAuth::Basic => {
            let htpasswd = tool("htpasswd")?;
            let file = dir.path().join("passwd");
            let status = Command::new(htpasswd)
                .args(["-b", "-c", "-B"])
                .arg(&file)
                .args([user.0, user.1])
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "htpasswd failed");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            format!(
                "auth_param basic program /usr/lib/squid/basic_ncsa_auth {}\nauth_param basic realm libsession-test\n",
                file.display()
            )
        }
        SquidAuth::Digest => {
            let file = write(dir.path(), "digest_passwd", &format!("{}:{}\n", user.0, user.1));
            format!(
                "auth_param digest program /usr/lib/squid/digest_file_auth {}\nauth_param digest realm libsession-test\n",
                file.display()
            )
        }
    };
    let conf = format!(
        "http_port 127.0.0.1:{port}\npid_filename {d}/squid.pid\ncache_log {d}/cache.log\naccess_log {d}/access.log\n\
         cache deny all\ncache_mem 8 MB\ncoredump_dir {d}\nvisible_hostname localhost\nshutdown_lifetime 0 seconds\n\
         {auth_lines}acl test_port port {connect_port}\nacl CONNECT method CONNECT\nacl authenticated proxy_auth REQUIRED\n\
         http_access deny CONNECT !test_port\nhttp_access allow authenticated\nhttp_access deny all\n"
    );
    let conf = write(dir.path(), "squid.conf", &conf);
    // A service name of its own: squids running at once must not share shared-memory segments.
    let service = format!("libsessiontest{port}");
    Some(External::start("squid", &program, &["-N", "-n", &service, "-f", conf.to_str().unwrap()], port, dir))
}

/// microsocks, requiring `user` when given.
pub fn microsocks(user: Option<(&str, &str)>) -> Option<External> {
    let program = tool("microsocks")?;
    let dir = shared_dir();
    let port = free_port();
    let port_text = port.to_string();
    let mut args = vec!["-i", "127.0.0.1", "-p", &port_text];
    if let Some((name, password)) = user {
        args.extend(["-u", name, "-P", password]);
    }
    Some(External::start("microsocks", &program, &args, port, dir))
}

/// haproxy running `sections` (frontends and backends; `{port}` stands for its listening port)
/// after a common global and defaults section.
pub fn haproxy(sections: &str) -> Option<External> {
    let program = tool("haproxy")?;
    let dir = shared_dir();
    let port = free_port();
    let conf = format!(
        "global\n    maxconn 1000\n\ndefaults\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n    \
         timeout tunnel 1h\n\n{}",
        sections.replace("{port}", &port.to_string())
    );
    let conf = write(dir.path(), "haproxy.cfg", &conf);
    Some(External::start("haproxy", &program, &["-db", "-f", conf.to_str().unwrap()], port, dir))
}

/// nginx running `servers` (server blocks of the http context; `{port}` stands for its port).
pub fn nginx(servers: &str) -> Option<External> {
    let program = tool("nginx")?;
    let dir = shared_dir();
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/client_body;\n    proxy_temp_path {d}/proxy;\n    \
         fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n{}\n}}\n",
        servers.replace("{port}", &port.to_string())
    );
    let conf = write(dir.path(), "nginx.conf", &conf);
    let prefix = format!("{d}/");
    let error_log = format!("{d}/error.log");
    Some(External::start(
        "nginx",
        &program,
        &["-p", &prefix, "-e", &error_log, "-c", conf.to_str().unwrap()],
        port,
        dir,
    ))
}
