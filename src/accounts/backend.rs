//! The trait the accounts thread and `natter admin` work through, on disk or
//! in memory.

use super::{AccountInfo, AccountsError, Ban, BanTarget, Mute, Snapshot};

/// Where accounts live; the same operations on disk or in memory.
pub(super) trait Backend: Send {
    fn get(&mut self, key: &str) -> Result<Option<(AccountInfo, String)>, AccountsError>;
    fn insert(&mut self, account: &AccountInfo, hash: &str) -> Result<(), AccountsError>;
    fn set_hash(&mut self, key: &str, hash: &str) -> Result<(), AccountsError>;
    fn set_operator(&mut self, key: &str, operator: bool) -> Result<(), AccountsError>;
    fn delete(&mut self, key: &str) -> Result<(), AccountsError>;
    fn snapshot(&mut self) -> Result<Snapshot, AccountsError>;
    fn save_ban(&mut self, ban: &Ban) -> Result<(), AccountsError>;
    fn remove_ban(&mut self, target: &BanTarget) -> Result<bool, AccountsError>;
    fn save_mute(&mut self, mute: &Mute) -> Result<(), AccountsError>;
    fn remove_mute(&mut self, nick: &str) -> Result<bool, AccountsError>;
    /// True if another process wrote to the store since the last call.
    fn changed_elsewhere(&mut self) -> bool;
}
