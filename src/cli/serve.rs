//! `natter serve`: the server's flags, turned into a [`Config`] and the
//! listeners, then [`crate::server::serve_with`] until SIGINT or SIGTERM.

use std::path::{Path, PathBuf};
use std::time::Duration;

use argh::{FromArgValue, FromArgs};
use futures_lite::StreamExt;

use crate::accounts::AccountsMode;
use crate::store::{HistoryMode, Retention};
use crate::Config;

/// Where `natter serve` listens without `--bind`: every interface.
pub const DEFAULT_BIND: &str = "0.0.0.0:5555";

/// Where the TLS listener listens without `--tls-bind`.
pub const DEFAULT_TLS_BIND: &str = "0.0.0.0:5556";

/// Where the web client's HTTP listener listens without `--web-bind`.
pub const DEFAULT_WEB_BIND: &str = "0.0.0.0:8080";

/// Where the web client's HTTPS listener listens without `--web-tls-bind`.
pub const DEFAULT_WEB_TLS_BIND: &str = "0.0.0.0:8443";

/// Where `natter serve` keeps history without `--history`: in SQLite, as a
/// server run by hand should remember (`Config::default()` keeps none, for
/// tests). The directory is filled in from `--data-dir`.
pub fn default_history() -> HistoryMode {
    HistoryMode::Sqlite(PathBuf::new())
}

/// Where `natter serve` keeps accounts without `--accounts`: in SQLite too.
pub fn default_accounts() -> AccountsMode {
    AccountsMode::Sqlite(PathBuf::new())
}

/// Run the chat server.
#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
pub struct Serve {
    /// address to listen on (default 0.0.0.0:5555: every interface)
    #[argh(option, default = "DEFAULT_BIND.to_owned()")]
    bind: String,
    /// most clients at once; newcomers past it are refused (default 10000)
    #[argh(option, default = "Config::default().max_clients")]
    max_clients: usize,
    /// longest line in bytes (default 1024)
    #[argh(option, default = "Config::default().max_line")]
    max_line: usize,
    /// bytes pending for a client that is not reading before it is
    /// disconnected (default 1048576)
    #[argh(option, default = "Config::default().outbox_bytes")]
    outbox_bytes: usize,
    /// bytes pending for all clients together; past it, clients that are
    /// behind are disconnected (default 536870912)
    #[argh(option, default = "Config::default().outbox_total_bytes")]
    outbox_total_bytes: usize,
    /// seconds a connection may take to pick a nickname (default 60)
    #[argh(option, default = "Config::default().register_timeout.as_secs()")]
    register_timeout: u64,
    /// lines per second a client may send over time; 0 turns the limit off
    /// (default 10)
    #[argh(option, default = "Config::default().rate")]
    rate: u32,
    /// lines a client may send at once before --rate applies (default 50)
    #[argh(option, default = "Config::default().burst")]
    burst: u32,
    /// threads serving connections; 0 means one per core (default 0)
    #[argh(option, default = "Config::default().threads")]
    threads: usize,
    /// most rooms one client may be in at once (default 32)
    #[argh(option, default = "Config::default().max_rooms")]
    max_rooms: usize,
    /// where to keep chat history: sqlite, memory or off (default sqlite)
    #[argh(option, default = "default_history()")]
    history: HistoryMode,
    /// directory of the history and accounts databases and the id floor
    /// (default $XDG_DATA_HOME/natter, or ~/.local/share/natter)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// days of history to keep; 0 keeps it forever (default 90)
    #[argh(option, default = "days(Retention::default().max_age)")]
    history_days: u64,
    /// messages of history to keep per room; 0 keeps them all (default 100000)
    #[argh(option, default = "Retention::default().max_per_room.unwrap_or(0)")]
    history_max: usize,
    /// earlier messages sent on joining a room (default 50)
    #[argh(option, default = "Config::default().replay")]
    replay: usize,
    /// where to keep registered nicknames and bans: sqlite (in the data
    /// directory) or memory (default sqlite)
    #[argh(option, default = "default_accounts()")]
    accounts: AccountsMode,
    /// address of the TLS listener, which runs when --tls-cert and
    /// --tls-key or --tls-self-signed are given (default 0.0.0.0:5556)
    #[argh(option, default = "DEFAULT_TLS_BIND.to_owned()")]
    tls_bind: String,
    /// TLS certificate chain, PEM, leaf first (with --tls-key)
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// TLS private key, PEM (with --tls-cert)
    #[argh(option)]
    tls_key: Option<PathBuf>,
    /// serve TLS with a certificate generated at start-up for localhost,
    /// 127.0.0.1, ::1 and this host; its SHA-256 fingerprint is printed
    #[argh(switch)]
    tls_self_signed: bool,
    /// seconds a TLS connection may take to complete its handshake
    /// (default 10)
    #[argh(option, default = "Config::default().tls_handshake_timeout.as_secs()")]
    tls_handshake_timeout: u64,
    /// seconds to let queued lines reach their clients on shutdown
    /// (default 2)
    #[argh(option, default = "Config::default().shutdown_grace.as_secs()")]
    shutdown_grace: u64,
    /// seconds a MUTE without a duration lasts (default 600)
    #[argh(option, default = "Config::default().mute_default.as_secs()")]
    mute_default: u64,
    /// seconds a BAN without a duration lasts (default 86400)
    #[argh(option, default = "Config::default().ban_default.as_secs()")]
    ban_default: u64,
    /// no plain-text listener: serve only TLS (--bind is then unused)
    #[argh(switch)]
    no_plain: bool,
    // The web client.
    /// address of the web client's HTTP listener, the page and its
    /// WebSocket (default 0.0.0.0:8080)
    #[argh(option, default = "DEFAULT_WEB_BIND.to_owned()")]
    web_bind: String,
    /// do not serve the web client
    #[argh(switch)]
    no_web: bool,
    /// address of the web client over HTTPS, served when a TLS certificate
    /// is configured (default 0.0.0.0:8443)
    #[argh(option, default = "DEFAULT_WEB_TLS_BIND.to_owned()")]
    web_tls_bind: String,
    /// another origin whose pages may open the WebSocket, such as
    /// https://chat.example.org (repeatable); the page's own always may
    #[argh(option)]
    web_origin: Vec<String>,
    /// the address of a reverse proxy in front of the web listener: from it
    /// only, the client address is taken from X-Forwarded-For (default none)
    #[argh(option)]
    web_trust_proxy: Option<std::net::IpAddr>,
    /// seconds between pings on an idle WebSocket; a peer that has not
    /// answered one by the next is closed (default 25)
    #[argh(option, default = "Config::default().web_ping.as_secs()")]
    web_ping: u64,
    // A locked accounts database.
    /// seconds a login or registration may wait for an accounts database
    /// another process has locked, before it gets ERR busy (default 2)
    #[argh(option, default = "Config::default().accounts_wait.as_secs()")]
    accounts_wait: u64,
    // Registrations per address.
    /// accounts one address (IPv6: one /64) may register per hour; 0 turns
    /// the limit off (default 5)
    #[argh(option, default = "Config::default().registrations_per_hour")]
    registrations_per_hour: u32,
    /// addresses whose recent registrations are remembered for
    /// --registrations-per-hour; past it the stalest is forgotten
    /// (default 4096)
    #[argh(option, default = "Config::default().registration_addresses")]
    registration_addresses: usize,
    // Connections per address.
    /// connections one address (IPv6: one /64) may hold open at once; 0
    /// turns the limit off (default 16)
    #[argh(option, default = "Config::default().max_per_address")]
    max_per_address: usize,
    /// new connections one address may open per minute over time; 0 turns
    /// the limit off (default 30)
    #[argh(option, default = "Config::default().connect_rate")]
    connect_rate: u32,
    /// new connections one address may open at once before --connect-rate
    /// applies (default 20)
    #[argh(option, default = "Config::default().connect_burst")]
    connect_burst: u32,
    /// addresses remembered for --connect-rate besides those connected; the
    /// longest ago are forgotten first (default 65536)
    #[argh(option, default = "Config::default().address_table")]
    address_table: usize,
    // Big rooms.
    /// members from which a room is big: arrivals and departures are sent
    /// gathered in JOINS and PARTS lines every --presence-interval, and a
    /// newcomer's member list comes then; 0: never (default 200)
    #[argh(option, default = "Config::default().big_room")]
    big_room: usize,
    /// milliseconds between the JOINS and PARTS lines of big rooms
    /// (default 500)
    #[argh(option, default = "default_presence_ms()")]
    presence_interval: u64,
}

fn default_presence_ms() -> u64 {
    u64::try_from(Config::default().presence_interval.as_millis()).unwrap_or(u64::MAX)
}

/// `--history sqlite|memory|off`. The SQLite directory is filled in from
/// `--data-dir` afterwards, since flags come in any order.
impl FromArgValue for HistoryMode {
    fn from_arg_value(value: &str) -> Result<Self, String> {
        match value {
            "sqlite" => Ok(Self::Sqlite(PathBuf::new())),
            "memory" => Ok(Self::Memory),
            "off" => Ok(Self::Off),
            other => Err(format!("--history is sqlite, memory or off, not {other}")),
        }
    }
}

/// `--accounts sqlite|memory`, with the directory filled in as for
/// `--history`.
impl FromArgValue for AccountsMode {
    fn from_arg_value(value: &str) -> Result<Self, String> {
        match value {
            "sqlite" => Ok(Self::Sqlite(PathBuf::new())),
            "memory" => Ok(Self::Memory),
            other => Err(format!("--accounts is sqlite or memory, not {other}")),
        }
    }
}

/// A retention age as the whole days `--history-days` takes (0: forever).
fn days(age: Option<Duration>) -> u64 {
    age.map_or(0, |age| age.as_secs() / (24 * 3600))
}

/// Where the databases live unless `--data-dir` says otherwise: the XDG
/// data directory, as other Unix services do (on Windows, which sets no
/// `HOME`, `%LOCALAPPDATA%` when neither is set).
pub fn data_dir() -> PathBuf {
    let home = |rest: &str| std::env::var_os("HOME").map(|h| Path::new(&h).join(rest));
    std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| home(".local/share"))
        .or_else(local_app_data)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("natter")
}

/// Windows' per-user data directory, where `HOME` is not set.
#[cfg(windows)]
fn local_app_data() -> Option<PathBuf> {
    std::env::var_os("LOCALAPPDATA").map(PathBuf::from)
}

/// Unix systems have `HOME`; nothing else to try.
#[cfg(not(windows))]
fn local_app_data() -> Option<PathBuf> {
    None
}

impl Serve {
    /// The server's configuration these flags ask for.
    pub fn config(&self) -> Config {
        let dir = || self.data_dir.clone().unwrap_or_else(data_dir);
        let history = match &self.history {
            HistoryMode::Sqlite(_) => HistoryMode::Sqlite(dir()),
            other => other.clone(),
        };
        let accounts = match &self.accounts {
            AccountsMode::Sqlite(_) => AccountsMode::Sqlite(dir()),
            other => other.clone(),
        };
        Config {
            accounts,
            max_clients: self.max_clients,
            max_line: self.max_line,
            outbox_bytes: self.outbox_bytes,
            outbox_total_bytes: self.outbox_total_bytes,
            register_timeout: Duration::from_secs(self.register_timeout),
            rate: self.rate,
            burst: self.burst,
            threads: self.threads,
            max_rooms: self.max_rooms,
            history,
            retention: Retention {
                max_age: (self.history_days > 0)
                    .then(|| Duration::from_secs(self.history_days.saturating_mul(24 * 3600))),
                max_per_room: (self.history_max > 0).then_some(self.history_max),
            },
            replay: self.replay,
            tls_handshake_timeout: Duration::from_secs(self.tls_handshake_timeout),
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            mute_default: Duration::from_secs(self.mute_default),
            ban_default: Duration::from_secs(self.ban_default),
            web_origins: self.web_origin.clone(),
            web_trust_proxy: self.web_trust_proxy,
            // At least a second: a ping per poll would be a busy loop.
            web_ping: Duration::from_secs(self.web_ping.max(1)),
            id_floor_dir: Some(dir()),
            // A locked accounts database.
            accounts_wait: Duration::from_secs(self.accounts_wait),
            // Registrations per address.
            registrations_per_hour: self.registrations_per_hour,
            registration_addresses: self.registration_addresses,
            // Connections per address.
            max_per_address: self.max_per_address,
            connect_rate: self.connect_rate,
            connect_burst: self.connect_burst,
            address_table: self.address_table,
            // Big rooms.
            big_room: self.big_room,
            // At least a millisecond: a zero interval would be a busy loop.
            presence_interval: Duration::from_millis(self.presence_interval.max(1)),
        }
    }

    /// Runs the server until SIGINT or SIGTERM, logging to stderr.
    pub fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            // Colours only for a person at a terminal, not in log files.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .init();
        let tls = self.tls_config()?;
        let config = self.config();
        if self.no_plain && tls.is_none() {
            return Err(
                "--no-plain needs TLS: give --tls-cert and --tls-key, or --tls-self-signed".into(),
            );
        }
        smol::block_on(async {
            let plain = if self.no_plain {
                None
            } else {
                Some(
                    smol::net::TcpListener::bind(&self.bind)
                        .await
                        .map_err(|err| format!("cannot listen on {}: {err}", self.bind))?,
                )
            };
            // Built without the web client, its flags change nothing.
            #[cfg(not(feature = "web"))]
            let _ = (&self.web_bind, self.no_web, &self.web_tls_bind);
            // Without TLS there is no HTTPS listener to move.
            #[cfg(all(feature = "web", not(feature = "tls")))]
            let _ = &self.web_tls_bind;
            #[cfg(feature = "web")]
            let web = if self.no_web {
                None
            } else {
                Some(bind_web(&self.web_bind, "--web-bind").await?)
            };
            #[cfg(all(feature = "web", feature = "tls"))]
            let web_tls = match (&tls, self.no_web) {
                (Some(tls), false) => Some((
                    bind_web(&self.web_tls_bind, "--web-tls-bind").await?,
                    std::sync::Arc::clone(&tls.config),
                )),
                _ => None,
            };
            let listeners = crate::server::Listeners {
                plain,
                #[cfg(feature = "web")]
                web,
                #[cfg(all(feature = "web", feature = "tls"))]
                web_tls,
                #[cfg(feature = "tls")]
                tls: match tls {
                    Some(tls) => Some((
                        smol::net::TcpListener::bind(&self.tls_bind)
                            .await
                            .map_err(|err| format!("cannot listen on {}: {err}", self.tls_bind))?,
                        tls.config,
                    )),
                    None => None,
                },
            };
            // Windows delivers only Ctrl-C (`Int`); async-signal refuses
            // to listen for `Term` there, which would stop the server
            // from starting.
            #[cfg(unix)]
            let wanted = [async_signal::Signal::Int, async_signal::Signal::Term];
            #[cfg(not(unix))]
            let wanted = [async_signal::Signal::Int];
            let mut signals = async_signal::Signals::new(wanted)?;
            let shutdown = async move {
                if let Some(Ok(signal)) = signals.next().await {
                    tracing::info!(?signal, "signal received");
                }
            };
            crate::server::serve_with(listeners, config, shutdown).await?;
            Ok(())
        })
    }

    /// The TLS listener's configuration from the `--tls-*` flags, or `None`
    /// when TLS is off. Prints the certificate's fingerprint, so that users
    /// of a self-signed one can check or pin it.
    #[cfg(feature = "tls")]
    fn tls_config(&self) -> Result<Option<crate::tls::ServerTls>, Box<dyn std::error::Error>> {
        let tls = match (&self.tls_cert, &self.tls_key, self.tls_self_signed) {
            (None, None, false) => return Ok(None),
            (Some(cert), Some(key), false) => {
                let tls = crate::tls::server_from_pem(cert, key)?;
                eprintln!(
                    "natter: TLS certificate {}: SHA-256 fingerprint {}",
                    cert.display(),
                    tls.fingerprint
                );
                tls
            }
            (None, None, true) => {
                let names = crate::tls::self_signed_names();
                let (tls, _) = crate::tls::server_self_signed(&names)?;
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

    /// Without the `tls` feature, any `--tls-*` flag is an error, not
    /// ignored.
    #[cfg(not(feature = "tls"))]
    fn tls_config(&self) -> Result<Option<std::convert::Infallible>, Box<dyn std::error::Error>> {
        // --tls-bind alone changes nothing, as with TLS built in.
        let _ = &self.tls_bind;
        if self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_self_signed {
            return Err("this natter was built without TLS (feature \"tls\")".into());
        }
        Ok(None)
    }
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
