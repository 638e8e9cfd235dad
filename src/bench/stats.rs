//! What the scenarios measure with: a latency histogram, the server's
//! resident memory and open descriptors from `/proc` (Linux only: elsewhere
//! they read as unknown, and the reports say `?`), and a one-line JSON
//! writer.

use std::fmt::{Display, Write as _};

/// Sub-buckets per power of two: values are kept to within 1/32 (3 %).
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for every `u64`.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// A log-linear histogram of nanoseconds, like HdrHistogram with two
/// significant digits: fixed size (15 KiB), so recording never allocates.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    fn index(value: u64) -> usize {
        if value < SUB as u64 {
            return value as usize;
        }
        let msb = 63 - value.leading_zeros();
        let shift = msb - SUB_BITS;
        let sub = (value >> shift) as usize & (SUB - 1);
        (msb - SUB_BITS + 1) as usize * SUB + sub
    }

    /// The largest value that falls in bucket `index`.
    fn upper(index: usize) -> u64 {
        if index < SUB {
            return index as u64;
        }
        let group = index / SUB;
        let sub = (index % SUB) as u64;
        let shift = group as u32 - 1;
        let end = u128::from(SUB as u64 + sub + 1) << shift;
        u64::try_from(end - 1).unwrap_or(u64::MAX)
    }

    pub(crate) fn record(&mut self, value: u64) {
        if let Some(count) = self.counts.get_mut(Self::index(value)) {
            *count += 1;
        }
        self.total += 1;
        self.max = self.max.max(value);
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// The value at or below which `q` (0..=1) of the recordings fall, to
    /// within the bucket width; 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::upper(index).min(self.max);
            }
        }
        self.max
    }
}

/// A process's resident memory in bytes (`VmRSS` in `/proc/PID/status`).
#[cfg(target_os = "linux")]
pub(crate) fn rss(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// How many file descriptors a process holds (entries of `/proc/PID/fd`).
#[cfg(target_os = "linux")]
pub(crate) fn fds(pid: Option<u32>) -> Option<usize> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/fd"),
        None => "/proc/self/fd".to_owned(),
    };
    Some(std::fs::read_dir(path).ok()?.count())
}

/// The machine's load average over the last minute: how many threads
/// wanted a core. Above 2 on this 2-core machine, something else competed
/// with the benchmark.
#[cfg(target_os = "linux")]
pub(crate) fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Without `/proc` (macOS, the BSDs, Windows) the figures need a different
/// system call on each platform (`task_info`, `sysctl`,
/// `GetProcessMemoryInfo`), which no dependency here offers without
/// `unsafe` (forbidden in this crate): the reports say they are unknown
/// instead, and the soak then judges deliveries only.
#[cfg(not(target_os = "linux"))]
pub(crate) fn rss(_pid: Option<u32>) -> Option<u64> {
    None
}

/// Unknown without `/proc`; see [`rss`].
#[cfg(not(target_os = "linux"))]
pub(crate) fn fds(_pid: Option<u32>) -> Option<usize> {
    None
}

/// Unknown without `/proc`; see [`rss`].
#[cfg(not(target_os = "linux"))]
pub(crate) fn load_average() -> Option<f64> {
    None
}

/// Nanoseconds as milliseconds, for people.
pub(crate) fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

/// Bytes in KiB or MiB, for people.
pub(crate) fn human_bytes(bytes: f64) -> String {
    if bytes.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
    } else {
        format!("{:.2} KiB", bytes / 1024.0)
    }
}

/// `value` as one line of JSON; `{}` if it cannot be written (a map with
/// keys that are not strings, which the reports never hold).
pub(crate) fn json_line(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

/// A float rounded to 3 decimals, as the JSON line gives them (serde_json
/// writes a float that is not finite as `null`).
pub(crate) fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Builds one flat JSON object, in insertion order.
pub(crate) struct Json(String);

impl Json {
    pub(crate) fn new(scenario: &str) -> Self {
        let mut json = Self(String::from("{"));
        json.str("scenario", scenario);
        json
    }

    fn key(&mut self, key: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        let _ = write!(self.0, "\"{key}\":");
    }

    pub(crate) fn num(&mut self, key: &str, value: impl Display) -> &mut Self {
        self.key(key);
        let _ = write!(self.0, "{value}");
        self
    }

    /// A float with up to 3 decimals; `null` if not finite.
    pub(crate) fn float(&mut self, key: &str, value: f64) -> &mut Self {
        self.key(key);
        if value.is_finite() {
            let _ = write!(self.0, "{}", (value * 1000.0).round() / 1000.0);
        } else {
            self.0.push_str("null");
        }
        self
    }

    pub(crate) fn opt(&mut self, key: &str, value: Option<impl Display>) -> &mut Self {
        match value {
            Some(value) => self.num(key, value),
            None => {
                self.key(key);
                self.0.push_str("null");
                self
            }
        }
    }

    pub(crate) fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.num(key, value)
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        self.0.push('"');
        for c in value.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if c.is_control() => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }

    pub(crate) fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.0);
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_three_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [
            (0.5, 50_000_000.0),
            (0.9, 90_000_000.0),
            (0.99, 99_000_000.0),
        ] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.035, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 100_000_000);
        assert_eq!(h.max(), 100_000_000);
    }

    #[test]
    fn every_value_lands_in_a_bucket_that_holds_it() {
        for v in (0..64)
            .map(|s| 1u64 << s)
            .chain([0, 1, 31, 32, 33, 1000, u64::MAX])
        {
            let i = Histogram::index(v);
            assert!(i < BUCKETS);
            assert!(Histogram::upper(i) >= v, "{v}");
        }
    }

    #[test]
    fn json_escapes_strings() {
        let line = Json::new("x")
            .str("s", "a\"b\n")
            .float("f", 1.0 / 3.0)
            .finish();
        assert_eq!(line, r#"{"scenario":"x","s":"a\"b\u000a","f":0.333}"#);
    }
}
