//! Accounts, bans and mutes in memory, for `--accounts memory` and the
//! tests: kept for the run.

use std::collections::HashMap;

use super::backend::Backend;
use super::{AccountInfo, AccountsError, Ban, BanTarget, Mute, Snapshot};
use crate::names;

#[derive(Default)]
pub(super) struct Memory {
    accounts: HashMap<String, (AccountInfo, String)>,
    bans: HashMap<BanTarget, Ban>,
    mutes: HashMap<String, Mute>,
}

impl Backend for Memory {
    fn get(&mut self, key: &str) -> Result<Option<(AccountInfo, String)>, AccountsError> {
        Ok(self.accounts.get(key).cloned())
    }

    fn insert(&mut self, account: &AccountInfo, hash: &str) -> Result<(), AccountsError> {
        let key = names::fold(&account.nick);
        if self.accounts.contains_key(&key) {
            return Err(AccountsError::Exists(account.nick.clone()));
        }
        self.accounts
            .insert(key, (account.clone(), hash.to_owned()));
        Ok(())
    }

    fn set_hash(&mut self, key: &str, hash: &str) -> Result<(), AccountsError> {
        let entry = self
            .accounts
            .get_mut(key)
            .ok_or_else(|| AccountsError::NoAccount(key.to_owned()))?;
        entry.1 = hash.to_owned();
        Ok(())
    }

    fn set_operator(&mut self, key: &str, operator: bool) -> Result<(), AccountsError> {
        let entry = self
            .accounts
            .get_mut(key)
            .ok_or_else(|| AccountsError::NoAccount(key.to_owned()))?;
        entry.0.operator = operator;
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<(), AccountsError> {
        self.accounts
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| AccountsError::NoAccount(key.to_owned()))
    }

    fn snapshot(&mut self) -> Result<Snapshot, AccountsError> {
        let mut accounts: Vec<AccountInfo> =
            self.accounts.values().map(|(a, _)| a.clone()).collect();
        accounts.sort_by_key(|a| names::fold(&a.nick));
        Ok(Snapshot {
            accounts,
            bans: self.bans.values().cloned().collect(),
            mutes: self.mutes.values().cloned().collect(),
        })
    }

    fn save_ban(&mut self, ban: &Ban) -> Result<(), AccountsError> {
        self.bans.insert(ban.target.clone(), ban.clone());
        Ok(())
    }

    fn remove_ban(&mut self, target: &BanTarget) -> Result<bool, AccountsError> {
        Ok(self.bans.remove(target).is_some())
    }

    fn save_mute(&mut self, mute: &Mute) -> Result<(), AccountsError> {
        self.mutes.insert(mute.nick.clone(), mute.clone());
        Ok(())
    }

    fn remove_mute(&mut self, nick: &str) -> Result<bool, AccountsError> {
        Ok(self.mutes.remove(nick).is_some())
    }

    fn changed_elsewhere(&mut self) -> bool {
        false
    }
}
