//! [`Accounts`]: the handle the server holds, and the accounts thread, which
//! hashes and checks passwords and keeps accounts, bans and mutes.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::backend::Backend;
use super::memory::Memory;
use super::password::{hash, verify};
use super::{AccountInfo, AccountsError, AccountsMode, Answer, Request, Snapshot};
use crate::names;

/// Requests queued for the accounts thread before [`Accounts::try_send`]
/// says "busy": a few seconds of password checks.
const QUEUE: usize = 64;

/// How often the thread looks for changes made by another process.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// A request and when it must be answered by, if the database is locked.
struct Queued {
    request: Request,
    /// Past this, a locked database gets the request `ERR busy` at once
    /// (`None`: SQLite's own 5 s per statement).
    deadline: Option<Instant>,
}

/// The handle the server holds: queue requests, close on shutdown.
pub struct Accounts {
    queue: Option<SyncSender<Queued>>,
    /// How long a request may wait for a database another process has
    /// locked, counted from when it is queued (`None`: no request deadline).
    wait: Option<Duration>,
    thread: Option<JoinHandle<()>>,
}

impl Accounts {
    /// Opens the accounts and starts their thread; `reply` is called on that
    /// thread with every answer. Also returns what the hub must start with.
    /// Requests have no deadline of their own: each statement waits up to
    /// 5 s for a locked database, which suits `natter admin`.
    pub fn open(
        mode: &AccountsMode,
        reply: impl Fn(Answer) + Send + 'static,
    ) -> Result<(Self, Snapshot), AccountsError> {
        Self::start(mode, None, reply)
    }

    /// [`Accounts::open`] with `wait`, the longest a request may wait,
    /// from when it is queued, for a database another process has locked
    /// (`--accounts-wait`); past it, the request fails with `ERR busy`.
    pub fn open_with(
        mode: &AccountsMode,
        wait: Duration,
        reply: impl Fn(Answer) + Send + 'static,
    ) -> Result<(Self, Snapshot), AccountsError> {
        Self::start(mode, Some(wait), reply)
    }

    /// [`Accounts::open_with`] for one node of a cluster: accounts are
    /// shared by the nodes through the Redis at `url`, over this node's own
    /// (see `shared.rs`).
    pub fn open_shared(
        mode: &AccountsMode,
        wait: Duration,
        url: &str,
        reply: impl Fn(Answer) + Send + 'static,
    ) -> Result<(Self, Snapshot), AccountsError> {
        let backend = Box::new(super::shared::Shared::open(open_backend(mode)?, url)?);
        Self::start_on(backend, Some(wait), reply)
    }

    fn start(
        mode: &AccountsMode,
        wait: Option<Duration>,
        reply: impl Fn(Answer) + Send + 'static,
    ) -> Result<(Self, Snapshot), AccountsError> {
        Self::start_on(open_backend(mode)?, wait, reply)
    }

    fn start_on(
        mut backend: Box<dyn Backend>,
        wait: Option<Duration>,
        reply: impl Fn(Answer) + Send + 'static,
    ) -> Result<(Self, Snapshot), AccountsError> {
        let snapshot = backend.snapshot()?;
        let (queue, inbox) = mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("natter-accounts".into())
            .spawn(move || run(backend, inbox, reply))
            .map_err(AccountsError::Thread)?;
        Ok((
            Self {
                queue: Some(queue),
                wait,
                thread: Some(thread),
            },
            snapshot,
        ))
    }

    /// Queues a request; gives it back if the queue is full.
    pub fn try_send(&self, request: Request) -> Result<(), Request> {
        let Some(queue) = &self.queue else {
            return Err(request);
        };
        let deadline = self.wait.map(|wait| Instant::now() + wait);
        queue
            .try_send(Queued { request, deadline })
            .map_err(|err| match err {
                TrySendError::Full(q) | TrySendError::Disconnected(q) => q.request,
            })
    }

    /// Finishes the queued requests and stops the thread.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(mut backend: Box<dyn Backend>, inbox: mpsc::Receiver<Queued>, reply: impl Fn(Answer)) {
    let mut watched = Instant::now();
    loop {
        match inbox.recv_timeout(WATCH_EVERY) {
            Ok(Queued { request, deadline }) => {
                wait_until(deadline);
                let answer = handle(backend.as_mut(), request);
                wait_until(None);
                if let Some(answer) = answer {
                    reply(answer);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if watched.elapsed() >= WATCH_EVERY {
            watched = Instant::now();
            if backend.changed_elsewhere() {
                match backend.snapshot() {
                    Ok(snapshot) => reply(Answer::Reloaded(snapshot)),
                    Err(err) => tracing::error!(%err, "cannot reload the accounts"),
                }
            }
        }
    }
}

fn handle(backend: &mut dyn Backend, request: Request) -> Option<Answer> {
    let failed = |client, err: AccountsError| {
        tracing::error!(%err, "accounts request failed");
        Answer::Failed { client }
    };
    Some(match request {
        Request::Register {
            client,
            nick,
            password,
            since,
        } => {
            let key = names::fold(&nick);
            match backend.get(&key) {
                Ok(Some(_)) => return Some(Answer::Taken { client, nick }),
                Ok(None) => {}
                Err(err) => return Some(failed(client, err)),
            }
            let account = AccountInfo {
                nick,
                operator: false,
                since,
            };
            match hash(&password).and_then(|hash| backend.insert(&account, &hash)) {
                Ok(()) => Answer::Registered { client, account },
                Err(AccountsError::Exists(nick)) => Answer::Taken { client, nick },
                Err(err) => failed(client, err),
            }
        }
        Request::Login {
            client,
            nick,
            password,
        } => match backend.get(&names::fold(&nick)) {
            Ok(Some((account, stored))) if verify(&password, &stored) => {
                Answer::LoggedIn { client, account }
            }
            Ok(Some(_)) => Answer::WrongPassword { client, nick },
            Ok(None) => {
                // As slow as a real check, so timing does not tell.
                let _ = hash(&password);
                Answer::WrongPassword { client, nick }
            }
            Err(err) => failed(client, err),
        },
        Request::ChangePassword {
            client,
            nick,
            old,
            new,
        } => {
            let key = names::fold(&nick);
            match backend.get(&key) {
                Ok(Some((_, stored))) if verify(&old, &stored) => {
                    match hash(&new).and_then(|hash| backend.set_hash(&key, &hash)) {
                        Ok(()) => Answer::PasswordChanged { client },
                        Err(err) => failed(client, err),
                    }
                }
                Ok(_) => Answer::WrongPassword { client, nick },
                Err(err) => failed(client, err),
            }
        }
        Request::SaveBan(ban) => {
            if let Err(err) = backend.save_ban(&ban) {
                tracing::error!(%err, "cannot store a ban");
            }
            return None;
        }
        Request::RemoveBan(target) => {
            if let Err(err) = backend.remove_ban(&target) {
                tracing::error!(%err, "cannot remove a ban");
            }
            return None;
        }
        Request::SaveMute(mute) => {
            if let Err(err) = backend.save_mute(&mute) {
                tracing::error!(%err, "cannot store a mute");
            }
            return None;
        }
        Request::RemoveMute(nick) => {
            if let Err(err) = backend.remove_mute(&nick) {
                tracing::error!(%err, "cannot remove a mute");
            }
            return None;
        }
    })
}

pub(super) fn open_backend(mode: &AccountsMode) -> Result<Box<dyn Backend>, AccountsError> {
    match mode {
        AccountsMode::Memory => Ok(Box::<Memory>::default()),
        AccountsMode::Sqlite(dir) => open_sqlite(dir),
    }
}

/// Bounds the database waits of what follows on this thread.
#[cfg(feature = "sqlite")]
fn wait_until(deadline: Option<Instant>) {
    super::sqlite::wait_until(deadline);
}

/// Memory never waits.
#[cfg(not(feature = "sqlite"))]
fn wait_until(_deadline: Option<Instant>) {}

#[cfg(not(feature = "sqlite"))]
pub(super) fn open_sqlite(_dir: &Path) -> Result<Box<dyn Backend>, AccountsError> {
    Err(AccountsError::NoSqlite)
}

#[cfg(feature = "sqlite")]
pub(super) fn open_sqlite(dir: &Path) -> Result<Box<dyn Backend>, AccountsError> {
    super::sqlite::Sqlite::open(dir).map(|db| Box::new(db) as Box<dyn Backend>)
}
