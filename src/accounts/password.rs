//! Password hashing and checking: argon2id with a fresh salt per hash, PHC
//! strings at rest. Slow on purpose; only the accounts thread and
//! `natter admin` call it.

use super::AccountsError;
use crate::protocol::Secret;

/// An argon2id hash of `password` with a fresh salt, as a PHC string.
#[cfg(feature = "accounts")]
pub fn hash(password: &Secret) -> Result<String, AccountsError> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.expose().as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| AccountsError::Hash(err.to_string()))
}

/// Without the `accounts` feature nothing can be registered.
#[cfg(not(feature = "accounts"))]
pub fn hash(_password: &Secret) -> Result<String, AccountsError> {
    Err(AccountsError::Hash(
        "this natter was built without password hashing".into(),
    ))
}

/// True if `password` matches the stored PHC string.
#[cfg(feature = "accounts")]
pub fn verify(password: &Secret, stored: &str) -> bool {
    use argon2::password_hash::{phc::PasswordHash, PasswordVerifier};
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password.expose().as_bytes(), &parsed)
        .is_ok()
}

/// Without the `accounts` feature no password is right.
#[cfg(not(feature = "accounts"))]
pub fn verify(_password: &Secret, _stored: &str) -> bool {
    false
}
