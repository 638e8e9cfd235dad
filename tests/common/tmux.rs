//! The real programs in a real terminal: a `natter serve` child process and
//! a tmux server of the test's own, both ended on drop. Tests that need
//! tmux (or another program) call [`skip_without`] first: without it they
//! skip with a reason, and under `CI=true` they fail, since CI installs it.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_natter");

/// Whether each of `programs` (a name and an argument it answers, such as
/// `("tmux", "-V")`) runs here; if one does not, says so and returns true,
/// or fails the test on CI.
pub fn skip_without(programs: &[(&str, &str)]) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .filter(|(program, arg)| {
            Command::new(program)
                .arg(arg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
        })
        .map(|(program, _)| *program)
        .collect();
    if missing.is_empty() {
        return false;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{missing:?} must be installed on CI"
    );
    eprintln!("skipped: this test needs {missing:?}");
    true
}

/// A `natter serve` child process on `addr` with history and accounts in
/// memory (a test must not write to the user's data directory), killed on
/// drop.
pub struct ServerProcess(Child);

impl ServerProcess {
    /// Starts it and waits until it listens.
    pub fn start(addr: SocketAddr) -> ServerProcess {
        let child = Command::new(BIN)
            .args(["serve", "--no-web", "--bind", &addr.to_string()])
            .args(["--history", "memory", "--accounts", "memory"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start natter serve");
        let server = ServerProcess(child);
        super::retry(
            "the server to listen",
            100,
            Duration::from_millis(50),
            || TcpStream::connect(addr).ok(),
        );
        server
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tmux server of the test's own (its own socket) with one session,
/// killed on drop.
pub struct Tmux {
    socket: String,
    session: &'static str,
}

impl Tmux {
    /// A tmux server for `session`, named after it and this process; the
    /// session is started with [`Tmux::run`] (`new-session -s <session>`).
    pub fn new(session: &'static str) -> Tmux {
        Tmux {
            socket: format!("natter-{session}-{}", std::process::id()),
            session,
        }
    }

    /// Runs a tmux command against this server.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// The screen as text.
    pub fn capture(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", self.session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (at most 10 s) until the screen shows `text`, and returns it.
    pub fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let screen = self.capture();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {text:?}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `literal`.
    pub fn keys(&self, literal: &str) {
        self.run(&["send-keys", "-t", self.session, "-l", literal]);
    }

    /// Presses a named key, such as `Enter` or `Tab`.
    pub fn key(&self, key: &str) {
        self.run(&["send-keys", "-t", self.session, key]);
    }

    /// A tmux format of the pane, like `#{pane_dead}`.
    pub fn pane(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", self.session, format]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
