//! Operators across nodes (cluster mode): what an operator does here is
//! published as a [`Moderation`], and every other node applies it.
//!
//! A kick is carried out by the node the user is on; a mute or a ban is
//! kept by every node (each in its own database too, so it outlasts a
//! restart), and each node closes the connections a ban matches there.
//! Every node announces the `MOD` line to its own members of the rooms the
//! event names, so each member sees it once.

use super::cluster::{clean_reason, Moderation, Publish, Sanction, MOD_ROOMS_MAX};
use super::outbox::Outbox;
use super::words::{ban_text, because};
use super::Hub;
use crate::accounts::{Ban, BanTarget, Mute, Request};
use crate::ids::ClientId;
use crate::names;
use crate::protocol::{ErrorCode, ModAction, ServerLine, Timestamp};

impl<O: Outbox> Hub<O> {
    /// The nickname as shown of the user on another node called `nick`.
    pub(super) fn remote_nick(&self, nick: &str) -> Option<String> {
        if !self.config.cluster || names::check_nick(nick).is_err() {
            return None;
        }
        self.remote.get(&names::fold(nick)).map(|u| u.nick.clone())
    }

    /// Tells the other nodes what an operator here did (cluster mode only).
    pub(super) fn share_moderation(
        &mut self,
        by: &str,
        sanction: Sanction,
        reason: &str,
        rooms: Vec<String>,
    ) {
        if !self.config.cluster {
            return;
        }
        self.published.push(Publish::Moderate(Moderation {
            by: by.to_owned(),
            sanction,
            reason: reason.to_owned(),
            rooms,
        }));
    }

    /// Applies what an operator on `node` did. Everything is checked first:
    /// nicknames, the reason, the rooms (at most [`MOD_ROOMS_MAX`]).
    pub(super) fn remote_moderation(&mut self, node: &str, m: Moderation, now: Timestamp) {
        if node.is_empty() || names::check_nick(&m.by).is_err() || !clean_reason(&m.reason) {
            return;
        }
        let rooms: Vec<String> = m
            .rooms
            .iter()
            .filter(|r| names::is_room(r))
            .take(MOD_ROOMS_MAX)
            .map(|r| names::fold(r))
            .collect();
        let (by, reason) = (m.by, m.reason);
        tracing::info!(op = %by, %node, sanction = ?m.sanction, "moderation on another node");
        match m.sanction {
            Sanction::Kick { nick } => {
                if names::check_nick(&nick).is_err() {
                    return;
                }
                self.mod_lines(&by, &rooms, ModAction::Kick, &nick, None, &reason, now);
                if let Some(&target) = self.nicks.get(&names::fold(&nick)) {
                    self.error(
                        target,
                        ErrorCode::Kicked,
                        format!("You were kicked by {by}{}", because(&reason)),
                    );
                    self.send(target, &ServerLine::Bye("Goodbye.".into()));
                    self.remove(target, &format!("kicked by {by}{}", because(&reason)), now);
                }
            }
            Sanction::Mute { nick, until } => {
                if names::check_nick(&nick).is_err() {
                    return;
                }
                let key = names::fold(&nick);
                self.mutes.insert(key.clone(), (until, by.clone()));
                self.requests.push(Request::SaveMute(Mute {
                    nick: key.clone(),
                    until,
                    by: by.clone(),
                }));
                let name = self.shown(&key);
                let at = Timestamp::from_unix(until);
                self.mod_lines(&by, &rooms, ModAction::Mute, &name, at, &reason, now);
            }
            Sanction::Unmute { nick } => {
                if names::check_nick(&nick).is_err() {
                    return;
                }
                let key = names::fold(&nick);
                if self.mutes.remove(&key).is_none() {
                    return;
                }
                self.requests.push(Request::RemoveMute(key.clone()));
                let name = self.shown(&key);
                self.mod_lines(&by, &rooms, ModAction::Unmute, &name, None, "", now);
            }
            Sanction::Ban { target, until } => {
                self.remote_ban(&by, &target, until, reason, &rooms, now)
            }
            Sanction::Unban { target } => {
                let parsed = BanTarget::parse(&target);
                if matches!(parsed, BanTarget::Nick(_)) && names::check_nick(&target).is_err() {
                    return;
                }
                if self.bans.remove(&parsed).is_none() {
                    return;
                }
                self.publish_bans();
                self.requests.push(Request::RemoveBan(parsed.clone()));
                if let BanTarget::Nick(key) = parsed {
                    let name = self.shown(&key);
                    self.mod_lines(&by, &rooms, ModAction::Unban, &name, None, "", now);
                }
            }
        }
    }

    fn remote_ban(
        &mut self,
        by: &str,
        target: &str,
        until: i64,
        reason: String,
        rooms: &[String],
        now: Timestamp,
    ) {
        let parsed = BanTarget::parse(target);
        let victims: Vec<ClientId> = match &parsed {
            BanTarget::Nick(key) => {
                if names::check_nick(target).is_err() {
                    return;
                }
                self.nicks.get(key).copied().into_iter().collect()
            }
            BanTarget::Addr(range) => self
                .clients
                .iter()
                .filter(|(_, c)| range.contains(c.addr))
                .map(|(&cid, _)| cid)
                .collect(),
        };
        let ban = Ban {
            target: parsed.clone(),
            until,
            by: by.to_owned(),
            reason: reason.clone(),
        };
        self.bans.insert(parsed.clone(), ban.clone());
        self.publish_bans();
        self.requests.push(Request::SaveBan(ban.clone()));
        let at = Timestamp::from_unix(until);
        if let BanTarget::Nick(key) = &parsed {
            let name = self.shown(key);
            self.mod_lines(by, rooms, ModAction::Ban, &name, at, &reason, now);
        }
        let text = ban_text(&ban, now);
        for victim in victims {
            if let (BanTarget::Addr(_), Some(name)) = (&parsed, self.nick(victim)) {
                let name = name.to_owned();
                let its_rooms = self
                    .clients
                    .get(&victim)
                    .map(|c| c.rooms.clone())
                    .unwrap_or_default();
                self.mod_lines(by, &its_rooms, ModAction::Ban, &name, at, &reason, now);
            }
            self.error(victim, ErrorCode::Banned, text.clone());
            self.send(victim, &ServerLine::Bye("Goodbye.".into()));
            self.remove(victim, &format!("banned by {by}{}", because(&reason)), now);
        }
    }

    /// The nickname folded to `key` as its holder shows it, here or on
    /// another node, or the folded one.
    fn shown(&self, key: &str) -> String {
        if let Some(&id) = self.nicks.get(key) {
            if let Some(nick) = self.nick(id) {
                return nick.to_owned();
            }
        }
        self.remote
            .get(key)
            .map_or_else(|| key.to_owned(), |u| u.nick.clone())
    }
}
