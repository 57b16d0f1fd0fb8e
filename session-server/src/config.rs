//! The configuration file (`session-server --config FILE`): TOML holding the command line's
//! options under their long names (`-` written `_`, `--path` as an array `path`), the users
//! (`[[user]]` with an argon2 `password_hash`), the roles (`[[role]]` with `subscribe` and
//! `publish` path rules) and the roles of anonymous sessions (`[anonymous]`).
//!
//! Everything is checked before anything is used: unknown keys, values out of range, plain-text
//! passwords, duplicate names, undefined roles and hashes that are not argon2 PHC strings are
//! errors, reported with the line and column they are on.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::Deserialize;
use toml::Spanned;

use crate::policy::{Access, PasswordHash, Role, User};

/// What a configuration file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFile {
    /// The command line's options it sets.
    pub options: FileOptions,
    /// Its users, roles and anonymous roles.
    pub access: Access,
}

/// The command line's options a configuration file sets (`None`: not set), checked as the
/// command line checks them. Relative file names are resolved from the file's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileOptions {
    pub listen: Option<SocketAddr>,
    /// `path`: request paths that accept sessions.
    pub paths: Option<Vec<String>>,
    pub ping_interval_ms: Option<u64>,
    pub max_frame_size: Option<u32>,
    pub max_sessions: Option<usize>,
    pub instance: Option<u64>,
    pub session_keep_ms: Option<u64>,
    pub recovery_buffer: Option<u64>,
    pub session_retained_bytes: Option<usize>,
    pub retained_bytes: Option<usize>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub threads: Option<u64>,
    pub port_file: Option<PathBuf>,
    pub allow_anonymous: Option<bool>,
}

/// Why a configuration file cannot be used: where (line and column, from 1) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    file: PathBuf,
    position: Option<(usize, usize)>,
    message: String,
}

impl ConfigError {
    /// The line and column the error is on, when it is in the text.
    pub fn position(&self) -> Option<(usize, usize)> {
        self.position
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads and checks the configuration file at `path`.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        position: None,
        message: format!("cannot read: {e}"),
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    parse(&text, base).map_err(|(span, message)| ConfigError {
        file: path.to_path_buf(),
        position: Some(line_column(&text, span.start)),
        message,
    })
}

/// Line and column (from 1, the column in characters) of the byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    (0..=offset.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0)
}

/// An error at a place in the text.
type Located = (Range<usize>, String);

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    listen: Option<SocketAddr>,
    path: Option<Vec<Spanned<String>>>,
    ping_interval_ms: Option<Spanned<u64>>,
    max_frame_size: Option<Spanned<u64>>,
    max_sessions: Option<usize>,
    instance: Option<u64>,
    session_keep_ms: Option<u64>,
    recovery_buffer: Option<Spanned<u64>>,
    session_retained_bytes: Option<usize>,
    retained_bytes: Option<usize>,
    tls_cert: Option<Spanned<PathBuf>>,
    tls_key: Option<Spanned<PathBuf>>,
    threads: Option<Spanned<u64>>,
    port_file: Option<PathBuf>,
    allow_anonymous: Option<Spanned<bool>>,
    #[serde(default)]
    user: Vec<UserEntry>,
    #[serde(default)]
    role: Vec<RoleEntry>,
    anonymous: Option<AnonymousEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: Spanned<String>,
    password_hash: Option<Spanned<String>>,
    /// Only to refuse it with a message that says what to do instead.
    password: Option<Spanned<IgnoredAny>>,
    #[serde(default)]
    roles: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleEntry {
    name: Spanned<String>,
    #[serde(default)]
    subscribe: Vec<Spanned<String>>,
    #[serde(default)]
    publish: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnonymousEntry {
    roles: Vec<Spanned<String>>,
}

/// Limits the command line also sets on these options (see `session-server --help`).
const PING_INTERVAL_MS: (u64, u64) = (10, 3_600_000);
const MAX_FRAME_SIZE: (u64, u64) = (1024, u32::MAX as u64);
const RECOVERY_BUFFER: (u64, u64) = (1, 10_000_000);
const THREADS: (u64, u64) = (1, 256);

/// Parses and checks the text of a configuration file whose relative file names are relative
/// to `base`.
fn parse(text: &str, base: &Path) -> Result<ConfigFile, Located> {
    let doc: Document = toml::from_str(text).map_err(|e| (e.span().unwrap_or(0..0), e.message().to_string()))?;
    let ranged = |value: Option<Spanned<u64>>, key: &str, (min, max): (u64, u64)| match value {
        Some(v) if !(min..=max).contains(v.get_ref()) => {
            Err((v.span(), format!("{key} must be from {min} to {max}; it is {}", v.get_ref())))
        }
        v => Ok(v.map(Spanned::into_inner)),
    };
    let paths = match doc.path {
        Some(paths) => {
            for path in &paths {
                session::http::url::validate_request_path(path.get_ref())
                    .map_err(|e| (path.span(), e.message().to_string()))?;
            }
            Some(paths.into_iter().map(Spanned::into_inner).collect())
        }
        None => None,
    };
    match (&doc.tls_cert, &doc.tls_key) {
        (Some(cert), None) => {
            return Err((cert.span(), "tls_cert needs tls_key (the certificate's private key)".into()))
        }
        (None, Some(key)) => return Err((key.span(), "tls_key needs tls_cert (the certificate chain)".into())),
        _ => {}
    }
    if let (Some(allow), Some(_)) = (&doc.allow_anonymous, &doc.anonymous) {
        if *allow.get_ref() {
            return Err((
                allow.span(),
                "allow_anonymous gives anonymous sessions every permission, [anonymous] gives them roles: keep one"
                    .into(),
            ));
        }
    }
    let options = FileOptions {
        listen: doc.listen,
        paths,
        ping_interval_ms: ranged(doc.ping_interval_ms, "ping_interval_ms", PING_INTERVAL_MS)?,
        max_frame_size: ranged(doc.max_frame_size, "max_frame_size", MAX_FRAME_SIZE)?.map(|v| v as u32),
        max_sessions: doc.max_sessions,
        instance: doc.instance,
        session_keep_ms: doc.session_keep_ms,
        recovery_buffer: ranged(doc.recovery_buffer, "recovery_buffer", RECOVERY_BUFFER)?,
        session_retained_bytes: doc.session_retained_bytes,
        retained_bytes: doc.retained_bytes,
        tls_cert: doc.tls_cert.map(|p| base.join(p.into_inner())),
        tls_key: doc.tls_key.map(|p| base.join(p.into_inner())),
        threads: ranged(doc.threads, "threads", THREADS)?,
        port_file: doc.port_file.map(|p| base.join(p)),
        allow_anonymous: doc.allow_anonymous.map(Spanned::into_inner),
    };
    let access = access(doc.user, doc.role, doc.anonymous)?;
    Ok(ConfigFile { options, access })
}

/// The users, roles and anonymous roles, checked.
fn access(users: Vec<UserEntry>, roles: Vec<RoleEntry>, anonymous: Option<AnonymousEntry>) -> Result<Access, Located> {
    let mut access = Access::default();
    for entry in roles {
        let name = named(&entry.name, "role")?;
        if access.roles.contains_key(&name) {
            return Err((entry.name.span(), format!("role \"{}\" is defined twice", esc(&name))));
        }
        let rules = |rules: Vec<Spanned<String>>| {
            rules
                .into_iter()
                .map(|rule| {
                    session::protocol::validate_path(rule.get_ref())
                        .map(|()| rule.get_ref().clone())
                        .map_err(|why| (rule.span(), format!("not a topic path rule: {why}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        access.roles.insert(name, Role { subscribe: rules(entry.subscribe)?, publish: rules(entry.publish)? });
    }
    let defined = |names: Vec<Spanned<String>>| {
        names
            .into_iter()
            .map(|name| match access.roles.contains_key(name.get_ref()) {
                true => Ok(name.into_inner()),
                false => Err((name.span(), format!("role \"{}\" is not defined by a [[role]]", esc(name.get_ref())))),
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let mut defined_users = BTreeMap::new();
    for entry in users {
        let name = named(&entry.name, "user")?;
        if let Some(password) = &entry.password {
            return Err((
                password.span(),
                "plain-text passwords are not accepted: put the output of `session-server hash-password` in password_hash"
                    .into(),
            ));
        }
        let Some(hash) = &entry.password_hash else {
            return Err((
                entry.name.span(),
                format!("user \"{}\" has no password_hash (see `session-server hash-password`)", esc(&name)),
            ));
        };
        let password_hash =
            PasswordHash::parse(hash.get_ref()).map_err(|why| (hash.span(), format!("password_hash: {why}")))?;
        let roles = defined(entry.roles)?;
        if defined_users.insert(name.clone(), User { password_hash, roles }).is_some() {
            return Err((entry.name.span(), format!("user \"{}\" is defined twice", esc(&name))));
        }
    }
    access.users = defined_users;
    access.anonymous = anonymous.map(|a| defined(a.roles)).transpose()?;
    Ok(access)
}

/// A user's or role's name, which must not be empty.
fn named(name: &Spanned<String>, what: &str) -> Result<String, Located> {
    match name.get_ref().is_empty() {
        true => Err((name.span(), format!("a {what}'s name must not be empty"))),
        false => Ok(name.get_ref().clone()),
    }
}

/// A name from the file, quoted in a message.
fn esc(name: &str) -> String {
    name.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::cheap_hash;

    /// `line:column: message` of a text's error, as `load` reports it after the file name.
    fn error(text: &str) -> String {
        let (span, message) = match parse(text, Path::new("")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        };
        let (line, column) = line_column(text, span.start);
        format!("{line}:{column}: {message}")
    }

    fn hash() -> String {
        cheap_hash("pw").as_str().to_string()
    }

    fn example() -> String {
        format!(
            r#"listen = "127.0.0.1:9000"
path = ["/diffusion", "/b/diffusion"]
ping_interval_ms = 5000
max_frame_size = 65536
max_sessions = 10
instance = 7
session_keep_ms = 1000
recovery_buffer = 100
session_retained_bytes = 1000000
retained_bytes = 2000000
tls_cert = "cert.pem"
tls_key = "/etc/key.pem"
threads = 4
port_file = "port"

[[user]]
name = "alice"
password_hash = "{}"
roles = ["trader"]

[[role]]
name = "trader"
subscribe = ["prices/", "alice/"]
publish = ["orders/"]

[[role]]
name = "viewer"
subscribe = ["prices/"]

[anonymous]
roles = ["viewer"]
"#,
            hash()
        )
    }

    #[test]
    fn a_complete_file_sets_every_option_users_roles_and_anonymous_roles() {
        let file = parse(&example(), Path::new("/srv/conf")).unwrap();
        let o = &file.options;
        assert_eq!(o.listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(o.paths, Some(vec!["/diffusion".to_string(), "/b/diffusion".to_string()]));
        assert_eq!((o.ping_interval_ms, o.max_frame_size, o.max_sessions), (Some(5000), Some(65536), Some(10)));
        assert_eq!((o.instance, o.session_keep_ms, o.recovery_buffer), (Some(7), Some(1000), Some(100)));
        assert_eq!(
            (o.session_retained_bytes, o.retained_bytes, o.threads),
            (Some(1_000_000), Some(2_000_000), Some(4))
        );
        assert_eq!(o.allow_anonymous, None);
        let a = &file.access;
        assert_eq!(a.users["alice"].roles, ["trader"]);
        assert!(a.users["alice"].password_hash.verify(b"pw"));
        assert_eq!(a.roles["trader"].subscribe, ["prices/", "alice/"]);
        assert_eq!(a.roles["trader"].publish, ["orders/"]);
        assert_eq!(a.roles["viewer"].publish, Vec::<String>::new());
        assert_eq!(a.anonymous, Some(vec!["viewer".to_string()]));
    }

    #[test]
    fn relative_file_names_are_relative_to_the_files_directory() {
        let o = parse(&example(), Path::new("/srv/conf")).unwrap().options;
        assert_eq!(o.tls_cert.unwrap(), Path::new("/srv/conf/cert.pem"));
        assert_eq!(o.tls_key.unwrap(), Path::new("/etc/key.pem"));
        assert_eq!(o.port_file.unwrap(), Path::new("/srv/conf/port"));
    }

    #[test]
    fn an_empty_file_sets_nothing_and_admits_no_anonymous_session() {
        assert_eq!(parse("", Path::new("")).unwrap(), ConfigFile::default());
    }

    #[test]
    fn an_unknown_key_is_an_error_at_its_line_and_column() {
        let text = format!("[[user]]\nname = \"alice\"\npassword_hash = \"{}\"\n  pasword = \"x\"\n", hash());
        let e = error(&text);
        assert!(e.starts_with("4:3: unknown field `pasword`"), "{e}");
        assert!(
            error("listen = \"127.0.0.1:1\"\nping_interval = 5\n").starts_with("2:1: unknown field `ping_interval`")
        );
    }

    #[test]
    fn a_plain_text_password_is_refused_at_its_line() {
        let e = error("\n[[user]]\nname = \"alice\"\npassword = \"secret\"\nroles = []\n");
        assert!(e.starts_with("4:12: plain-text passwords are not accepted"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn a_user_needs_a_password_hash() {
        let e = error("[[user]]\nname = \"alice\"\n");
        assert_eq!(e, "2:8: user \"alice\" has no password_hash (see `session-server hash-password`)");
    }

    #[test]
    fn a_password_hash_must_be_an_argon2_phc_string() {
        let e = error("[[user]]\nname = \"alice\"\npassword_hash = \"hunter2\"\n");
        assert!(e.starts_with("3:17: password_hash: not a PHC password hash string"), "{e}");
        let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
        let e = error(&format!("[[user]]\nname = \"alice\"\npassword_hash = '{bcrypt}'\n"));
        assert!(e.starts_with("3:17: password_hash: "), "{e}");
    }

    #[test]
    fn a_user_naming_an_undefined_role_is_an_error_at_the_role() {
        let text = format!(
            "[[user]]\nname = \"alice\"\npassword_hash = \"{}\"\nroles = [\"trader\", \"tradr\"]\n[[role]]\nname = \"trader\"\n",
            hash()
        );
        assert_eq!(error(&text), "4:20: role \"tradr\" is not defined by a [[role]]");
    }

    #[test]
    fn anonymous_roles_must_be_defined() {
        assert_eq!(error("[anonymous]\nroles = [\"viewer\"]\n"), "2:10: role \"viewer\" is not defined by a [[role]]");
    }

    #[test]
    fn a_user_defined_twice_is_an_error_at_the_second() {
        let user = format!("[[user]]\nname = \"alice\"\npassword_hash = \"{}\"\n", hash());
        assert_eq!(error(&format!("{user}{user}")), "5:8: user \"alice\" is defined twice");
    }

    #[test]
    fn a_role_defined_twice_is_an_error_at_the_second() {
        let e = error("[[role]]\nname = \"r\"\n[[role]]\nname = \"r\"\n");
        assert_eq!(e, "4:8: role \"r\" is defined twice");
    }

    #[test]
    fn names_must_not_be_empty() {
        assert_eq!(error("[[role]]\nname = \"\"\n"), "2:8: a role's name must not be empty");
    }

    #[test]
    fn rules_must_be_topic_paths() {
        let e = error("[[role]]\nname = \"r\"\npublish = [\"ok/\", \"\"]\n");
        assert!(e.starts_with("3:19: not a topic path rule: a path has 1 to 1024 bytes"), "{e}");
    }

    #[test]
    fn options_are_checked_as_on_the_command_line() {
        assert_eq!(error("ping_interval_ms = 5\n"), "1:20: ping_interval_ms must be from 10 to 3600000; it is 5");
        assert!(error("max_frame_size = 10\n").starts_with("1:18: max_frame_size must be from 1024"));
        assert!(error("threads = 0\n").starts_with("1:11: threads must be from 1 to 256"));
        assert!(error("recovery_buffer = 0\n").starts_with("1:19: recovery_buffer must be from 1"));
        assert!(error("path = [\"/diffusion\", \"/x\"]\n").starts_with("1:23: request path '/x' must begin"));
        assert!(error("\nlisten = \"localhost\"\n").starts_with("2:10: "));
        assert!(error("max_sessions = -1\n").starts_with("1:16: "));
        assert!(error("session_keep_ms = \"60s\"\n").starts_with("1:19: "));
    }

    #[test]
    fn tls_cert_and_tls_key_go_together() {
        assert!(error("tls_cert = \"c.pem\"\n").starts_with("1:12: tls_cert needs tls_key"));
        assert!(error("\ntls_key = \"k.pem\"\n").starts_with("2:11: tls_key needs tls_cert"));
    }

    #[test]
    fn allow_anonymous_and_an_anonymous_table_do_not_go_together() {
        let text = "allow_anonymous = true\n[[role]]\nname = \"v\"\n[anonymous]\nroles = [\"v\"]\n";
        assert!(error(text).starts_with("1:19: allow_anonymous gives anonymous sessions every permission"));
        let text = "allow_anonymous = false\n[[role]]\nname = \"v\"\n[anonymous]\nroles = [\"v\"]\n";
        assert!(parse(text, Path::new("")).is_ok());
    }

    #[test]
    fn a_syntax_error_is_reported_at_its_place() {
        let e = error("listen = \"127.0.0.1:1\"\n[[user]\n");
        assert!(e.starts_with("2:"), "{e}");
    }

    #[test]
    fn a_load_error_names_the_file() {
        let dir = std::env::temp_dir().join(format!("session-server-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.toml");
        std::fs::write(&file, "\n\nthreads = 0\n").unwrap();
        let e = load(&file).unwrap_err();
        assert_eq!(e.position(), Some((3, 11)));
        assert_eq!(e.to_string(), format!("{}:3:11: threads must be from 1 to 256; it is 0", file.display()));
        std::fs::remove_file(&file).unwrap();
        let e = load(&file).unwrap_err();
        assert!(e.to_string().starts_with(&format!("{}: cannot read: ", file.display())), "{e}");
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_column("a\nbé = 1", 5), (2, 3));
        assert_eq!(line_column("", 0), (1, 1));
    }
}
