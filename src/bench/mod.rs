//! `natter bench`: a load generator that drives a natter server with many
//! real TCP clients speaking the real protocol, like `redis-benchmark`.
//!
//! By default it starts a server in this process, on `127.0.0.1:0` and its
//! own threads, with the benchmark limits of [`bench_config`]; with
//! [`Options::server`] it drives any server on this machine instead, and with
//! [`Options::server_pid`] it reads that server's memory and descriptors from
//! `/proc` (on Linux; elsewhere they are reported as unknown). Every scenario is bounded in count and in time and stops by
//! itself; it shows progress on stderr and prints a human summary and one
//! JSON line.
//!
//! Scenarios, one file each:
//! - `fanout`: N clients in one chat, S of them sending; throughput, loss and
//!   latency from send to receipt.
//! - `idle`: C registered connections held open; setup time and the server's
//!   memory per connection.
//! - `churn`: connect, register, chat, quit, over and over; connections per
//!   second and whether the server's memory and descriptors come back.
//! - `soak`: a mixed load (rooms, whispers, history, accounts, TLS, clients
//!   killed mid-line, slow readers) for a bounded time; fails if memory or
//!   descriptors grow without bound or a delivery is missing.
//!
//! Only loopback addresses are accepted: this is a load generator, and the
//! only servers it may load are on this machine.

mod churn;
mod client;
mod fanout;
mod idle;
mod soak;
mod stats;

pub use soak::soak_config;

use std::cell::Cell;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smol::Executor;

use crate::config::Config;

/// Bytes a benchmark server lets pend for one client (`natter serve
/// --outbox-bytes`). The default, 1 MiB, is for people; a benchmark pushes
/// bursts of tens of thousands of lines (every registration is announced to
/// everyone) at clients that read them as fast as they can, on the same two
/// cores as the server.
pub const BENCH_OUTBOX: usize = 16 << 20;

/// Clients a benchmark server accepts (`natter serve --max-clients`): as many
/// as a process may hold descriptors for here.
pub const BENCH_MAX_CLIENTS: usize = 19_500;

/// The most connections with the server in this process: each takes two
/// descriptors (one per side) and a process may hold 20,000.
pub const MAX_IN_PROCESS: usize = 9_000;

/// The limits of the server `natter bench` starts in-process: the defaults,
/// with the flood limit off (`rate` 0), a deeper outbox in bytes ([`BENCH_OUTBOX`]),
/// room for [`BENCH_MAX_CLIENTS`] clients and the per-address limits off
/// (every client comes from one loopback address). Nothing else is raised.
pub fn bench_config(threads: usize) -> Config {
    Config {
        max_clients: BENCH_MAX_CLIENTS,
        outbox_bytes: BENCH_OUTBOX,
        rate: 0,
        threads,
        // Every benchmark client comes from one loopback address.
        max_per_address: 0,
        connect_rate: 0,
        // The soak registers accounts from it too.
        registrations_per_hour: 0,
        ..Config::default()
    }
}

/// Which load to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Many clients in one chat, some of them sending.
    Fanout,
    /// Many registered clients doing nothing.
    Idle,
    /// Clients arriving, chatting and leaving, over and over.
    Churn,
    /// A mixed load for a while, checking for leaks and lost messages.
    Soak,
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fanout" => Ok(Scenario::Fanout),
            "idle" => Ok(Scenario::Idle),
            "churn" => Ok(Scenario::Churn),
            "soak" => Ok(Scenario::Soak),
            other => Err(format!(
                "unknown scenario {other:?}; try fanout, idle, churn or soak"
            )),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scenario::Fanout => "fanout",
            Scenario::Idle => "idle",
            Scenario::Churn => "churn",
            Scenario::Soak => "soak",
        })
    }
}

/// What to run, and against what. `Options::default()` is `natter bench
/// fanout` without flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// The load.
    pub scenario: Scenario,
    /// A server to drive, as `host:port` on this machine; `None` starts one
    /// in this process. Several, comma-separated (the nodes of a cluster),
    /// spread the clients round-robin: client `i` connects to server
    /// `i % n`, so the senders (the first clients) are spread too.
    pub server: Option<String>,
    /// The process id of `server`, to read its memory and descriptors.
    pub server_pid: Option<u32>,
    /// Clients: in the chat (`fanout`), held open (`idle`), churning at
    /// once (`churn`), or staying in the room (`soak`). 0 picks the
    /// scenario's default (100, 1000, 20, 20).
    pub clients: usize,
    /// `fanout`: how many of the clients send.
    pub senders: usize,
    /// `fanout`: messages per second, all senders together; 0 sends as fast
    /// as the in-flight window allows. `soak`: room messages per second, all
    /// residents together; 0 means 40.
    pub rate: u64,
    /// `fanout`: seconds of sending (default 5); `idle`: seconds to hold the
    /// connections after measuring (default 0); `churn`: the most seconds to
    /// run (default 600); `soak`: seconds of load (default 60).
    pub seconds: Option<f64>,
    /// `churn`: connect/register/chat/quit cycles.
    pub cycles: u64,
    /// `fanout` at rate 0: messages sent but not yet received by everyone,
    /// at most; 0 means 64 per sender.
    pub window: usize,
    /// `fanout`: pad each message's text to at least this many bytes.
    pub size: usize,
    /// Threads running the clients; 0 means one per core.
    pub threads: usize,
    /// Threads of the in-process server; 0 means one per core.
    pub server_threads: usize,
    /// Connections being opened and registered at once.
    pub connect_window: usize,
    /// Show a progress line on stderr.
    pub progress: bool,
    /// Print only the JSON line on stdout; the summary goes to stderr.
    pub json: bool,
    /// `fanout`: the in-process server also listens for TLS, with a
    /// self-signed certificate, and the clients connect through it.
    pub tls: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            scenario: Scenario::Fanout,
            server: None,
            server_pid: None,
            clients: 0,
            senders: 10,
            rate: 0,
            seconds: None,
            cycles: 10_000,
            window: 0,
            size: 0,
            threads: 0,
            server_threads: 0,
            connect_window: 256,
            progress: true,
            json: false,
            tls: false,
        }
    }
}

impl Options {
    /// The number of clients, with the scenario's default for 0.
    fn client_count(&self) -> usize {
        match (self.clients, self.scenario) {
            (0, Scenario::Fanout) => 100,
            (0, Scenario::Idle) => 1000,
            (0, Scenario::Churn) => 20,
            (0, Scenario::Soak) => 20,
            (n, _) => n,
        }
    }

    /// Seconds, with the scenario's default; at most an hour.
    fn seconds(&self) -> Result<f64, BenchError> {
        let seconds = self.seconds.unwrap_or(match self.scenario {
            Scenario::Fanout => 5.0,
            Scenario::Idle => 0.0,
            Scenario::Churn => 600.0,
            Scenario::Soak => 60.0,
        });
        if (0.0..=3600.0).contains(&seconds) {
            Ok(seconds)
        } else {
            Err(BenchError::Options(
                "--seconds must be between 0 and 3600".into(),
            ))
        }
    }

    /// Connections open at once at the peak, on the generator's side.
    fn peak_connections(&self) -> usize {
        match self.scenario {
            // Residents, movers, a slow reader and the probe.
            Scenario::Soak => self.client_count() + 8,
            _ => self.client_count(),
        }
    }
}

/// The descriptors this process may hold (its soft limit).
#[cfg(unix)]
pub(crate) fn fd_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// The descriptors this process may hold: Windows has no such per-process
/// limit on sockets (they are handles, bounded by memory), so none applies.
#[cfg(not(unix))]
pub(crate) fn fd_limit() -> u64 {
    u64::MAX
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The server would share this process's descriptors with the clients.
    #[error(
        "{0} connections are too many for a server in this process (at most {MAX_IN_PROCESS}: \
         each side needs a descriptor and a process may hold 20,000). Run the server apart: \
         `natter serve --bind 127.0.0.1:5555 --history off --rate 0 --outbox-bytes {BENCH_OUTBOX} --max-clients \
         {BENCH_MAX_CLIENTS} --max-per-address 0 --connect-rate 0 &` then `natter bench ... --server 127.0.0.1:5555 --server-pid $!`"
    )]
    TooManyInProcess(usize),
    /// The server address does not resolve.
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    /// The server address is not on this machine.
    #[error("{0} is not a loopback address; natter bench only loads servers on this machine")]
    NotLoopback(SocketAddr),
    /// The options make no sense together.
    #[error("{0}")]
    Options(String),
    /// Setting up the server, the clients or the threads failed.
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    /// The clients could not get to the point of measuring.
    #[error("{0}")]
    Setup(String),
}

/// What a scenario measured. `Display` is the summary for people;
/// [`Report::json`] the line for programs.
#[derive(Debug, Clone)]
pub struct Report {
    scenario: Scenario,
    summary: String,
    json: String,
    warnings: Vec<String>,
    /// Why the run failed the checks it exists for (the soak's verdict), so
    /// that `natter bench` exits non-zero; `None` for a pass and for the
    /// scenarios that only measure.
    failure: Option<String>,
}

impl Report {
    /// The report as one line of JSON (one flat object).
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The scenario that ran.
    pub fn scenario(&self) -> Scenario {
        self.scenario
    }

    /// Things that went wrong in the run without stopping it (clients that
    /// could not register, messages lost); empty for a clean run.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Why the run failed its checks, if it did: only `soak` judges; the
    /// other scenarios report what they measured and leave judging to
    /// their reader.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)?;
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        Ok(())
    }
}

/// Runs the scenario, prints the summary and the JSON line on stdout (only
/// the JSON line with [`Options::json`]), and fails if the run could not
/// measure or failed its checks ([`Report::failure`]).
pub fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let report = run_scenario(&options)?;
    let mut out = std::io::stdout().lock();
    if options.json {
        eprint!("{report}");
    } else {
        write!(out, "{report}")?;
    }
    writeln!(out, "{}", report.json())?;
    match report.failure() {
        Some(why) => Err(format!("{} failed: {why}", report.scenario).into()),
        None => Ok(()),
    }
}

/// Runs the scenario and returns what it measured.
pub fn run_scenario(options: &Options) -> Result<Report, BenchError> {
    if options.server.is_none() && options.client_count() > MAX_IN_PROCESS {
        return Err(BenchError::TooManyInProcess(options.client_count()));
    }
    let mut notes = Vec::new();
    notes.extend(raise_fd_limit(options));
    for note in &notes {
        eprintln!("natter bench: {note}");
    }
    let load = stats::load_average();
    let target = Target::start(options)?;
    if let Err(err) = target.probe() {
        target.stop();
        return Err(err);
    }
    let pool = Pool::new(options.threads)?;
    let result = match options.scenario {
        Scenario::Fanout => fanout::run(options, &target, &pool),
        Scenario::Idle => idle::run(options, &target, &pool),
        Scenario::Churn => churn::run(options, &target, &pool),
        Scenario::Soak => soak::run(options, &target, &pool),
    };
    pool.stop();
    target.stop();
    let mut report = result?;
    report.warnings.splice(0..0, notes);
    if let Some(load) = load.filter(|&l| l > 1.0) {
        report.warnings.push(format!(
            "the load average was {load:.2} when the run started: other work shared the cores"
        ));
    }
    // One more field on the JSON line.
    if let Some(json) = report.json.strip_suffix('}') {
        let load = load.map_or("null".to_owned(), |l| l.to_string());
        report.json = format!("{json},\"load_average\":{load},\"tls\":{}}}", options.tls);
    }
    Ok(report)
}

/// Elsewhere there is no descriptor limit to raise (see [`fd_limit`]).
#[cfg(not(unix))]
fn raise_fd_limit(_options: &Options) -> Option<String> {
    None
}

/// Raises the soft descriptor limit to the hard one; says so if that is not
/// enough for the run.
#[cfg(unix)]
fn raise_fd_limit(options: &Options) -> Option<String> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut soft = limit.current.unwrap_or(u64::MAX);
    let mut problem = None;
    if limit.current != limit.maximum {
        match setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        ) {
            Ok(()) => soft = limit.maximum.unwrap_or(u64::MAX),
            Err(err) => problem = Some(format!("cannot raise the descriptor limit: {err}")),
        }
    }
    let per_connection = if options.server.is_none() { 2 } else { 1 };
    let needed = (options.peak_connections() * per_connection + 64) as u64;
    if soft < needed {
        return Some(format!(
            "the descriptor limit is {soft} but this run needs about {needed}; \
             connections past it will fail{}",
            problem.map(|p| format!(" ({p})")).unwrap_or_default()
        ));
    }
    problem
}

/// The server under load: in this process, or another one on this machine.
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    /// Further servers given with `--server a,b,c` (the nodes of a
    /// cluster): the clients are spread over `addr` and these.
    others: Vec<SocketAddr>,
    /// The in-process server's TLS listener and a client configuration that
    /// trusts its certificate, with `--tls`.
    #[cfg(feature = "tls")]
    tls: Option<(SocketAddr, Arc<rustls::ClientConfig>)>,
    /// The other process's id, if known.
    pid: Option<u32>,
    in_process: Option<(async_channel::Sender<()>, JoinHandle<std::io::Result<()>>)>,
}

impl Target {
    fn start(options: &Options) -> Result<Self, BenchError> {
        if let Some(server) = &options.server {
            let mut addrs = Vec::new();
            for one in server.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let addr = one
                    .to_socket_addrs()
                    .map_err(|err| BenchError::Resolve(one.to_owned(), err))?
                    .next()
                    .ok_or_else(|| {
                        BenchError::Resolve(one.to_owned(), std::io::ErrorKind::NotFound.into())
                    })?;
                if !addr.ip().is_loopback() {
                    return Err(BenchError::NotLoopback(addr));
                }
                addrs.push(addr);
            }
            let mut addrs = addrs.into_iter();
            let Some(addr) = addrs.next() else {
                return Err(BenchError::Options("--server names no server".into()));
            };
            let others: Vec<SocketAddr> = addrs.collect();
            if !others.is_empty() && !matches!(options.scenario, Scenario::Fanout | Scenario::Idle)
            {
                return Err(BenchError::Options(
                    "several servers are for the fanout and idle scenarios".into(),
                ));
            }
            if options.tls {
                return Err(BenchError::Options(
                    "--tls needs the in-process server (its certificate is made for the run); \
                     drop --server"
                        .into(),
                ));
            }
            return Ok(Self {
                addr,
                others,
                #[cfg(feature = "tls")]
                tls: None,
                pid: options.server_pid,
                in_process: None,
            });
        }
        let soak = options.scenario == Scenario::Soak;
        if options.tls && !matches!(options.scenario, Scenario::Fanout | Scenario::Soak) {
            return Err(BenchError::Options(
                "--tls is for the fanout and soak scenarios".into(),
            ));
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|err| BenchError::Io("cannot listen on 127.0.0.1", err))?;
        let addr = listener
            .local_addr()
            .map_err(|err| BenchError::Io("cannot listen on 127.0.0.1", err))?;
        let listener = smol::net::TcpListener::try_from(listener)
            .map_err(|err| BenchError::Io("cannot listen on 127.0.0.1", err))?;
        let config = if soak {
            soak::soak_config(options.server_threads)
        } else {
            bench_config(options.server_threads)
        };
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut listeners = crate::server::Listeners::plain(listener);
        #[cfg(feature = "tls")]
        // The soak always mixes TLS clients with plain ones.
        let tls = if options.tls || soak {
            let (listener, server, client) = tls_listener()?;
            let tls_addr = listener
                .local_addr()
                .map_err(|err| BenchError::Io("cannot listen on 127.0.0.1", err))?;
            listeners.tls = Some((listener, server));
            Some((tls_addr, client))
        } else {
            None
        };
        #[cfg(not(feature = "tls"))]
        if options.tls {
            return Err(BenchError::Options(
                "this natter was built without TLS (feature \"tls\")".into(),
            ));
        }
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("natter-bench-server".into())
            .spawn(move || {
                smol::block_on(crate::server::serve_with(listeners, config, async move {
                    let _ = stopped.recv().await;
                }))
            })
            .map_err(|err| BenchError::Io("cannot start the server thread", err))?;
        Ok(Self {
            addr,
            others: Vec::new(),
            #[cfg(feature = "tls")]
            tls,
            pid: None,
            in_process: Some((stop, thread)),
        })
    }

    /// How the clients reach the server: its plain port, or with `--tls`
    /// its TLS port, trusting its certificate.
    pub(crate) fn dial(&self) -> client::Dial {
        #[cfg(feature = "tls")]
        if let Some((addr, config)) = &self.tls {
            return client::Dial {
                addr: *addr,
                tls: Some(Arc::clone(config)),
            };
        }
        client::Dial::plain(self.addr)
    }

    /// How each client reaches its server: [`Target::dial`] for one server;
    /// one plain dial per server with `--server a,b,c`, which
    /// [`spawn_crowd`] hands out round-robin.
    pub(crate) fn dials(&self) -> Vec<client::Dial> {
        if self.others.is_empty() {
            return vec![self.dial()];
        }
        std::iter::once(self.addr)
            .chain(self.others.iter().copied())
            .map(client::Dial::plain)
            .collect()
    }

    /// The in-process server's TLS port, trusting its certificate, if it
    /// has one.
    pub(crate) fn dial_tls(&self) -> Option<client::Dial> {
        #[cfg(feature = "tls")]
        if let Some((addr, config)) = &self.tls {
            return Some(client::Dial {
                addr: *addr,
                tls: Some(Arc::clone(config)),
            });
        }
        None
    }

    /// Checks that the server answers with `HELLO`, then gives its threads
    /// a moment to settle, so the first measurements see it at rest.
    fn probe(&self) -> Result<(), BenchError> {
        for addr in std::iter::once(&self.addr).chain(&self.others) {
            Self::probe_one(addr)?;
        }
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    }

    /// Checks that the server on `addr` answers with `HELLO`.
    fn probe_one(addr: &SocketAddr) -> Result<(), BenchError> {
        use std::io::Read;
        let fail = |err| BenchError::Io("cannot reach the server", err);
        let mut stream =
            std::net::TcpStream::connect_timeout(addr, Duration::from_secs(5)).map_err(fail)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(fail)?;
        let mut hello = [0u8; 5];
        stream.read_exact(&mut hello).map_err(fail)?;
        if &hello != b"HELLO" {
            return Err(BenchError::Setup(format!(
                "{addr} is not a natter server: it said {:?}",
                String::from_utf8_lossy(&hello)
            )));
        }
        Ok(())
    }

    /// True if the server runs in this process (its memory is ours).
    pub(crate) fn in_process(&self) -> bool {
        self.in_process.is_some()
    }

    /// The server's resident memory, if it can be read.
    pub(crate) fn rss(&self) -> Option<u64> {
        match (self.in_process(), self.pid) {
            (true, _) => stats::rss(None),
            (false, Some(pid)) => stats::rss(Some(pid)),
            (false, None) => None,
        }
    }

    /// The server's open descriptors (in-process: this whole process's).
    pub(crate) fn fds(&self) -> Option<usize> {
        match (self.in_process(), self.pid) {
            (true, _) => stats::fds(None),
            (false, Some(pid)) => stats::fds(Some(pid)),
            (false, None) => None,
        }
    }

    /// Where the numbers come from, for the summary.
    pub(crate) fn describe(&self) -> String {
        #[cfg(feature = "tls")]
        if let Some((addr, _)) = &self.tls {
            return format!(
                "in-process server on {} (clients over TLS on {addr})",
                self.addr
            );
        }
        if !self.others.is_empty() {
            let all: Vec<String> = std::iter::once(&self.addr)
                .chain(&self.others)
                .map(ToString::to_string)
                .collect();
            let pid = self.pid.map_or(String::new(), |pid| {
                format!(" (pid {pid} is {})", self.addr)
            });
            return format!(
                "{} servers, clients round-robin: {}{pid}",
                all.len(),
                all.join(", ")
            );
        }
        match (self.in_process(), self.pid) {
            (true, _) => format!("in-process server on {}", self.addr),
            (false, Some(pid)) => format!("server on {} (pid {pid})", self.addr),
            (false, None) => format!("server on {} (pid unknown)", self.addr),
        }
    }

    fn stop(self) {
        if let Some((stop, thread)) = self.in_process {
            let _ = stop.try_send(());
            let _ = thread.join();
        }
    }
}

/// A TLS listener on 127.0.0.1 for the in-process server, its configuration
/// with a certificate made for this run, and a client configuration that
/// trusts exactly that certificate.
#[cfg(feature = "tls")]
fn tls_listener() -> Result<
    (
        smol::net::TcpListener,
        Arc<rustls::ServerConfig>,
        Arc<rustls::ClientConfig>,
    ),
    BenchError,
> {
    let (server, _) = crate::tls::server_self_signed(&["localhost".into(), "127.0.0.1".into()])
        .map_err(|err| BenchError::Setup(err.to_string()))?;
    let pin = crate::tls::parse_fingerprint(&server.fingerprint)
        .ok_or_else(|| BenchError::Setup("bad certificate fingerprint".into()))?;
    let client = crate::client::TlsOptions::pinned(pin)
        .map(|options| options.config())
        .map_err(|err| BenchError::Setup(err.to_string()))?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(smol::net::TcpListener::try_from)
        .map_err(|err| BenchError::Io("cannot listen on 127.0.0.1", err))?;
    Ok((listener, server.config, client))
}

thread_local! {
    /// Which of the pool's threads this is, for per-thread statistics.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The index of the current pool thread (0 outside the pool).
pub(crate) fn worker_index() -> usize {
    WORKER.with(Cell::get)
}

/// The threads that run the clients.
pub(crate) struct Pool {
    pub(crate) executor: Arc<Executor<'static>>,
    pub(crate) threads: usize,
    stop: async_channel::Sender<()>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize) -> Result<Self, BenchError> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let executor = Arc::new(Executor::new());
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let handles = (0..threads)
            .map(|i| {
                let executor = Arc::clone(&executor);
                let stopped = stopped.clone();
                std::thread::Builder::new()
                    .name(format!("natter-bench-{i}"))
                    .spawn(move || {
                        WORKER.with(|w| w.set(i));
                        futures_lite::future::block_on(executor.run(stopped.recv()))
                            .unwrap_or_default();
                    })
                    .map_err(|err| BenchError::Io("cannot start a client thread", err))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            executor,
            threads,
            stop,
            handles,
        })
    }

    fn stop(self) {
        drop(self.stop);
        for handle in self.handles {
            let _ = handle.join();
        }
    }
}

/// Prints a progress line on stderr about once a second until dropped.
pub(crate) struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub(crate) fn start(
        enabled: bool,
        label: Scenario,
        line: impl Fn() -> String + Send + 'static,
    ) -> Self {
        if !enabled {
            return Self {
                stop: None,
                thread: None,
            };
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let terminal = std::io::stderr().is_terminal();
        let started = Instant::now();
        let thread = std::thread::Builder::new()
            .name("natter-bench-ticker".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Duration::from_secs(1))
                {
                    let text = format!(
                        "[{label} {:>5.1}s] {}",
                        started.elapsed().as_secs_f64(),
                        line()
                    );
                    if terminal {
                        eprint!("\r\x1b[K{text}");
                    } else {
                        eprintln!("{text}");
                    }
                }
                if terminal {
                    eprint!("\r\x1b[K");
                }
            })
            .ok();
        Self {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A short tag unique to this run, so its nicknames and messages cannot be
/// mistaken for another run's or a person's on a shared server.
pub(crate) fn run_tag() -> String {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().rotate_left(16)
        ^ RUNS.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919);
    let mut tag = String::from("b");
    let mut n = seed;
    for _ in 0..3 {
        tag.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
    }
    tag
}

/// Waits until `done` returns true, checking every 10 ms; gives up after
/// `limit`, or after `stall` without `progress` changing. Returns whether
/// `done` became true.
pub(crate) fn wait_until(
    limit: Duration,
    stall: Duration,
    progress: impl Fn() -> u64,
    done: impl Fn() -> bool,
) -> bool {
    let start = Instant::now();
    let mut last = progress();
    let mut last_change = start;
    loop {
        if done() {
            return true;
        }
        let now = Instant::now();
        let seen = progress();
        if seen != last {
            last = seen;
            last_change = now;
        }
        if now.duration_since(start) >= limit || now.duration_since(last_change) >= stall {
            return done();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How a crowd of clients got through connecting and registering.
pub(crate) struct Setup {
    /// When the first client started connecting.
    pub(crate) started: Instant,
    /// Clients registered.
    pub(crate) registered: AtomicU64,
    /// Clients that could not connect or register.
    pub(crate) failed: AtomicU64,
    /// Members the clients know of, summed over the clients: those the
    /// `USERS` line at registration listed, then those each `JOIN` and
    /// `JOINS` line announced (the `idle` scenario counts those).
    pub(crate) joins: AtomicU64,
    /// When the last registration completed, in nanoseconds from the start.
    pub(crate) last_done: AtomicU64,
    /// The first failure, in words.
    pub(crate) first_error: std::sync::Mutex<Option<String>>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            registered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            joins: AtomicU64::new(0),
            last_done: AtomicU64::new(0),
            first_error: std::sync::Mutex::new(None),
        }
    }
}

impl Setup {
    /// Seconds since the first client started connecting.
    pub(crate) fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Registered or failed: the clients that are done setting up.
    pub(crate) fn settled(&self) -> u64 {
        self.registered.load(Ordering::SeqCst) + self.failed.load(Ordering::SeqCst)
    }

    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(why);
        }
    }

    /// The first failure, if any.
    pub(crate) fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }
}

/// Spawns `count` clients on the pool that connect and register as
/// `{tag}{index}` (at most `window` at once), then go on with `then`. Client
/// `index` dials `dials[index % dials.len()]`. The tasks end when `then`
/// does or when the returned handles are dropped.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_crowd<F, Fut>(
    pool: &Pool,
    dials: Vec<client::Dial>,
    count: usize,
    window: usize,
    tag: &str,
    keep: usize,
    setup: &Arc<Setup>,
    then: F,
) -> Vec<smol::Task<()>>
where
    F: Fn(usize, client::Conn) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let gate = Arc::new(smol::lock::Semaphore::new(window.max(1)));
    let then = Arc::new(then);
    (0..count)
        .map(|index| {
            let gate = Arc::clone(&gate);
            let then = Arc::clone(&then);
            let setup = Arc::clone(setup);
            let nick = format!("{tag}{index}");
            let dial = dials.get(index % dials.len().max(1)).cloned();
            pool.executor.spawn(async move {
                let Some(dial) = dial else {
                    setup.fail(format!("{nick}: no server to dial"));
                    return;
                };
                let permit = gate.acquire_arc().await;
                // Boxed, so its state is freed once registered and the
                // task holds only what `then` needs.
                let result = Box::pin(client::register(&dial, &nick, keep)).await;
                drop(permit);
                match result {
                    Ok((conn, joins)) => {
                        setup.joins.fetch_add(joins, Ordering::SeqCst);
                        setup.registered.fetch_add(1, Ordering::SeqCst);
                        let done = setup.started.elapsed().as_nanos() as u64;
                        setup.last_done.fetch_max(done, Ordering::SeqCst);
                        then(index, conn).await;
                    }
                    Err(why) => setup.fail(format!("{nick}: {why}")),
                }
            })
        })
        .collect()
}

/// Waits for a crowd to finish registering: at most 60 s plus 60 ms per
/// client (every registration is announced to everyone, so the work grows
/// with the square of the crowd: 19,000 took 395 s on the phase-1 server),
/// and gives up after 30 s without progress.
pub(crate) fn wait_for_setup(setup: &Setup, count: usize) -> bool {
    wait_until(
        Duration::from_secs(60) + Duration::from_millis(60) * count as u32,
        Duration::from_secs(30),
        || setup.settled(),
        || setup.settled() >= count as u64,
    )
}
