//! One load-generating client: a non-blocking socket, a line splitter that
//! keeps almost nothing between reads, and registration.
//!
//! Thousands of these sit in one process next to (or against) the server, so
//! an idle client must cost little: reads go through one 64 KiB buffer per
//! thread, and only the unfinished start of a line (at most `keep` bytes) is
//! held between reads. Longer lines (a `USERS` line for 10,000 members is
//! 100 KiB) are cut to their start: the generator only needs their keyword.

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use futures_lite::{future, AsyncWriteExt};
use smol::Async;

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
    pub(crate) stream: Arc<Async<TcpStream>>,
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
    /// Connects to `addr` with Nagle off: chat lines are small and each one
    /// is timed.
    pub(crate) async fn connect(addr: SocketAddr, keep: usize) -> io::Result<Self> {
        let stream = Async::<TcpStream>::connect(addr).await?;
        stream.get_ref().set_nodelay(true)?;
        Ok(Self {
            stream: Arc::new(stream),
            line: Vec::new(),
            skipping: false,
            keep,
            unread: Vec::new(),
        })
    }

    /// Writes all of `bytes`.
    pub(crate) async fn send(&self, bytes: &[u8]) -> io::Result<()> {
        send(&self.stream, bytes).await
    }

    /// Hands lines to `sink` until it says stop or the server closes.
    pub(crate) async fn read(&mut self, sink: &mut impl LineSink) -> io::Result<Ended> {
        loop {
            match self.pump(sink)? {
                Pump::Eof => return Ok(Ended::Eof),
                Pump::Stopped => return Ok(Ended::Stopped),
                Pump::Blocked => self.stream.readable().await?,
                Pump::Budget => future::yield_now().await,
            }
        }
    }

    /// Reads what the socket has now, without waiting, and splits it.
    fn pump(&mut self, sink: &mut impl LineSink) -> io::Result<Pump> {
        if !self.unread.is_empty() {
            let unread = std::mem::take(&mut self.unread);
            sink.batch_start();
            let flow = self.split(&unread, sink);
            sink.batch_end();
            if flow == Flow::Stop {
                return Ok(Pump::Stopped);
            }
        }
        let result = SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            for _ in 0..READS_PER_WAKE {
                let n = match self.stream.get_ref().read(&mut scratch) {
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
        // An idle client holds no buffer.
        if self.line.is_empty() && self.line.capacity() > 0 {
            self.line = Vec::new();
        }
        result
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

/// Writes all of `bytes` to a shared stream.
pub(crate) async fn send(stream: &Async<TcpStream>, bytes: &[u8]) -> io::Result<()> {
    let mut writer = stream;
    writer.write_all(bytes).await
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Waits for the end of registration: the `USERS` line that follows
/// `WELCOME`, or the `ERR`/`BYE` that refuses it. Counts the `JOIN` lines it
/// sees on the way.
pub(crate) struct Registration {
    pub(crate) outcome: Option<Result<(), String>>,
    pub(crate) joins: u64,
}

impl LineSink for Registration {
    fn line(&mut self, line: &[u8]) -> Flow {
        if line.starts_with(b"USERS ") {
            self.outcome = Some(Ok(()));
            return Flow::Stop;
        }
        if line.starts_with(b"JOIN ") {
            self.joins += 1;
        } else if line.starts_with(b"ERR ") || line.starts_with(b"BYE") {
            self.outcome = Some(Err(String::from_utf8_lossy(line).into_owned()));
            return Flow::Stop;
        }
        Flow::Continue
    }
}

/// Connects and registers as `nick`; returns the connection (just past the
/// `USERS` line) and the `JOIN` lines seen so far.
pub(crate) async fn register(
    addr: SocketAddr,
    nick: &str,
    keep: usize,
) -> Result<(Conn, u64), String> {
    let mut conn = Conn::connect(addr, keep)
        .await
        .map_err(|err| format!("connect: {err}"))?;
    conn.send(format!("NICK {nick}\r\n").as_bytes())
        .await
        .map_err(|err| format!("send NICK: {err}"))?;
    let mut sink = Registration {
        outcome: None,
        joins: 0,
    };
    match conn.read(&mut sink).await {
        Ok(Ended::Stopped) => {}
        Ok(Ended::Eof) => return Err("closed before registering".into()),
        Err(err) => return Err(format!("read: {err}")),
    }
    match sink.outcome {
        Some(Ok(())) => Ok((conn, sink.joins)),
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

    fn conn(keep: usize) -> Conn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        Conn {
            stream: Arc::new(Async::new(stream).unwrap()),
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
