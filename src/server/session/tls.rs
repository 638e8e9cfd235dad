//! A session on the TLS listener: the wrong-port check, the handshake under
//! a deadline, and the transport that reads and writes through rustls.
//!
//! All of it runs on the session's own task, never in the accept loop, so a
//! slow or silent peer holds only its own slot, and only until
//! `Config::tls_handshake_timeout`.

use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use futures_rustls::server::TlsStream;
use futures_rustls::TlsAcceptor;
use smol::{Async, Timer};

use super::lines;
use super::transport::{Input, Output, Ports, Socket};
use super::Session;
use crate::config::Config;
use crate::decoder::TLS_HANDSHAKE;
use crate::protocol::Line;
use crate::protocol::{ErrorCode, ServerLine};

/// The most bytes a TLS write carries: lines queued together are copied into
/// one buffer of about this size, so they go out in few records.
const WRITE_CHUNK: usize = 16 * 1024;

/// Bytes read from TLS at once, as the plain path reads from the socket.
const READ_CHUNK: usize = 4096;

/// How long the goodbye to a peer on the wrong port, or past the limit on
/// clients, may take.
const GOODBYE_TIME: Duration = Duration::from_secs(1);

/// What a wrong-port peer may send while it is told so: its bytes are read
/// and dropped, so that closing sends FIN rather than a reset that could
/// destroy the explanation before it is read.
const GOODBYE_DRAIN: usize = 64 * 1024;

/// Reads through TLS.
struct TlsInput(ReadHalf<TlsStream<Socket>>);

impl Input for TlsInput {
    async fn read_some(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = [0u8; READ_CHUNK];
        let n = self.0.read(&mut buf).await?;
        Ok(buf.get(..n).unwrap_or_default().to_vec())
    }
}

/// Writes through TLS: a batch is copied into one buffer of up to
/// [`WRITE_CHUNK`] bytes at a time (TLS encrypts a copy anyway), written
/// and flushed.
struct TlsOutput(WriteHalf<TlsStream<Socket>>);

impl Output for TlsOutput {
    async fn write_batch(&mut self, batch: &mut VecDeque<Line>) -> io::Result<()> {
        let total: usize = batch.iter().map(|line| line.len()).sum();
        let mut buf = Vec::with_capacity(total.min(WRITE_CHUNK));
        while !batch.is_empty() {
            buf.clear();
            while let Some(line) = batch.front() {
                if !buf.is_empty() && buf.len() + line.len() > WRITE_CHUNK {
                    break;
                }
                buf.extend_from_slice(line);
                batch.pop_front();
            }
            self.0.write_all(&buf).await?;
        }
        self.0.flush().await
    }

    async fn finish(&mut self) {
        // close_notify, so the client knows the goodbye was complete.
        future::or(
            async {
                let _ = self.0.close().await;
            },
            sleep(GOODBYE_TIME),
        )
        .await;
    }
}

/// Waits `time`; for racing against with `future::or`.
async fn sleep(time: Duration) {
    Timer::after(time).await;
}

/// Serves a connection to the TLS listener: handshake, then the same
/// session as on the plain port.
pub(crate) async fn run(
    session: &Session,
    stream: Arc<Async<TcpStream>>,
    acceptor: TlsAcceptor,
) -> String {
    let _ = stream.get_ref().set_nodelay(true);
    let reason = match handshake(&stream, &acceptor, &session.config, session.ports).await {
        Ok(tls) => {
            let (input, output) = futures_lite::io::split(tls);
            lines::run_session(session, TlsInput(input), TlsOutput(output)).await
        }
        Err(reason) => reason,
    };
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
    reason
}

/// Waits for the peer's first byte, sends a plain-text client away with
/// `ERR not-tls`, and completes the handshake; all of it within
/// `config.tls_handshake_timeout`. The error is the reason, for the log.
async fn handshake(
    stream: &Arc<Async<TcpStream>>,
    acceptor: &TlsAcceptor,
    config: &Config,
    ports: Ports,
) -> Result<TlsStream<Socket>, String> {
    let deadline = Instant::now() + config.tls_handshake_timeout;
    let first = future::or(async { Some(first_byte(stream).await) }, async {
        Timer::at(deadline).await;
        None
    })
    .await;
    match first {
        // A TLS client speaks first; a person at `nc` waits for a
        // greeting. Either way this is no TLS handshake: say so.
        None => {
            not_tls(stream, ports).await;
            return Err("TLS handshake timed out: the peer sent nothing".into());
        }
        Some(Ok(None)) => return Err("connection closed before the TLS handshake".into()),
        Some(Ok(Some(TLS_HANDSHAKE))) => {}
        Some(Ok(Some(_))) => {
            not_tls(stream, ports).await;
            return Err("not TLS: plain text on the TLS port".into());
        }
        Some(Err(err)) => return Err(format!("read failed: {err}")),
    }
    let accepted = future::or(
        async { Some(acceptor.accept(Socket(Arc::clone(stream))).await) },
        async {
            Timer::at(deadline).await;
            None
        },
    )
    .await;
    match accepted {
        Some(Ok(tls)) => Ok(tls),
        Some(Err(err)) => Err(format!("TLS handshake failed: {err}")),
        None => Err("TLS handshake timed out".into()),
    }
}

/// The first byte the peer sent, left in the socket for the handshake;
/// `None` if it closed without sending any.
async fn first_byte(stream: &Async<TcpStream>) -> io::Result<Option<u8>> {
    loop {
        stream.readable().await?;
        let mut byte = [0u8; 1];
        match stream.get_ref().peek(&mut byte) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(byte.first().copied()),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
}

/// The sentence for a plain-text client on the TLS port: where to go
/// instead.
fn not_tls_sentence(ports: Ports) -> String {
    match (ports.plain, ports.tls) {
        (Some(plain), _) => {
            format!("This port speaks TLS; for plain text (nc, telnet) connect to port {plain}.")
        }
        (None, Some(tls)) => format!(
            "This server speaks only TLS; connect with: openssl s_client -quiet -connect HOST:{tls}"
        ),
        (None, None) => "This port speaks TLS.".into(),
    }
}

/// Tells a plain-text peer, in plain text, that this is the TLS port, and
/// closes: at most [`GOODBYE_TIME`].
async fn not_tls(stream: &Arc<Async<TcpStream>>, ports: Ports) {
    let mut bytes = Vec::new();
    ServerLine::Err {
        code: ErrorCode::NotTls,
        text: not_tls_sentence(ports),
    }
    .encode(&mut bytes);
    ServerLine::Bye("Goodbye.".into()).encode(&mut bytes);
    let goodbye = async {
        let mut writer: &Async<TcpStream> = stream;
        if writer.write_all(&bytes).await.is_err() {
            return;
        }
        let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
        // Read what the peer sent, so that closing is a FIN, until it closes
        // too; bounded in bytes and time.
        let mut reader: &Async<TcpStream> = stream;
        let mut buf = [0u8; READ_CHUNK];
        let mut drained = 0;
        while drained < GOODBYE_DRAIN {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    future::or(goodbye, sleep(GOODBYE_TIME)).await;
}

/// Tells a newcomer on the TLS port why it is refused (`refusal`, the
/// same bytes the plain port sends), inside TLS so its client can show it,
/// and closes. Runs on its own task; the handshake and the goodbye are
/// bounded in time like any other.
pub(crate) async fn refuse(
    stream: Arc<Async<TcpStream>>,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    refusal: Vec<u8>,
) {
    let refusal = async {
        let Ok(mut tls) = acceptor.accept(Socket(Arc::clone(&stream))).await else {
            return;
        };
        let _ = tls.write_all(&refusal).await;
        let _ = tls.close().await;
    };
    future::or(
        refusal,
        sleep(handshake_timeout.min(GOODBYE_TIME * 5) + GOODBYE_TIME),
    )
    .await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_not_tls_sentence_names_the_plain_port() {
        let both = Ports {
            plain: Some(5555),
            tls: Some(5556),
        };
        assert!(not_tls_sentence(both).contains("port 5555"));
        let tls_only = Ports {
            plain: None,
            tls: Some(5556),
        };
        assert!(not_tls_sentence(tls_only).contains(":5556"));
        for ports in [both, tls_only, Ports::default()] {
            assert!(crate::protocol::is_clean(&not_tls_sentence(ports)));
        }
    }
}
