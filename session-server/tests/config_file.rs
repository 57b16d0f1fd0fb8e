//! The `session-server` binary with a configuration file: its users log in, a bad file stops
//! the start, SIGHUP reloads users and roles while sessions stay connected, and
//! `hash-password` prints hashes the server verifies.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use session::protocol::Credentials;
use session::{ErrorCode, Session, SessionConfig, State};

const BIN: &str = env!("CARGO_BIN_EXE_session-server");

/// A directory of its own for one test's files, removed afterwards.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("session-server-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write_config(&self, text: &str) -> PathBuf {
        let path = self.file("config.toml");
        // Write then rename, so that a reload never reads half a file.
        std::fs::write(self.file("config.tmp"), text).unwrap();
        std::fs::rename(self.file("config.tmp"), &path).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An argon2id hash of `password` that is cheap to verify (256 KiB, one pass).
fn hash(password: &str) -> String {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(256, 1, 1, None).unwrap());
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon.hash_password(password.as_bytes(), &salt).unwrap().to_string()
}

fn user(name: &str, password: &str, roles: &str) -> String {
    format!("[[user]]\nname = \"{name}\"\npassword_hash = \"{}\"\nroles = [{roles}]\n\n", hash(password))
}

const ROLES: &str = "[[role]]\nname = \"trader\"\nsubscribe = [\"prices/\", \"alice/\"]\npublish = [\"orders/\"]\n";

/// The binary serving on a free loopback port with `dir`'s config.toml, its log in server.log.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(dir: &Dir) -> Server {
        let (log, port_file) = (dir.file("server.log"), dir.file("port"));
        let child = Command::new(BIN)
            .arg("--config")
            .arg(dir.file("config.toml"))
            .args(["--listen", "127.0.0.1:0", "--port-file"])
            .arg(&port_file)
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse().ok()) {
                break port;
            }
            assert!(Instant::now() < deadline, "server did not start:\n{}", std::fs::read_to_string(&log).unwrap());
            std::thread::sleep(Duration::from_millis(20));
        };
        Server { child, port, log }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// Waits up to 10 s for a log line containing `text`; the line.
    fn wait_log(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(text)) {
                return line.to_string();
            }
            assert!(Instant::now() < deadline, "no log line with {text:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill only sends a signal to the child this test started.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, signal) }, 0);
    }

    fn reload(&self) {
        self.signal(libc::SIGHUP);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn login(url: &str, principal: &str, password: &str) -> session::Result<Session> {
    let mut config = SessionConfig::new(url).unwrap();
    config.options.principal = principal.into();
    config.options.credentials = Credentials::Password(password.as_bytes().to_vec());
    Session::connect(config, None)
}

fn refusal(result: session::Result<Session>) -> ErrorCode {
    match result {
        Ok(_) => panic!("the session was accepted"),
        Err(e) => e.code(),
    }
}

#[test]
fn a_file_user_logs_in_with_the_right_password_only() {
    let dir = Dir::new("login");
    // The command line's --listen overrides the file's (an address no test can bind).
    dir.write_config(&format!("listen = \"192.0.2.1:9\"\n{}{ROLES}", user("alice", "alice-pw", "\"trader\"")));
    let server = Server::start(&dir);
    let session = login(&server.url(), "alice", "alice-pw").expect("alice logs in");
    assert_eq!(session.state(), State::ConnectedActive);
    assert_eq!(refusal(login(&server.url(), "alice", "wrong")), ErrorCode::AuthenticationFailed);
    assert_eq!(refusal(login(&server.url(), "mallory", "alice-pw")), ErrorCode::AuthenticationFailed);
    let anonymous = Session::connect(SessionConfig::new(&server.url()).unwrap(), None);
    assert_eq!(refusal(anonymous), ErrorCode::AuthenticationFailed, "no [anonymous]: anonymous sessions are refused");
    session.close();
}

#[test]
fn an_anonymous_table_admits_anonymous_sessions() {
    let dir = Dir::new("anonymous");
    dir.write_config(&format!("{ROLES}\n[anonymous]\nroles = [\"trader\"]\n"));
    let server = Server::start(&dir);
    let session = Session::connect(SessionConfig::new(&server.url()).unwrap(), None).expect("anonymous session");
    assert_eq!(session.state(), State::ConnectedActive);
    session.close();
}

#[test]
fn no_password_or_hash_appears_in_the_process_arguments() {
    let dir = Dir::new("cmdline");
    let text = format!("{}{ROLES}", user("alice", "alice-pw", "\"trader\""));
    dir.write_config(&text);
    let server = Server::start(&dir);
    login(&server.url(), "alice", "alice-pw").expect("alice logs in").close();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.child.id())).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(cmdline.contains("--config"), "{cmdline}");
    assert!(!cmdline.contains("alice-pw") && !cmdline.contains("argon2"), "{cmdline}");
    let log = server.log();
    assert!(!log.contains("alice-pw") && !log.contains("$argon2"), "{log}");
}

#[test]
fn a_bad_file_at_start_up_exits_with_status_2_naming_line_and_column() {
    let dir = Dir::new("bad");
    let config = dir.write_config(&format!("{ROLES}\n[[user]]\nname = \"alice\"\n  pasword = \"x\"\n"));
    let port_file = dir.file("port");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--port-file"])
        .arg(&port_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("session-server: {}:8:3: unknown field `pasword`", config.display());
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(!port_file.exists(), "nothing was served");
    assert!(!stderr.contains("listening"), "{stderr}");
}

#[test]
fn a_plain_text_password_in_the_file_is_refused_at_start_up() {
    let dir = Dir::new("plain");
    let config = dir.write_config("[[user]]\nname = \"alice\"\npassword = \"alice-pw\"\n");
    let out = Command::new(BIN).arg("--config").arg(&config).args(["--listen", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":3:12: plain-text passwords are not accepted"), "{stderr}");
    assert!(!stderr.contains("alice-pw"), "{stderr}");
}

#[test]
fn sighup_adds_a_user_while_a_session_stays_connected() {
    let dir = Dir::new("reload");
    dir.write_config(&format!("{}{ROLES}", user("alice", "alice-pw", "\"trader\"")));
    let server = Server::start(&dir);
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let mut config = SessionConfig::new(&server.url()).unwrap();
    config.options.principal = "alice".into();
    config.options.credentials = Credentials::Password(b"alice-pw".to_vec());
    let recorded = transitions.clone();
    let alice = Session::connect(config, Some(Box::new(move |old, new| recorded.lock().unwrap().push((old, new)))))
        .expect("alice logs in");
    let id = *alice.id().unwrap();
    assert_eq!(refusal(login(&server.url(), "bob", "bob-pw")), ErrorCode::AuthenticationFailed);

    let bob = user("bob", "bob-pw", "\"trader\"");
    dir.write_config(&format!("ping_interval_ms = 2000\n{}{bob}{ROLES}", user("alice", "alice-pw", "\"trader\"")));
    server.reload();
    let line = server.wait_log("configuration reloaded");
    assert!(line.contains("users=2") && line.contains("users_added=1") && line.contains("roles=1"), "{line}");
    assert!(!line.contains("argon2") && !line.contains("bob-pw"), "{line}");
    assert!(server.wait_log("needs a restart").contains("ping_interval_ms"));

    login(&server.url(), "bob", "bob-pw").expect("bob logs in after the reload").close();
    assert_eq!(alice.state(), State::ConnectedActive);
    assert_eq!(alice.id(), Some(&id));
    let seen: Vec<State> = transitions.lock().unwrap().iter().map(|&(_, new)| new).collect();
    assert_eq!(seen.last(), Some(&State::ConnectedActive));
    assert!(!seen.contains(&State::RecoveringReconnect), "{seen:?}");
    assert_eq!(seen.iter().filter(|s| **s == State::ConnectedActive).count(), 1, "{seen:?}");
    alice.close();
}

#[test]
fn sighup_with_a_broken_file_keeps_the_previous_users() {
    let dir = Dir::new("broken");
    let alice = user("alice", "alice-pw", "\"trader\"");
    dir.write_config(&format!("{alice}{ROLES}"));
    let server = Server::start(&dir);

    // Line 9 names a role no [[role]] defines.
    dir.write_config(&format!("{alice}{}{ROLES}", user("bob", "bob-pw", "\"trader\", \"admin\"")));
    server.reload();
    let line = server.wait_log("configuration not reloaded");
    assert!(line.contains("config.toml:9:20: role \"admin\" is not defined"), "{line}");
    login(&server.url(), "alice", "alice-pw").expect("alice still logs in").close();
    assert_eq!(refusal(login(&server.url(), "bob", "bob-pw")), ErrorCode::AuthenticationFailed);

    dir.write_config("this is not TOML\n");
    server.reload();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.log().matches("configuration not reloaded").count() < 2 {
        assert!(Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.log().contains("config.toml:1:"), "{}", server.log());
    login(&server.url(), "alice", "alice-pw").expect("alice still logs in").close();
}

/// Runs `session-server hash-password` with `input` on standard input.
fn hash_password(input: &[u8]) -> std::process::Output {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn hash_password_prints_an_argon2id_hash_of_the_line_on_standard_input() {
    let out = hash_password(b"correct horse\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed.lines().count(), 1);
    let hash = argon2::PasswordHash::new(printed.trim_end()).unwrap();
    assert_eq!(hash.algorithm, argon2::ARGON2ID_IDENT);
    assert!(Argon2::default().verify_password(b"correct horse", &hash).is_ok());
    assert!(Argon2::default().verify_password(b"correct horse\n", &hash).is_err());
    assert!(Argon2::default().verify_password(b"wrong", &hash).is_err());
    let again = String::from_utf8(hash_password(b"correct horse\n").stdout).unwrap();
    assert_ne!(again, printed, "each hash has a salt of its own");
}

#[test]
fn hash_password_output_is_a_password_hash_the_server_accepts() {
    let out = hash_password(b"from-the-tool\r\n");
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    let dir = Dir::new("roundtrip");
    dir.write_config(&format!("[[user]]\nname = \"carol\"\npassword_hash = \"{}\"\n", hash.trim_end()));
    let server = Server::start(&dir);
    login(&server.url(), "carol", "from-the-tool").expect("carol logs in").close();
}

#[test]
fn hash_password_refuses_an_empty_password() {
    let out = hash_password(b"\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let missing = Path::new("/nonexistent/session-server.toml");
    let out = Command::new(BIN).arg("--config").arg(missing).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("session-server: /nonexistent/session-server.toml: cannot read: "), "{stderr}");
}

/// Tells of every `on_error` and of its own release.
struct Watcher(std::sync::mpsc::Sender<String>);

impl session::session::MessageHandler for Watcher {
    fn on_message(&self, _path: &str, _data: &[u8]) {}

    fn on_error(&self, path: &str, error: &session::Error) {
        let _ = self.0.send(format!("error {path} {:?} {}", error.code(), error.message()));
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.send("dropped".into());
    }
}

#[test]
fn sighup_that_shrinks_a_role_withdraws_the_subscriptions_it_no_longer_allows() {
    let dir = Dir::new("withdraw");
    dir.write_config(&format!("{}{ROLES}", user("alice", "alice-pw", "\"trader\"")));
    let server = Server::start(&dir);
    let alice = login(&server.url(), "alice", "alice-pw").expect("alice logs in");
    let (kept_tx, kept) = std::sync::mpsc::channel();
    let (withdrawn_tx, withdrawn) = std::sync::mpsc::channel();
    alice.subscribe("prices/", Arc::new(Watcher(kept_tx))).unwrap();
    alice.subscribe("alice/", Arc::new(Watcher(withdrawn_tx))).unwrap();
    // Both subscriptions are registered before the reload: a publication on them is not refused.
    let (errors_tx, errors) = std::sync::mpsc::channel();
    let errors_tx = Mutex::new(errors_tx);
    alice.set_error_handler(Some(Box::new(move |path: &str, _: &session::Error| {
        let _ = errors_tx.lock().unwrap().send(path.to_string());
    })));
    alice.publish("prices/eur", b"1").unwrap();
    assert_eq!(errors.recv_timeout(Duration::from_secs(5)).unwrap(), "prices/eur", "trader may not publish there");

    let shrunk = "[[role]]\nname = \"trader\"\nsubscribe = [\"prices/\"]\npublish = [\"orders/\"]\n";
    dir.write_config(&format!("{}{shrunk}", user("alice", "alice-pw", "\"trader\"")));
    server.reload();
    let told = withdrawn.recv_timeout(Duration::from_secs(10)).expect("on_error for alice/");
    assert!(told.starts_with("error alice/ AccessDenied") && told.contains("no longer permitted for alice"), "{told}");
    assert_eq!(withdrawn.recv_timeout(Duration::from_secs(5)).unwrap(), "dropped");
    assert!(server.wait_log("subscriptions withdrawn").contains("subscriptions=1"));
    assert_eq!(alice.state(), State::ConnectedActive);
    assert!(kept.try_recv().is_err(), "prices/ is still allowed");
    assert_eq!(alice.unsubscribe("alice/").unwrap_err().code(), ErrorCode::IllegalArgument);
    alice.unsubscribe("prices/").unwrap();
    assert_eq!(kept.recv_timeout(Duration::from_secs(5)).unwrap(), "dropped");
    alice.close();
}
