//! The server's metrics for Prometheus: one process-wide set of counters
//! and gauges, and [`render`], which writes them in the Prometheus text
//! format for whichever listener serves `GET /metrics` (`--metrics-bind`,
//! see `server::metrics`, or any other HTTP listener).
//!
//! The IO side counts: the accept loops, the sessions, the outboxes, the
//! hub task and the store thread call the small functions here; the hub
//! itself stays pure and only exposes plain numbers (its room and account
//! counts) that the hub task copies in. Nothing here holds a nickname, an
//! address or message text: every label is a fixed word.
//!
//! The counters are process-wide because a process runs one server; several
//! servers in one process (tests) add up.

use std::sync::LazyLock;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of what [`render`] writes (text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Which listener a connection came in on.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Transport {
    plain,
    tls,
    /// WebSocket sessions on the web listener (`--web-bind`).
    web,
    /// WebSocket sessions on the HTTPS web listener (`--web-tls-bind`).
    web_tls,
}

impl Transport {
    /// The listener a connection came in on: TLS or not, web or not.
    fn of(tls: bool, web: bool) -> Self {
        match (tls, web) {
            (false, false) => Self::plain,
            (true, false) => Self::tls,
            (false, true) => Self::web,
            (true, true) => Self::web_tls,
        }
    }

    /// Its place in [`Metrics::live`] and [`Metrics::accepted`].
    fn index(self) -> usize {
        self as usize
    }
}

/// The `transport` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByTransport {
    transport: Transport,
}

/// Why a connection was turned away before it had a session.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-clients` connections were already served.
    ServerFull,
    /// The process had no file descriptor left.
    OutOfDescriptors,
    /// The address is banned.
    Banned,
    /// The address already held `--max-per-address` connections.
    TooManyConnections,
    /// The address opened connections faster than `--connect-rate`.
    ConnectThrottled,
}

impl Refusal {
    /// Every refusal, in the order of `Metrics::refused`.
    const ALL: [Refusal; 5] = [
        Refusal::ServerFull,
        Refusal::OutOfDescriptors,
        Refusal::Banned,
        Refusal::TooManyConnections,
        Refusal::ConnectThrottled,
    ];

    /// The `reason` label it is counted under.
    fn label(self) -> Reason {
        match self {
            Refusal::ServerFull => Reason::server_full,
            Refusal::OutOfDescriptors => Reason::out_of_descriptors,
            Refusal::Banned => Reason::banned,
            Refusal::TooManyConnections => Reason::too_many_connections,
            Refusal::ConnectThrottled => Reason::connect_throttled,
        }
    }
}

/// The `reason` label's values, one per [`Refusal`].
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Reason {
    server_full,
    out_of_descriptors,
    banned,
    too_many_connections,
    connect_throttled,
}

/// The `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByReason {
    reason: Reason,
}

/// Every metric, registered once; the per-label series are fetched once
/// too, so counting never takes the families' locks.
struct Metrics {
    registry: Registry,
    /// Open connections, by [`Transport::index`].
    live: [Gauge; 4],
    /// Accepted connections, by [`Transport::index`].
    accepted: [Counter; 4],
    /// Refused connections, by [`Refusal`] in the order of `Refusal::ALL`.
    refused: [Counter; 5],
    accounts: Gauge,
    rooms: Gauge,
    messages: Counter,
    deliveries: Counter,
    outbox_overflows: Counter,
    rate_limited: Counter,
    history_queue: Gauge,
    history_write: Histogram,
    password_checks: Counter,
    password_failures: Counter,
    resident_memory: Gauge,
    open_fds: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let live = Family::<ByTransport, Gauge>::default();
        let accepted = Family::<ByTransport, Counter>::default();
        let refused = Family::<ByReason, Counter>::default();
        let transports = [
            Transport::plain,
            Transport::tls,
            Transport::web,
            Transport::web_tls,
        ]
        .map(|transport| ByTransport { transport });
        let reason = |reason| ByReason { reason };
        let mut metrics = Self {
            registry: Registry::default(),
            // Every series exists from the start, at zero.
            live: transports.clone().map(|t| live.get_or_create_owned(&t)),
            accepted: transports.map(|t| accepted.get_or_create_owned(&t)),
            refused: Refusal::ALL.map(|why| refused.get_or_create_owned(&reason(why.label()))),
            accounts: Gauge::default(),
            rooms: Gauge::default(),
            messages: Counter::default(),
            deliveries: Counter::default(),
            outbox_overflows: Counter::default(),
            rate_limited: Counter::default(),
            history_queue: Gauge::default(),
            // From half a millisecond to about two seconds: a healthy disk
            // writes a batch in the first buckets, a failing one in the last.
            history_write: Histogram::new(exponential_buckets(0.0005, 2.0, 13)),
            password_checks: Counter::default(),
            password_failures: Counter::default(),
            resident_memory: Gauge::default(),
            open_fds: Gauge::default(),
        };
        let mut registry = Registry::default();
        let m = &metrics;
        let natter = registry.sub_registry_with_prefix("natter");
        natter.register("connections", "Connections open now, by listener", live);
        natter.register(
            "connections_accepted",
            "Connections accepted, by listener",
            accepted,
        );
        natter.register(
            "connections_refused",
            "Connections turned away before a session, by reason",
            refused,
        );
        natter.register(
            "registered_accounts",
            "Registered nicknames",
            m.accounts.clone(),
        );
        natter.register(
            "rooms",
            "Rooms that exist now (the lobby included)",
            m.rooms.clone(),
        );
        natter.register(
            "messages",
            "Chat messages received (to rooms and whispers)",
            m.messages.clone(),
        );
        natter.register(
            "deliveries",
            "Lines queued for clients, once per recipient",
            m.deliveries.clone(),
        );
        natter.register(
            "outbox_overflows",
            "Clients disconnected because they stopped reading (outbox full)",
            m.outbox_overflows.clone(),
        );
        natter.register(
            "rate_limited",
            "Lines held back by the per-client rate limit",
            m.rate_limited.clone(),
        );
        natter.register(
            "history_queue",
            "Messages waiting for the history store's thread",
            m.history_queue.clone(),
        );
        natter.register_with_unit(
            "history_write",
            "Time the history store took to write one batch",
            Unit::Seconds,
            m.history_write.clone(),
        );
        natter.register(
            "password_checks",
            "Passwords checked (LOGIN)",
            m.password_checks.clone(),
        );
        natter.register(
            "password_failures",
            "Passwords checked and found wrong",
            m.password_failures.clone(),
        );
        // The process metrics go by the names every exporter uses.
        let process = registry.sub_registry_with_prefix("process");
        process.register_with_unit(
            "resident_memory",
            "Resident memory of the process (Linux)",
            Unit::Bytes,
            m.resident_memory.clone(),
        );
        process.register(
            "open_fds",
            "Open file descriptors of the process (Linux)",
            m.open_fds.clone(),
        );
        metrics.registry = registry;
        metrics
    }
}

/// The metrics in the Prometheus text format ([`CONTENT_TYPE`]), with the
/// process's memory and descriptors read now.
pub fn render() -> String {
    let m = &*METRICS;
    #[cfg(target_os = "linux")]
    {
        if let Some(bytes) = resident_bytes() {
            m.resident_memory.set(bytes);
        }
        if let Some(fds) = open_fds() {
            m.open_fds.set(fds);
        }
    }
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &m.registry);
    text
}

/// Counts a connection accepted on a TLS listener (`tls`) or a plain one,
/// a web listener (`web`) or a line-protocol one; it counts as open until
/// the returned guard is dropped.
pub fn connected(tls: bool, web: bool) -> Open {
    let m = &*METRICS;
    let index = Transport::of(tls, web).index();
    if let Some(accepted) = m.accepted.get(index) {
        accepted.inc();
    }
    let live = m.live.get(index).cloned().unwrap_or_default();
    live.inc();
    Open(live)
}

/// An open connection in the `connections` gauge, until dropped.
#[must_use = "the connection counts as open only while this is held"]
pub struct Open(Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts a connection turned away before it had a session.
pub fn refused(why: Refusal) {
    METRICS.refused[why as usize].inc();
}

/// Counts a chat message a client sent (to a room or a whisper).
pub fn message() {
    METRICS.messages.inc();
}

/// Counts a line queued for one client.
pub fn delivered() {
    METRICS.deliveries.inc();
}

/// Counts a client whose full outbox made the server drop it.
pub fn outbox_overflow() {
    METRICS.outbox_overflows.inc();
}

/// Counts a line the rate limit held back.
pub fn rate_limited() {
    METRICS.rate_limited.inc();
}

/// A message entered (`1`) or left (`-1`) the history store's queue.
pub fn history_queue(change: i64) {
    METRICS.history_queue.inc_by(change);
}

/// Records how long the history store took to write one batch.
pub fn history_written(took: std::time::Duration) {
    METRICS.history_write.observe(took.as_secs_f64());
}

/// Counts a password check, and a failure when `ok` is false.
pub fn password_checked(ok: bool) {
    METRICS.password_checks.inc();
    if !ok {
        METRICS.password_failures.inc();
    }
}

/// The hub's sizes, as the hub task reads them: registered accounts and
/// rooms.
pub fn hub_sizes(accounts: usize, rooms: usize) {
    let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    METRICS.accounts.set(gauge(accounts));
    METRICS.rooms.set(gauge(rooms));
}

/// The process's resident memory in bytes, from `/proc/self/status`.
#[cfg(target_os = "linux")]
fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The process's open descriptors, from `/proc/self/fd` (less the one
/// reading it).
#[cfg(target_os = "linux")]
fn open_fds() -> Option<i64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?.count();
    i64::try_from(entries.saturating_sub(1)).ok()
}

#[cfg(test)]
mod tests {
    /// The text names every metric once, in the Prometheus text format.
    #[test]
    fn render_lists_every_metric() {
        super::message();
        let open = super::connected(true, false);
        super::history_written(std::time::Duration::from_millis(3));
        let text = super::render();
        drop(open);
        for name in [
            "natter_connections{transport=\"tls\"}",
            "natter_connections_accepted_total{transport=\"tls\"}",
            "natter_connections_refused_total{reason=\"server_full\"}",
            "natter_registered_accounts",
            "natter_rooms",
            "natter_messages_total",
            "natter_deliveries_total",
            "natter_outbox_overflows_total",
            "natter_rate_limited_total",
            "natter_history_queue",
            "natter_connections{transport=\"web\"}",
            "natter_connections{transport=\"web_tls\"}",
            "natter_history_write_seconds_bucket{le=\"0.004\"}",
            "natter_history_write_seconds_count",
            "natter_password_checks_total",
            "natter_password_failures_total",
        ] {
            assert!(text.contains(name), "no {name} in\n{text}");
        }
        #[cfg(target_os = "linux")]
        for name in ["process_resident_memory_bytes", "process_open_fds"] {
            assert!(text.contains(name), "no {name} in\n{text}");
        }
        assert!(!text.contains("# EOF"), "OpenMetrics, not Prometheus text");
    }
}
