//! The `--metrics` endpoint, scraped over a real socket by an HTTP client (hyper's) and read
//! with a Prometheus text parser (prometheus-parse): exact counters after a known amount of
//! work, refusals by reason, a leaf's link, the readiness and health pages, unknown paths, and
//! the endpoint ending with the broker.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::{broker_with, error, message, publish_cmd, subscribe_cmd, wait_for_stats};
use common::{BrokerProcess, Config, Raw, RunningBroker, TIMEOUT};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

/// A broker on a free port of 127.0.0.1 with its metrics on another.
async fn metrics_broker(config: Config) -> (RunningBroker, SocketAddr) {
    let broker = broker_with(Config {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..config
    })
    .await;
    let metrics = broker.metrics.expect("--metrics is bound at start");
    (broker, metrics)
}

/// One HTTP response, read whole.
#[derive(Debug)]
struct Page {
    status: StatusCode,
    content_type: String,
    allow: Option<String>,
    body: String,
}

/// Sends `method path` to `addr` over a connection of its own and reads the whole response.
async fn http(addr: SocketAddr, method: Method, path: &str) -> Page {
    let exchange = async {
        let stream = TcpStream::connect(addr).await.expect("connect to /metrics");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.expect("a response");
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &hyper::header::HeaderValue| v.to_str().unwrap().to_string())
        };
        let (status, content_type) = (response.status(), header(hyper::header::CONTENT_TYPE));
        let allow = header(hyper::header::ALLOW);
        let body = response.into_body().collect().await.expect("the body");
        Page {
            status,
            content_type: content_type.unwrap_or_default(),
            allow,
            body: String::from_utf8(body.to_bytes().to_vec()).expect("UTF-8"),
        }
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("no response within the timeout")
}

/// Scrapes `/metrics`, checks it is the OpenMetrics text, and parses it into
/// `name{label="value",…}` → value (labels sorted by name). Every sample must parse, and no
/// name may appear twice.
async fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let page = http(addr, Method::GET, "/metrics").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert_eq!(page.content_type, hubbub::metrics::CONTENT_TYPE);
    assert!(page.body.ends_with("# EOF\n"), "{}", page.body);
    let lines = page.body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("the scrape parses");
    let samples = page.body.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(
        parsed.samples.len(),
        samples,
        "a sample did not parse:\n{}",
        page.body
    );
    let mut out = BTreeMap::new();
    for sample in parsed.samples {
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            other => panic!("{} is not a plain number: {other:?}", sample.metric),
        };
        let labels: BTreeMap<&String, &String> = sample.labels.iter().collect();
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let key = match labels.is_empty() {
            true => sample.metric.clone(),
            false => format!("{}{{{}}}", sample.metric, labels.join(",")),
        };
        assert!(out.insert(key.clone(), value).is_none(), "{key} twice");
    }
    out
}

/// The samples every broker shows, with their values, as `(key, value)`.
fn expected(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
}

/// Three subscribers and a publisher who sends four messages and one bad command: every
/// counter is exactly what that work makes it, bytes included.
#[tokio::test]
async fn a_scrape_counts_exactly_the_work_done() {
    const SUBSCRIBERS: usize = 3;
    const MESSAGES: u64 = 4;
    let (broker, metrics) = metrics_broker(Config {
        memory_budget: 64 << 20,
        ..Default::default()
    })
    .await;
    let mut bytes_in = 0;
    let mut subs = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut s = Raw::connect(broker.addr).await;
        s.subscribe("news", 1).await;
        bytes_in += subscribe_cmd("news").len() + 1;
        subs.push(s);
    }
    let mut publisher = Raw::connect(broker.addr).await;
    for i in 0..MESSAGES {
        publisher.publish("news", &json!(i)).await;
        bytes_in += publish_cmd("news", &json!(i)).len() + 1;
    }
    let nope = r#"{"command":"NOPE"}"#;
    publisher.send_line(nope).await;
    publisher.expect(error(r#"unknown command "NOPE""#)).await;
    publisher.ping().await;
    bytes_in += nope.len() + 1 + r#"{"command":"PING"}"#.len() + 1;
    let mut bytes_out = 0;
    for s in &mut subs {
        for i in 0..MESSAGES {
            let line = s.line().await;
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&line).unwrap(),
                message("news", json!(i))
            );
            bytes_out += line.len() + 1;
        }
    }

    let mut got = scrape(metrics).await;
    let uptime = got
        .remove("hubbub_uptime_seconds")
        .expect("uptime is shown");
    assert!(uptime >= 0.0, "{uptime}");
    let version = format!(
        r#"hubbub_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    let subscribers = SUBSCRIBERS as f64;
    let messages = MESSAGES as f64;
    assert_eq!(
        got,
        expected(&[
            (&version, 1.0),
            ("hubbub_connections_current", subscribers + 1.0),
            ("hubbub_connections_total", subscribers + 1.0),
            (r#"hubbub_refusals_total{reason="max_connections"}"#, 0.0),
            (r#"hubbub_refusals_total{reason="memory_budget"}"#, 0.0),
            (r#"hubbub_refusals_total{reason="auth_failed"}"#, 0.0),
            (r#"hubbub_refusals_total{reason="permission_denied"}"#, 0.0),
            ("hubbub_channels", 1.0),
            ("hubbub_subscriptions", subscribers),
            ("hubbub_messages_in_total", messages),
            ("hubbub_messages_out_total", subscribers * messages),
            ("hubbub_bytes_in_total", bytes_in as f64),
            ("hubbub_bytes_out_total", bytes_out as f64),
            ("hubbub_slow_consumers_total", 0.0),
            ("hubbub_protocol_errors_total", 1.0),
            ("hubbub_accept_errors_total", 0.0),
            ("hubbub_deadlines_missed_total", 0.0),
            ("hubbub_tls_handshake_failures_total", 0.0),
            ("hubbub_links", 0.0),
            ("hubbub_link_superseded_total", 0.0),
            ("hubbub_memory_held_bytes", 0.0),
            ("hubbub_memory_budget_bytes", (64 << 20) as f64),
        ])
    );
    broker.stop().await;
}

/// A connection past `--max-connections` is counted under its reason.
#[tokio::test]
async fn refusals_are_counted_by_reason() {
    let (broker, metrics) = metrics_broker(Config {
        max_connections: Some(1),
        ..Default::default()
    })
    .await;
    let mut first = Raw::connect(broker.addr).await;
    first.ping().await;
    let mut refused = Raw::connect(broker.addr).await;
    refused.expect(error("too many connections")).await;
    refused.expect_closed().await;

    let got = scrape(metrics).await;
    assert_eq!(
        got[r#"hubbub_refusals_total{reason="max_connections"}"#],
        1.0
    );
    assert_eq!(got[r#"hubbub_refusals_total{reason="memory_budget"}"#], 0.0);
    assert_eq!(got["hubbub_connections_current"], 1.0);
    assert_eq!(got["hubbub_connections_total"], 1.0);
    broker.stop().await;
}

#[tokio::test]
async fn ready_health_and_what_is_not_there() {
    let (broker, metrics) = metrics_broker(Config::default()).await;
    let ready = http(metrics, Method::GET, "/ready").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (StatusCode::OK, "ready\n")
    );
    assert_eq!(ready.content_type, "text/plain; charset=utf-8");
    let health = http(metrics, Method::GET, "/health").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "ok\n")
    );

    for path in ["/", "/nope", "/metrics/extra"] {
        let page = http(metrics, Method::GET, path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}: {page:?}");
        assert_eq!(
            page.body,
            "not found: the pages are /metrics, /ready and /health\n"
        );
    }
    let post = http(metrics, Method::POST, "/metrics").await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.allow.as_deref(), Some("GET, HEAD"));
    let head = http(metrics, Method::HEAD, "/metrics").await;
    assert_eq!((head.status, head.body.as_str()), (StatusCode::OK, ""));
    broker.stop().await;
}

/// A leaf shows its link's state and counters, and says in /ready whether the link is up,
/// ready either way.
#[tokio::test]
async fn a_leaf_shows_its_link_up_and_down() {
    let hub = broker_with(Config::default()).await;
    let hub_addr = hub.addr;
    let (leaf, metrics) = metrics_broker(Config {
        upstream: Some(hub.addr.into()),
        ..Default::default()
    })
    .await;
    wait_for_stats(leaf.addr, |s| s["upstream"]["connected"] == true).await;
    let connected = format!(r#"hubbub_upstream_connected{{upstream="{hub_addr}"}}"#);

    let up = scrape(metrics).await;
    assert_eq!(up[&connected], 1.0);
    assert_eq!(up["hubbub_upstream_connects_total"], 1.0);
    assert_eq!(up["hubbub_upstream_forwarded_total"], 0.0);
    assert_eq!(up["hubbub_upstream_dropped_total"], 0.0);
    let ready = http(metrics, Method::GET, "/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body, format!("ready\nupstream {hub_addr} up\n"));

    hub.stop().await;
    wait_for_stats(leaf.addr, |s| s["upstream"]["connected"] == false).await;
    let down = scrape(metrics).await;
    assert_eq!(down[&connected], 0.0);
    let ready = http(metrics, Method::GET, "/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body, format!("ready\nupstream {hub_addr} down\n"));
    leaf.stop().await;
}

#[tokio::test]
async fn the_endpoint_ends_with_the_broker() {
    let (broker, metrics) = metrics_broker(Config::default()).await;
    assert_eq!(
        http(metrics, Method::GET, "/health").await.status,
        StatusCode::OK
    );
    broker.stop().await;
    let refused = TcpStream::connect(metrics).await;
    assert!(
        refused.is_err(),
        "the metrics port still accepts: {refused:?}"
    );
}

/// The `broker` program: `--metrics` on loopback is served quietly and ready as soon as the
/// broker's ready file is written; beyond loopback it is warned about at start.
#[tokio::test]
async fn the_program_serves_metrics_and_warns_beyond_loopback() {
    const WARNING: &str = "the metrics endpoint listens beyond loopback";
    let quiet = BrokerProcess::spawn(&["--metrics", "127.0.0.1:0"]);
    quiet.wait_for_log("hubbub listening").await;
    assert!(!quiet.logged(WARNING), "{}", quiet.log());
    let addr = metrics_addr(&quiet);
    assert_eq!(http(addr, Method::GET, "/ready").await.body, "ready\n");
    assert_eq!(scrape(addr).await["hubbub_connections_current"], 0.0);

    let open = BrokerProcess::spawn(&["--metrics", "0.0.0.0:0"]);
    open.wait_for_log(WARNING).await;
}

/// Where a broker program serves its metrics, from its log ("metrics on http://ADDR/metrics").
fn metrics_addr(broker: &BrokerProcess) -> SocketAddr {
    let log = broker.log();
    let line = log
        .lines()
        .find(|l| l.contains("metrics on http://"))
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
    let rest = &line[line.find("http://").unwrap() + "http://".len()..];
    rest[..rest.find("/metrics").unwrap()]
        .parse()
        .expect("an address")
}
