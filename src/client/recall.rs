//! What the input line remembers: the lines typed before (Up/Down) and a
//! Tab completion in progress. Plain data with no knowledge of the model,
//! which holds one of each.

use std::collections::VecDeque;

/// How many typed lines Up/Down can recall.
pub const RECALL_MAX: usize = 1_000;

/// The slash commands this client knows, for Tab completion.
pub const SLASH_COMMANDS: [&str; 17] = [
    "/close", "/exit", "/help", "/history", "/join", "/leave", "/msg", "/nick", "/part", "/ping",
    "/query", "/quit", "/rooms", "/topic", "/users", "/w", "/whisper",
];

/// Tab completion in progress, so a second Tab cycles.
#[derive(Debug, Clone)]
pub(super) struct Completion {
    before: String,
    after: String,
    suffix: &'static str,
    matches: Vec<String>,
    index: usize,
    /// The input and cursor this completion produced; if the input is still
    /// this when Tab comes again, Tab cycles.
    produced: String,
    produced_cursor: usize,
}

impl Completion {
    /// Replaces `input[start..cursor]` with the first of `matches` (not
    /// empty) followed by `suffix`; returns the completion, to cycle later,
    /// with the new input and cursor.
    pub(super) fn start(
        input: &str,
        start: usize,
        cursor: usize,
        suffix: &'static str,
        matches: Vec<String>,
    ) -> (Self, (String, usize)) {
        let mut c = Self {
            before: input.get(..start).unwrap_or_default().to_owned(),
            after: input.get(cursor..).unwrap_or_default().to_owned(),
            suffix,
            matches,
            index: 0,
            produced: String::new(),
            produced_cursor: 0,
        };
        let out = c.produce();
        (c, out)
    }

    /// The next match, if `input` and `cursor` are still what this
    /// completion produced and there is more than one match.
    pub(super) fn cycle(&mut self, input: &str, cursor: usize) -> Option<(String, usize)> {
        if self.produced != input || self.produced_cursor != cursor || self.matches.len() < 2 {
            return None;
        }
        self.index = (self.index + 1) % self.matches.len();
        Some(self.produce())
    }

    fn produce(&mut self) -> (String, usize) {
        let (text, cursor) = self.render();
        self.produced = text.clone();
        self.produced_cursor = cursor;
        (text, cursor)
    }

    fn render(&self) -> (String, usize) {
        let word = self
            .matches
            .get(self.index % self.matches.len().max(1))
            .map_or("", String::as_str);
        let mut text = format!("{}{word}{}", self.before, self.suffix);
        let cursor = text.len();
        text.push_str(self.after.trim_start_matches(' '));
        (text, cursor)
    }
}

/// Typed lines, for Up/Down.
#[derive(Debug, Clone, Default)]
pub(super) struct History {
    lines: VecDeque<String>,
    /// While walking: the index of the line shown.
    at: Option<usize>,
    /// What was in the input line before walking started.
    draft: String,
}

impl History {
    pub(super) fn push(&mut self, line: &str) {
        self.at = None;
        self.draft.clear();
        if self.lines.back().is_some_and(|last| last == line) {
            return;
        }
        if self.lines.len() == RECALL_MAX {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_owned());
    }

    pub(super) fn up(&mut self, current: &str) -> Option<String> {
        let at = match self.at {
            None if self.lines.is_empty() => return None,
            None => {
                self.draft = current.to_owned();
                self.lines.len() - 1
            }
            Some(0) => return None,
            Some(at) => at - 1,
        };
        self.at = Some(at);
        self.lines.get(at).cloned()
    }

    pub(super) fn down(&mut self) -> Option<String> {
        let at = self.at?;
        if at + 1 < self.lines.len() {
            self.at = Some(at + 1);
            return self.lines.get(at + 1).cloned();
        }
        self.at = None;
        Some(std::mem::take(&mut self.draft))
    }
}
