//! The web listener's connections: the TLS handshake on the HTTPS port, the
//! request head read under a deadline, and the answer: an embedded file, an
//! error status, or the WebSocket upgrade on `/ws`, after which the
//! connection is a chat session over the WebSocket transport
//! (`session::ws`).
//!
//! What to answer is decided in the pure [`crate::web::http`]; this file
//! owns the clock and the socket. Every step is bounded in time, so a peer
//! that trickles or stalls holds its slot of `--max-clients` briefly.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::{Async, Timer};

use super::per_address::{AddressSlot, Refusal};
use super::session::transport::Socket;
use super::session::{ws, Session};
use crate::web::http::{self, HeadReader, Progress, Route, Site, Status};

/// How long a peer has to send its whole request head, however slowly it
/// trickles: a connection that never finishes one holds a slot of
/// `--max-clients` for no longer than this.
const HEAD_TIME: Duration = Duration::from_secs(10);

/// How long writing a response (a file, an error, the 101) may take.
const RESPONSE_TIME: Duration = Duration::from_secs(10);

/// Bytes read at once while the head comes in.
const HEAD_CHUNK: usize = 2048;

/// What an HTTPS web listener's connections need for their handshakes.
#[cfg(feature = "tls")]
pub(super) type Acceptor = futures_rustls::TlsAcceptor;

/// Without TLS there are no handshakes: a type with no values.
#[cfg(not(feature = "tls"))]
pub(super) enum Acceptor {}

/// A connection accepted on a web listener.
pub(super) struct Newcomer {
    pub(super) stream: Arc<Async<TcpStream>>,
    /// The handshake, on the HTTPS listener.
    pub(super) tls: Option<Acceptor>,
    /// Its place in the per-address table: counted as open, paying the
    /// connection rate only if it becomes a chat session.
    pub(super) slot: AddressSlot,
}

/// Serves a connection to a web listener: over TLS if it came to the HTTPS
/// one (the handshake within `config.tls_handshake_timeout`), then HTTP.
/// Returns why it ended, for the log.
pub(super) async fn run(session: &Session, newcomer: Newcomer) -> String {
    let Newcomer {
        stream,
        tls,
        mut slot,
    } = newcomer;
    let slot = &mut slot;
    let config = &session.config;
    let _ = stream.get_ref().set_nodelay(true);
    let socket = Socket(Arc::clone(&stream));
    let reason = match tls {
        None => serve_http(session, slot, socket, false).await,
        #[cfg(feature = "tls")]
        Some(acceptor) => {
            let accepted = future::or(async { Some(acceptor.accept(socket).await) }, async {
                Timer::after(config.tls_handshake_timeout).await;
                None
            })
            .await;
            match accepted {
                Some(Ok(tls)) => serve_http(session, slot, tls, true).await,
                Some(Err(err)) => format!("TLS handshake failed: {err}"),
                None => "TLS handshake timed out".into(),
            }
        }
        #[cfg(not(feature = "tls"))]
        Some(never) => match never {},
    };
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
    reason
}

/// Reads one request head and answers it; after an upgrade, serves the
/// chat session until it ends. Returns why it ended, for the log.
async fn serve_http<S>(
    session: &Session,
    slot: &mut AddressSlot,
    mut stream: S,
    tls: bool,
) -> String
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &session.config;
    let deadline = Instant::now() + HEAD_TIME;
    let mut reader = HeadReader::new(http::HEAD_LIMIT);
    loop {
        let mut buf = [0u8; HEAD_CHUNK];
        let read = future::or(async { Some(stream.read(&mut buf).await) }, async {
            Timer::at(deadline).await;
            None
        })
        .await;
        let n = match read {
            None => return "HTTP head timed out".into(),
            Some(Ok(0)) => return "connection closed before an HTTP head".into(),
            Some(Ok(n)) => n,
            Some(Err(err)) => return format!("read failed: {err}"),
        };
        match reader.feed(buf.get(..n).unwrap_or_default()) {
            Progress::More => continue,
            Progress::Done => break,
            Progress::TooLarge => {
                respond(&mut stream, &http::error_response(Status::HeadTooLarge)).await;
                return "HTTP head too large: 431".into();
            }
            Progress::NotHttp => return "not HTTP".into(),
        }
    }
    let request = match http::parse(reader.head()) {
        Ok(request) => request,
        Err(status) => {
            respond(&mut stream, &http::error_response(status)).await;
            return format!("bad HTTP request: {}", status.code());
        }
    };
    // Operations: the metrics, when the operator serves them here too.
    if config.web_metrics
        && request.path == "/metrics"
        && matches!(request.method.as_str(), "GET" | "HEAD")
    {
        let head_only = request.method == "HEAD";
        respond(&mut stream, &super::metrics::scrape_response(head_only)).await;
        return format!("HTTP {} /metrics: 200", request.method);
    }
    let site = Site {
        tls,
        origins: &config.web_origins,
    };
    let response = match http::route(&request, site) {
        Route::Respond { code, response } => {
            respond(&mut stream, &response).await;
            return format!("HTTP {} {}: {code}", request.method, request.path);
        }
        Route::Upgrade { response } => response,
    };
    // Bans and limits go by the client's address: behind the trusted
    // proxy, the one it forwarded for.
    let peer = match (config.web_trust_proxy, request.forwarded_for) {
        (Some(proxy), Some(client)) if proxy == session.peer.ip() => {
            SocketAddr::new(client, session.peer.port())
        }
        _ => session.peer,
    };
    // Only now is it a chat session: it pays the connection rate (and,
    // through the proxy, takes its client's place), or is refused as a
    // newcomer on the chat ports would be.
    if let Err(refused) = slot.become_session(peer.ip()) {
        crate::metrics::refused(match refused {
            Refusal::TooMany => crate::metrics::Refusal::TooManyConnections,
            Refusal::TooFast(_) => crate::metrics::Refusal::ConnectThrottled,
        });
        respond(&mut stream, &http::error_response(Status::TooManyRequests)).await;
        return format!("WebSocket refused by the per-address limit: {refused:?}");
    }
    let wrote = future::or(
        async { stream.write_all(&response).await.is_ok() && stream.flush().await.is_ok() },
        async {
            Timer::after(RESPONSE_TIME).await;
            false
        },
    )
    .await;
    if !wrote {
        return "WebSocket upgrade not written".into();
    }
    // The head is done with: nothing of it stays with an idle session.
    let rest = reader.rest();
    drop((request, response));
    let session = Session {
        peer,
        ..session.clone()
    };
    ws::run(&session, stream, rest).await
}

/// Writes a whole response and closes the stream, within
/// [`RESPONSE_TIME`].
async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, response: &[u8]) {
    future::or(
        async {
            if stream.write_all(response).await.is_ok() {
                let _ = stream.flush().await;
                let _ = stream.close().await;
            }
        },
        async {
            Timer::after(RESPONSE_TIME).await;
        },
    )
    .await;
}

/// Tells a newcomer on the plain web listener it is turned away (503: the
/// server is full; 403: its address is banned), and closes.
pub(super) async fn refuse(stream: Arc<Async<TcpStream>>, status: Status) {
    let mut socket = Socket(Arc::clone(&stream));
    respond(&mut socket, &http::error_response(status)).await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
}
