//! `HOST:PORT` names to addresses, for `--target` and `--agents`: a name stands for every
//! address it resolves to (a Compose service's replicas, a headless Service's pods), and is
//! looked up again until it resolves, since in a container network a name appears only once
//! its container or pod has started.

use std::net::SocketAddr;
use std::time::Duration;

use hubbub::address::HostPort;

/// Every address `names` resolve to, in the order of the names (each name's own sorted),
/// without repeats. Retries every half second until every name resolves and, with `count`,
/// until there are at least that many addresses, for up to `wait`; `flag` names what is
/// being resolved in the error.
pub async fn resolve(
    flag: &str,
    names: &[HostPort],
    count: Option<usize>,
    wait: Duration,
) -> anyhow::Result<Vec<SocketAddr>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut found: Vec<SocketAddr> = Vec::new();
        let mut failure = None;
        for name in names {
            match tokio::net::lookup_host(name.as_pair()).await {
                Ok(addrs) => {
                    let mut mine: Vec<SocketAddr> = addrs.filter(|a| !found.contains(a)).collect();
                    mine.sort();
                    mine.dedup();
                    found.extend(mine);
                }
                Err(e) => failure = Some(format!("{name}: {e}")),
            }
        }
        if failure.is_none() && count.map_or(true, |n| found.len() >= n) {
            return Ok(found);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "{flag}: found {} address(es) of the {} wanted within {}: {}",
                found.len(),
                count.map_or("all".into(), |n| n.to_string()),
                humantime::format_duration(wait),
                failure.unwrap_or_else(|| format!("{found:?}")),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_keep_their_order_and_give_each_address_once() {
        let names: Vec<HostPort> = ["127.0.0.2:7", "127.0.0.1:7", "127.0.0.2:7"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        let found = resolve("--target", &names, None, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            found,
            [
                "127.0.0.2:7".parse().unwrap(),
                "127.0.0.1:7".parse().unwrap()
            ]
        );
        let err = resolve("--agents", &names, Some(3), Duration::ZERO)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--agents: found 2 address(es) of the 3 wanted"),
            "{err}"
        );
    }
}
