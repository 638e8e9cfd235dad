//! Unit and property tests of the decoder: framing, telnet, editing, limits,
//! and the same frames however the input is split.

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

/// An idle connection between lines holds no line buffer, whatever its last
/// line was: clean, with a TAB, not UTF-8, over-long, or cancelled.
#[test]
fn no_line_buffer_is_kept_between_lines() {
    let mut dec = LineDecoder::new(16);
    for input in [
        &b"JOIN #lobby\r\n"[..],
        b"a\tb\n",
        b"\xff\xfe\n",
        b"0123456789abcdefXYZ",
        b"\n",
        b"half a line\xff\xf4",
    ] {
        let mut rest = input;
        while dec.decode(&mut rest).is_some() {}
        assert_eq!(dec.buffered_capacity(), 0, "after {input:?}");
    }
    let mut rest = &b"still typing"[..];
    assert_eq!(dec.decode(&mut rest), None);
    assert!(dec.buffered_capacity() >= 12, "a line in progress is kept");
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
