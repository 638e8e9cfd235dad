//! Small helpers for the sentences natter writes, shared by the hub, the
//! sessions and the client so that their messages read alike.

/// `text` with its first letter in upper case: error `Display`s are written
/// to go mid-sentence (lower case, as Rust errors are), and this turns one
/// into the start of a sentence.
pub fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::capitalise;

    #[test]
    fn only_the_first_letter_changes() {
        assert_eq!(
            capitalise("nick taken: try alice_"),
            "Nick taken: try alice_"
        );
        assert_eq!(capitalise("élan"), "Élan");
        assert_eq!(capitalise(""), "");
    }
}
