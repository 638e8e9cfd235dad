//! `natter admin`: accounts and bans in the server's database, or in a
//! cluster's Redis with `--cluster`, with what it prints and the password
//! prompt. It works while servers run, which pick the changes up within a
//! second.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use argh::FromArgs;

use super::serve::data_dir;
use crate::accounts::{BanTarget, Snapshot};
use crate::protocol::{Secret, Timestamp};

/// Manage accounts and bans in the server's database, or a cluster's
/// (works while servers run; they pick changes up within a second).
/// Passwords are read from standard input, never from the command line.
#[derive(FromArgs)]
#[argh(subcommand, name = "admin")]
pub struct Admin {
    /// directory of the database (default $XDG_DATA_HOME/natter, or
    /// ~/.local/share/natter)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// the Redis URL of a cluster (redis://127.0.0.1:6379/0): work on its
    /// accounts and bans, which every node shares, instead of the data
    /// directory's
    #[argh(option)]
    cluster: Option<String>,
    #[argh(subcommand)]
    action: Action,
}

/// What `natter admin` is asked to do.
#[derive(FromArgs)]
#[argh(subcommand)]
enum Action {
    List(List),
    Create(Create),
    Passwd(Passwd),
    Op(Op),
    Deop(Deop),
    Delete(Delete),
    Unban(Unban),
    Reload(Reload),
}

/// Ask the server running on this data directory to read its --config
/// file, MOTD and TLS certificate again (SIGHUP to the pid in natter.pid);
/// with --cluster too, only that server on this machine.
#[derive(FromArgs)]
#[argh(subcommand, name = "reload")]
struct Reload {}

/// List the accounts and the bans in force.
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
struct List {}

/// Create an account (the password is read from standard input).
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
struct Create {
    /// the nickname
    #[argh(positional)]
    nick: String,
    /// make it an operator
    #[argh(switch)]
    op: bool,
}

/// Set a new password for an account (read from standard input); the old
/// one is not needed.
#[derive(FromArgs)]
#[argh(subcommand, name = "passwd")]
struct Passwd {
    /// the nickname
    #[argh(positional)]
    nick: String,
}

/// Make an account an operator.
#[derive(FromArgs)]
#[argh(subcommand, name = "op")]
struct Op {
    /// the nickname
    #[argh(positional)]
    nick: String,
}

/// Take operator rights away from an account.
#[derive(FromArgs)]
#[argh(subcommand, name = "deop")]
struct Deop {
    /// the nickname
    #[argh(positional)]
    nick: String,
}

/// Delete an account; its nickname is free again.
#[derive(FromArgs)]
#[argh(subcommand, name = "delete")]
struct Delete {
    /// the nickname
    #[argh(positional)]
    nick: String,
}

/// Lift a ban on a nickname, an IP address or a range (203.0.113.0/24;
/// a single IPv6 address stands for its /64).
#[derive(FromArgs)]
#[argh(subcommand, name = "unban")]
struct Unban {
    /// a nickname or an IP address
    #[argh(positional)]
    target: String,
}

impl Admin {
    /// Carries out the action on the database and prints the outcome.
    pub fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        let dir = self.data_dir.unwrap_or_else(data_dir);
        if let Action::Reload(Reload {}) = self.action {
            let pid = super::serve::reload_running(&dir)?;
            println!("Asked the server (process {pid}) to reload; its log says what changed.");
            return Ok(());
        }
        let (mut admin, place) = match &self.cluster {
            Some(url) => (
                crate::accounts::admin::Admin::open_cluster(url)?,
                "the cluster".to_owned(),
            ),
            None => (
                crate::accounts::admin::Admin::open(&dir)?,
                dir.display().to_string(),
            ),
        };
        match self.action {
            Action::List(_) => {
                let snapshot = admin.snapshot()?;
                let now = chrono::Utc::now().timestamp();
                print!("{}", listing(&snapshot, &place, now));
            }
            Action::Create(create) => {
                let password = read_password(&format!("Password for {}: ", create.nick))?;
                admin.create(&create.nick, &password, create.op)?;
                let role = if create.op { " (operator)" } else { "" };
                println!("{} is registered{role}.", create.nick);
            }
            Action::Passwd(passwd) => {
                let password = read_password(&format!("New password for {}: ", passwd.nick))?;
                admin.set_password(&passwd.nick, &password)?;
                println!("The password of {} is changed.", passwd.nick);
            }
            Action::Op(op) => {
                admin.set_operator(&op.nick, true)?;
                println!("{} is an operator.", op.nick);
            }
            Action::Deop(deop) => {
                admin.set_operator(&deop.nick, false)?;
                println!("{} is no longer an operator.", deop.nick);
            }
            Action::Delete(delete) => {
                admin.delete(&delete.nick)?;
                println!("{} is deleted; the nickname is free.", delete.nick);
            }
            Action::Unban(unban) => {
                if admin.unban(&unban.target)? {
                    println!("The ban on {} is lifted.", unban.target);
                } else {
                    println!("{} was not banned.", unban.target);
                }
            }
            // Answered above, without opening the database.
            Action::Reload(Reload {}) => {}
        }
        Ok(())
    }
}

/// What `natter admin list` prints: the accounts, then the bans and the
/// mutes still in force at `now` (Unix seconds).
fn listing(snapshot: &Snapshot, place: &str, now: i64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{} account(s) in {place}", snapshot.accounts.len());
    for account in &snapshot.accounts {
        let role = if account.operator { "  operator" } else { "" };
        let _ = writeln!(out, "  {}{role}", account.nick);
    }
    let bans: Vec<_> = snapshot.bans.iter().filter(|b| b.until > now).collect();
    let _ = writeln!(out, "{} ban(s) in force", bans.len());
    for ban in bans {
        let what = match &ban.target {
            BanTarget::Nick(_) => "nick",
            BanTarget::Addr(_) => "address",
        };
        let until =
            Timestamp::from_unix(ban.until).map_or_else(|| "forever".to_owned(), |t| t.to_string());
        let _ = writeln!(
            out,
            "  {what} {} until {until} by {}: {}",
            ban.target, ban.by, ban.reason
        );
    }
    let mutes: Vec<_> = snapshot.mutes.iter().filter(|m| m.until > now).collect();
    if !mutes.is_empty() {
        let _ = writeln!(out, "{} mute(s) in force", mutes.len());
    }
    for mute in mutes {
        let until = Timestamp::from_unix(mute.until)
            .map_or_else(|| "forever".to_owned(), |t| t.to_string());
        let _ = writeln!(out, "  nick {} until {until} by {}", mute.nick, mute.by);
    }
    out
}

/// Reads a password from standard input: one line. At a terminal it asks,
/// with echo off, and asks twice to catch typos.
fn read_password(prompt: &str) -> Result<Secret, Box<dyn std::error::Error>> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        return Ok(Secret::new(line.trim_end_matches(['\r', '\n']).to_owned()));
    }
    let first = rpassword::prompt_password(prompt)?;
    if rpassword::prompt_password("Again: ")? != first {
        return Err("the two passwords differ".into());
    }
    Ok(Secret::new(first))
}
