//! Turning a peer's raw bytes into lines, without doing any IO.
//!
//! Users connect with `nc` and `telnet`, so what arrives is not a clean
//! stream of `\n`-terminated UTF-8. Line ends vary (LF, CRLF, a lone CR, CR
//! NUL), telnet mixes its IAC commands into the data and expects answers to
//! its option requests, people press backspace and Ctrl-C, and anyone can
//! send anything, including a line that never ends, or a web browser or SSH
//! client that connected to the wrong port. [`LineDecoder`] deals with all of
//! that in one place, as a byte-at-a-time state machine that never panics
//! and whose memory is bounded whatever arrives. The server feeds it what it
//! reads and acts on the [`Frame`]s it gets back; the fuzzers feed it noise.
//!
//! The telnet side follows RFC 854 just far enough to be a polite peer: we
//! refuse every option (`DO x` gets `WONT x`, `WILL x` gets `DONT x`), never
//! answer refusals (so no negotiation loop is possible), skip
//! subnegotiations, and honour the editing commands (IP, BRK, EC, EL).
//! The one option we ever offer is ECHO, while a password is typed
//! ([`LineDecoder::hide_input`]): the peer's `DO ECHO` then agrees and is
//! not refused.

/// The line limit the server uses, in bytes of line content.
pub const DEFAULT_MAX_LINE: usize = 1024;

/// The most telnet reply bytes one connection is ever sent; requests beyond
/// it are ignored. A real telnet client negotiates a handful of options, so
/// only a flood hits this, and counting over the connection's whole life
/// (not per read) keeps the answers the same however the bytes are split.
pub const MAX_REPLIES: usize = 1024;

/// The first byte of a TLS handshake record: how the decoder tells a TLS
/// client on the plain port, and how the TLS port tells a plain one.
pub const TLS_HANDSHAKE: u8 = 0x16;

const BS: u8 = 0x08;
const DEL: u8 = 0x7f;

// Telnet command bytes (RFC 854).
const SE: u8 = 240;
const BRK: u8 = 243;
const IP: u8 = 244;
const EC: u8 = 247;
const EL: u8 = 248;
const SB: u8 = 250;
/// The ECHO option (RFC 857).
const ECHO: u8 = 1;
const WILL: u8 = 251;
const WONT: u8 = 252;
const DO: u8 = 253;
const DONT: u8 = 254;
const IAC: u8 = 255;

/// HTTP methods whose request line makes a peer [`NotChat::Http`].
const HTTP_METHODS: [&[u8]; 10] = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"PATCH ",
    b"TRACE ",
    b"PRI ",
];

/// How an HTTP request line ends.
const HTTP_VERSIONS: [&[u8]; 3] = [b" HTTP/1.0", b" HTTP/1.1", b" HTTP/2.0"];

/// A decoded event from the peer's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete, non-empty line: valid UTF-8, control characters removed
    /// (TAB becomes a space).
    Line(String),
    /// The current line exceeded the limit; the rest of it, up to the next
    /// line end, is discarded. Emitted once per over-long line, at the moment
    /// the limit is exceeded (not at the line end).
    TooLong,
    /// A complete line that was not valid UTF-8; it was dropped.
    BadUtf8,
    /// The peer is clearly not a chat client; the caller should explain and
    /// close. After this, decode returns None forever.
    NotChat(NotChat),
}

/// What a peer that is not a chat client was taken to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotChat {
    /// Its first line was an HTTP request line.
    Http,
    /// Its first byte began a TLS handshake.
    Tls,
    /// Its first line was an SSH identification string.
    Ssh,
}

impl NotChat {
    /// A short sentence for the peer saying what went wrong.
    pub fn describe(self) -> &'static str {
        match self {
            NotChat::Http => "this is a chat server, not a web server",
            NotChat::Tls => "this is a plain-text chat server; it does not speak TLS",
            NotChat::Ssh => "this is a chat server, not an SSH server",
        }
    }
}

/// Where the telnet state machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Telnet {
    /// Ordinary data.
    Data,
    /// After IAC, expecting a command byte.
    Iac,
    /// After IAC WILL/WONT/DO/DONT (the byte held), expecting the option.
    Option(u8),
    /// Inside IAC SB ..., skipping.
    Sub,
    /// Inside a subnegotiation, after IAC.
    SubIac,
}

/// A sans-IO decoder from a peer's bytes to [`Frame`]s.
///
/// Feed it each read with [`decode`](Self::decode) until it returns `None`,
/// then write back [`take_replies`](Self::take_replies) if
/// [`has_replies`](Self::has_replies). Splitting the input differently
/// across calls never changes the frames or the replies.
#[derive(Debug, Clone)]
pub struct LineDecoder {
    max_line: usize,
    /// The current line's bytes, never more than `max_line`. Allocated as
    /// the line arrives and handed over with it (or freed), so that a
    /// connection between lines holds no buffer.
    line: Vec<u8>,
    telnet: Telnet,
    /// The previous data byte was a CR: swallow a following LF or NUL.
    after_cr: bool,
    /// The current line got too long; drop bytes until the line end.
    discarding: bool,
    /// No byte has arrived yet (for the TLS check).
    at_start: bool,
    /// The first line has been seen (for the HTTP and SSH checks).
    first_line_done: bool,
    /// NotChat was returned; ignore everything.
    closed: bool,
    replies: Vec<u8>,
    /// Reply bytes produced so far, taken or not; at most [`MAX_REPLIES`].
    replied: usize,
    /// The peer has sent an IAC: it is a telnet client, which obeys ECHO
    /// negotiation (a raw `nc` would print the bytes instead).
    spoke_telnet: bool,
    /// We have offered `WILL ECHO` and not withdrawn it, so the peer's
    /// `DO ECHO` is its agreement, not a request to refuse.
    echo_offered: bool,
}

impl LineDecoder {
    /// A decoder for a fresh connection.
    ///
    /// `max_line`: the most bytes one line may hold (content, excluding the
    /// line end). Default used by the server is 1024 ([`DEFAULT_MAX_LINE`]).
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            // Grown on first use: an idle connection holds no line buffer.
            line: Vec::new(),
            telnet: Telnet::Data,
            after_cr: false,
            discarding: false,
            at_start: true,
            first_line_done: false,
            closed: false,
            replies: Vec::new(),
            replied: 0,
            spoke_telnet: false,
            echo_offered: false,
        }
    }

    /// Whether the peer has sent any telnet command (an IAC byte), so that
    /// it can be asked to stop echoing what it types.
    pub fn spoke_telnet(&self) -> bool {
        self.spoke_telnet
    }

    /// The bytes that ask the peer to stop (`hide`: `IAC WILL ECHO`) or go
    /// back to (`IAC WONT ECHO`) echoing its own typing, as telnet logins do
    /// for passwords; the caller writes them. Remembers the offer so that
    /// the peer's `DO ECHO` is taken as agreement, not refused.
    pub fn hide_input(&mut self, hide: bool) -> [u8; 3] {
        self.echo_offered = hide;
        [IAC, if hide { WILL } else { WONT }, ECHO]
    }

    /// Consumes bytes from the front of `input` until a frame completes
    /// (returns it, with `input` advanced past the consumed bytes) or `input`
    /// is exhausted (returns None, input empty).
    pub fn decode(&mut self, input: &mut &[u8]) -> Option<Frame> {
        if self.closed {
            *input = &[];
            return None;
        }
        while let Some((&b, rest)) = input.split_first() {
            *input = rest;
            if let Some(frame) = self.byte(b) {
                return Some(frame);
            }
        }
        None
    }

    /// Telnet negotiation replies accumulated so far, to be written back to
    /// the peer; empties the internal buffer.
    pub fn take_replies(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.replies)
    }

    /// True if there are pending replies (cheap).
    pub fn has_replies(&self) -> bool {
        !self.replies.is_empty()
    }

    /// How many bytes of the current line are buffered (never more than
    /// `max_line`). For tests and fuzzers.
    #[doc(hidden)]
    pub fn buffered_len(&self) -> usize {
        self.line.len()
    }

    /// How many bytes the line buffer has allocated, used or not: none
    /// between lines. For tests.
    #[doc(hidden)]
    pub fn buffered_capacity(&self) -> usize {
        self.line.capacity()
    }

    /// One raw byte from the peer.
    fn byte(&mut self, b: u8) -> Option<Frame> {
        if self.at_start {
            self.at_start = false;
            if b == TLS_HANDSHAKE {
                return Some(self.close(NotChat::Tls));
            }
        }
        match self.telnet {
            Telnet::Data if b == IAC => {
                self.spoke_telnet = true;
                self.telnet = Telnet::Iac;
                None
            }
            Telnet::Data => self.data(b),
            Telnet::Iac => {
                self.telnet = Telnet::Data;
                self.command(b)
            }
            Telnet::Option(verb) => {
                self.telnet = Telnet::Data;
                self.negotiate(verb, b);
                None
            }
            Telnet::Sub => {
                if b == IAC {
                    self.telnet = Telnet::SubIac;
                }
                None
            }
            Telnet::SubIac => match b {
                SE => {
                    self.telnet = Telnet::Data;
                    None
                }
                // An escaped 0xFF inside the subnegotiation: still skipped.
                IAC => {
                    self.telnet = Telnet::Sub;
                    None
                }
                // A protocol error: take it as the end of the subnegotiation
                // and the start of an ordinary command, so that a peer that
                // never sends SE cannot make us ignore it forever.
                _ => {
                    self.telnet = Telnet::Data;
                    self.command(b)
                }
            },
        }
    }

    /// The byte after an IAC.
    fn command(&mut self, b: u8) -> Option<Frame> {
        match b {
            IAC => self.data(IAC),
            WILL | WONT | DO | DONT => {
                self.telnet = Telnet::Option(b);
                None
            }
            SB => {
                self.telnet = Telnet::Sub;
                None
            }
            IP | BRK | EL => {
                self.clear_line();
                None
            }
            EC => {
                self.erase();
                None
            }
            // NOP, DM, AO, AYT, GA, a stray SE, and anything unassigned.
            _ => None,
        }
    }

    /// IAC `verb` `option`: refuse whatever is asked, never answer refusals.
    fn negotiate(&mut self, verb: u8, option: u8) {
        if option == ECHO && self.echo_offered && verb == DO {
            // The answer to our own offer: agreed, nothing to say.
            return;
        }
        let answer = match verb {
            DO => WONT,
            WILL => DONT,
            _ => return,
        };
        if self.replied + 3 <= MAX_REPLIES {
            self.replied += 3;
            self.replies.extend_from_slice(&[IAC, answer, option]);
        }
    }

    /// One data byte, after telnet processing.
    fn data(&mut self, b: u8) -> Option<Frame> {
        let after_cr = std::mem::replace(&mut self.after_cr, false);
        match b {
            b'\n' | 0 if after_cr => None,
            b'\r' => {
                self.after_cr = true;
                self.end_line()
            }
            b'\n' => self.end_line(),
            BS | DEL => {
                self.erase();
                None
            }
            _ => self.push(b),
        }
    }

    fn push(&mut self, b: u8) -> Option<Frame> {
        if self.discarding {
            return None;
        }
        if self.line.len() >= self.max_line {
            // Freed, not kept: the rest of the line is only counted off.
            self.line = Vec::new();
            self.discarding = true;
            // An over-long line counts as the first line: the checks below
            // only look at the very start of the connection.
            self.first_line_done = true;
            return Some(Frame::TooLong);
        }
        self.line.push(b);
        None
    }

    /// Deletes the last character: trailing UTF-8 continuation bytes, then
    /// the byte before them.
    fn erase(&mut self) {
        if self.discarding {
            return;
        }
        while let Some(last) = self.line.pop() {
            if last & 0xc0 != 0x80 {
                break;
            }
        }
    }

    /// Ctrl-C and friends: forget the line, including an over-long one.
    fn clear_line(&mut self) {
        self.line = Vec::new();
        self.discarding = false;
    }

    fn close(&mut self, why: NotChat) -> Frame {
        self.closed = true;
        self.line = Vec::new();
        Frame::NotChat(why)
    }

    /// A line end arrived.
    fn end_line(&mut self) -> Option<Frame> {
        if self.discarding {
            self.discarding = false;
            return None;
        }
        if self.line.is_empty() {
            return None;
        }
        if !self.first_line_done {
            self.first_line_done = true;
            if let Some(why) = not_chat(&self.line) {
                return Some(self.close(why));
            }
        }
        // The buffer leaves with the line: between lines, an idle
        // connection holds none, and a clean line (the usual case) becomes
        // the frame's text without a copy.
        match String::from_utf8(std::mem::take(&mut self.line)) {
            Err(_) => Some(Frame::BadUtf8),
            Ok(s) if s.chars().all(|c| c != '\t' && c.is_control()) => None,
            Ok(s) if !s.chars().any(char::is_control) => Some(Frame::Line(s)),
            Ok(s) => {
                let mut out = String::with_capacity(s.len());
                for c in s.chars() {
                    if c == '\t' {
                        out.push(' ');
                    } else if !c.is_control() {
                        out.push(c);
                    }
                }
                Some(Frame::Line(out))
            }
        }
    }
}

/// Whether a connection's first line shows the peer speaks another protocol.
fn not_chat(line: &[u8]) -> Option<NotChat> {
    if line.starts_with(b"SSH-") {
        return Some(NotChat::Ssh);
    }
    let method = HTTP_METHODS.iter().any(|m| line.starts_with(m));
    let version = HTTP_VERSIONS.iter().any(|v| line.ends_with(v));
    if method && version {
        return Some(NotChat::Http);
    }
    None
}

#[cfg(test)]
mod tests;
