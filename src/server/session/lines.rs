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
use std::pin::{pin, Pin};

use async_channel::{Sender, TrySendError};
use futures_lite::future;
use smol::Timer;

use super::telnet::{PasswordPrompt, Step};
use super::transport::{Input, Output};
use super::Session;
use crate::decoder::{Frame, LineDecoder, NotChat};
use crate::protocol::{encode, Line};
use crate::protocol::{parse_command, Command, CommandError, ErrorCode, ServerLine};
use crate::server::hub_task::{Event, OVERFLOW};
use crate::server::outbox::{OutboxReader, SessionOutbox};
use crate::text::capitalise;

/// How a session ended, before the final flush.
pub(super) enum End {
    /// The reader stopped: EOF, a read error, `QUIT` or a non-chat peer.
    Reader(String),
    /// The hub closed the outbox: `QUIT`, overflow, timeout or shutdown.
    Closed,
    /// The hub closed the outbox and the writer has already written all of
    /// it; the writer is finished and must not be polled again.
    Flushed,
    /// Writing to the socket failed; nothing more can be sent.
    Writer(String),
}

impl End {
    /// Why the session ended, for the log and the hub, and whether the
    /// writer still has lines to write: not if it finished, with or without
    /// an error.
    pub(super) fn reason(self, reader: &OutboxReader) -> (String, bool) {
        match self {
            End::Reader(reason) => (reason, true),
            // Closed for a history answer that did not fit: say so, as the
            // hub does when a line does not fit.
            End::Closed if reader.overflowed() => (OVERFLOW.into(), true),
            End::Closed => ("closed by the server".into(), true),
            End::Flushed => ("closed by the server".into(), false),
            End::Writer(reason) => (reason, false),
        }
    }
}

/// Serves a connection whose transport is ready: registers it with the hub,
/// reads and writes until either side ends, then flushes what is left.
#[cfg_attr(not(any(feature = "tls", feature = "web")), allow(dead_code))]
pub(crate) async fn run_session(
    session: &Session,
    mut input: impl Input,
    mut output: impl Output,
) -> String {
    let (outbox, reader) = SessionOutbox::new(session.config.outbox_bytes);
    let connect = Event::Connect {
        id: session.id,
        addr: session.peer.ip(),
        outbox,
    };
    if !hand(&session.events, connect).await {
        return "server shutting down".into();
    }
    let (reason, written) = {
        // Pinned in place rather than boxed: it outlives the race below, to
        // write what is left, and lives as long as the task anyway.
        let mut writer = pin!(write_lines(&mut output, &reader));
        let end = future::or(
            future::or(
                async { End::Reader(read_lines(session, &mut input).await) },
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
        // Whether everything queued was written, so the stream may be
        // ended politely.
        let written = matches!(end, End::Flushed);
        let (reason, flush) = end.reason(&reader);
        let disconnect = Event::Disconnect {
            id: session.id,
            reason: reason.clone(),
        };
        let _ = hand(&session.events, disconnect).await;
        if !flush {
            (reason, written)
        } else {
            // The hub has closed the outbox by now: write what is left, but
            // do not wait forever on a client that is not reading.
            let written = future::or(async { writer.as_mut().await.is_ok() }, async {
                Timer::after(session.config.shutdown_grace).await;
                false
            })
            .await;
            (reason, written)
        }
    };
    if written {
        output.finish().await;
    }
    reason
}

/// Reads, decodes and parses until the connection ends; returns why.
///
/// **Invariant:** this future is most of an idle connection's task, and a
/// task is as large as the largest state its future can be in, though an
/// idle one waits on a read. So what a line turns into is worked out by
/// [`handle`], a plain function, and only the decoder, the bucket, the
/// prompt and the bytes being decoded are kept across an `await`; waits
/// that are rare (the rate limit, a full inbox) are boxed.
#[cfg_attr(not(any(feature = "tls", feature = "web")), allow(dead_code))]
async fn read_lines(session: &Session, input: &mut impl Input) -> String {
    let config = &*session.config;
    let mut decoder = LineDecoder::new(config.max_line);
    let mut bucket = TokenBucket::new(config.rate, config.burst);
    let mut prompt = PasswordPrompt::default();
    loop {
        let data = match input.read_some().await {
            Ok(data) if data.is_empty() => return "connection closed".into(),
            Ok(data) => data,
            Err(err) => return read_failed(&err),
        };
        let mut rest = &data[..];
        while let Some(frame) = decoder.decode(&mut rest) {
            // Every line pays, whatever it parses to: lines that fail (unknown
            // commands, too long, not UTF-8) are answered through the hub too,
            // so they must not be a way around the limit.
            if !matches!(frame, Frame::NotChat(_)) {
                if let Some(wait) = bucket.take() {
                    crate::metrics::rate_limited();
                    Box::pin(Timer::after(wait)).await;
                    bucket.waited();
                }
            }
            // Taken apart, so that only `end` is kept across the await.
            let Handled { events, end } = handle(session, frame, &mut decoder, &mut prompt);
            let handed = hand_all(&session.events, events).await;
            if let Some(reason) = after_handing(handed, end) {
                return reason;
            }
        }
        if decoder.has_replies() {
            let line = Line::from(decoder.take_replies());
            if !hand(
                &session.events,
                Event::Reply {
                    id: session.id,
                    line,
                },
            )
            .await
            {
                return "server shutting down".into();
            }
        }
    }
}

/// Why a read that failed ends the session, for the log.
pub(super) fn read_failed(err: &io::Error) -> String {
    match err.kind() {
        // TLS without its close_notify: as good as a close for a chat.
        io::ErrorKind::UnexpectedEof => "connection closed".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => format!("read failed: {err}"),
    }
}

/// Whether the reader stops once a line's events are handed (or the hub
/// turned out to be gone), and why.
pub(super) fn after_handing(handed: bool, end: Option<Stop>) -> Option<String> {
    match end {
        // Told it is not a chat client whether or not the hub heard.
        Some(end @ Stop::NotChat) => Some(end.reason().into()),
        _ if !handed => Some("server shutting down".into()),
        Some(end) => Some(end.reason().into()),
        None => None,
    }
}

/// Why the reader stops after a line.
#[derive(Clone, Copy)]
pub(super) enum Stop {
    /// The client said `QUIT`.
    Quit,
    /// The peer is not a chat client; it has been told so.
    NotChat,
}

impl Stop {
    fn reason(self) -> &'static str {
        match self {
            Stop::Quit => "quit",
            Stop::NotChat => "not a chat client",
        }
    }
}

/// What one decoded frame comes to: the events for the hub, in order, and
/// whether the reader stops after handing them.
pub(super) struct Handled {
    pub(super) events: [Option<Event>; 3],
    pub(super) end: Option<Stop>,
}

/// Works out what `frame` comes to, without waiting on anything: the
/// telnet password prompt, parsing, and the errors the reader answers on
/// its own.
pub(super) fn handle(
    session: &Session,
    frame: Frame,
    decoder: &mut LineDecoder,
    prompt: &mut PasswordPrompt,
) -> Handled {
    let id = session.id;
    let reply = |line: &ServerLine| Event::Reply {
        id,
        line: encode(line),
    };
    let error = |code: ErrorCode, text: String| reply(&ServerLine::Err { code, text });
    // A telnet user's password is asked for with the echo off.
    let echo = |on: bool, decoder: &mut LineDecoder| Event::Reply {
        id,
        line: Line::from(decoder.hide_input(!on).to_vec()),
    };
    let mut first = None;
    let frame = match frame {
        Frame::Line(text) => match prompt.line(text, decoder.spoke_telnet()) {
            Step::Parse(text) => Frame::Line(text),
            Step::Ask { prompt, hide } => {
                return Handled {
                    events: [
                        Some(reply(&ServerLine::Info(prompt))),
                        hide.then(|| echo(false, decoder)),
                        None,
                    ],
                    end: None,
                }
            }
            Step::Reveal(text) => {
                first = Some(echo(true, decoder));
                Frame::Line(text)
            }
        },
        other => {
            if prompt.cancel() {
                first = Some(echo(true, decoder));
            }
            other
        }
    };
    let (event, second, end) = match frame {
        Frame::Line(text) => match parse_command(&text) {
            Ok(command) => {
                let end = matches!(command, Command::Quit(_)).then_some(Stop::Quit);
                (Some(Event::Command { id, command }), None, end)
            }
            Err(CommandError::Empty) => (None, None, None),
            Err(err) => {
                let hint = match err {
                    CommandError::Unknown(_) => " HELP lists the commands.",
                    _ => "",
                };
                let text = format!("{}.{hint}", capitalise(&err.to_string()));
                (Some(error(err.code(), text)), None, None)
            }
        },
        Frame::TooLong => {
            let text = format!(
                "Lines are limited to {} bytes; the rest of that line was dropped.",
                session.config.max_line
            );
            (Some(error(ErrorCode::LineTooLong, text)), None, None)
        }
        Frame::BadUtf8 => {
            let text = "That line was not valid UTF-8 text and was dropped.".into();
            (Some(error(ErrorCode::BadUtf8, text)), None, None)
        }
        Frame::NotChat(kind) => {
            // A TLS client on the plain port is sent to the TLS one.
            let hint = match (kind, session.ports.tls) {
                (NotChat::Tls, Some(port)) => format!(" Use TLS on port {port}."),
                _ => String::new(),
            };
            let text = format!("{}.{hint}", capitalise(kind.describe()));
            let bye = reply(&ServerLine::Bye("Goodbye.".into()));
            let explain = error(ErrorCode::NotChat, text);
            (Some(explain), Some(bye), Some(Stop::NotChat))
        }
    };
    Handled {
        events: [first, event, second],
        end,
    }
}

/// Hands `event` to the hub; false if the hub is gone (the server is
/// stopping). The inbox nearly always has room, and then the event goes in
/// at once. Only when it is full is a send future made, on the heap: every
/// `await` on one inline would hold the event and the channel's listener
/// in the session's task, which is sized for its largest `await`, for the
/// connection's whole life, though an idle connection waits on a read.
pub(super) fn hand(events: &Sender<Event>, event: Event) -> impl Future<Output = bool> + '_ {
    hand_all(events, [Some(event)])
}

/// Hands each of `list` to the hub in order, as [`hand`] does one: at once
/// while the inbox has room, then (boxed) the rest as room is made.
fn hand_all<const N: usize>(
    events: &Sender<Event>,
    list: [Option<Event>; N],
) -> impl Future<Output = bool> + '_ {
    let waiting = try_hand(events, list);
    async move {
        match waiting {
            Ok(handed) => handed,
            Err(send) => send.await,
        }
    }
}

/// The rest of a hand-over that found the hub's inbox full: resolves to
/// whether the hub took them all.
pub(super) type Handing = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Hands what of `list` fits into the inbox now, in order: `Ok` with whether
/// the hub took them (false if it is gone), or `Err` with the wait for the
/// rest once the inbox is full.
pub(super) fn try_hand<const N: usize>(
    events: &Sender<Event>,
    list: [Option<Event>; N],
) -> Result<bool, Handing> {
    let mut list = list.into_iter().flatten();
    while let Some(event) = list.next() {
        match events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => return Ok(false),
            Err(TrySendError::Full(event)) => {
                let events = events.clone();
                return Err(Box::pin(async move {
                    for event in std::iter::once(event).chain(list) {
                        if events.send(event).await.is_err() {
                            return false;
                        }
                    }
                    true
                }));
            }
        }
    }
    Ok(true)
}

/// The most queue capacity, in lines, that a writer keeps between batches.
pub(super) const KEEP_LINES: usize = 4;

/// Drains the outbox into the connection until the hub closes it: each
/// wake-up takes everything queued and hands it to `output` in one go.
#[cfg_attr(not(any(feature = "tls", feature = "web")), allow(dead_code))]
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
pub(super) struct TokenBucket {
    /// Lines per second; 0 means no limit. Single precision, as every
    /// connection keeps one: exact for any rate a flag can set.
    rate: f32,
    burst: f32,
    tokens: f32,
    last: Instant,
}

impl TokenBucket {
    pub(super) fn new(rate: u32, burst: u32) -> Self {
        // Past 2^24 a line or two more per second makes no difference.
        let float = |n: u32| n.min(1 << 24) as f32;
        let burst = float(burst.max(1));
        Self {
            rate: float(rate),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Spends a token for one more line if there is one; otherwise says
    /// how long to wait before the line may go, and [`Self::waited`] must
    /// be called after that wait.
    pub(super) fn take(&mut self) -> Option<Duration> {
        if self.rate <= 0.0 {
            return None;
        }
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f32() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
        if self.tokens < 1.0 {
            return Some(Duration::from_secs_f32((1.0 - self.tokens) / self.rate));
        }
        self.tokens -= 1.0;
        None
    }

    /// After waiting as [`Self::take`] said: the token earned is spent.
    pub(super) fn waited(&mut self) {
        self.tokens = 0.0;
        self.last = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(n: u8) -> Event {
        Event::Reply {
            id: 1,
            line: Line::from(vec![n]),
        }
    }

    fn number(event: Event) -> u8 {
        match event {
            Event::Reply { line, .. } => line.first().copied().unwrap_or(0),
            _ => 0,
        }
    }

    #[test]
    fn events_that_do_not_fit_the_inbox_follow_in_order_once_it_drains() {
        let (events, inbox) = async_channel::bounded(1);
        smol::block_on(async {
            assert!(hand(&events, reply(1)).await);
            // The inbox is full: 2 waits, and 3 and 4 wait behind it.
            let mut waiting = Box::pin(hand_all(
                &events,
                [Some(reply(2)), None, Some(reply(3)), Some(reply(4))],
            ));
            assert!(future::poll_once(waiting.as_mut()).await.is_none());
            let drain = async {
                let mut got = Vec::new();
                for _ in 0..4 {
                    got.push(number(inbox.recv().await.unwrap()));
                }
                got
            };
            let (handed, got) = future::zip(waiting, drain).await;
            assert!(handed);
            assert_eq!(got, [1, 2, 3, 4]);
        });
    }

    #[test]
    fn handing_to_a_stopped_hub_says_so() {
        let (events, inbox) = async_channel::bounded(1);
        drop(inbox);
        assert!(!smol::block_on(hand_all(
            &events,
            [Some(reply(1)), Some(reply(2))]
        )));
    }

    #[test]
    fn the_bucket_lets_a_burst_through_then_makes_the_next_line_wait() {
        let mut bucket = TokenBucket::new(10, 3);
        for _ in 0..3 {
            assert_eq!(bucket.take(), None);
        }
        let wait = bucket.take().expect("the fourth line waits");
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
        bucket.waited();
        // Right after a wait, the next line waits again.
        assert!(bucket.take().is_some());
        assert_eq!(TokenBucket::new(0, 1).take(), None, "rate 0 is no limit");
    }
}
