//! The `--config` file in the binary: at start-up its options fill in what the command line
//! leaves out; on SIGHUP it is read again, its users, roles and anonymous roles replace the
//! server's without touching the sessions, and options that only take effect at start-up are
//! reported as needing a restart.

use std::collections::HashSet;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::ArgMatches;
use session_server::config::{self, ConfigError, FileOptions};
use session_server::policy::Access;
use session_server::AccessSwitch;

use super::Args;

/// The configuration file in force.
pub(crate) struct ConfigFile {
    path: PathBuf,
    /// The options given on the command line, which the file does not override.
    given: HashSet<String>,
    /// The file's options at start-up: those the server runs with.
    options: FileOptions,
    access: Access,
}

/// Reads the `--config` file, if any, and sets each option of `args` that the command line left
/// out and the file sets.
pub(crate) fn apply_file(args: &mut Args, matches: &ArgMatches) -> Result<Option<ConfigFile>, ConfigError> {
    let Some(path) = args.config.clone() else {
        return Ok(None);
    };
    let file = config::load(&path)?;
    let given: HashSet<String> = matches
        .ids()
        .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.to_string())
        .collect();
    macro_rules! fill_in {
        ($($option:ident),*) => {$(
            if let (false, Some(value)) = (given.contains(stringify!($option)), &file.options.$option) {
                args.$option = value.clone().into();
            }
        )*};
    }
    fill_in!(
        listen,
        paths,
        ping_interval_ms,
        max_frame_size,
        max_sessions,
        instance,
        session_keep_ms,
        recovery_buffer,
        session_retained_bytes,
        retained_bytes,
        tls_cert,
        tls_key,
        threads,
        port_file,
        allow_anonymous
    );
    Ok(Some(ConfigFile { path, given, options: file.options, access: file.access }))
}

impl ConfigFile {
    /// The users, roles and anonymous roles in force.
    pub(crate) fn access(&self) -> &Access {
        &self.access
    }

    /// Reads the file again on each SIGHUP, from now on, on the current runtime.
    pub(crate) fn reload_on_hangup(mut self, switch: AccessSwitch) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                self.reload(&switch);
            }
        });
        Ok(())
    }

    fn reload(&mut self, switch: &AccessSwitch) {
        let file = match config::load(&self.path) {
            Ok(file) => file,
            Err(e) => {
                tracing::error!(error = %e, "configuration not reloaded; the previous one stays in force");
                return;
            }
        };
        let restart = self.needing_restart(&file.options);
        if !restart.is_empty() {
            let options = restart.join(", ");
            tracing::warn!(%options, "changed in the configuration file: needs a restart, ignored until then");
        }
        let allow_anonymous = self.given.contains("allow_anonymous") || file.options.allow_anonymous == Some(true);
        switch.replace(&file.access, allow_anonymous);
        let changes = file.access.changes_from(&self.access);
        let anonymous = match (allow_anonymous, &file.access.anonymous) {
            (true, _) => "all permissions",
            (false, Some(_)) => "roles",
            (false, None) => "refused",
        };
        tracing::info!(
            users = file.access.users.len(),
            users_added = changes.users_added,
            users_removed = changes.users_removed,
            users_changed = changes.users_changed,
            roles = file.access.roles.len(),
            roles_added = changes.roles_added,
            roles_removed = changes.roles_removed,
            roles_changed = changes.roles_changed,
            anonymous,
            anonymous_changed = changes.anonymous_changed,
            "configuration reloaded"
        );
        self.access = file.access;
    }

    /// The keys whose value in `reloaded` differs from the one the server runs with, unless the
    /// command line set them.
    fn needing_restart(&self, reloaded: &FileOptions) -> Vec<&'static str> {
        let mut keys = Vec::new();
        macro_rules! compare {
            ($($option:ident => $key:literal),*) => {$(
                if !self.given.contains(stringify!($option)) && self.options.$option != reloaded.$option {
                    keys.push($key);
                }
            )*};
        }
        compare!(
            listen => "listen",
            paths => "path",
            ping_interval_ms => "ping_interval_ms",
            max_frame_size => "max_frame_size",
            max_sessions => "max_sessions",
            instance => "instance",
            session_keep_ms => "session_keep_ms",
            recovery_buffer => "recovery_buffer",
            session_retained_bytes => "session_retained_bytes",
            retained_bytes => "retained_bytes",
            tls_cert => "tls_cert",
            tls_key => "tls_key",
            threads => "threads",
            port_file => "port_file"
        );
        keys
    }
}
