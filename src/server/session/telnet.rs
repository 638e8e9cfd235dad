//! Asking telnet users for their passwords without showing them, the way
//! telnet logins always have.
//!
//! `REGISTER`, `LOGIN <nick>` or `PASSWORD` typed without the password, on a
//! connection that has spoken telnet (sent an IAC), is answered with a
//! prompt and `IAC WILL ECHO`: the client stops echoing, the next line is
//! the password, echoed by nobody, then `IAC WONT ECHO` gives the echo back
//! and the command runs as if the password had been on the line. `nc` and
//! programs are never sent telnet bytes: for them a missing password stays
//! the error it always was, and passwords on the line work everywhere.
//!
//! [`PasswordPrompt`] is the state machine alone, lines in and [`Step`]s
//! out; the session loop writes the prompts and the echo bytes.

/// What the session does with a decoded line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Parse this line as usual.
    Parse(String),
    /// Send `prompt` as an `INFO` line, then, if `hide`, ask the peer to
    /// stop echoing; the next line is a password.
    Ask {
        /// The prompt's text.
        prompt: String,
        /// Whether echo must be turned off now (false when it already is,
        /// for the second password of `PASSWORD`).
        hide: bool,
    },
    /// The last password has arrived: give the echo back, then parse this
    /// line, which holds the command and its passwords. Never logged.
    Reveal(String),
}

/// A command waiting for its passwords.
#[derive(Debug)]
struct Pending {
    /// The command so far, passwords included as they arrive.
    line: String,
    /// Passwords still to read (1 or 2).
    left: u8,
}

/// The password prompt of one connection.
#[derive(Debug, Default)]
pub(crate) struct PasswordPrompt {
    /// Boxed: every connection keeps a prompt, few ever wait on one.
    pending: Option<Box<Pending>>,
}

impl PasswordPrompt {
    /// Takes one decoded line. `telnet`: whether the peer has spoken
    /// telnet, the only kind of peer that is ever prompted.
    pub(crate) fn line(&mut self, text: String, telnet: bool) -> Step {
        if let Some(mut pending) = self.pending.take() {
            pending.line.push(' ');
            pending.line.push_str(text.trim_matches(' '));
            pending.left = pending.left.saturating_sub(1);
            if pending.left == 0 {
                return Step::Reveal(pending.line);
            }
            self.pending = Some(pending);
            return Step::Ask {
                prompt: "New password:".into(),
                hide: false,
            };
        }
        if !telnet {
            return Step::Parse(text);
        }
        match missing_password(&text) {
            Some((pending, prompt)) => {
                self.pending = Some(Box::new(pending));
                Step::Ask { prompt, hide: true }
            }
            None => Step::Parse(text),
        }
    }

    /// Something other than a line arrived (a line too long, bad UTF-8)
    /// while a password was awaited: the command is dropped. Returns
    /// whether one was, so that the caller gives the echo back.
    pub(crate) fn cancel(&mut self) -> bool {
        self.pending.take().is_some()
    }
}

/// The first space-separated word and the rest, as the parser splits them.
fn first_word(s: &str) -> (&str, &str) {
    s.split_once(' ')
        .map_or((s, ""), |(word, rest)| (word, rest.trim_matches(' ')))
}

/// If `text` is a command lacking only its password(s), the command so far
/// and the prompt for the first one.
fn missing_password(text: &str) -> Option<(Pending, String)> {
    let text = text.trim_matches(' ');
    // The verb as `parse_command` reads it: in capitals, or after one slash
    // in any case (`//` starts a message).
    let (verb, arg) = match text.strip_prefix('/') {
        Some(rest) => {
            let (verb, arg) = first_word(rest);
            (verb.to_ascii_uppercase(), arg)
        }
        None => {
            let (verb, arg) = first_word(text);
            (verb.to_owned(), arg)
        }
    };
    let one_word = !arg.is_empty() && !arg.contains(' ');
    let (line, left, prompt) = match verb.as_str() {
        "REGISTER" if arg.is_empty() => (
            verb,
            1,
            "Choose a password for your nickname (8 or more characters):".to_owned(),
        ),
        "LOGIN" if one_word => (format!("{verb} {arg}"), 1, format!("Password for {arg}:")),
        "PASSWORD" if arg.is_empty() => (verb, 2, "Current password:".to_owned()),
        "PASSWORD" if one_word => (format!("{verb} {arg}"), 1, "New password:".to_owned()),
        _ => return None,
    };
    Some((Pending { line, left }, prompt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::{Frame, LineDecoder};

    fn ask(prompt: &str, hide: bool) -> Step {
        Step::Ask {
            prompt: prompt.into(),
            hide,
        }
    }

    #[test]
    fn register_without_a_password_prompts_telnet_peers() {
        let mut p = PasswordPrompt::default();
        assert_eq!(
            p.line("REGISTER".into(), true),
            ask(
                "Choose a password for your nickname (8 or more characters):",
                true
            )
        );
        assert_eq!(
            p.line("correct-horse".into(), true),
            Step::Reveal("REGISTER correct-horse".into())
        );
        // Then back to ordinary lines.
        assert_eq!(p.line("hi".into(), true), Step::Parse("hi".into()));
    }

    #[test]
    fn login_names_the_account() {
        let mut p = PasswordPrompt::default();
        assert_eq!(
            p.line("/login alice".into(), true),
            ask("Password for alice:", true)
        );
        assert_eq!(
            p.line("  secret-words ".into(), true),
            Step::Reveal("LOGIN alice secret-words".into())
        );
    }

    #[test]
    fn password_asks_for_both_then_one() {
        let mut p = PasswordPrompt::default();
        assert_eq!(
            p.line("PASSWORD".into(), true),
            ask("Current password:", true)
        );
        assert_eq!(
            p.line("old-one-1".into(), true),
            ask("New password:", false)
        );
        assert_eq!(
            p.line("new-one-22".into(), true),
            Step::Reveal("PASSWORD old-one-1 new-one-22".into())
        );
        assert_eq!(
            p.line("/Password old-one-1".into(), true),
            ask("New password:", true)
        );
        assert_eq!(
            p.line("new-one-22".into(), true),
            Step::Reveal("PASSWORD old-one-1 new-one-22".into())
        );
    }

    #[test]
    fn complete_commands_and_other_lines_pass_through() {
        let mut p = PasswordPrompt::default();
        for line in [
            "REGISTER correct-horse",
            "LOGIN alice correct-horse",
            "LOGIN",
            "PASSWORD a-old-one b-new-one",
            "register",
            "//register",
            "hello there",
        ] {
            assert_eq!(p.line(line.into(), true), Step::Parse(line.into()));
        }
        assert!(!p.cancel());
    }

    #[test]
    fn nc_peers_are_never_prompted() {
        let mut p = PasswordPrompt::default();
        assert_eq!(
            p.line("REGISTER".into(), false),
            Step::Parse("REGISTER".into())
        );
        assert_eq!(
            p.line("/login alice".into(), false),
            Step::Parse("/login alice".into())
        );
    }

    #[test]
    fn cancel_drops_the_command() {
        let mut p = PasswordPrompt::default();
        assert!(matches!(p.line("REGISTER".into(), true), Step::Ask { .. }));
        assert!(p.cancel());
        assert_eq!(p.line("hi".into(), true), Step::Parse("hi".into()));
    }

    #[test]
    fn the_decoder_notices_telnet_and_accepts_do_echo_after_offering_it() {
        let mut d = LineDecoder::new(64);
        let mut input: &[u8] = b"hi\n";
        assert_eq!(d.decode(&mut input), Some(Frame::Line("hi".into())));
        assert!(!d.spoke_telnet());
        // IAC WILL TERMINAL-TYPE: refused, and now a telnet peer.
        let mut input: &[u8] = &[255, 251, 24];
        assert_eq!(d.decode(&mut input), None);
        assert!(d.spoke_telnet());
        assert_eq!(d.take_replies(), vec![255, 254, 24]);
        // Unasked, DO ECHO is refused; after our offer it is agreement.
        let mut input: &[u8] = &[255, 253, 1];
        d.decode(&mut input);
        assert_eq!(d.take_replies(), vec![255, 252, 1]);
        assert_eq!(d.hide_input(true), [255, 251, 1]);
        let mut input: &[u8] = &[255, 253, 1];
        d.decode(&mut input);
        assert!(!d.has_replies());
        assert_eq!(d.hide_input(false), [255, 252, 1]);
        // Its DONT ECHO, the answer to our WONT, is not answered either.
        let mut input: &[u8] = &[255, 254, 1];
        d.decode(&mut input);
        assert!(!d.has_replies());
    }
}
