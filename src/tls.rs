//! TLS pieces shared by the server, the client and the load generator:
//! certificate fingerprints, PEM loading and self-signed certificates.

/// The SHA-256 fingerprint of a DER certificate, as upper-case hex pairs
/// joined by colons (`AB:CD:...`), the form `openssl x509 -fingerprint
/// -sha256` prints.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Reads a fingerprint as the user typed it: hex pairs with or without
/// colons, any case. `None` unless it is exactly 32 bytes.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = text.bytes().filter(|b| !matches!(b, b':' | b' ')).collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(hex.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_round_trip() {
        let printed = fingerprint(b"not really a certificate");
        assert_eq!(printed.len(), 32 * 3 - 1);
        let parsed = parse_fingerprint(&printed).expect("parses");
        let digest = ring::digest::digest(&ring::digest::SHA256, b"not really a certificate");
        assert_eq!(&parsed[..], digest.as_ref());
        assert_eq!(
            parse_fingerprint(&printed.replace(':', "").to_lowercase()),
            Some(parsed)
        );
        assert_eq!(parse_fingerprint("AB:CD"), None);
        assert_eq!(parse_fingerprint(&"ZZ".repeat(32)), None);
    }
}
