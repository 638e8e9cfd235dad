//! `idle`: C registered connections held open. Reports how long opening and
//! registering them took and the server's resident memory per connection.
//!
//! Every registration is announced to everyone already there: in a small
//! lobby one `JOIN` line each, C(C+1)/2 of them between C clients; past
//! `--big-room` gathered in `JOINS` lines, with each newcomer's list at the
//! next flush. Either way a client is done when it knows all C members (its
//! `USERS` list plus every nickname announced since), C² between them;
//! memory is measured once they do and the server has had a second to
//! settle.
//!
//! With the server in this process, its memory and the clients' share one
//! RSS. The clients' share is then measured apart: with the real clients
//! still held, up to 1,000 more of the same kind connect to a bare listener
//! that only holds their sockets, and the growth per connection is the
//! clients' cost, which is subtracted.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{Conn, Flow, LineSink};
use super::stats::{self, Json};
use super::{BenchError, Options, Pool, Report, Scenario, Setup, Target, Ticker};

/// Connections used to measure the clients' own memory, at most.
const CALIBRATION: usize = 1_000;

/// Bytes of a line an idle client keeps: a whole `USERS` or `JOINS` line,
/// whose nicknames are counted.
const KEEP: usize = crate::hub::LIST_LINE;

pub(super) fn run(options: &Options, target: &Target, pool: &Pool) -> Result<Report, BenchError> {
    let count = options.client_count();
    let hold_secs = options.seconds()?;
    let tag = super::run_tag();
    let generator_before = stats::rss(None);
    let rss_before = target.rss();
    let fds_before = target.fds();
    let setup = Arc::new(Setup::default());
    let _ticker = {
        let setup = Arc::clone(&setup);
        Ticker::start(options.progress, Scenario::Idle, move || {
            format!(
                "registered {}/{count}  members known {}",
                setup.registered.load(Ordering::Relaxed),
                setup.joins.load(Ordering::Relaxed)
            )
        })
    };
    let clients = {
        let joins = Arc::clone(&setup);
        super::spawn_crowd(
            pool,
            target.dials(),
            count,
            options.connect_window,
            &tag,
            KEEP,
            &setup,
            {
                let tag = tag.clone();
                move |index, conn| {
                    let joins = Arc::clone(&joins);
                    let me = format!("{tag}{index}");
                    async move { hold(conn, &joins.joins, me).await }
                }
            },
        )
    };
    super::wait_for_setup(&setup, count);
    let open_secs = setup.last_done.load(Ordering::SeqCst) as f64 / 1e9;
    let registered = setup.registered.load(Ordering::SeqCst);
    let failed = setup.failed.load(Ordering::SeqCst);
    if registered == 0 {
        return Err(BenchError::Setup(format!(
            "no client registered; first error: {}",
            setup.first_error().unwrap_or_else(|| "none".into())
        )));
    }
    // Everyone knows everyone, themselves included.
    let expected_joins = registered * registered;
    let joins_done = super::wait_until(
        Duration::from_secs(60) + Duration::from_millis(10) * count as u32,
        Duration::from_secs(5),
        || setup.joins.load(Ordering::SeqCst),
        || setup.joins.load(Ordering::SeqCst) >= expected_joins,
    );
    let settled_secs = setup.elapsed_secs();
    std::thread::sleep(Duration::from_secs(1));
    let rss_after = target.rss();
    let fds_after = target.fds();
    let generator_after = stats::rss(None);

    // The clients' own memory per connection.
    let client_cost = if target.in_process() {
        // Two descriptors per calibration connection, from what is spare.
        let spare = super::fd_limit().saturating_sub(2 * count as u64 + 100) / 2;
        calibrate(pool, count.min(CALIBRATION).min(spare as usize))
    } else {
        delta(generator_before, generator_after).map(|d| d / registered as f64)
    };
    let grown = delta(rss_before, rss_after);
    let per_connection = grown.map(|grown| {
        let clients = if target.in_process() {
            client_cost.unwrap_or(0.0) * registered as f64
        } else {
            0.0
        };
        (grown - clients) / registered as f64
    });

    std::thread::sleep(Duration::from_secs_f64(hold_secs));
    let rss_held = target.rss();
    drop(clients);

    let mut warnings = Vec::new();
    if failed > 0 {
        warnings.push(format!(
            "{failed} clients could not register; first error: {}",
            setup.first_error().unwrap_or_default()
        ));
    }
    if !joins_done {
        warnings.push(format!(
            "the clients know only {} of {expected_joins} members in all",
            setup.joins.load(Ordering::SeqCst)
        ));
    }
    if target.rss().is_none() {
        warnings.push("the server's memory is unknown: pass --server-pid".into());
    } else if target.in_process() && client_cost.is_none() {
        warnings.push(
            "no descriptors were spare to measure the clients' own memory; the figure per \
             connection includes it"
                .into(),
        );
    }
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "natter bench idle: {count} connections; {}",
        target.describe()
    );
    let _ = writeln!(
        summary,
        "  setup      {registered} registered, {failed} failed in {open_secs:.3} s ({:.0}/s); \
         every member known to all after {settled_secs:.3} s",
        registered as f64 / open_secs
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let _ = writeln!(
            summary,
            "  memory     server RSS {} -> {}{}",
            stats::human_bytes(before as f64),
            stats::human_bytes(after as f64),
            if target.in_process() {
                " (one process with the clients)"
            } else {
                ""
            }
        );
    }
    if let Some(cost) = client_cost {
        let _ = writeln!(
            summary,
            "  clients    {} per connection on the load generator's side{}",
            stats::human_bytes(cost),
            if target.in_process() {
                " (measured apart, subtracted)"
            } else {
                ""
            }
        );
    }
    if let Some(per) = per_connection {
        let _ = writeln!(
            summary,
            "  per conn   {} of server RSS per idle registered connection",
            stats::human_bytes(per)
        );
    }
    if let (Some(before), Some(after)) = (fds_before, fds_after) {
        let _ = writeln!(summary, "  fds        {before} -> {after}");
    }
    let json = Json::new("idle")
        .str("server", &target.describe())
        .bool("in_process", target.in_process())
        .num("clients", count)
        .num("registered", registered)
        .num("failed", failed)
        .num("threads", pool.threads)
        .float("open_secs", open_secs)
        .float("joins_read_secs", settled_secs)
        .num("joins_expected", expected_joins)
        .num("joins_read", setup.joins.load(Ordering::SeqCst))
        .opt("server_rss_before", rss_before)
        .opt("server_rss_after", rss_after)
        .opt("server_rss_held", rss_held)
        .opt("server_bytes_per_conn", per_connection.map(|p| p.round()))
        .opt("client_bytes_per_conn", client_cost.map(|c| c.round()))
        .opt("fds_before", fds_before)
        .opt("fds_after", fds_after)
        .bool("ok", warnings.is_empty())
        .finish();
    Ok(Report {
        scenario: Scenario::Idle,
        summary,
        json,
        warnings,
        failure: None,
    })
}

fn delta(before: Option<u64>, after: Option<u64>) -> Option<f64> {
    Some(after? as f64 - before? as f64)
}

/// Counts the members `JOIN` and `JOINS` lines announce until the
/// connection ends or the task is dropped; holds no buffer between reads.
/// (Nobody leaves in this scenario, so `PARTS` and `QUIT` do not occur.)
/// The client's own nickname, `me`, is not counted: registration counted
/// it (see [`super::client::names`]).
async fn hold(mut conn: Conn, joins: &AtomicU64, me: String) {
    let mut sink = JoinCounter {
        total: joins,
        seen: 0,
        me,
    };
    let _ = conn.read(&mut sink).await;
}

struct JoinCounter<'a> {
    total: &'a AtomicU64,
    seen: u64,
    me: String,
}

impl LineSink for JoinCounter<'_> {
    fn line(&mut self, line: &[u8]) -> Flow {
        if line.starts_with(b"JOIN ") {
            self.seen += 1;
        } else if line.starts_with(b"JOINS ") {
            let me = super::client::names(line, &self.me);
            self.seen += super::client::nicks_in(line).saturating_sub(u64::from(me));
        }
        Flow::Continue
    }

    fn batch_end(&mut self) {
        if self.seen > 0 {
            self.total
                .fetch_add(std::mem::take(&mut self.seen), Ordering::SeqCst);
        }
    }
}

/// The resident memory of `count` more clients like the idle ones, per
/// connection, measured against a listener that only holds sockets.
fn calibrate(pool: &Pool, count: usize) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    let addr = listener.local_addr().ok()?;
    listener.set_nonblocking(true).ok()?;
    let mut held = Vec::with_capacity(count);
    let mut tasks = Vec::with_capacity(count);
    let joins = Arc::new(AtomicU64::new(0));
    let acceptor = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while held.len() < count && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => held.push(stream),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        held
    });
    std::thread::sleep(Duration::from_millis(200));
    let before = stats::rss(None)?;
    for _ in 0..count {
        let joins = Arc::clone(&joins);
        tasks.push(pool.executor.spawn(async move {
            if let Ok(conn) = Box::pin(Conn::connect(&super::client::Dial::plain(addr), KEEP)).await
            {
                hold(conn, &joins, String::new()).await;
            }
        }));
    }
    let held = acceptor.join().ok()?;
    std::thread::sleep(Duration::from_millis(500));
    let after = stats::rss(None)?;
    let connected = held.len();
    drop(tasks);
    drop(held);
    (connected > 0).then(|| (after as f64 - before as f64) / connected as f64)
}
