//! `natter serve`: the server's flags, turned into a [`Config`] and the
//! listeners, then [`crate::server::serve_with`] until SIGINT or SIGTERM.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use argh::{ArgsInfo, FromArgValue, FromArgs};
use futures_lite::StreamExt;
use serde::Serialize;

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
///
/// Every flag is also a key of the `--config` file (see `cli::config`):
/// argh's `ArgsInfo` lists them and serde writes their defaults, so a new
/// field here needs nothing else. A field whose type serde cannot write
/// takes `#[serde(serialize_with = ...)]`.
#[derive(FromArgs, ArgsInfo, Serialize)]
#[argh(subcommand, name = "serve")]
#[serde(rename_all = "kebab-case")]
pub struct Serve {
    /// address to listen on (default 0.0.0.0:5555: every interface)
    #[argh(option, default = "DEFAULT_BIND.to_owned()")]
    bind: String,
    /// connections each listener lets wait to be accepted, for a crowd
    /// reconnecting at once; the kernel caps it, on Linux at
    /// net.core.somaxconn (default 4096)
    #[argh(option, default = "crate::server::listen::DEFAULT_BACKLOG")]
    listen_backlog: u32,
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
    #[serde(serialize_with = "history_word")]
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
    #[serde(serialize_with = "accounts_word")]
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
    // Operations: logs, the welcome text, metrics, the configuration file.
    /// how stderr's log lines look: human (text, coloured at a terminal)
    /// or json (one object a line, for log shippers) (default human)
    #[argh(option, default = "LogFormat::default()")]
    #[serde(serialize_with = "log_format_word")]
    log_format: LogFormat,
    /// a text file sent to every client after WELCOME, one INFO line per
    /// line, read at start (default none)
    #[argh(option)]
    motd: Option<PathBuf>,
    /// most bytes the --motd file may hold (default 4096)
    #[argh(option, default = "DEFAULT_MOTD_MAX")]
    motd_max: usize,
    /// address of an HTTP listener serving GET /metrics in the Prometheus
    /// text format, e.g. 127.0.0.1:9555 (default none: off)
    #[argh(option)]
    metrics_bind: Option<String>,
    // Operations: the configuration file and what a reload changes.
    /// a TOML file of settings, one key per flag without its dashes (see
    /// natter config); flags given here win over it (default none)
    #[argh(option)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// which log lines to write, as RUST_LOG takes them: error, warn, info,
    /// debug, or per module like info,natter::server=debug (default
    /// $RUST_LOG, or info)
    #[argh(option)]
    log_level: Option<String>,
    /// serve GET /metrics on the web listener too, as --metrics-bind does
    /// (off: the web listener faces everyone)
    #[argh(switch)]
    web_metrics: bool,
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
    // Several nodes.
    /// the Redis that joins this node to others as one chat, such as
    /// redis://127.0.0.1:6379/0 (default none: a single node)
    #[argh(option)]
    cluster: Option<String>,
    /// this node's name in the cluster: letters, digits, '.', '_' and '-'
    /// (default the host name and port)
    #[argh(option)]
    node_id: Option<String>,
    /// seconds without a heartbeat after which a node is taken for dead and
    /// its users leave (default 10)
    #[argh(option, default = "Config::default().node_ttl.as_secs()")]
    node_ttl: u64,
    // Big rooms.
    /// members from which a room is big: arrivals and departures are sent
    /// gathered in JOINS and PARTS lines every --presence-interval; 0: never
    /// (default 200)
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

/// `history` as the word `--history` takes, for the `--config` example.
fn history_word<S: serde::Serializer>(mode: &HistoryMode, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(match mode {
        HistoryMode::Sqlite(_) => "sqlite",
        HistoryMode::Memory => "memory",
        HistoryMode::Off => "off",
    })
}

/// `accounts` as the word `--accounts` takes.
fn accounts_word<S: serde::Serializer>(mode: &AccountsMode, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(match mode {
        AccountsMode::Sqlite(_) => "sqlite",
        AccountsMode::Memory => "memory",
    })
}

/// `format` as the word `--log-format` takes.
fn log_format_word<S: serde::Serializer>(format: &LogFormat, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(format.word())
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
            // Read from --motd by `run`, which can fail.
            motd: Vec::new(),
            web_metrics: self.web_metrics,
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
            // Several nodes.
            cluster: self.cluster.clone(),
            node_id: self.node_id.clone(),
            node_ttl: Duration::from_secs(self.node_ttl.max(1)),
            // Big rooms.
            big_room: self.big_room,
            // At least a millisecond: a zero interval would be a busy loop.
            presence_interval: Duration::from_millis(self.presence_interval.max(1)),
        }
    }

    /// The flags' defaults: what `natter serve` alone runs with.
    pub fn defaults() -> Self {
        // No arguments cannot fail to parse: no flag is required.
        Self::from_args(&["serve"], &[]).expect("natter serve takes no required flag")
    }

    /// Every setting with its value, keyed as in the `--config` file; those
    /// without a value (an option not given) are left out.
    pub fn settings(&self) -> BTreeMap<String, toml::Value> {
        super::config::settings(self)
    }

    /// `natter serve` with `args` (what follows `serve`), under them the
    /// settings of the `--config` file when they name one.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let parse = |args: &[String]| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Self::from_args(&["serve"], &args).map_err(|exit| exit.output.trim().to_owned())
        };
        let serve = parse(args)?;
        let Some(path) = &serve.config else {
            return Ok(serve);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("cannot read --config {}: {err}", path.display()))?;
        parse(&super::config::arguments::<Self>(
            "serve",
            &text,
            &path.display().to_string(),
            args,
        )?)
    }

    /// Runs the server until SIGINT or SIGTERM, logging to stderr; SIGHUP
    /// reloads (see [`Live::reload`]).
    pub fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        let command_line = command_line();
        let serve = match &self.config {
            Some(_) => Self::parse(&command_line)?,
            None => self,
        };
        serve.serve(command_line)
    }

    /// [`Serve::run`] once the file is read; `command_line` is read again on
    /// every reload.
    fn serve(self, command_line: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
        let log = init_logging(self.log_format, self.log_level.as_deref())?;
        let tls = self.tls_config()?;
        let mut config = self.config();
        if let Some(path) = &self.motd {
            config.motd = read_motd(path, self.motd_max)?;
        }
        if self.no_plain && tls.is_none() {
            return Err(
                "--no-plain needs TLS: give --tls-cert and --tls-key, or --tls-self-signed".into(),
            );
        }
        let mut live = Live {
            command_line,
            settings: self.settings(),
            motd: config.motd.clone(),
            log,
            #[cfg(feature = "tls")]
            cert: match (&tls, &self.tls_cert) {
                (Some(tls), Some(_)) => Some(std::sync::Arc::clone(&tls.cert)),
                _ => None,
            },
        };
        let (reload, reloads) = async_channel::bounded(4);
        let pid_file = PidFile::write(&self.data_dir.clone().unwrap_or_else(data_dir));
        smol::block_on(async {
            let plain = if self.no_plain {
                None
            } else {
                Some(
                    crate::server::listen::listen(&self.bind, self.listen_backlog)
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
                Some(bind_web(&self.web_bind, "--web-bind", self.listen_backlog)?)
            };
            #[cfg(all(feature = "web", feature = "tls"))]
            let web_tls = match (&tls, self.no_web) {
                (Some(tls), false) => Some((
                    bind_web(&self.web_tls_bind, "--web-tls-bind", self.listen_backlog)?,
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
                        crate::server::listen::listen(&self.tls_bind, self.listen_backlog)
                            .map_err(|err| format!("cannot listen on {}: {err}", self.tls_bind))?,
                        tls.config,
                    )),
                    None => None,
                },
            };
            // Windows delivers only Ctrl-C (`Int`); async-signal refuses
            // to listen for `Term` and `Hup` there, which would stop the
            // server from starting.
            #[cfg(unix)]
            let wanted = [
                async_signal::Signal::Int,
                async_signal::Signal::Term,
                async_signal::Signal::Hup,
            ];
            #[cfg(not(unix))]
            let wanted = [async_signal::Signal::Int];
            let mut signals = async_signal::Signals::new(wanted)?;
            let shutdown = async move {
                while let Some(Ok(signal)) = signals.next().await {
                    #[cfg(unix)]
                    if signal == async_signal::Signal::Hup {
                        live.reload(&reload);
                        continue;
                    }
                    tracing::info!(?signal, "signal received");
                    break;
                }
                // Without SIGHUP nothing reloads.
                #[cfg(not(unix))]
                let _ = (&mut live, &reload);
            };
            let metrics = match &self.metrics_bind {
                Some(address) => Some(
                    smol::net::TcpListener::bind(address)
                        .await
                        .map_err(|err| format!("cannot listen on {address}: {err}"))?,
                ),
                None => None,
            };
            if let Some(listener) = &metrics {
                tracing::info!(address = %listener.local_addr()?, "serving metrics");
            }
            notify_ready();
            // Runs as long as the server; never ends by itself.
            let metrics = async {
                if let Some(listener) = metrics {
                    crate::server::metrics::serve_metrics(listener).await;
                }
                futures_lite::future::pending::<std::io::Result<()>>().await
            };
            let server = crate::server::serve_reloadable(listeners, config, reloads, shutdown);
            futures_lite::future::or(server, metrics).await?;
            drop(pid_file);
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
                self.say(format!(
                    "natter: TLS certificate {}: SHA-256 fingerprint {}",
                    cert.display(),
                    tls.fingerprint
                ));
                tls
            }
            (None, None, true) => {
                let names = crate::tls::self_signed_names();
                let (tls, _) = crate::tls::server_self_signed(&names)?;
                self.say(format!(
                    "natter: self-signed TLS certificate for {}: SHA-256 fingerprint {}",
                    names.join(", "),
                    tls.fingerprint
                ));
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
fn bind_web(
    address: &str,
    flag: &str,
    backlog: u32,
) -> Result<smol::net::TcpListener, Box<dyn std::error::Error>> {
    crate::server::listen::listen(address, backlog).map_err(|err| {
        format!(
            "cannot listen for the web client on {address}: {err}; \
             choose another address with {flag}, or turn the web client off with --no-web"
        )
        .into()
    })
}

// Operations: readiness for a service manager.

/// Tells systemd (a `Type=notify` unit, see `contrib/natter.service`) that
/// the server is up once its sockets are bound: from then on a connection
/// waits in the listen queue at worst, so units ordered after natter can
/// start. Without `$NOTIFY_SOCKET` this does nothing; a failure is logged,
/// not fatal, since the server itself is fine.
fn notify_ready() {
    #[cfg(unix)]
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        match sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            Ok(()) => tracing::debug!("told the service manager we are ready"),
            Err(err) => tracing::warn!(%err, "cannot tell the service manager we are ready"),
        }
    }
}

// Operations: the welcome text.

/// The most bytes a `--motd` file may hold without `--motd-max`: a screenful
/// or two, which every newcomer is sent.
pub const DEFAULT_MOTD_MAX: usize = 4096;

/// The welcome text in the file at `path`, one entry a line, without line
/// ends, trailing spaces and trailing blank lines. Refused when larger than
/// `max` bytes or not UTF-8, so a wrong path (a binary, a log) is noticed
/// at start rather than sent to everyone. Control characters are left in:
/// encoding a line cleans it as it cleans all server text.
pub fn read_motd(path: &Path, max: usize) -> Result<Vec<String>, String> {
    use std::io::Read;
    let why = |err: std::io::Error| format!("cannot read --motd {}: {err}", path.display());
    let file = std::fs::File::open(path).map_err(why)?;
    let mut bytes = Vec::new();
    file.take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(why)?;
    if bytes.len() > max {
        return Err(format!(
            "--motd {} is larger than {max} bytes (--motd-max)",
            path.display()
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("--motd {} is not UTF-8 text", path.display()))?;
    let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_owned()).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    Ok(lines)
}

// Operations: logs.

impl Serve {
    /// Prints a notice for the person starting the server on stderr, unless
    /// stderr is JSON for a log shipper (the log has the same facts).
    /// Only TLS has notices to print (the fingerprint).
    #[cfg(feature = "tls")]
    fn say(&self, notice: String) {
        if self.log_format == LogFormat::Human {
            eprintln!("{notice}");
        }
    }
}

/// `--log-format`: the shape of the log lines on stderr. Either way they
/// carry the same events and fields, and never what people say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Text for a person reading a terminal or `journalctl`.
    #[default]
    Human,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`),
    /// for log shippers that would otherwise parse text.
    Json,
}

impl LogFormat {
    /// The word `--log-format` takes for this format.
    pub fn word(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Json => "json",
        }
    }
}

/// `--log-format human|json`.
impl FromArgValue for LogFormat {
    fn from_arg_value(value: &str) -> Result<Self, String> {
        match value {
            "human" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            other => Err(format!("--log-format is human or json, not {other}")),
        }
    }
}

/// The handle that changes the log level of a running server.
type LogFilter =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// Logs to stderr in `format`, at `level` (`--log-level`; without it what
/// `RUST_LOG` names, and info without that), which a reload can change.
fn init_logging(format: LogFormat, level: Option<&str>) -> Result<LogFilter, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(log_filter(level)?);
    // Colours only for a person at a terminal, not in log files.
    let human = (format == LogFormat::Human).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_ansi(false)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(human)
        .with(json)
        .init();
    Ok(handle)
}

/// The log filter `--log-level` names, refused when it does not parse.
fn log_filter(level: Option<&str>) -> Result<tracing_subscriber::EnvFilter, String> {
    use tracing_subscriber::EnvFilter;
    match level {
        Some(level) => {
            EnvFilter::try_new(level).map_err(|err| format!("--log-level {level}: {err}"))
        }
        None => Ok(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))),
    }
}

/// What follows `serve` on this process's command line, parsed again (with
/// the `--config` file under it) on every reload.
fn command_line() -> Vec<String> {
    std::env::args()
        .skip_while(|arg| arg != "serve")
        .skip(1)
        .collect()
}

// Operations: reloading.

/// The settings a reload can change in a running server: the welcome text,
/// the log level and the TLS certificate. The others are read once at start
/// (sockets, thread pool, databases, limits copied into every session) and
/// need a restart, which a reload says.
const LIVE: [&str; 5] = ["motd", "motd-max", "log-level", "tls-cert", "tls-key"];

/// What a reload compares against and changes: the settings in force.
struct Live {
    /// `natter serve`'s arguments, read again with the file on each reload.
    command_line: Vec<String>,
    /// The settings in force (see [`Serve::settings`]).
    settings: BTreeMap<String, toml::Value>,
    /// The welcome text in force.
    motd: Vec<String>,
    /// Changes the log level.
    log: LogFilter,
    /// The certificate the TLS listeners present, when it comes from files
    /// that a reload can read again (a self-signed one stays).
    #[cfg(feature = "tls")]
    cert: Option<std::sync::Arc<crate::tls::CertSwap>>,
}

/// Everything a reload applies, read and checked before anything changes.
struct Reloaded {
    settings: BTreeMap<String, toml::Value>,
    motd: Vec<String>,
    filter: tracing_subscriber::EnvFilter,
    #[cfg(feature = "tls")]
    cert: Option<std::sync::Arc<rustls::sign::CertifiedKey>>,
}

// Only SIGHUP reloads, and only Unix has it.
#[cfg_attr(not(unix), allow(dead_code))]
impl Live {
    /// Reads the flags and the `--config` file again and applies what can
    /// change while the server runs, sending the welcome text to the server
    /// through `server`; logs what changed and what needs a restart. A file
    /// that does not parse, a MOTD or certificate that cannot be read change
    /// nothing at all, and the log says why.
    fn reload(&mut self, server: &async_channel::Sender<crate::server::Reload>) {
        let new = match self.read() {
            Ok(new) => new,
            Err(why) => {
                tracing::error!(%why, "reload refused; nothing changed");
                return;
            }
        };
        let mut changed: Vec<String> = Vec::new();
        if new.motd != self.motd {
            match server.try_send(crate::server::Reload::Motd(new.motd.clone())) {
                Ok(()) => {
                    self.motd = new.motd;
                    changed.push("motd".to_owned());
                }
                // Reloads a moment apart: the next one tries again.
                Err(_) => tracing::warn!("the server is still applying a reload; MOTD unchanged"),
            }
        }
        if new.settings.get("log-level") != self.settings.get("log-level") {
            match self.log.reload(new.filter) {
                Ok(()) => changed.push("log-level".to_owned()),
                Err(err) => tracing::warn!(%err, "cannot change the log level"),
            }
        }
        #[cfg(feature = "tls")]
        if let (Some(swap), Some(cert)) = (&self.cert, new.cert) {
            let fingerprint = cert.cert.first().map(|c| crate::tls::fingerprint(c));
            if fingerprint.as_deref() != Some(swap.fingerprint().as_str()) {
                swap.swap(cert);
                let fingerprint = fingerprint.unwrap_or_default();
                tracing::info!(%fingerprint, "new TLS certificate for new connections");
                changed.push("tls certificate".to_owned());
            }
        }
        let restart: Vec<&str> = new
            .settings
            .keys()
            .chain(self.settings.keys())
            .filter(|key| !LIVE.contains(&key.as_str()))
            .filter(|key| new.settings.get(*key) != self.settings.get(*key))
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !restart.is_empty() {
            let settings = restart.join(", ");
            tracing::warn!(%settings, "reload: these settings change only with a restart");
        }
        let changed = if changed.is_empty() {
            "nothing".to_owned()
        } else {
            changed.join(", ")
        };
        tracing::info!(%changed, "reloaded");
        // What needs a restart stays as it runs, so the next reload says
        // so again.
        for key in LIVE {
            match new.settings.get(key) {
                Some(value) => self.settings.insert(key.to_owned(), value.clone()),
                None => self.settings.remove(key),
            };
        }
    }

    /// The settings, welcome text, log filter and certificate a reload
    /// would apply, or why it cannot.
    fn read(&self) -> Result<Reloaded, String> {
        let serve = Serve::parse(&self.command_line)?;
        let motd = match &serve.motd {
            Some(path) => read_motd(path, serve.motd_max)?,
            None => Vec::new(),
        };
        #[cfg(feature = "tls")]
        let cert = match (&self.cert, &serve.tls_cert, &serve.tls_key) {
            (Some(_), Some(cert), Some(key)) => {
                Some(crate::tls::certified_key_from_pem(cert, key).map_err(|err| err.to_string())?)
            }
            _ => None,
        };
        Ok(Reloaded {
            settings: serve.settings(),
            motd,
            filter: log_filter(serve.log_level.as_deref())?,
            #[cfg(feature = "tls")]
            cert,
        })
    }
}

/// `natter.pid` in the data directory while the server runs, so that
/// `natter admin reload` knows whom to send SIGHUP. Removed when dropped,
/// if it is still ours.
struct PidFile(Option<PathBuf>);

/// The pid file's name in the data directory.
pub const PID_FILE: &str = "natter.pid";

impl PidFile {
    /// Writes this process's id to `dir/natter.pid`; a failure is logged,
    /// since only `natter admin reload` needs the file.
    fn write(dir: &Path) -> Self {
        let path = dir.join(PID_FILE);
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, format!("{}\n", std::process::id())));
        match written {
            Ok(()) => Self(Some(path)),
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "cannot write the pid file");
                Self(None)
            }
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let ours = std::fs::read_to_string(path)
                .is_ok_and(|pid| pid.trim() == std::process::id().to_string());
            if ours {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Asks the server running on the data directory `dir` to reload, by
/// SIGHUP to the pid in its pid file: `natter admin reload`, for where
/// sending a signal is awkward.
#[cfg(unix)]
pub fn reload_running(dir: &Path) -> Result<u32, String> {
    let path = dir.join(PID_FILE);
    let text = std::fs::read_to_string(&path).map_err(|err| {
        format!(
            "no server seems to run on {}: cannot read {}: {err}",
            dir.display(),
            path.display()
        )
    })?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{} holds no process id", path.display()))?;
    let target = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| format!("{} holds no process id", path.display()))?;
    rustix::process::kill_process(target, rustix::process::Signal::HUP).map_err(|err| {
        format!(
            "cannot signal process {pid} (from {}): {err}",
            path.display()
        )
    })?;
    Ok(pid.unsigned_abs())
}

/// Without signals there is nothing to send; the server reloads only on
/// SIGHUP, which needs Unix.
#[cfg(not(unix))]
pub fn reload_running(_dir: &Path) -> Result<u32, String> {
    Err("reloading needs Unix signals; restart the server instead".to_owned())
}
