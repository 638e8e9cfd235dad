//! [`Admin`]: `natter admin`'s account and ban management, straight on the
//! database, or on a cluster's store in Redis (`--cluster`).

use std::path::{Path, PathBuf};

use super::backend::Backend;
use super::memory::Memory;
use super::password::{hash, verify};
use super::shared::Shared;
use super::thread::open_sqlite;
use super::{password_problem, AccountInfo, AccountsError, BanTarget, Snapshot};
use crate::names;
use crate::protocol::Secret;

/// `natter admin`: account and ban management straight on the database,
/// for whoever runs the server. A running server picks the changes up
/// within a second.
pub struct Admin {
    store: Store,
    /// The data directory, where the history database may be too.
    dir: Option<PathBuf>,
}

/// Where the admin works.
enum Store {
    /// A node's own database (or memory, for tests).
    Local(Box<dyn Backend>),
    /// A cluster's accounts, bans and mutes in Redis, through the backend
    /// the nodes use, so both read and write them alike.
    Cluster(Box<Shared>),
}

impl Admin {
    /// Opens the accounts database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, AccountsError> {
        Ok(Self {
            store: Store::Local(open_sqlite(dir)?),
            dir: Some(dir.to_owned()),
        })
    }

    /// Works on the accounts, bans and mutes of the cluster whose Redis is
    /// at `url`: every node that is up picks the changes up within a
    /// second.
    pub fn open_cluster(url: &str) -> Result<Self, AccountsError> {
        Ok(Self {
            store: Store::Cluster(Box::new(Shared::admin(url)?)),
            dir: None,
        })
    }

    /// An admin over an in-memory store, for tests.
    pub fn memory() -> Self {
        Self {
            store: Store::Local(Box::<Memory>::default()),
            dir: None,
        }
    }

    fn backend(&mut self) -> &mut dyn Backend {
        match &mut self.store {
            Store::Local(backend) => backend.as_mut(),
            Store::Cluster(shared) => shared.as_mut(),
        }
    }

    /// Every account and ban.
    pub fn snapshot(&mut self) -> Result<Snapshot, AccountsError> {
        self.backend().snapshot()
    }

    /// Creates an account.
    pub fn create(
        &mut self,
        nick: &str,
        password: &Secret,
        operator: bool,
    ) -> Result<(), AccountsError> {
        if let Err(err) = names::check_nick(nick) {
            return Err(AccountsError::Invalid(format!(
                "{nick} is not a valid nickname ({err:?})"
            )));
        }
        if let Some(problem) = password_problem(password) {
            return Err(AccountsError::Invalid(problem));
        }
        // Private history from now on, as for an account registered in
        // the chat: message ids come from the clock, so "now" is the
        // current time in microseconds, or a higher id already reserved or
        // stored (a clock set back). A running server numbers later
        // messages above it when it loads the account.
        let mut since = start_id(self.dir.as_deref());
        if let Store::Cluster(shared) = &mut self.store {
            // Cluster ids come from Redis, whatever this machine's clock.
            since = since.max(shared.last_id()?.saturating_add(1));
        }
        let account = AccountInfo {
            nick: nick.to_owned(),
            operator,
            since,
        };
        let hash = hash(password)?;
        self.backend().insert(&account, &hash)
    }

    /// Sets a new password (a reset: the old one is not needed).
    pub fn set_password(&mut self, nick: &str, password: &Secret) -> Result<(), AccountsError> {
        if let Some(problem) = password_problem(password) {
            return Err(AccountsError::Invalid(problem));
        }
        let key = names::fold(nick);
        if self.backend().get(&key)?.is_none() {
            return Err(AccountsError::NoAccount(nick.to_owned()));
        }
        let hash = hash(password)?;
        self.backend().set_hash(&key, &hash)
    }

    /// Makes an account an operator, or not.
    pub fn set_operator(&mut self, nick: &str, operator: bool) -> Result<(), AccountsError> {
        self.backend().set_operator(&names::fold(nick), operator)
    }

    /// Deletes an account: the nickname is free again.
    pub fn delete(&mut self, nick: &str) -> Result<(), AccountsError> {
        self.backend().delete(&names::fold(nick))
    }

    /// Lifts a ban on a nickname or address; false if there was none. On
    /// a cluster, the nodes that are up are told at once, since each keeps
    /// its bans in its own store too.
    pub fn unban(&mut self, target: &str) -> Result<bool, AccountsError> {
        let target = BanTarget::parse(target);
        let removed = self.backend().remove_ban(&target)?;
        if let Store::Cluster(shared) = &mut self.store {
            shared.announce_unban(&target, "admin")?;
        }
        Ok(removed)
    }

    /// True if `password` is `nick`'s.
    pub fn check(&mut self, nick: &str, password: &Secret) -> Result<bool, AccountsError> {
        Ok(self
            .backend()
            .get(&names::fold(nick))?
            .is_some_and(|(_, stored)| verify(password, &stored)))
    }
}

/// The id an account created now starts at: the clock in microseconds, or
/// the id floor or the highest stored id in `dir` if either is higher.
fn start_id(dir: Option<&Path>) -> u64 {
    let now = crate::store::floor::now_micros();
    let Some(dir) = dir else {
        return now;
    };
    let floor = crate::store::floor::read(dir).ok().flatten().unwrap_or(0);
    now.max(floor).max(crate::store::sqlite::last_id_in(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::thread::Accounts;
    use crate::accounts::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn secret(s: &str) -> Secret {
        Secret::new(s)
    }

    fn exercise(admin: &mut Admin) {
        admin
            .create("Alice", &secret("correct horse"), false)
            .unwrap();
        assert!(matches!(
            admin.create("alice", &secret("something else"), false),
            Err(AccountsError::Exists(_))
        ));
        assert!(admin.check("ALICE", &secret("correct horse")).unwrap());
        assert!(!admin.check("alice", &secret("wrong one!")).unwrap());
        admin
            .set_password("alice", &secret("battery staple"))
            .unwrap();
        assert!(admin.check("alice", &secret("battery staple")).unwrap());
        assert!(!admin.check("alice", &secret("correct horse")).unwrap());
        assert!(admin.set_password("alice", &secret("short")).is_err());
        assert!(admin
            .set_password("nobody", &secret("long enough"))
            .is_err());
        admin.set_operator("alice", true).unwrap();
        let snapshot = admin.snapshot().unwrap();
        let since = snapshot.accounts.first().map_or(0, |a| a.since);
        assert!(
            since > 1_700_000_000_000_000,
            "an account starts at the clock, in microseconds: {since}"
        );
        assert_eq!(
            snapshot.accounts,
            vec![AccountInfo {
                nick: "Alice".into(),
                operator: true,
                since,
            }]
        );
        admin.delete("alice").unwrap();
        assert!(admin.snapshot().unwrap().accounts.is_empty());
        assert!(admin.delete("alice").is_err());
    }

    #[test]
    fn an_account_starts_above_the_id_floor_and_the_clock() {
        let dir = std::env::temp_dir().join(format!("natter-start-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = crate::store::floor::now_micros();
        assert!(start_id(None) >= now);
        assert!(start_id(Some(&dir)) >= now, "no floor yet: the clock");
        let ahead = now + 3_600_000_000;
        crate::store::floor::write(&dir, ahead).unwrap();
        assert_eq!(start_id(Some(&dir)), ahead, "a floor ahead of the clock");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn memory_admin_manages_accounts() {
        exercise(&mut Admin::memory());
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_admin_manages_accounts_and_bans_and_a_server_sees_changes() {
        let dir = std::env::temp_dir().join(format!("natter-accounts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        exercise(&mut Admin::open(&dir).unwrap());

        // The server's thread notices another process's change.
        let (tx, rx) = mpsc::channel();
        let (accounts, snapshot) = Accounts::open(&AccountsMode::Sqlite(dir.clone()), move |r| {
            let _ = tx.send(r);
        })
        .unwrap();
        assert!(snapshot.accounts.is_empty());
        let ban = Ban {
            target: BanTarget::parse("::ffff:192.0.2.1"),
            until: 99,
            by: "op".into(),
            reason: "spam".into(),
        };
        accounts.try_send(Request::SaveBan(ban.clone())).unwrap();
        let mut admin = Admin::open(&dir).unwrap();
        admin
            .create("bob", &secret("hunter2hunter2"), true)
            .unwrap();
        let reloaded = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let Answer::Reloaded(snapshot) = reloaded else {
            panic!("expected a reload, got {reloaded:?}");
        };
        assert_eq!(snapshot.accounts.len(), 1);
        assert!(snapshot.accounts[0].operator);
        assert_eq!(snapshot.bans, vec![ban]);
        assert_eq!(snapshot.bans[0].target.to_string(), "192.0.2.1/32");
        assert!(admin.unban("192.0.2.1").unwrap());
        accounts.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_thread_registers_logs_in_and_changes_passwords() {
        let (tx, rx) = mpsc::channel();
        let (accounts, _) = Accounts::open(&AccountsMode::Memory, move |r| {
            let _ = tx.send(r);
        })
        .unwrap();
        let ask = |request| {
            accounts.try_send(request).unwrap();
            rx.recv_timeout(Duration::from_secs(10)).unwrap()
        };
        let reply = ask(Request::Register {
            client: 1,
            nick: "Carol".into(),
            password: secret("longpassword"),
            since: 7,
        });
        let carol = AccountInfo {
            nick: "Carol".into(),
            operator: false,
            since: 7,
        };
        assert_eq!(
            reply,
            Answer::Registered {
                client: 1,
                account: carol.clone()
            }
        );
        let reply = ask(Request::Register {
            client: 2,
            nick: "carol".into(),
            password: secret("otherpassword"),
            since: 8,
        });
        assert_eq!(
            reply,
            Answer::Taken {
                client: 2,
                nick: "carol".into()
            }
        );
        let login = |password: &str| Request::Login {
            client: 3,
            nick: "CAROL".into(),
            password: secret(password),
        };
        assert_eq!(
            ask(login("longpassword")),
            Answer::LoggedIn {
                client: 3,
                account: carol
            }
        );
        assert!(matches!(
            ask(login("wrongpassword")),
            Answer::WrongPassword { client: 3, .. }
        ));
        let change = |old: &str| Request::ChangePassword {
            client: 4,
            nick: "carol".into(),
            old: secret(old),
            new: secret("newpassword"),
        };
        assert!(matches!(
            ask(change("wrongpassword")),
            Answer::WrongPassword { .. }
        ));
        assert_eq!(
            ask(change("longpassword")),
            Answer::PasswordChanged { client: 4 }
        );
        assert!(matches!(
            ask(login("newpassword")),
            Answer::LoggedIn { client: 3, .. }
        ));
        assert!(format!("{:?}", login("newpassword")).contains("Secret(..)"));
        assert!(!format!("{:?}", login("newpassword")).contains("newpassword"));
    }
}
