//! The `natter` command line: one argh struct per subcommand, each turned
//! into the library's own options (`Config`, `bench::Options`,
//! `tui::Options`) and run. The binary only calls [`run`] on what
//! [`argh::from_env`] parsed, so everything here can be tested without a
//! process.
//!
//! - `serve`: flags to [`crate::Config`], the listeners, signals to a
//!   shutdown future, then [`crate::server::serve_with`].
//! - `admin`: accounts and bans in the data directory, with the password
//!   prompt and what `natter admin` prints.
//! - `bench`: flags to [`crate::bench::Options`].
//! - `tui` (feature `tui`): flags to [`crate::tui::Options`].
//! - `config`: the `serve --config` file, made of the `serve` flags, and
//!   the example `natter config` prints.
//!
//! Defaults are never typed here: each comes from `Config::default()`, the
//! other `Options::default()`s or a library constant. argh's doc comments
//! cannot show a value, so the help texts spell the defaults out, and the
//! tests check every "(default …)" against the value the flag really has.

pub mod admin;
pub mod bench;
pub mod config;
pub mod serve;
#[cfg(feature = "tui")]
pub mod tui;

use argh::FromArgs;

/// natter: a chat server you can use from nc or telnet, and a terminal client.
#[derive(FromArgs)]
pub struct Args {
    #[argh(subcommand)]
    command: Subcommand,
}

/// The subcommands.
#[derive(FromArgs)]
#[argh(subcommand)]
enum Subcommand {
    Serve(Box<serve::Serve>),
    Admin(admin::Admin),
    Bench(bench::Bench),
    #[cfg(feature = "tui")]
    Tui(tui::Tui),
    Config(PrintConfig),
}

/// Print an example `natter serve --config` file: every setting, with its
/// description and its default.
#[derive(FromArgs)]
#[argh(subcommand, name = "config")]
struct PrintConfig {}

/// Runs the subcommand `args` names until it is done (the server until a
/// signal, the client until the user quits).
pub fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    match args.command {
        Subcommand::Serve(serve) => (*serve).run(),
        Subcommand::Admin(admin) => admin.run(),
        Subcommand::Bench(bench) => crate::bench::run(bench.options()),
        #[cfg(feature = "tui")]
        Subcommand::Tui(tui) => tui.run(),
        Subcommand::Config(PrintConfig {}) => {
            print!("{}", config::example::<serve::Serve>("serve")?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Args, Subcommand};
    use crate::accounts::AccountsMode;
    use crate::store::{HistoryMode, Retention};
    use crate::Config;
    use argh::FromArgs;

    /// `natter <command> --help`, each flag with its description on one
    /// line: (`--flag`, description).
    fn help(command: &[&str]) -> Vec<(String, String)> {
        let mut args = command.to_vec();
        args.push("--help");
        let output = match Args::from_args(&["natter"], &args) {
            Err(exit) => exit.output,
            Ok(_) => panic!("--help parsed as a command"),
        };
        let mut flags: Vec<(String, String)> = Vec::new();
        let mut in_options = false;
        for line in output.lines() {
            if line.starts_with("Options:") {
                in_options = true;
                continue;
            }
            if !in_options || line.trim().is_empty() {
                in_options &= !line.trim().is_empty() || flags.is_empty();
                continue;
            }
            let trimmed = line.trim_start();
            if trimmed.starts_with("--") && line.starts_with("  ") && !line.starts_with("   ") {
                let (flag, text) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
                flags.push((flag.to_owned(), text.trim().to_owned()));
            } else if let Some((_, text)) = flags.last_mut() {
                text.push(' ');
                text.push_str(trimmed);
            }
        }
        flags
    }

    /// The "default …" of `flag` in `natter <command> --help`, up to the
    /// first `)`, `;` or `: `.
    fn default_in_help(command: &[&str], flag: &str) -> String {
        let flags = help(command);
        let Some((_, text)) = flags.iter().find(|(f, _)| f == flag) else {
            panic!("no {flag} in the help of {command:?}: {flags:?}");
        };
        let Some((_, rest)) = text.split_once("default ") else {
            panic!("{flag} names no default: {text}");
        };
        let end = [")", ";", ": "]
            .iter()
            .filter_map(|t| rest.find(t))
            .min()
            .unwrap_or(rest.len());
        rest[..end].to_owned()
    }

    /// The `--history`/`--accounts` word naming a mode.
    fn history_word(mode: &HistoryMode) -> &'static str {
        match mode {
            HistoryMode::Sqlite(_) => "sqlite",
            HistoryMode::Memory => "memory",
            HistoryMode::Off => "off",
        }
    }

    fn accounts_word(mode: &AccountsMode) -> &'static str {
        match mode {
            AccountsMode::Sqlite(_) => "sqlite",
            AccountsMode::Memory => "memory",
        }
    }

    /// `natter serve --help` states the defaults the flags really have.
    #[test]
    fn serve_help_states_the_real_defaults() {
        let c = Config::default();
        let r = Retention::default();
        let days = r.max_age.map_or(0, |a| a.as_secs() / 86_400);
        let expected = [
            ("--bind", super::serve::DEFAULT_BIND.to_owned()),
            ("--max-clients", c.max_clients.to_string()),
            ("--max-line", c.max_line.to_string()),
            ("--outbox-bytes", c.outbox_bytes.to_string()),
            ("--outbox-total-bytes", c.outbox_total_bytes.to_string()),
            (
                "--register-timeout",
                c.register_timeout.as_secs().to_string(),
            ),
            ("--rate", c.rate.to_string()),
            ("--burst", c.burst.to_string()),
            ("--threads", c.threads.to_string()),
            ("--max-rooms", c.max_rooms.to_string()),
            ("--big-room", c.big_room.to_string()),
            (
                "--presence-interval",
                c.presence_interval.as_millis().to_string(),
            ),
            (
                "--history",
                history_word(&super::serve::default_history()).into(),
            ),
            ("--history-days", days.to_string()),
            ("--history-max", r.max_per_room.unwrap_or(0).to_string()),
            ("--replay", c.replay.to_string()),
            (
                "--accounts",
                accounts_word(&super::serve::default_accounts()).into(),
            ),
            ("--tls-bind", super::serve::DEFAULT_TLS_BIND.to_owned()),
            (
                "--tls-handshake-timeout",
                c.tls_handshake_timeout.as_secs().to_string(),
            ),
            ("--shutdown-grace", c.shutdown_grace.as_secs().to_string()),
            ("--mute-default", c.mute_default.as_secs().to_string()),
            ("--ban-default", c.ban_default.as_secs().to_string()),
            // The web client.
            ("--web-bind", super::serve::DEFAULT_WEB_BIND.to_owned()),
            (
                "--web-tls-bind",
                super::serve::DEFAULT_WEB_TLS_BIND.to_owned(),
            ),
            // Several nodes.
            ("--node-ttl", c.node_ttl.as_secs().to_string()),
            // Operations.
            (
                "--log-format",
                super::serve::LogFormat::default().word().to_owned(),
            ),
            ("--motd-max", super::serve::DEFAULT_MOTD_MAX.to_string()),
        ];
        for (flag, value) in expected {
            assert_eq!(default_in_help(&["serve"], flag), value, "{flag}");
        }
    }

    /// `natter serve` without flags runs with `Config::default()`'s limits
    /// and keeps history and accounts in SQLite in the data directory.
    #[test]
    fn serve_without_flags_is_the_default_config() {
        let Ok(Args {
            command: Subcommand::Serve(serve),
        }) = Args::from_args(&["natter"], &["serve", "--data-dir", "/d"])
        else {
            panic!("serve did not parse");
        };
        let (got, want) = (serve.config(), Config::default());
        assert_eq!(got.max_clients, want.max_clients);
        assert_eq!(got.register_timeout, want.register_timeout);
        assert_eq!(got.shutdown_grace, want.shutdown_grace);
        assert_eq!(got.mute_default, want.mute_default);
        assert_eq!(got.ban_default, want.ban_default);
        assert_eq!(got.retention, Retention::default());
        assert_eq!(got.history, HistoryMode::Sqlite("/d".into()));
        assert_eq!(got.accounts, AccountsMode::Sqlite("/d".into()));
    }

    /// `--cluster`, `--node-id` and `--node-ttl` reach the configuration;
    /// without them a server is a single node.
    #[test]
    fn cluster_flags_reach_the_config() {
        let parse = |args: &[&str]| match Args::from_args(&["natter"], args) {
            Ok(Args {
                command: Subcommand::Serve(serve),
            }) => serve.config(),
            _ => panic!("serve did not parse: {args:?}"),
        };
        let single = parse(&["serve"]);
        assert_eq!(single.cluster, None);
        assert_eq!(single.node_id, None);
        let node = parse(&[
            "serve",
            "--cluster",
            "redis://127.0.0.1:6379/0",
            "--node-id",
            "n1",
            "--node-ttl",
            "3",
        ]);
        assert_eq!(node.cluster.as_deref(), Some("redis://127.0.0.1:6379/0"));
        assert_eq!(node.node_id.as_deref(), Some("n1"));
        assert_eq!(node.node_ttl, std::time::Duration::from_secs(3));
    }

    /// The example `natter config` prints is a `serve --config` file that
    /// changes nothing: every value in it is the flag's default, and every
    /// `serve` flag but --help and --config is in it.
    #[test]
    fn the_config_example_is_the_serve_defaults() {
        use super::serve::Serve;
        let example = super::config::example::<Serve>("serve").expect("an example");
        let dir = std::env::temp_dir().join(format!("natter-example-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let file = dir.join("natter.toml");
        std::fs::write(&file, &example).expect("write the example");
        let args = vec!["--config".to_owned(), file.to_string_lossy().into_owned()];
        let from_file = Serve::parse(&args);
        let _ = std::fs::remove_dir_all(&dir);
        let from_file = from_file.unwrap_or_else(|e| panic!("{e}"));
        let defaults = Serve::defaults();
        assert_eq!(from_file.settings(), defaults.settings());
        assert_eq!(
            format!("{:?}", from_file.config()),
            format!("{:?}", defaults.config())
        );
        for (flag, _) in help(&["serve"]) {
            let flag = flag.trim_end_matches(',');
            if flag == "--help" || flag == "--config" {
                continue;
            }
            let key = format!("{} = ", flag.trim_start_matches('-'));
            assert!(
                example
                    .lines()
                    .any(|line| line.trim_start_matches("# ").starts_with(&key)),
                "{flag} is not in the example"
            );
        }
    }

    /// `--history` and `--accounts` take their words and refuse others.
    #[test]
    fn modes_parse_into_the_library_enums() {
        let parse = |args: &[&str]| match Args::from_args(&["natter"], args) {
            Ok(Args {
                command: Subcommand::Serve(serve),
            }) => Ok(serve.config()),
            Ok(_) => Err("not serve".to_owned()),
            Err(exit) => Err(exit.output),
        };
        let memory = parse(&["serve", "--history", "memory", "--accounts", "memory"]);
        let memory = memory.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(memory.history, HistoryMode::Memory);
        assert_eq!(memory.accounts, AccountsMode::Memory);
        let off = parse(&["serve", "--history", "off"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(off.history, HistoryMode::Off);
        let bad = parse(&["serve", "--history", "disk"])
            .err()
            .unwrap_or_default();
        assert!(bad.contains("sqlite, memory or off, not disk"), "{bad}");
        let bad = parse(&["serve", "--accounts", "off"])
            .err()
            .unwrap_or_default();
        assert!(bad.contains("sqlite or memory, not off"), "{bad}");
    }

    /// `natter bench --help` states the defaults the flags really have.
    #[test]
    fn bench_help_states_the_real_defaults() {
        let o = crate::bench::Options::default();
        let expected = [
            ("--senders", o.senders.to_string()),
            ("--rate", o.rate.to_string()),
            ("--cycles", o.cycles.to_string()),
            ("--size", o.size.to_string()),
            ("--threads", o.threads.to_string()),
            ("--server-threads", o.server_threads.to_string()),
            ("--connect-window", o.connect_window.to_string()),
        ];
        for (flag, value) in expected {
            assert_eq!(default_in_help(&["bench"], flag), value, "{flag}");
        }
    }

    /// `natter tui --help` states the defaults the flags really have.
    #[cfg(feature = "tui")]
    #[test]
    fn tui_help_states_the_real_defaults() {
        let scrollback = default_in_help(&["tui"], "--scrollback");
        assert_eq!(
            scrollback,
            crate::client::model::DEFAULT_SCROLLBACK.to_string()
        );
        assert_eq!(
            default_in_help(&["tui"], "--server"),
            crate::tui::DEFAULT_SERVER
        );
    }
}
