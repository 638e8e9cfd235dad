//! `churn`: clients connect, register, say one line and `QUIT`, over and
//! over, a few at once. Reports cycles per second and whether the server's
//! resident memory and open descriptors come back to where they started.
//!
//! The first tenth of the cycles (at most 1,000) warm the server up: an
//! allocator keeps what it once took, so memory is compared with what it was
//! after the warm-up, and descriptors with what they were before anything.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::future;
use smol::Timer;

use super::client::{self, Ended, Flow, LineSink};
use super::stats::{self, Json};
use super::{BenchError, Options, Pool, Report, Scenario, Target, Ticker};

/// The most a single cycle may take.
const CYCLE_LIMIT: Duration = Duration::from_secs(10);

/// Counts of one churn phase.
#[derive(Default)]
struct Phase {
    next: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

pub(super) fn run(options: &Options, target: &Target, pool: &Pool) -> Result<Report, BenchError> {
    let workers = options.client_count();
    let cycles = options.cycles;
    if workers == 0 || cycles == 0 {
        return Err(BenchError::Options(
            "churn needs at least 1 client and 1 cycle".into(),
        ));
    }
    let limit = Duration::from_secs_f64(options.seconds()?);
    let deadline = Instant::now() + limit;
    let tag = super::run_tag();
    let rss_start = target.rss();
    let fds_start = target.fds();

    let warmup = Arc::new(Phase::default());
    let main = Arc::new(Phase::default());
    let _ticker = {
        let (warmup, main) = (Arc::clone(&warmup), Arc::clone(&main));
        Ticker::start(options.progress, Scenario::Churn, move || {
            format!(
                "warm-up {}  cycles {}/{cycles}  failed {}",
                warmup.done.load(Ordering::Relaxed),
                main.done.load(Ordering::Relaxed),
                warmup.failed.load(Ordering::Relaxed) + main.failed.load(Ordering::Relaxed)
            )
        })
    };
    let warmup_cycles = (cycles / 10).min(1_000);
    churn(
        pool,
        target.addr,
        workers,
        warmup_cycles,
        &format!("{tag}w"),
        deadline,
        &warmup,
    );
    settle(target, fds_start);
    let rss_warm = target.rss();
    let fds_warm = target.fds();

    let started = Instant::now();
    churn(
        pool,
        target.addr,
        workers,
        cycles,
        &format!("{tag}c"),
        deadline,
        &main,
    );
    let secs = started.elapsed().as_secs_f64();
    settle(target, fds_start);
    let rss_end = target.rss();
    let fds_end = target.fds();

    let done = main.done.load(Ordering::SeqCst);
    let failed = main.failed.load(Ordering::SeqCst) + warmup.failed.load(Ordering::SeqCst);
    let growth = match (rss_warm, rss_end) {
        (Some(warm), Some(end)) => Some((end as f64 - warm as f64) / warm as f64 * 100.0),
        _ => None,
    };
    let rss_ok = growth.map(|g| g <= 10.0);
    let fds_ok = match (fds_start, fds_end) {
        (Some(start), Some(end)) => Some(start == end),
        _ => None,
    };
    let mut warnings = Vec::new();
    if failed > 0 {
        let first = [&warmup, &main]
            .iter()
            .find_map(|p| p.first_error.lock().ok().and_then(|e| e.clone()));
        warnings.push(format!(
            "{failed} cycles failed; first error: {}",
            first.unwrap_or_default()
        ));
    }
    if done < cycles {
        warnings.push(format!(
            "only {done} of {cycles} cycles ran within {:.0} s",
            limit.as_secs_f64()
        ));
    }
    if rss_ok == Some(false) {
        warnings.push("the server's memory grew by more than 10%".into());
    }
    if fds_ok == Some(false) {
        warnings.push("the server's descriptors did not come back".into());
    }
    if target.rss().is_none() {
        warnings.push("the server's memory is unknown: pass --server-pid".into());
    }
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "natter bench churn: {cycles} cycles (connect, NICK, MSG, QUIT), {workers} at once, \
         after {warmup_cycles} to warm up; {}",
        target.describe()
    );
    let _ = writeln!(
        summary,
        "  cycles     {done} done, {failed} failed in {secs:.2} s ({:.0} connections/s)",
        done as f64 / secs
    );
    if let (Some(start), Some(warm), Some(end)) = (rss_start, rss_warm, rss_end) {
        let _ = writeln!(
            summary,
            "  memory     RSS {} at start, {} after warm-up, {} at the end ({:+.1}%){}",
            stats::human_bytes(start as f64),
            stats::human_bytes(warm as f64),
            stats::human_bytes(end as f64),
            growth.unwrap_or(0.0),
            if target.in_process() {
                " (one process with the clients)"
            } else {
                ""
            }
        );
    }
    if let (Some(start), Some(warm), Some(end)) = (fds_start, fds_warm, fds_end) {
        let _ = writeln!(
            summary,
            "  fds        {start} at start, {warm} after warm-up, {end} at the end"
        );
    }
    let json = Json::new("churn")
        .str("server", &target.describe())
        .bool("in_process", target.in_process())
        .num("clients", workers)
        .num("cycles", cycles)
        .num("warmup_cycles", warmup_cycles)
        .num("done", done)
        .num("failed", failed)
        .float("secs", secs)
        .float("cycles_per_sec", done as f64 / secs)
        .opt("rss_start", rss_start)
        .opt("rss_warm", rss_warm)
        .opt("rss_end", rss_end)
        .opt(
            "rss_growth_pct",
            growth.map(|g| (g * 100.0).round() / 100.0),
        )
        .opt("rss_within_10pct", rss_ok)
        .opt("fds_start", fds_start)
        .opt("fds_warm", fds_warm)
        .opt("fds_end", fds_end)
        .opt("fds_equal", fds_ok)
        .bool("ok", warnings.is_empty())
        .finish();
    Ok(Report {
        scenario: Scenario::Churn,
        summary,
        json,
        warnings,
        failure: None,
    })
}

/// Runs `cycles` cycles on `workers` clients at once, until done or
/// `deadline`.
fn churn(
    pool: &Pool,
    addr: SocketAddr,
    workers: usize,
    cycles: u64,
    prefix: &str,
    deadline: Instant,
    phase: &Arc<Phase>,
) {
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let phase = Arc::clone(phase);
            let prefix = prefix.to_owned();
            pool.executor.spawn(async move {
                loop {
                    let i = phase.next.fetch_add(1, Ordering::SeqCst);
                    if i >= cycles || Instant::now() >= deadline {
                        return;
                    }
                    let nick = format!("{prefix}{i}");
                    let outcome = future::or(Box::pin(cycle(addr, &nick)), async {
                        Timer::after(CYCLE_LIMIT).await;
                        Err("no BYE within 10 s".to_owned())
                    })
                    .await;
                    match outcome {
                        Ok(()) => {
                            phase.done.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(why) => {
                            phase.failed.fetch_add(1, Ordering::SeqCst);
                            if let Ok(mut first) = phase.first_error.lock() {
                                first.get_or_insert(format!("{nick}: {why}"));
                            }
                            // Out of ports or descriptors: give them a moment.
                            Timer::after(Duration::from_millis(10)).await;
                        }
                    }
                }
            })
        })
        .collect();
    future::block_on(async {
        for task in tasks {
            task.await;
        }
    });
}

/// One visit: connect, register, say hello, quit, and read until the server
/// says `BYE` and closes.
async fn cycle(addr: SocketAddr, nick: &str) -> Result<(), String> {
    let (mut conn, _) = client::register(&client::Dial::plain(addr), nick, 512).await?;
    conn.send(format!("MSG hello from {nick}\r\nQUIT bye\r\n").as_bytes())
        .await
        .map_err(|err| format!("send: {err}"))?;
    let mut sink = UntilBye(false);
    match conn.read(&mut sink).await {
        Ok(Ended::Eof) if sink.0 => Ok(()),
        Ok(_) => Err("closed without BYE".into()),
        Err(err) => Err(format!("read: {err}")),
    }
}

/// Notes the `BYE` line and reads on to the end.
struct UntilBye(bool);

impl LineSink for UntilBye {
    fn line(&mut self, line: &[u8]) -> Flow {
        if line.starts_with(b"BYE") {
            self.0 = true;
        }
        Flow::Continue
    }
}

/// Waits until the server's descriptors are back to `fds` (at most 5 s), and
/// a little more for its memory to be freed.
fn settle(target: &Target, fds: Option<usize>) {
    super::wait_until(
        Duration::from_secs(5),
        Duration::from_secs(5),
        || 0,
        || target.fds() == fds,
    );
    std::thread::sleep(Duration::from_millis(500));
}
