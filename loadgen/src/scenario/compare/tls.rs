//! The TLS scenarios: every broker that has TLS measured with it and without, the two runs of
//! each repeat back to back (hubbub plain, hubbub TLS, Redis plain, Redis TLS, …), so that
//! TLS ÷ plain per broker compares runs minutes apart. Their halves are reported as scenarios
//! of their own (`connect-plain`, `connect-tls`), each with the usual hubbub ÷ broker column,
//! and the markdown adds what TLS costs each broker.
//!
//! Where each broker speaks TLS: Redis and Mosquitto on a second port of the same process,
//! NATS in a second process (nats-server 2.9 requires TLS of all of a server's clients or of
//! none), hubbub in a second broker that loadgen starts with the certificates of `--tls-dir`
//! (left out, with the reason in the table, when this broker has no TLS). The plain-tokio
//! baseline has none.

use std::net::SocketAddr;

use anyhow::Context;

use super::closed_loop::{connect_spec, fanout_spec, interleaved_entries, Entry};
use super::scenarios::At;
use super::setup::{hubbub_tls_args, Broker, Collected, Running, Scenario, TLS_WINDOW};
use crate::model::compare::Measurement;
use crate::os::listener;
use crate::proto::dial::Dial;
use crate::proto::tls::Tls;
use crate::proto::Proto;
use crate::rig::broker::UnderTest;
use crate::scenario::{connect, fanout};

/// Measures `scenario` (a TLS one) against every broker of the comparison that has TLS.
pub(super) async fn measure(at: &At<'_>, scenario: Scenario, got: &mut Collected) {
    let (plain_name, tls_name) = scenario.tls_halves().expect("a TLS scenario");
    let metric = match scenario {
        Scenario::ConnectTls => ("connects_per_sec", "connects/s"),
        _ => ("deliveries_per_sec", "deliveries/s"),
    };
    let missing = |broker: &str, why: String| {
        let mut m = Measurement::new(tls_name, broker, metric.0, "/s", true);
        m.notes.push(why);
        m
    };
    let ca = at.opts.tls_dir.join("ca.pem");
    let tls = match Tls::new(&ca, None, None) {
        Ok(tls) => tls,
        Err(e) => {
            let why = format!("no TLS measured: {e} (scripts/peers.sh start makes it)");
            for b in at.brokers {
                got.measurements.push(missing(b.broker.name(), why.clone()));
            }
            return;
        }
    };
    let own = match at.brokers.iter().any(|b| b.broker == Broker::Hubbub) {
        true => Some(start_hubbub(at)),
        false => None,
    };
    let mut entries = Vec::new();
    for b in at.brokers {
        let found = match b.broker {
            Broker::PlainTokio => continue,
            Broker::Hubbub => match &own {
                Some(Ok(started)) => Ok(Running {
                    broker: Broker::Hubbub,
                    addr: started.addrs[0],
                    pid: started.pids[0],
                }),
                Some(Err(e)) => Err(format!("{e:#}")),
                None => unreachable!("started above"),
            },
            Broker::Redis => peer(b.broker, at.opts.redis_tls),
            Broker::Nats => peer(b.broker, at.opts.nats_tls),
            Broker::Mosquitto => peer(b.broker, at.opts.mosquitto_tls),
        };
        let proto = b.broker.proto();
        match found {
            Ok(over_tls) => {
                entries.push(entry(*b, proto.into(), plain_name));
                entries.push(entry(
                    over_tls,
                    Dial::new(proto, Some(tls.clone())),
                    tls_name,
                ));
            }
            Err(why) => {
                eprintln!("{tls_name} {}: left out: {why}", b.broker.name());
                got.measurements.push(missing(b.broker.name(), why));
            }
        }
    }
    let rows = match scenario {
        Scenario::ConnectTls => {
            let spec = &connect_spec(at);
            interleaved_entries(at, &entries, metric, |b, dial, tag| async move {
                connect::measure(b.addr, Some(b.pid), dial, spec, &tag).await
            })
            .await
        }
        _ => {
            let spec = &fanout_spec(at, Scenario::Fanout1x100, TLS_WINDOW);
            interleaved_entries(at, &entries, metric, |b, dial, tag| async move {
                fanout::measure(b.addr, Some(b.pid), dial, spec, &tag).await
            })
            .await
        }
    };
    got.measurements.extend(rows);
    if let Some(Ok(started)) = own {
        if let Err(e) = started.stop().await {
            eprintln!("{tls_name}: the hubbub started with TLS did not stop: {e:#}");
        }
    }
}

fn entry(running: Running, dial: Dial, scenario: &str) -> Entry {
    Entry {
        running,
        dial,
        scenario: scenario.into(),
    }
}

/// A hubbub of loadgen's own with TLS, on the certificates of `--tls-dir`.
fn start_hubbub(at: &At<'_>) -> anyhow::Result<UnderTest> {
    let args = hubbub_tls_args(at.opts);
    UnderTest::resolve(&[], &[], Proto::Hubbub, &args)
        .context("this broker did not start with TLS (it may have none)")
}

/// The pid of the peer listening for TLS at `addr`, or why there is none.
fn peer(broker: Broker, addr: SocketAddr) -> Result<Running, String> {
    match listener::pid_listening_on(addr.port()) {
        Some(pid) => Ok(Running { broker, addr, pid }),
        None => Err(format!(
            "nothing listens for TLS on {addr}: `scripts/peers.sh start {}` starts its TLS \
             listener",
            broker.name()
        )),
    }
}
