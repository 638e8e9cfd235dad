//! The web listener's request-head reader and router on raw peer bytes.
//!
//! Input: byte 0 seeds how the rest is split into reads; the rest is what
//! the peer sent. Properties:
//! - nothing panics, whatever the bytes and however they are split;
//! - the outcome is the same fed whole or in pieces (a head, its bytes and
//!   the bytes after it; or not HTTP; or too large), except that a stream
//!   longer than the limit may end as too large in pieces where it is not
//!   HTTP whole (the limit stops reading before the bad byte);
//! - a complete head is at most `HEAD_LIMIT` bytes and ends with a blank line;
//! - every response starts with a status line, carries the security headers
//!   and a `Content-Length` matching its body (or `HEAD`'s empty one), and a
//!   101 only ever answers `/ws`.

use natter::web::http::{self, HeadReader, Progress, Route, Site};

/// Feeds `stream` in pieces cut by `seed` and returns the outcome and the
/// reader.
fn feed(stream: &[u8], seed: u8) -> (Progress, HeadReader) {
    let mut reader = HeadReader::new(http::HEAD_LIMIT);
    let mut rest = stream;
    let mut state = u32::from(seed) | 1;
    let mut progress = Progress::More;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let cut = if seed == 0 {
            rest.len()
        } else {
            1 + (state as usize) % rest.len().min(64)
        };
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        progress = reader.feed(piece);
        if matches!(progress, Progress::TooLarge | Progress::NotHttp) {
            break;
        }
    }
    (progress, reader)
}

/// Checks every property on one input.
pub fn check(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let (whole, whole_reader) = feed(stream, 0);
    let (pieces, reader) = feed(stream, seed.max(1));
    match (whole, pieces) {
        (a, b) if a == b => {}
        (Progress::NotHttp, Progress::TooLarge) if stream.len() >= http::HEAD_LIMIT => {}
        (a, b) => panic!("whole: {a:?}, in pieces: {b:?}"),
    }
    if pieces != Progress::Done {
        return;
    }
    let head = reader.head().to_vec();
    assert_eq!(head, whole_reader.head(), "the same head in pieces");
    assert!(head.len() <= http::HEAD_LIMIT, "head over the limit");
    assert!(head.ends_with(b"\n"), "a head ends with its blank line");
    assert_eq!(
        reader.rest(),
        stream.get(head.len()..).unwrap_or_default(),
        "the rest is what follows the head"
    );
    let request = match http::parse(&head) {
        Ok(request) => request,
        Err(_) => return,
    };
    let origins = [String::from("https://allowed.example")];
    for tls in [false, true] {
        let site = Site {
            tls,
            origins: &origins,
        };
        match http::route(&request, site) {
            Route::Upgrade { response } => {
                assert_eq!(request.path, http::WS_PATH, "101 only on /ws");
                assert!(response.starts_with(b"HTTP/1.1 101 "));
                assert!(response.ends_with(b"\r\n\r\n"));
            }
            Route::Respond { code, response } => check_response(code, &response, &request),
        }
    }
}

/// A response's shape: status line, security headers, a true length.
fn check_response(code: u16, response: &[u8], request: &http::Request) {
    let text = String::from_utf8_lossy(response);
    assert!(
        text.starts_with(&format!("HTTP/1.1 {code} ")),
        "status line: {text:?}"
    );
    let Some(end) = text.find("\r\n\r\n") else {
        panic!("no end of head: {text:?}");
    };
    let head = text.get(..end + 4).unwrap_or_default();
    assert!(head.contains(http::SECURITY_HEADERS), "security headers");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {head:?}"));
    // The head is ASCII, so its length in the lossy text is its length in
    // bytes.
    let body_len = response.len() - head.len();
    if request.method != "HEAD" && code != 304 {
        assert_eq!(length, body_len, "Content-Length is the body's");
    } else {
        assert_eq!(body_len, 0, "no body for HEAD or 304");
    }
}
