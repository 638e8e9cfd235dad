//! The `natter` command: parse arguments, then hand over to the library.

use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use futures_lite::StreamExt;

/// natter: a chat server you can use from nc or telnet, and a terminal client.
#[derive(FromArgs)]
struct Args {
    #[argh(subcommand)]
    command: Subcommand,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Subcommand {
    Serve(Box<Serve>),
    Admin(Admin),
    Bench(Bench),
    #[cfg(feature = "tui")]
    Tui(Tui),
}

/// Run the chat server.
#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
struct Serve {
    /// address to listen on (default 0.0.0.0:5555: every interface)
    #[argh(option, default = "String::from(\"0.0.0.0:5555\")")]
    bind: String,
    /// most clients at once; newcomers past it are refused (default 10000)
    #[argh(option, default = "natter::Config::default().max_clients")]
    max_clients: usize,
    /// longest line in bytes (default 1024)
    #[argh(option, default = "natter::Config::default().max_line")]
    max_line: usize,
    /// lines queued for a client that is not reading before it is
    /// disconnected (default 1024)
    #[argh(option, default = "natter::Config::default().outbox")]
    outbox: usize,
    /// seconds a connection may take to pick a nickname (default 60)
    #[argh(
        option,
        default = "natter::Config::default().register_timeout.as_secs()"
    )]
    register_timeout: u64,
    /// lines per second a client may send over time; 0 turns the limit off
    /// (default 10)
    #[argh(option, default = "natter::Config::default().rate")]
    rate: u32,
    /// lines a client may send at once before --rate applies (default 50)
    #[argh(option, default = "natter::Config::default().burst")]
    burst: u32,
    /// threads serving connections; 0 means one per core (default 0)
    #[argh(option, default = "0")]
    threads: usize,
    /// most rooms one client may be in at once (default 32)
    #[argh(option, default = "natter::Config::default().max_rooms")]
    max_rooms: usize,
    /// where to keep chat history: sqlite, memory or off (default sqlite)
    #[argh(option, default = "String::from(\"sqlite\")")]
    history: String,
    /// directory of the history database (default $XDG_DATA_HOME/natter,
    /// or ~/.local/share/natter)
    #[argh(option)]
    data_dir: Option<std::path::PathBuf>,
    /// days of history to keep; 0 keeps it forever (default 90)
    #[argh(option, default = "90")]
    history_days: u64,
    /// messages of history to keep per room; 0 keeps them all (default 100000)
    #[argh(option, default = "100_000")]
    history_max: usize,
    /// earlier messages sent on joining a room (default 50)
    #[argh(option, default = "natter::Config::default().replay")]
    replay: usize,
    /// where to keep registered nicknames and bans: sqlite (in the data
    /// directory) or memory (default sqlite)
    #[argh(option, default = "String::from(\"sqlite\")")]
    accounts: String,
    /// address of the TLS listener, which runs when --tls-cert and
    /// --tls-key or --tls-self-signed are given (default 0.0.0.0:5556)
    #[argh(option, default = "String::from(\"0.0.0.0:5556\")")]
    tls_bind: String,
    /// TLS certificate chain, PEM, leaf first (with --tls-key)
    #[argh(option)]
    tls_cert: Option<std::path::PathBuf>,
    /// TLS private key, PEM (with --tls-cert)
    #[argh(option)]
    tls_key: Option<std::path::PathBuf>,
    /// serve TLS with a certificate generated at start-up for localhost,
    /// 127.0.0.1, ::1 and this host; its SHA-256 fingerprint is printed
    #[argh(switch)]
    tls_self_signed: bool,
    /// seconds a TLS connection may take to complete its handshake
    /// (default 10)
    #[argh(
        option,
        default = "natter::Config::default().tls_handshake_timeout.as_secs()"
    )]
    tls_handshake_timeout: u64,
    /// no plain-text listener: serve only TLS (--bind is then unused)
    #[argh(switch)]
    no_plain: bool,
    /// address of the web client's HTTP listener, the page and its
    /// WebSocket (default 0.0.0.0:8080)
    #[argh(option, default = "String::from(\"0.0.0.0:8080\")")]
    web_bind: String,
    /// do not serve the web client
    #[argh(switch)]
    no_web: bool,
    /// address of the web client over HTTPS, served when a TLS certificate
    /// is configured (default 0.0.0.0:8443)
    #[argh(option, default = "String::from(\"0.0.0.0:8443\")")]
    web_tls_bind: String,
    /// another origin whose pages may open the WebSocket, such as
    /// https://chat.example.org (repeatable); the page's own always may
    #[argh(option)]
    web_origin: Vec<String>,
    /// the address of a reverse proxy in front of the web listener: from it
    /// only, the client address is taken from X-Forwarded-For
    #[argh(option)]
    web_trust_proxy: Option<std::net::IpAddr>,
}

/// Manage accounts and bans in the server's database (works while the
/// server runs; it picks changes up within a second). Passwords are read
/// from standard input, never from the command line.
#[derive(FromArgs)]
#[argh(subcommand, name = "admin")]
struct Admin {
    /// directory of the database (default $XDG_DATA_HOME/natter, or
    /// ~/.local/share/natter)
    #[argh(option)]
    data_dir: Option<std::path::PathBuf>,
    #[argh(subcommand)]
    action: AdminAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum AdminAction {
    List(AdminList),
    Create(AdminCreate),
    Passwd(AdminPasswd),
    Op(AdminOp),
    Deop(AdminDeop),
    Delete(AdminDelete),
    Unban(AdminUnban),
}

/// List the accounts and the bans in force.
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
struct AdminList {}

/// Create an account (the password is read from standard input).
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
struct AdminCreate {
    /// the nickname
    #[argh(positional)]
    nick: String,
    /// make it an operator
    #[argh(switch)]
    op: bool,
}

/// Set a new password for an account (read from standard input); the old
/// one is not needed.
#[derive(FromArgs)]
#[argh(subcommand, name = "passwd")]
struct AdminPasswd {
    /// the nickname
    #[argh(positional)]
    nick: String,
}

/// Make an account an operator.
#[derive(FromArgs)]
#[argh(subcommand, name = "op")]
struct AdminOp {
    /// the nickname
    #[argh(positional)]
    nick: String,
}

/// Take operator rights away from an account.
#[derive(FromArgs)]
#[argh(subcommand, name = "deop")]
struct AdminDeop {
    /// the nickname
    #[argh(positional)]
    nick: String,
}

/// Delete an account; its nickname is free again.
#[derive(FromArgs)]
#[argh(subcommand, name = "delete")]
struct AdminDelete {
    /// the nickname
    #[argh(positional)]
    nick: String,
}

/// Lift a ban on a nickname or an IP address.
#[derive(FromArgs)]
#[argh(subcommand, name = "unban")]
struct AdminUnban {
    /// a nickname or an IP address
    #[argh(positional)]
    target: String,
}

/// Load a natter server with many real clients and measure it: fanout
/// (throughput, loss, latency), idle (memory per connection) or churn
/// (connections/s, leaks). Starts a server in this process unless --server.
#[derive(FromArgs)]
#[argh(subcommand, name = "bench")]
struct Bench {
    /// fanout, idle or churn
    #[argh(positional)]
    scenario: natter::bench::Scenario,
    /// a server on this machine to load, as host:port (default: start one
    /// in this process with the benchmark limits)
    #[argh(option)]
    server: Option<String>,
    /// the process id of --server, to read its memory and descriptors
    #[argh(option)]
    server_pid: Option<u32>,
    /// clients (default: fanout 100, idle 1000, churn 20 at once)
    #[argh(option, default = "0")]
    clients: usize,
    /// fanout: clients that send (default 10)
    #[argh(option, default = "10")]
    senders: usize,
    /// fanout: messages per second from all senders; 0 sends as fast as
    /// the in-flight window allows (default 0)
    #[argh(option, default = "0")]
    rate: u64,
    /// fanout: seconds of sending (5); idle: seconds to hold (0); churn:
    /// the most seconds to run (600)
    #[argh(option)]
    seconds: Option<f64>,
    /// churn: connect/register/chat/quit cycles (default 10000)
    #[argh(option, default = "10_000")]
    cycles: u64,
    /// fanout at rate 0: messages in flight at most (default 64 per sender)
    #[argh(option, default = "0")]
    window: usize,
    /// fanout: pad message texts to this many bytes (default 0: ~30)
    #[argh(option, default = "0")]
    size: usize,
    /// threads running the clients; 0 means one per core (default 0)
    #[argh(option, default = "0")]
    threads: usize,
    /// threads of the in-process server; 0 means one per core (default 0)
    #[argh(option, default = "0")]
    server_threads: usize,
    /// connections opened and registering at once (default 256)
    #[argh(option, default = "256")]
    connect_window: usize,
    /// print only the JSON line on stdout (the summary goes to stderr)
    #[argh(switch)]
    json: bool,
    /// no progress line on stderr
    #[argh(switch)]
    quiet: bool,
    /// fanout: clients connect over TLS to the in-process server, which
    /// also listens for TLS with a self-signed certificate
    #[argh(switch)]
    tls: bool,
}

/// Open the terminal chat client.
#[cfg(feature = "tui")]
#[derive(FromArgs)]
#[argh(subcommand, name = "tui")]
struct Tui {
    /// server as host:port (asked for when absent; default 127.0.0.1:5555;
    /// without a port: 5555, or 5556 with TLS)
    #[argh(option)]
    server: Option<String>,
    /// nickname (asked for when absent)
    #[argh(option)]
    nick: Option<String>,
    /// chat lines kept for scrolling back (default 10000)
    #[argh(option, default = "10_000")]
    scrollback: usize,
    /// connect with TLS, trusting the system's certificate authorities
    #[argh(switch)]
    tls: bool,
    /// PEM file of the certificate authorities to trust instead of the
    /// system's (implies --tls)
    #[argh(option)]
    ca: Option<std::path::PathBuf>,
    /// trust exactly the server certificate with this SHA-256 fingerprint,
    /// as `natter serve` prints it, with or without colons (implies --tls)
    #[argh(option)]
    fingerprint: Option<String>,
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    let result = match args.command {
        Subcommand::Serve(serve) => run_server(*serve),
        Subcommand::Admin(admin) => run_admin(admin),
        Subcommand::Bench(bench) => natter::bench::run(natter::bench::Options {
            scenario: bench.scenario,
            server: bench.server,
            server_pid: bench.server_pid,
            clients: bench.clients,
            senders: bench.senders,
            rate: bench.rate,
            seconds: bench.seconds,
            cycles: bench.cycles,
            window: bench.window,
            size: bench.size,
            threads: bench.threads,
            server_threads: bench.server_threads,
            connect_window: bench.connect_window,
            progress: !bench.quiet,
            json: bench.json,
            tls: bench.tls,
        }),
        #[cfg(feature = "tui")]
        Subcommand::Tui(tui) => run_tui(tui),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("natter: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the terminal client. `--ca` and `--fingerprint` say how to trust
/// a TLS server, so either one implies `--tls` rather than being an error.
#[cfg(feature = "tui")]
fn run_tui(args: Tui) -> Result<(), Box<dyn std::error::Error>> {
    let tls = args.tls || args.ca.is_some() || args.fingerprint.is_some();
    #[cfg(feature = "tls")]
    let tls = match tls {
        true => Some(natter::client::TlsOptions::from_flags(
            args.ca.as_deref(),
            args.fingerprint.as_deref(),
        )?),
        false => None,
    };
    #[cfg(not(feature = "tls"))]
    if tls {
        return Err("this natter was built without TLS (the `tls` feature)".into());
    }
    natter::tui::run(natter::tui::Options {
        server: args.server,
        nick: args.nick,
        scrollback: args.scrollback,
        #[cfg(feature = "tls")]
        tls,
    })
}

/// Where history lives unless --data-dir says otherwise: the XDG data
/// directory, as other Unix services do.
fn data_dir() -> std::path::PathBuf {
    let home = |rest: &str| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(rest));
    std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| home(".local/share"))
        .unwrap_or_else(|| std::path::PathBuf::from("."))
        .join("natter")
}

fn run_server(args: Serve) -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let tls = tls_config(&args)?;
    let history = match args.history.as_str() {
        "sqlite" => {
            natter::store::HistoryMode::Sqlite(args.data_dir.clone().unwrap_or_else(data_dir))
        }
        "memory" => natter::store::HistoryMode::Memory,
        "off" => natter::store::HistoryMode::Off,
        other => return Err(format!("--history is sqlite, memory or off, not {other}").into()),
    };
    let accounts = match args.accounts.as_str() {
        "sqlite" => {
            natter::accounts::AccountsMode::Sqlite(args.data_dir.clone().unwrap_or_else(data_dir))
        }
        "memory" => natter::accounts::AccountsMode::Memory,
        other => return Err(format!("--accounts is sqlite or memory, not {other}").into()),
    };
    let config = natter::Config {
        accounts,
        max_clients: args.max_clients,
        max_line: args.max_line,
        outbox: args.outbox,
        register_timeout: Duration::from_secs(args.register_timeout),
        rate: args.rate,
        burst: args.burst,
        threads: args.threads,
        max_rooms: args.max_rooms,
        history,
        retention: natter::store::Retention {
            max_age: (args.history_days > 0)
                .then(|| Duration::from_secs(args.history_days.saturating_mul(24 * 3600))),
            max_per_room: (args.history_max > 0).then_some(args.history_max),
        },
        replay: args.replay,
        tls_handshake_timeout: Duration::from_secs(args.tls_handshake_timeout),
        web_origins: args.web_origin.clone(),
        web_trust_proxy: args.web_trust_proxy,
        ..natter::Config::default()
    };
    if args.no_plain && tls.is_none() {
        return Err(
            "--no-plain needs TLS: give --tls-cert and --tls-key, or --tls-self-signed".into(),
        );
    }
    smol::block_on(async {
        let plain = if args.no_plain {
            None
        } else {
            Some(
                smol::net::TcpListener::bind(&args.bind)
                    .await
                    .map_err(|err| format!("cannot listen on {}: {err}", args.bind))?,
            )
        };
        // Built without the web client, its flags change nothing.
        #[cfg(not(feature = "web"))]
        let _ = (&args.web_bind, args.no_web, &args.web_tls_bind);
        // Without TLS there is no HTTPS listener to move.
        #[cfg(all(feature = "web", not(feature = "tls")))]
        let _ = &args.web_tls_bind;
        #[cfg(feature = "web")]
        let web = if args.no_web {
            None
        } else {
            Some(bind_web(&args.web_bind, "--web-bind").await?)
        };
        #[cfg(all(feature = "web", feature = "tls"))]
        let web_tls = match (&tls, args.no_web) {
            (Some(tls), false) => Some((
                bind_web(&args.web_tls_bind, "--web-tls-bind").await?,
                std::sync::Arc::clone(&tls.config),
            )),
            _ => None,
        };
        let listeners = natter::server::Listeners {
            plain,
            #[cfg(feature = "web")]
            web,
            #[cfg(all(feature = "web", feature = "tls"))]
            web_tls,
            #[cfg(feature = "tls")]
            tls: match tls {
                Some(tls) => Some((
                    smol::net::TcpListener::bind(&args.tls_bind)
                        .await
                        .map_err(|err| format!("cannot listen on {}: {err}", args.tls_bind))?,
                    tls.config,
                )),
                None => None,
            },
        };
        let mut signals =
            async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])?;
        let shutdown = async move {
            if let Some(Ok(signal)) = signals.next().await {
                tracing::info!(?signal, "signal received");
            }
        };
        natter::server::serve_with(listeners, config, shutdown).await?;
        Ok(())
    })
}

/// Binds a web listener; a port that is taken stops the server with a
/// sentence naming the flags that move or drop it.
#[cfg(feature = "web")]
async fn bind_web(
    address: &str,
    flag: &str,
) -> Result<smol::net::TcpListener, Box<dyn std::error::Error>> {
    smol::net::TcpListener::bind(address).await.map_err(|err| {
        format!(
            "cannot listen for the web client on {address}: {err}; \
             choose another address with {flag}, or turn the web client off with --no-web"
        )
        .into()
    })
}

fn run_admin(args: Admin) -> Result<(), Box<dyn std::error::Error>> {
    use natter::accounts::BanTarget;
    let dir = args.data_dir.unwrap_or_else(data_dir);
    let mut admin = natter::accounts::Admin::open(&dir)?;
    match args.action {
        AdminAction::List(_) => {
            let snapshot = admin.snapshot()?;
            println!(
                "{} account(s) in {}",
                snapshot.accounts.len(),
                dir.display()
            );
            for account in &snapshot.accounts {
                let role = if account.operator { "  operator" } else { "" };
                println!("  {}{role}", account.nick);
            }
            let now = chrono::Utc::now().timestamp();
            let bans: Vec<_> = snapshot.bans.iter().filter(|b| b.until > now).collect();
            println!("{} ban(s) in force", bans.len());
            for ban in bans {
                let what = match &ban.target {
                    BanTarget::Nick(_) => "nick",
                    BanTarget::Addr(_) => "address",
                };
                let until = natter::protocol::Timestamp::from_unix(ban.until)
                    .map_or_else(|| "forever".to_owned(), |t| t.to_string());
                println!(
                    "  {what} {} until {until} by {}: {}",
                    ban.target, ban.by, ban.reason
                );
            }
        }
        AdminAction::Create(create) => {
            let password = read_password(&format!("Password for {}: ", create.nick))?;
            admin.create(&create.nick, &password, create.op)?;
            let role = if create.op { " (operator)" } else { "" };
            println!("{} is registered{role}.", create.nick);
        }
        AdminAction::Passwd(passwd) => {
            let password = read_password(&format!("New password for {}: ", passwd.nick))?;
            admin.set_password(&passwd.nick, &password)?;
            println!("The password of {} is changed.", passwd.nick);
        }
        AdminAction::Op(op) => {
            admin.set_operator(&op.nick, true)?;
            println!("{} is an operator.", op.nick);
        }
        AdminAction::Deop(deop) => {
            admin.set_operator(&deop.nick, false)?;
            println!("{} is no longer an operator.", deop.nick);
        }
        AdminAction::Delete(delete) => {
            admin.delete(&delete.nick)?;
            println!("{} is deleted; the nickname is free.", delete.nick);
        }
        AdminAction::Unban(unban) => {
            if admin.unban(&unban.target)? {
                println!("The ban on {} is lifted.", unban.target);
            } else {
                println!("{} was not banned.", unban.target);
            }
        }
    }
    Ok(())
}

/// Reads a password from standard input: one line. At a terminal it asks,
/// with echo off, and asks twice to catch typos.
fn read_password(prompt: &str) -> Result<natter::protocol::Secret, Box<dyn std::error::Error>> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let read = || -> std::io::Result<String> {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    if !stdin.is_terminal() {
        return Ok(natter::protocol::Secret::new(read()?));
    }
    let ask = |prompt: &str| -> std::io::Result<String> {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
        let echo = EchoOff::new();
        let line = read();
        drop(echo);
        eprintln!();
        line
    };
    let first = ask(prompt)?;
    if ask("Again: ")? != first {
        return Err("the two passwords differ".into());
    }
    Ok(natter::protocol::Secret::new(first))
}

/// Turns the terminal's echo off until dropped.
struct EchoOff {
    #[cfg(unix)]
    saved: Option<rustix::termios::Termios>,
}

impl EchoOff {
    fn new() -> Self {
        #[cfg(unix)]
        {
            let stdin = std::io::stdin();
            let saved = rustix::termios::tcgetattr(&stdin).ok();
            if let Some(saved) = &saved {
                let mut quiet = saved.clone();
                quiet.local_modes &= !rustix::termios::LocalModes::ECHO;
                let _ = rustix::termios::tcsetattr(
                    &stdin,
                    rustix::termios::OptionalActions::Now,
                    &quiet,
                );
            }
            Self { saved }
        }
        #[cfg(not(unix))]
        Self {}
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

/// The TLS listener's configuration from the `--tls-*` flags, or `None`
/// when TLS is off. Prints the certificate's fingerprint, so that users of
/// a self-signed one can check or pin it.
#[cfg(feature = "tls")]
fn tls_config(args: &Serve) -> Result<Option<natter::tls::ServerTls>, Box<dyn std::error::Error>> {
    let tls = match (&args.tls_cert, &args.tls_key, args.tls_self_signed) {
        (None, None, false) => return Ok(None),
        (Some(cert), Some(key), false) => {
            let tls = natter::tls::server_from_pem(cert, key)?;
            eprintln!(
                "natter: TLS certificate {}: SHA-256 fingerprint {}",
                cert.display(),
                tls.fingerprint
            );
            tls
        }
        (None, None, true) => {
            let names = natter::tls::self_signed_names();
            let (tls, _) = natter::tls::server_self_signed(&names)?;
            eprintln!(
                "natter: self-signed TLS certificate for {}: SHA-256 fingerprint {}",
                names.join(", "),
                tls.fingerprint
            );
            tls
        }
        (_, _, true) => {
            return Err("--tls-self-signed and --tls-cert/--tls-key exclude each other".into())
        }
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    tracing::info!(fingerprint = %tls.fingerprint, "TLS certificate");
    Ok(Some(tls))
}

/// Without the `tls` feature, any `--tls-*` flag is an error, not ignored.
#[cfg(not(feature = "tls"))]
fn tls_config(
    args: &Serve,
) -> Result<Option<std::convert::Infallible>, Box<dyn std::error::Error>> {
    // --tls-bind alone changes nothing, as with TLS built in.
    let _ = &args.tls_bind;
    if args.tls_cert.is_some() || args.tls_key.is_some() || args.tls_self_signed {
        return Err("this natter was built without TLS (feature \"tls\")".into());
    }
    Ok(None)
}
