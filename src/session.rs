//! One connection: a reader that turns bytes into commands for the hub, and a
//! writer that drains the connection's outbox into the socket.
//!
//! The reader answers what it can on its own (telnet negotiation, lines too
//! long, bad UTF-8, unknown commands) and sends the rest to the hub. Nothing
//! here waits on another client: the only shared things are the hub's inbox
//! (bounded, so a flood slows its sender) and this connection's own outbox.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::Sender;
use futures_lite::future;
use smol::{Async, Timer};

use crate::config::Config;
use crate::decoder::{Frame, LineDecoder, NotChat};
use crate::hub::{encode, ClientId, Line};
use crate::protocol::{parse_command, Command, CommandError, ErrorCode, ServerLine};
use crate::server::{Event, OutboxReader, Ports, SessionOutbox};

#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
pub(crate) use tls::refuse_tls;
#[cfg(feature = "web")]
mod ws;
#[cfg(feature = "web")]
pub(crate) use ws::refuse_web;

/// How a session ended, before the final flush.
enum End {
    /// The reader stopped: EOF, a read error, `QUIT` or a non-chat peer.
    Reader(String),
    /// The hub closed the outbox: `QUIT`, overflow, timeout or shutdown.
    Closed,
    /// The hub closed the outbox and the writer has already written all of
    /// it; the writer future is finished and must not be polled again.
    Flushed,
    /// Writing to the socket failed; nothing more can be sent.
    Writer(String),
}

/// A connection as accepted, before anything is read from it.
pub(crate) enum Connection {
    /// From the plain-text listener: the protocol straight on the socket.
    Plain(Arc<Async<TcpStream>>),
    /// From the TLS listener: the session first waits for the handshake.
    #[cfg(feature = "tls")]
    Tls(Arc<Async<TcpStream>>, futures_rustls::TlsAcceptor),
    /// From the web listener: HTTP, and the protocol over WebSocket on `/ws`.
    #[cfg(feature = "web")]
    Web(Arc<Async<TcpStream>>),
    /// From the web listener over TLS: the handshake, then as `Web`.
    #[cfg(all(feature = "web", feature = "tls"))]
    WebTls(Arc<Async<TcpStream>>, futures_rustls::TlsAcceptor),
}

impl Connection {
    /// Whether this came to the TLS listener, for the log.
    pub(crate) fn is_tls(&self) -> bool {
        match self {
            Connection::Plain(_) => false,
            #[cfg(feature = "tls")]
            Connection::Tls(..) => true,
            #[cfg(feature = "web")]
            Connection::Web(_) => false,
            #[cfg(all(feature = "web", feature = "tls"))]
            Connection::WebTls(..) => true,
        }
    }
}

/// Where a session's bytes come from: the socket itself, or what TLS
/// decrypted from it. Monomorphised, so the plain path pays nothing for
/// the choice.
pub(crate) trait Input {
    /// Waits for bytes and returns them; empty once the peer has closed.
    async fn read_some(&mut self) -> io::Result<Vec<u8>>;
}

/// Where a session's lines go: the socket itself, or TLS on top of it.
pub(crate) trait Output {
    /// Writes every line of `batch`, emptying it.
    async fn write_batch(&mut self, batch: &mut VecDeque<Line>) -> io::Result<()>;

    /// Ends the stream politely once everything is written (TLS sends its
    /// close_notify); the socket itself is shut down by the caller.
    async fn finish(&mut self) {}
}

/// The plain-text transport: non-blocking reads and gathered writes on the
/// socket, with no buffer of its own between them (reads use the stack,
/// writes a buffer of the worker thread).
#[derive(Clone, Copy)]
struct Plain<'a>(&'a Async<TcpStream>);

impl Input for Plain<'_> {
    async fn read_some(&mut self) -> io::Result<Vec<u8>> {
        loop {
            self.0.readable().await?;
            match read_now(self.0) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

/// Serves connection `id` until it ends, and returns why, for the log.
pub(crate) async fn run(
    id: ClientId,
    peer: std::net::SocketAddr,
    connection: Connection,
    config: &Config,
    ports: Ports,
    events: Sender<Event>,
) -> String {
    match connection {
        Connection::Plain(stream) => {
            // Chat lines are small and latency matters more than packet
            // count; the writer already coalesces what is queued into one
            // write.
            let _ = stream.get_ref().set_nodelay(true);
            let plain = Plain(&stream);
            let reason = serve(id, peer, plain, plain, config, ports, &events).await;
            let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
            reason
        }
        #[cfg(feature = "tls")]
        Connection::Tls(stream, acceptor) => {
            tls::run(id, peer, stream, acceptor, config, ports, &events).await
        }
        #[cfg(feature = "web")]
        Connection::Web(stream) => ws::run(id, peer, stream, None, config, ports, &events).await,
        #[cfg(all(feature = "web", feature = "tls"))]
        Connection::WebTls(stream, acceptor) => {
            ws::run(id, peer, stream, Some(acceptor), config, ports, &events).await
        }
    }
}

/// Serves a connection whose transport is ready: registers it with the hub,
/// reads and writes until either side ends, then flushes what is left.
async fn serve(
    id: ClientId,
    peer: std::net::SocketAddr,
    mut input: impl Input,
    mut output: impl Output,
    config: &Config,
    ports: Ports,
    events: &Sender<Event>,
) -> String {
    let (outbox, reader) = SessionOutbox::new(config.outbox);
    if events
        .send(Event::Connect {
            id,
            addr: peer.ip(),
            outbox,
        })
        .await
        .is_err()
    {
        return "server shutting down".into();
    }
    let mut writer = Box::pin(write_lines(&mut output, &reader));
    let end = future::or(
        future::or(
            async { End::Reader(read_lines(id, &mut input, config, ports, events).await) },
            async {
                reader.closed().await;
                End::Closed
            },
        ),
        async {
            match writer.as_mut().await {
                Ok(()) => End::Flushed,
                Err(err) => End::Writer(format!("write failed: {err}")),
            }
        },
    )
    .await;
    // Whether everything queued was written, so the stream may be ended
    // politely.
    let mut written = matches!(end, End::Flushed);
    // Whether the writer still has lines to write: not if it finished, with
    // or without an error.
    let (reason, flush) = match end {
        End::Reader(reason) => (reason, true),
        End::Closed => ("closed by the server".into(), true),
        End::Flushed => ("closed by the server".into(), false),
        End::Writer(reason) => (reason, false),
    };
    let _ = events
        .send(Event::Disconnect {
            id,
            reason: reason.clone(),
        })
        .await;
    if flush {
        // The hub has closed the outbox by now: write what is left, but do
        // not wait forever on a client that is not reading.
        written = future::or(async { writer.as_mut().await.is_ok() }, async {
            Timer::after(config.shutdown_grace).await;
            false
        })
        .await;
    }
    drop(writer);
    if written {
        output.finish().await;
    }
    reason
}

/// Reads, decodes and parses until the connection ends; returns why.
async fn read_lines(
    id: ClientId,
    input: &mut impl Input,
    config: &Config,
    ports: Ports,
    events: &Sender<Event>,
) -> String {
    let mut decoder = LineDecoder::new(config.max_line);
    let mut bucket = TokenBucket::new(config.rate, config.burst);
    let reply = |line: &ServerLine| Event::Reply {
        id,
        line: encode(line),
    };
    let error = |code: ErrorCode, text: String| reply(&ServerLine::Err { code, text });
    loop {
        let data = match input.read_some().await {
            Ok(data) if data.is_empty() => return "connection closed".into(),
            Ok(data) => data,
            // TLS without its close_notify: as good as a close for a chat.
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                return "connection closed".into()
            }
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {
                return "connection reset".into()
            }
            Err(err) => return format!("read failed: {err}"),
        };
        let mut rest = &data[..];
        while let Some(frame) = decoder.decode(&mut rest) {
            let event = match frame {
                Frame::Line(text) => match parse_command(&text) {
                    Ok(command) => {
                        bucket.take().await;
                        let quit = matches!(command, Command::Quit(_));
                        if events.send(Event::Command { id, command }).await.is_err() {
                            return "server shutting down".into();
                        }
                        if quit {
                            return "quit".into();
                        }
                        continue;
                    }
                    Err(CommandError::Empty) => continue,
                    Err(err) => {
                        let (code, hint) = match err {
                            CommandError::Unknown(_) => {
                                (ErrorCode::UnknownCommand, " HELP lists the commands.")
                            }
                            CommandError::BadRoom(_) => (ErrorCode::NoSuchRoom, ""),
                            CommandError::BadArgument(_) => (ErrorCode::BadArgument, ""),
                            _ => (ErrorCode::MissingArgument, ""),
                        };
                        error(code, format!("{}.{hint}", capitalised(&err.to_string())))
                    }
                },
                Frame::TooLong => error(
                    ErrorCode::LineTooLong,
                    format!(
                        "Lines are limited to {} bytes; the rest of that line was dropped.",
                        config.max_line
                    ),
                ),
                Frame::BadUtf8 => error(
                    ErrorCode::BadUtf8,
                    "That line was not valid UTF-8 text and was dropped.".into(),
                ),
                Frame::NotChat(kind) => {
                    // A TLS client on the plain port is sent to the TLS one.
                    let hint = match (kind, ports.tls) {
                        (NotChat::Tls, Some(port)) => format!(" Use TLS on port {port}."),
                        _ => String::new(),
                    };
                    let explain = error(
                        ErrorCode::NotChat,
                        format!("{}.{hint}", capitalised(kind.describe())),
                    );
                    let _ = events.send(explain).await;
                    let _ = events
                        .send(reply(&ServerLine::Bye("Goodbye.".into())))
                        .await;
                    return "not a chat client".into();
                }
            };
            if events.send(event).await.is_err() {
                return "server shutting down".into();
            }
        }
        if decoder.has_replies() {
            let line = Line::from(decoder.take_replies());
            if events.send(Event::Reply { id, line }).await.is_err() {
                return "server shutting down".into();
            }
        }
    }
}

/// Reads what the socket has now, without waiting. The buffer lives only
/// for this call, so an idle connection holds none.
fn read_now(stream: &Async<TcpStream>) -> io::Result<Vec<u8>> {
    let mut buf = [0u8; 4096];
    let n = stream.get_ref().read(&mut buf)?;
    Ok(buf.get(..n).unwrap_or_default().to_vec())
}

/// How many bytes one write hands to the kernel at most.
const WRITE_BYTES: usize = 16 * 1024;

thread_local! {
    /// Where a plain writer gathers a batch for one write; one per thread.
    static WRITE_BUFFER: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(WRITE_BYTES));
}

/// The most queue capacity, in lines, that a writer keeps between batches.
const KEEP_LINES: usize = 4;

/// Drains the outbox into the connection until the hub closes it: each
/// wake-up takes everything queued and hands it to `output` in one go.
async fn write_lines(output: &mut impl Output, reader: &OutboxReader) -> io::Result<()> {
    let mut batch = VecDeque::new();
    while reader.take(&mut batch).await.is_some() {
        output.write_batch(&mut batch).await?;
        // The next take swaps this empty queue in for the hub to fill: keep
        // a small one, so a line at a time costs no allocation, but not the
        // memory of a backlog (a burst of announcements) while idle.
        if batch.capacity() > KEEP_LINES {
            batch = VecDeque::new();
        }
    }
    Ok(())
}

impl Output for Plain<'_> {
    /// Copies as much of the batch as fits into this thread's write buffer
    /// and writes it with one call: one contiguous copy into the kernel
    /// costs less than many small vectors. The buffer belongs to the
    /// thread, not the connection, so an idle connection holds none.
    async fn write_batch(&mut self, batch: &mut VecDeque<Line>) -> io::Result<()> {
        let stream = self.0;
        // Bytes of the front line already written.
        let mut written = 0;
        loop {
            // Lines are never empty (each ends in CRLF), but a write of
            // nothing would look like a closed socket: skip any.
            while batch.front().is_some_and(|line| line.len() <= written) {
                batch.pop_front();
                written = 0;
            }
            if batch.is_empty() {
                return Ok(());
            }
            let result = WRITE_BUFFER.with(|buffer| {
                let mut buffer = buffer.borrow_mut();
                buffer.clear();
                for (i, line) in batch.iter().enumerate() {
                    let bytes: &[u8] = line;
                    let bytes = if i == 0 {
                        bytes.get(written..).unwrap_or_default()
                    } else {
                        bytes
                    };
                    let room = WRITE_BYTES - buffer.len();
                    buffer
                        .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
                    if buffer.len() >= WRITE_BYTES {
                        break;
                    }
                }
                stream.get_ref().write(&buffer)
            });
            let sent = match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    stream.writable().await?;
                    continue;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            // Drop the lines written in full; remember how far into the
            // next one the write got.
            let mut left = written + sent;
            written = 0;
            while let Some(line) = batch.front() {
                if left < line.len() {
                    written = left;
                    break;
                }
                left -= line.len();
                batch.pop_front();
            }
        }
    }
}

/// Paces a client's commands: `burst` at once, then `rate` per second.
struct TokenBucket {
    /// Lines per second; 0 means no limit.
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Waits until the client may send one more line, and spends it.
    async fn take(&mut self) {
        if self.rate <= 0.0 {
            return;
        }
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
        if self.tokens < 1.0 {
            let wait = (1.0 - self.tokens) / self.rate;
            Timer::after(Duration::from_secs_f64(wait)).await;
            self.tokens = 1.0;
            self.last = Instant::now();
        }
        self.tokens -= 1.0;
    }
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
