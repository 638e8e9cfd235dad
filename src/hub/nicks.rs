//! Nicknames: taking one, changing it, and the refusals (invalid, taken,
//! registered, banned), each with a free suggestion.

use std::sync::Arc;

use super::outbox::Outbox;
use super::words::ban_text;
use super::Hub;
use crate::accounts::BanTarget;
use crate::ids::ClientId;
use crate::names;
use crate::protocol::{encode, ErrorCode, ServerLine, Timestamp, LOBBY};
use crate::text::capitalise;

impl<O: Outbox> Hub<O> {
    pub(super) fn set_nick(&mut self, id: ClientId, wanted: &str, now: Timestamp) {
        // An answer from the accounts thread is about the nickname held when
        // it was asked (a REGISTER makes that nickname the account): a rename
        // meanwhile would leave the client logged in to one name and holding
        // another's.
        if self.clients.get(&id).is_some_and(|c| c.pending) {
            return self.still_checking(id);
        }
        let folded = names::fold(wanted);
        let holder = self.nicks.get(&folded).copied();
        let own = self.clients.get(&id).and_then(|c| c.account.clone());
        let taken = |n: &str| {
            let key = names::fold(n);
            self.nicks.get(&key).is_some_and(|&holder| holder != id)
                || self.remote.contains_key(&key)
                || (self.registered.contains_key(&key) && own.as_ref() != Some(&key))
        };
        if let Err(err) = names::check_nick(wanted) {
            let suggestion = names::suggest_nick(wanted, taken);
            let why = capitalise(&err.to_string());
            return self.error(
                id,
                ErrorCode::NickInvalid,
                format!("{why}; try {suggestion}"),
            );
        }
        if holder.is_some_and(|holder| holder != id) || self.remote.contains_key(&folded) {
            let suggestion = names::suggest_nick(wanted, taken);
            return self.error(
                id,
                ErrorCode::NickTaken,
                format!("Someone already uses the nickname {wanted}; try {suggestion}"),
            );
        }
        if let Some(ban) = self.ban_on(&BanTarget::Nick(folded.clone()), now) {
            let text = ban_text(&ban, now);
            return self.error(id, ErrorCode::Banned, text);
        }
        if let Some(text) = self.muted(id, now) {
            return self.error(id, ErrorCode::Muted, text);
        }
        let owner = self.clients.get(&id).and_then(|c| c.account.as_deref()) == Some(&folded);
        if self.registered.contains_key(&folded) && !owner {
            let suggestion = self.guest_nick(id);
            return self.error(
                id,
                ErrorCode::NickRegistered,
                format!(
                    "{wanted} is a registered nickname: if it is yours, LOGIN {wanted} \
                     <password>; otherwise pick another, such as {suggestion}"
                ),
            );
        }
        self.assign_nick(id, wanted, now);
    }

    /// Gives client `id` the nickname `wanted`, which it may take: registers
    /// the connection, or renames it and tells everyone concerned.
    ///
    /// In cluster mode a nickname new to the client is claimed across the
    /// cluster first, and taken when the claim is won (see `cluster`).
    pub(super) fn assign_nick(&mut self, id: ClientId, wanted: &str, now: Timestamp) {
        if self.config.cluster {
            let current = self.nick(id).map(names::fold);
            if current.as_deref() != Some(names::fold(wanted).as_str()) {
                return self.claim(id, wanted);
            }
        }
        self.take_nick(id, wanted, now);
    }

    /// Gives client `id` the nickname `wanted`, claimed already.
    pub(super) fn take_nick(&mut self, id: ClientId, wanted: &str, now: Timestamp) {
        let folded = names::fold(wanted);
        let renaming = self
            .clients
            .get(&id)
            .and_then(|c| c.nick.clone())
            .filter(|old| **old != *wanted);
        if let Some(old) = renaming {
            // Lists in big rooms are made exact first (under the old name),
            // so that the NICK line renames the right entry everywhere.
            self.flush_before_rename(id, &old);
        }
        // The owner of an account reads its private history from the
        // account's registration on; anyone else from now on.
        let since = match self.clients.get(&id).and_then(|c| c.account.as_ref()) {
            Some(account) if *account == folded => self
                .registered
                .get(&folded)
                .map_or(self.ids.last(), |a| a.since),
            _ => self.ids.last(),
        };
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let old = client.nick.replace(Arc::from(wanted));
        match old {
            None => {
                client.since = since;
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
                self.send_motd(id);
                self.enter(id, &names::fold(LOBBY), LOBBY, now);
            }
            Some(old) => {
                if *old == *wanted {
                    return self.send(id, &ServerLine::Info(format!("You are already {old}.")));
                }
                if names::fold(&old) != folded {
                    // A new name, not just new capitals: private history
                    // under it starts now (or at its account's start).
                    client.since = since;
                }
                self.nicks.remove(&names::fold(&old));
                if self.config.cluster {
                    let rooms = client.rooms.clone();
                    let release = (names::fold(&old) != folded).then(|| old.to_string());
                    self.published.push(super::cluster::Publish::Rename {
                        old: old.to_string(),
                        new: wanted.to_owned(),
                        rooms,
                        release,
                    });
                }
                self.nicks.insert(folded, id);
                let line = encode(&ServerLine::Nick {
                    time: now,
                    old: old.to_string(),
                    new: wanted.to_owned(),
                });
                self.send_encoded(id, &line);
                self.broadcast_neighbours(id, &line, true);
                self.renamed_in_presence(id, wanted);
            }
        }
    }

    /// The operator's welcome text, as `INFO` lines, to a client that has
    /// just been welcomed.
    fn send_motd(&mut self, id: ClientId) {
        let motd = Arc::clone(&self.config.motd);
        for line in motd.iter() {
            self.send(id, &ServerLine::Info(line.clone()));
        }
    }
}
