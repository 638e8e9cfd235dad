//! `natter tui`: the terminal client's flags, turned into
//! [`crate::tui::Options`].

use std::path::PathBuf;

use argh::FromArgs;

/// Open the terminal chat client.
#[derive(FromArgs)]
#[argh(subcommand, name = "tui")]
pub struct Tui {
    /// server as host:port (asked for when absent; default 127.0.0.1:5555;
    /// without a port: 5555, or 5556 with TLS)
    #[argh(option)]
    server: Option<String>,
    /// nickname (asked for when absent)
    #[argh(option)]
    nick: Option<String>,
    /// chat lines kept for scrolling back (default 10000)
    #[argh(option, default = "crate::client::model::DEFAULT_SCROLLBACK")]
    scrollback: usize,
    /// connect with TLS, trusting the system's certificate authorities
    #[argh(switch)]
    tls: bool,
    /// PEM file of the certificate authorities to trust instead of the
    /// system's (implies --tls)
    #[argh(option)]
    ca: Option<PathBuf>,
    /// trust exactly the server certificate with this SHA-256 fingerprint,
    /// as `natter serve` prints it, with or without colons (implies --tls)
    #[argh(option)]
    fingerprint: Option<String>,
}

impl Tui {
    /// Starts the terminal client. `--ca` and `--fingerprint` say how to
    /// trust a TLS server, so either one implies `--tls` rather than being
    /// an error.
    pub fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        let tls = self.tls || self.ca.is_some() || self.fingerprint.is_some();
        #[cfg(feature = "tls")]
        let tls = match tls {
            true => Some(crate::client::TlsOptions::from_flags(
                self.ca.as_deref(),
                self.fingerprint.as_deref(),
            )?),
            false => None,
        };
        #[cfg(not(feature = "tls"))]
        if tls {
            return Err("this natter was built without TLS (the `tls` feature)".into());
        }
        crate::tui::run(crate::tui::Options {
            server: self.server,
            nick: self.nick,
            scrollback: self.scrollback,
            #[cfg(feature = "tls")]
            tls,
        })
    }
}
