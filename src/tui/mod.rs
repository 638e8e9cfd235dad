//! The Cursive terminal client (placeholder until the client lands).

/// How the terminal client was asked to start.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `host:port` of the server; asked for in a form when absent.
    pub server: Option<String>,
    /// The nickname to register; asked for in a form when absent.
    pub nick: Option<String>,
    /// How many chat lines to keep for scrolling back.
    pub scrollback: usize,
}

/// Runs the terminal client until the user quits.
pub fn run(_options: Options) -> Result<(), Box<dyn std::error::Error>> {
    Err("the terminal client is not built yet".into())
}
