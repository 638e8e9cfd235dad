//! A session on the web listener: the HTTP request head read under a
//! deadline, the answer (an embedded file, an error status, or the
//! WebSocket upgrade on `/ws`), and then the WebSocket transport.
//!
//! The transport carries the same line protocol as the plain port, one line
//! per text frame, and sits under the same session code: the decoder, the
//! token bucket, the outbox and the hub see no difference. What is its own
//! is framing (async-tungstenite, with buffers sized for chat rather than
//! its 128 KiB default), frames capped at `--max-line`, binary frames
//! refused with an `ERR`, and a ping every [`PING_EVERY`] that keeps mobile
//! connections open through NATs and closes a peer that stopped answering.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_channel::Sender;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use smol::lock::Mutex;
use smol::{Async, Timer};

use super::{Input, Output};
use crate::config::Config;
use crate::hub::{encode, ClientId, Line};
use crate::protocol::{ErrorCode, ServerLine};
use crate::server::{Event, Ports};
use crate::web::http::{self, HeadReader, Progress, Route, Site, Status};

/// How long a peer has to send its whole request head, however slowly it
/// trickles: a connection that never finishes one holds a slot of
/// `--max-clients` for no longer than this.
const HEAD_TIME: Duration = Duration::from_secs(10);

/// How long writing a response (a file, an error, the 101) may take.
const RESPONSE_TIME: Duration = Duration::from_secs(10);

/// Bytes read at once while the head comes in.
const HEAD_CHUNK: usize = 2048;

/// The WebSocket read buffer of each connection, allocated up front and
/// kept for its life: a line is at most `--max-line` (1 KiB by default),
/// and the default 128 KiB would dwarf the rest of a session.
const READ_BUFFER: usize = 2048;

/// How often an idle WebSocket is pinged. Mobile carriers' NATs forget a
/// quiet connection after a minute or so; a ping every 25 s keeps it, and a
/// peer that has not answered one ping by the next is closed.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(25);

/// How long the closing handshake may take.
const GOODBYE_TIME: Duration = Duration::from_secs(1);

/// The socket, shared between the WebSocket and the session, which shuts
/// it down whatever state the WebSocket is left in.
struct Socket(Arc<Async<TcpStream>>);

impl Socket {
    fn from(stream: Arc<Async<TcpStream>>) -> Self {
        Self(stream)
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.0).poll_flush(cx)
    }

    /// Shuts down the sending side only, as the end of a response.
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.0.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

/// What a TLS web listener's sessions need for their handshakes.
#[cfg(feature = "tls")]
pub(super) type Acceptor = futures_rustls::TlsAcceptor;

/// Without TLS there are no handshakes: a type with no values.
#[cfg(not(feature = "tls"))]
pub(super) enum Acceptor {}

/// Serves a connection to a web listener: over TLS with `tls` (the
/// handshake within `config.tls_handshake_timeout`), then HTTP.
pub(super) async fn run(
    id: ClientId,
    peer: SocketAddr,
    stream: Arc<Async<TcpStream>>,
    tls: Option<Acceptor>,
    config: &Config,
    ports: Ports,
    events: &Sender<Event>,
) -> String {
    let _ = stream.get_ref().set_nodelay(true);
    let socket = Socket::from(Arc::clone(&stream));
    let reason = match tls {
        None => serve_http(id, peer, socket, false, config, ports, events).await,
        #[cfg(feature = "tls")]
        Some(acceptor) => {
            let accepted = future::or(async { Some(acceptor.accept(socket).await) }, async {
                Timer::after(config.tls_handshake_timeout).await;
                None
            })
            .await;
            match accepted {
                Some(Ok(tls)) => serve_http(id, peer, tls, true, config, ports, events).await,
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
    id: ClientId,
    peer: SocketAddr,
    mut stream: S,
    tls: bool,
    config: &Config,
    ports: Ports,
    events: &Sender<Event>,
) -> String
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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
    // Bans and limits go by the client's address: behind the trusted
    // proxy, the one it forwarded for.
    let peer = match (config.web_trust_proxy, request.forwarded_for) {
        (Some(proxy), Some(client)) if proxy == peer.ip() => SocketAddr::new(client, peer.port()),
        _ => peer,
    };
    let ws = WebSocketStream::from_partially_read(
        stream,
        reader.rest(),
        Role::Server,
        Some(ws_config(config)),
    )
    .await;
    let (sender, receiver) = ws.split();
    let sender = Arc::new(Mutex::new(sender));
    let input = WsInput {
        receiver,
        sender: Arc::clone(&sender),
        id,
        events: events.clone(),
        max_line: config.max_line,
        next_ping: Instant::now() + PING_EVERY,
        awaiting_pong: false,
    };
    super::serve(id, peer, input, WsOutput { sender }, config, ports, events).await
}

/// The WebSocket settings for a chat session: small buffers, frames and
/// messages no longer than a line.
fn ws_config(config: &Config) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // Every frame is written at once; the session writes a batch of
        // lines and waits for the socket, as the plain path does.
        .write_buffer_size(0)
        // A peer that does not read fills its outbox, which the hub
        // bounds; this only caps what is half-written to the socket.
        .max_write_buffer_size(64 * 1024 + 4 * config.max_line)
        .max_message_size(Some(config.max_line))
        .max_frame_size(Some(config.max_line))
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

/// The reading side of a WebSocket session, which also pings.
struct WsInput<S> {
    receiver: WebSocketReceiver<S>,
    /// For pings; the writer holds it while it writes a batch.
    sender: Arc<Mutex<WebSocketSender<S>>>,
    /// For errors about frames, sent through the hub like the session's
    /// own, so they keep their place among its answers.
    id: ClientId,
    events: Sender<Event>,
    max_line: usize,
    /// When the next ping is due.
    next_ping: Instant,
    /// A ping was sent and no pong has come since.
    awaiting_pong: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsInput<S> {
    /// Tells the peer, through the hub, what was wrong with a frame.
    async fn error(&self, code: ErrorCode, text: String) {
        let line = encode(&ServerLine::Err { code, text });
        let _ = self.events.send(Event::Reply { id: self.id, line }).await;
    }

    /// Pings the peer, or says it has not answered the last ping.
    async fn ping(&mut self) -> io::Result<()> {
        if self.awaiting_pong {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer to a WebSocket ping",
            ));
        }
        self.next_ping = Instant::now() + PING_EVERY;
        // While the writer holds the sender it is writing, which is life
        // enough; the next ping will ask.
        let Some(mut sender) = self.sender.try_lock() else {
            return Ok(());
        };
        let sent = future::or(
            async { Some(sender.send(Message::Ping(Default::default())).await) },
            async {
                Timer::after(PING_EVERY).await;
                None
            },
        )
        .await;
        match sent {
            Some(Ok(())) => {
                self.awaiting_pong = true;
                Ok(())
            }
            Some(Err(err)) => Err(ws_io(err)),
            None => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "a WebSocket ping could not be written",
            )),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Input for WsInput<S> {
    /// The next text frame as one line for the decoder (its text and a line
    /// end), or empty once the peer has closed.
    async fn read_some(&mut self) -> io::Result<Vec<u8>> {
        loop {
            let receiver = &mut self.receiver;
            let due = self.next_ping;
            let next = future::or(async { Some(receiver.next().await) }, async {
                Timer::at(due).await;
                None
            })
            .await;
            let message = match next {
                None => {
                    self.ping().await?;
                    continue;
                }
                Some(None) => return Ok(Vec::new()),
                Some(Some(Ok(message))) => message,
                Some(Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed))) => {
                    return Ok(Vec::new())
                }
                Some(Some(Err(WsError::Capacity(_)))) => {
                    // The frame is cut off: the stream cannot go on.
                    let text = format!(
                        "Lines are limited to {} bytes; a longer WebSocket message ends the connection.",
                        self.max_line
                    );
                    self.error(ErrorCode::LineTooLong, text).await;
                    return Err(io::Error::other("WebSocket message over --max-line"));
                }
                Some(Some(Err(WsError::Utf8(_)))) => {
                    let text = "That text frame was not valid UTF-8.".to_owned();
                    self.error(ErrorCode::BadUtf8, text).await;
                    return Err(io::Error::other("WebSocket text frame not UTF-8"));
                }
                Some(Some(Err(err))) => return Err(ws_io(err)),
            };
            match message {
                Message::Text(text) => {
                    let text = text.as_str();
                    let text = text
                        .strip_suffix("\r\n")
                        .or_else(|| text.strip_suffix('\n'))
                        .unwrap_or(text);
                    if text.contains(['\r', '\n']) {
                        let text = "One WebSocket message is one line; that one held a line \
                                    break and was dropped."
                            .to_owned();
                        self.error(ErrorCode::BadArgument, text).await;
                        continue;
                    }
                    let mut line = Vec::with_capacity(text.len() + 1);
                    line.extend_from_slice(text.as_bytes());
                    line.push(b'\n');
                    return Ok(line);
                }
                Message::Binary(_) => {
                    let text = "This server speaks text frames only; that binary frame was \
                                dropped."
                        .to_owned();
                    self.error(ErrorCode::BadArgument, text).await;
                }
                Message::Pong(_) => self.awaiting_pong = false,
                // Pings are answered by the framing; a close is answered
                // by it too, and ends the session.
                Message::Ping(_) | Message::Frame(_) => {}
                Message::Close(_) => return Ok(Vec::new()),
            }
        }
    }
}

/// The writing side: one text frame per line, without its CRLF.
struct WsOutput<S> {
    sender: Arc<Mutex<WebSocketSender<S>>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Output for WsOutput<S> {
    async fn write_batch(&mut self, batch: &mut VecDeque<Line>) -> io::Result<()> {
        let mut sender = self.sender.lock().await;
        while let Some(line) = batch.pop_front() {
            let bytes: &[u8] = &line;
            let bytes = bytes.strip_suffix(b"\r\n").unwrap_or(bytes);
            let text = String::from_utf8_lossy(bytes).into_owned();
            sender.send(Message::text(text)).await.map_err(ws_io)?;
        }
        Ok(())
    }

    /// The closing handshake, so the page knows the goodbye was complete.
    async fn finish(&mut self) {
        future::or(
            async {
                let _ = self.sender.lock().await.close(None).await;
            },
            async {
                Timer::after(GOODBYE_TIME).await;
            },
        )
        .await;
    }
}

/// A WebSocket error as an IO error, for the session's log.
fn ws_io(err: WsError) -> io::Error {
    match err {
        WsError::Io(err) => err,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::other(other.to_string()),
    }
}

/// Tells a newcomer on the plain web listener that the server is full, with
/// a 503, and closes.
pub(crate) async fn refuse_web(stream: Arc<Async<TcpStream>>) {
    let mut socket = Socket::from(Arc::clone(&stream));
    respond(&mut socket, &http::error_response(Status::Unavailable)).await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
}
