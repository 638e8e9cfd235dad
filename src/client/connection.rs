//! One client's connection to a natter server, on its own threads.
//!
//! (Over 800 lines on purpose: the manager thread's loop and the states it
//! moves through, connect, register, re-join, back off, read best as one
//! story; the types the rest of the client uses come first.)
//!
//! A manager thread owns the socket's writing half and all the connection
//! state; a reader thread per TCP connection blocks on the socket and hands
//! each line to the manager through the same channel the user's commands
//! arrive on. So the manager blocks on exactly one channel and an idle client
//! uses no CPU: no polling, no timers except the keepalive.
//!
//! The manager registers the nickname as soon as it connects and tracks which
//! nickname the server gave it (from `WELCOME` and `NICK`) and which rooms it
//! is in (from its own `JOIN` and `PART`), so that after a dropped connection
//! it can reconnect, with exponential back-off, register the same nickname
//! and join the same rooms again without the user doing anything.
//!
//! With [`Settings::tls`] (feature `tls`) each connection starts with a TLS
//! handshake on the manager thread, and both threads then go through one
//! rustls connection (see [`super::tls`]). A handshake that fails because of
//! what the server is, not because of the network (a certificate this
//! client does not trust, a plain-text port), ends the connection for good
//! with the reason instead of retrying: a certificate does not fix itself,
//! retrying would bury the reason under reconnection messages, and there is
//! never a fallback to plain text. The same holds for a plain connection
//! the server refuses with `ERR not-tls` (it reached a TLS port).
//!
//! Invariants:
//! - nothing received from the server can panic this code: lines are read with
//!   a length cap, decoded lossily and parsed by [`ServerLine::parse`]; lines it
//!   cannot parse are reported as [`Event::Unparsed`], except lines with a
//!   keyword it does not know, which PROTOCOL.md says clients ignore;
//! - no control character from the server gets through: a terminal showing
//!   the text cannot be driven by escape sequences;
//! - a command the user sends while there is no connection is never dropped
//!   silently: it comes back as [`Event::Refused`].

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use crate::names;
use crate::protocol::{Command, ErrorCode, Secret, ServerLine, ServerLineError, LOBBY};

/// The longest server line the client accepts, in bytes. A longer line is
/// reported as [`Event::Unparsed`] (shortened) instead of growing a buffer
/// without bound.
pub const MAX_LINE: usize = 16 * 1024;

/// The `PING` token of keepalive pings; their `PONG`s are not reported.
const KEEPALIVE_TOKEN: &str = "natter-keepalive";

/// How long to wait for a write before deciding the connection is dead. A
/// server that stops reading must not freeze the client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Something to send to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A command the client understands, sent in its canonical form.
    Command(Command),
    /// A line passed through as typed (without control characters), for slash
    /// commands this client does not know yet but a newer server might.
    Raw(String),
}

impl Outgoing {
    /// The line as it goes on the wire, without the line ending.
    pub fn to_line(&self) -> String {
        match self {
            Outgoing::Command(command) => command.to_line(),
            Outgoing::Raw(line) => line.chars().filter(|c| !c.is_control()).collect(),
        }
    }
}

/// Where the connection is, as the user should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Trying to reach the server; `attempt` counts from 1 since the last
    /// time the connection worked.
    Connecting {
        /// Which attempt this is.
        attempt: u32,
    },
    /// Connected and the nickname is sent; the server has not welcomed us
    /// yet (it may say the nickname is taken).
    Registering,
    /// Registered: chat works.
    Online,
    /// The connection failed or dropped; the next attempt starts after
    /// `retry_in`.
    Offline {
        /// Why, in words.
        reason: String,
        /// How long until the next attempt.
        retry_in: Duration,
    },
    /// Stopped for good: the user quit, the connection thread failed, or
    /// the server cannot be used as it is (a TLS certificate this client
    /// does not trust, TLS on one side only); the reason says which.
    Closed {
        /// Why, in words.
        reason: String,
    },
}

/// What the connection reports to its owner, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The connection state changed.
    State(ConnState),
    /// The server sent a line.
    Line(ServerLine),
    /// The server sent a line this client cannot parse (a newer server, or a
    /// broken one); shown raw rather than dropped or fatal.
    Unparsed {
        /// The line, lossily decoded, without its ending (shortened if it was
        /// longer than [`MAX_LINE`]).
        line: String,
        /// Why it did not parse.
        error: String,
    },
    /// A command that could not be sent because there is no connection.
    Refused(Outgoing),
}

/// How long to wait between reconnection attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure; it doubles after each further one.
    pub first: Duration,
    /// The longest wait, so a client whose server comes back reconnects
    /// soon enough.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(500),
            max: Duration::from_secs(15),
        }
    }
}

impl Backoff {
    /// The wait after `failures` consecutive failures (1 or more), with up to
    /// a quarter added at random so that clients of a restarted server do not
    /// all come back in the same instant.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        let base = self.first.saturating_mul(1 << doublings).min(self.max);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter_range = base.as_millis() as u64 / 4;
        let jitter = match jitter_range {
            0 => 0,
            range => u64::from(nanos) % range,
        };
        base + Duration::from_millis(jitter)
    }
}

/// What the connection needs to know; [`Settings::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `host:port` of the server.
    pub server: String,
    /// The nickname to register first.
    pub nick: String,
    /// Waits between reconnection attempts.
    pub backoff: Backoff,
    /// How long one connection attempt may take, so an unreachable host does
    /// not hang the client for the system's minutes-long default.
    pub connect_timeout: Duration,
    /// After this long without hearing from the server, the client sends a
    /// `PING`; after twice this long it gives the connection up. This finds
    /// connections that died without a word (a laptop lid closed, a NAT
    /// forgetting us).
    pub keepalive: Duration,
    /// How long to wait, after sending `QUIT`, for the server to close, so
    /// the quit reason reaches the others.
    pub quit_grace: Duration,
    /// Connect with TLS, trusting what these options say; `None` is plain
    /// TCP.
    #[cfg(feature = "tls")]
    pub tls: Option<super::tls::TlsOptions>,
}

impl Settings {
    /// Settings with sane defaults for a person at a terminal.
    pub fn new(server: impl Into<String>, nick: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            nick: nick.into(),
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(60),
            quit_grace: Duration::from_secs(1),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// What the manager thread is told, by the user or by a reader thread.
enum Input {
    Send(Outgoing),
    Quit(String),
    /// From the reader of connection number `generation`; lines from an
    /// older connection are ignored.
    Read {
        generation: u64,
        read: Read,
    },
}

enum Read {
    Line(String),
    TooLong(String),
    Closed(String),
}

/// A handle on the connection thread. Dropping it quits (without waiting).
pub struct Connection {
    inputs: Sender<Input>,
    /// Disconnected when the manager thread has ended.
    done: Receiver<()>,
}

impl Connection {
    /// Starts connecting in the background. `on_event` is called on the
    /// connection's thread for every [`Event`], in order; it should hand the
    /// event on (a channel, a UI's callback sink) rather than block.
    ///
    /// Fails only if the operating system refuses to start a thread.
    pub fn start(
        settings: Settings,
        on_event: impl FnMut(Event) + Send + 'static,
    ) -> io::Result<Self> {
        let (inputs, rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel::<()>();
        let readers = inputs.clone();
        thread::Builder::new()
            .name("natter-connection".into())
            .spawn(move || {
                let _done = done_tx;
                let mut manager = Manager {
                    nick: settings.nick.clone(),
                    rooms: Vec::new(),
                    rejoin: Vec::new(),
                    login: None,
                    proposed: None,
                    settings,
                    inputs: rx,
                    readers,
                    emit: Box::new(on_event),
                    generation: 0,
                };
                manager.run();
            })?;
        Ok(Self { inputs, done })
    }

    /// Queues a command for the server. If there is no connection it comes
    /// back as [`Event::Refused`]; if the connection thread has ended, nothing
    /// happens (it has already reported [`ConnState::Closed`]).
    pub fn send(&self, out: Outgoing) {
        let _ = self.inputs.send(Input::Send(out));
    }

    /// Sends `QUIT reason` and closes the connection; no reconnection
    /// follows. Returns at once; see [`Connection::wait`].
    pub fn quit(&self, reason: &str) {
        let _ = self.inputs.send(Input::Quit(reason.to_owned()));
    }

    /// Waits up to `timeout` for the connection thread to end; true if it
    /// has.
    pub fn wait(&self, timeout: Duration) -> bool {
        matches!(
            self.done.recv_timeout(timeout),
            Err(RecvTimeoutError::Disconnected) | Ok(())
        )
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.inputs.send(Input::Quit(String::new()));
    }
}

/// How a connection ended.
enum End {
    /// The user quit: stop for good.
    Quit,
    /// The connection was lost; reconnect.
    Lost {
        reason: String,
        /// True if the server had welcomed us, so the back-off starts over.
        registered: bool,
    },
    /// The server cannot be used as it is (see the module's doc): stop for
    /// good and say why.
    Refused { reason: String },
}

struct Manager {
    settings: Settings,
    /// The nickname to register: the one asked for, then the one the server
    /// confirmed.
    nick: String,
    /// The rooms we are in, the current one last.
    rooms: Vec<String>,
    /// The rooms to join again once the server welcomes us back.
    rejoin: Vec<String>,
    inputs: Receiver<Input>,
    /// Cloned into each reader thread.
    readers: Sender<Input>,
    emit: Box<dyn FnMut(Event) + Send>,
    /// Numbers the TCP connections, so a late line from an old one is ignored.
    generation: u64,
    /// The account we are logged in to and its password, kept (in memory
    /// only) to log in again after a reconnection: a registered nickname
    /// cannot be taken with `NICK`.
    login: Option<(String, Secret)>,
    /// A `LOGIN`, `REGISTER` or `PASSWORD` sent and not yet answered: the
    /// account and the password that will be right if it succeeds.
    proposed: Option<(String, Secret)>,
}

impl Manager {
    fn run(&mut self) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.reconnect()));
        let reason = match outcome {
            Ok(reason) => reason,
            Err(_) => "the connection thread failed (see the crash report)".to_owned(),
        };
        (self.emit)(Event::State(ConnState::Closed { reason }));
    }

    /// Connects, runs a session, waits, and again, until the user quits.
    /// Returns why it stopped.
    fn reconnect(&mut self) -> String {
        let mut failures = 0u32;
        loop {
            (self.emit)(Event::State(ConnState::Connecting {
                attempt: failures + 1,
            }));
            let end = match connect(&self.settings.server, self.settings.connect_timeout) {
                Ok(stream) => self.session(stream),
                Err(err) => End::Lost {
                    reason: format!("cannot reach {}: {err}", self.settings.server),
                    registered: false,
                },
            };
            let reason = match end {
                End::Quit => return "you quit".to_owned(),
                End::Refused { reason } => return format!("{reason}; not retrying"),
                End::Lost { reason, registered } => {
                    failures = if registered { 1 } else { failures + 1 };
                    reason
                }
            };
            let retry_in = self.settings.backoff.delay(failures);
            (self.emit)(Event::State(ConnState::Offline { reason, retry_in }));
            if !self.wait_offline(retry_in) {
                return "you quit".to_owned();
            }
        }
    }

    /// Waits out the back-off, refusing what the user sends meanwhile.
    /// Returns false if the user quit.
    fn wait_offline(&mut self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            match self.inputs.recv_timeout(left) {
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) | Ok(Input::Quit(_)) => return false,
                Ok(Input::Send(out)) => (self.emit)(Event::Refused(out)),
                Ok(Input::Read { .. }) => {}
            }
        }
    }

    /// Runs one TCP connection until it ends.
    fn session(&mut self, stream: TcpStream) -> End {
        self.generation += 1;
        let generation = self.generation;
        let lost = |err: io::Error| End::Lost {
            reason: format!("connection lost: {err}"),
            registered: false,
        };
        let _ = stream.set_nodelay(true);
        if let Err(err) = stream.set_write_timeout(Some(WRITE_TIMEOUT)) {
            return lost(err);
        }
        #[cfg(feature = "tls")]
        let tls = match &self.settings.tls {
            None => None,
            Some(options) => match super::tls::handshake(
                options,
                &self.settings.server,
                &stream,
                self.settings.connect_timeout,
            ) {
                Ok(tls) => Some(tls),
                Err(failure) => {
                    let _ = stream.shutdown(Shutdown::Both);
                    return match failure.fatal {
                        true => End::Refused {
                            reason: failure.reason,
                        },
                        false => End::Lost {
                            reason: failure.reason,
                            registered: false,
                        },
                    };
                }
            },
        };
        let reader = match stream.try_clone() {
            Ok(reader) => reader,
            Err(err) => return lost(err),
        };
        #[cfg(feature = "tls")]
        let source: Box<dyn io::Read + Send> = match &tls {
            Some(tls) => Box::new(super::tls::TlsReader::new(tls.clone(), reader)),
            None => Box::new(reader),
        };
        #[cfg(not(feature = "tls"))]
        let source = reader;
        let readers = self.readers.clone();
        let spawned = thread::Builder::new()
            .name("natter-reader".into())
            .spawn(move || read_lines(generation, source, &readers));
        if let Err(err) = spawned {
            return lost(err);
        }
        let mut session = Session {
            stream,
            generation,
            registered: false,
            refused: None,
            #[cfg(feature = "tls")]
            tls,
        };
        let end = self.converse(&mut session);
        #[cfg(feature = "tls")]
        if let Some(tls) = &session.tls {
            super::tls::close(tls, &session.stream);
        }
        // Unblocks the reader thread, which then ends.
        let _ = session.stream.shutdown(Shutdown::Both);
        end
    }

    fn converse(&mut self, session: &mut Session) -> End {
        if !self.rooms.is_empty() {
            self.rejoin = std::mem::take(&mut self.rooms);
        }
        (self.emit)(Event::State(ConnState::Registering));
        let register = match &self.login {
            Some((nick, password)) => Command::Login {
                nick: nick.clone(),
                password: password.clone(),
            },
            None => Command::Nick(self.nick.clone()),
        };
        if let Err(err) = session.write(&register.to_line()) {
            return session.lost(err);
        }
        let mut heard = Instant::now();
        let mut ping_sent = false;
        loop {
            let left = self.settings.keepalive.saturating_sub(heard.elapsed());
            let input = match self.inputs.recv_timeout(left) {
                Ok(input) => input,
                Err(RecvTimeoutError::Timeout) if ping_sent => {
                    return End::Lost {
                        reason: "the server stopped answering".to_owned(),
                        registered: session.registered,
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    ping_sent = true;
                    heard = Instant::now();
                    let ping = Command::Ping(KEEPALIVE_TOKEN.to_owned()).to_line();
                    if let Err(err) = session.write(&ping) {
                        return session.lost(err);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return self.quit(session, String::new()),
            };
            match input {
                Input::Read { generation, .. } if generation != session.generation => {}
                Input::Read { read, .. } => match read {
                    Read::Line(line) => {
                        heard = Instant::now();
                        ping_sent = false;
                        self.receive(session, &line);
                        if let Some(reason) = session.refused.take() {
                            return End::Refused { reason };
                        }
                    }
                    Read::TooLong(start) => {
                        heard = Instant::now();
                        (self.emit)(Event::Unparsed {
                            line: start,
                            error: format!("line longer than {MAX_LINE} bytes"),
                        });
                    }
                    Read::Closed(reason) => {
                        return End::Lost {
                            reason,
                            registered: session.registered,
                        }
                    }
                },
                Input::Send(out) => {
                    if let (Outgoing::Command(Command::Nick(nick)), false) =
                        (&out, session.registered)
                    {
                        self.nick = nick.clone();
                    }
                    if let Outgoing::Command(command) = &out {
                        self.propose(command);
                    }
                    if let Err(err) = session.write(&out.to_line()) {
                        (self.emit)(Event::Refused(out));
                        return session.lost(err);
                    }
                }
                Input::Quit(reason) => return self.quit(session, reason),
            }
        }
    }

    /// Handles one line from the server: keeps track of our nickname and
    /// reports the line.
    fn receive(&mut self, session: &mut Session, line: &str) {
        if line.starts_with("ERR not-tls") && !session.encrypted() {
            session.refused = Some(format!(
                "the server says this port is for TLS clients; use natter's TLS option (--tls) \
                 or the plain port ({line})"
            ));
        }
        let parsed = match ServerLine::parse(line) {
            Ok(parsed) => parsed,
            // PROTOCOL.md: later versions add keywords; clients ignore them.
            Err(ServerLineError::UnknownKeyword(_)) => return,
            Err(err) => {
                return (self.emit)(Event::Unparsed {
                    line: line.to_owned(),
                    error: err.to_string(),
                })
            }
        };
        match &parsed {
            ServerLine::Account { nick, .. } => {
                let proposed = self.proposed.take();
                self.login = proposed
                    .filter(|(account, _)| names::fold(account) == names::fold(nick))
                    .map(|(_, password)| (nick.clone(), password));
            }
            ServerLine::Info(text) if text == "Your password is changed." => {
                if let Some((account, password)) = self.proposed.take() {
                    if self.login.is_some() {
                        self.login = Some((account, password));
                    }
                }
            }
            ServerLine::Err { code, .. } => {
                if matches!(
                    code,
                    ErrorCode::LoginFailed
                        | ErrorCode::LoginThrottled
                        | ErrorCode::NickRegistered
                        | ErrorCode::Busy
                        | ErrorCode::Banned
                ) {
                    self.proposed = None;
                }
                // The saved password no longer works (reset by the
                // server's administrator): register as a guest would, and
                // let the user answer the prompt that follows.
                if *code == ErrorCode::LoginFailed && !session.registered && self.login.is_some() {
                    self.login = None;
                    let _ = session.write(&Command::Nick(self.nick.clone()).to_line());
                }
            }
            _ => {}
        }
        let welcomed = match &parsed {
            ServerLine::Welcome { nick, .. } => {
                self.nick = nick.clone();
                session.registered = true;
                true
            }
            ServerLine::Nick { old, new, .. }
                if session.registered && old.eq_ignore_ascii_case(&self.nick) =>
            {
                self.nick = new.clone();
                false
            }
            ServerLine::Pong(token) if token == KEEPALIVE_TOKEN => return,
            ServerLine::Join { room, nick, .. } if nick.eq_ignore_ascii_case(&self.nick) => {
                self.rooms.retain(|r| !r.eq_ignore_ascii_case(room));
                self.rooms.push(room.clone());
                false
            }
            ServerLine::Part { room, nick, .. } if nick.eq_ignore_ascii_case(&self.nick) => {
                self.rooms.retain(|r| !r.eq_ignore_ascii_case(room));
                false
            }
            ServerLine::Info(text) => {
                // The server says this whenever the current room changes.
                let current = text
                    .strip_prefix("Messages without a room now go to ")
                    .and_then(|rest| rest.strip_suffix('.'));
                if let Some(i) = current
                    .and_then(|room| self.rooms.iter().position(|r| r.eq_ignore_ascii_case(room)))
                {
                    let room = self.rooms.remove(i);
                    self.rooms.push(room);
                }
                false
            }
            _ => false,
        };
        (self.emit)(Event::Line(parsed));
        if welcomed {
            (self.emit)(Event::State(ConnState::Online));
            self.join_again(session);
        }
    }

    /// Remembers what a command will make our password, if the server
    /// agrees.
    fn propose(&mut self, command: &Command) {
        self.proposed = match command {
            Command::Login { nick, password } => Some((nick.clone(), password.clone())),
            Command::Register(password) => Some((self.nick.clone(), password.clone())),
            Command::Password { new, .. } => self
                .login
                .as_ref()
                .map(|(account, _)| (account.clone(), new.clone())),
            _ => return,
        };
    }

    /// After a reconnection, joins the rooms we were in, the current one
    /// last so that it is current again. The server puts us in the lobby
    /// itself.
    fn join_again(&mut self, session: &mut Session) {
        let rooms = std::mem::take(&mut self.rejoin);
        let current_is_lobby = rooms.last().is_some_and(|r| r.eq_ignore_ascii_case(LOBBY));
        let mut joins: Vec<&String> = rooms
            .iter()
            .filter(|r| !r.eq_ignore_ascii_case(LOBBY))
            .collect();
        let lobby = LOBBY.to_owned();
        if current_is_lobby && !joins.is_empty() {
            joins.push(&lobby);
        }
        for room in joins {
            if session
                .write(&Command::Join(room.clone()).to_line())
                .is_err()
            {
                // The reader sees the connection end and the manager reconnects.
                return;
            }
        }
    }

    /// Sends `QUIT` and waits briefly for the server's goodbye, so the reason
    /// reaches the others.
    fn quit(&mut self, session: &mut Session, reason: String) -> End {
        if session.write(&Command::Quit(reason).to_line()).is_err() {
            return End::Quit;
        }
        let deadline = Instant::now() + self.settings.quit_grace;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.inputs.recv_timeout(left) {
                Ok(Input::Read {
                    generation,
                    read: Read::Line(line),
                }) if generation == session.generation => self.receive(session, &line),
                Ok(Input::Read {
                    generation,
                    read: Read::Closed(_),
                }) if generation == session.generation => return End::Quit,
                Ok(_) => {}
                Err(_) => return End::Quit,
            }
        }
    }
}

/// The state of one TCP connection.
struct Session {
    stream: TcpStream,
    generation: u64,
    /// The server has welcomed us on this connection.
    registered: bool,
    /// Set when the server said something that means this connection can
    /// never work (see [`End::Refused`]).
    refused: Option<String>,
    /// The TLS connection, which every byte goes through, if any.
    #[cfg(feature = "tls")]
    tls: Option<super::tls::Shared>,
}

impl Session {
    fn write(&mut self, line: &str) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return super::tls::write(tls, &self.stream, &bytes);
        }
        self.stream.write_all(&bytes)
    }

    /// Whether this connection runs over TLS.
    fn encrypted(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    fn lost(&self, err: io::Error) -> End {
        End::Lost {
            reason: format!("connection lost: {err}"),
            registered: self.registered,
        }
    }
}

/// Resolves `server` and connects to the first address that answers.
fn connect(server: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
    for addr in server.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// The reader thread: reads lines until the connection ends or the manager
/// has gone. `source` is the socket, or its TLS plaintext.
fn read_lines(generation: u64, source: impl io::Read, to: &Sender<Input>) {
    let mut reader = BufReader::with_capacity(8 * 1024, source);
    let mut buf = Vec::new();
    loop {
        let read = match read_line(&mut reader, &mut buf, MAX_LINE) {
            Ok(Some(true)) => Read::Line(decode(&buf)),
            Ok(Some(false)) => {
                let mut start = decode(&buf[..buf.len().min(200)]);
                start.push('…');
                Read::TooLong(start)
            }
            Ok(None) => Read::Closed("the server closed the connection".to_owned()),
            Err(err) => Read::Closed(format!("connection lost: {err}")),
        };
        let closed = matches!(read, Read::Closed(_));
        if to.send(Input::Read { generation, read }).is_err() || closed {
            return;
        }
    }
}

/// Lossy UTF-8, so that a broken server cannot make the client fail, and
/// no control characters, so that it cannot move the cursor or change the
/// colours of whatever terminal shows the line: each becomes U+FFFD (a tab
/// becomes a space).
fn decode(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => char::REPLACEMENT_CHARACTER,
            c => c,
        })
        .collect()
}

/// Reads one line into `buf`, without its LF or CRLF ending.
///
/// Returns `Some(true)` for a line, `Some(false)` for a line longer than
/// `max` (`buf` holds its first `max` bytes; the rest was skipped) and `None`
/// at a clean end of stream. Bytes after the last line ending, at the end of
/// the stream, count as a line.
pub fn read_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if available.is_empty() {
            return Ok(any.then_some(!too_long));
        }
        any = true;
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        let room = max.saturating_sub(buf.len());
        if chunk.len() > room {
            too_long = true;
        }
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = found.unwrap_or(available.len());
        reader.consume(used);
        if found.is_some() {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Some(!too_long));
        }
    }
}

#[cfg(test)]
mod tests;
