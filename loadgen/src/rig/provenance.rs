//! Gathering a run's [`Provenance`]: the git commit of the source loadgen was built from (and
//! whether it had uncommitted changes), each broker's version, the kernel, the CPU model and
//! the limits read at start.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::model::provenance::{BrokerVersion, Provenance};
use crate::model::Limits;
use crate::proto::credentials::Credentials;
use crate::proto::version::ask_version_as;
use crate::proto::Proto;

/// The source tree loadgen was built from.
const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Everything about the run that is not a measurement: `brokers` as (name, protocol,
/// address), each asked for its version.
pub async fn gather(brokers: &[(String, Proto, SocketAddr)], limits: &Limits) -> Provenance {
    gather_as(brokers, limits, &Credentials::NONE).await
}

/// [`gather`], asking each broker as the user of `auth` (`--user`).
pub async fn gather_as(
    brokers: &[(String, Proto, SocketAddr)],
    limits: &Limits,
    auth: &Credentials,
) -> Provenance {
    let mut versions = Vec::new();
    for (name, proto, addr) in brokers {
        versions.push(BrokerVersion {
            broker: name.clone(),
            address: addr.to_string(),
            version: ask_version_as(*proto, *addr, auth).await,
        });
    }
    let (git_commit, git_dirty) = git(Path::new(SOURCE));
    Provenance {
        measured_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        git_commit,
        git_dirty,
        loadgen_version: env!("CARGO_PKG_VERSION").into(),
        brokers: versions,
        kernel: nix::sys::utsname::uname()
            .map(|u| {
                format!(
                    "{} {}",
                    u.sysname().to_string_lossy(),
                    u.release().to_string_lossy()
                )
            })
            .unwrap_or_default(),
        cpu_model: std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| cpu_model(&c))
            .unwrap_or_default(),
        cores: limits.cores,
        limits: limits.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    }
}

/// The commit checked out in `dir` and whether the tree differs from it; `None`s where `dir`
/// is not a git checkout or git is missing.
fn git(dir: &Path) -> (Option<String>, Option<bool>) {
    let run = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = run(&["rev-parse", "HEAD"]);
    let dirty = commit
        .as_ref()
        // Changes to what was built, not to reports/ (which runs like this one write into).
        .and_then(|_| {
            run(&[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)reports",
            ])
        })
        .map(|s| !s.is_empty());
    (commit, dirty)
}

/// The first `model name` of a `/proc/cpuinfo` text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    let line = cpuinfo.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cpu_model_and_this_checkout() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(info), Some("AMD EPYC 7B13".into()));
        assert_eq!(cpu_model("processor: 0\n"), None);
        let (commit, dirty) = git(Path::new(SOURCE));
        if let Some(c) = commit {
            assert_eq!(c.len(), 40, "{c}");
            assert!(dirty.is_some());
        }
    }

    #[tokio::test]
    async fn asks_hubbub_for_its_version() {
        let broker = hubbub::start(hubbub::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            stats_interval: std::time::Duration::ZERO,
            ..Default::default()
        })
        .await
        .unwrap();
        let p = gather(
            &[("hubbub".into(), Proto::Hubbub, broker.addr)],
            &Limits::default(),
        )
        .await;
        assert_eq!(p.brokers[0].version.as_deref(), Some("0.1.0"));
        assert!(p.command.contains("loadgen"), "{}", p.command);
        broker.stop().await;
    }
}
