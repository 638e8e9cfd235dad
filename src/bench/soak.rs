//! `soak`: a mixed load for a bounded time, watching the server's memory
//! and descriptors and checking that nothing counted as delivered is lost.
//!
//! The load, all at once:
//! - **residents** (`--clients`, default 20; every other one over TLS when
//!   the server has a TLS port) stay in the run's room the whole time, say
//!   `--rate` messages a second between them (default 40) and whisper to
//!   each other now and then. They are the well-behaved members every
//!   delivery is checked against.
//! - **movers** (4) cycle until the end: connect (plain and TLS in turn) as
//!   a guest, or register one of a few accounts, or log in to one; join the
//!   room, speak, read a page of `HISTORY`, visit a side room, part, and
//!   quit, or close in the middle of a line as if killed.
//! - **slow readers** (one at a time) join the room, ask for far more
//!   history than they read and never read: the server must drop them
//!   without the others noticing.
//!
//! Every few seconds it samples the server's resident memory and open
//! descriptors (`/proc/self` for the in-process server, `--server-pid`
//! otherwise). The run fails if either grows without bound (see
//! [`unbounded_growth`]), if a message counted as delivered is missing, or
//! if a well-behaved client fails.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::future;
use serde::Serialize;
use smol::{Executor, Task, Timer};

use super::client::{self, Conn, Dial, Ended, Flow, LineSink};
use super::stats;
use super::{BenchError, Options, Pool, Report, Scenario, Target, Ticker};

/// Bytes of a line a soak client keeps: enough for every line it parses.
const KEEP: usize = 512;

/// The longest any one step (an answer the client waits for) may take;
/// generous, because the cores are shared with the residents' traffic.
const STEP_LIMIT: Duration = Duration::from_secs(20);

/// Mover tasks cycling at once.
const MOVERS: usize = 4;

/// Accounts each mover registers, at most: argon2 makes every registration
/// and login cost about 50 ms of a core, so a few only.
const ACCOUNTS_PER_MOVER: usize = 2;

/// `HISTORY` requests a slow reader sends without reading, each for
/// [`SLOW_PAGE`] lines: megabytes, far more than the kernel's socket buffers
/// and the server's outbox hold together.
const SLOW_REQUESTS: usize = 500;

/// `USERS` requests a slow reader sends after its history requests: the
/// hub answers each at once with a line of a few hundred bytes, together
/// about 40 MB. Loopback socket buffers grow to about 10 MB between them and
/// the outbox holds 1 MiB, so the slow reader overflows its outbox within
/// seconds whatever becomes of its history answers.
const SLOW_USERS: usize = 200_000;

/// Lines per `HISTORY` request of a slow reader.
const SLOW_PAGE: u32 = 100;

/// How long after the start the first slow reader comes: by then the room
/// holds a few hundred messages, so its history requests answer in full.
const SLOW_DELAY: Duration = Duration::from_secs(5);

/// How long a slow reader waits to be dropped before it leaves by itself.
const SLOW_LIFETIME: Duration = Duration::from_secs(30);

/// Margin on resident memory: the last third's peak may exceed the first
/// third's by this fraction. An allocator keeps and fragments what it once
/// took, and the in-process figure includes the load generator's own
/// clients, so a few percent of drift is noise; a leak of even a few hundred
/// bytes per message or connection outgrows a quarter within minutes.
pub(crate) const RSS_MARGIN: f64 = 0.25;

/// Margin on open descriptors: the last third's peak may exceed the first
/// third's by this many. Movers and slow readers come and go, so the count
/// moves by about a dozen from one sample to the next; 64 is several times
/// that, while a descriptor leaked per cycle passes it within the first
/// minute.
pub(crate) const FD_MARGIN: usize = 64;

/// The limits of the server `natter bench soak` starts in-process: those of
/// every benchmark ([`super::bench_config`]: rate and per-address limits
/// off), but the outbox a person gets, so slow readers are dropped as they
/// would be in use; history in memory so `HISTORY` answers, and a short
/// retention, so the stored history reaches its steady size within the
/// warm-up instead of growing for the whole run and looking like a leak.
pub fn soak_config(threads: usize) -> crate::config::Config {
    crate::config::Config {
        outbox_bytes: crate::config::Config::default().outbox_bytes,
        history: crate::store::HistoryMode::Memory,
        retention: crate::store::Retention {
            max_age: Some(Duration::from_secs(60)),
            max_per_room: Some(1_000),
        },
        ..super::bench_config(threads)
    }
}

/// One sample of the server's resources.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Sample {
    /// Seconds since the load started.
    pub(crate) t: f64,
    /// Resident memory in bytes.
    pub(crate) rss: Option<u64>,
    /// Open descriptors.
    pub(crate) fds: Option<usize>,
}

/// Counts shared by every task of the run.
#[derive(Default)]
struct Shared {
    /// Set once every resident is in the room: the residents start talking.
    talking: AtomicBool,
    /// Set at the end: everyone stops starting new work.
    stopping: AtomicBool,
    residents_joined: AtomicUsize,
    /// Room messages the residents sent.
    room_sent: AtomicU64,
    /// Room messages from residents received by other residents, in order.
    room_received: AtomicU64,
    /// Whispers the residents sent.
    whispers_sent: AtomicU64,
    whispers_received: AtomicU64,
    /// Messages from residents or whispers that never came: a later one
    /// from the same sender came first (one sender's lines to one reader
    /// keep their order), so these are lost.
    skipped: AtomicU64,
    duplicated: AtomicU64,
    /// Messages from a resident to itself, or from one that does not exist.
    unexpected: AtomicU64,
    /// Room messages movers sent and saw acknowledged.
    mover_sent: AtomicU64,
    /// Mover messages received, counted by every resident.
    mover_received: AtomicU64,
    /// Residents that lost their connection before the end.
    residents_lost: AtomicU64,
    cycles: AtomicU64,
    tls_cycles: AtomicU64,
    registrations: AtomicU64,
    logins: AtomicU64,
    history_pages: AtomicU64,
    killed_mid_line: AtomicU64,
    slow_started: AtomicU64,
    slow_dropped: AtomicU64,
    slow_survived: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, why: String) {
        self.errors.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(why);
        }
    }

    fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn room_expected(&self, residents: usize) -> u64 {
        self.room_sent.load(Ordering::SeqCst) * residents.saturating_sub(1) as u64
    }

    fn mover_expected(&self, residents: usize) -> u64 {
        self.mover_sent.load(Ordering::SeqCst) * residents as u64
    }

    /// Everything counted as sent has arrived (or been found missing).
    fn drained(&self, residents: usize) -> bool {
        let load = |n: &AtomicU64| n.load(Ordering::SeqCst);
        load(&self.room_received) + load(&self.whispers_received) + load(&self.skipped)
            >= self.room_expected(residents) + load(&self.whispers_sent)
            && load(&self.mover_received) >= self.mover_expected(residents)
    }

    fn progress(&self) -> u64 {
        self.room_received.load(Ordering::SeqCst)
            + self.whispers_received.load(Ordering::SeqCst)
            + self.mover_received.load(Ordering::SeqCst)
            + self.skipped.load(Ordering::SeqCst)
    }
}

/// What the JSON line says about a soak.
#[derive(Serialize)]
struct SoakJson<'a> {
    scenario: &'static str,
    server: String,
    in_process: bool,
    residents: usize,
    movers: usize,
    rate: u64,
    secs: f64,
    room_sent: u64,
    room_expected: u64,
    room_received: u64,
    whispers_sent: u64,
    whispers_received: u64,
    mover_sent: u64,
    mover_expected: u64,
    mover_received: u64,
    missing: u64,
    duplicated: u64,
    unexpected: u64,
    residents_lost: u64,
    cycles: u64,
    tls_cycles: u64,
    registrations: u64,
    logins: u64,
    history_pages: u64,
    killed_mid_line: u64,
    slow_readers: u64,
    slow_dropped: u64,
    slow_survived: u64,
    errors: u64,
    rss_start: Option<u64>,
    rss_end: Option<u64>,
    rss_first_third_max: Option<u64>,
    rss_last_third_max: Option<u64>,
    fds_start: Option<usize>,
    fds_end: Option<usize>,
    fds_first_third_max: Option<usize>,
    fds_last_third_max: Option<usize>,
    samples: &'a [Sample],
    ok: bool,
}

pub(super) fn run(options: &Options, target: &Target, pool: &Pool) -> Result<Report, BenchError> {
    let residents = options.client_count();
    if residents < 2 {
        return Err(BenchError::Options(
            "soak needs at least 2 clients (residents)".into(),
        ));
    }
    let seconds = options.seconds()?;
    let rate = match options.rate {
        0 => 40,
        n => n,
    };
    let tag = super::run_tag();
    let room = format!("#{tag}");
    let plain = Dial::plain(target.addr);
    let tls = target.dial_tls();
    let shared = Arc::new(Shared::default());
    let executor = Arc::clone(&pool.executor);
    let _ticker = {
        let shared = Arc::clone(&shared);
        Ticker::start(options.progress, Scenario::Soak, move || {
            format!(
                "room {}/{}  whispers {}/{}  cycles {}  slow dropped {}  errors {}",
                shared.room_received.load(Ordering::Relaxed),
                shared.room_expected(residents),
                shared.whispers_received.load(Ordering::Relaxed),
                shared.whispers_sent.load(Ordering::Relaxed),
                shared.cycles.load(Ordering::Relaxed),
                shared.slow_dropped.load(Ordering::Relaxed),
                shared.errors.load(Ordering::Relaxed),
            )
        })
    };

    let ctx = Arc::new(Context {
        tag: tag.clone(),
        room: room.clone(),
        residents,
        period: Duration::from_secs_f64(residents as f64 / rate as f64),
        plain,
        tls,
        shared: Arc::clone(&shared),
        executor: Arc::clone(&executor),
    });
    let resident_tasks: Vec<Task<()>> = (0..residents)
        .map(|i| executor.spawn(resident(Arc::clone(&ctx), i)))
        .collect();
    let joined = super::wait_until(
        Duration::from_secs(60),
        Duration::from_secs(30),
        || {
            shared.residents_joined.load(Ordering::SeqCst) as u64
                + shared.errors.load(Ordering::SeqCst)
        },
        || {
            shared.residents_joined.load(Ordering::SeqCst) >= residents
                || shared.errors.load(Ordering::SeqCst) > 0
        },
    );
    if !joined || shared.errors.load(Ordering::SeqCst) > 0 {
        shared.stopping.store(true, Ordering::SeqCst);
        return Err(BenchError::Setup(format!(
            "{} of {residents} residents joined {room}: {}",
            shared.residents_joined.load(Ordering::SeqCst),
            shared.first_error().unwrap_or_else(|| "timed out".into())
        )));
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let rss_start = target.rss();
    let fds_start = target.fds();
    shared.talking.store(true, Ordering::SeqCst);
    let mover_tasks: Vec<Task<()>> = (0..MOVERS)
        .map(|w| executor.spawn(mover(Arc::clone(&ctx), w)))
        .collect();
    let slow_task = executor.spawn(slow_readers(Arc::clone(&ctx)));

    // Sample about 30 times a run, every 1 to 5 seconds.
    let every = Duration::from_secs_f64((seconds / 30.0).clamp(1.0, 5.0));
    let mut samples = vec![Sample {
        t: 0.0,
        rss: rss_start,
        fds: fds_start,
    }];
    let mut next = started + every;
    while next <= deadline {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        samples.push(Sample {
            t: started.elapsed().as_secs_f64(),
            rss: target.rss(),
            fds: target.fds(),
        });
        next += every;
        if shared.residents_lost.load(Ordering::SeqCst) > 0 {
            break; // the run has failed; say so now
        }
    }
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    let secs = started.elapsed().as_secs_f64();

    // Stop starting work; let movers finish their cycle and the residents
    // read what is still on its way.
    shared.stopping.store(true, Ordering::SeqCst);
    let movers_done = {
        let tasks = mover_tasks;
        future::block_on(future::or(
            async {
                for task in tasks {
                    task.await;
                }
                true
            },
            async {
                Timer::after(STEP_LIMIT * 8).await;
                false
            },
        ))
    };
    if !movers_done {
        shared.fail("movers did not finish their last cycle in time".into());
    }
    drop(slow_task);
    super::wait_until(
        Duration::from_secs(60),
        Duration::from_secs(10),
        || shared.progress(),
        || shared.drained(residents),
    );
    let rss_end = target.rss();
    let fds_end = target.fds();
    samples.push(Sample {
        t: started.elapsed().as_secs_f64(),
        rss: rss_end,
        fds: fds_end,
    });
    drop(resident_tasks);

    let load = |key: &AtomicU64| key.load(Ordering::SeqCst);
    let room_expected = shared.room_expected(residents);
    let room_received = load(&shared.room_received);
    let whispers_sent = load(&shared.whispers_sent);
    let whispers_received = load(&shared.whispers_received);
    let mover_expected = shared.mover_expected(residents);
    let mover_received = load(&shared.mover_received);
    let missing = room_expected.saturating_sub(room_received)
        + whispers_sent.saturating_sub(whispers_received)
        + mover_expected.saturating_sub(mover_received);
    let duplicated = load(&shared.duplicated);
    let unexpected = load(&shared.unexpected);
    let residents_lost = load(&shared.residents_lost);
    let errors = load(&shared.errors);

    let rss: Vec<Option<u64>> = samples.iter().map(|s| s.rss).collect();
    let fds: Vec<Option<u64>> = samples.iter().map(|s| s.fds.map(|n| n as u64)).collect();
    let rss_growth = thirds(&rss);
    let fds_growth = thirds(&fds);

    let mut warnings = Vec::new();
    if missing > 0 {
        warnings.push(format!(
            "{missing} messages counted as delivered never arrived \
             (room {room_received} of {room_expected}, whispers {whispers_received} of \
             {whispers_sent}, movers' {mover_received} of {mover_expected})"
        ));
    }
    if duplicated + unexpected > 0 {
        warnings.push(format!(
            "{duplicated} duplicated and {unexpected} unexpected deliveries"
        ));
    }
    if residents_lost > 0 {
        warnings.push(format!(
            "{residents_lost} residents lost their connection: {}",
            shared.first_error().unwrap_or_default()
        ));
    } else if errors > 0 {
        warnings.push(format!(
            "{errors} steps failed; the first: {}",
            shared.first_error().unwrap_or_default()
        ));
    }
    match rss_growth {
        Some((first, last)) if unbounded_growth(first, last, 0) => warnings.push(format!(
            "resident memory grew without bound: the last third peaked at {} against {} in the \
             first (more than {:.0} % more)",
            stats::human_bytes(last as f64),
            stats::human_bytes(first as f64),
            RSS_MARGIN * 100.0
        )),
        Some(_) => {}
        None if target.rss().is_some() => {
            warnings.push("too few samples to judge memory growth: run longer".into())
        }
        None => {}
    }
    match fds_growth {
        Some((first, last)) if unbounded_growth(first, last, FD_MARGIN as u64) => {
            warnings.push(format!(
                "open descriptors grew without bound: the last third peaked at {last} against \
                 {first} in the first (more than {FD_MARGIN} more)"
            ))
        }
        _ => {}
    }

    let mut summary = String::new();
    let _ = writeln!(summary, "natter bench soak: {}", target.describe());
    let _ = writeln!(
        summary,
        "  load       {residents} residents at {rate} msg/s, {MOVERS} movers, slow readers, {secs:.1} s"
    );
    let _ = writeln!(
        summary,
        "  delivered  room {room_received}/{room_expected}, whispers {whispers_received}/{whispers_sent}, \
         movers' {mover_received}/{mover_expected}: {missing} missing, {duplicated} duplicated"
    );
    let _ = writeln!(
        summary,
        "  movers     {} cycles ({} TLS), {} registrations, {} logins, {} history pages, {} killed mid-line",
        load(&shared.cycles),
        load(&shared.tls_cycles),
        load(&shared.registrations),
        load(&shared.logins),
        load(&shared.history_pages),
        load(&shared.killed_mid_line),
    );
    let _ = writeln!(
        summary,
        "  slow       {} readers: {} dropped by the server, {} left by themselves",
        load(&shared.slow_started),
        load(&shared.slow_dropped),
        load(&shared.slow_survived),
    );
    let human = |b: Option<u64>| b.map_or("?".into(), |b| stats::human_bytes(b as f64));
    let count = |n: Option<usize>| n.map_or("?".into(), |n| n.to_string());
    let _ = writeln!(
        summary,
        "  memory     {} at the start, {} at the end; peaks {} (first third) and {} (last third)",
        human(rss_start),
        human(rss_end),
        human(rss_growth.map(|g| g.0)),
        human(rss_growth.map(|g| g.1)),
    );
    let _ = writeln!(
        summary,
        "  fds        {} at the start, {} at the end; peaks {} and {}",
        count(fds_start),
        count(fds_end),
        count(fds_growth.map(|g| g.0 as usize)),
        count(fds_growth.map(|g| g.1 as usize)),
    );
    let _ = writeln!(summary, "  samples    {} (t s, RSS, fds):", samples.len());
    for sample in &samples {
        let _ = writeln!(
            summary,
            "    {:>7.1}  {:>10}  {:>5}",
            sample.t,
            human(sample.rss),
            count(sample.fds)
        );
    }

    let json = stats::json_line(&SoakJson {
        scenario: "soak",
        server: target.describe(),
        in_process: target.in_process(),
        residents,
        movers: MOVERS,
        rate,
        secs: stats::round3(secs),
        room_sent: load(&shared.room_sent),
        room_expected,
        room_received,
        whispers_sent,
        whispers_received,
        mover_sent: load(&shared.mover_sent),
        mover_expected,
        mover_received,
        missing,
        duplicated,
        unexpected,
        residents_lost,
        cycles: load(&shared.cycles),
        tls_cycles: load(&shared.tls_cycles),
        registrations: load(&shared.registrations),
        logins: load(&shared.logins),
        history_pages: load(&shared.history_pages),
        killed_mid_line: load(&shared.killed_mid_line),
        slow_readers: load(&shared.slow_started),
        slow_dropped: load(&shared.slow_dropped),
        slow_survived: load(&shared.slow_survived),
        errors,
        rss_start,
        rss_end,
        rss_first_third_max: rss_growth.map(|g| g.0),
        rss_last_third_max: rss_growth.map(|g| g.1),
        fds_start,
        fds_end,
        fds_first_third_max: fds_growth.map(|g| g.0 as usize),
        fds_last_third_max: fds_growth.map(|g| g.1 as usize),
        samples: &samples,
        ok: warnings.is_empty(),
    });
    let failure = (!warnings.is_empty()).then(|| warnings.join("; "));
    Ok(Report {
        scenario: Scenario::Soak,
        summary,
        json,
        warnings,
        failure,
    })
}

/// The peaks of the first and the last third of the samples after the
/// warm-up (the first quarter of the run, while connections, buffers and the
/// stored history reach their working size); `None` with fewer than six
/// samples after it, or when the figure could not be read.
pub(crate) fn thirds(samples: &[Option<u64>]) -> Option<(u64, u64)> {
    let known: Vec<u64> = samples.iter().copied().collect::<Option<_>>()?;
    let rest = known.get(known.len() / 4..)?;
    if rest.len() < 6 {
        return None;
    }
    let third = rest.len() / 3;
    let first = rest.get(..third)?.iter().copied().max()?;
    let last = rest.get(rest.len() - third..)?.iter().copied().max()?;
    Some((first, last))
}

/// True if `last` is past what bounded use allows after `first`: for memory
/// (`slack` 0) more than [`RSS_MARGIN`] above it, for descriptors more than
/// `slack` above it. A leak grows steadily, so its last third's peak pulls
/// away from its first third's; a bounded server's peaks stay together.
pub(crate) fn unbounded_growth(first: u64, last: u64, slack: u64) -> bool {
    if slack == 0 {
        last as f64 > first as f64 * (1.0 + RSS_MARGIN)
    } else {
        last > first.saturating_add(slack)
    }
}

/// What every task of the run shares.
struct Context {
    tag: String,
    room: String,
    residents: usize,
    /// Time between two messages of one resident.
    period: Duration,
    plain: Dial,
    tls: Option<Dial>,
    shared: Arc<Shared>,
    executor: Arc<Executor<'static>>,
}

impl Context {
    fn resident_nick(&self, i: usize) -> String {
        format!("{}r{i}", self.tag)
    }

    /// Plain for even `n`, TLS for odd ones when the server has a TLS port.
    fn dial(&self, n: usize) -> (&Dial, bool) {
        match &self.tls {
            Some(tls) if n % 2 == 1 => (tls, true),
            _ => (&self.plain, false),
        }
    }
}

/// A resident: registers, joins the room, then reads until the end while its
/// sender talks.
async fn resident(ctx: Arc<Context>, i: usize) {
    let nick = ctx.resident_nick(i);
    let shared = &ctx.shared;
    let (dial, _) = ctx.dial(i);
    let mut conn = match client::register(dial, &nick, KEEP).await {
        Ok((conn, _)) => conn,
        Err(why) => return shared.fail(format!("{nick}: {why}")),
    };
    let room = ctx.room.clone();
    if let Err(why) = join(&mut conn, &room, &nick).await {
        return shared.fail(format!("{nick}: {why}"));
    }
    shared.residents_joined.fetch_add(1, Ordering::SeqCst);
    let _sender = ctx
        .executor
        .spawn(resident_sender(Arc::clone(&ctx), i, conn.out.clone()));
    let mut sink = Resident {
        ctx: &ctx,
        me: i,
        next_room: vec![0; ctx.residents],
        next_whisper: vec![0; ctx.residents],
        counts: [0; 6],
    };
    let ended = conn.read(&mut sink).await;
    if !shared.stopping() {
        shared.residents_lost.fetch_add(1, Ordering::SeqCst);
        shared.fail(format!("{nick} was disconnected: {ended:?}"));
    }
}

/// A resident's talking: a room message every period, a whisper to the next
/// resident every fifth.
async fn resident_sender(ctx: Arc<Context>, i: usize, out: client::Outgoing) {
    let shared = &ctx.shared;
    while !shared.talking.load(Ordering::SeqCst) {
        Timer::after(Duration::from_millis(10)).await;
    }
    // Spread the residents over the period.
    Timer::after(ctx.period.mul_f64(i as f64 / ctx.residents as f64)).await;
    let to = ctx.resident_nick((i + 1) % ctx.residents);
    let mut seq = 0u64;
    let mut whisper = 0u64;
    let mut next = Instant::now();
    while !shared.stopping() {
        let line = format!("MSG {} {} r {i} {seq}\r\n", ctx.room, ctx.tag);
        if let Err(err) = client::send(&out, line.as_bytes()).await {
            return shared.fail(format!("resident {i}: send: {err}"));
        }
        shared.room_sent.fetch_add(1, Ordering::SeqCst);
        seq += 1;
        if seq % 5 == 0 {
            let line = format!("WHISPER {to} {} w {i} {whisper}\r\n", ctx.tag);
            if let Err(err) = client::send(&out, line.as_bytes()).await {
                return shared.fail(format!("resident {i}: send: {err}"));
            }
            shared.whispers_sent.fetch_add(1, Ordering::SeqCst);
            whisper += 1;
        }
        next += ctx.period;
        Timer::at(next).await;
    }
}

/// A resident's view of what arrives.
struct Resident<'a> {
    ctx: &'a Context,
    me: usize,
    /// The next sequence number expected from each resident, in the room.
    next_room: Vec<u64>,
    /// The same for whispers.
    next_whisper: Vec<u64>,
    /// Not yet added to [`Shared`]: room, whispers, movers' messages,
    /// skipped, duplicated, unexpected.
    counts: [u64; 6],
}

impl Resident<'_> {
    /// Counts message `seq` from `sender` against `next`.
    fn count(
        next: &mut [u64],
        me: usize,
        sender: usize,
        seq: u64,
        counts: &mut [u64; 6],
        which: usize,
    ) {
        let Some(next) = next.get_mut(sender).filter(|_| sender != me) else {
            counts[5] += 1;
            return;
        };
        if seq < *next {
            counts[4] += 1;
            return;
        }
        counts[3] += seq - *next;
        *next = seq + 1;
        counts[which] += 1;
    }
}

impl LineSink for Resident<'_> {
    fn line(&mut self, line: &[u8]) -> Flow {
        let tag = self.ctx.tag.as_bytes();
        if let Some(rest) = line.strip_prefix(b"MSG ") {
            // <time> <id> <room> <nick> <text>
            let mut fields = rest.splitn(5, |&b| b == b' ');
            let (Some(_), Some(_), Some(room), Some(_), Some(text)) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                return Flow::Continue;
            };
            if room != self.ctx.room.as_bytes() {
                return Flow::Continue;
            }
            match payload(text, tag) {
                Some((b"r", Some((sender, seq)))) => Self::count(
                    &mut self.next_room,
                    self.me,
                    sender,
                    seq,
                    &mut self.counts,
                    0,
                ),
                Some((b"m", _)) => self.counts[2] += 1,
                _ => {}
            }
        } else if let Some(rest) = line.strip_prefix(b"QUIT ") {
            // <time> <nick> <reason>: one resident counts slow readers
            // dropped.
            let mut fields = rest.splitn(3, |&b| b == b' ');
            let (_, nick, reason) = (fields.next(), fields.next(), fields.next());
            let slow = format!("{}s", self.ctx.tag);
            if self.me == 0
                && nick.is_some_and(|n| n.starts_with(slow.as_bytes()))
                && reason.is_some_and(|r| r.starts_with(b"too slow"))
            {
                self.ctx.shared.slow_dropped.fetch_add(1, Ordering::SeqCst);
            }
        } else if let Some(rest) = line.strip_prefix(b"WHISPER ") {
            // <time> <id> <from> <to> <text>
            let text = rest.splitn(5, |&b| b == b' ').nth(4).unwrap_or_default();
            if let Some((b"w", Some((sender, seq)))) = payload(text, tag) {
                Self::count(
                    &mut self.next_whisper,
                    self.me,
                    sender,
                    seq,
                    &mut self.counts,
                    1,
                );
            }
        }
        Flow::Continue
    }

    fn batch_end(&mut self) {
        let shared = &self.ctx.shared;
        for (count, total) in self.counts.iter_mut().zip([
            &shared.room_received,
            &shared.whispers_received,
            &shared.mover_received,
            &shared.skipped,
            &shared.duplicated,
            &shared.unexpected,
        ]) {
            if *count > 0 {
                total.fetch_add(std::mem::take(count), Ordering::SeqCst);
            }
        }
    }
}

/// A resident's number and the sequence number of one of its lines.
type Numbered = (usize, u64);

/// The kind and, for residents' lines, the sender and sequence number of a
/// text of this run: `<tag> <kind> [<sender> <seq>]`.
fn payload<'t>(text: &'t [u8], tag: &[u8]) -> Option<(&'t [u8], Option<Numbered>)> {
    let mut words = text.split(|&b| b == b' ');
    if words.next()? != tag {
        return None;
    }
    let kind = words.next()?;
    let numbers = (|| {
        let sender = std::str::from_utf8(words.next()?).ok()?.parse().ok()?;
        let seq = std::str::from_utf8(words.next()?).ok()?.parse().ok()?;
        Some((sender, seq))
    })();
    Some((kind, numbers))
}

/// Reads lines until `check` decides, within [`STEP_LIMIT`]; `ERR` and
/// `BYE` lines fail the step unless `check` takes them first.
async fn expect(
    conn: &mut Conn,
    what: &str,
    check: impl FnMut(&[u8]) -> Option<Result<(), String>>,
) -> Result<(), String> {
    struct Until<F> {
        check: F,
        outcome: Option<Result<(), String>>,
    }
    impl<F: FnMut(&[u8]) -> Option<Result<(), String>>> LineSink for Until<F> {
        fn line(&mut self, line: &[u8]) -> Flow {
            let outcome = (self.check)(line).or_else(|| {
                (line.starts_with(b"ERR ") || line.starts_with(b"BYE"))
                    .then(|| Err(String::from_utf8_lossy(line).into_owned()))
            });
            match outcome {
                Some(outcome) => {
                    self.outcome = Some(outcome);
                    Flow::Stop
                }
                None => Flow::Continue,
            }
        }
    }
    let mut sink = Until {
        check,
        outcome: None,
    };
    let ended = future::or(
        async {
            conn.read(&mut sink)
                .await
                .map_err(|e| format!("{what}: {e}"))
        },
        async {
            Timer::after(STEP_LIMIT).await;
            Err(format!("{what}: no answer in {} s", STEP_LIMIT.as_secs()))
        },
    )
    .await?;
    match (ended, sink.outcome) {
        (Ended::Stopped, Some(Ok(()))) => Ok(()),
        (Ended::Stopped, Some(Err(line))) => Err(format!("{what}: {line}")),
        _ => Err(format!("{what}: the server closed the connection")),
    }
}

/// True if `line` is `<keyword> <time> <room> <nick>...`.
fn is_event(line: &[u8], keyword: &str, room: &str, nick: &str) -> bool {
    let mut fields = line.splitn(5, |&b| b == b' ');
    fields.next() == Some(keyword.as_bytes())
        && fields.next().is_some()
        && fields.next() == Some(room.as_bytes())
        && fields.next() == Some(nick.as_bytes())
}

async fn send(conn: &Conn, what: &str, line: &str) -> Result<(), String> {
    conn.send(line.as_bytes())
        .await
        .map_err(|e| format!("{what}: send: {e}"))
}

/// Joins `room` and waits for the server to say so.
async fn join(conn: &mut Conn, room: &str, nick: &str) -> Result<(), String> {
    send(conn, "JOIN", &format!("JOIN {room}\r\n")).await?;
    expect(conn, "JOIN", |line| {
        is_event(line, "JOIN", room, nick).then_some(Ok(()))
    })
    .await
}

/// Parts `room` and waits for the server to say so.
async fn part(conn: &mut Conn, room: &str, nick: &str) -> Result<(), String> {
    send(conn, "PART", &format!("PART {room} soak\r\n")).await?;
    expect(conn, "PART", |line| {
        is_event(line, "PART", room, nick).then_some(Ok(()))
    })
    .await
}

/// A mover: cycles until the end of the run.
async fn mover(ctx: Arc<Context>, w: usize) {
    let mut accounts: Vec<String> = Vec::new();
    let mut k = 0usize;
    while !ctx.shared.stopping() {
        let (dial, tls) = ctx.dial(k + w);
        match Box::pin(cycle(&ctx, w, k, dial, &mut accounts)).await {
            Ok(()) => {
                ctx.shared.cycles.fetch_add(1, Ordering::SeqCst);
                if tls {
                    ctx.shared.tls_cycles.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(why) => ctx.shared.fail(format!("mover {w} cycle {k}: {why}")),
        }
        k += 1;
    }
}

/// One mover cycle.
async fn cycle(
    ctx: &Context,
    w: usize,
    k: usize,
    dial: &Dial,
    accounts: &mut Vec<String>,
) -> Result<(), String> {
    let shared = &ctx.shared;
    let password = format!("soak-{}-password", ctx.tag);
    // Every 20th cycle registers an account (a few per mover), every 10th
    // logs in to one; the rest are guests.
    let register_now = k % 20 == 5 && accounts.len() < ACCOUNTS_PER_MOVER;
    let login = (k % 10 == 0)
        .then(|| accounts.get(k / 10 % accounts.len().max(1)).cloned())
        .flatten();
    let (mut conn, nick) = match login {
        Some(nick) => {
            let mut conn = Conn::connect(dial, KEEP)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            send(&conn, "LOGIN", &format!("LOGIN {nick} {password}\r\n")).await?;
            let (mut account, mut users) = (false, false);
            expect(&mut conn, "LOGIN", |line| {
                account |= line.starts_with(b"ACCOUNT ");
                users |= line.starts_with(b"USERS ");
                (account && users).then_some(Ok(()))
            })
            .await?;
            shared.logins.fetch_add(1, Ordering::SeqCst);
            (conn, nick)
        }
        None => {
            let nick = if register_now {
                format!("{}a{w}x{}", ctx.tag, accounts.len())
            } else {
                format!("{}m{w}x{k}", ctx.tag)
            };
            let (mut conn, _) = client::register(dial, &nick, KEEP).await?;
            if register_now {
                send(&conn, "REGISTER", &format!("REGISTER {password}\r\n")).await?;
                expect(&mut conn, "REGISTER", |line| {
                    line.starts_with(b"ACCOUNT ").then_some(Ok(()))
                })
                .await?;
                shared.registrations.fetch_add(1, Ordering::SeqCst);
                accounts.push(nick.clone());
            }
            (conn, nick)
        }
    };
    let room = &ctx.room;
    join(&mut conn, room, &nick).await?;
    // Two messages, then a question the hub answers after them: once the
    // answer is in, every resident has been sent both.
    let said = format!(
        "MSG {room} {} m\r\nMSG {room} {} m\r\nUSERS {room}\r\n",
        ctx.tag, ctx.tag
    );
    send(&conn, "MSG", &said).await?;
    let users = format!("USERS {room} ");
    expect(&mut conn, "USERS", |line| {
        line.starts_with(users.as_bytes()).then_some(Ok(()))
    })
    .await?;
    shared.mover_sent.fetch_add(2, Ordering::SeqCst);
    send(&conn, "HISTORY", &format!("HISTORY {room} 20\r\n")).await?;
    let end = format!("HIST END {room} ");
    let mut history = true;
    expect(&mut conn, "HISTORY", |line| {
        if line.starts_with(b"ERR history-off") {
            history = false;
            return Some(Ok(()));
        }
        line.starts_with(end.as_bytes()).then_some(Ok(()))
    })
    .await?;
    if history {
        shared.history_pages.fetch_add(1, Ordering::SeqCst);
    }
    let side = format!("{room}s{}", k % 4);
    join(&mut conn, &side, &nick).await?;
    send(&conn, "MSG", &format!("MSG {side} {} o\r\n", ctx.tag)).await?;
    part(&mut conn, &side, &nick).await?;
    part(&mut conn, room, &nick).await?;
    if k % 3 == 2 {
        // Killed mid-line: the start of a message, then the socket closes.
        send(&conn, "MSG", &format!("MSG {room} {} p", ctx.tag)).await?;
        drop(conn);
        shared.killed_mid_line.fetch_add(1, Ordering::SeqCst);
        return Ok(());
    }
    send(&conn, "QUIT", "QUIT soak\r\n").await?;
    expect(&mut conn, "QUIT", |line| {
        line.starts_with(b"BYE").then_some(Ok(()))
    })
    .await
}

/// Slow readers, one at a time, until the end of the run.
async fn slow_readers(ctx: Arc<Context>) {
    // First let the room's history fill, so the requests have pages to send.
    Timer::after(SLOW_DELAY).await;
    let mut n = 0usize;
    while !ctx.shared.stopping() {
        slow_reader(&ctx, n).await;
        n += 1;
        Timer::after(Duration::from_secs(5)).await;
    }
}

/// A client that asks for megabytes and reads none of them: registers,
/// joins the room, sends [`SLOW_REQUESTS`] history requests, and waits
/// until the server drops it or [`SLOW_LIFETIME`] passes.
async fn slow_reader(ctx: &Context, n: usize) {
    let shared = &ctx.shared;
    let nick = format!("{}s{n}", ctx.tag);
    let (mut conn, _) = match client::register(&ctx.plain, &nick, KEEP).await {
        Ok(registered) => registered,
        Err(why) => return shared.fail(format!("slow reader {nick}: {why}")),
    };
    if let Err(why) = join(&mut conn, &ctx.room, &nick).await {
        return shared.fail(format!("slow reader {nick}: {why}"));
    }
    shared.slow_started.fetch_add(1, Ordering::SeqCst);
    let history = format!("HISTORY {} {SLOW_PAGE}\r\n", ctx.room);
    let users = format!("USERS {}\r\n", ctx.room);
    let flood = history.repeat(SLOW_REQUESTS) + &users.repeat(SLOW_USERS);
    let dropped = shared.slow_dropped.load(Ordering::SeqCst);
    // The server may drop it before it has sent everything: that is the
    // drop this reader is for, which the residents count below. A server
    // that neither reads nor drops is caught by the same deadline.
    let sending = async {
        let _cut_short = conn.send(flood.as_bytes()).await;
    };
    let deadline = async {
        Timer::after(SLOW_LIFETIME).await;
    };
    future::or(sending, deadline).await;
    // The residents see the server drop it (`QUIT <nick> too slow`).
    let until = Instant::now() + SLOW_LIFETIME;
    while shared.slow_dropped.load(Ordering::SeqCst) == dropped
        && Instant::now() < until
        && !shared.stopping()
    {
        Timer::after(Duration::from_millis(100)).await;
    }
    if shared.slow_dropped.load(Ordering::SeqCst) == dropped {
        shared.slow_survived.fetch_add(1, Ordering::SeqCst);
    }
    drop(conn);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_series_is_bounded_and_a_climbing_one_is_not() {
        let steady: Vec<Option<u64>> = (0..40).map(|i| Some(100 + i % 7)).collect();
        let (first, last) = thirds(&steady).expect("enough samples");
        assert!(!unbounded_growth(first, last, 0));
        let climbing: Vec<Option<u64>> = (0..40).map(|i| Some(100 + 10 * i)).collect();
        let (first, last) = thirds(&climbing).expect("enough samples");
        assert!(unbounded_growth(first, last, 0));
        assert!(unbounded_growth(first, last, 64));
        assert!(!unbounded_growth(1000, 1064, 64));
    }

    #[test]
    fn the_warm_up_is_left_out_and_few_samples_judge_nothing() {
        // A big start (connections opening) is not growth.
        let mut series: Vec<Option<u64>> = vec![Some(10); 10];
        series.extend(std::iter::repeat_n(Some(100), 30));
        assert_eq!(thirds(&series), Some((100, 100)));
        // Six samples leave five after the warm-up: too few; seven leave six.
        assert_eq!(thirds(&[Some(1); 6]), None);
        assert_eq!(thirds(&[Some(1); 7]), Some((1, 1)));
        assert_eq!(
            thirds(&[
                Some(1),
                None,
                Some(1),
                Some(1),
                Some(1),
                Some(1),
                Some(1),
                Some(1),
                Some(1)
            ]),
            None
        );
    }

    #[test]
    fn payloads_of_this_run_are_read_and_others_ignored() {
        assert_eq!(
            payload(b"bxyz r 3 17", b"bxyz"),
            Some((&b"r"[..], Some((3, 17))))
        );
        assert_eq!(payload(b"bxyz m", b"bxyz"), Some((&b"m"[..], None)));
        assert_eq!(payload(b"hello r 3 17", b"bxyz"), None);
        assert!(is_event(
            b"JOIN 12:00 #bxyz bxyzr1",
            "JOIN",
            "#bxyz",
            "bxyzr1"
        ));
        assert!(!is_event(
            b"JOIN 12:00 #bxyz bxyzr10",
            "JOIN",
            "#bxyz",
            "bxyzr1"
        ));
    }
}
