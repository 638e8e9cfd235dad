//! The plain-text transport: the protocol straight on the socket, as `nc`
//! and `telnet` speak it.
//!
//! **Invariant:** this is the hot path and the common idle connection, so
//! it stays lean. The session is one hand-written future, [`Plain`], rather
//! than the nested `async fn`s the other transports run through
//! [`lines::run_session`]: rustc lays a future out with room for every
//! state at once, and those layers cost an idle connection about twice
//! the bytes of the fields below. Reads go into a stack buffer after
//! readiness (an idle connection holds no read buffer); writes of up to
//! 16 KiB are gathered in a buffer that belongs to the worker thread (and
//! none for writes either). Readiness is polled on the socket's own waker
//! slots (one reader, one writer), which cost nothing to wait on. Waits
//! that are rare (the rate limit, a full inbox) are boxed.
//!
//! What the session does is the same as every transport's: the reader,
//! the writer and the hub's closing race as in [`lines::run_session`], and
//! a frame comes to the same events through [`lines::handle`].

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_lite::future;
use smol::{Async, Timer};

use super::lines::{self, End, Handing, TokenBucket};
use super::telnet::PasswordPrompt;
use super::Session;
use crate::decoder::{Frame, LineDecoder};
use crate::protocol::Line;
use crate::server::hub_task::Event;
use crate::server::outbox::{OutboxReader, SessionOutbox};

/// Serves a connection to the plain-text listener until it ends, and
/// returns why, for the log.
pub(crate) async fn run(session: &Session, stream: Arc<Async<TcpStream>>) -> String {
    // Chat lines are small and latency matters more than packet count; the
    // writer already coalesces what is queued into one write.
    let _ = stream.get_ref().set_nodelay(true);
    let reason = serve(session, &stream).await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
    reason
}

/// Registers with the hub, runs [`Plain`] until either side ends, tells
/// the hub, and writes what is left within the shutdown grace.
async fn serve(session: &Session, stream: &Async<TcpStream>) -> String {
    let (outbox, reader) = SessionOutbox::new(session.config.outbox_bytes);
    let connect = Event::Connect {
        id: session.id,
        addr: session.peer.ip(),
        outbox,
    };
    if !lines::hand(&session.events, connect).await {
        return "server shutting down".into();
    }
    let mut plain = Plain::new(session, stream, reader);
    let end = future::poll_fn(|cx| plain.poll_run(cx)).await;
    let (reason, flush) = end.reason(&plain.outbox);
    let disconnect = Event::Disconnect {
        id: session.id,
        reason: reason.clone(),
    };
    let _ = lines::hand(&session.events, disconnect).await;
    if flush {
        // The hub has closed the outbox by now: write what is left, but do
        // not wait forever on a client that is not reading. Boxed: the
        // timer is needed once, at the end.
        let mut grace = Box::pin(Timer::after(session.config.shutdown_grace));
        future::poll_fn(|cx| match plain.poll_write(cx) {
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => grace.as_mut().poll(cx).map(drop),
        })
        .await;
    }
    reason
}

/// A plain session's reader and writer, polled together.
struct Plain<'a> {
    session: &'a Session,
    stream: &'a Async<TcpStream>,
    outbox: OutboxReader,
    // The reader's half.
    decoder: LineDecoder,
    bucket: TokenBucket,
    prompt: PasswordPrompt,
    /// What the reader waits for before it reads on, if anything.
    wait: Option<Box<Waiting>>,
    // The writer's half.
    /// Lines taken from the outbox and not yet written in full.
    batch: VecDeque<Line>,
    /// Bytes of the batch's front line already written.
    written: usize,
}

/// A reader's wait between reads, rare: boxed, so that an idle connection
/// keeps one pointer for it.
struct Waiting {
    on: Wait,
    /// Bytes read but not yet decoded, to go on with after the wait.
    unread: Vec<u8>,
}

/// What a reader may wait for.
enum Wait {
    /// The rate limit, before `Frame` may go.
    Rate(Pin<Box<Timer>>, Frame),
    /// Room in the hub's inbox for a line's events; the reader stops after
    /// them if it is to.
    Hand(Handing, Option<lines::Stop>),
}

impl<'a> Plain<'a> {
    fn new(session: &'a Session, stream: &'a Async<TcpStream>, outbox: OutboxReader) -> Self {
        let config = &*session.config;
        Self {
            session,
            stream,
            outbox,
            decoder: LineDecoder::new(config.max_line),
            bucket: TokenBucket::new(config.rate, config.burst),
            prompt: PasswordPrompt::default(),
            wait: None,
            batch: VecDeque::new(),
            written: 0,
        }
    }

    /// Reads and writes until either side ends or the hub closes the
    /// outbox, polling them in that order. Once it is ready, only
    /// [`Plain::poll_write`] may be polled again, and only if the end says
    /// the writer has lines left.
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        if let Poll::Ready(reason) = self.poll_read(cx) {
            return Poll::Ready(End::Reader(reason));
        }
        if self.outbox.poll_closed(cx).is_ready() {
            return Poll::Ready(End::Closed);
        }
        self.poll_write(cx).map(|written| match written {
            Ok(()) => End::Flushed,
            Err(err) => End::Writer(format!("write failed: {err}")),
        })
    }

    /// Reads, decodes and hands on lines until the connection ends; ready
    /// with why.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<String> {
        loop {
            if let Some(waiting) = &mut self.wait {
                let handed = match &mut waiting.on {
                    Wait::Rate(timer, _) => ready!(timer.as_mut().poll(cx).map(|_| true)),
                    Wait::Hand(handing, _) => ready!(handing.as_mut().poll(cx)),
                };
                let Some(waiting) = self.wait.take() else {
                    continue;
                };
                let Waiting { on, unread } = *waiting;
                let stop = match on {
                    Wait::Rate(_, frame) => {
                        self.bucket.waited();
                        self.deliver(frame, &unread)
                    }
                    Wait::Hand(_, end) => lines::after_handing(handed, end),
                };
                if let Some(reason) = stop {
                    return Poll::Ready(reason);
                }
                // Go on with the bytes that waited (and the replies they
                // leave), before reading more.
                if self.wait.is_none() {
                    if let Some(reason) = self.feed(&unread) {
                        return Poll::Ready(reason);
                    }
                }
                continue;
            }
            if let Err(err) = ready!(self.stream.poll_readable(cx)) {
                return Poll::Ready(lines::read_failed(&err));
            }
            // The buffer lives only for this read, so an idle connection
            // holds none.
            let mut buf = [0u8; 4096];
            match self.stream.get_ref().read(&mut buf) {
                Ok(0) => return Poll::Ready("connection closed".into()),
                Ok(n) => {
                    if let Some(reason) = self.feed(buf.get(..n).unwrap_or_default()) {
                        return Poll::Ready(reason);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Poll::Ready(lines::read_failed(&err)),
            }
        }
    }

    /// Decodes `data` and hands on what it comes to, until it is used up or
    /// the reader must wait (then what is left is kept for after the
    /// wait); `Some` with why if the reader stops.
    fn feed(&mut self, data: &[u8]) -> Option<String> {
        let mut rest = data;
        while let Some(frame) = self.decoder.decode(&mut rest) {
            // Every line pays, whatever it parses to: lines that fail
            // (unknown commands, too long, not UTF-8) are answered through
            // the hub too, so they must not be a way around the limit.
            if !matches!(frame, Frame::NotChat(_)) {
                if let Some(wait) = self.bucket.take() {
                    crate::metrics::rate_limited();
                    self.wait_for(Wait::Rate(Box::pin(Timer::after(wait)), frame), rest);
                    return None;
                }
            }
            if let Some(reason) = self.deliver(frame, rest) {
                return Some(reason);
            }
            if self.wait.is_some() {
                return None;
            }
        }
        if self.decoder.has_replies() {
            let reply = Event::Reply {
                id: self.session.id,
                line: Line::from(self.decoder.take_replies()),
            };
            match lines::try_hand(&self.session.events, [Some(reply)]) {
                Ok(true) => {}
                Ok(false) => return Some("server shutting down".into()),
                Err(handing) => self.wait_for(Wait::Hand(handing, None), &[]),
            }
        }
        None
    }

    /// Hands the events `frame` comes to to the hub; `Some` with why if the
    /// reader stops after them. If the inbox is full, the rest wait, and
    /// `rest`, the bytes after the frame, with them.
    fn deliver(&mut self, frame: Frame, rest: &[u8]) -> Option<String> {
        let handled = lines::handle(self.session, frame, &mut self.decoder, &mut self.prompt);
        match lines::try_hand(&self.session.events, handled.events) {
            Ok(handed) => lines::after_handing(handed, handled.end),
            Err(handing) => {
                self.wait_for(Wait::Hand(handing, handled.end), rest);
                None
            }
        }
    }

    /// Makes the reader wait `on` something before it decodes `unread`.
    fn wait_for(&mut self, on: Wait, unread: &[u8]) {
        self.wait = Some(Box::new(Waiting {
            on,
            unread: unread.to_vec(),
        }));
    }

    /// Drains the outbox into the socket until the hub closes it: each
    /// wake-up takes everything queued and writes it, a batch of up to
    /// 16 KiB at a time, gathered into one `write`: one contiguous copy
    /// into the kernel costs less than many small vectors.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            // Lines are never empty (each ends in CRLF), but a write of
            // nothing would look like a closed socket: skip any.
            while self
                .batch
                .front()
                .is_some_and(|line| line.len() <= self.written)
            {
                self.batch.pop_front();
                self.written = 0;
            }
            if self.batch.is_empty() {
                if ready!(self.outbox.poll_take(cx, &mut self.batch)).is_none() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let sent = match write_some(self.stream, &self.batch, self.written) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.stream.poll_writable(cx))?;
                    continue;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Poll::Ready(Err(err)),
            };
            // Drop the lines written in full; remember how far into the
            // next one the write got.
            let mut left = self.written + sent;
            self.written = 0;
            while let Some(line) = self.batch.front() {
                if left < line.len() {
                    self.written = left;
                    break;
                }
                left -= line.len();
                self.batch.pop_front();
            }
            if self.batch.is_empty() {
                self.outbox.written();
                // The next take swaps this empty queue in for the hub to
                // fill: keep a small one, so that a line at a time costs
                // the hub's broadcast loop no allocation, but not the
                // memory of a backlog (a burst of announcements) while
                // idle.
                if self.batch.capacity() > lines::KEEP_LINES {
                    self.batch = VecDeque::new();
                }
            }
        }
    }
}

/// How many bytes one write hands to the kernel at most.
const WRITE_BYTES: usize = 16 * 1024;

thread_local! {
    /// Where a plain writer gathers a batch for one write; one per thread.
    static WRITE_BUFFER: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(WRITE_BYTES));
}

/// Copies as much of `batch` (its front line from byte `written` on) as
/// fits into this thread's write buffer and writes it with one call. The
/// buffer belongs to the thread, not the connection, so an idle connection
/// holds none.
fn write_some(
    stream: &Async<TcpStream>,
    batch: &VecDeque<Line>,
    written: usize,
) -> io::Result<usize> {
    WRITE_BUFFER.with(|buffer| {
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
            buffer.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
            if buffer.len() >= WRITE_BYTES {
                break;
            }
        }
        stream.get_ref().write(&buffer)
    })
}
