//! Properties of [`natter::decoder::LineDecoder`], the first code that sees a
//! peer's bytes.
//!
//! Input layout: byte 0 picks the line limit (below 128: `b % 32`, so
//! over-long lines are common; otherwise the server's default), byte 1 seeds
//! the chunk sizes, the rest is the byte stream. The stream is decoded whole,
//! in pseudo-random chunks (empty ones included) and byte by byte, taking the
//! telnet replies after every chunk as the server does after every read.
//! Checked:
//! - no panic, and `decode` always consumes its input when it returns None;
//! - `buffered_len() <= max_line` after every call (memory is bounded);
//! - replies are whole `IAC WONT/DONT opt` triples and at most
//!   [`MAX_REPLIES`] bytes over the connection's life;
//! - every chunking gives the same frames and the same concatenated replies;
//! - every `Frame::Line` is non-empty, at most `max_line` bytes and free of
//!   control characters; `NotChat` is the last frame.

use natter::decoder::{Frame, LineDecoder, DEFAULT_MAX_LINE, MAX_REPLIES};

const IAC: u8 = 255;
const WONT: u8 = 252;
const DONT: u8 = 254;

/// What a decoder made of a whole stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Every frame, in order.
    pub frames: Vec<Frame>,
    /// Every reply, concatenated.
    pub replies: Vec<u8>,
}

/// Runs every decoder check on one fuzz input.
pub fn check(input: &[u8]) {
    let [config, seed, data @ ..] = input else {
        return;
    };
    let max_line = if *config < 128 {
        usize::from(config % 32)
    } else {
        DEFAULT_MAX_LINE
    };
    let whole = decode(max_line, [data]);
    check_frames(max_line, &whole);
    let chunked = decode(max_line, Chunks::new(data, *seed));
    assert_eq!(chunked, whole, "chunking changed the frames or the replies");
    let bytewise = decode(max_line, data.chunks(1));
    assert_eq!(
        bytewise, whole,
        "byte-at-a-time changed the frames or the replies"
    );
}

/// Feeds `chunks` to a fresh decoder as successive reads, checking the
/// per-call properties; returns everything it produced.
pub fn decode<'a>(max_line: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> Decoded {
    let mut dec = LineDecoder::new(max_line);
    let mut out = Decoded {
        frames: Vec::new(),
        replies: Vec::new(),
    };
    for chunk in chunks {
        let mut rest = chunk;
        loop {
            let before = rest.len();
            let Some(frame) = dec.decode(&mut rest) else {
                break;
            };
            assert!(
                rest.len() < before,
                "a frame came back without consuming a byte"
            );
            out.frames.push(frame);
            assert!(dec.buffered_len() <= max_line, "line buffer over max_line");
        }
        assert!(rest.is_empty(), "decode returned None with input left");
        assert!(dec.buffered_len() <= max_line, "line buffer over max_line");
        let replies = dec.take_replies();
        assert!(!dec.has_replies(), "replies left after take_replies");
        check_replies(&replies);
        out.replies.extend_from_slice(&replies);
        assert!(
            out.replies.len() <= MAX_REPLIES,
            "{} reply bytes, over the limit of {MAX_REPLIES}",
            out.replies.len()
        );
    }
    out
}

fn check_replies(replies: &[u8]) {
    assert_eq!(replies.len() % 3, 0, "replies are not whole triples");
    for reply in replies.chunks(3) {
        assert!(
            reply[0] == IAC && (reply[1] == WONT || reply[1] == DONT),
            "reply {reply:?} is not a refusal"
        );
    }
}

/// The properties of the frames themselves.
pub fn check_frames(max_line: usize, decoded: &Decoded) {
    for (i, frame) in decoded.frames.iter().enumerate() {
        match frame {
            Frame::Line(line) => {
                assert!(!line.is_empty(), "empty Frame::Line");
                assert!(line.len() <= max_line, "Frame::Line over max_line");
                assert!(
                    !line.chars().any(char::is_control),
                    "control character in {line:?}"
                );
            }
            Frame::NotChat(_) => {
                assert_eq!(i + 1, decoded.frames.len(), "a frame after NotChat")
            }
            Frame::TooLong | Frame::BadUtf8 => {}
        }
    }
}

/// Splits `data` into chunks whose sizes a small PRNG seeded from `seed`
/// picks: up to 1, 2, 3, 5, 8, 16, 64 or 512 bytes, zero included.
pub struct Chunks<'a> {
    data: &'a [u8],
    state: u32,
    max: u32,
}

impl<'a> Chunks<'a> {
    /// Chunks of `data` as seeded by `seed`.
    pub fn new(data: &'a [u8], seed: u8) -> Self {
        const MAX: [u32; 8] = [1, 2, 3, 5, 8, 16, 64, 512];
        Self {
            data,
            state: 0x9e37_79b9 ^ u32::from(seed),
            max: MAX[usize::from(seed & 7)],
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.data.is_empty() {
            return None;
        }
        // xorshift32
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let len = (self.state % (self.max + 1)) as usize;
        let (chunk, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        Some(chunk)
    }
}
