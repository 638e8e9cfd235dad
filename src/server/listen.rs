//! Opening a listener with a backlog sized for a crowd.
//!
//! The standard library listens with a backlog of 128. When thousands of
//! clients come back at once (after a restart, or a network cut), the
//! kernel's queue of connections waiting for `accept` overflows at 129, and
//! every newcomer past it has its SYN dropped and retried a second later,
//! then three, then seven: a storm that the server could take in two
//! seconds took ten. So listeners are opened with socket2, which lets us
//! say how many may wait; the kernel caps it (on Linux at
//! `net.core.somaxconn`, 4096 by default).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

/// How many connections may wait for `accept` unless the operator says
/// otherwise (`--listen-backlog`).
pub const DEFAULT_BACKLOG: u32 = 4096;

/// Listens on `address` (as `TcpListener::bind` takes it: an address and
/// port, or a name that resolves to some) with room for `backlog`
/// connections waiting to be accepted. Like the standard library, it tries
/// each address the name resolves to and keeps the first that works.
pub fn listen(address: &str, backlog: u32) -> io::Result<smol::net::TcpListener> {
    let mut last = None;
    for addr in address.to_socket_addrs()? {
        match listen_on(addr, backlog) {
            Ok(listener) => return smol::net::TcpListener::try_from(listener),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

fn listen_on(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As the standard library does: a restarted server may listen again
    // while its old connections linger in TIME_WAIT. (On Windows the same
    // option would let two servers share the port, so it is left off.)
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Connections the kernel has completed but nobody has accepted wait
    /// in the backlog: past 128 (the standard library's) they would hang.
    #[test]
    fn more_than_128_newcomers_wait_for_accept_when_the_backlog_allows() {
        let listener = listen("127.0.0.1:0", 512).expect("listen");
        let addr = listener.local_addr().expect("address");
        let waiting: Vec<_> = (0..300)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    .unwrap_or_else(|err| panic!("connection {i} not queued: {err}"))
            })
            .collect();
        assert_eq!(waiting.len(), 300);
    }

    #[test]
    fn a_name_that_resolves_is_listened_on_and_a_bad_address_is_an_error() {
        let listener = listen("localhost:0", 16).expect("localhost resolves");
        assert!(listener.local_addr().expect("address").ip().is_loopback());
        assert!(listen("not an address", 16).is_err());
    }
}
