//! The users file (`--users`): who may connect, with what password, and what each may do.
//! Pure: parsing, channel patterns and password checks, no I/O but the one read of the file.
//!
//! ```toml
//! # alice reads everything and writes the news; the leaf links with its own user
//! [users.alice]
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # from `broker hash-password`
//! publish = ["news.*"]
//! subscribe = ["*"]
//! stats = true
//!
//! [users.leaf-1]
//! password = "$argon2id$v=19$..."
//! publish = ["*"]
//! subscribe = ["*"]
//! link = true
//! ```
//!
//! Why TOML: the file is written by hand, and an operator wants to say in a comment why a user
//! may do what it may; TOML has comments, JSON has none. Unknown keys are refused (a misspelt
//! `subcribe` would otherwise grant nothing without a word).
//!
//! Why argon2 (RustCrypto's `argon2`, PHC strings): the hash carries its own parameters, so an
//! operator can raise the cost later without a change here; a leaked file costs an attacker
//! tens of milliseconds and 19 MiB per guess.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use serde::Deserialize;
use thiserror::Error;

/// Why a users file, a pattern or a password could not be used.
#[derive(Debug, Error)]
pub enum UsersError {
    #[error("cannot read the users file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the users file is not valid: {0}")]
    Format(String),
    #[error("the users file names no user")]
    NoUsers,
    #[error("user {user:?}: \"password\" is not an argon2 hash in PHC form ({why}); make one with `broker hash-password`")]
    Hash { user: String, why: String },
    #[error("user {user:?}: pattern {pattern:?} {why}")]
    Pattern {
        user: String,
        pattern: String,
        why: &'static str,
    },
    #[error("cannot hash the password: {0}")]
    Hashing(String),
    #[error("the password is empty")]
    EmptyPassword,
}

/// A channel pattern: an exact channel name, or a prefix ending in `*` that matches every
/// channel starting with it (`news.*` matches `news.sport`, not `news`; `*` matches every
/// channel). A `*` anywhere but at the end is refused, which keeps room for a richer syntax
/// without changing what an existing file means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(Box<str>),
    Prefix(Box<str>),
}

impl Pattern {
    /// Parses one pattern; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        if text.is_empty() {
            return Err("is empty");
        }
        let (head, wild) = match text.strip_suffix('*') {
            Some(head) => (head, true),
            None => (text, false),
        };
        if head.contains('*') {
            return Err("has a '*' before its end (only a trailing '*' is a wildcard)");
        }
        Ok(match wild {
            true => Pattern::Prefix(head.into()),
            false => Pattern::Exact(head.into()),
        })
    }

    /// Whether `channel` is one this pattern names.
    pub fn matches(&self, channel: &str) -> bool {
        match self {
            Pattern::Exact(name) => **name == *channel,
            Pattern::Prefix(head) => channel.starts_with(&**head),
        }
    }
}

/// The channels a user may publish to, or subscribe to: any pattern matching is enough.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patterns(Vec<Pattern>);

impl Patterns {
    /// Parses a list of patterns (see [`Pattern`]).
    pub fn parse(list: &[String]) -> Result<Self, (String, &'static str)> {
        list.iter()
            .map(|p| Pattern::parse(p).map_err(|why| (p.clone(), why)))
            .collect::<Result<_, _>>()
            .map(Patterns)
    }

    /// Whether any pattern matches `channel`. A few comparisons per PUBLISH or SUBSCRIBE,
    /// never per delivery.
    pub fn allows(&self, channel: &str) -> bool {
        self.0.iter().any(|p| p.matches(channel))
    }
}

/// One user of the file.
pub struct User {
    pub name: String,
    /// The argon2 hash, in PHC form (checked when the file is read).
    hash: String,
    pub publish: Patterns,
    pub subscribe: Patterns,
    /// May send LINK: become a link from a broker below.
    pub link: bool,
    /// May ask for STATS.
    pub stats: bool,
}

impl std::fmt::Debug for User {
    /// Without the hash: a log of the settings should not carry it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("publish", &self.publish)
            .field("subscribe", &self.subscribe)
            .field("link", &self.link)
            .field("stats", &self.stats)
            .finish()
    }
}

/// Every user of a users file, by name.
#[derive(Debug)]
pub struct Users {
    /// Sorted by name; a user's place here is its number ([`Users::get`]).
    users: Vec<User>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    #[serde(default)]
    users: BTreeMap<String, UserForm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserForm {
    password: String,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    link: bool,
    #[serde(default)]
    stats: bool,
}

impl Users {
    /// Reads and parses the users file at `path` (what `--users` does).
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses a users file's text: every hash and pattern is checked here, so that a broker
    /// with a bad file refuses to start rather than refuse its users later.
    pub fn parse(text: &str) -> Result<Self, UsersError> {
        let form: FileForm = toml::from_str(text).map_err(|e| UsersError::Format(e.to_string()))?;
        if form.users.is_empty() {
            return Err(UsersError::NoUsers);
        }
        let mut users = Vec::with_capacity(form.users.len());
        for (name, u) in form.users {
            if let Err(e) = PasswordHash::new(&u.password) {
                return Err(UsersError::Hash {
                    user: name,
                    why: e.to_string(),
                });
            }
            let patterns = |list: &[String]| {
                Patterns::parse(list).map_err(|(pattern, why)| UsersError::Pattern {
                    user: name.clone(),
                    pattern,
                    why,
                })
            };
            users.push(User {
                publish: patterns(&u.publish)?,
                subscribe: patterns(&u.subscribe)?,
                name,
                hash: u.password,
                link: u.link,
                stats: u.stats,
            });
        }
        Ok(Self { users })
    }

    /// The number of the user called `name`, if there is one.
    pub fn find(&self, name: &str) -> Option<u32> {
        self.users
            .binary_search_by(|u| u.name.as_str().cmp(name))
            .ok()
            .map(|i| i as u32)
    }

    /// The user numbered `n` ([`Users::find`]).
    pub fn get(&self, n: u32) -> Option<&User> {
        self.users.get(n as usize)
    }

    /// Whether `password` is user `n`'s. Costs what the hash's parameters say (milliseconds
    /// of CPU and megabytes of memory): call it off the runtime's workers.
    ///
    /// For `None`, a user that does not exist, the first user's hash is checked all the same
    /// and the answer is no: a wrong name then takes as long as a wrong password, so the time
    /// of the answer does not tell which names exist.
    pub fn verify(&self, n: Option<u32>, password: &str) -> bool {
        let Some(user) = self.get(n.unwrap_or(0)) else {
            return false;
        };
        let Ok(hash) = PasswordHash::new(&user.hash) else {
            return false;
        };
        let right = Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok();
        right && n.is_some()
    }
}

/// An argon2id hash of `password` in PHC form, with a fresh random salt and argon2's default
/// cost (19 MiB, two passes: OWASP's recommendation): what `broker hash-password` prints.
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    if password.is_empty() {
        return Err(UsersError::EmptyPassword);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hashing(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash made cheap (8 KiB, one pass), so the tests do not spend seconds on argon2.
    fn cheap_hash(password: &str) -> String {
        let params = argon2::Params::new(8, 1, 1, None).unwrap();
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        argon
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn patterns_are_exact_names_or_trailing_wildcards() {
        let p = |t| Pattern::parse(t).unwrap();
        assert!(p("news").matches("news"));
        assert!(!p("news").matches("news.sport"));
        assert!(!p("news").matches("new"));
        assert!(p("news.*").matches("news.sport"));
        assert!(p("news.*").matches("news."));
        assert!(!p("news.*").matches("news"));
        assert!(p("*").matches(""));
        assert!(p("*").matches("anything at all"));
        assert_eq!(Pattern::parse(""), Err("is empty"));
        assert!(Pattern::parse("a*b").is_err());
        assert!(Pattern::parse("**").is_err());
        let list = Patterns::parse(&["a".into(), "b.*".into()]).unwrap();
        assert!(list.allows("a") && list.allows("b.c"));
        assert!(!list.allows("c") && !list.allows("ab"));
        assert!(
            !Patterns::default().allows("a"),
            "no pattern allows nothing"
        );
    }

    #[test]
    fn a_users_file_is_read_and_checked() {
        let text = format!(
            "[users.bob]\npassword = \"{}\"\nsubscribe = [\"news.*\"]\n\n\
             [users.alice]\npassword = \"{}\"\npublish = [\"*\"]\nlink = true\nstats = true\n",
            cheap_hash("b0b"),
            cheap_hash("4lice")
        );
        let users = Users::parse(&text).unwrap();
        let alice = users.find("alice").unwrap();
        let bob = users.find("bob").unwrap();
        assert_eq!(users.find("carol"), None);
        let a = users.get(alice).unwrap();
        assert!(a.link && a.stats && a.publish.allows("x") && !a.subscribe.allows("x"));
        let b = users.get(bob).unwrap();
        assert!(!b.link && !b.stats && b.subscribe.allows("news.a") && !b.publish.allows("x"));
        assert!(users.verify(Some(alice), "4lice"));
        assert!(!users.verify(Some(alice), "b0b"));
        assert!(users.verify(Some(bob), "b0b"));
        // An unknown user is refused even with the password of the user checked in its place.
        assert!(!users.verify(None, "4lice"));
        assert!(!users.verify(None, "b0b"));
        assert!(
            !format!("{users:?}").contains("argon2"),
            "Debug leaves hashes out"
        );
    }

    #[test]
    fn a_bad_users_file_says_what_is_wrong() {
        let err = |t: &str| Users::parse(t).unwrap_err().to_string();
        assert_eq!(err(""), "the users file names no user");
        assert!(err("[users.a]\npassword = \"secret\"\n")
            .starts_with("user \"a\": \"password\" is not an argon2 hash in PHC form"));
        let h = cheap_hash("x");
        assert_eq!(
            err(&format!(
                "[users.a]\npassword = \"{h}\"\npublish = [\"a*b\"]\n"
            )),
            "user \"a\": pattern \"a*b\" has a '*' before its end (only a trailing '*' is a \
             wildcard)"
        );
        assert!(err(&format!(
            "[users.a]\npassword = \"{h}\"\nsubcribe = [\"x\"]\n"
        ))
        .contains("unknown field `subcribe`"));
    }

    #[test]
    fn hash_password_makes_a_hash_that_verifies() {
        let hash = hash_password("correct horse").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let users = Users::parse(&format!("[users.u]\npassword = \"{hash}\"\n")).unwrap();
        assert!(users.verify(users.find("u"), "correct horse"));
        assert!(!users.verify(users.find("u"), "correct horsE"));
        assert!(matches!(hash_password(""), Err(UsersError::EmptyPassword)));
    }
}
