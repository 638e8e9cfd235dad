//! The plain-text transport: the protocol straight on the socket, as `nc`
//! and `telnet` speak it.
//!
//! **Invariant:** this is the hot path and stays lean: non-blocking reads
//! into a stack buffer after readiness (an idle connection holds no read
//! buffer), and one write of up to 16 KiB gathered in a buffer that belongs
//! to the worker thread (an idle connection holds no write buffer either).
//! Readiness is polled on the socket's own waker slots (one reader, one
//! writer), which cost nothing to wait on.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use futures_lite::future;
use smol::Async;

use super::lines;
use super::transport::{Input, Output};
use super::Session;
use crate::protocol::Line;

/// The plain-text transport: non-blocking reads and gathered writes on the
/// socket, with no buffer of its own between them (reads use the stack,
/// writes a buffer of the worker thread).
#[derive(Clone, Copy)]
struct Plain<'a>(&'a Async<TcpStream>);

impl Input for Plain<'_> {
    async fn read_some(&mut self) -> io::Result<Vec<u8>> {
        loop {
            // Polled in place rather than through `readable()`, whose
            // future keeps its waker in a per-socket list that allocates:
            // one reader per socket needs only the socket's own slot.
            future::poll_fn(|cx| self.0.poll_readable(cx)).await?;
            match read_now(self.0) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

/// Serves a connection to the plain-text listener until it ends, and
/// returns why, for the log.
pub(crate) async fn run(session: &Session, stream: Arc<Async<TcpStream>>) -> String {
    // Chat lines are small and latency matters more than packet count; the
    // writer already coalesces what is queued into one write.
    let _ = stream.get_ref().set_nodelay(true);
    let plain = Plain(&stream);
    let reason = lines::run_session(session, plain, plain).await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
    reason
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
                    future::poll_fn(|cx| stream.poll_writable(cx)).await?;
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
