//! The part of a session every transport shares: registering with the hub,
//! the reader (decoder, parser, token bucket), the writer draining the
//! outbox, and the final flush.
//!
//! The reader answers what it can on its own (telnet negotiation, lines too
//! long, bad UTF-8, unknown commands) and sends the rest to the hub. Nothing
//! here waits on another client: the only shared things are the hub's inbox
//! (bounded, so a flood slows its sender) and this connection's own outbox.
//! Generic over the transport, so each one gets its own compiled copy.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use std::future::Future;

use async_channel::{Sender, TrySendError};
use futures_lite::future;
use smol::Timer;

use super::telnet::{PasswordPrompt, Step};
use super::transport::{Input, Output, Ports};
use crate::config::Config;
use crate::decoder::{Frame, LineDecoder, NotChat};
use crate::ids::ClientId;
use crate::protocol::{encode, Line};
use crate::protocol::{parse_command, Command, CommandError, ErrorCode, ServerLine};
use crate::server::hub_task::{Event, OVERFLOW};
use crate::server::outbox::{OutboxReader, SessionOutbox};
use crate::text::capitalise;

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

/// Serves a connection whose transport is ready: registers it with the hub,
/// reads and writes until either side ends, then flushes what is left.
pub(crate) async fn run_session(
    id: ClientId,
    peer: std::net::SocketAddr,
    mut input: impl Input,
    mut output: impl Output,
    config: &Config,
    ports: Ports,
    events: &Sender<Event>,
) -> String {
    let (outbox, reader) = SessionOutbox::new(config.outbox_bytes);
    if !hand(
        events,
        Event::Connect {
            id,
            addr: peer.ip(),
            outbox,
        },
    )
    .await
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
        // Closed for a history answer that did not fit: say so, as the hub
        // does when a line does not fit.
        End::Closed if reader.overflowed() => (OVERFLOW.into(), true),
        End::Closed => ("closed by the server".into(), true),
        End::Flushed => ("closed by the server".into(), false),
        End::Writer(reason) => (reason, false),
    };
    let _ = hand(
        events,
        Event::Disconnect {
            id,
            reason: reason.clone(),
        },
    )
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
    let mut prompt = PasswordPrompt::default();
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
            // Every line pays, whatever it parses to: lines that fail (unknown
            // commands, too long, not UTF-8) are answered through the hub too,
            // so they must not be a way around the limit.
            if !matches!(frame, Frame::NotChat(_)) {
                bucket.take().await;
            }
            // A telnet user's password is asked for with the echo off.
            let echo = |on: bool, decoder: &mut LineDecoder| Event::Reply {
                id,
                line: Line::from(decoder.hide_input(!on).to_vec()),
            };
            let frame = match frame {
                Frame::Line(text) => match prompt.line(text, decoder.spoke_telnet()) {
                    Step::Parse(text) => Frame::Line(text),
                    Step::Ask { prompt, hide } => {
                        // One event at a time: a list of them would be
                        // held across the awaits, in every session's task.
                        if !hand(events, reply(&ServerLine::Info(prompt))).await
                            || (hide && !hand(events, echo(false, &mut decoder)).await)
                        {
                            return "server shutting down".into();
                        }
                        continue;
                    }
                    Step::Reveal(text) => {
                        if !hand(events, echo(true, &mut decoder)).await {
                            return "server shutting down".into();
                        }
                        Frame::Line(text)
                    }
                },
                other => {
                    if prompt.cancel() && !hand(events, echo(true, &mut decoder)).await {
                        return "server shutting down".into();
                    }
                    other
                }
            };
            let event = match frame {
                Frame::Line(text) => match parse_command(&text) {
                    Ok(command) => {
                        let quit = matches!(command, Command::Quit(_));
                        if !hand(events, Event::Command { id, command }).await {
                            return "server shutting down".into();
                        }
                        if quit {
                            return "quit".into();
                        }
                        continue;
                    }
                    Err(CommandError::Empty) => continue,
                    Err(err) => {
                        let hint = match err {
                            CommandError::Unknown(_) => " HELP lists the commands.",
                            _ => "",
                        };
                        error(
                            err.code(),
                            format!("{}.{hint}", capitalise(&err.to_string())),
                        )
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
                        format!("{}.{hint}", capitalise(kind.describe())),
                    );
                    let _ = hand(events, explain).await;
                    let _ = hand(events, reply(&ServerLine::Bye("Goodbye.".into()))).await;
                    return "not a chat client".into();
                }
            };
            if !hand(events, event).await {
                return "server shutting down".into();
            }
        }
        if decoder.has_replies() {
            let line = Line::from(decoder.take_replies());
            if !hand(events, Event::Reply { id, line }).await {
                return "server shutting down".into();
            }
        }
    }
}

/// Hands `event` to the hub; false if the hub is gone (the server is
/// stopping). The inbox nearly always has room, and then the event goes in
/// at once. Only when it is full is a send future made, on the heap: every
/// `await` on one inline would hold the event and the channel's listener
/// in the session's task, which is sized for its largest `await`, for the
/// connection's whole life, though an idle connection waits on a read.
fn hand(events: &Sender<Event>, event: Event) -> impl Future<Output = bool> + '_ {
    let waiting = match events.try_send(event) {
        Ok(()) => Ok(None),
        Err(TrySendError::Closed(_)) => Err(()),
        Err(TrySendError::Full(event)) => Ok(Some(Box::pin(events.send(event)))),
    };
    async move {
        match waiting {
            Ok(None) => true,
            Ok(Some(send)) => send.await.is_ok(),
            Err(()) => false,
        }
    }
}

/// The most queue capacity, in lines, that a writer keeps between batches.
const KEEP_LINES: usize = 4;

/// Drains the outbox into the connection until the hub closes it: each
/// wake-up takes everything queued and hands it to `output` in one go.
async fn write_lines(output: &mut impl Output, reader: &OutboxReader) -> io::Result<()> {
    let mut batch = VecDeque::new();
    while reader.take(&mut batch).await.is_some() {
        output.write_batch(&mut batch).await?;
        reader.written();
        // The next take swaps this empty queue in for the hub to fill: keep
        // a small one, so that a line at a time costs the hub's broadcast
        // loop no allocation, but not the memory of a backlog (a burst of
        // announcements) while idle.
        if batch.capacity() > KEEP_LINES {
            batch = VecDeque::new();
        }
    }
    Ok(())
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
            crate::metrics::rate_limited();
            let wait = (1.0 - self.tokens) / self.rate;
            Timer::after(Duration::from_secs_f64(wait)).await;
            self.tokens = 1.0;
            self.last = Instant::now();
        }
        self.tokens -= 1.0;
    }
}
