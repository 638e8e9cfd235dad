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
    Serve(Serve),
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
}

/// Open the terminal chat client.
#[cfg(feature = "tui")]
#[derive(FromArgs)]
#[argh(subcommand, name = "tui")]
struct Tui {
    /// server as host:port (asked for when absent; default 127.0.0.1:5555)
    #[argh(option)]
    server: Option<String>,
    /// nickname (asked for when absent)
    #[argh(option)]
    nick: Option<String>,
    /// chat lines kept for scrolling back (default 10000)
    #[argh(option, default = "10_000")]
    scrollback: usize,
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    let result = match args.command {
        Subcommand::Serve(serve) => run_server(serve),
        #[cfg(feature = "tui")]
        Subcommand::Tui(tui) => natter::tui::run(natter::tui::Options {
            server: tui.server,
            nick: tui.nick,
            scrollback: tui.scrollback,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("natter: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run_server(args: Serve) -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = natter::Config {
        max_clients: args.max_clients,
        max_line: args.max_line,
        outbox: args.outbox,
        register_timeout: Duration::from_secs(args.register_timeout),
        rate: args.rate,
        burst: args.burst,
        threads: args.threads,
        ..natter::Config::default()
    };
    smol::block_on(async {
        let listener = smol::net::TcpListener::bind(&args.bind)
            .await
            .map_err(|err| format!("cannot listen on {}: {err}", args.bind))?;
        let mut signals =
            async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])?;
        let shutdown = async move {
            if let Some(Ok(signal)) = signals.next().await {
                tracing::info!(?signal, "signal received");
            }
        };
        natter::serve(listener, config, shutdown).await?;
        Ok(())
    })
}
