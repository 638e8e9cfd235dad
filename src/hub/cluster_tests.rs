//! Unit tests of the cluster seam: two hubs joined by an in-memory bus that
//! does what the Redis one does (one claim per nickname, one id sequence,
//! every event to every node in one order), and hostile remote events.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::cluster::{Publish, Remote};
use super::outbox::{Outbox, Rejected};
use super::{Hub, HubConfig};
use crate::ids::ClientId;
use crate::names;
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
    hubs: [Hub<Inbox>; 2],
    /// Folded nickname to the node holding it.
    claims: HashMap<String, usize>,
    seq: u64,
}

const NODES: [&str; 2] = ["a", "b"];

impl Cluster {
    fn new() -> Self {
        let config = HubConfig {
            cluster: true,
            ..HubConfig::default()
        };
        Self {
            hubs: [Hub::with_config(config.clone()), Hub::with_config(config)],
            claims: HashMap::new(),
            seq: 100,
        }
    }

    /// Carries what both hubs published until nothing is left.
    fn pump(&mut self) {
        for _ in 0..100 {
            let mut work = Vec::new();
            for (i, hub) in self.hubs.iter_mut().enumerate() {
                work.extend(hub.take_published().into_iter().map(|p| (i, p)));
            }
            if work.is_empty() {
                return;
            }
            for (from, publish) in work {
                self.carry(from, publish);
            }
        }
        panic!("the hubs never stopped publishing");
    }

    fn send_others(&mut self, from: usize, remote: Remote) {
        self.hubs[1 - from].cluster(remote, t());
    }

    fn carry(&mut self, from: usize, publish: Publish) {
        let node = NODES[from].to_owned();
        match publish {
            Publish::Claim { client, nick } => {
                let key = names::fold(&nick);
                let won = !self.claims.contains_key(&key);
                if won {
                    self.claims.insert(key, from);
                }
                self.hubs[from].cluster(Remote::Claimed { client, nick, won }, t());
            }
            Publish::Release { nick } => {
                if self.claims.get(&names::fold(&nick)) == Some(&from) {
                    self.claims.remove(&names::fold(&nick));
                }
            }
            Publish::Join { name, nick, .. } => {
                self.send_others(
                    from,
                    Remote::Join {
                        node,
                        room: name,
                        nick,
                    },
                );
            }
            Publish::Part {
                room, nick, reason, ..
            } => self.send_others(
                from,
                Remote::Part {
                    node,
                    room,
                    nick,
                    reason,
                },
            ),
            Publish::Quit { nick, reason, .. } => {
                self.claims.remove(&names::fold(&nick));
                self.send_others(from, Remote::Quit { node, nick, reason });
            }
            Publish::Rename { old, new, .. } => {
                self.claims.remove(&names::fold(&old));
                self.send_others(from, Remote::Rename { node, old, new });
            }
            Publish::Msg {
                room, nick, text, ..
            } => {
                self.seq += 1;
                for (i, hub) in self.hubs.iter_mut().enumerate() {
                    let msg = Remote::Msg {
                        id: self.seq,
                        room: room.clone(),
                        nick: nick.clone(),
                        text: text.clone(),
                        mine: i == from,
                    };
                    hub.cluster(msg, t());
                }
            }
            Publish::Whisper {
                node: to_node,
                from: sender,
                to,
                text,
                ..
            } => {
                self.seq += 1;
                let at = match to_node.as_deref() {
                    None => from,
                    Some(n) => NODES.iter().position(|x| *x == n).unwrap_or(from),
                };
                let whisper = Remote::Whisper {
                    id: self.seq,
                    from: sender,
                    to,
                    text,
                };
                self.hubs[at].cluster(whisper, t());
            }
            Publish::Moderate(moderation) => {
                self.send_others(from, Remote::Moderate { node, moderation });
            }
            Publish::Evict { nick, .. } => {
                self.send_others(from, Remote::Evict { node, nick });
            }
            // Room history and resynchronisation are the bus's (tests/cluster.rs).
            Publish::History(_) | Publish::Resync { .. } => {}
        }
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
