//! What a session runs over: the [`Input`] and [`Output`] traits each
//! transport implements, and the [`Ports`] the sessions' sentences name.
//!
//! The traits are used generically (monomorphised), never as trait objects,
//! so the plain path pays nothing for there being other transports.

use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use smol::Async;

use crate::protocol::Line;

/// Where a session's bytes come from: the socket itself, or what TLS
/// decrypted from it. Monomorphised, so the plain path pays nothing for
/// the choice.
#[cfg_attr(not(any(feature = "tls", feature = "web")), allow(dead_code))]
pub(crate) trait Input {
    /// Waits for bytes and returns them; empty once the peer has closed.
    async fn read_some(&mut self) -> io::Result<Vec<u8>>;
}

/// Where a session's lines go: the socket itself, or TLS on top of it.
#[cfg_attr(not(any(feature = "tls", feature = "web")), allow(dead_code))]
pub(crate) trait Output {
    /// Writes every line of `batch`, emptying it.
    async fn write_batch(&mut self, batch: &mut VecDeque<Line>) -> io::Result<()>;

    /// Ends the stream politely once everything is written (TLS sends its
    /// close_notify); the socket itself is shut down by the caller.
    async fn finish(&mut self) {}
}

/// The connection's socket as a stream for the layers that take one (TLS,
/// HTTP, the WebSocket), shared with the connection's task, which shuts it
/// down whatever state they leave it in. Closing it shuts down the sending
/// side only: the end of an HTTP response, or after TLS's close_notify.
#[cfg_attr(not(any(feature = "tls", feature = "web")), allow(dead_code))]
pub(crate) struct Socket(pub(crate) Arc<Async<TcpStream>>);

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

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.0.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

/// Where the listeners are, for the sentences that send a client that came
/// to the wrong one to the right one.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ports {
    /// The plain-text listener's port, if there is one.
    pub(crate) plain: Option<u16>,
    /// The TLS listener's port, if there is one.
    pub(crate) tls: Option<u16>,
}
