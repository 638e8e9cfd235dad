//! One load-generating client: a non-blocking socket, a line splitter that
//! keeps almost nothing between reads, and registration.
//!
//! Thousands of these sit in one process next to (or against) the server, so
//! an idle client must cost little: reads go through one 64 KiB buffer per
//! thread, and only the unfinished start of a line (at most `keep` bytes) is
//! held between reads. Longer lines (a `USERS` line for 10,000 members is
//! 100 KiB) are cut to their start: the generator only needs their keyword.
//!
//! With `--tls` a client speaks TLS (rustls, trusting exactly the in-process
//! server's certificate) and reads through it into the same per-thread
//! buffer; the plain path is unchanged.

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use futures_lite::{future, AsyncWriteExt};
use smol::Async;

/// A client's TLS stream over its socket.
#[cfg(feature = "tls")]
type TlsStream = futures_rustls::client::TlsStream<Async<TcpStream>>;

/// Where clients connect, and how: plain TCP, or TLS with this client
/// configuration.
#[derive(Clone)]
pub(crate) struct Dial {
    pub(crate) addr: SocketAddr,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

impl Dial {
    /// Plain TCP to `addr`.
    pub(crate) fn plain(addr: SocketAddr) -> Self {
        Self {
            addr,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// A client's sending side; clones share the connection, so a sender task
/// can write while the client reads.
#[derive(Clone)]
pub(crate) enum Outgoing {
    /// Straight to the socket.
    Plain(Arc<Async<TcpStream>>),
    /// Through TLS; the lock is held for one write and its flush.
    #[cfg(feature = "tls")]
    Tls(Arc<smol::lock::Mutex<futures_lite::io::WriteHalf<TlsStream>>>),
}

/// A client's receiving side.
enum Incoming {
    /// Non-blocking reads on the socket.
    Plain(Arc<Async<TcpStream>>),
    /// Reads through TLS.
    #[cfg(feature = "tls")]
    Tls(futures_lite::io::ReadHalf<TlsStream>),
}

/// Bytes read per `read` call; one buffer per thread, shared by its clients.
const SCRATCH: usize = 64 * 1024;

/// Reads per wake-up before yielding, so one busy socket cannot starve the
/// others on its thread.
const READS_PER_WAKE: usize = 16;

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

/// What a [`LineSink`] wants after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// How [`Conn::read`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The sink said stop; later reads resume after that line.
    Stopped,
    /// The server closed the connection.
    Eof,
}

/// Receives a connection's lines, without their line ends.
pub(crate) trait LineSink {
    /// A read brought bytes; its lines follow. One clock read per batch is
    /// enough: the lines of one read arrived together.
    fn batch_start(&mut self) {}
    /// One line (cut to the connection's `keep` bytes).
    fn line(&mut self, line: &[u8]) -> Flow;
    /// Every line of the read has been handed over.
    fn batch_end(&mut self) {}
}

enum Pump {
    Blocked,
    Budget,
    Stopped,
    Eof,
}

/// A client connection.
pub(crate) struct Conn {
    /// Shared with a writer task when this client also sends.
    pub(crate) out: Outgoing,
    input: Incoming,
    lines: Lines,
}

/// A connection's line splitter: what it keeps between reads.
struct Lines {
    /// The start of a line whose end has not arrived yet.
    line: Vec<u8>,
    /// The current line is longer than `keep`; its rest is skipped.
    skipping: bool,
    /// The most bytes of one line kept.
    keep: usize,
    /// Bytes read but not handed over because the sink said stop.
    unread: Vec<u8>,
}

impl Conn {
    /// Connects to `dial` with Nagle off (chat lines are small and each one
    /// is timed), and completes the TLS handshake if it asks for TLS.
    pub(crate) async fn connect(dial: &Dial, keep: usize) -> io::Result<Self> {
        let stream = Async::<TcpStream>::connect(dial.addr).await?;
        stream.get_ref().set_nodelay(true)?;
        let lines = Lines {
            line: Vec::new(),
            skipping: false,
            keep,
            unread: Vec::new(),
        };
        #[cfg(feature = "tls")]
        if let Some(config) = &dial.tls {
            let connector = futures_rustls::TlsConnector::from(Arc::clone(config));
            let tls = connector
                .connect(crate::tls::any_server_name(), stream)
                .await?;
            let (input, output) = futures_lite::io::split(tls);
            return Ok(Self {
                out: Outgoing::Tls(Arc::new(smol::lock::Mutex::new(output))),
                input: Incoming::Tls(input),
                lines,
            });
        }
        let stream = Arc::new(stream);
        Ok(Self {
            out: Outgoing::Plain(Arc::clone(&stream)),
            input: Incoming::Plain(stream),
            lines,
        })
    }

    /// Writes all of `bytes`.
    pub(crate) async fn send(&self, bytes: &[u8]) -> io::Result<()> {
        send(&self.out, bytes).await
    }

    /// Hands lines to `sink` until it says stop or the server closes.
    pub(crate) async fn read(&mut self, sink: &mut impl LineSink) -> io::Result<Ended> {
        let Conn { input, lines, .. } = self;
        match input {
            Incoming::Plain(stream) => loop {
                match lines.pump(stream, sink)? {
                    Pump::Eof => return Ok(Ended::Eof),
                    Pump::Stopped => return Ok(Ended::Stopped),
                    Pump::Blocked => stream.readable().await?,
                    Pump::Budget => future::yield_now().await,
                }
            },
            #[cfg(feature = "tls")]
            Incoming::Tls(input) => lines.pump_tls(input, sink).await,
        }
    }
}

impl Lines {
    /// Hands over what was held back by a stop; `Stop` if the sink stops
    /// again.
    fn replay(&mut self, sink: &mut impl LineSink) -> Flow {
        if self.unread.is_empty() {
            return Flow::Continue;
        }
        let unread = std::mem::take(&mut self.unread);
        sink.batch_start();
        let flow = self.split(&unread, sink);
        sink.batch_end();
        flow
    }

    /// Reads what the socket has now, without waiting, and splits it.
    fn pump(&mut self, stream: &Async<TcpStream>, sink: &mut impl LineSink) -> io::Result<Pump> {
        if self.replay(sink) == Flow::Stop {
            return Ok(Pump::Stopped);
        }
        let result = SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            for _ in 0..READS_PER_WAKE {
                let n = match stream.get_ref().read(&mut scratch) {
                    Ok(0) => return Ok(Pump::Eof),
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Pump::Blocked)
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(err),
                };
                sink.batch_start();
                let flow = self.split(scratch.get(..n).unwrap_or_default(), sink);
                sink.batch_end();
                if flow == Flow::Stop {
                    return Ok(Pump::Stopped);
                }
            }
            Ok(Pump::Budget)
        });
        self.shrink();
        result
    }

    /// Reads through TLS into the thread's buffer (borrowed only while a
    /// read is polled, so a waiting client holds none) until the sink says
    /// stop or the stream ends.
    #[cfg(feature = "tls")]
    async fn pump_tls(
        &mut self,
        input: &mut futures_lite::io::ReadHalf<TlsStream>,
        sink: &mut impl LineSink,
    ) -> io::Result<Ended> {
        use futures_lite::AsyncRead;
        use std::pin::Pin;
        use std::task::Poll;
        if self.replay(sink) == Flow::Stop {
            return Ok(Ended::Stopped);
        }
        let mut reads = 0;
        loop {
            let result = future::poll_fn(|cx| {
                SCRATCH_BUF.with(|scratch| {
                    let mut scratch = scratch.borrow_mut();
                    match Pin::new(&mut *input).poll_read(cx, &mut scratch) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Ok(0)) => Poll::Ready(Ok(None)),
                        Poll::Ready(Ok(n)) => {
                            sink.batch_start();
                            let flow = self.split(scratch.get(..n).unwrap_or_default(), sink);
                            sink.batch_end();
                            Poll::Ready(Ok(Some(flow)))
                        }
                        Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                    }
                })
            })
            .await;
            self.shrink();
            match result {
                Ok(Some(Flow::Stop)) => return Ok(Ended::Stopped),
                Ok(Some(Flow::Continue)) => {}
                // A close with or without close_notify: the end either way.
                Ok(None) => return Ok(Ended::Eof),
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(Ended::Eof),
                Err(err) => return Err(err),
            }
            reads += 1;
            if reads % READS_PER_WAKE == 0 {
                future::yield_now().await;
            }
        }
    }

    /// An idle client holds no buffer.
    fn shrink(&mut self) {
        if self.line.is_empty() && self.line.capacity() > 0 {
            self.line = Vec::new();
        }
    }

    /// Hands the complete lines of (held line start + `data`) to the sink and
    /// keeps the rest.
    fn split(&mut self, data: &[u8], sink: &mut impl LineSink) -> Flow {
        let mut rest = data;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let (head, tail) = (rest.get(..end).unwrap_or_default(), rest.get(end + 1..));
            rest = tail.unwrap_or_default();
            let flow = if self.line.is_empty() && !self.skipping {
                sink.line(trim_cr(head.get(..self.keep).unwrap_or(head)))
            } else {
                self.hold(head);
                let line = std::mem::take(&mut self.line);
                let flow = sink.line(trim_cr(&line));
                self.line = line;
                self.line.clear();
                self.skipping = false;
                flow
            };
            if flow == Flow::Stop {
                self.unread.extend_from_slice(rest);
                return Flow::Stop;
            }
        }
        self.hold(rest);
        Flow::Continue
    }

    /// Keeps the start of an unfinished line, up to `keep` bytes.
    fn hold(&mut self, bytes: &[u8]) {
        if self.skipping {
            return;
        }
        let room = self.keep.saturating_sub(self.line.len());
        if bytes.len() > room {
            self.skipping = true;
        }
        self.line
            .extend_from_slice(bytes.get(..room).unwrap_or(bytes));
    }
}

/// Writes all of `bytes` to a shared connection.
pub(crate) async fn send(out: &Outgoing, bytes: &[u8]) -> io::Result<()> {
    match out {
        Outgoing::Plain(stream) => {
            let mut writer: &Async<TcpStream> = stream;
            writer.write_all(bytes).await
        }
        #[cfg(feature = "tls")]
        Outgoing::Tls(output) => {
            let mut output = output.lock().await;
            output.write_all(bytes).await?;
            output.flush().await
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Waits for the end of registration: the `USERS` line that follows
/// `WELCOME`, or the `ERR`/`BYE` that refuses it. Counts the members that line
/// lists, the client itself always and once (`JOINS` lines with the rest of
/// the list may follow it, and may name it: see [`names`]).
pub(crate) struct Registration<'a> {
    pub(crate) outcome: Option<Result<(), String>>,
    pub(crate) listed: u64,
    pub(crate) me: &'a str,
}

/// Whether a `USERS`, `JOINS` or `PARTS` line names `nick`. A client that
/// counts the members it knows counts itself once, at registration, and so
/// skips its own name in the lines that follow: in a long list it may come
/// in a `JOINS` line after the `USERS` one, and a big room's flush may name a
/// newcomer to itself.
pub(crate) fn names(line: &[u8], nick: &str) -> bool {
    line.split(|&b| b == b' ')
        .skip(2)
        .any(|w| w == nick.as_bytes())
}

/// The nicknames a `USERS`, `JOINS` or `PARTS` line names: the words after
/// the keyword and the room. Right only for a whole line (the server keeps
/// these under [`crate::hub::LIST_LINE`] bytes; keep at least that many).
pub(crate) fn nicks_in(line: &[u8]) -> u64 {
    let words = line.split(|&b| b == b' ').filter(|w| !w.is_empty()).count();
    words.saturating_sub(2) as u64
}

impl LineSink for Registration<'_> {
    fn line(&mut self, line: &[u8]) -> Flow {
        if line.starts_with(b"USERS ") {
            self.listed = nicks_in(line) - u64::from(names(line, self.me)) + 1;
            self.outcome = Some(Ok(()));
            return Flow::Stop;
        }
        if line.starts_with(b"ERR ") || line.starts_with(b"BYE") {
            self.outcome = Some(Err(String::from_utf8_lossy(line).into_owned()));
            return Flow::Stop;
        }
        Flow::Continue
    }
}

/// Connects and registers as `nick`; returns the connection (just past the
/// `USERS` line) and how many members that line listed, itself counted.
pub(crate) async fn register(dial: &Dial, nick: &str, keep: usize) -> Result<(Conn, u64), String> {
    let mut conn = Conn::connect(dial, keep)
        .await
        .map_err(|err| format!("connect: {err}"))?;
    conn.send(format!("NICK {nick}\r\n").as_bytes())
        .await
        .map_err(|err| format!("send NICK: {err}"))?;
    let mut sink = Registration {
        outcome: None,
        listed: 0,
        me: nick,
    };
    match conn.read(&mut sink).await {
        Ok(Ended::Stopped) => {}
        Ok(Ended::Eof) => return Err("closed before registering".into()),
        Err(err) => return Err(format!("read: {err}")),
    }
    match sink.outcome {
        Some(Ok(())) => Ok((conn, sink.listed)),
        Some(Err(line)) => Err(format!("refused: {line}")),
        None => Err("no answer to NICK".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<String>, Option<usize>);

    impl LineSink for Collect {
        fn line(&mut self, line: &[u8]) -> Flow {
            self.0.push(String::from_utf8_lossy(line).into_owned());
            if Some(self.0.len()) == self.1 {
                Flow::Stop
            } else {
                Flow::Continue
            }
        }
    }

    fn conn(keep: usize) -> Lines {
        Lines {
            line: Vec::new(),
            skipping: false,
            keep,
            unread: Vec::new(),
        }
    }

    #[test]
    fn lines_split_across_reads_are_joined_and_long_ones_cut() {
        let mut c = conn(8);
        let mut sink = Collect(Vec::new(), None);
        assert_eq!(c.split(b"MSG a\r\nUSE", &mut sink), Flow::Continue);
        assert_eq!(c.split(b"RS #lobby a b c\r", &mut sink), Flow::Continue);
        assert_eq!(c.split(b"\nPONG\r\n", &mut sink), Flow::Continue);
        assert_eq!(sink.0, ["MSG a", "USERS #l", "PONG"]);
    }

    #[test]
    fn a_stop_keeps_the_rest_for_the_next_read() {
        let mut c = conn(64);
        let mut sink = Collect(Vec::new(), Some(1));
        assert_eq!(c.split(b"A\nB\nC", &mut sink), Flow::Stop);
        assert_eq!(c.unread, b"B\nC");
    }
}
