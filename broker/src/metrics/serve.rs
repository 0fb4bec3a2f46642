//! The metrics endpoint's I/O: its listener, and HTTP/1 through hyper. What each request is
//! answered with is decided in `routes` and `encode`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::metrics::encode::{self, Scrape};
use crate::metrics::routes::{self, Page, Reply};
use crate::shared::Shared;

/// Connections served at once. A few are expected (a Prometheus or two, an operator's curl);
/// past these, a scraper waits in the kernel's accept queue until one ends.
const MOST_AT_ONCE: usize = 16;
/// How long one connection may last, from accept to the end of its reply (one request per
/// connection): a client that never sends its request, or never reads the reply, gives its
/// place up after this.
const CONNECTION_TIME: Duration = Duration::from_secs(10);
/// Pause after a failed accept, so that a lasting failure (out of descriptors) is not spun on.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Binds the metrics listener on `addr` (port 0 picks a free port). Call it inside a tokio
/// runtime. Warns when the address is not a loopback one: anyone who reaches it reads the
/// counters, and a leaf's upstream address, without a credential.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        warn!(
            addr = %bound,
            "the metrics endpoint listens beyond loopback: anyone who can reach {bound} reads \
             the broker's counters without a credential; bind it to 127.0.0.1 or firewall it"
        );
    }
    info!(addr = %bound, "metrics on http://{bound}/metrics");
    Ok(listener)
}

/// Serves `listener` until `stop` is cancelled. `shutdown` is the broker's own token: from the
/// moment it is cancelled `/ready` answers 503, for as long as the broker drains its clients;
/// the broker cancels `stop` once it has.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    stop: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let places = Arc::new(Semaphore::new(MOST_AT_ONCE));
    loop {
        let place = tokio::select! {
            _ = stop.cancelled() => break,
            place = places.clone().acquire_owned() => place.expect("the semaphore stays open"),
        };
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                debug!(error = %e, "metrics: accept failed");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_PAUSE) => continue,
                }
            }
        };
        let (shared, shutdown, stop) = (shared.clone(), shutdown.clone(), stop.clone());
        tracker.spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = answer(&request, &shared, shutdown.is_cancelled());
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = stop.cancelled() => {}
                served = tokio::time::timeout(CONNECTION_TIME, connection) => match served {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!(error = %e, "metrics: connection failed"),
                    Err(_) => debug!("metrics: connection took too long; closed"),
                },
            }
            drop(place);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// The HTTP response to `request`, read from the broker's counters as they are now.
fn answer(
    request: &Request<Incoming>,
    shared: &Shared,
    shutting_down: bool,
) -> Response<Full<Bytes>> {
    let reply = match routes::route(request.method(), request.uri().path()) {
        Ok(Page::Metrics) => Reply {
            status: StatusCode::OK,
            content_type: encode::CONTENT_TYPE,
            body: encode::render(&Scrape {
                stats: shared.snapshot(),
                memory_budget: shared.pending.budget.limit() as u64,
            }),
        },
        Ok(Page::Ready) => {
            let upstream = shared.upstream.as_ref().map(|u| u.snapshot());
            routes::ready(shutting_down, upstream.as_ref())
        }
        Ok(Page::Health) => routes::health(),
        Err(refused) => refused,
    };
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    if reply.status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    response
}
