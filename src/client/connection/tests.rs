//! Unit tests of the connection: back-off and reading lines.

use super::*;

fn lines(input: &[u8], max: usize) -> Vec<Option<(bool, String)>> {
    let mut reader = BufReader::with_capacity(4, input);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    loop {
        let got = read_line(&mut reader, &mut buf, max).map(|r| r.map(|ok| (ok, decode(&buf))));
        let end = matches!(got, Ok(None));
        out.push(got.ok().flatten());
        if end {
            return out;
        }
    }
}

#[test]
fn reads_lines_with_either_ending_and_a_cap() {
    // Story: a broken or hostile server cannot grow the client's buffers or crash it.
    let got = lines(
        b"HELLO a b\r\nINFO x\nUSERS #lobby aaaaaaaaaaaa\r\ntail",
        10,
    );
    assert_eq!(
        got,
        vec![
            Some((true, "HELLO a b".into())),
            Some((true, "INFO x".into())),
            Some((false, "USERS #lob".into())),
            Some((true, "tail".into())),
            None,
        ]
    );
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    // Story: a client whose server is down retries soon at first, then rarely.
    let backoff = Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_millis(1000),
    };
    let within = |d: Duration, base: u64| {
        d >= Duration::from_millis(base) && d <= Duration::from_millis(base + base / 4)
    };
    assert!(within(backoff.delay(1), 100));
    assert!(within(backoff.delay(2), 200));
    assert!(within(backoff.delay(4), 800));
    assert!(within(backoff.delay(40), 1000));
}

#[test]
fn raw_lines_lose_control_characters() {
    // Story: a pasted escape sequence cannot smuggle a second command to the server.
    let raw = Outgoing::Raw("/join #x\r\nQUIT\u{1b}[2J".into());
    assert_eq!(raw.to_line(), "/join #xQUIT[2J");
}
