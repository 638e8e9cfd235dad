//! The hub: the one owner of who is connected, who is called what, and who
//! hears what.
//!
//! It is a plain state machine with no IO and no clock: the server's hub task
//! feeds it connects, commands and disconnects with the current time, and it
//! pushes encoded lines into each client's [`Outbox`]. That is what lets the
//! fuzzers and unit tests drive it directly, with many clients, in one thread.
//!
//! Invariants (checked by the tests and the hub fuzz target):
//! - nicknames are unique case-insensitively;
//! - every registered client is in `#lobby`, and `USERS` lists exactly them;
//! - nobody is sent their own chat message;
//! - a client whose outbox rejects a line is removed at once, its leave is
//!   announced once, and nobody else waits for it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use crate::names::{self, NickError};
use crate::protocol::{Command, ErrorCode, ServerLine, Timestamp, LOBBY, PROTOCOL_VERSION};

/// An encoded server line (with CRLF), shared by every recipient of a broadcast.
pub type Line = Arc<[u8]>;

/// Identifies a connection for its whole life; never reused by one hub.
pub type ClientId = u64;

/// Why an outbox refused a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The client has not read what it was sent and its queue is at its limit.
    #[error("outbox full")]
    Full,
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
}

/// Where the hub puts lines for one client. The server's implementation is a
/// bounded channel drained by the client's writer task.
pub trait Outbox {
    /// Queues a line for the client, or says why it cannot.
    fn push(&mut self, line: &Line) -> Result<(), Rejected>;
    /// Nothing more will be queued: the connection closes once the queued
    /// lines are written.
    fn close(&mut self);
}

impl Outbox for async_channel::Sender<Line> {
    fn push(&mut self, line: &Line) -> Result<(), Rejected> {
        self.try_send(Line::clone(line)).map_err(|e| match e {
            async_channel::TrySendError::Full(_) => Rejected::Full,
            async_channel::TrySendError::Closed(_) => Rejected::Closed,
        })
    }

    fn close(&mut self) {
        async_channel::Sender::close(self);
    }
}

/// Encodes a line once, ready to share among recipients.
pub fn encode(line: &ServerLine) -> Line {
    let mut out = Vec::with_capacity(64);
    line.encode(&mut out);
    out.into()
}

struct Client<O> {
    /// `None` until the client picks a nickname.
    nick: Option<String>,
    outbox: O,
}

/// The chat's state: clients, their nicknames and the lobby's membership.
pub struct Hub<O> {
    clients: HashMap<ClientId, Client<O>>,
    /// Registered clients by folded nickname; sorted, so `USERS` is too.
    nicks: BTreeMap<String, ClientId>,
    /// The id of the last chat message; ids only grow.
    last_msg_id: u64,
    /// Clients whose outbox rejected a line, to be removed once the current
    /// broadcast is done.
    dropped: Vec<(ClientId, Rejected)>,
    /// Connections in the order they came, with the Unix second by which
    /// they must have a nickname; deadlines only grow, so expiry pops the front.
    deadlines: VecDeque<(i64, ClientId)>,
    /// Seconds a connection may go without a nickname.
    register_timeout: i64,
}

impl<O: Outbox> Hub<O> {
    /// An empty chat whose connections must pick a nickname within
    /// `register_timeout_secs` seconds.
    pub fn new(register_timeout_secs: u64) -> Self {
        Self {
            clients: HashMap::new(),
            nicks: BTreeMap::new(),
            last_msg_id: 0,
            dropped: Vec::new(),
            deadlines: VecDeque::new(),
            register_timeout: i64::try_from(register_timeout_secs).unwrap_or(i64::MAX),
        }
    }

    /// A new connection at `now`: greets it. It must register with `NICK` to
    /// chat.
    pub fn connect(&mut self, id: ClientId, outbox: O, now: Timestamp) {
        self.clients.insert(id, Client { nick: None, outbox });
        let deadline = now.unix().saturating_add(self.register_timeout);
        self.deadlines.push_back((deadline, id));
        self.send(id, &greeting());
        self.settle(now);
    }

    /// Closes the connections that have gone without a nickname past their
    /// deadline. The server calls it about once a second.
    pub fn tick(&mut self, now: Timestamp) {
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if deadline > now.unix() {
                break;
            }
            self.deadlines.pop_front();
            if self.nick(id).is_some() || !self.clients.contains_key(&id) {
                continue;
            }
            let secs = self.register_timeout;
            self.error(
                id,
                ErrorCode::Timeout,
                format!("No nickname was picked within {secs} seconds; closing the connection."),
            );
            self.send(
                id,
                &ServerLine::Bye("Come back when you have a nickname.".into()),
            );
            self.remove(id, "registration timeout", now);
        }
        self.settle(now);
    }

    /// Applies one command from client `id`, received at `now`.
    pub fn command(&mut self, id: ClientId, command: Command, now: Timestamp) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        let registered = client.nick.is_some();
        match command {
            Command::Nick(nick) => self.set_nick(id, &nick, now),
            Command::Help => {
                for text in HELP {
                    self.send(id, &ServerLine::Info(text.to_owned()));
                }
            }
            Command::Ping(token) => self.send(id, &ServerLine::Pong(token)),
            Command::Quit(reason) => {
                self.send(id, &ServerLine::Bye("Goodbye!".to_owned()));
                self.remove(id, &reason, now);
            }
            _ if !registered => self.error(
                id,
                ErrorCode::NotRegistered,
                "Pick a nickname first: type NICK yourname (letters, digits, _ and -).".into(),
            ),
            Command::Msg { room, text } => {
                if let Some(room) = room.filter(|r| !r.eq_ignore_ascii_case(LOBBY)) {
                    return self.no_such_room(id, &room);
                }
                self.last_msg_id += 1;
                let nick = self.nick_of(id).to_owned();
                let line = encode(&ServerLine::Msg {
                    time: now,
                    id: self.last_msg_id,
                    room: LOBBY.to_owned(),
                    nick,
                    text,
                });
                self.broadcast(&line, Some(id));
            }
            Command::Users { room } => match room.filter(|r| !r.eq_ignore_ascii_case(LOBBY)) {
                Some(room) => self.no_such_room(id, &room),
                None => self.send(id, &self.users()),
            },
            _ => self.error(
                id,
                ErrorCode::UnknownCommand,
                "Rooms, private messages and history are not available yet.".into(),
            ),
        }
        self.settle(now);
    }

    /// Sends an encoded line to client `id` alone.
    pub fn reply(&mut self, id: ClientId, line: &Line, now: Timestamp) {
        self.send_encoded(id, line);
        self.settle(now);
    }

    /// Client `id`'s connection ended (EOF, reset, error, timeout). Removes it
    /// and announces the leave if it had a nickname; a second call for the
    /// same client does nothing.
    pub fn disconnect(&mut self, id: ClientId, reason: &str, now: Timestamp) {
        self.remove(id, reason, now);
        self.settle(now);
    }

    /// Says goodbye to everyone and closes every outbox: the server is
    /// stopping.
    pub fn shutdown(&mut self, text: &str) {
        let line = encode(&ServerLine::Bye(text.to_owned()));
        for client in self.clients.values_mut() {
            let _ = client.outbox.push(&line);
            client.outbox.close();
        }
        self.clients.clear();
        self.nicks.clear();
    }

    /// How many connections the hub knows, registered or not.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// True if nobody is connected.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The registered nicknames, sorted case-insensitively.
    pub fn nicknames(&self) -> impl Iterator<Item = &str> {
        self.nicks.values().map(|id| self.nick_of(*id))
    }

    /// The nickname of client `id`, if it has one.
    pub fn nick(&self, id: ClientId) -> Option<&str> {
        self.clients.get(&id)?.nick.as_deref()
    }

    fn nick_of(&self, id: ClientId) -> &str {
        self.nick(id).unwrap_or("")
    }

    fn users(&self) -> ServerLine {
        ServerLine::Users {
            room: LOBBY.to_owned(),
            nicks: self.nicknames().map(str::to_owned).collect(),
        }
    }

    fn set_nick(&mut self, id: ClientId, wanted: &str, now: Timestamp) {
        let folded = names::fold(wanted);
        let holder = self.nicks.get(&folded).copied();
        let taken = |n: &str| {
            self.nicks
                .get(&names::fold(n))
                .is_some_and(|&holder| holder != id)
        };
        if let Err(err) = names::check_nick(wanted) {
            let suggestion = names::suggest_nick(wanted, taken);
            let why = match err {
                NickError::Empty => "A nickname cannot be empty",
                NickError::TooLong => "A nickname has at most 16 characters",
                NickError::BadStart => "A nickname starts with a letter",
                NickError::BadChar => "A nickname uses only letters, digits, _ and -",
            };
            return self.error(
                id,
                ErrorCode::NickInvalid,
                format!("{why}; try {suggestion}"),
            );
        }
        if holder.is_some_and(|holder| holder != id) {
            let suggestion = names::suggest_nick(wanted, taken);
            return self.error(
                id,
                ErrorCode::NickTaken,
                format!("Someone already uses the nickname {wanted}; try {suggestion}"),
            );
        }
        let old = self.clients.get_mut(&id).and_then(|c| c.nick.take());
        if let Some(client) = self.clients.get_mut(&id) {
            client.nick = Some(wanted.to_owned());
        }
        match old {
            None => {
                self.nicks.insert(folded, id);
                self.send(
                    id,
                    &ServerLine::Welcome {
                        nick: wanted.to_owned(),
                        text: format!(
                            "Hello {wanted}! Type a line and press Enter to talk to everyone in \
                             {LOBBY}. HELP lists commands."
                        ),
                    },
                );
                let join = encode(&ServerLine::Join {
                    time: now,
                    room: LOBBY.to_owned(),
                    nick: wanted.to_owned(),
                });
                self.broadcast(&join, None);
                self.send(id, &self.users());
            }
            Some(old) => {
                self.nicks.remove(&names::fold(&old));
                self.nicks.insert(folded, id);
                if old == wanted {
                    return self.send(id, &ServerLine::Info(format!("You are already {old}.")));
                }
                let line = encode(&ServerLine::Nick {
                    time: now,
                    old,
                    new: wanted.to_owned(),
                });
                self.broadcast(&line, None);
            }
        }
    }

    fn no_such_room(&mut self, id: ClientId, room: &str) {
        self.error(
            id,
            ErrorCode::NoSuchRoom,
            format!("There is no room {room}; everyone is in {LOBBY}."),
        );
    }

    fn error(&mut self, id: ClientId, code: ErrorCode, text: String) {
        self.send(id, &ServerLine::Err { code, text });
    }

    /// Sends one line to one client.
    fn send(&mut self, id: ClientId, line: &ServerLine) {
        self.send_encoded(id, &encode(line));
    }

    fn send_encoded(&mut self, id: ClientId, line: &Line) {
        if let Some(client) = self.clients.get_mut(&id) {
            if let Err(why) = client.outbox.push(line) {
                self.dropped.push((id, why));
            }
        }
    }

    /// Sends a line to every registered client except `except`.
    fn broadcast(&mut self, line: &Line, except: Option<ClientId>) {
        for (&id, client) in &mut self.clients {
            if client.nick.is_none() || Some(id) == except {
                continue;
            }
            if let Err(why) = client.outbox.push(line) {
                self.dropped.push((id, why));
            }
        }
    }

    /// Removes a client; if it was registered, tells the others it left.
    fn remove(&mut self, id: ClientId, reason: &str, now: Timestamp) {
        let Some(mut client) = self.clients.remove(&id) else {
            return;
        };
        client.outbox.close();
        if let Some(nick) = client.nick {
            self.nicks.remove(&names::fold(&nick));
            let line = encode(&ServerLine::Quit {
                time: now,
                nick,
                reason: reason.to_owned(),
            });
            self.broadcast(&line, None);
        }
    }

    /// Removes the clients whose outboxes rejected a line. Announcing their
    /// leave may overflow others in turn; each client is removed at most once,
    /// so this ends.
    fn settle(&mut self, now: Timestamp) {
        while let Some((id, why)) = self.dropped.pop() {
            let reason = match why {
                Rejected::Full => "too slow: stopped reading",
                Rejected::Closed => "connection closed",
            };
            self.remove(id, reason, now);
        }
    }
}

fn greeting() -> ServerLine {
    ServerLine::Hello {
        version: PROTOCOL_VERSION.to_owned(),
        text: "Welcome to natter! Pick a nickname: type NICK yourname (or /nick yourname) and \
               press Enter. HELP lists commands."
            .to_owned(),
    }
}

/// The `HELP` text, one `INFO` line each.
const HELP: [&str; 8] = [
    "Commands (the /slash forms work in any case):",
    "  NICK <name>     pick or change your nickname        /nick <name>",
    "  MSG <text>      say something to the room           (any line that is not a command)",
    "  USERS           list who is here                    /users",
    "  PING [token]    check the connection                /ping",
    "  QUIT [reason]   leave                               /quit, /exit",
    "  HELP            this list                           /help",
    "To start a message with a command word or a slash, use MSG (MSG QUIT is a verb) or //.",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A test outbox: a shared list of received lines with a capacity.
    #[derive(Clone)]
    struct Inbox {
        lines: Rc<RefCell<Vec<String>>>,
        cap: usize,
        closed: Rc<RefCell<bool>>,
    }

    impl Inbox {
        fn new(cap: usize) -> Self {
            Self {
                lines: Rc::default(),
                cap,
                closed: Rc::default(),
            }
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.lines.borrow_mut())
        }
    }

    impl Outbox for Inbox {
        fn push(&mut self, line: &Line) -> Result<(), Rejected> {
            if *self.closed.borrow() {
                return Err(Rejected::Closed);
            }
            let mut lines = self.lines.borrow_mut();
            if lines.len() >= self.cap {
                return Err(Rejected::Full);
            }
            lines.push(String::from_utf8_lossy(line).trim_end().to_owned());
            Ok(())
        }
        fn close(&mut self) {
            *self.closed.borrow_mut() = true;
        }
    }

    fn t() -> Timestamp {
        Timestamp::from_unix(1_795_000_000).unwrap()
    }

    fn join(hub: &mut Hub<Inbox>, id: ClientId, nick: &str) -> Inbox {
        let inbox = Inbox::new(100);
        hub.connect(id, inbox.clone(), t());
        hub.command(id, Command::Nick(nick.into()), t());
        inbox
    }

    fn chat(text: &str) -> Command {
        Command::Msg {
            room: None,
            text: text.into(),
        }
    }

    #[test]
    fn registration_greets_joins_and_lists_users() {
        let mut hub = Hub::new(60);
        let a = join(&mut hub, 1, "alice");
        let got = a.take();
        assert!(got[0].starts_with("HELLO natter/1 "));
        assert!(got[1].starts_with("WELCOME alice "));
        assert_eq!(got[2], format!("JOIN {} #lobby alice", t()));
        assert_eq!(got[3], "USERS #lobby alice");
        let b = join(&mut hub, 2, "Bob");
        assert_eq!(a.take(), [format!("JOIN {} #lobby Bob", t())]);
        assert_eq!(b.take().last().unwrap(), "USERS #lobby alice Bob");
    }

    #[test]
    fn chat_reaches_everyone_but_the_sender() {
        let mut hub = Hub::new(60);
        let a = join(&mut hub, 1, "alice");
        let b = join(&mut hub, 2, "bob");
        let c = Inbox::new(10);
        hub.connect(3, c.clone(), t());
        a.take();
        b.take();
        c.take();
        hub.command(1, chat("hi all"), t());
        assert_eq!(a.take(), Vec::<String>::new());
        assert_eq!(b.take(), [format!("MSG {} 1 #lobby alice hi all", t())]);
        assert_eq!(c.take(), Vec::<String>::new(), "unregistered hear nothing");
    }

    #[test]
    fn unregistered_may_only_nick_help_ping_quit() {
        let mut hub = Hub::new(60);
        let c = Inbox::new(100);
        hub.connect(1, c.clone(), t());
        c.take();
        hub.command(1, chat("hello"), t());
        hub.command(1, Command::Users { room: None }, t());
        let got = c.take();
        assert!(
            got.iter().all(|l| l.starts_with("ERR not-registered ")),
            "{got:?}"
        );
        hub.command(1, Command::Ping("x".into()), t());
        assert_eq!(c.take(), ["PONG x"]);
        hub.command(1, Command::Help, t());
        assert_eq!(c.take().len(), HELP.len());
    }

    #[test]
    fn taken_and_invalid_nicks_get_a_free_suggestion() {
        let mut hub = Hub::new(60);
        let _a = join(&mut hub, 1, "alice");
        let b = Inbox::new(100);
        hub.connect(2, b.clone(), t());
        hub.command(2, Command::Nick("ALICE".into()), t());
        assert_eq!(
            b.take().last().unwrap(),
            "ERR nick-taken Someone already uses the nickname ALICE; try ALICE2"
        );
        hub.command(2, Command::Nick("9 lives".into()), t());
        assert_eq!(
            b.take(),
            ["ERR nick-invalid A nickname starts with a letter; try guest9lives"]
        );
    }

    #[test]
    fn nick_change_is_announced_and_frees_the_old_name() {
        let mut hub = Hub::new(60);
        let a = join(&mut hub, 1, "alice");
        let b = join(&mut hub, 2, "bob");
        a.take();
        b.take();
        hub.command(1, Command::Nick("Alicia".into()), t());
        let line = format!("NICK {} alice Alicia", t());
        assert_eq!(a.take(), std::slice::from_ref(&line));
        assert_eq!(b.take(), [line]);
        let _c = join(&mut hub, 3, "alice");
        assert_eq!(
            hub.nicknames().collect::<Vec<_>>(),
            ["alice", "Alicia", "bob"]
        );
        hub.command(1, Command::Nick("ALICIA".into()), t());
        assert_eq!(
            hub.nick(1),
            Some("ALICIA"),
            "case change of own nick is allowed"
        );
    }

    #[test]
    fn quit_says_bye_and_announces_once() {
        let mut hub = Hub::new(60);
        let a = join(&mut hub, 1, "alice");
        let b = join(&mut hub, 2, "bob");
        a.take();
        b.take();
        hub.command(1, Command::Quit("lunch".into()), t());
        hub.disconnect(1, "connection closed", t());
        assert_eq!(a.take(), ["BYE Goodbye!"]);
        assert_eq!(b.take(), [format!("QUIT {} alice lunch", t())]);
        assert_eq!(hub.len(), 1);
    }

    #[test]
    fn a_full_outbox_drops_only_that_client() {
        let mut hub = Hub::new(60);
        let a = join(&mut hub, 1, "alice");
        let slow = Inbox::new(6);
        hub.connect(2, slow.clone(), t());
        hub.command(2, Command::Nick("slow".into()), t());
        a.take();
        for i in 0..5 {
            hub.command(1, chat(&format!("line {i}")), t());
        }
        assert_eq!(hub.nicknames().collect::<Vec<_>>(), ["alice"]);
        assert!(*slow.closed.borrow());
        assert_eq!(
            a.take(),
            [format!("QUIT {} slow too slow: stopped reading", t())]
        );
    }

    #[test]
    fn rooms_other_than_the_lobby_do_not_exist_yet() {
        let mut hub = Hub::new(60);
        let a = join(&mut hub, 1, "alice");
        a.take();
        hub.command(
            1,
            Command::Msg {
                room: Some("#rust".into()),
                text: "hi".into(),
            },
            t(),
        );
        assert!(a.take()[0].starts_with("ERR no-such-room "));
        hub.command(
            1,
            Command::Users {
                room: Some("#LOBBY".into()),
            },
            t(),
        );
        assert_eq!(a.take(), ["USERS #lobby alice"]);
    }

    #[test]
    fn connections_without_a_nick_time_out() {
        let mut hub = Hub::new(60);
        let idle = Inbox::new(100);
        hub.connect(1, idle.clone(), t());
        let a = join(&mut hub, 2, "alice");
        idle.take();
        a.take();
        let later = |s| Timestamp::from_unix(t().unix() + s).unwrap();
        hub.tick(later(59));
        assert_eq!(hub.len(), 2);
        hub.tick(later(60));
        let got = idle.take();
        assert!(got[0].starts_with("ERR timeout "), "{got:?}");
        assert!(got[1].starts_with("BYE "));
        assert!(*idle.closed.borrow());
        assert_eq!(hub.len(), 1, "the registered client stays");
        assert_eq!(a.take(), Vec::<String>::new(), "nobody hears of it");
    }
}
