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
    /// The current line's bytes, never more than `max_line`.
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
        }
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
            self.line.clear();
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
        self.line.clear();
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
        let frame = match std::str::from_utf8(&self.line) {
            Err(_) => Some(Frame::BadUtf8),
            Ok(s) if s.chars().all(|c| c != '\t' && c.is_control()) => None,
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
        };
        self.line.clear();
        frame
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds each chunk in turn; returns all frames and all replies.
    fn run_chunks(max_line: usize, chunks: &[&[u8]]) -> (Vec<Frame>, Vec<u8>) {
        let mut dec = LineDecoder::new(max_line);
        let mut frames = Vec::new();
        let mut replies = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            while let Some(f) = dec.decode(&mut rest) {
                frames.push(f);
                assert!(dec.buffered_len() <= max_line);
            }
            assert!(rest.is_empty());
            assert!(dec.buffered_len() <= max_line);
            if dec.has_replies() {
                replies.extend(dec.take_replies());
            }
            assert!(!dec.has_replies());
        }
        (frames, replies)
    }

    fn run(input: &[u8]) -> (Vec<Frame>, Vec<u8>) {
        run_chunks(DEFAULT_MAX_LINE, &[input])
    }

    fn lines(input: &[u8]) -> Vec<Frame> {
        run(input).0
    }

    fn line(s: &str) -> Frame {
        Frame::Line(s.to_owned())
    }

    /// Feeds `input` whole, split at every position, and byte by byte, and
    /// checks all give the same result; returns it.
    fn run_all_splits(input: &[u8]) -> (Vec<Frame>, Vec<u8>) {
        let whole = run(input);
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(run_chunks(DEFAULT_MAX_LINE, &[a, b]), whole, "split at {i}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run_chunks(DEFAULT_MAX_LINE, &bytes), whole, "byte by byte");
        whole
    }

    #[test]
    fn lf_ends_a_line() {
        assert_eq!(lines(b"hello\nworld\n"), [line("hello"), line("world")]);
    }

    #[test]
    fn crlf_ends_a_line() {
        assert_eq!(lines(b"hello\r\nworld\r\n"), [line("hello"), line("world")]);
    }

    #[test]
    fn lone_cr_ends_a_line() {
        assert_eq!(lines(b"hello\rworld\r"), [line("hello"), line("world")]);
    }

    #[test]
    fn cr_nul_ends_a_line() {
        assert_eq!(lines(b"hello\r\0world\r\0"), [line("hello"), line("world")]);
    }

    #[test]
    fn cr_then_lf_in_the_next_read_is_one_line_end() {
        let (frames, _) = run_chunks(DEFAULT_MAX_LINE, &[b"hello\r", b"\nworld\r", b"\0x\n"]);
        assert_eq!(frames, [line("hello"), line("world"), line("x")]);
    }

    #[test]
    fn frame_is_returned_as_soon_as_the_line_ends() {
        let mut dec = LineDecoder::new(DEFAULT_MAX_LINE);
        let mut rest: &[u8] = b"one\ntwo\nthr";
        assert_eq!(dec.decode(&mut rest), Some(line("one")));
        assert_eq!(rest, b"two\nthr");
        assert_eq!(dec.decode(&mut rest), Some(line("two")));
        assert_eq!(rest, b"thr");
        assert_eq!(dec.decode(&mut rest), None);
        assert!(rest.is_empty());
        let mut rest: &[u8] = b"ee\r\n";
        assert_eq!(dec.decode(&mut rest), Some(line("three")));
        assert_eq!(rest, b"\n");
        assert_eq!(dec.decode(&mut rest), None);
        assert!(rest.is_empty());
    }

    #[test]
    fn empty_lines_give_no_frame() {
        assert_eq!(lines(b"\n\r\n\r\r\0\n\nhi\n\n"), [line("hi")]);
    }

    #[test]
    fn lines_empty_after_editing_give_no_frame() {
        assert_eq!(lines(b"ab\x08\x08\n\x07\x1b\n\x7f\r\nok\n"), [line("ok")]);
    }

    #[test]
    fn backspace_and_del_delete_the_last_char() {
        assert_eq!(lines(b"helo\x08lo\n"), [line("hello")]);
        assert_eq!(lines(b"helo\x7flo\n"), [line("hello")]);
        assert_eq!(lines(b"\x08\x7f\x08hi\n"), [line("hi")]);
    }

    #[test]
    fn backspace_deletes_a_whole_multibyte_char() {
        assert_eq!(lines("caf\u{e9}\x08e\n".as_bytes()), [line("cafe")]);
        assert_eq!(lines("a\u{20ac}\x7f!\n".as_bytes()), [line("a!")]);
        assert_eq!(lines("ok\u{1f600}\x08\n".as_bytes()), [line("ok")]);
        assert_eq!(
            lines("\u{1f600}\u{1f600}\x08\n".as_bytes()),
            [line("\u{1f600}")]
        );
    }

    #[test]
    fn do_is_refused_with_wont() {
        let (frames, replies) = run(b"\xff\xfd\x01\xff\xfd\x03hi\n");
        assert_eq!(frames, [line("hi")]);
        assert_eq!(replies, b"\xff\xfc\x01\xff\xfc\x03");
    }

    #[test]
    fn will_is_refused_with_dont() {
        let (frames, replies) = run(b"h\xff\xfb\x18i\n");
        assert_eq!(frames, [line("hi")]);
        assert_eq!(replies, b"\xff\xfe\x18");
    }

    #[test]
    fn wont_and_dont_are_not_answered() {
        let (frames, replies) = run(b"h\xff\xfc\x01\xff\xfe\x03i\n");
        assert_eq!(frames, [line("hi")]);
        assert!(replies.is_empty());
    }

    #[test]
    fn reply_option_byte_can_be_anything() {
        let (_, replies) = run(b"\xff\xfd\xff\xff\xfb\x0a");
        assert_eq!(replies, b"\xff\xfc\xff\xff\xfe\x0a");
    }

    #[test]
    fn replies_are_bounded() {
        let flood: Vec<u8> = (0..10_000).flat_map(|_| [IAC, DO, 1]).collect();
        let mut dec = LineDecoder::new(DEFAULT_MAX_LINE);
        let mut rest = &flood[..];
        assert_eq!(dec.decode(&mut rest), None);
        let replies = dec.take_replies();
        assert!(replies.len() <= MAX_REPLIES);
        assert_eq!(replies.len() % 3, 0);
        assert!(replies.chunks(3).all(|r| r == [IAC, WONT, 1]));
        assert!(!dec.has_replies());
        // The bound is for the connection, not per read: a flood split
        // across reads gets no more answers than one read would.
        let mut rest: &[u8] = b"\xff\xfd\x05";
        assert_eq!(dec.decode(&mut rest), None);
        assert!(!dec.has_replies());
    }

    #[test]
    fn a_flood_split_across_reads_gets_the_same_replies() {
        // Found by the decoder fuzzer (fuzz/regressions/decoder/): the bound
        // used to apply to the replies pending since the last take, so the
        // same flood got more answers the more reads it was split into.
        let flood: Vec<u8> = (0..400).flat_map(|_| [IAC, DO, 1]).collect();
        let whole = run(&flood);
        let chunks: Vec<&[u8]> = flood.chunks(16).collect();
        assert_eq!(run_chunks(DEFAULT_MAX_LINE, &chunks), whole);
        assert_eq!(whole.1.len(), MAX_REPLIES / 3 * 3);
    }

    #[test]
    fn subnegotiation_is_skipped() {
        let input = b"a\xff\xfa\x18\x00xterm\xff\xf0b\n";
        assert_eq!(run(input), (vec![line("ab")], vec![]));
    }

    #[test]
    fn iac_iac_inside_subnegotiation_is_skipped() {
        let input = b"a\xff\xfa\x18\xff\xff\xf0\n\r\xff\xf0b\n";
        assert_eq!(run(input), (vec![line("ab")], vec![]));
    }

    #[test]
    fn subnegotiation_does_not_buffer() {
        let mut input = b"\xff\xfa\x18".to_vec();
        input.extend_from_slice(&[b'x'; 100_000]);
        let mut dec = LineDecoder::new(16);
        let mut rest = &input[..];
        assert_eq!(dec.decode(&mut rest), None);
        assert_eq!(dec.buffered_len(), 0);
        let mut rest: &[u8] = b"\xff\xf0ok\n";
        assert_eq!(dec.decode(&mut rest), Some(line("ok")));
    }

    #[test]
    fn other_command_inside_subnegotiation_ends_it() {
        // IAC DO inside SB: taken as the end of SB and a real DO.
        let (frames, replies) = run(b"\xff\xfaxx\xff\xfd\x01hi\n");
        assert_eq!(frames, [line("hi")]);
        assert_eq!(replies, b"\xff\xfc\x01");
    }

    #[test]
    fn iac_iac_is_a_data_byte() {
        assert_eq!(lines(b"a\xff\xffb\n"), [Frame::BadUtf8]);
        // The byte reached the line: erasing it leaves valid text.
        assert_eq!(lines(b"a\xff\xff\x08b\n"), [line("ab")]);
        // It also ends the after-CR state: a LF after it is a line end.
        assert_eq!(lines(b"a\r\xff\xff\x08\nb\n"), [line("a"), line("b")]);
    }

    #[test]
    fn other_commands_are_ignored() {
        let input = b"a\xff\xf1b\xff\xf2c\xff\xf5d\xff\xf6e\xff\xf9f\xff\xf0g\xff\x00h\n";
        assert_eq!(run(input), (vec![line("abcdefgh")], vec![]));
    }

    #[test]
    fn ctrl_c_clears_the_line_and_answers_timing_mark() {
        let (frames, replies) = run(b"hello\xff\xf4\xff\xfd\x06world\r\n");
        assert_eq!(frames, [line("world")]);
        assert_eq!(replies, b"\xff\xfc\x06");
    }

    #[test]
    fn brk_el_clear_and_ec_erases() {
        assert_eq!(lines(b"hello\xff\xf3world\n"), [line("world")]);
        assert_eq!(lines(b"hello\xff\xf8world\n"), [line("world")]);
        assert_eq!(lines(b"cafe\xff\xf7\xff\xf7fe\n"), [line("cafe")]);
        let mut input = "caf\u{e9}".as_bytes().to_vec();
        input.extend_from_slice(b"\xff\xf7e\n");
        assert_eq!(lines(&input), [line("cafe")]);
    }

    #[test]
    fn ctrl_c_stops_discarding_an_overlong_line() {
        let (frames, _) = run_chunks(4, &[b"abcdefgh\xff\xf4ok\n"]);
        assert_eq!(frames, [Frame::TooLong, line("ok")]);
        // Without it, the rest of the line is dropped.
        let (frames, _) = run_chunks(4, &[b"abcdefghok\nyes\n"]);
        assert_eq!(frames, [Frame::TooLong, line("yes")]);
    }

    #[test]
    fn telnet_sequences_survive_every_split() {
        let inputs: [&[u8]; 6] = [
            b"ab\xff\xfd\x01c\xff\xff\x08\xff\xfa\x18\x01\xff\xff\xff\xf0d\r\n",
            b"hello\xff\xf4\xff\xfd\x06world\r\n",
            b"x\r\xff\xf1\nq\xff\xfb\x03\xff\xfc\x01\xff\xfe\x02\r\0",
            b"\xff\xfa\xff\xfd\x07z\xff\xf7y\n",
            b"\xff\xff\xff\xff\xff",
            b"a\xff\xf8b\xff\xf3c\xff\xf7d\n",
        ];
        for input in inputs {
            run_all_splits(input);
        }
        let (frames, replies) = run_all_splits(inputs[0]);
        assert_eq!(frames, [line("abcd")]);
        assert_eq!(replies, b"\xff\xfc\x01");
    }

    #[test]
    fn too_long_is_reported_once_and_the_next_line_is_fine() {
        let mut dec = LineDecoder::new(5);
        let mut rest: &[u8] = b"abcdef";
        assert_eq!(dec.decode(&mut rest), Some(Frame::TooLong));
        assert!(rest.is_empty(), "reported when the limit is exceeded");
        assert_eq!(dec.buffered_len(), 0);
        let long = vec![b'x'; 100_000];
        let mut rest = &long[..];
        assert_eq!(dec.decode(&mut rest), None);
        assert_eq!(dec.buffered_len(), 0);
        let mut rest: &[u8] = b"\x08\xff\xf7yz\r\nfine\nabcde\n";
        assert_eq!(dec.decode(&mut rest), Some(line("fine")));
        assert_eq!(
            dec.decode(&mut rest),
            Some(line("abcde")),
            "exactly max_line fits"
        );
        assert_eq!(dec.decode(&mut rest), None);
    }

    #[test]
    fn buffer_stays_bounded() {
        let mut dec = LineDecoder::new(8);
        for _ in 0..1000 {
            let mut rest: &[u8] = b"0123456";
            let _ = dec.decode(&mut rest);
            assert!(dec.buffered_len() <= 8);
        }
    }

    #[test]
    fn zero_limit_rejects_every_nonempty_line() {
        let (frames, _) = run_chunks(0, &[b"a\n\nb\n"]);
        assert_eq!(frames, [Frame::TooLong, Frame::TooLong]);
    }

    #[test]
    fn bad_utf8_is_dropped() {
        assert_eq!(
            lines(b"ok\n\xc3\x28\nok2\n"),
            [line("ok"), Frame::BadUtf8, line("ok2")]
        );
        assert_eq!(lines(b"\xed\xa0\x80\n"), [Frame::BadUtf8], "surrogate");
        assert_eq!(lines(b"\xc0\xaf\n"), [Frame::BadUtf8], "overlong");
    }

    #[test]
    fn utf8_split_across_reads_is_fine() {
        let bytes = "h\u{e9}\u{1f600}\n".as_bytes();
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            let (frames, _) = run_chunks(DEFAULT_MAX_LINE, &[a, b]);
            assert_eq!(frames, [line("h\u{e9}\u{1f600}")]);
        }
    }

    #[test]
    fn control_characters_are_removed() {
        assert_eq!(lines(b"\x1b[31mred\n"), [line("[31mred")]);
        assert_eq!(lines("a\u{9b}b\n".as_bytes()), [line("ab")]);
        assert_eq!(lines("a\u{85}b\u{80}\u{9f}\n".as_bytes()), [line("ab")]);
        assert_eq!(lines(b"ding\x07!\n"), [line("ding!")]);
        assert_eq!(lines(b"a\0b\x01c\x0cd\n"), [line("abcd")]);
        assert_eq!(lines(b"a\tb\t\tc\n"), [line("a b  c")]);
        assert_eq!(lines("\u{7f}x\u{a0}y\n".as_bytes()), [line("x\u{a0}y")]);
    }

    #[test]
    fn http_request_line_is_not_chat() {
        let mut dec = LineDecoder::new(DEFAULT_MAX_LINE);
        let mut rest: &[u8] = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
        assert_eq!(dec.decode(&mut rest), Some(Frame::NotChat(NotChat::Http)));
        assert_eq!(dec.decode(&mut rest), None);
        assert!(rest.is_empty());
        let mut rest: &[u8] = b"more\nlines\n";
        assert_eq!(dec.decode(&mut rest), None);
        assert!(rest.is_empty());
    }

    #[test]
    fn other_http_methods_and_versions() {
        for input in [
            &b"POST /x HTTP/1.0\n"[..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\n",
            b"CONNECT example.com:443 HTTP/1.1\r\n",
            b"DELETE /a HTTP/1.1\r\n",
        ] {
            assert_eq!(lines(input), [Frame::NotChat(NotChat::Http)], "{input:?}");
        }
    }

    #[test]
    fn chat_that_looks_a_bit_like_http_is_chat() {
        assert_eq!(lines(b"GET me a coffee\r\n"), [line("GET me a coffee")]);
        assert_eq!(
            lines(b"GET / HTTP/1.1 please\n"),
            [line("GET / HTTP/1.1 please")]
        );
        assert_eq!(lines(b"get / HTTP/1.1\n"), [line("get / HTTP/1.1")]);
        assert_eq!(lines(b"GETTING / HTTP/1.1\n"), [line("GETTING / HTTP/1.1")]);
        assert_eq!(lines(b"I use SSH-2.0\n"), [line("I use SSH-2.0")]);
    }

    #[test]
    fn only_the_first_line_is_checked() {
        assert_eq!(
            lines(b"hi\r\nGET / HTTP/1.1\r\nSSH-2.0-x\r\n"),
            [line("hi"), line("GET / HTTP/1.1"), line("SSH-2.0-x")]
        );
        // An over-long first line uses up the check.
        let (frames, _) = run_chunks(4, &[b"hello\nSSH-\n"]);
        assert_eq!(frames, [Frame::TooLong, line("SSH-")]);
    }

    #[test]
    fn empty_lines_before_the_first_line_do_not_count() {
        assert_eq!(
            lines(b"\r\n\r\nGET / HTTP/1.1\r\n"),
            [Frame::NotChat(NotChat::Http)]
        );
    }

    #[test]
    fn tls_handshake_is_not_chat() {
        let mut dec = LineDecoder::new(DEFAULT_MAX_LINE);
        let mut rest: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n";
        assert_eq!(dec.decode(&mut rest), Some(Frame::NotChat(NotChat::Tls)));
        assert_eq!(dec.decode(&mut rest), None);
        assert!(rest.is_empty());
        // Only the first byte of the stream counts.
        assert_eq!(lines(b"a\x16b\n"), [line("ab")]);
    }

    #[test]
    fn ssh_is_not_chat() {
        assert_eq!(
            lines(b"SSH-2.0-OpenSSH_9.6\r\n"),
            [Frame::NotChat(NotChat::Ssh)]
        );
    }

    #[test]
    fn describe_is_a_sentence() {
        for why in [NotChat::Http, NotChat::Tls, NotChat::Ssh] {
            assert!(why.describe().starts_with("this is a"));
        }
    }

    /// Bytes biased towards the ones the decoder treats specially.
    fn hostile_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            4 => Just(IAC),
            2 => Just(b'\r'),
            2 => Just(b'\n'),
            1 => Just(0u8),
            1 => Just(BS),
            1 => Just(DEL),
            1 => Just(TLS_HANDSHAKE),
            3 => 240u8..=255,
            4 => b'a'..=b'e',
            1 => Just(b' '),
            2 => any::<u8>(),
        ]
    }

    fn hostile_input() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => prop::collection::vec(hostile_byte(), 0..300),
            // Sometimes start with something the NotChat checks look at.
            1 => (
                prop::sample::select(vec![&b"GET / HTTP/1."[..], b"SSH-2.0", b"PRI * HTTP/2.0"]),
                prop::collection::vec(hostile_byte(), 0..100),
            )
                .prop_map(|(head, tail)| [head, &tail[..]].concat()),
        ]
    }

    proptest! {
        #[test]
        fn chunking_does_not_matter(
            input in hostile_input(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            max_line in prop_oneof![0usize..24, Just(DEFAULT_MAX_LINE)],
        ) {
            let whole = run_chunks(max_line, &[&input]);
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts {
                chunks.push(&input[start..cut]);
                start = cut;
            }
            chunks.push(&input[start..]);
            let chunked = run_chunks(max_line, &chunks);
            prop_assert_eq!(&chunked, &whole);

            let (frames, replies) = whole;
            prop_assert!(replies.len() <= MAX_REPLIES);
            for (i, frame) in frames.iter().enumerate() {
                match frame {
                    Frame::Line(s) => {
                        prop_assert!(!s.is_empty());
                        prop_assert!(s.len() <= max_line);
                        prop_assert!(!s.chars().any(char::is_control));
                    }
                    Frame::NotChat(_) => prop_assert_eq!(i + 1, frames.len()),
                    Frame::TooLong | Frame::BadUtf8 => {}
                }
            }
        }
    }
}
