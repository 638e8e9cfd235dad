//! `natter bench`: the load generator's flags, turned into
//! [`crate::bench::Options`] (whose `Default` holds every default).

use argh::FromArgs;

use crate::bench::{Options, Scenario};

/// Load a natter server with many real clients and measure it: fanout
/// (throughput, loss, latency), idle (memory per connection), churn
/// (connections/s, leaks) or soak (a mixed load for a while: leaks and lost
/// messages). Starts a server in this process unless --server.
#[derive(FromArgs)]
#[argh(subcommand, name = "bench")]
pub struct Bench {
    /// fanout, idle, churn or soak
    #[argh(positional)]
    scenario: Scenario,
    /// a server on this machine to load, as host:port (default: start one
    /// in this process with the benchmark limits); fanout and idle take
    /// several, comma-separated (a cluster's nodes), and spread the clients
    /// round-robin over them
    #[argh(option)]
    server: Option<String>,
    /// the process id of --server, to read its memory and descriptors
    #[argh(option)]
    server_pid: Option<u32>,
    /// clients (default: fanout 100, idle 1000, churn 20 at once, soak 20
    /// residents)
    #[argh(option, default = "Options::default().clients")]
    clients: usize,
    /// fanout: clients that send (default 10)
    #[argh(option, default = "Options::default().senders")]
    senders: usize,
    /// fanout: messages per second from all senders; 0 sends as fast as
    /// the in-flight window allows (default 0); soak: room messages per
    /// second from all residents (0 means 40)
    #[argh(option, default = "Options::default().rate")]
    rate: u64,
    /// fanout: seconds of sending (5); idle: seconds to hold (0); churn:
    /// the most seconds to run (600); soak: seconds of load (60)
    #[argh(option)]
    seconds: Option<f64>,
    /// churn: connect/register/chat/quit cycles (default 10000)
    #[argh(option, default = "Options::default().cycles")]
    cycles: u64,
    /// fanout at rate 0: messages in flight at most (default 64 per sender)
    #[argh(option, default = "Options::default().window")]
    window: usize,
    /// fanout: pad message texts to this many bytes (default 0: ~30)
    #[argh(option, default = "Options::default().size")]
    size: usize,
    /// threads running the clients; 0 means one per core (default 0)
    #[argh(option, default = "Options::default().threads")]
    threads: usize,
    /// threads of the in-process server; 0 means one per core (default 0)
    #[argh(option, default = "Options::default().server_threads")]
    server_threads: usize,
    /// connections opened and registering at once (default 256)
    #[argh(option, default = "Options::default().connect_window")]
    connect_window: usize,
    /// print only the JSON line on stdout (the summary goes to stderr)
    #[argh(switch)]
    json: bool,
    /// no progress line on stderr
    #[argh(switch)]
    quiet: bool,
    /// fanout: clients connect over TLS to the in-process server, which
    /// also listens for TLS with a self-signed certificate (soak always
    /// mixes TLS and plain clients)
    #[argh(switch)]
    tls: bool,
}

impl Bench {
    /// The load generator's options these flags ask for.
    pub fn options(self) -> Options {
        Options {
            scenario: self.scenario,
            server: self.server,
            server_pid: self.server_pid,
            clients: self.clients,
            senders: self.senders,
            rate: self.rate,
            seconds: self.seconds,
            cycles: self.cycles,
            window: self.window,
            size: self.size,
            threads: self.threads,
            server_threads: self.server_threads,
            connect_window: self.connect_window,
            progress: !self.quiet,
            json: self.json,
            tls: self.tls,
        }
    }
}
