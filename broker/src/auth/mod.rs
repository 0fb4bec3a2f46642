//! Authentication and permissions (`--users`): who a connection is, and checking an AUTH off
//! the runtime's workers.
//!
//! - [`users`]: the users file, channel patterns and password checks (pure).
//! - [`throttle`]: repeated failures slowed down per source address (pure, clock passed in).
//! - this file: [`Access`], what a connection may do, kept in four bytes of its session; and
//!   [`Auth`], which checks an AUTH on a task of its own.
//!
//! Why a task of its own: an argon2 check costs milliseconds of CPU and a throttled one waits
//! seconds, and a connection's task must keep delivering meanwhile. The check waits out its
//! throttle, then takes one of a few permits and runs on the blocking pool, so an AUTH storm
//! takes at most half the cores (see [`Auth::new`]) and the workers go on delivering. The task
//! answers the client itself and leaves the outcome in [`Auth`]'s table, where the session
//! picks it up with its next command: the client waits for the AUTH reply before it goes on.
//!
//! With no users file there is no [`Auth`], every connection's [`Access`] is
//! [`Access::OPEN`], and the only cost is a comparison of that number per command.

pub mod throttle;
pub mod users;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::info;

use crate::audience::ConnId;
use crate::outbox::Outbox;
use crate::protocol::{encode, ProtocolError, Quoted};
use crate::stats::{self, Stats};

pub use throttle::Throttle;
pub use users::{hash_password, Pattern, Patterns, User, Users, UsersError};

/// Checks waiting for a permit or running, past which a further AUTH is refused at once with
/// ERROR `AUTH: too many authentications in progress; try again later` (and not counted as a
/// failure): at one core's worth of checks this is a few seconds of work queued.
pub const MOST_QUEUED: usize = 256;

/// What a connection may do: a user's number, or one of the states below, in the four bytes
/// its session has spare (a connection's task must stay within its allocation size class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access(u32);

impl Access {
    /// No users file: everything is allowed, as in the core protocol.
    pub const OPEN: Access = Access(u32::MAX);
    /// Not authenticated: only PING and AUTH are allowed.
    pub const ANONYMOUS: Access = Access(u32::MAX - 1);
    /// An AUTH is being checked.
    pub const CHECKING: Access = Access(u32::MAX - 2);

    /// What a new connection may do.
    pub fn at_connect(auth: Option<&Auth>) -> Self {
        match auth {
            Some(_) => Access::ANONYMOUS,
            None => Access::OPEN,
        }
    }

    /// The user's number, once authenticated.
    pub fn user(self) -> Option<u32> {
        (self.0 < Access::CHECKING.0).then_some(self.0)
    }
}

/// An AUTH's outcome, for the session to pick up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Checking,
    Accepted(u32),
    Refused,
}

/// The users and the checks in progress. One per broker.
pub struct Auth {
    pub users: Arc<Users>,
    throttle: Mutex<Throttle>,
    /// Checks that may run at once, on the blocking pool.
    permits: Semaphore,
    /// Checks waiting for a permit or running; bounded by [`MOST_QUEUED`].
    queued: AtomicUsize,
    /// Connections with an AUTH in flight, and its outcome once known. One entry per such
    /// connection at most: put in when its AUTH starts, taken out by its session.
    outcomes: Mutex<HashMap<ConnId, Outcome>>,
}

impl Auth {
    /// Checks for `users`, at most half the cores' worth at once (at least one).
    pub fn new(users: Arc<Users>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            users,
            throttle: Mutex::new(Throttle::default()),
            permits: Semaphore::new((cores / 2).max(1)),
            queued: AtomicUsize::new(0),
            outcomes: Mutex::new(HashMap::new()),
        }
    }

    /// The user numbered `n`, named in ERRORs and logs.
    pub fn user(&self, n: u32) -> &User {
        self.users.get(n).expect("a user number from this file")
    }

    /// What connection `conn`, whose AUTH was in flight, may do now: still
    /// [`Access::CHECKING`], the user it authenticated as, or [`Access::ANONYMOUS`].
    pub(crate) fn settle(&self, conn: ConnId) -> Access {
        let mut outcomes = self.outcomes.lock().expect("auth lock");
        let access = match outcomes.get(&conn) {
            Some(Outcome::Checking) => return Access::CHECKING,
            Some(Outcome::Accepted(n)) => Access(*n),
            Some(Outcome::Refused) | None => Access::ANONYMOUS,
        };
        outcomes.remove(&conn);
        access
    }

    /// Connection `conn` went away with an AUTH in flight: its outcome is not wanted.
    pub(crate) fn forget(&self, conn: ConnId) {
        self.outcomes.lock().expect("auth lock").remove(&conn);
    }

    /// Starts checking `password` for `user` on behalf of connection `conn` from `peer`; the
    /// check answers on `outbox` and counts in `stats`. The caller sets the connection's
    /// access to [`Access::CHECKING`].
    pub(crate) fn begin(
        self: &Arc<Self>,
        conn: ConnId,
        peer: Option<IpAddr>,
        user: &str,
        password: String,
        outbox: Arc<Outbox>,
        stats: Arc<Stats>,
    ) {
        self.outcomes
            .lock()
            .expect("auth lock")
            .insert(conn, Outcome::Checking);
        let (auth, user) = (Arc::clone(self), user.to_owned());
        tokio::spawn(async move {
            let (outcome, reply) = auth.check(peer, &user, password, &stats).await;
            // The outcome before the reply: a client that read the reply and goes on finds
            // its session knowing it.
            if let Some(o) = auth.outcomes.lock().expect("auth lock").get_mut(&conn) {
                *o = outcome;
            }
            let _ = outbox.push(reply);
        });
    }

    /// Waits out the throttle, checks, counts; the outcome and the reply to send.
    async fn check(
        &self,
        peer: Option<IpAddr>,
        user: &str,
        password: String,
        stats: &Stats,
    ) -> (Outcome, Bytes) {
        if let Some(ip) = peer {
            let wait = self
                .throttle
                .lock()
                .expect("throttle lock")
                .wait(ip, Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let n = self.users.find(user);
        let Some(right) = self.verify(n, password).await else {
            stats::add(&stats.protocol_errors, 1);
            let busy = ProtocolError::AuthBusy.to_string();
            return (Outcome::Refused, encode::error(&busy));
        };
        match n {
            Some(n) if right => {
                info!(user = %Quoted(user), peer = ?peer, "authenticated");
                (Outcome::Accepted(n), encode::auth_reply(user))
            }
            _ => {
                if let Some(ip) = peer {
                    let mut throttle = self.throttle.lock().expect("throttle lock");
                    throttle.failed(ip, Instant::now());
                }
                stats::add(&stats.auth_failures, 1);
                stats::add(&stats.protocol_errors, 1);
                info!(user = %Quoted(user), peer = ?peer, "AUTH failed: wrong user or password");
                let wrong = ProtocolError::AuthFailed.to_string();
                (Outcome::Refused, encode::error(&wrong))
            }
        }
    }

    /// Checks the password on the blocking pool, at most [`Auth::new`]'s permits at once;
    /// `None` when [`MOST_QUEUED`] checks are already waiting or running.
    async fn verify(&self, n: Option<u32>, password: String) -> Option<bool> {
        struct Queued<'a>(&'a AtomicUsize);
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= MOST_QUEUED {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let _queued = Queued(&self.queued);
        let _permit = self.permits.acquire().await.expect("never closed");
        let users = Arc::clone(&self.users);
        let check = tokio::task::spawn_blocking(move || users.verify(n, &password));
        Some(check.await.unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap(password: &str) -> String {
        use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
        let params = argon2::Params::new(8, 1, 1, None).unwrap();
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string()
    }

    fn auth() -> Auth {
        let text = format!("[users.alice]\npassword = \"{}\"\n", cheap("pw"));
        Auth::new(Arc::new(Users::parse(&text).unwrap()))
    }

    #[test]
    fn access_numbers_are_users_below_the_states() {
        assert_eq!(Access(0).user(), Some(0));
        assert_eq!(Access::OPEN.user(), None);
        assert_eq!(Access::ANONYMOUS.user(), None);
        assert_eq!(Access::CHECKING.user(), None);
        assert_eq!(Access::at_connect(None), Access::OPEN);
        assert_eq!(Access::at_connect(Some(&auth())), Access::ANONYMOUS);
    }

    /// The clock is tokio's, paused: the second wrong password from the same address waits
    /// exactly the throttle's first delay before it is checked, the first waits nothing.
    #[tokio::test(start_paused = true)]
    async fn a_second_failure_from_one_address_is_checked_only_after_the_delay() {
        let (auth, stats) = (auth(), Stats::default());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        let (first, _) = auth.check(Some(ip), "alice", "nope".into(), &stats).await;
        assert_eq!(first, Outcome::Refused);
        assert_eq!(Instant::now() - t0, std::time::Duration::ZERO);
        let (second, reply) = auth.check(Some(ip), "alice", "nope".into(), &stats).await;
        assert_eq!(second, Outcome::Refused);
        assert_eq!(Instant::now() - t0, throttle::FIRST_DELAY);
        assert_eq!(
            &reply[..],
            b"{\"type\":\"ERROR\",\"message\":\"AUTH: wrong user or password\"}\n"
        );
        let (third, reply) = auth.check(Some(ip), "alice", "pw".into(), &stats).await;
        assert_eq!(third, Outcome::Accepted(0));
        assert_eq!(&reply[..], b"{\"type\":\"AUTH\",\"user\":\"alice\"}\n");
        assert_eq!(
            Instant::now() - t0,
            throttle::FIRST_DELAY + throttle::delay(2),
            "a right password from a failing address waits its turn too"
        );
        assert_eq!(stats.auth_failures.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn outcomes_wait_for_their_session_and_go_with_it() {
        let auth = Arc::new(auth());
        auth.outcomes.lock().unwrap().insert(7, Outcome::Checking);
        assert_eq!(auth.settle(7), Access::CHECKING);
        auth.outcomes
            .lock()
            .unwrap()
            .insert(7, Outcome::Accepted(0));
        assert_eq!(auth.settle(7), Access(0));
        assert!(
            auth.outcomes.lock().unwrap().is_empty(),
            "taken once settled"
        );
        auth.outcomes.lock().unwrap().insert(8, Outcome::Checking);
        auth.forget(8);
        assert!(auth.outcomes.lock().unwrap().is_empty());
    }
}
