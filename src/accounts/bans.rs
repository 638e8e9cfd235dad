//! [`AddressBans`]: the address bans in force, shared between the hub
//! (which changes them) and the accept loops (which read them for every
//! newcomer, before any other work is spent on it).

use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use super::Ban;

/// The address bans in force, cheap to read from any thread: a lock held
/// only to clone or swap one `Arc`, never while matching.
#[derive(Debug, Clone, Default)]
pub struct AddressBans(Arc<RwLock<Arc<[Ban]>>>);

impl AddressBans {
    /// Replaces the set with the address bans among `bans`.
    pub fn replace<'a>(&self, bans: impl IntoIterator<Item = &'a Ban>) {
        let kept: Arc<[Ban]> = bans
            .into_iter()
            .filter(|ban| matches!(ban.target, super::BanTarget::Addr(_)))
            .cloned()
            .collect();
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = kept;
    }

    /// The ban in force at Unix second `now` that keeps out `addr`, if any
    /// (the one that lasts longest, when ranges overlap).
    pub fn find(&self, addr: IpAddr, now: i64) -> Option<Ban> {
        let bans = Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner));
        bans.iter()
            .filter(|ban| ban.until > now && ban.target.covers_addr(addr))
            .max_by_key(|ban| ban.until)
            .cloned()
    }
}
