//! The id floor: a small file in the data directory (`ids.floor`) holding
//! the largest message id reserved, so that a restarted server — even after
//! `kill -9`, even with the clock set back — never hands out an id it sent
//! before. [`IdFloor`] writes it on a thread of its own, off the hub task;
//! the rule it serves is [`crate::ids::MessageIds`].
//!
//! Each write is atomic: a temporary file, fsync, rename over the old one,
//! fsync of the directory. A reader sees the old value or the new one,
//! never a torn one. The hub may hand out an id only once [`IdFloor::durable`]
//! covers it.
//!
//! If the file cannot be written (a read-only or full disk), the server says
//! so once and goes on with ids from the clock alone ([`UNRESERVED`]),
//! assuming the clock does not go back across a restart; it keeps trying,
//! and the floor is kept again as soon as a write succeeds.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ids::{RESERVE_AHEAD, UNRESERVED};

/// The file, in the data directory, that holds the id floor.
pub const FILE: &str = "ids.floor";

/// Where a write goes before it is renamed over [`FILE`].
const TEMP: &str = "ids.floor.tmp";

/// The clock in microseconds since the Unix epoch (0 before it).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The floor kept in `dir`, or `None` if there is no such file yet.
pub fn read(dir: &Path) -> io::Result<Option<u64>> {
    match fs::read_to_string(dir.join(FILE)) {
        Ok(text) => text.trim().parse().map(Some).map_err(|err| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a number: {err}", dir.join(FILE).display()),
            )
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Writes `value` as the floor in `dir`, atomically and durably.
pub fn write(dir: &Path, value: u64) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let temp = dir.join(TEMP);
    let mut file = File::create(&temp)?;
    file.write_all(format!("{value}\n").as_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, dir.join(FILE))?;
    // The rename itself must reach the disk too. Windows cannot open a
    // directory as a file; its rename is journalled by NTFS.
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// What the hub task and the writer share.
struct Shared {
    /// The largest reservation asked for.
    wanted: AtomicU64,
    /// The largest reservation on disk, or [`UNRESERVED`] while the floor
    /// cannot be written.
    durable: AtomicU64,
}

/// The id floor of one server: the handle the hub task holds, and the
/// thread that writes the file.
pub struct IdFloor {
    shared: Arc<Shared>,
    /// Wakes the writer; a wake-up already pending is enough.
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl IdFloor {
    /// Reads the floor in `dir`, reserves the first block above
    /// `max(floor, stored, now)` before anything is said (`stored` is the
    /// highest id in the history), and starts the writer. Returns the
    /// floor and the id new ids start above.
    ///
    /// Never fails: a floor that cannot be read or written is logged, and
    /// ids then come from the clock alone.
    pub fn open(dir: &Path, stored: u64) -> (IdFloor, u64) {
        let path = dir.join(FILE);
        let floor = read(dir).unwrap_or_else(|err| {
            tracing::error!(path = %path.display(), %err, "cannot read the id floor");
            None
        });
        let last = floor.unwrap_or(0).max(stored);
        let now = now_micros();
        if last > now.saturating_add(3600 * 1_000_000) {
            tracing::warn!(
                ahead_secs = (last - now) / 1_000_000,
                "message ids continue above the id floor, which is ahead of the clock: \
                 was the clock set back?"
            );
        }
        let first = last.max(now).saturating_add(RESERVE_AHEAD);
        let durable = match write(dir, first) {
            Ok(()) => first,
            Err(err) => {
                tracing::warn!(
                    path = %path.display(),
                    %err,
                    "cannot keep the id floor: message ids come from the clock alone, \
                     which must not go back across a restart"
                );
                UNRESERVED
            }
        };
        let shared = Arc::new(Shared {
            wanted: AtomicU64::new(first),
            durable: AtomicU64::new(durable),
        });
        let (wake, woken) = mpsc::sync_channel(1);
        let thread = {
            let shared = Arc::clone(&shared);
            let dir = dir.to_owned();
            let failing = durable == UNRESERVED;
            std::thread::Builder::new()
                .name("natter-ids".into())
                .spawn(move || run(&dir, &shared, &woken, failing))
        };
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(err) => {
                tracing::warn!(%err, "cannot start the id floor's thread: ids from the clock alone");
                shared.durable.store(UNRESERVED, Ordering::Release);
                None
            }
        };
        let floor = IdFloor {
            shared,
            wake: Some(wake),
            thread,
        };
        (floor, last)
    }

    /// Ids up to this are reserved on disk ([`UNRESERVED`]: the floor cannot
    /// be kept, ids come from the clock alone).
    pub fn durable(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Asks for ids up to `upto` to be reserved; returns at once.
    pub fn reserve(&self, upto: u64) {
        if self.shared.wanted.fetch_max(upto, Ordering::AcqRel) < upto {
            if let Some(wake) = &self.wake {
                let _ = wake.try_send(());
            }
        }
    }

    /// Writes what is asked for and stops the thread.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for IdFloor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer: on each wake-up, writes the largest reservation asked for,
/// then publishes it. A failure is logged when it starts and when it ends,
/// not on every try.
fn run(dir: &Path, shared: &Shared, woken: &mpsc::Receiver<()>, mut failing: bool) {
    let mut written = if failing {
        0
    } else {
        shared.durable.load(Ordering::Acquire)
    };
    while woken.recv().is_ok() {
        let wanted = shared.wanted.load(Ordering::Acquire);
        if wanted <= written {
            continue;
        }
        match write(dir, wanted) {
            Ok(()) => {
                written = wanted;
                shared.durable.store(wanted, Ordering::Release);
                if std::mem::take(&mut failing) {
                    tracing::info!("the id floor is written again");
                }
            }
            Err(err) => {
                shared.durable.store(UNRESERVED, Ordering::Release);
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(
                        path = %dir.join(FILE).display(),
                        %err,
                        "cannot write the id floor: message ids come from the clock alone \
                         until it can be written again"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("natter-floor-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_floor_starts_above_everything_and_follows_reservations() {
        let dir = temp("start");
        assert_eq!(read(&dir).unwrap(), None);
        let ahead = now_micros() + 3_600_000_000;
        write(&dir, ahead).unwrap();
        let (floor, last) = IdFloor::open(&dir, 5);
        assert_eq!(last, ahead, "a floor ahead of the clock wins");
        assert_eq!(floor.durable(), ahead + RESERVE_AHEAD);
        assert_eq!(read(&dir).unwrap(), Some(ahead + RESERVE_AHEAD));
        floor.reserve(ahead + 3 * RESERVE_AHEAD);
        let deadline = Instant::now() + Duration::from_secs(10);
        while floor.durable() < ahead + 3 * RESERVE_AHEAD {
            assert!(Instant::now() < deadline, "the writer wrote nothing");
            std::thread::sleep(Duration::from_millis(1));
        }
        floor.reserve(1);
        floor.close();
        assert_eq!(read(&dir).unwrap(), Some(ahead + 3 * RESERVE_AHEAD));
        assert!(!dir.join(TEMP).exists());
        let (floor, last) = IdFloor::open(&dir, u64::MAX - 1);
        assert_eq!(last, u64::MAX - 1, "the history's highest id wins too");
        drop(floor);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_directory_means_the_clock_alone_until_it_is_writable() {
        // A directory under a plain file cannot be made, even by root.
        let blocker = temp("blocker");
        fs::write(&blocker, "not a directory").unwrap();
        let dir = blocker.join("data");
        let (floor, last) = IdFloor::open(&dir, 9);
        assert_eq!(last, 9);
        assert_eq!(floor.durable(), UNRESERVED);
        fs::remove_file(&blocker).unwrap();
        let want = now_micros() + 2 * RESERVE_AHEAD;
        floor.reserve(want);
        let deadline = Instant::now() + Duration::from_secs(10);
        while floor.durable() != want {
            assert!(Instant::now() < deadline, "the floor did not recover");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(floor);
        assert_eq!(read(&dir).unwrap(), Some(want));
        let _ = fs::remove_dir_all(&blocker);
    }

    #[test]
    fn a_damaged_floor_is_an_error_not_a_zero() {
        let dir = temp("damaged");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(FILE), "12x\n").unwrap();
        assert!(read(&dir).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
