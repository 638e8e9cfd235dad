//! Unit tests of the cluster seam: two hubs joined by an in-memory bus that
//! does what the Redis one does (one claim per nickname, one id sequence,
//! every event to every node in one order), and hostile remote events.

use std::cell::RefCell;
use std::rc::Rc;

use super::cluster::Remote;
use super::memory_bus::MemoryBus;
use super::outbox::{Outbox, Rejected};
use super::{Hub, HubConfig};
use crate::ids::ClientId;
use crate::protocol::{Command, Line, Timestamp};

#[derive(Clone, Default)]
struct Inbox(Rc<RefCell<Vec<String>>>);

impl Inbox {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

impl Outbox for Inbox {
    fn push(&mut self, line: &Line) -> Result<(), Rejected> {
        self.0
            .borrow_mut()
            .push(String::from_utf8_lossy(line).trim_end().to_owned());
        Ok(())
    }
    fn close(&mut self) {}
}

fn t() -> Timestamp {
    Timestamp::from_unix(1_795_000_000).unwrap_or(Timestamp::now())
}

/// Two nodes, "a" (index 0) and "b" (index 1), and the bus between them.
struct Cluster {
    bus: MemoryBus<Inbox>,
}

impl std::ops::Deref for Cluster {
    type Target = MemoryBus<Inbox>;
    fn deref(&self) -> &Self::Target {
        &self.bus
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.bus
    }
}

impl Cluster {
    fn new() -> Self {
        Self {
            bus: MemoryBus::new(&["a", "b"], HubConfig::default(), 100),
        }
    }

    /// Carries what both hubs published until nothing is left.
    fn pump(&mut self) {
        assert!(self.bus.drain(t()), "the hubs never stopped publishing");
    }

    fn connect(&mut self, node: usize, id: ClientId) -> Inbox {
        let inbox = Inbox::default();
        self.hubs[node].connect(id, inbox.clone(), t());
        inbox
    }

    fn say(&mut self, node: usize, id: ClientId, command: Command) {
        self.hubs[node].command(id, command, t());
        self.pump();
    }
}

fn nick(n: &str) -> Command {
    Command::Nick(n.to_owned())
}

fn msg(text: &str) -> Command {
    Command::Msg {
        room: None,
        text: text.to_owned(),
    }
}

#[test]
fn a_single_node_publishes_nothing() {
    let mut hub: Hub<Inbox> = Hub::new(60);
    let inbox = Inbox::default();
    hub.connect(1, inbox.clone(), t());
    hub.command(1, nick("alice"), t());
    hub.command(1, msg("hi"), t());
    hub.command(1, Command::Quit("bye".into()), t());
    assert!(hub.take_published().is_empty());
    assert!(inbox.take().iter().any(|l| l.starts_with("WELCOME alice")));
}

#[test]
fn two_hubs_agree_on_members_messages_and_nicknames() {
    let mut c = Cluster::new();
    let alice = c.connect(0, 1);
    let bob = c.connect(1, 2);
    c.say(0, 1, nick("alice"));
    c.say(1, 2, nick("bob"));
    let bob_lines = bob.take();
    assert!(
        bob_lines.iter().any(|l| l == "USERS #lobby alice bob"),
        "{bob_lines:?}"
    );
    assert!(alice.take().iter().any(|l| l.ends_with("#lobby bob")));

    // The same nickname on the other node is refused with a suggestion.
    let carol = c.connect(1, 3);
    c.say(1, 3, nick("Alice"));
    let refused = carol.take();
    assert!(
        refused.iter().any(|l| l.starts_with("ERR nick-taken ")),
        "{refused:?}"
    );

    // One message, one id, to everyone but its sender.
    c.say(0, 1, msg("hello"));
    let got = bob.take();
    assert!(
        got.iter()
            .any(|l| l.starts_with("MSG ") && l.ends_with(" 101 #lobby alice hello")),
        "{got:?}"
    );
    assert!(!alice.take().iter().any(|l| l.starts_with("MSG ")));

    // Whispers cross; renames and quits are announced once.
    c.say(
        1,
        2,
        Command::Whisper {
            nick: "alice".into(),
            text: "psst".into(),
        },
    );
    assert!(alice
        .take()
        .iter()
        .any(|l| l.ends_with(" 102 bob alice psst")));
    c.say(1, 2, nick("robert"));
    assert!(alice.take().iter().any(|l| l.ends_with(" bob robert")));
    c.say(1, 2, Command::Quit("bye".into()));
    let quits: Vec<String> = alice
        .take()
        .into_iter()
        .filter(|l| l.starts_with("QUIT "))
        .collect();
    assert_eq!(quits.len(), 1, "{quits:?}");
    assert_eq!(c.hubs[0].members("#lobby"), vec!["alice"]);
}

#[test]
fn a_dead_node_s_users_leave_once() {
    let mut c = Cluster::new();
    let alice = c.connect(0, 1);
    let _bob = c.connect(1, 2);
    c.say(0, 1, nick("alice"));
    c.say(1, 2, nick("bob"));
    c.say(1, 2, Command::Join("#rust".into()));
    c.say(0, 1, Command::Join("#rust".into()));
    alice.take();
    for _ in 0..2 {
        c.hubs[0].cluster(Remote::NodeDown { node: "b".into() }, t());
    }
    let quits: Vec<String> = alice
        .take()
        .into_iter()
        .filter(|l| l.starts_with("QUIT "))
        .collect();
    assert_eq!(quits.len(), 1, "{quits:?}");
    assert_eq!(c.hubs[0].members("#rust"), vec!["alice"]);
}

#[test]
fn hostile_remote_events_are_dropped() {
    let mut c = Cluster::new();
    let alice = c.connect(0, 1);
    c.say(0, 1, nick("alice"));
    alice.take();
    let hub = &mut c.hubs[0];
    let bad = [
        Remote::Join {
            node: "b".into(),
            room: "#lobby".into(),
            nick: "has space".into(),
        },
        Remote::Join {
            node: "b".into(),
            room: "lobby\r\nQUIT".into(),
            nick: "eve".into(),
        },
        Remote::Join {
            node: "b".into(),
            room: "#lobby".into(),
            nick: "alice".into(),
        },
        Remote::Msg {
            id: 5,
            room: "#lobby".into(),
            nick: "eve".into(),
            text: "line\r\nbreak".into(),
            mine: false,
        },
        Remote::Quit {
            node: "c".into(),
            nick: "alice".into(),
            reason: "spoofed".into(),
        },
    ];
    for remote in bad {
        hub.cluster(remote, t());
    }
    assert_eq!(alice.take(), Vec::<String>::new());
    assert_eq!(hub.members("#lobby"), vec!["alice"]);
}

#[test]
fn without_the_cluster_chat_is_refused_not_lost() {
    let mut c = Cluster::new();
    let alice = c.connect(0, 1);
    c.say(0, 1, nick("alice"));
    c.hubs[0].cluster(Remote::Down, t());
    c.say(0, 1, msg("anyone?"));
    let lines = alice.take();
    assert!(lines.iter().any(|l| l.starts_with("INFO ")), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ERR cluster-unavailable ")),
        "{lines:?}"
    );
    let newcomer = c.connect(0, 2);
    c.say(0, 2, nick("zed"));
    assert!(newcomer
        .take()
        .iter()
        .any(|l| l.starts_with("ERR cluster-unavailable ")));
}

#[test]
fn moderation_from_another_node_is_checked_then_applied() {
    use super::cluster::{Moderation, Sanction};
    let mut c = Cluster::new();
    let bob = c.connect(1, 2);
    c.say(1, 2, nick("bob"));
    bob.take();
    let moderate = |by: &str, sanction: Sanction, reason: &str| Remote::Moderate {
        node: "a".into(),
        moderation: Moderation {
            by: by.into(),
            sanction,
            reason: reason.into(),
            rooms: vec!["#lobby".into(), "bad room".into()],
        },
    };
    // Hostile: a bad operator name, a reason with a line break, a bad target.
    let kick = || Sanction::Kick { nick: "bob".into() };
    c.hubs[1].cluster(moderate("bad nick", kick(), ""), t());
    c.hubs[1].cluster(moderate("oper", kick(), "a\r\nQUIT"), t());
    c.hubs[1].cluster(
        moderate("oper", Sanction::Kick { nick: "x y".into() }, ""),
        t(),
    );
    assert!(bob.take().is_empty());
    assert!(c.hubs[1].nick(2).is_some());
    // A mute from elsewhere holds here; a kick closes its target here.
    c.hubs[1].cluster(
        moderate(
            "oper",
            Sanction::Mute {
                nick: "bob".into(),
                until: t().unix() + 600,
            },
            "",
        ),
        t(),
    );
    c.say(1, 2, msg("hi"));
    assert!(bob.take().iter().any(|l| l.starts_with("ERR muted ")));
    c.hubs[1].cluster(moderate("oper", kick(), "enough"), t());
    let lines = bob.take();
    assert!(
        lines.iter().any(|l| l.starts_with("ERR kicked ")),
        "{lines:?}"
    );
    assert!(c.hubs[1].nick(2).is_none());
}

#[test]
fn an_eviction_only_touches_registered_nicknames() {
    let mut c = Cluster::new();
    let bob = c.connect(1, 2);
    c.say(1, 2, nick("bob"));
    bob.take();
    for nick in ["bob", "not a nick", ""] {
        c.hubs[1].cluster(
            Remote::Evict {
                node: "a".into(),
                nick: nick.into(),
            },
            t(),
        );
    }
    assert_eq!(c.hubs[1].nick(2), Some("bob"));
    assert!(bob.take().is_empty());
}

/// A user who quits with control characters in the reason still leaves
/// every node (found by the cluster fuzz target: the other node dropped
/// the departure and kept a member nobody could see leave).
#[test]
fn a_quit_with_control_characters_still_leaves_everywhere() {
    let mut c = Cluster::new();
    let alice = c.connect(0, 1);
    c.say(0, 1, nick("alice"));
    let _carol = c.connect(1, 2);
    c.say(1, 2, nick("carol"));
    assert_eq!(c.hubs[0].members("#lobby"), vec!["alice", "carol"]);
    alice.take();
    c.hubs[1].command(2, Command::Quit("bye\0now".into()), t());
    c.pump();
    assert_eq!(c.hubs[0].members("#lobby"), vec!["alice"]);
    let seen = alice.take();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("QUIT ") && l.ends_with(" carol byenow")),
        "{seen:?}"
    );
}
