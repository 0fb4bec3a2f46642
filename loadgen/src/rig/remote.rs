//! Workers on agents (`--agents`): each agent's clock measured, the workers spread over the
//! agents, each told the offset; at the end the clocks measured again for the report.

use std::net::SocketAddr;

use anyhow::Context;

use super::agents::dial::{AgentOpts, Session};
use super::agents::wire::read_token;
use super::control::{FromWorker, ToWorker};
use super::plan;
use super::pool::Worker;
use crate::model::hosts::AgentReport;

/// The agents of a run, and what the report says of each.
pub struct Agents {
    token: String,
    addrs: Vec<SocketAddr>,
    pub reports: Vec<AgentReport>,
}

impl Agents {
    /// The name samples of agent `i`'s workers go by (its address).
    pub fn host_name(&self, i: usize) -> String {
        self.reports[i].address.clone()
    }
}

/// Finds the agents, measures their clocks and starts enough workers on them for
/// `max_clients` (at least one each), `per_process` clients each (default: the smallest
/// agent open-files hard limit less `margin`). Returns the workers (worker `i` on agent
/// `i % agents`), the agents and the clients per worker.
pub async fn start(
    opts: &AgentOpts,
    max_clients: u64,
    per_process: Option<u64>,
    margin: u64,
) -> anyhow::Result<(Vec<Worker>, Agents, u64)> {
    let token_file = opts
        .agent_token_file
        .as_ref()
        .context("--agents needs --agent-token-file: agents let in only who holds their token")?;
    let token = read_token(token_file)?;
    let addrs =
        super::resolve::resolve("--agents", &opts.agents, opts.agent_count, opts.agent_wait)
            .await?;
    let mut first = Vec::new();
    let mut reports = Vec::new();
    for &addr in &addrs {
        let mut session = Session::open(addr, &token).await?;
        let clock = session.clock().await?;
        let info = session.info.clone();
        reports.push(AgentReport {
            address: addr.to_string(),
            host: info.host,
            cores: info.cores,
            nofile_hard: info.nofile_hard,
            clock_offset_ns: clock.offset_ns,
            clock_uncertainty_ns: clock.uncertainty_ns,
            ..Default::default()
        });
        first.push(Some(session));
    }
    let smallest = reports.iter().map(|r| r.nofile_hard).min().unwrap_or(0);
    let per_process = per_process.unwrap_or(smallest.saturating_sub(margin).max(1));
    let count = plan::workers_for(max_clients, per_process).max(addrs.len());
    let mut workers = Vec::with_capacity(count);
    for i in 0..count {
        let a = i % addrs.len();
        let session = match first[a].take() {
            Some(s) => s,
            None => Session::open(addrs[a], &token).await?,
        };
        let (read, write) = session.into_worker(per_process + margin).await?;
        let report = &mut reports[a];
        report.workers += 1;
        let label = format!(
            "agent {} ({}) worker {}",
            report.address, report.host, report.workers
        );
        let mut worker = Worker::remote(label, a + 1, read, write);
        worker
            .send(&ToWorker::Clock {
                offset_ns: report.clock_offset_ns,
            })
            .await?;
        workers.push(worker);
    }
    Ok((
        workers,
        Agents {
            token,
            addrs,
            reports,
        },
        per_process,
    ))
}

/// Spreads `--publishers` over the workers (worker `i` gets every `workers`-th one), has each
/// connect its own to `targets`, and returns each worker's first publisher's global index and
/// count. A worker whose publishers cannot connect fails the run, naming it.
pub async fn start_publishers(
    workers: &mut [Worker],
    common: &super::options::Common,
    targets: &[SocketAddr],
    dial: &crate::proto::dial::Dial,
) -> anyhow::Result<Vec<(u64, u64)>> {
    let shares = plan::publisher_shares(common.publishers as u64, workers.len());
    for (w, &(_, count)) in workers.iter_mut().zip(&shares) {
        w.send(&ToWorker::Publishers {
            count: count as usize,
            targets: targets.to_vec(),
            proto: common.proto,
            tls: common.tls.clone(),
            auth: Box::new(dial.auth.clone()),
            timeout_ms: common.connect_timeout.as_millis() as u64,
        })
        .await?;
    }
    for (w, &(_, count)) in workers.iter_mut().zip(&shares) {
        match w.reply().await? {
            FromWorker::PublishersReady {
                error: Some(why), ..
            } => {
                anyhow::bail!("{}'s publishers could not connect: {why}", w.label)
            }
            FromWorker::PublishersReady { connected, .. } if connected as u64 == count => {}
            other => anyhow::bail!("{} answered Publishers with {other:?}", w.label),
        }
    }
    Ok(shares)
}

impl Agents {
    /// Measures every agent's clock again (an agent that does not answer keeps `None`), and
    /// records the clients each held from its workers' last progress.
    pub async fn finish(&mut self, workers: &[Worker]) {
        for w in workers.iter().filter(|w| w.host > 0) {
            let p = *w.progress.lock().expect("progress lock");
            self.reports[w.host - 1].clients += p.clients;
        }
        for (i, &addr) in self.addrs.iter().enumerate() {
            let silent = workers
                .iter()
                .any(|w| w.host == i + 1 && w.silent_for() >= super::pool::LOST_AFTER);
            if silent {
                // Lost: asking it again would only wait out the timeout.
                continue;
            }
            let measured = async {
                let mut s = Session::open(addr, &self.token).await?;
                s.clock().await
            };
            if let Ok(clock) = measured.await {
                self.reports[i].clock_offset_end_ns = Some(clock.offset_ns);
                self.reports[i].clock_uncertainty_end_ns = Some(clock.uncertainty_ns);
            }
        }
    }
}
