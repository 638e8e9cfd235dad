//! `fanout`: N clients in one chat, S of them sending, every message
//! delivered to the N - 1 others.
//!
//! A message's text is `<tag> <sender> <seq> <nanos>`: the run's tag, the
//! sender's index, its sequence number and the send time in nanoseconds from
//! the run's start (one monotonic clock: senders and receivers share this
//! process). Each receiver checks, per sender, that sequence numbers arrive
//! in order, once each, and records the latency from send to receipt.
//! Every thousandth message is also checked against [`ServerLine::parse`],
//! so the fast path cannot drift from the protocol.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::future;
use smol::Timer;

use super::client::{self, Conn, Ended, Flow, LineSink};
use super::stats::{self, Histogram, Json};
use super::{BenchError, Options, Pool, Report, Scenario, Setup, Target, Ticker};
use crate::protocol::ServerLine;

/// The most messages one sender puts in one write.
const MAX_BATCH: i64 = 64;

/// Messages checked against the full parser: one in this many.
const CHECK_EVERY: u32 = 1000;

/// What the clients share: counters, the send window and the histograms.
struct Shared {
    tag: String,
    epoch: Instant,
    /// Senders are clients `0..senders`.
    senders: usize,
    size: usize,
    /// Receivers of each message: the registered clients but its sender.
    recipients: AtomicI64,
    sent: AtomicU64,
    /// Deliveries in order and for the first time.
    received: AtomicU64,
    /// Deliveries that went back in a sender's sequence: repeated (or
    /// reordered, which one hub never does).
    duplicated: AtomicU64,
    /// Sequence numbers skipped over: messages that never came.
    skipped: AtomicU64,
    /// Own messages or unknown senders with our tag.
    unexpected: AtomicU64,
    /// Lines the fast path and `ServerLine::parse` disagree on.
    malformed: AtomicU64,
    /// Clients the server disconnected during the run.
    disconnected: AtomicU64,
    /// When the last delivery was read, in nanoseconds from `epoch`.
    last_receipt: AtomicU64,
    /// How late the paced senders were at worst, in nanoseconds.
    max_lag: AtomicU64,
    /// Deliveries sent but not yet read (window mode).
    outstanding: AtomicI64,
    /// The most deliveries outstanding (window mode).
    limit: AtomicI64,
    /// Senders waiting for the window to open.
    waiting: AtomicUsize,
    /// One wake-up per sender.
    wakers: Vec<async_channel::Sender<()>>,
    /// Latencies, one histogram per pool thread.
    shards: Vec<Mutex<Histogram>>,
}

impl Shared {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn free_messages(&self) -> i64 {
        let recipients = self.recipients.load(Ordering::SeqCst).max(1);
        (self.limit.load(Ordering::SeqCst) - self.outstanding.load(Ordering::SeqCst)) / recipients
    }
}

pub(super) fn run(options: &Options, target: &Target, pool: &Pool) -> Result<Report, BenchError> {
    let count = options.client_count();
    let senders = options.senders.min(count);
    if count < 2 || senders == 0 {
        return Err(BenchError::Options(
            "fanout needs at least 2 clients and 1 sender".into(),
        ));
    }
    let seconds = options.seconds()?;
    let window = match options.window {
        0 => 64 * senders,
        n => n,
    } as i64;
    let tag = super::run_tag();
    let keep = 512.max(options.size + 256);
    let (wakers, wake_rx): (Vec<_>, Vec<_>) =
        (0..senders).map(|_| async_channel::bounded(1)).unzip();
    let shared = Arc::new(Shared {
        tag: tag.clone(),
        epoch: Instant::now(),
        senders,
        size: options.size,
        recipients: AtomicI64::new(1),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        duplicated: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
        unexpected: AtomicU64::new(0),
        malformed: AtomicU64::new(0),
        disconnected: AtomicU64::new(0),
        last_receipt: AtomicU64::new(0),
        max_lag: AtomicU64::new(0),
        outstanding: AtomicI64::new(0),
        limit: AtomicI64::new(i64::MAX),
        waiting: AtomicUsize::new(0),
        wakers,
        shards: (0..pool.threads)
            .map(|_| Mutex::new(Histogram::new()))
            .collect(),
    });
    let setup = Arc::new(Setup::default());
    let _ticker = {
        let (shared, setup) = (Arc::clone(&shared), Arc::clone(&setup));
        Ticker::start(options.progress, Scenario::Fanout, move || {
            format!(
                "registered {}/{count}  sent {}  received {}",
                setup.registered.load(Ordering::Relaxed),
                shared.sent.load(Ordering::Relaxed),
                shared.received.load(Ordering::Relaxed),
            )
        })
    };

    // Connect and register everyone; senders hand their socket over.
    let (streams, streams_rx) = async_channel::unbounded();
    let clients = {
        let shared = Arc::clone(&shared);
        super::spawn_crowd(
            pool,
            target.dials(),
            count,
            options.connect_window,
            &tag,
            keep,
            &setup,
            move |index, conn| {
                let shared = Arc::clone(&shared);
                let streams = streams.clone();
                async move {
                    if index < shared.senders {
                        let _ = streams.try_send((index, conn.out.clone()));
                    }
                    drop(streams);
                    receive(index, conn, &shared).await;
                }
            },
        )
    };
    super::wait_for_setup(&setup, count);
    let setup_secs = setup.last_done.load(Ordering::SeqCst) as f64 / 1e9;
    let registered = setup.registered.load(Ordering::SeqCst);
    let failed = setup.failed.load(Ordering::SeqCst);
    if registered < 2 {
        return Err(BenchError::Setup(format!(
            "only {registered} of {count} clients registered; first error: {}",
            setup.first_error().unwrap_or_else(|| "none".into())
        )));
    }
    let recipients = registered as i64 - 1;
    shared.recipients.store(recipients, Ordering::SeqCst);
    // The window is counted in deliveries; set it now that we know them.
    shared
        .limit
        .store(window.saturating_mul(recipients), Ordering::SeqCst);
    let mut sockets: Vec<(usize, client::Outgoing)> = Vec::new();
    while let Ok(socket) = streams_rx.try_recv() {
        sockets.push(socket);
    }
    sockets.sort_by_key(|(index, _)| *index);

    // Send for `seconds`.
    let send_start = shared.now();
    let deadline = send_start + (seconds * 1e9) as u64;
    let senders_running: Vec<_> = sockets
        .into_iter()
        .zip(wake_rx)
        .map(|((index, stream), wake)| {
            let shared = Arc::clone(&shared);
            let rate = options.rate;
            pool.executor.spawn(async move {
                let result = if rate == 0 {
                    send_fast(index, &stream, &shared, deadline, wake).await
                } else {
                    let period = shared.senders as f64 * 1e9 / rate as f64;
                    let offset = period * index as f64 / shared.senders as f64;
                    let first = send_start + offset as u64;
                    send_paced(index, &stream, &shared, first, period, deadline).await
                };
                result.is_ok()
            })
        })
        .collect();
    let senders_ok = future::block_on(async {
        let mut ok = 0;
        for sender in senders_running {
            ok += usize::from(sender.await);
        }
        ok
    });
    let send_end = shared.now();

    // Drain: wait for every delivery, or for them to stop coming.
    let sent = shared.sent.load(Ordering::SeqCst);
    let expected = sent * recipients as u64;
    let drained = super::wait_until(
        Duration::from_secs(30),
        Duration::from_secs(2),
        || shared.received.load(Ordering::SeqCst),
        || shared.received.load(Ordering::SeqCst) >= expected,
    );
    let server_rss = target.rss();
    drop(clients);

    let mut latency = Histogram::new();
    for shard in &shared.shards {
        if let Ok(shard) = shard.lock() {
            latency.merge(&shard);
        }
    }
    let received = shared.received.load(Ordering::SeqCst);
    let duplicated = shared.duplicated.load(Ordering::SeqCst);
    let unexpected = shared.unexpected.load(Ordering::SeqCst);
    let malformed = shared.malformed.load(Ordering::SeqCst);
    let disconnected = shared.disconnected.load(Ordering::SeqCst);
    let lost = expected.saturating_sub(received);
    let send_secs = (send_end - send_start) as f64 / 1e9;
    let receive_secs = shared
        .last_receipt
        .load(Ordering::SeqCst)
        .saturating_sub(send_start) as f64
        / 1e9;
    let deliveries_per_sec = received as f64 / receive_secs;
    let q = |q: f64| stats::ms(latency.quantile(q));
    let max_lag = stats::ms(shared.max_lag.load(Ordering::SeqCst));

    let mut warnings = Vec::new();
    if failed > 0 {
        warnings.push(format!(
            "{failed} clients could not register; first error: {}",
            setup.first_error().unwrap_or_default()
        ));
    }
    if lost > 0 || !drained {
        warnings.push(format!(
            "{lost} deliveries lost ({} never arrived in sequence)",
            shared.skipped.load(Ordering::SeqCst)
        ));
    }
    if duplicated + unexpected + malformed > 0 {
        warnings.push(format!(
            "{duplicated} duplicated, {unexpected} unexpected, {malformed} malformed deliveries"
        ));
    }
    if disconnected > 0 {
        warnings.push(format!("the server disconnected {disconnected} clients"));
    }
    if senders_ok < senders {
        warnings.push(format!("{} senders failed to write", senders - senders_ok));
    }
    let rate_text = match options.rate {
        0 => format!("as fast as a window of {window} messages allows"),
        r => format!("{r} msg/s in total"),
    };
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "natter bench fanout: {count} clients, {senders} sending {rate_text}, for {:.1} s; {}",
        seconds,
        target.describe()
    );
    let _ = writeln!(
        summary,
        "  setup      {registered} registered, {failed} failed in {setup_secs:.3} s ({:.0}/s)",
        registered as f64 / setup_secs
    );
    let _ = writeln!(
        summary,
        "  sent       {sent} messages in {send_secs:.2} s ({:.0} msg/s)",
        sent as f64 / send_secs
    );
    let _ = writeln!(
        summary,
        "  delivered  {received} of {expected} expected: {lost} lost, {duplicated} duplicated"
    );
    let _ = writeln!(summary, "  throughput {deliveries_per_sec:.0} deliveries/s");
    let _ = writeln!(
        summary,
        "  latency    p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        stats::ms(latency.max())
    );
    if let Some(rss) = server_rss {
        let _ = writeln!(
            summary,
            "  memory     {} resident{}",
            stats::human_bytes(rss as f64),
            if target.in_process() {
                " (server and clients: one process)"
            } else {
                " (server)"
            }
        );
    }
    let json = Json::new("fanout")
        .str("server", &target.describe())
        .bool("in_process", target.in_process())
        .num("clients", count)
        .num("registered", registered)
        .num("failed", failed)
        .num("senders", senders)
        .num("rate", options.rate)
        .num("window", window)
        .num("size", options.size)
        .float("seconds", seconds)
        .num("threads", pool.threads)
        .float("setup_secs", setup_secs)
        .num("sent", sent)
        .float("send_secs", send_secs)
        .num("expected", expected)
        .num("received", received)
        .num("lost", lost)
        .num("duplicated", duplicated)
        .num("unexpected", unexpected)
        .num("malformed", malformed)
        .num("disconnected", disconnected)
        .float("deliveries_per_sec", deliveries_per_sec)
        .num("latency_samples", latency.count())
        .float("p50_ms", q(0.5))
        .float("p90_ms", q(0.9))
        .float("p99_ms", q(0.99))
        .float("p999_ms", q(0.999))
        .float("max_ms", stats::ms(latency.max()))
        .float("max_send_lag_ms", max_lag)
        .opt("server_rss_bytes", server_rss)
        .bool("ok", warnings.is_empty())
        .finish();
    Ok(Report {
        scenario: Scenario::Fanout,
        summary,
        json,
        warnings,
        failure: None,
    })
}

/// Writes one message line: `MSG <tag> <sender> <seq> <nanos>[ xxx...]`.
fn message(out: &mut Vec<u8>, shared: &Shared, sender: usize, seq: u64, now: u64) {
    let start = out.len();
    let _ = write!(out, "MSG {} {sender} {seq} {now}", shared.tag);
    let text = out.len() - start - 4;
    if shared.size > text {
        out.push(b' ');
        out.resize(out.len() + shared.size - text - 1, b'x');
    }
    out.extend_from_slice(b"\r\n");
}

/// Sends as fast as the window allows until `deadline`.
async fn send_fast(
    index: usize,
    stream: &client::Outgoing,
    shared: &Shared,
    deadline: u64,
    wake: async_channel::Receiver<()>,
) -> std::io::Result<()> {
    let recipients = shared.recipients.load(Ordering::SeqCst);
    let mut seq = 0;
    let mut buf = Vec::with_capacity(MAX_BATCH as usize * (64 + shared.size));
    loop {
        let now = shared.now();
        if now >= deadline {
            return Ok(());
        }
        let free = shared.free_messages();
        if free <= 0 {
            // Announce the wait, then look again: a receiver that freed
            // the window after our look sees us waiting and wakes us.
            shared.waiting.fetch_add(1, Ordering::SeqCst);
            if shared.free_messages() <= 0 {
                future::or(
                    async {
                        let _ = wake.recv().await;
                    },
                    async {
                        Timer::after(Duration::from_millis(5)).await;
                    },
                )
                .await;
            }
            shared.waiting.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let batch = free.min(MAX_BATCH);
        shared
            .outstanding
            .fetch_add(batch * recipients, Ordering::SeqCst);
        buf.clear();
        for _ in 0..batch {
            message(&mut buf, shared, index, seq, now);
            seq += 1;
        }
        client::send(stream, &buf).await?;
        shared.sent.fetch_add(batch as u64, Ordering::SeqCst);
    }
}

/// Sends one message every `period` nanoseconds from `first` until
/// `deadline`; a late sender catches up in one write and the lag is noted.
async fn send_paced(
    index: usize,
    stream: &client::Outgoing,
    shared: &Shared,
    first: u64,
    period: f64,
    deadline: u64,
) -> std::io::Result<()> {
    let mut seq = 0u64;
    let due = |seq: u64| first + (seq as f64 * period) as u64;
    let mut buf = Vec::with_capacity(MAX_BATCH as usize * (64 + shared.size));
    while due(seq) < deadline {
        let now = shared.now();
        if due(seq) > now {
            Timer::after(Duration::from_nanos(due(seq) - now)).await;
            continue;
        }
        shared.max_lag.fetch_max(now - due(seq), Ordering::SeqCst);
        buf.clear();
        let mut batch = 0;
        while due(seq) <= now && due(seq) < deadline && batch < MAX_BATCH {
            message(&mut buf, shared, index, seq, now);
            seq += 1;
            batch += 1;
        }
        client::send(stream, &buf).await?;
        shared.sent.fetch_add(batch as u64, Ordering::SeqCst);
    }
    Ok(())
}

/// Reads a client's lines until the run ends (the task is dropped) or the
/// server closes.
async fn receive(index: usize, mut conn: Conn, shared: &Shared) {
    let mut sink = Receiver {
        shared,
        me: index,
        next: vec![0; shared.senders],
        now: 0,
        got: 0,
        duplicated: 0,
        skipped: 0,
        unexpected: 0,
        malformed: 0,
        latencies: Vec::new(),
        until_check: 0,
    };
    match conn.read(&mut sink).await {
        Ok(Ended::Stopped) => {}
        Ok(Ended::Eof) | Err(_) => {
            shared.disconnected.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// One client's view of the deliveries; flushed to [`Shared`] per read.
struct Receiver<'a> {
    shared: &'a Shared,
    me: usize,
    /// The next sequence number expected from each sender.
    next: Vec<u64>,
    /// When this read's bytes arrived.
    now: u64,
    got: u64,
    duplicated: u64,
    skipped: u64,
    unexpected: u64,
    malformed: u64,
    latencies: Vec<u64>,
    until_check: u32,
}

impl LineSink for Receiver<'_> {
    fn batch_start(&mut self) {
        self.now = self.shared.now();
    }

    fn line(&mut self, line: &[u8]) -> Flow {
        if !line.starts_with(b"MSG ") {
            return Flow::Continue;
        }
        let Some((nick, text)) = msg_fields(line) else {
            self.malformed += 1;
            return Flow::Continue;
        };
        let Some((sender, seq, sent)) = payload(text, self.shared.tag.as_bytes()) else {
            return Flow::Continue; // someone else's message
        };
        if self.until_check == 0 {
            self.until_check = CHECK_EVERY;
            if !agrees_with_parser(line, nick, text) {
                self.malformed += 1;
            }
        }
        self.until_check -= 1;
        let Some(next) = self
            .next
            .get_mut(sender as usize)
            .filter(|_| sender as usize != self.me)
        else {
            self.unexpected += 1;
            return Flow::Continue;
        };
        if seq < *next {
            self.duplicated += 1;
            return Flow::Continue;
        }
        self.skipped += seq - *next;
        *next = seq + 1;
        self.got += 1;
        self.latencies.push(self.now.saturating_sub(sent));
        Flow::Continue
    }

    fn batch_end(&mut self) {
        let shared = self.shared;
        if self.got > 0 {
            shared.received.fetch_add(self.got, Ordering::SeqCst);
            shared.last_receipt.fetch_max(self.now, Ordering::SeqCst);
            let recipients = shared.recipients.load(Ordering::SeqCst);
            let outstanding = shared
                .outstanding
                .fetch_sub(self.got as i64, Ordering::SeqCst)
                - self.got as i64;
            if shared.waiting.load(Ordering::SeqCst) > 0
                && outstanding <= shared.limit.load(Ordering::SeqCst) / 2 + recipients
            {
                for waker in &shared.wakers {
                    let _ = waker.try_send(());
                }
            }
            self.got = 0;
            let shard = super::worker_index() % shared.shards.len().max(1);
            if let Some(Ok(mut histogram)) = shared.shards.get(shard).map(Mutex::lock) {
                for &latency in &self.latencies {
                    histogram.record(latency);
                }
            }
            self.latencies.clear();
        }
        for (count, total) in [
            (&mut self.duplicated, &shared.duplicated),
            (&mut self.skipped, &shared.skipped),
            (&mut self.unexpected, &shared.unexpected),
            (&mut self.malformed, &shared.malformed),
        ] {
            if *count > 0 {
                total.fetch_add(std::mem::take(count), Ordering::SeqCst);
            }
        }
    }
}

/// The nickname and text of `MSG <time> <id> <room> <nick> <text>`.
fn msg_fields(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut fields = line.splitn(6, |&b| b == b' ');
    let _keyword = fields.next()?;
    let _time = fields.next()?;
    let _id = fields.next()?;
    let _room = fields.next()?;
    Some((fields.next()?, fields.next()?))
}

/// Sender, sequence number and send time from a message text of this run.
fn payload(text: &[u8], tag: &[u8]) -> Option<(u64, u64, u64)> {
    let mut words = text.split(|&b| b == b' ');
    if words.next()? != tag {
        return None;
    }
    Some((
        number(words.next()?)?,
        number(words.next()?)?,
        number(words.next()?)?,
    ))
}

fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// True if the protocol's own parser reads the same nickname and text.
fn agrees_with_parser(line: &[u8], nick: &[u8], text: &[u8]) -> bool {
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    match ServerLine::parse(line) {
        Ok(ServerLine::Msg {
            nick: n, text: t, ..
        }) => n.as_bytes() == nick && t.as_bytes() == text,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_reads_what_the_parser_reads() {
        let line = b"MSG 2026-11-26T09:30:00Z 7 #lobby bqxz3 bqxz 3 17 123456789 xxx";
        let (nick, text) = msg_fields(line).unwrap();
        assert_eq!(nick, b"bqxz3");
        assert_eq!(payload(text, b"bqxz"), Some((3, 17, 123_456_789)));
        assert_eq!(payload(text, b"other"), None);
        assert!(agrees_with_parser(line, nick, text));
        assert_eq!(number(b"12a"), None);
        assert_eq!(number(b"99999999999999999999"), None);
    }
}
