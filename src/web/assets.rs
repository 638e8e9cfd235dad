//! The web client's files, embedded in the binary: serving the page needs no
//! files on disk and no build step.
//!
//! The list below is the one place that names them; a unit test checks that
//! it is exactly `web/FILES`, so a file added to the front end without a line
//! here (or the other way round) fails `cargo test`.

/// One embedded file and how to serve it.
#[derive(Debug)]
pub struct Asset {
    /// The URL path it is served at.
    pub path: &'static str,
    /// Its name in `web/`.
    pub file: &'static str,
    /// The `Content-Type` it is sent with.
    pub mime: &'static str,
    /// Whether it is part of the page shell (the page, the manifest, the
    /// service worker): sent with `Cache-Control: no-cache`, so a new
    /// server's page is picked up at the next visit.
    pub shell: bool,
    /// Its bytes.
    pub body: &'static [u8],
}

/// Builds [`ASSETS`] from `path => file, MIME type, shell?` lines.
macro_rules! assets {
    ($($path:literal => $file:literal, $mime:literal, $shell:literal;)*) => {
        /// Every embedded file, in the order of `web/FILES`.
        pub static ASSETS: &[Asset] = &[$(Asset {
            path: $path,
            file: $file,
            mime: $mime,
            shell: $shell,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $file)),
        },)*];
    };
}

assets! {
    "/" => "index.html", "text/html; charset=utf-8", true;
    "/app.js" => "app.js", "text/javascript; charset=utf-8", false;
    "/protocol.js" => "protocol.js", "text/javascript; charset=utf-8", false;
    "/state.js" => "state.js", "text/javascript; charset=utf-8", false;
    "/connection.js" => "connection.js", "text/javascript; charset=utf-8", false;
    "/view-messages.js" => "view-messages.js", "text/javascript; charset=utf-8", false;
    "/view-rooms.js" => "view-rooms.js", "text/javascript; charset=utf-8", false;
    "/view-users.js" => "view-users.js", "text/javascript; charset=utf-8", false;
    "/view-login.js" => "view-login.js", "text/javascript; charset=utf-8", false;
    "/view-composer.js" => "view-composer.js", "text/javascript; charset=utf-8", false;
    "/notify.js" => "notify.js", "text/javascript; charset=utf-8", false;
    "/style.css" => "style.css", "text/css; charset=utf-8", false;
    "/manifest.webmanifest" => "manifest.webmanifest", "application/manifest+json", true;
    "/sw.js" => "sw.js", "text/javascript; charset=utf-8", true;
    "/icon.svg" => "icon.svg", "image/svg+xml", false;
    "/icon-192.png" => "icon-192.png", "image/png", false;
    "/icon-512.png" => "icon-512.png", "image/png", false;
}

/// The asset served at `path` (without its query), if any. `/index.html`
/// is the page too.
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|asset| asset.path == path)
}

/// What the first visit loads, in bytes: every asset.
pub fn total_bytes() -> usize {
    ASSETS.iter().map(|asset| asset.body.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_exactly_web_files() {
        let listed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/web/FILES"))
            .expect("web/FILES");
        let mut listed: Vec<&str> = listed
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect();
        let mut embedded: Vec<&str> = ASSETS.iter().map(|asset| asset.file).collect();
        listed.sort_unstable();
        embedded.sort_unstable();
        assert_eq!(embedded, listed, "src/web/assets.rs must list web/FILES");
    }

    #[test]
    fn every_asset_has_a_path_of_its_own_and_a_type() {
        for asset in ASSETS {
            assert!(asset.path.starts_with('/'), "{}", asset.path);
            assert!(!asset.mime.is_empty());
            let same = ASSETS.iter().filter(|other| other.path == asset.path);
            assert_eq!(same.count(), 1, "{}", asset.path);
        }
        assert_eq!(find("/index.html").map(|a| a.file), Some("index.html"));
        assert!(find("/nope").is_none());
    }
}
