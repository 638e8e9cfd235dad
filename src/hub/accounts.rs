//! Registered nicknames in the hub: `REGISTER`, `LOGIN`, `PASSWORD`, and
//! the accounts thread's answers.
//!
//! The hub never hashes a password. It checks what it can at once (the
//! nickname, failed-login limits, one check at a time per connection),
//! queues a [`Request`] for the accounts thread and marks the connection
//! pending; [`Hub::account`] applies the answer when it comes.
//!
//! Registering is limited per address (IPv6: per /64) to
//! `registrations_per_hour` accounts an hour, counted in [`Registrations`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use super::outbox::Outbox;
use super::words::{ban_text, left};
use super::Hub;
use crate::accounts::{password_problem, AccountInfo, Answer, BanTarget, Request, Snapshot};
use crate::ids::ClientId;
use crate::limiter::address_key;
use crate::names;
use crate::protocol::{ErrorCode, Secret, ServerLine, Timestamp};

/// Password checks one address may have under way at once.
pub(super) const CHECKS_PER_ADDRESS: u32 = 4;

/// The window registrations are counted over, in seconds.
const REGISTRATION_WINDOW: i64 = 3600;

/// Registrations per address key in the last hour, for the per-address
/// limit. Pure and fed the time, like the login limits.
#[derive(Debug, Default)]
pub(super) struct Registrations {
    /// Per address key, the Unix seconds of its recent registrations (made
    /// or under way), oldest first; never more than the limit.
    by_addr: HashMap<IpAddr, VecDeque<i64>>,
    /// Registrations under way, by client: the address key and second they
    /// were counted at, so that one refused by the accounts thread (taken
    /// meanwhile, a disk error, a full queue) is given back.
    pending: HashMap<ClientId, (IpAddr, i64)>,
}

impl Registrations {
    /// If `addr` has made `limit` registrations in the hour before `now`,
    /// the Unix second at which it may make the next.
    fn next_allowed(&mut self, addr: IpAddr, limit: u32, now: i64) -> Option<i64> {
        let times = self.by_addr.get_mut(&addr)?;
        while times
            .front()
            .is_some_and(|&t| t.saturating_add(REGISTRATION_WINDOW) <= now)
        {
            times.pop_front();
        }
        let oldest = *times.front()?;
        let full = times.len() >= usize::try_from(limit).unwrap_or(usize::MAX);
        full.then(|| oldest.saturating_add(REGISTRATION_WINDOW))
    }

    /// Counts a registration by `client` from `addr` at `now`, remembering
    /// at most `addresses` addresses: past that, the one that registered
    /// least recently is forgotten, so a flood of addresses costs at most
    /// `addresses` times `limit` timestamps.
    fn count(&mut self, client: ClientId, addr: IpAddr, limit: u32, addresses: usize, now: i64) {
        let addresses = addresses.max(1);
        if !self.by_addr.contains_key(&addr) && self.by_addr.len() >= addresses {
            self.prune(now);
            if self.by_addr.len() >= addresses {
                let stalest = self
                    .by_addr
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied().unwrap_or(i64::MIN))
                    .map(|(&addr, _)| addr);
                if let Some(stalest) = stalest {
                    self.by_addr.remove(&stalest);
                }
            }
        }
        let times = self.by_addr.entry(addr).or_default();
        times.push_back(now);
        while times.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
            times.pop_front();
        }
        self.pending.insert(client, (addr, now));
    }

    /// `client`'s registration is over: made (`kept`), or not, in which
    /// case it no longer counts.
    fn finish(&mut self, client: ClientId, kept: bool) {
        let Some((addr, at)) = self.pending.remove(&client) else {
            return;
        };
        if kept {
            return;
        }
        if let Some(times) = self.by_addr.get_mut(&addr) {
            if let Some(i) = times.iter().rposition(|&t| t == at) {
                times.remove(i);
            }
            if times.is_empty() {
                self.by_addr.remove(&addr);
            }
        }
    }

    /// Forgets registrations older than an hour.
    pub(super) fn prune(&mut self, now: i64) {
        self.by_addr.retain(|_, times| {
            times
                .back()
                .is_some_and(|&t| t.saturating_add(REGISTRATION_WINDOW) > now)
        });
    }

    /// How many addresses are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_addr.len()
    }
}

impl<O: Outbox> Hub<O> {
    /// Loads what the accounts database holds: at start-up, and again
    /// whenever another process (`natter admin`) changed it.
    pub fn load(&mut self, snapshot: Snapshot, now: Timestamp) {
        // An account made by `natter admin` starts at that process's clock:
        // messages from now on must be above it, or its owner misses them.
        let starts = snapshot.accounts.iter().map(|a| a.since);
        self.ids.raise(starts.max().unwrap_or(0));
        self.registered = snapshot
            .accounts
            .into_iter()
            .map(|a| (names::fold(&a.nick), a))
            .collect();
        self.bans = snapshot
            .bans
            .into_iter()
            .filter(|b| b.until > now.unix())
            .map(|b| (b.target.clone(), b))
            .collect();
        self.publish_bans();
        // Mutes that ended while the server was down end silently.
        self.mutes = snapshot
            .mutes
            .into_iter()
            .filter(|m| m.until > now.unix())
            .map(|m| (m.nick, (m.until, m.by)))
            .collect();
        let ids: Vec<ClientId> = self.clients.keys().copied().collect();
        for id in ids {
            let Some(client) = self.clients.get_mut(&id) else {
                continue;
            };
            // Operator flags follow the database; a deleted account logs
            // its users out.
            match client.account.as_ref().map(|key| self.registered.get(key)) {
                Some(Some(account)) => client.operator = account.operator,
                Some(None) => {
                    client.account = None;
                    client.operator = false;
                }
                None => {}
            }
            self.evict_if_unowned(id, now);
        }
        self.settle(now);
    }

    /// Applies the accounts thread's answer.
    pub fn account(&mut self, answer: Answer, now: Timestamp) {
        match answer {
            Answer::Registered { client, account } => {
                let key = names::fold(&account.nick);
                let nick = account.nick.clone();
                tracing::info!(id = client, account = %nick, "registered");
                self.registrations.finish(client, true);
                self.registered.insert(key.clone(), account);
                self.done(client);
                if let Some(c) = self.clients.get_mut(&client) {
                    c.account = Some(key.clone());
                    c.operator = false;
                    self.send(
                        client,
                        &ServerLine::Account {
                            nick: nick.clone(),
                            operator: false,
                            text: format!(
                                "{nick} is now registered to you. Next time, LOGIN {nick} \
                                 <password> (or /login {nick} <password>) to take it."
                            ),
                        },
                    );
                }
                // Someone else may have taken the name while it was hashed.
                if let Some(&holder) = self.nicks.get(&key) {
                    self.evict_if_unowned(holder, now);
                }
            }
            Answer::Taken { client, nick } => {
                self.registrations.finish(client, false);
                self.done(client);
                self.error(
                    client,
                    ErrorCode::NickRegistered,
                    format!("{nick} is registered already."),
                );
            }
            Answer::LoggedIn { client, account } => self.logged_in(client, account, now),
            Answer::WrongPassword { client, nick } => {
                self.done(client);
                let key = names::fold(&nick);
                let t = now.unix();
                let addr = self.clients.get(&client).map(|c| address_key(c.addr));
                let by_addr = addr.and_then(|a| self.failed_by_addr.fail(&a, t));
                let by_account = self.failed_by_account.fail(&key, t);
                let mut text = format!("Wrong password for {nick}.");
                if let Some(until) = by_addr.max(by_account) {
                    text.push_str(&format!(
                        " Too many failed logins: try again in {} s.",
                        until - t
                    ));
                }
                tracing::info!(id = client, account = %key, "failed login");
                self.error(client, ErrorCode::LoginFailed, text);
            }
            Answer::PasswordChanged { client } => {
                self.done(client);
                self.send(
                    client,
                    &ServerLine::Info("Your password is changed.".into()),
                );
            }
            Answer::Failed { client } => {
                self.registrations.finish(client, false);
                self.done(client);
                self.error(
                    client,
                    ErrorCode::Busy,
                    "The account database had a problem; please try again later.".into(),
                );
            }
            Answer::Reloaded(snapshot) => self.load(snapshot, now),
        }
        self.settle(now);
    }

    /// The accounts thread's queue was full: the request is dropped and its
    /// client told to try again.
    pub fn refused(&mut self, request: Request, now: Timestamp) {
        match request {
            Request::Register { client, .. }
            | Request::Login { client, .. }
            | Request::ChangePassword { client, .. } => {
                self.registrations.finish(client, false);
                self.done(client);
                self.error(
                    client,
                    ErrorCode::Busy,
                    "The server is checking many passwords right now; try again in a few \
                     seconds."
                        .into(),
                );
            }
            Request::SaveBan(_) | Request::RemoveBan(_) => {
                tracing::error!("the accounts thread is behind; a ban change is not stored");
            }
            Request::SaveMute(_) | Request::RemoveMute(_) => {
                tracing::error!("the accounts thread is behind; a mute change is not stored");
            }
        }
        self.settle(now);
    }

    pub(super) fn register(&mut self, id: ClientId, password: Secret, now: Timestamp) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        let Some(nick) = client.nick.as_deref().map(str::to_owned) else {
            return;
        };
        if client.pending {
            return self.still_checking(id);
        }
        let key = names::fold(&nick);
        if client.account.as_ref() == Some(&key) {
            return self.error(
                id,
                ErrorCode::NickRegistered,
                format!(
                    "{nick} is registered already, and you are logged in to it; PASSWORD <old> \
                     <new> changes its password."
                ),
            );
        }
        if self.registered.contains_key(&key) {
            return self.error(
                id,
                ErrorCode::NickRegistered,
                format!("{nick} is registered already."),
            );
        }
        if let Some(problem) = password_problem(&password) {
            return self.error(id, ErrorCode::BadArgument, format!("{problem}."));
        }
        let since = client.since;
        let addr = address_key(client.addr);
        let limit = self.config.registrations_per_hour;
        let t = now.unix();
        if limit > 0 {
            if let Some(next) = self.registrations.next_allowed(addr, limit, t) {
                let at =
                    Timestamp::from_unix(next).map_or_else(String::new, |t| format!(" (at {t})"));
                return self.error(
                    id,
                    ErrorCode::RegisterThrottled,
                    format!(
                        "{limit} account(s) were registered from your address in the last hour, \
                         as many as it may; the next is possible in {}{at}.",
                        left(next - t)
                    ),
                );
            }
        }
        let queued = self.start(
            id,
            Request::Register {
                client: id,
                nick,
                password,
                since,
            },
        );
        if queued && limit > 0 {
            let addresses = self.config.registration_addresses;
            self.registrations.count(id, addr, limit, addresses, t);
        }
    }

    pub(super) fn login(&mut self, id: ClientId, nick: String, password: Secret, now: Timestamp) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        if client.pending {
            return self.still_checking(id);
        }
        if names::check_nick(&nick).is_err() {
            return self.error(
                id,
                ErrorCode::LoginFailed,
                format!("{nick} is not a nickname, so it cannot be an account."),
            );
        }
        let key = names::fold(&nick);
        if client.account.as_ref() == Some(&key)
            && client.nick.as_deref().map(names::fold) == Some(key.clone())
        {
            return self.send(
                id,
                &ServerLine::Info(format!("You are logged in as {nick} already.")),
            );
        }
        let addr = address_key(client.addr);
        if let Some(ban) = self.ban_on(&BanTarget::Nick(key.clone()), now) {
            let text = ban_text(&ban, now);
            return self.error(id, ErrorCode::Banned, text);
        }
        if let Some(text) = self.throttled(addr, &key, &nick, now) {
            return self.error(id, ErrorCode::LoginThrottled, text);
        }
        // In cluster mode the accounts thread asks Redis: an account made on
        // another node a moment ago may not be known here yet.
        if !self.registered.contains_key(&key) && !self.config.cluster {
            return self.error(
                id,
                ErrorCode::LoginFailed,
                format!(
                    "{nick} is not registered. NICK {nick} takes it; REGISTER <password> then \
                     keeps it yours."
                ),
            );
        }
        self.start(
            id,
            Request::Login {
                client: id,
                nick,
                password,
            },
        );
    }

    pub(super) fn change_password(
        &mut self,
        id: ClientId,
        old: Secret,
        new: Secret,
        now: Timestamp,
    ) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        if client.pending {
            return self.still_checking(id);
        }
        let Some(account) = client.account.as_ref().and_then(|k| self.registered.get(k)) else {
            return self.error(
                id,
                ErrorCode::NotLoggedIn,
                "Log in first (LOGIN <nick> <password>); PASSWORD changes the password of the \
                 account you are logged in to."
                    .into(),
            );
        };
        let nick = account.nick.clone();
        if let Some(text) =
            self.throttled(address_key(client.addr), &names::fold(&nick), &nick, now)
        {
            return self.error(id, ErrorCode::LoginThrottled, text);
        }
        if let Some(problem) = password_problem(&new) {
            return self.error(id, ErrorCode::BadArgument, format!("{problem}."));
        }
        self.start(
            id,
            Request::ChangePassword {
                client: id,
                nick,
                old,
                new,
            },
        );
    }

    /// Why a login for `key` from `addr` must wait, if it must.
    fn throttled(&self, addr: IpAddr, key: &str, nick: &str, now: Timestamp) -> Option<String> {
        let t = now.unix();
        let (until, whose) = match (
            self.failed_by_addr.locked(&addr, t),
            self.failed_by_account.locked(&key.to_owned(), t),
        ) {
            (Some(a), Some(b)) => (
                a.max(b),
                "from your address and for this account".to_owned(),
            ),
            (Some(a), None) => (a, "from your address".to_owned()),
            (None, Some(b)) => (b, format!("for {nick}")),
            (None, None) => return None,
        };
        let at = Timestamp::from_unix(until).map_or_else(String::new, |t| format!(" (at {t})"));
        Some(format!(
            "Too many failed logins {whose}; try again in {} s{at}.",
            until - t
        ))
    }

    /// Queues a password check for client `id`, unless its address has as
    /// many under way as it may: many connections from one address must not
    /// fill the queue before their failures count.
    /// Returns whether it was queued.
    fn start(&mut self, id: ClientId, request: Request) -> bool {
        let Some(client) = self.clients.get_mut(&id) else {
            return false;
        };
        let addr = address_key(client.addr);
        let checking = self.checking.entry(addr).or_insert(0);
        if *checking >= CHECKS_PER_ADDRESS {
            self.error(
                id,
                ErrorCode::Busy,
                "Too many password checks from your address at once; wait for their answers."
                    .into(),
            );
            return false;
        }
        *checking += 1;
        client.pending = true;
        self.requests.push(request);
        true
    }

    /// Client `id`'s password check is over (answered, refused, or the
    /// client left).
    pub(super) fn done(&mut self, id: ClientId) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if !std::mem::replace(&mut client.pending, false) {
            return;
        }
        let addr = address_key(client.addr);
        if let Some(checking) = self.checking.get_mut(&addr) {
            *checking = checking.saturating_sub(1);
            if *checking == 0 {
                self.checking.remove(&addr);
            }
        }
    }

    pub(super) fn still_checking(&mut self, id: ClientId) {
        self.error(
            id,
            ErrorCode::Busy,
            "Still checking your last password; wait for its answer.".into(),
        );
    }

    fn logged_in(&mut self, id: ClientId, account: AccountInfo, now: Timestamp) {
        let key = names::fold(&account.nick);
        self.done(id);
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        let addr = address_key(client.addr);
        // An operator may have banned the nickname while its password was
        // being checked (found by the hub fuzzer).
        if let Some(ban) = self.ban_on(&BanTarget::Nick(key.clone()), now) {
            let text = ban_text(&ban, now);
            return self.error(id, ErrorCode::Banned, text);
        }
        self.failed_by_addr.succeed(&addr);
        self.failed_by_account.succeed(&key);
        // Whoever holds the nickname now gives it up: the owner's other
        // connection is closed, anyone else becomes a guest.
        if let Some(&holder) = self.nicks.get(&key) {
            if holder != id {
                let same_owner = self
                    .clients
                    .get(&holder)
                    .is_some_and(|c| c.account.as_ref() == Some(&key));
                if same_owner {
                    self.send(
                        holder,
                        &ServerLine::Bye("You logged in from another connection.".into()),
                    );
                    self.remove(holder, "logged in from another connection", now);
                } else {
                    self.make_guest(holder, now);
                }
            }
        }
        if let Some(client) = self.clients.get_mut(&id) {
            client.account = Some(key.clone());
            client.operator = account.operator;
        }
        self.registered.insert(key, account.clone());
        let nick = account.nick.clone();
        if self.nick(id) != Some(nick.as_str()) {
            self.assign_nick(id, &nick, now);
        } else if let Some(client) = self.clients.get_mut(&id) {
            client.since = account.since;
        }
        let role = if account.operator {
            " You are an operator: KICK, MUTE, UNMUTE, BAN and UNBAN are yours."
        } else {
            ""
        };
        tracing::info!(id, account = %nick, operator = account.operator, "logged in");
        self.send(
            id,
            &ServerLine::Account {
                nick: nick.clone(),
                operator: account.operator,
                text: format!("You are logged in as {nick}.{role}"),
            },
        );
    }

    /// If client `id` holds a registered nickname that is not its own,
    /// renames it to a guest nickname.
    fn evict_if_unowned(&mut self, id: ClientId, now: Timestamp) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        let Some(key) = client.nick.as_deref().map(names::fold) else {
            return;
        };
        if self.registered.contains_key(&key) && client.account.as_ref() != Some(&key) {
            self.make_guest(id, now);
        }
    }

    /// Renames client `id` to a free guest nickname, telling it why.
    pub(super) fn make_guest(&mut self, id: ClientId, now: Timestamp) {
        let Some(old) = self.nick(id).map(str::to_owned) else {
            return;
        };
        let guest = self.guest_nick(id);
        self.error(
            id,
            ErrorCode::NickRegistered,
            format!("{old} is a registered nickname and its owner logged in; you are now {guest}"),
        );
        if let Some(client) = self.clients.get_mut(&id) {
            client.account = None;
            client.operator = false;
        }
        self.assign_nick(id, &guest, now);
    }

    /// A free nickname for a guest: neither held nor registered.
    pub(super) fn guest_nick(&self, id: ClientId) -> String {
        names::suggest_nick("guest", |n| {
            let key = names::fold(n);
            self.nicks.get(&key).is_some_and(|&holder| holder != id)
                || self.registered.contains_key(&key)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Registrations, REGISTRATION_WINDOW};
    use std::net::{IpAddr, Ipv4Addr};

    fn addr(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn an_address_may_register_the_limit_per_hour() {
        let mut table = Registrations::default();
        let one = addr(1);
        for (client, t) in (0..3).zip([100, 200, 300]) {
            assert_eq!(table.next_allowed(one, 3, t), None);
            table.count(client, one, 3, 10, t);
            table.finish(client, true);
        }
        // Full: the next one when the oldest is an hour old.
        assert_eq!(
            table.next_allowed(one, 3, 400),
            Some(100 + REGISTRATION_WINDOW)
        );
        assert_eq!(table.next_allowed(addr(2), 3, 400), None);
        assert_eq!(table.next_allowed(one, 3, 100 + REGISTRATION_WINDOW), None);
    }

    #[test]
    fn a_registration_that_is_not_made_does_not_count() {
        let mut table = Registrations::default();
        let one = addr(1);
        table.count(7, one, 1, 10, 100);
        assert!(table.next_allowed(one, 1, 101).is_some());
        table.finish(7, false);
        assert_eq!(table.next_allowed(one, 1, 101), None);
        assert_eq!(table.len(), 0);
        // An answer for no registration changes nothing.
        table.finish(8, false);
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_stalest_address() {
        let mut table = Registrations::default();
        let cap = 64;
        // All within the hour, so none is pruned: the stalest must go.
        let t = |n: u32| if n == 0 { 10_000 } else { 11_000 };
        for n in 0..cap {
            table.count(u64::from(n), addr(n), 5, 64, t(n));
        }
        table.count(u64::from(cap), addr(cap), 5, 64, t(cap));
        assert_eq!(table.len(), 64);
        assert_eq!(table.next_allowed(addr(0), 1, t(cap)), None);
        assert!(table.next_allowed(addr(1), 1, t(cap)).is_some());
        assert!(table.next_allowed(addr(cap), 1, t(cap)).is_some());
        table.prune(t(cap) + REGISTRATION_WINDOW);
        assert_eq!(table.len(), 0);
    }
}
