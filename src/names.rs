//! Nicknames and room names: what is valid, how they compare, and what to
//! suggest instead of a taken or invalid one.
//!
//! Names are plain ASCII so that they survive every terminal, can be typed on
//! any keyboard and split on spaces by programs. Comparison is ASCII
//! case-insensitive: `Bob` and `bob` are the same person.

/// Longest nickname, in characters (all ASCII, so also bytes).
pub const NICK_MAX: usize = 16;
/// Longest room name, including the leading `#`.
pub const ROOM_MAX: usize = 32;

/// Why a nickname was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NickError {
    /// The name was empty.
    #[error("a nickname cannot be empty")]
    Empty,
    /// The name was longer than [`NICK_MAX`].
    #[error("a nickname has at most {NICK_MAX} characters")]
    TooLong,
    /// The first character was not an ASCII letter.
    #[error("a nickname starts with a letter")]
    BadStart,
    /// A character outside `A-Z a-z 0-9 _ -`.
    #[error("a nickname uses only letters, digits, _ and -")]
    BadChar,
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// Checks a nickname against the rules in PROTOCOL.md: 1 to [`NICK_MAX`]
/// characters from `A-Z a-z 0-9 _ -`, starting with a letter.
pub fn check_nick(nick: &str) -> Result<(), NickError> {
    let bytes = nick.as_bytes();
    match bytes.first() {
        None => return Err(NickError::Empty),
        Some(c) if !c.is_ascii_alphabetic() => return Err(NickError::BadStart),
        Some(_) => {}
    }
    if !bytes.iter().copied().all(is_name_char) {
        return Err(NickError::BadChar);
    }
    if bytes.len() > NICK_MAX {
        return Err(NickError::TooLong);
    }
    Ok(())
}

/// True if `room` is `#` followed by 1 to 31 characters from `A-Z a-z 0-9 _ -`.
pub fn is_room(room: &str) -> bool {
    match room.as_bytes().split_first() {
        Some((b'#', rest)) => {
            !rest.is_empty() && room.len() <= ROOM_MAX && rest.iter().copied().all(is_name_char)
        }
        _ => false,
    }
}

/// The key under which a name is unique: its ASCII lower-case form.
pub fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// A valid nickname close to `wanted` for which `taken` is false.
///
/// Invalid characters are dropped, a name that does not start with a letter
/// gets a `guest` prefix, and a taken name gets the smallest number suffix
/// that makes it free (trimming the base so the result stays within
/// [`NICK_MAX`]). With fewer than 10^9 names taken this always returns.
pub fn suggest_nick(wanted: &str, taken: impl Fn(&str) -> bool) -> String {
    let mut base: String = wanted
        .bytes()
        .filter(|&c| is_name_char(c))
        .map(char::from)
        .collect();
    if !base.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) {
        base.insert_str(0, "guest");
    }
    base.truncate(NICK_MAX);
    if !taken(&base) {
        return base;
    }
    let mut n: u32 = 2;
    loop {
        let suffix = n.to_string();
        let mut candidate = base.clone();
        candidate.truncate(NICK_MAX - suffix.len());
        candidate.push_str(&suffix);
        if !taken(&candidate) {
            return candidate;
        }
        n = n.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nick_rules() {
        assert_eq!(check_nick("alice"), Ok(()));
        assert_eq!(check_nick("A-b_9"), Ok(()));
        assert_eq!(check_nick(""), Err(NickError::Empty));
        assert_eq!(check_nick("9lives"), Err(NickError::BadStart));
        assert_eq!(check_nick("bob smith"), Err(NickError::BadChar));
        assert_eq!(check_nick("bøb"), Err(NickError::BadChar));
        assert_eq!(check_nick(&"a".repeat(NICK_MAX)), Ok(()));
        assert_eq!(
            check_nick(&"a".repeat(NICK_MAX + 1)),
            Err(NickError::TooLong)
        );
    }

    #[test]
    fn room_rules() {
        assert!(is_room("#lobby"));
        assert!(is_room("#a-b_1"));
        assert!(!is_room("#"));
        assert!(!is_room("lobby"));
        assert!(!is_room("#no space"));
        assert!(is_room(&format!("#{}", "r".repeat(ROOM_MAX - 1))));
        assert!(!is_room(&format!("#{}", "r".repeat(ROOM_MAX))));
    }

    #[test]
    fn suggestions_are_valid_and_free() {
        let taken = |n: &str| ["bob", "bob2", "guest"].contains(&fold(n).as_str());
        assert_eq!(suggest_nick("Bob", taken), "Bob3");
        assert_eq!(suggest_nick("b o b!", |_| false), "bob");
        assert_eq!(suggest_nick("", taken), "guest2");
        assert_eq!(suggest_nick("42", |_| false), "guest42");
        let long = "x".repeat(40);
        let s = suggest_nick(&long, |n| n.len() == NICK_MAX && !n.ends_with("17"));
        assert_eq!(s.len(), NICK_MAX);
        assert!(s.ends_with("17"));
        assert_eq!(check_nick(&s), Ok(()));
    }
}
