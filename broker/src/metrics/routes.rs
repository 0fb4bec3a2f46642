//! What the metrics endpoint answers, as pure functions of the request and of the broker's
//! state at that moment: `serve` does the I/O and nothing else.

use hyper::{Method, StatusCode};

use crate::stats::UpstreamSnapshot;

/// The pages there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The counters, in the OpenMetrics text format.
    Metrics,
    /// Whether the broker takes clients: 200 from the moment it listens, 503 once it is
    /// shutting down (so a load balancer sends nobody new to it while it drains). A leaf says
    /// in the body whether its link is up, but answers 200 either way: its clients are served
    /// while the link is down, and what they publish is delivered below it.
    Ready,
    /// That the process answers: 200 as long as it does, shutting down or not, so a liveness
    /// check does not kill a broker that is draining.
    Health,
}

/// An answer, before it is HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Which page `method` and `path` ask for, or the error status: 404 for a path that is none of
/// them, 405 for a method other than GET or HEAD (the caller adds `Allow: GET, HEAD`).
pub fn route(method: &Method, path: &str) -> Result<Page, Reply> {
    let page = match path {
        "/metrics" => Page::Metrics,
        "/ready" => Page::Ready,
        "/health" => Page::Health,
        _ => {
            return Err(text(
                StatusCode::NOT_FOUND,
                "not found: the pages are /metrics, /ready and /health\n",
            ))
        }
    };
    if method == Method::GET || method == Method::HEAD {
        Ok(page)
    } else {
        Err(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET or HEAD\n",
        ))
    }
}

/// The answer to `/ready`.
pub fn ready(shutting_down: bool, upstream: Option<&UpstreamSnapshot>) -> Reply {
    if shutting_down {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    let mut body = String::from("ready\n");
    if let Some(u) = upstream {
        let state = if u.connected { "up" } else { "down" };
        body.push_str(&format!("upstream {} {state}\n", u.addr));
    }
    text(StatusCode::OK, &body)
}

/// The answer to `/health`.
pub fn health() -> Reply {
    text(StatusCode::OK, "ok\n")
}

fn text(status: StatusCode, body: &str) -> Reply {
    Reply {
        status,
        content_type: TEXT,
        body: body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(&Method::GET, "/metrics"), Ok(Page::Metrics));
        assert_eq!(route(&Method::HEAD, "/ready"), Ok(Page::Ready));
        assert_eq!(route(&Method::GET, "/health"), Ok(Page::Health));
        assert_eq!(
            route(&Method::GET, "/metrics/").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&Method::GET, "/").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&Method::POST, "/metrics").unwrap_err().status,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn ready_until_shutting_down() {
        assert_eq!(ready(false, None).status, StatusCode::OK);
        assert_eq!(ready(false, None).body, "ready\n");
        let stopping = ready(true, None);
        assert_eq!(
            (stopping.status, stopping.body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
        );
    }

    #[test]
    fn a_leaf_is_ready_with_its_link_down_and_says_so() {
        let mut link = UpstreamSnapshot {
            addr: "127.0.0.1:4300".into(),
            connected: true,
            ..Default::default()
        };
        assert_eq!(
            ready(false, Some(&link)).body,
            "ready\nupstream 127.0.0.1:4300 up\n"
        );
        link.connected = false;
        let down = ready(false, Some(&link));
        assert_eq!(
            (down.status, down.body.as_str()),
            (StatusCode::OK, "ready\nupstream 127.0.0.1:4300 down\n")
        );
        assert_eq!(
            ready(true, Some(&link)).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
