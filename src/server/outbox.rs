//! A session's outbox: the bounded queue of encoded lines between the hub
//! (which pushes) and the session's writer (which drains).
//!
//! A plain queue under a mutex, with one stored waker for the writer and one
//! for the session: a push wakes the writer only when the queue goes from
//! empty to non-empty, and the writer takes everything queued in one go. The
//! hub pays a lock and an append per delivery, and an idle connection holds
//! one small allocation.
//!
//! The bound is in bytes, like an IRC server's sendq: what counts is what the
//! client has not been written yet (queued, or taken by the writer and not
//! yet accepted by the socket), so a thousand short lines and ten long ones
//! weigh what they cost. A second bound, [`QueuedBytes`], is shared by every
//! outbox of a server, so ten thousand stalled clients cannot take the
//! machine's memory between them; it cuts off only clients more than
//! [`KEEPING_UP`] behind. Neither bound ever refuses a line to a client that
//! has nothing pending, however big the line: the worst case is the
//! server-wide bound plus [`KEEPING_UP`] (or one line) per client.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_lite::future;

use crate::hub::outbox::{Outbox, Rejected};
use crate::protocol::Line;

/// The hub's end of a session's outbox: lines go in here, and closing it
/// tells the session the hub is done with it.
#[derive(Clone)]
pub(crate) struct SessionOutbox {
    queue: Arc<Queue>,
}

/// What a client that keeps up may have pending when the server-wide bound
/// is reached, and still be sent more: a burst of lines the hub queued
/// before the client's writer ran. Only clients further behind than this are
/// cut off for the server-wide bound, so the worst case is that bound plus
/// this much per client.
const KEEPING_UP: usize = 64 << 10;

/// The bytes pending in all the outboxes of one server, against
/// `Config::outbox_total_bytes`. The hub adds (one thread), the writers take
/// away; a push that would pass the bound is refused unless its outbox is
/// empty.
#[derive(Debug)]
pub(crate) struct QueuedBytes {
    used: AtomicUsize,
    limit: usize,
}

impl QueuedBytes {
    /// An empty account for a server allowed `limit` pending bytes.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    /// Counts `bytes` more if that stays within the bound, or if `always`.
    fn add(&self, bytes: usize, always: bool) -> bool {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if always || before.saturating_add(bytes) <= self.limit {
            return true;
        }
        self.used.fetch_sub(bytes, Ordering::Relaxed);
        false
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// What the hub's end and the session's end of an outbox share.
struct Queue {
    /// The most bytes the client may have pending (queued or being written),
    /// unless it has none: then any one line is taken.
    limit: usize,
    /// The server-wide account every pending byte is also counted in, set
    /// by the hub task when the session connects (before any push).
    total: OnceLock<Arc<QueuedBytes>>,
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    /// Lines not yet taken by the writer.
    lines: VecDeque<Line>,
    /// The bytes of `lines`.
    queued: usize,
    /// The bytes the writer took and has not yet finished writing.
    writing: usize,
    /// What of `queued` and of `writing` is counted in the server-wide
    /// total: all but shared lines ([`Outbox::push_shared`]).
    queued_total: usize,
    writing_total: usize,
    /// Set by the hub's `close` or when the session ends: nothing more is
    /// queued, and the writer ends once `lines` is empty.
    closed: bool,
    /// The writer, parked on an empty queue.
    writer: Option<Waker>,
    /// The session, waiting for `closed`.
    session: Option<Waker>,
    /// Whether a line was refused for want of room (counted once).
    overflowed: bool,
}

impl Queue {
    fn state(&self) -> MutexGuard<'_, QueueState> {
        // Nothing panics while holding the lock, but a poisoned queue is
        // still a valid queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionOutbox {
    /// A new outbox for `limit` pending bytes, with the session's end of it.
    pub(crate) fn new(limit: usize) -> (Self, OutboxReader) {
        let queue = Arc::new(Queue {
            limit,
            total: OnceLock::new(),
            state: Mutex::new(QueueState::default()),
        });
        let reader = OutboxReader {
            queue: Arc::clone(&queue),
        };
        (Self { queue }, reader)
    }
}

impl SessionOutbox {
    /// Counts this outbox's pending bytes in the server-wide `total` too;
    /// the hub task does it as the session connects, before any push.
    pub(crate) fn count_in(&self, total: &Arc<QueuedBytes>) {
        let _ = self.queue.total.set(Arc::clone(total));
    }
}

impl Queue {
    /// Counts `bytes` more in the server-wide total, if there is one.
    fn add_total(&self, bytes: usize, always: bool) -> bool {
        self.total.get().is_none_or(|t| t.add(bytes, always))
    }

    fn release_total(&self, bytes: usize) {
        if let Some(total) = self.total.get() {
            total.release(bytes);
        }
    }
}

impl Outbox for SessionOutbox {
    fn push(&mut self, line: &Line) -> Result<(), Rejected> {
        self.queue_line(line, true)
    }

    fn push_shared(&mut self, line: &Line) -> Result<(), Rejected> {
        self.queue_line(line, false)
    }

    fn close(&mut self) {
        let (writer, session) = {
            let mut state = self.queue.state();
            state.closed = true;
            // What is left is written within the shutdown grace or dropped:
            // it no longer counts against the clients still being served.
            state.queued = 0;
            state.writing = 0;
            let pending = state.counted_in_total();
            self.queue.release_total(pending);
            (state.writer.take(), state.session.take())
        };
        for waker in [writer, session].into_iter().flatten() {
            waker.wake();
        }
    }
}

impl QueueState {
    /// Forgets and returns what this outbox counts in the server-wide total.
    fn counted_in_total(&mut self) -> usize {
        std::mem::take(&mut self.queued_total) + std::mem::take(&mut self.writing_total)
    }
}

impl SessionOutbox {
    /// Queues a line, counting it in the server-wide total if `counted`.
    fn queue_line(&mut self, line: &Line, counted: bool) -> Result<(), Rejected> {
        let waker = {
            let mut state = self.queue.state();
            if state.closed {
                // Closed for overflowing (a history answer that did not fit):
                // the client is dropped for being too slow, not for leaving.
                return Err(if state.overflowed {
                    Rejected::Full
                } else {
                    Rejected::Closed
                });
            }
            let pending = state.queued + state.writing;
            let idle = pending == 0;
            let fits = idle || pending.saturating_add(line.len()) <= self.queue.limit;
            let keeping_up = idle || pending.saturating_add(line.len()) <= KEEPING_UP;
            if !fits || (counted && !self.queue.add_total(line.len(), keeping_up)) {
                // The hub drops the client at its first refusal; count that.
                if !std::mem::replace(&mut state.overflowed, true) {
                    crate::metrics::outbox_overflow();
                }
                return Err(Rejected::Full);
            }
            crate::metrics::delivered();
            state.queued += line.len();
            if counted {
                state.queued_total += line.len();
            }
            state.lines.push_back(Line::clone(line));
            if state.lines.len() == 1 {
                state.writer.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

/// The session's end of an outbox: the writer takes lines from it, and the
/// session learns from it when the hub has closed it. Dropping it closes the
/// outbox, so the hub's next push says [`Rejected::Closed`].
pub(crate) struct OutboxReader {
    queue: Arc<Queue>,
}

impl OutboxReader {
    /// Waits for lines and takes all that are queued; `None` once the outbox
    /// is closed and empty. `batch` must be empty; it is swapped with the
    /// queue. Its bytes stay counted until [`OutboxReader::written`].
    #[cfg_attr(not(any(feature = "tls", feature = "web")), allow(dead_code))]
    pub(crate) async fn take(&self, batch: &mut VecDeque<Line>) -> Option<()> {
        future::poll_fn(|cx| self.poll_take(cx, batch)).await
    }

    /// [`OutboxReader::take`] for a hand-written future.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        batch: &mut VecDeque<Line>,
    ) -> Poll<Option<()>> {
        let mut state = self.queue.state();
        if !state.lines.is_empty() {
            std::mem::swap(&mut state.lines, batch);
            state.writing += std::mem::take(&mut state.queued);
            state.writing_total += std::mem::take(&mut state.queued_total);
            return Poll::Ready(Some(()));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        match &mut state.writer {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The batch last taken has been written: its bytes no longer count.
    pub(crate) fn written(&self) {
        let mut state = self.queue.state();
        state.writing = 0;
        let done = std::mem::take(&mut state.writing_total);
        drop(state);
        self.queue.release_total(done);
    }

    /// Whether a line was refused for want of room: the outbox was closed
    /// because the client read too slowly.
    pub(crate) fn overflowed(&self) -> bool {
        self.queue.state().overflowed
    }

    /// Waits until the hub closes the outbox.
    #[cfg_attr(not(any(feature = "tls", feature = "web")), allow(dead_code))]
    pub(crate) async fn closed(&self) {
        future::poll_fn(|cx| self.poll_closed(cx)).await
    }

    /// [`OutboxReader::closed`] for a hand-written future.
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.queue.state();
        if state.closed {
            return Poll::Ready(());
        }
        match &mut state.session {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for OutboxReader {
    fn drop(&mut self) {
        let mut state = self.queue.state();
        state.closed = true;
        state.lines = VecDeque::new();
        state.writer = None;
        state.session = None;
        state.queued = 0;
        state.writing = 0;
        let pending = state.counted_in_total();
        drop(state);
        self.queue.release_total(pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(bytes: usize) -> Line {
        Line::from(vec![b'x'; bytes])
    }

    fn take(reader: &OutboxReader) -> usize {
        let mut batch = VecDeque::new();
        futures_lite::future::block_on(reader.take(&mut batch));
        batch.len()
    }

    #[test]
    fn the_bound_is_in_bytes_and_counts_what_is_being_written() {
        let total = QueuedBytes::new(usize::MAX);
        let (mut outbox, reader) = SessionOutbox::new(100);
        outbox.count_in(&total);
        assert_eq!(outbox.push(&line(60)), Ok(()));
        assert_eq!(outbox.push(&line(40)), Ok(()));
        assert_eq!(outbox.push(&line(1)), Err(Rejected::Full));
        // Taken but not yet written still counts.
        assert_eq!(take(&reader), 2);
        assert_eq!(outbox.push(&line(1)), Err(Rejected::Full));
        reader.written();
        assert_eq!(outbox.push(&line(100)), Ok(()));
        assert_eq!(total.used.load(Ordering::Relaxed), 100);
        drop(reader);
        assert_eq!(
            total.used.load(Ordering::Relaxed),
            0,
            "a closed outbox counts nothing"
        );
        // It refused a line earlier: whatever closed it, it is gone for being
        // too slow.
        assert_eq!(outbox.push(&line(1)), Err(Rejected::Full));
    }

    #[test]
    fn an_outbox_closed_for_overflowing_says_so_to_the_hub_and_the_session() {
        let (mut outbox, reader) = SessionOutbox::new(100);
        assert_eq!(outbox.push(&line(60)), Ok(()));
        assert_eq!(outbox.push(&line(60)), Err(Rejected::Full));
        // As the store thread does with a history answer that does not fit.
        outbox.close();
        assert!(reader.overflowed());
        assert_eq!(outbox.push(&line(1)), Err(Rejected::Full));

        let (mut left, reader) = SessionOutbox::new(100);
        left.close();
        assert!(!reader.overflowed());
        assert_eq!(left.push(&line(1)), Err(Rejected::Closed));
    }

    #[test]
    fn shared_lines_count_against_the_client_but_not_the_server_total() {
        let total = QueuedBytes::new(KEEPING_UP * 4);
        let (mut first, first_reader) = SessionOutbox::new(KEEPING_UP * 2);
        let (mut second, _second_reader) = SessionOutbox::new(KEEPING_UP * 2);
        first.count_in(&total);
        second.count_in(&total);
        // One big list, shared by both, past KEEPING_UP for each: counted
        // per client only, so the total is not used up by copies of it.
        let list = line(KEEPING_UP + 1);
        for outbox in [&mut first, &mut second] {
            assert_eq!(outbox.push(&line(1)), Ok(()));
            assert_eq!(outbox.push_shared(&list), Ok(()));
        }
        assert_eq!(total.used.load(Ordering::Relaxed), 2);
        // The client's own bound still holds for shared lines.
        assert_eq!(first.push_shared(&list), Err(Rejected::Full));
        // Written, the counted byte is released and nothing more.
        take(&first_reader);
        first_reader.written();
        assert_eq!(total.used.load(Ordering::Relaxed), 1);
        second.close();
        assert_eq!(total.used.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_client_with_nothing_pending_always_gets_its_next_line() {
        let total = QueuedBytes::new(10);
        let (mut outbox, reader) = SessionOutbox::new(10);
        outbox.count_in(&total);
        assert_eq!(outbox.push(&line(500)), Ok(()), "bigger than both bounds");
        assert_eq!(outbox.push(&line(1)), Err(Rejected::Full));
        take(&reader);
        reader.written();
        assert_eq!(outbox.push(&line(500)), Ok(()));
    }

    #[test]
    fn the_server_wide_bound_refuses_only_clients_that_are_behind() {
        let total = QueuedBytes::new(KEEPING_UP * 2);
        let (mut stalled, _stalled_reader) = SessionOutbox::new(usize::MAX);
        let (mut keeping_up, reader) = SessionOutbox::new(usize::MAX);
        stalled.count_in(&total);
        keeping_up.count_in(&total);
        for _ in 0..2 * KEEPING_UP / 1024 {
            assert_eq!(stalled.push(&line(1024)), Ok(()));
        }
        assert_eq!(
            stalled.push(&line(1024)),
            Err(Rejected::Full),
            "past the total"
        );
        // The other client is only a burst behind: it is served past the bound.
        for _ in 0..KEEPING_UP / 1024 {
            assert_eq!(keeping_up.push(&line(1024)), Ok(()));
        }
        assert_eq!(keeping_up.push(&line(1024)), Err(Rejected::Full));
        take(&reader);
        reader.written();
        assert_eq!(total.used.load(Ordering::Relaxed), 2 * KEEPING_UP);
    }

    #[test]
    fn a_closed_outbox_no_longer_counts() {
        let total = QueuedBytes::new(usize::MAX);
        let (mut outbox, _reader) = SessionOutbox::new(usize::MAX);
        outbox.count_in(&total);
        assert_eq!(outbox.push(&line(10)), Ok(()));
        outbox.close();
        assert_eq!(total.used.load(Ordering::Relaxed), 0);
    }
}
