//! Helpers shared by the moderation tests (`bans.rs`, `mutes.rs`): a
//! database in a fresh directory with an operator account in it, and that
//! operator logged in.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::common::raw::Client;
use natter::accounts::admin::Admin;
use natter::accounts::AccountsMode;
use natter::protocol::{ErrorCode, Secret, ServerLine};

/// A fresh directory for one test's database.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("natter-mod-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The test configuration, with accounts, bans and mutes in SQLite in `dir`.
pub fn sqlite_config(dir: &Path) -> natter::Config {
    natter::Config {
        accounts: AccountsMode::Sqlite(dir.to_path_buf()),
        ..super::common::config()
    }
}

/// Makes `oper` an operator account in the database in `dir`.
pub fn make_operator(dir: &Path) {
    Admin::open(dir)
        .expect("open the accounts database")
        .create("oper", &Secret::new("operator-password"), true)
        .expect("create the operator");
}

/// Logs in as the operator, from 127.0.0.1.
pub fn operator(server: SocketAddr) -> Client {
    let mut op = Client::connect(server);
    op.set_name("oper");
    op.expect("HELLO ");
    op.send_line("LOGIN oper operator-password");
    op.expect("WELCOME oper ");
    op.until("ACCOUNT oper op ");
    op
}

/// The next line must be `ERR <code> ...`; returns its text.
pub fn expect_err(client: &mut Client, code: ErrorCode) -> String {
    match client.parsed() {
        ServerLine::Err { code: got, text } if got == code => text,
        other => panic!("{}: expected ERR {code}, got {other:?}", client.name()),
    }
}
