//! The WebSocket transport: the line protocol over WebSocket, one line per
//! text frame, under the same session loop as plain text and TLS
//! (`lines::run_session`), so the decoder, the token bucket, the outbox and
//! the hub see no difference.
//!
//! What is its own is framing (async-tungstenite, with buffers sized for
//! chat rather than its 128 KiB default), frames and messages capped at
//! `--max-line`, binary frames refused with an `ERR`, and a ping every
//! `Config::web_ping` (25 s by default) that keeps mobile connections open through NATs and
//! closes a peer that stopped answering. The HTTP in front of it, up to
//! the 101, is `server::web`.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::Sender;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use futures_lite::{future, AsyncRead, AsyncWrite, StreamExt};
use smol::lock::Mutex;
use smol::Timer;

use super::lines;
use super::transport::{Input, Output};
use super::Session;
use crate::config::Config;
use crate::ids::ClientId;
use crate::protocol::{encode, Line};
use crate::protocol::{ErrorCode, ServerLine};
use crate::server::hub_task::Event;

/// The WebSocket read buffer of each connection, allocated up front and
/// kept for its life, and the most read from the socket at once. Chat lines
/// are short; a longer frame (up to `--max-line`) grows the buffer to its
/// length. tungstenite's default of 128 KiB would dwarf the rest of an idle
/// session (BENCHMARKS.md, "Web client").
const READ_BUFFER: usize = 256;

/// How long the closing handshake may take.
const GOODBYE_TIME: Duration = Duration::from_secs(1);

/// Serves a chat session over a stream whose WebSocket upgrade has just
/// been answered; `rest` is what the peer sent after its request head.
pub(crate) async fn run<S>(session: &Session, stream: S, rest: Vec<u8>) -> String
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &session.config;
    let ws =
        WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(ws_config(config)))
            .await;
    let (sender, receiver) = ws.split();
    let sender = Arc::new(Mutex::new(sender));
    let input = WsInput {
        receiver,
        sender: Arc::clone(&sender),
        id: session.id,
        events: session.events.clone(),
        max_line: config.max_line,
        ping_every: config.web_ping,
        next_ping: Instant::now() + config.web_ping,
        awaiting_pong: false,
    };
    let output = WsOutput { sender };
    lines::run_session(session, input, output).await
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
    /// How often to ping (`--web-ping`).
    ping_every: Duration,
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
        self.next_ping = Instant::now() + self.ping_every;
        // While the writer holds the sender it is writing, which is life
        // enough; the next ping will ask.
        let Some(mut sender) = self.sender.try_lock() else {
            return Ok(());
        };
        let sent = future::or(
            async { Some(sender.send(Message::Ping(Default::default())).await) },
            async {
                Timer::after(self.ping_every).await;
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
