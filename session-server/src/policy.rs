//! Who may connect and what they may do: the users, roles and anonymous roles of the
//! configuration file ([`Access`]), and the [`Policy`] built from them together with the
//! command line's users, which answers "may this principal subscribe to or publish on this
//! path?".
//!
//! A rule is a topic path with the meaning it has in a subscription: `prices/` (trailing `/`)
//! covers every path below it (`prices/eur`, `prices/eur/bid`, and the subscription `prices/`
//! itself), `prices` (no trailing `/`) covers exactly the path `prices`. Write both to grant a
//! path and everything below it.
//!
//! The server does not enforce the rules yet: it authenticates with the [`Policy`] and keeps it
//! current, and sessions may still subscribe and publish anywhere.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// An argon2 password hash in PHC string form (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), as
/// `session-server hash-password` prints it. Its text is never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Checks that `text` is an argon2 (argon2id, argon2i or argon2d) PHC string with valid
    /// parameters, a salt and a hash.
    pub fn parse(text: &str) -> Result<PasswordHash, String> {
        let parsed = argon2::PasswordHash::new(text).map_err(|e| format!("not a PHC password hash string: {e}"))?;
        argon2::Algorithm::try_from(parsed.algorithm)
            .map_err(|_| format!("not an argon2 hash (algorithm {})", parsed.algorithm))?;
        argon2::Params::try_from(&parsed).map_err(|e| format!("invalid argon2 parameters: {e}"))?;
        if parsed.salt.is_none() || parsed.hash.is_none() {
            return Err("the argon2 hash has no salt or no hash value".into());
        }
        Ok(PasswordHash(text.to_string()))
    }

    /// Hashes `password` with argon2id, the argon2 crate's default parameters and a random salt.
    pub fn generate(password: &[u8]) -> PasswordHash {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let hash =
            Argon2::default().hash_password(password, &salt).expect("argon2 hashes any password with its defaults");
        PasswordHash(hash.to_string())
    }

    /// Whether `password` is the one hashed, compared in constant time. Costs what hashing costs
    /// (milliseconds with the default parameters): not for an async executor's thread.
    pub fn verify(&self, password: &[u8]) -> bool {
        argon2::PasswordHash::new(&self.0).is_ok_and(|hash| Argon2::default().verify_password(password, &hash).is_ok())
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// A role: the topic path rules of what its holders may subscribe to and publish on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Role {
    /// Rules for subscriptions.
    pub subscribe: Vec<String>,
    /// Rules for publications.
    pub publish: Vec<String>,
}

/// A user of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The argon2 hash of the user's password.
    pub password_hash: PasswordHash,
    /// The names of the user's roles.
    pub roles: Vec<String>,
}

/// The users, roles and anonymous roles of a configuration file. The configuration file's
/// loader ([`crate::config`]) checks that every role named is defined; a role that is not
/// grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Roles by name.
    pub roles: BTreeMap<String, Role>,
    /// The roles of anonymous sessions; `None`: anonymous sessions are refused (unless the
    /// server allows them with all permissions, see [`Policy::new`]).
    pub anonymous: Option<Vec<String>>,
}

/// How one [`Access`] differs from another, in numbers (never names, hashes or rules).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    pub users_added: usize,
    pub users_removed: usize,
    /// Users whose password hash or roles changed.
    pub users_changed: usize,
    pub roles_added: usize,
    pub roles_removed: usize,
    /// Roles whose rules changed.
    pub roles_changed: usize,
    /// Whether the anonymous roles changed.
    pub anonymous_changed: bool,
}

impl Access {
    /// What changed from `before` to `self`.
    pub fn changes_from(&self, before: &Access) -> Changes {
        let (users_added, users_removed, users_changed) = count_changes(&before.users, &self.users);
        let (roles_added, roles_removed, roles_changed) = count_changes(&before.roles, &self.roles);
        Changes {
            users_added,
            users_removed,
            users_changed,
            roles_added,
            roles_removed,
            roles_changed,
            anonymous_changed: before.anonymous != self.anonymous,
        }
    }
}

/// Entries added, removed and changed from `before` to `after`.
fn count_changes<T: PartialEq>(before: &BTreeMap<String, T>, after: &BTreeMap<String, T>) -> (usize, usize, usize) {
    let added = after.keys().filter(|name| !before.contains_key(*name)).count();
    let removed = before.keys().filter(|name| !after.contains_key(*name)).count();
    let changed = after.iter().filter(|(name, value)| before.get(*name).is_some_and(|old| old != *value)).count();
    (added, removed, changed)
}

/// What a principal may do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant {
    /// Everything: the command line's users and anonymous sessions allowed by
    /// `--allow-anonymous`, for tests and demos.
    All,
    /// What its roles' rules cover.
    Rules { subscribe: Vec<String>, publish: Vec<String> },
}

impl Grant {
    fn of_roles(names: &[String], roles: &BTreeMap<String, Role>) -> Grant {
        let (mut subscribe, mut publish) = (Vec::new(), Vec::new());
        for role in names.iter().filter_map(|name| roles.get(name)) {
            subscribe.extend(role.subscribe.iter().cloned());
            publish.extend(role.publish.iter().cloned());
        }
        for rules in [&mut subscribe, &mut publish] {
            rules.sort();
            rules.dedup();
        }
        Grant::Rules { subscribe, publish }
    }
}

/// Whether one of `rules` covers `path`.
fn covered(rules: &[String], path: &str) -> bool {
    rules.iter().any(|rule| session::protocol::path_matches(rule, path))
}

/// Who may connect and what each principal may do. The server holds one and replaces it as a
/// whole when the configuration file is reloaded (see `Server::access`).
#[derive(Clone)]
pub struct Policy {
    /// The configuration file's users: their password hashes and grants.
    users: HashMap<String, (PasswordHash, Grant)>,
    /// Principals authenticated by the command line (`--user`, `--custom`): all permissions.
    unrestricted: HashSet<String>,
    /// Anonymous sessions' grant; `None`: refused.
    anonymous: Option<Grant>,
    /// Verified in place of an unknown principal's password when the file has users (one of
    /// their hashes, so it costs the same), so that the time a refusal takes does not tell
    /// whether the principal exists.
    decoy: Option<PasswordHash>,
}

impl Policy {
    /// The policy of the configuration file's `access` together with the `unrestricted`
    /// principals of the command line, which get all permissions (and take the place of a file
    /// user of the same name). `allow_anonymous` admits anonymous sessions with all permissions
    /// (`--allow-anonymous`, `allow_anonymous = true`), whatever the `[anonymous]` table says.
    pub fn new<'a>(
        access: &Access,
        unrestricted: impl IntoIterator<Item = &'a String>,
        allow_anonymous: bool,
    ) -> Policy {
        let unrestricted: HashSet<String> = unrestricted.into_iter().cloned().collect();
        let users: HashMap<_, _> = access
            .users
            .iter()
            .filter(|(name, _)| !unrestricted.contains(*name))
            .map(|(name, user)| {
                (name.clone(), (user.password_hash.clone(), Grant::of_roles(&user.roles, &access.roles)))
            })
            .collect();
        let anonymous = match (&access.anonymous, allow_anonymous) {
            (_, true) => Some(Grant::All),
            (Some(roles), false) => Some(Grant::of_roles(roles, &access.roles)),
            (None, false) => None,
        };
        let decoy = users.values().next().map(|(hash, _)| hash.clone());
        Policy { users, unrestricted, anonymous, decoy }
    }

    /// Whether sessions with no principal and no credentials are accepted.
    pub fn admits_anonymous(&self) -> bool {
        self.anonymous.is_some()
    }

    /// Whether `principal` (`None` or empty: anonymous) may subscribe to `path` (a topic path,
    /// or with a trailing `/` everything below it).
    pub fn may_subscribe(&self, principal: Option<&str>, path: &str) -> bool {
        match self.grant(principal) {
            Some(Grant::All) => true,
            Some(Grant::Rules { subscribe, .. }) => covered(subscribe, path),
            None => false,
        }
    }

    /// Whether `principal` (`None` or empty: anonymous) may publish on `path`.
    pub fn may_publish(&self, principal: Option<&str>, path: &str) -> bool {
        match self.grant(principal) {
            Some(Grant::All) => true,
            Some(Grant::Rules { publish, .. }) => covered(publish, path),
            None => false,
        }
    }

    fn grant(&self, principal: Option<&str>) -> Option<&Grant> {
        match principal {
            None | Some("") => self.anonymous.as_ref(),
            Some(name) if self.unrestricted.contains(name) => Some(&Grant::All),
            Some(name) => self.users.get(name).map(|(_, grant)| grant),
        }
    }

    /// The hash a password login as `principal` is verified against, and whether it is
    /// `principal`'s own: for a principal the file does not have, a decoy whose verification
    /// does not count (`None` when the file has no users, or the command line authenticates
    /// `principal`).
    pub(crate) fn password_hash(&self, principal: &str) -> Option<(&PasswordHash, bool)> {
        if self.unrestricted.contains(principal) {
            return None;
        }
        match self.users.get(principal) {
            Some((hash, _)) => Some((hash, true)),
            None => self.decoy.as_ref().map(|decoy| (decoy, false)),
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("users", &self.users.len())
            .field("unrestricted", &self.unrestricted.len())
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

/// A hash of `password` that is cheap to verify (256 KiB, one pass), for tests.
#[cfg(test)]
pub(crate) fn cheap_hash(password: &str) -> PasswordHash {
    let params = argon2::Params::new(256, 1, 1, None).unwrap();
    let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    PasswordHash::parse(&argon.hash_password(password.as_bytes(), &salt).unwrap().to_string()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(subscribe: &[&str], publish: &[&str]) -> Role {
        Role {
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            publish: publish.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn access() -> Access {
        let mut a = Access::default();
        a.roles.insert("trader".into(), role(&["prices/", "alice/"], &["orders/"]));
        a.roles.insert("auditor".into(), role(&["orders/", "status"], &[]));
        a.roles.insert("viewer".into(), role(&["prices/"], &[]));
        let user = |roles: &[&str]| User {
            password_hash: cheap_hash("pw"),
            roles: roles.iter().map(|s| s.to_string()).collect(),
        };
        a.users.insert("alice".into(), user(&["trader"]));
        a.users.insert("carol".into(), user(&["trader", "auditor"]));
        a.users.insert("dave".into(), user(&[]));
        a.anonymous = Some(vec!["viewer".into()]);
        a
    }

    fn policy() -> Policy {
        Policy::new(&access(), &[], false)
    }

    #[test]
    fn a_rule_with_a_trailing_slash_covers_every_path_below_it() {
        let p = policy();
        for path in ["prices/eur", "prices/eur/bid", "prices/"] {
            assert!(p.may_subscribe(Some("alice"), path), "{path}");
        }
        assert!(p.may_publish(Some("alice"), "orders/1"));
    }

    #[test]
    fn a_rule_with_a_trailing_slash_does_not_cover_the_bare_path_or_a_longer_name() {
        let p = policy();
        for path in ["prices", "pricesx/eur", "prices2/", "other/prices/eur"] {
            assert!(!p.may_subscribe(Some("alice"), path), "{path}");
        }
    }

    #[test]
    fn a_rule_without_a_trailing_slash_covers_exactly_that_path() {
        let p = policy();
        assert!(p.may_subscribe(Some("carol"), "status"));
        for path in ["status/", "status/x", "statuses"] {
            assert!(!p.may_subscribe(Some("carol"), path), "{path}");
        }
    }

    #[test]
    fn a_subscription_to_a_whole_tree_needs_a_rule_covering_the_tree() {
        let mut a = access();
        a.roles.insert("one".into(), role(&["prices/eur"], &[]));
        a.users.get_mut("dave").unwrap().roles = vec!["one".into()];
        let p = Policy::new(&a, &[], false);
        assert!(p.may_subscribe(Some("dave"), "prices/eur"));
        assert!(!p.may_subscribe(Some("dave"), "prices/"));
    }

    #[test]
    fn subscribe_and_publish_rules_are_separate() {
        let p = policy();
        assert!(!p.may_publish(Some("alice"), "prices/eur"));
        assert!(!p.may_subscribe(Some("alice"), "orders/1"));
    }

    #[test]
    fn a_user_with_several_roles_has_what_any_of_them_grants() {
        let p = policy();
        assert!(p.may_subscribe(Some("carol"), "prices/eur"));
        assert!(p.may_subscribe(Some("carol"), "orders/1"));
        assert!(p.may_publish(Some("carol"), "orders/1"));
    }

    #[test]
    fn a_user_without_roles_or_an_unknown_principal_may_do_nothing() {
        let p = policy();
        for principal in ["dave", "mallory"] {
            assert!(!p.may_subscribe(Some(principal), "prices/eur"));
            assert!(!p.may_publish(Some(principal), "orders/1"));
        }
    }

    #[test]
    fn anonymous_sessions_get_the_anonymous_roles() {
        let p = policy();
        assert!(p.admits_anonymous());
        for principal in [None, Some("")] {
            assert!(p.may_subscribe(principal, "prices/eur"));
            assert!(!p.may_subscribe(principal, "alice/inbox"));
            assert!(!p.may_publish(principal, "orders/1"));
        }
    }

    #[test]
    fn without_an_anonymous_table_anonymous_sessions_are_refused() {
        let mut a = access();
        a.anonymous = None;
        let p = Policy::new(&a, &[], false);
        assert!(!p.admits_anonymous());
        assert!(!p.may_subscribe(None, "prices/eur"));
    }

    #[test]
    fn allow_anonymous_grants_anonymous_sessions_everything() {
        let p = Policy::new(&Access::default(), &[], true);
        assert!(p.admits_anonymous());
        assert!(p.may_subscribe(None, "anything/at/all"));
        assert!(p.may_publish(Some(""), "x"));
    }

    #[test]
    fn command_line_users_get_everything_and_replace_a_file_user_of_their_name() {
        let p = Policy::new(&access(), &["alice".to_string(), "bob".to_string()], false);
        for principal in ["alice", "bob"] {
            assert!(p.may_subscribe(Some(principal), "anything"));
            assert!(p.may_publish(Some(principal), "orders/x/y"));
            assert!(p.password_hash(principal).is_none());
        }
    }

    #[test]
    fn an_unknown_principal_is_checked_against_a_decoy_only_when_the_file_has_users() {
        let p = policy();
        assert!(matches!(p.password_hash("alice"), Some((_, true))));
        assert!(matches!(p.password_hash("mallory"), Some((_, false))));
        assert!(Policy::new(&Access::default(), &[], false).password_hash("mallory").is_none());
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = cheap_hash("right");
        assert!(hash.verify(b"right"));
        assert!(!hash.verify(b"wrong"));
        assert!(!hash.verify(b""));
    }

    #[test]
    fn only_argon2_phc_strings_are_password_hashes() {
        let good = cheap_hash("x");
        assert!(PasswordHash::parse(good.as_str()).is_ok());
        for bad in [
            "secret",
            "",
            "$argon2id$v=19$m=19456,t=2,p=1",
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=1,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_hash_is_not_shown_by_debug() {
        let hash = cheap_hash("x");
        assert_eq!(format!("{hash:?}"), "PasswordHash(..)");
        assert!(!format!("{:?}", policy()).contains("argon2"));
    }

    #[test]
    fn changes_count_users_and_roles_added_removed_and_changed() {
        let before = access();
        let mut after = before.clone();
        after.users.remove("dave");
        after.users.insert("erin".into(), User { password_hash: cheap_hash("e"), roles: vec![] });
        after.users.get_mut("alice").unwrap().roles.push("auditor".into());
        after.roles.get_mut("viewer").unwrap().subscribe.push("news/".into());
        let c = after.changes_from(&before);
        assert_eq!((c.users_added, c.users_removed, c.users_changed), (1, 1, 1));
        assert_eq!((c.roles_added, c.roles_removed, c.roles_changed), (0, 0, 1));
        assert!(!c.anonymous_changed);
        assert_eq!(before.changes_from(&before), Changes::default());
    }
}
