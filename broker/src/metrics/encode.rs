//! The broker's counters as Prometheus reads them: OpenMetrics text (what `prometheus-client`
//! writes) made from one [`StatsSnapshot`], so a scrape shows the same numbers STATS would.
//!
//! Every STATS field appears exactly once, named after it: `hubbub_<field>`, a counter's
//! samples ending in `_total` (`connections_total` is the counter `hubbub_connections`, whose
//! sample is `hubbub_connections_total`), the link's fields as `hubbub_upstream_<field>`. The
//! refusals are one counter with a `reason` label, so that `sum(hubbub_refusals_total)` is
//! everything the broker turned away. Histograms: none. What a histogram would be worth having
//! (delivery latency, queue depth per delivery) would cost work per delivery, which the broker
//! does not pay; what STATS counts has no distribution to show.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::stats::StatsSnapshot;

/// The content type of [`render`]'s text, which Prometheus asks for and parses.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What one scrape shows: the counters, and the setting one of them is read against.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub stats: StatsSnapshot,
    /// `--memory-budget`, in bytes: `hubbub_memory_held_bytes` is spent against it.
    pub memory_budget: u64,
}

/// The OpenMetrics text of `scrape`, ending with `# EOF`.
pub fn render(scrape: &Scrape) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape.clone()));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String does not fail");
    text
}

impl Collector for Scrape {
    fn encode(&self, mut out: DescriptorEncoder) -> fmt::Result {
        let s = &self.stats;
        let version = [("version", s.version.as_str())];
        let mut info = out.encode_descriptor(
            "hubbub_build_info",
            "The broker's version, as a label (the value is always 1)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64).encode(info.encode_family(&version)?)?;
        one(
            &mut out,
            "hubbub_uptime_seconds",
            "Time since the broker started",
            ConstGauge::new(s.uptime_ms as f64 / 1000.0),
        )?;
        gauge(
            &mut out,
            "hubbub_connections_current",
            "Open client connections",
            s.connections_current,
        )?;
        counter(
            &mut out,
            "hubbub_connections",
            "Connections accepted since start",
            s.connections_total,
        )?;
        let mut refusals = out.encode_descriptor(
            "hubbub_refusals",
            "Work the broker refused, by reason: max_connections (a connection past \
             --max-connections or out of file descriptors), memory_budget (a PUBLISH or a \
             growing frame while --memory-budget was spent), auth_failed (an AUTH with a \
             wrong user or password), permission_denied (a command without the permission, \
             or before AUTH)",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in [
            ("max_connections", s.connections_rejected),
            ("memory_budget", s.budget_refusals),
            ("auth_failed", s.auth_failures),
            ("permission_denied", s.permission_denials),
        ] {
            ConstCounter::new(n).encode(refusals.encode_family(&[("reason", reason)])?)?;
        }
        gauge(
            &mut out,
            "hubbub_channels",
            "Channels with at least one subscriber",
            s.channels,
        )?;
        gauge(
            &mut out,
            "hubbub_subscriptions",
            "Subscriptions: (connection, channel) pairs",
            s.subscriptions,
        )?;
        counter(
            &mut out,
            "hubbub_messages_in",
            "PUBLISH commands received",
            s.messages_in,
        )?;
        counter(
            &mut out,
            "hubbub_messages_out",
            "MESSAGE frames queued for subscribers (a publish to 100 subscribers counts 100)",
            s.messages_out,
        )?;
        counter(
            &mut out,
            "hubbub_bytes_in",
            "Bytes read from clients",
            s.bytes_in,
        )?;
        counter(
            &mut out,
            "hubbub_bytes_out",
            "Bytes of MESSAGE frames queued for clients",
            s.bytes_out,
        )?;
        counter(
            &mut out,
            "hubbub_slow_consumers",
            "Clients disconnected for output they left waiting (--max-pending, --pending-soft)",
            s.slow_consumers,
        )?;
        counter(
            &mut out,
            "hubbub_protocol_errors",
            "ERROR replies for bad input",
            s.protocol_errors,
        )?;
        counter(
            &mut out,
            "hubbub_accept_errors",
            "Failed accept calls (out of file descriptors, for one)",
            s.accept_errors,
        )?;
        counter(
            &mut out,
            "hubbub_deadlines_missed",
            "Connections closed for a first command or a frame that came too late",
            s.deadlines_missed,
        )?;
        counter(
            &mut out,
            "hubbub_tls_handshake_failures",
            "TLS handshakes that failed or did not finish in time: clients', and a leaf's link's",
            s.tls_handshake_failures,
        )?;
        gauge(
            &mut out,
            "hubbub_links",
            "Connections from brokers below that sent LINK",
            s.links,
        )?;
        counter(
            &mut out,
            "hubbub_link_superseded",
            "PUBLISHes discarded from a link superseded by a newer link of the same broker below",
            s.link_superseded,
        )?;
        gauge(
            &mut out,
            "hubbub_memory_held_bytes",
            "Bytes held in unfinished frames and output queues, as the memory budget counts them",
            s.memory_held,
        )?;
        gauge(
            &mut out,
            "hubbub_memory_budget_bytes",
            "The memory budget (--memory-budget) that hubbub_memory_held_bytes is spent against",
            self.memory_budget,
        )?;
        if let Some(u) = &s.upstream {
            let addr = [("upstream", u.addr.as_str())];
            let mut up = out.encode_descriptor(
                "hubbub_upstream_connected",
                "1 while the link to the upstream broker is up, 0 while it is down",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::from(u.connected)).encode(up.encode_family(&addr)?)?;
            counter(
                &mut out,
                "hubbub_upstream_connects",
                "Successful connections to the upstream broker (1 + reconnects)",
                u.connects,
            )?;
            counter(
                &mut out,
                "hubbub_upstream_forwarded",
                "PUBLISHes written whole to the upstream broker",
                u.forwarded,
            )?;
            counter(
                &mut out,
                "hubbub_upstream_received",
                "MESSAGEs from the upstream broker delivered here",
                u.received,
            )?;
            counter(
                &mut out,
                "hubbub_upstream_dropped",
                "Publishes not forwarded: the link was down, too far behind, or lost them",
                u.dropped,
            )?;
            counter(
                &mut out,
                "hubbub_upstream_refused",
                "Times the upstream broker refused this broker's AUTH or LINK",
                u.refused,
            )?;
        }
        Ok(())
    }
}

/// One metric without labels.
fn one(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> fmt::Result {
    let encoder = out.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(encoder)
}

fn counter(out: &mut DescriptorEncoder, name: &str, help: &str, n: u64) -> fmt::Result {
    one(out, name, help, ConstCounter::new(n))
}

/// A gauge of a count: OpenMetrics gauges are signed, and no count of the broker's comes near
/// 2^63.
fn gauge(out: &mut DescriptorEncoder, name: &str, help: &str, n: u64) -> fmt::Result {
    one(
        out,
        name,
        help,
        ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::UpstreamSnapshot;

    /// A snapshot whose every field holds a different number, so that a field shown under the
    /// wrong name cannot go unseen.
    fn distinct() -> Scrape {
        Scrape {
            stats: StatsSnapshot {
                version: "9.8.7".into(),
                uptime_ms: 1_500,
                connections_current: 1,
                connections_total: 2,
                connections_rejected: 3,
                channels: 4,
                subscriptions: 5,
                messages_in: 6,
                messages_out: 7,
                bytes_in: 8,
                bytes_out: 9,
                slow_consumers: 10,
                protocol_errors: 11,
                accept_errors: 12,
                links: 13,
                link_superseded: 21,
                budget_refusals: 14,
                deadlines_missed: 15,
                memory_held: 16,
                auth_failures: 18,
                permission_denials: 19,
                tls_handshake_failures: 20,
                upstream: None,
            },
            memory_budget: 17,
        }
    }

    /// The samples of `text` (comment lines left out), in order.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn every_stats_field_under_its_own_name() {
        assert_eq!(
            samples(&render(&distinct())),
            [
                r#"hubbub_build_info{version="9.8.7"} 1"#,
                "hubbub_uptime_seconds 1.5",
                "hubbub_connections_current 1",
                "hubbub_connections_total 2",
                r#"hubbub_refusals_total{reason="max_connections"} 3"#,
                r#"hubbub_refusals_total{reason="memory_budget"} 14"#,
                r#"hubbub_refusals_total{reason="auth_failed"} 18"#,
                r#"hubbub_refusals_total{reason="permission_denied"} 19"#,
                "hubbub_channels 4",
                "hubbub_subscriptions 5",
                "hubbub_messages_in_total 6",
                "hubbub_messages_out_total 7",
                "hubbub_bytes_in_total 8",
                "hubbub_bytes_out_total 9",
                "hubbub_slow_consumers_total 10",
                "hubbub_protocol_errors_total 11",
                "hubbub_accept_errors_total 12",
                "hubbub_deadlines_missed_total 15",
                "hubbub_tls_handshake_failures_total 20",
                "hubbub_links 13",
                "hubbub_link_superseded_total 21",
                "hubbub_memory_held_bytes 16",
                "hubbub_memory_budget_bytes 17",
            ]
        );
    }

    #[test]
    fn typed_described_and_ended() {
        let text = render(&distinct());
        assert!(
            text.contains("# TYPE hubbub_messages_in counter\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE hubbub_channels gauge\n"), "{text}");
        assert!(
            text.contains("# HELP hubbub_messages_in PUBLISH commands received"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_leaf_shows_its_link() {
        let mut scrape = distinct();
        scrape.stats.upstream = Some(UpstreamSnapshot {
            addr: "127.0.0.1:4300".into(),
            connected: true,
            connects: 21,
            forwarded: 22,
            received: 23,
            dropped: 24,
            refused: 25,
        });
        let text = render(&scrape);
        let tail: Vec<&str> = samples(&text).into_iter().skip(23).collect();
        assert_eq!(
            tail,
            [
                r#"hubbub_upstream_connected{upstream="127.0.0.1:4300"} 1"#,
                "hubbub_upstream_connects_total 21",
                "hubbub_upstream_forwarded_total 22",
                "hubbub_upstream_received_total 23",
                "hubbub_upstream_dropped_total 24",
                "hubbub_upstream_refused_total 25",
            ]
        );
    }
}
