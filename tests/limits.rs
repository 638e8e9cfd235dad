//! The server at its operating system's limits: out of file descriptors.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::raw::Client;

/// A `natter serve` child allowed only `fds` open file descriptors.
struct Limited(Child);

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_with_fd_limit(fds: u32) -> (Limited, std::net::SocketAddr) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let script = format!(
        "ulimit -n {fds} && exec \"$0\" serve --no-web --bind 127.0.0.1:{port} --history off --accounts memory --threads 1"
    );
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_natter"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start natter serve under ulimit");
    let addr = format!("127.0.0.1:{port}").parse().expect("address");
    common::retry("the server accepts", 100, Duration::from_millis(50), || {
        std::net::TcpStream::connect(addr).ok()
    });
    (Limited(child), addr)
}

#[test]
fn out_of_descriptors_refuses_newcomers_politely_and_serves_the_rest() {
    // Story: at the process's descriptor limit a newcomer is told the server is full, and everyone inside keeps chatting.
    let (_server, addr) = serve_with_fd_limit(48);
    let mut inside = Vec::new();
    let mut refused = None;
    for i in 0..100 {
        let mut client = Client::connect(addr);
        let first = client.line();
        if first.starts_with("ERR server-full ") {
            client.expect("BYE ");
            client.expect_eof();
            refused = Some(i);
            break;
        }
        assert!(first.starts_with("HELLO "), "{first}");
        client.send_line(&format!("NICK user{i}"));
        client.expect("WELCOME ");
        inside.push(client);
    }
    let refused = refused.expect("the descriptor limit was reached within 100 clients");
    assert!(
        refused > 10,
        "only {refused} clients fit under 48 descriptors"
    );

    // Everyone inside is still served.
    let (first, rest) = inside.split_first_mut().expect("clients inside");
    let last = rest.last_mut().expect("more than one client inside");
    last.send_line("PING still-here");
    last.until("PONG still-here");
    first.send_line("hello from the first");
    assert!(last.until("MSG ").ends_with(" user0 hello from the first"));

    // When someone leaves, a newcomer gets in again.
    let mut leaver = inside.pop().expect("a client to leave");
    leaver.send_line("QUIT");
    leaver.until("BYE ");
    drop(leaver);
    let newcomer = common::retry(
        "a newcomer is accepted again",
        50,
        Duration::from_millis(100),
        || {
            let mut client = Client::connect(addr);
            client.line().starts_with("HELLO ").then_some(client)
        },
    );
    drop(newcomer);
}
