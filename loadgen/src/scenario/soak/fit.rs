//! How many clients a soak holds, checked against the broker's descriptors before anything
//! starts: a soak that ran into the open-files limit would report connect errors, not what it
//! is for.
//!
//! The broker loadgen starts raises its open-files soft limit to the hard limit it inherits
//! from loadgen, and holds that many connections less the descriptors it keeps for itself.
//! When that is too few and loadgen may raise the hard limit (CAP_SYS_RESOURCE), it does, by
//! what the soak needs and no more. Otherwise the default of [`DEFAULT_CLIENTS`] comes down to
//! what fits, and a `--clients` that does not fit is refused, with the numbers and what to
//! change.

use crate::model::units::grouped;
use crate::os::nofile_of;
use crate::rig::progress::say;
use crate::rig::Common;

/// Clients a soak holds unless told (`--clients`), if the broker's descriptors allow.
pub const DEFAULT_CLIENTS: u64 = 20_000;
/// Descriptors the broker keeps for itself below its open-files limit: its
/// `--max-connections` defaults to the limit less these (`KEPT_DESCRIPTORS`,
/// broker/src/server.rs).
pub const BROKER_KEEPS: u64 = 32;
/// Descriptors left free for reconnects in flight: churn, slow and malformed clients
/// reconnect as they go, and a new connection can arrive before the broker has closed the
/// old one's descriptor; at the limit exactly it would be refused.
pub const RECONNECTS: u64 = 32;

/// How many clients the soak holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fit {
    pub clients: u64,
    /// The open-files hard limit as it was and as loadgen raised it, if it did.
    pub raised: Option<(u64, u64)>,
    /// Why the clients are fewer than the default, if they are.
    pub capped: Option<String>,
}

/// Connections loadgen makes of its own besides the clients: the publishers, two STATS probes
/// (the rig's and the soak's) and the burst publisher.
pub fn own_connections(common: &Common) -> u64 {
    common.publishers as u64 + 3
}

/// The most clients that fit a broker whose open-files limit is `limit`.
fn most(limit: u64, common: &Common) -> u64 {
    limit.saturating_sub(BROKER_KEEPS + own_connections(common) + RECONNECTS)
}

/// The clients the soak holds: `asked` (`--clients`, or the default when `None`) if they fit
/// the broker under test, raising loadgen's open-files hard limit first when the broker is
/// started here and that is what it takes. A broker given by `--target` is checked only with
/// `--broker-pid` (its limit is read from /proc). None fit over TLS: the misbehaving clients
/// speak plain TCP, so `--tls-ca` is refused.
pub fn check(common: &Common, asked: Option<u64>) -> Result<Fit, String> {
    if common.tls.tls_ca.is_some() {
        return Err(
            "--tls-ca: a soak speaks plain TCP (its misbehaving clients have no TLS)".into(),
        );
    }
    let clients = asked.unwrap_or(DEFAULT_CLIENTS);
    let fits = |limit: u64| clients <= most(limit, common);
    let (limit, whose) = if common.target.is_empty() {
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map_err(|e| format!("cannot read the open-files limit: {e}"))?;
        if fits(hard) {
            return Ok(Fit::all(clients));
        }
        let raised = hard + clients - most(hard, common);
        if rlimit::setrlimit(rlimit::Resource::NOFILE, raised, raised).is_ok() {
            say(&format!(
                "soak: raised the open-files hard limit from {} to {} so that the broker \
                 loadgen starts holds {} clients",
                grouped(hard),
                grouped(raised),
                grouped(clients),
            ));
            return Ok(Fit {
                raised: Some((hard, raised)),
                ..Fit::all(clients)
            });
        }
        (
            hard,
            "the broker loadgen starts inherits an open-files limit of",
        )
    } else {
        match common.broker_pid.first().and_then(|&pid| nofile_of(pid)) {
            Some((soft, _)) if !fits(soft) => (soft, "the broker's open-files limit is"),
            Some(_) => return Ok(Fit::all(clients)),
            None => {
                say(&format!(
                    "soak: cannot check that {} clients fit the broker's open-files limit \
                     (give --broker-pid)",
                    grouped(clients)
                ));
                return Ok(Fit::all(clients));
            }
        }
    };
    let why = format!(
        "{whose} {} and {} clients need {} (it keeps {BROKER_KEEPS} descriptors for itself, \
         loadgen makes {} connections of its own, and {RECONNECTS} are left for reconnects in \
         flight)",
        grouped(limit),
        grouped(clients),
        grouped(clients - most(limit, common) + limit),
        own_connections(common),
    );
    match asked {
        None => {
            let fewer = most(limit, common);
            let capped = format!(
                "{} clients held, not the default {}: {why}",
                grouped(fewer),
                grouped(clients)
            );
            say(&format!("soak: {capped}"));
            Ok(Fit {
                clients: fewer,
                raised: None,
                capped: Some(capped),
            })
        }
        Some(_) => Err(format!(
            "--clients {} does not fit: {why}. Lower --clients to {}, or raise the open-files \
             limit (the hard limit needs CAP_SYS_RESOURCE: `ulimit -Hn {}` as root)",
            grouped(clients),
            grouped(most(limit, common)),
            clients - most(limit, common) + limit,
        )),
    }
}

impl Fit {
    fn all(clients: u64) -> Fit {
        Fit {
            clients,
            raised: None,
            capped: None,
        }
    }
}
