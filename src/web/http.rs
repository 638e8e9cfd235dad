//! HTTP for the web client, without IO: the request head read into a bounded
//! buffer, parsed with `httparse`, and the answer to it: an embedded asset,
//! the WebSocket upgrade on `/ws`, or an error status.
//!
//! Hostile HTTP is normal input here. A head longer than [`HEAD_LIMIT`] (or
//! with more than [`MAX_HEADERS`] headers) gets 431, bytes that are not HTTP
//! are told apart as soon as `httparse` sees them, and nothing here panics on
//! any input, however it is split (`fuzz/fuzz_targets/http_head.rs`). The
//! deadline for the whole head is the caller's: it owns the clock.
//!
//! **Invariant:** every response carries the security headers of
//! [`SECURITY_HEADERS`] and a `Content-Length`, and closes the connection:
//! one request per connection keeps the state here to one head.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::assets::{self, Asset};

/// The most bytes a request head may take, request line and headers with
/// their line ends; past it the answer is 431. Browsers send about 1 KiB.
pub const HEAD_LIMIT: usize = 8 * 1024;

/// The most headers a request may have; past it the answer is 431.
pub const MAX_HEADERS: usize = 32;

/// The headers every response carries: the page runs only its own scripts
/// and styles (no inline ones), may talk only to this server (`ws:`/`wss:`
/// for the chat), cannot be framed, and is never sniffed as another type.
pub const SECURITY_HEADERS: &str = "Content-Security-Policy: default-src 'self'; \
script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; \
manifest-src 'self'; worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
form-action 'none'\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n";

/// The path of the WebSocket endpoint.
pub const WS_PATH: &str = "/ws";

/// Where reading a request head has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The head is not complete yet: read more.
    More,
    /// The head is complete: [`HeadReader::head`] and [`HeadReader::rest`].
    Done,
    /// The head is longer than the limit, or has too many headers: 431.
    TooLarge,
    /// These bytes are not an HTTP request: close at once.
    NotHttp,
}

/// Collects a request head from the bytes read so far, bounded by a limit.
///
/// Feed it every chunk read; it holds at most the limit plus one chunk.
#[derive(Debug)]
pub struct HeadReader {
    buf: Vec<u8>,
    limit: usize,
    /// The head's length once it is complete.
    head_len: Option<usize>,
}

impl HeadReader {
    /// A reader for heads of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit,
            head_len: None,
        }
    }

    /// Takes the next bytes read and says whether the head is complete.
    /// Once it is `Done`, further bytes are kept as the rest.
    pub fn feed(&mut self, bytes: &[u8]) -> Progress {
        if self.head_len.is_some() {
            self.buf.extend_from_slice(bytes);
            return Progress::Done;
        }
        if self.buf.len() >= self.limit {
            return Progress::TooLarge;
        }
        self.buf.extend_from_slice(bytes);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) if n <= self.limit => {
                self.head_len = Some(n);
                Progress::Done
            }
            Ok(httparse::Status::Complete(_)) => Progress::TooLarge,
            Ok(httparse::Status::Partial) if self.buf.len() >= self.limit => Progress::TooLarge,
            Ok(httparse::Status::Partial) => Progress::More,
            Err(httparse::Error::TooManyHeaders) => Progress::TooLarge,
            Err(_) => Progress::NotHttp,
        }
    }

    /// The complete head, once [`Progress::Done`]; empty before.
    pub fn head(&self) -> &[u8] {
        match self.head_len {
            Some(n) => self.buf.get(..n).unwrap_or_default(),
            None => &[],
        }
    }

    /// The bytes after the head (a client may send its first WebSocket
    /// frame without waiting for the upgrade).
    pub fn rest(self) -> Vec<u8> {
        match self.head_len {
            Some(n) => self.buf.get(n..).unwrap_or_default().to_vec(),
            None => Vec::new(),
        }
    }
}

/// What the server needs from a request head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The path without its query or fragment.
    pub path: String,
    /// The `Host` header, which the page's own origin is made of.
    pub host: Option<String>,
    /// The `Origin` header: a browser sends it with every WebSocket
    /// handshake, and it is how a cross-site page is told apart.
    pub origin: Option<String>,
    /// `Upgrade: websocket` and `Connection: upgrade` are both there.
    pub upgrade: bool,
    /// `Sec-WebSocket-Key`.
    pub key: Option<String>,
    /// `Sec-WebSocket-Version` (13 is the only one there is).
    pub version: Option<String>,
    /// The first subprotocol the client offers, echoed back: a browser
    /// fails a handshake that offered some and got none back. The protocol
    /// is the same whatever its name.
    pub protocol: Option<String>,
    /// The last address of `X-Forwarded-For`: the one the proxy in front
    /// saw. Only trusted from that proxy (the caller's decision).
    pub forwarded_for: Option<IpAddr>,
    /// `If-None-Match`, for a 304.
    pub if_none_match: Option<String>,
}

/// Parses a complete head (as [`HeadReader::head`] gives it).
pub fn parse(head: &[u8]) -> Result<Request, Status> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Err(Status::HeadTooLarge),
        _ => return Err(Status::BadRequest),
    }
    let target = parsed.path.unwrap_or_default();
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let mut request = Request {
        method: parsed.method.unwrap_or_default().to_owned(),
        path: path.to_owned(),
        ..Request::default()
    };
    let mut upgrade = false;
    let mut connection_upgrade = false;
    for header in parsed.headers.iter() {
        let Ok(value) = std::str::from_utf8(header.value) else {
            continue;
        };
        let value = value.trim();
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            request.host = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("origin") {
            request.origin = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("websocket"));
        } else if name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            request.key = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            request.version = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            if request.protocol.is_none() {
                request.protocol = value
                    .split(',')
                    .map(str::trim)
                    .find(|p| !p.is_empty() && p.bytes().all(is_token_byte))
                    .map(str::to_owned);
            }
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            request.forwarded_for = value
                .rsplit(',')
                .next()
                .and_then(|last| parse_forwarded(last.trim()));
        } else if name.eq_ignore_ascii_case("if-none-match") {
            request.if_none_match = Some(value.to_owned());
        }
    }
    request.upgrade = upgrade && connection_upgrade;
    Ok(request)
}

/// An address as proxies write it: `203.0.113.7`, `2001:db8::1` or
/// `[2001:db8::1]:4711`.
fn parse_forwarded(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// A byte allowed in an HTTP token (RFC 9110), so an echoed subprotocol
/// cannot smuggle a header.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// The statuses the server answers with, besides 101 and 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 304: the client's copy is current.
    NotModified,
    /// 400: a broken request or WebSocket handshake.
    BadRequest,
    /// 403: a WebSocket handshake from a page of another origin, or a
    /// newcomer from a banned address.
    Forbidden,
    /// 404: no such file.
    NotFound,
    /// 405: a method other than GET or HEAD.
    MethodNotAllowed,
    /// 431: the head is too long or has too many headers.
    HeadTooLarge,
    /// 429: the address holds or opens too many connections
    /// (`--max-per-address`, `--connect-rate`).
    TooManyRequests,
    /// 503: the server is full (`--max-clients`).
    Unavailable,
}

impl Status {
    /// The status code.
    pub fn code(self) -> u16 {
        match self {
            Status::NotModified => 304,
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::HeadTooLarge => 431,
            Status::TooManyRequests => 429,
            Status::Unavailable => 503,
        }
    }

    /// The reason phrase, also the body of the response.
    pub fn reason(self) -> &'static str {
        match self {
            Status::NotModified => "Not Modified",
            Status::BadRequest => "Bad Request",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::HeadTooLarge => "Request Header Fields Too Large",
            Status::TooManyRequests => "Too Many Requests",
            Status::Unavailable => "Service Unavailable",
        }
    }
}

/// What the listener is, for the page's own origin.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    /// Served over TLS (`https:`), or not (`http:`).
    pub tls: bool,
    /// Other origins whose pages may open the WebSocket (`--web-origin`).
    pub origins: &'a [String],
}

/// What to do with a request.
#[derive(Debug)]
pub enum Route {
    /// Switch to WebSocket after writing `response` (a 101).
    Upgrade {
        /// The 101 response.
        response: Vec<u8>,
    },
    /// Write `response` and close.
    Respond {
        /// The status code, for the log.
        code: u16,
        /// The whole response.
        response: Vec<u8>,
    },
}

/// Decides the answer to `request`.
pub fn route(request: &Request, site: Site<'_>) -> Route {
    let head_only = request.method == "HEAD";
    let route = route_any(request, site, head_only);
    match route {
        // A HEAD request gets the head of what GET would get, errors included.
        Route::Respond { code, mut response } if head_only => {
            if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                response.truncate(end + 4);
            }
            Route::Respond { code, response }
        }
        route => route,
    }
}

/// [`route`] before a HEAD request's body is cut off.
fn route_any(request: &Request, site: Site<'_>, head_only: bool) -> Route {
    if request.path == WS_PATH {
        if request.method != "GET" {
            return error(Status::MethodNotAllowed);
        }
        return upgrade(request, site);
    }
    if request.method != "GET" && !head_only {
        return error(Status::MethodNotAllowed);
    }
    match assets::find(&request.path) {
        Some(asset) => serve_asset(asset, request, head_only),
        None => error(Status::NotFound),
    }
}

/// The WebSocket handshake: the Origin check, then the 101.
fn upgrade(request: &Request, site: Site<'_>) -> Route {
    let (Some(key), true) = (&request.key, request.upgrade) else {
        return error(Status::BadRequest);
    };
    if request.version.as_deref() != Some("13") {
        return error(Status::BadRequest);
    }
    if let Some(origin) = &request.origin {
        if !origin_allowed(origin, request.host.as_deref(), site) {
            return error(Status::Forbidden);
        }
    }
    let accept = async_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(protocol) = &request.protocol {
        let _ = write!(response, "Sec-WebSocket-Protocol: {protocol}\r\n");
    }
    response.push_str("\r\n");
    Route::Upgrade {
        response: response.into_bytes(),
    }
}

/// Whether a page of `origin` may open the WebSocket: it is the page's own
/// origin (the scheme of the listener and the `Host` asked for), or one of
/// `site.origins`. A missing `Origin` is not a browser, so not a
/// cross-site page: the caller lets it in.
pub fn origin_allowed(origin: &str, host: Option<&str>, site: Site<'_>) -> bool {
    let origin = normalise_origin(origin);
    if let Some(host) = host {
        let scheme = if site.tls { "https" } else { "http" };
        if origin == normalise_origin(&format!("{scheme}://{host}")) {
            return true;
        }
    }
    site.origins
        .iter()
        .any(|allowed| normalise_origin(allowed) == origin)
}

/// An origin in one spelling: lower case, no trailing slash, no default
/// port.
fn normalise_origin(origin: &str) -> String {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    for (scheme, port) in [("http://", ":80"), ("https://", ":443")] {
        if origin.starts_with(scheme) {
            if let Some(bare) = origin.strip_suffix(port) {
                return bare.to_owned();
            }
        }
    }
    origin
}

/// An entity tag for a body: FNV-1a, enough to tell versions apart.
fn etag(body: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in body {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

/// A 200 with the asset (or a 304 if the client has it).
fn serve_asset(asset: &Asset, request: &Request, head_only: bool) -> Route {
    let tag = etag(asset.body);
    let cache = if asset.shell {
        "no-cache"
    } else {
        "no-cache, max-age=0"
    };
    if request
        .if_none_match
        .as_deref()
        .is_some_and(|theirs| theirs.split(',').any(|t| t.trim() == tag))
    {
        let mut response = status_line(Status::NotModified.code(), Status::NotModified.reason());
        let _ = write!(
            response,
            "ETag: {tag}\r\nCache-Control: {cache}\r\nContent-Length: 0\r\n\r\n"
        );
        return Route::Respond {
            code: 304,
            response: response.into_bytes(),
        };
    }
    let mut response = status_line(200, "OK");
    let _ = write!(
        response,
        "Content-Type: {}\r\nContent-Length: {}\r\nETag: {tag}\r\nCache-Control: {cache}\r\n\r\n",
        asset.mime,
        asset.body.len()
    );
    let mut response = response.into_bytes();
    if !head_only {
        response.extend_from_slice(asset.body);
    }
    Route::Respond {
        code: 200,
        response,
    }
}

/// The status line and the headers every response has.
fn status_line(code: u16, reason: &str) -> String {
    format!("HTTP/1.1 {code} {reason}\r\n{SECURITY_HEADERS}Connection: close\r\n")
}

/// An error response, its reason as a plain-text body.
pub fn error(status: Status) -> Route {
    Route::Respond {
        code: status.code(),
        response: error_response(status),
    }
}

/// The bytes of an error response.
pub fn error_response(status: Status) -> Vec<u8> {
    let body = format!("{} {}\n", status.code(), status.reason());
    let mut response = status_line(status.code(), status.reason());
    if status == Status::MethodNotAllowed {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    let _ = write!(
        response,
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    response.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: Site<'static> = Site {
        tls: false,
        origins: &[],
    };

    fn request(head: &str) -> Request {
        let mut reader = HeadReader::new(HEAD_LIMIT);
        assert_eq!(reader.feed(head.as_bytes()), Progress::Done, "{head}");
        parse(reader.head()).expect("parses")
    }

    fn code(route: &Route) -> u16 {
        match route {
            Route::Upgrade { .. } => 101,
            Route::Respond { code, .. } => *code,
        }
    }

    const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: chat.example:8080\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n";

    #[test]
    fn a_head_is_complete_only_at_its_blank_line_however_it_is_split() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nextra";
        for split in 0..head.len() {
            let mut reader = HeadReader::new(HEAD_LIMIT);
            let (a, b) = head.split_at(split);
            let first = reader.feed(a);
            let second = reader.feed(b);
            assert!(matches!(first, Progress::More | Progress::Done));
            assert_eq!(second, Progress::Done);
            assert_eq!(reader.head().len(), head.len() - 5);
            assert_eq!(reader.rest(), b"extra");
        }
    }

    #[test]
    fn garbage_is_not_http_at_once_and_an_endless_head_is_too_large() {
        assert_eq!(
            HeadReader::new(HEAD_LIMIT).feed(b"\x16\x03\x01\x02"),
            Progress::NotHttp
        );
        assert_eq!(
            HeadReader::new(HEAD_LIMIT).feed(b"NICK alice\r\n"),
            Progress::NotHttp
        );
        let mut reader = HeadReader::new(HEAD_LIMIT);
        assert_eq!(reader.feed(b"GET / HTTP/1.1\r\n"), Progress::More);
        let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut last = Progress::More;
        for _ in 0..200 {
            last = reader.feed(line);
            if last != Progress::More {
                break;
            }
        }
        assert_eq!(last, Progress::TooLarge);
    }

    #[test]
    fn assets_404_and_405() {
        let page = route(&request("GET /?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"), SITE);
        let Route::Respond {
            code: 200,
            response,
        } = page
        else {
            panic!("{page:?}")
        };
        let text = String::from_utf8_lossy(&response);
        assert!(text.contains("Content-Security-Policy: default-src 'self'"));
        assert!(text.contains("Cache-Control: no-cache"));
        assert!(text.contains("Content-Type: text/html"));
        let missing = route(&request("GET /nope HTTP/1.1\r\n\r\n"), SITE);
        assert_eq!(code(&missing), 404);
        let post = route(&request("POST / HTTP/1.1\r\n\r\n"), SITE);
        assert_eq!(code(&post), 405);
        let head = route(&request("HEAD /app.js HTTP/1.1\r\n\r\n"), SITE);
        let Route::Respond { response, .. } = head else {
            panic!()
        };
        assert!(response.ends_with(b"\r\n\r\n"), "HEAD has no body");
        // Found by the http_head fuzzer: an error answer to HEAD had a body.
        for path in ["/nope", WS_PATH] {
            let head = route(&request(&format!("HEAD {path} HTTP/1.1\r\n\r\n")), SITE);
            let Route::Respond { response, .. } = head else {
                panic!()
            };
            assert!(response.ends_with(b"\r\n\r\n"), "HEAD {path} has no body");
        }
    }

    #[test]
    fn the_upgrade_checks_the_origin_and_derives_the_key() {
        let own = route(
            &request(&format!(
                "{UPGRADE}Origin: http://chat.example:8080\r\n\r\n"
            )),
            SITE,
        );
        let Route::Upgrade { response } = own else {
            panic!("{own:?}")
        };
        let text = String::from_utf8_lossy(&response);
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        let foreign = request(&format!("{UPGRADE}Origin: https://evil.example\r\n\r\n"));
        assert_eq!(code(&route(&foreign, SITE)), 403);
        let allowed = [String::from("https://evil.example/")];
        let site = Site {
            tls: false,
            origins: &allowed,
        };
        assert_eq!(code(&route(&foreign, site)), 101);
        assert_eq!(code(&route(&request(&format!("{UPGRADE}\r\n")), SITE)), 101);
        let plain = request("GET /ws HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(code(&route(&plain, SITE)), 400);
    }

    #[test]
    fn default_ports_and_case_do_not_matter_to_the_origin() {
        assert!(origin_allowed(
            "HTTP://Chat.Example",
            Some("chat.example:80"),
            SITE
        ));
        let tls = Site {
            tls: true,
            origins: &[],
        };
        assert!(origin_allowed("https://a:443", Some("a"), tls));
        assert!(!origin_allowed("http://a", Some("a"), tls));
        assert!(!origin_allowed("null", Some("a"), SITE));
    }

    #[test]
    fn the_last_forwarded_address_and_a_clean_subprotocol_are_taken() {
        let r = request(
            "GET /ws HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1, 203.0.113.7\r\n\
             Sec-WebSocket-Protocol: b@d, natter\r\n\r\n",
        );
        assert_eq!(r.forwarded_for, Some("203.0.113.7".parse().unwrap()));
        let r = request("GET /ws HTTP/1.1\r\nSec-WebSocket-Protocol: natter, x\r\n\r\n");
        assert_eq!(r.protocol.as_deref(), Some("natter"));
    }
}
