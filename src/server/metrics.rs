//! The metrics listener (`natter serve --metrics-bind ADDR`): a minimal
//! HTTP/1.1 server that answers `GET /metrics` with
//! [`crate::metrics::render`] and anything else with an error status, one
//! request per connection.
//!
//! It faces scrapers, not chat clients, but is bounded all the same: a
//! request head of at most [`HEAD_MAX`] bytes read within [`DEADLINE`], and
//! at most [`MAX_SCRAPERS`] connections at once (more are closed at once).
//!
//! The web listener answers `GET /metrics` too with `--web-metrics`, with
//! [`scrape_response`], under its own bounds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::Timer;

/// The most bytes of a request head; past it the request gets 431.
pub const HEAD_MAX: usize = 8 * 1024;

/// How long a connection may take to send its head and read the answer.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Connections served at once; a scraper needs one.
pub const MAX_SCRAPERS: usize = 16;

/// Serves `GET /metrics` on `listener` until the future is dropped. Each
/// connection runs on smol's global executor; accept errors back off.
pub async fn serve_metrics(listener: TcpListener) {
    let busy = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(%err, "metrics accept failed; pausing for 100 ms");
                Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        if busy.fetch_add(1, Ordering::Relaxed) >= MAX_SCRAPERS {
            busy.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(%peer, "metrics: too many connections; closed");
            continue;
        }
        let busy = Arc::clone(&busy);
        smol::spawn(async move {
            let answered = future::or(
                async {
                    answer(stream, peer).await;
                    true
                },
                async {
                    Timer::after(DEADLINE).await;
                    false
                },
            )
            .await;
            if !answered {
                tracing::debug!(%peer, "metrics: request timed out");
            }
            busy.fetch_sub(1, Ordering::Relaxed);
        })
        .detach();
    }
}

/// Reads one request head and writes the answer.
async fn answer(mut stream: TcpStream, peer: SocketAddr) {
    let (status, content_type, body) = match read_head(&mut stream).await {
        Head::Metrics => (
            "200 OK",
            crate::metrics::CONTENT_TYPE,
            crate::metrics::render(),
        ),
        Head::NotFound => ("404 Not Found", TEXT, "Only /metrics is here.\n".into()),
        Head::NotGet => ("405 Method Not Allowed", TEXT, "Use GET.\n".into()),
        Head::TooLarge => (
            "431 Request Header Fields Too Large",
            TEXT,
            "Request head too large.\n".into(),
        ),
        Head::Bad => ("400 Bad Request", TEXT, "Not an HTTP request.\n".into()),
        Head::Gone => return,
    };
    tracing::debug!(%peer, status, "metrics request");
    let _ = stream
        .write_all(&response(status, content_type, &body, false))
        .await;
    let _ = stream.flush().await;
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// A whole HTTP/1.1 response that closes the connection; `head_only` (for
/// `HEAD`) leaves the body out but keeps its length.
fn response(status: &str, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        response.extend_from_slice(body.as_bytes());
    }
    response
}

/// The answer to `GET /metrics` (or `HEAD`) on another HTTP listener, the
/// web client's with `--web-metrics`: the same text as here.
pub fn scrape_response(head_only: bool) -> Vec<u8> {
    response(
        "200 OK",
        crate::metrics::CONTENT_TYPE,
        &crate::metrics::render(),
        head_only,
    )
}

/// The `Content-Type` of the error answers.
const TEXT: &str = "text/plain; charset=utf-8";

/// What a request head asked for.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    Metrics,
    NotFound,
    NotGet,
    TooLarge,
    Bad,
    /// The peer closed or failed before a whole head: nothing to answer.
    Gone,
}

/// Reads until a whole head (at most [`HEAD_MAX`] bytes) has arrived.
async fn read_head(stream: &mut TcpStream) -> Head {
    let mut buf = vec![0; HEAD_MAX];
    let mut filled = 0;
    loop {
        let Some(free) = buf.get_mut(filled..).filter(|free| !free.is_empty()) else {
            return Head::TooLarge;
        };
        match stream.read(free).await {
            Ok(0) | Err(_) => return Head::Gone,
            Ok(n) => filled += n,
        }
        match parse(buf.get(..filled).unwrap_or_default()) {
            Some(head) => return head,
            None => continue,
        }
    }
}

/// Judges a head, or `None` while it is incomplete.
fn parse(bytes: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::TooManyHeaders) => Some(Head::TooLarge),
        Err(_) => Some(Head::Bad),
        Ok(httparse::Status::Complete(_)) => {
            let path = request.path.unwrap_or_default();
            let path = path.split('?').next().unwrap_or_default();
            Some(match (request.method, path) {
                (Some("GET"), "/metrics") => Head::Metrics,
                (Some("GET"), _) => Head::NotFound,
                _ => Head::NotGet,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, Head};

    /// Only a whole `GET /metrics` head is a scrape; the rest is refused.
    #[test]
    fn heads_are_judged() {
        let get = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(parse(get), Some(Head::Metrics));
        assert_eq!(parse(&get[..20]), None);
        assert_eq!(
            parse(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n"),
            Some(Head::Metrics)
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Some(Head::NotFound));
        assert_eq!(parse(b"POST /metrics HTTP/1.1\r\n\r\n"), Some(Head::NotGet));
        assert_eq!(parse(b"\x16\x03\x01\x00"), Some(Head::Bad));
    }
}
