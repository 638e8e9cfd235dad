//! A session's outbox: the bounded queue of encoded lines between the hub
//! (which pushes) and the session's writer (which drains).
//!
//! A plain queue under a mutex, with one stored waker for the writer and one
//! for the session: a push wakes the writer only when the queue goes from
//! empty to non-empty, and the writer takes everything queued in one go. The
//! hub pays a lock and an append per delivery, and an idle connection holds
//! one small allocation.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use futures_lite::future;

use crate::hub::outbox::{Outbox, Rejected};
use crate::protocol::Line;

/// The hub's end of a session's outbox: lines go in here, and closing it
/// tells the session the hub is done with it.
#[derive(Clone)]
pub(crate) struct SessionOutbox {
    queue: Arc<Queue>,
}

/// What the hub's end and the session's end of an outbox share.
struct Queue {
    /// The most lines the queue may hold.
    limit: usize,
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    /// Lines not yet taken by the writer; never more than `limit`.
    lines: VecDeque<Line>,
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
    /// A new outbox for `limit` lines, with the session's end of it.
    pub(crate) fn new(limit: usize) -> (Self, OutboxReader) {
        let queue = Arc::new(Queue {
            limit,
            state: Mutex::new(QueueState::default()),
        });
        let reader = OutboxReader {
            queue: Arc::clone(&queue),
        };
        (Self { queue }, reader)
    }
}

impl Outbox for SessionOutbox {
    fn push(&mut self, line: &Line) -> Result<(), Rejected> {
        let waker = {
            let mut state = self.queue.state();
            if state.closed {
                return Err(Rejected::Closed);
            }
            if state.lines.len() >= self.queue.limit {
                // The hub drops the client at its first refusal; count that.
                if !std::mem::replace(&mut state.overflowed, true) {
                    crate::metrics::outbox_overflow();
                }
                return Err(Rejected::Full);
            }
            crate::metrics::delivered();
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

    fn close(&mut self) {
        let (writer, session) = {
            let mut state = self.queue.state();
            state.closed = true;
            (state.writer.take(), state.session.take())
        };
        for waker in [writer, session].into_iter().flatten() {
            waker.wake();
        }
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
    /// is closed and empty. `batch` must be empty; it is swapped with the queue.
    pub(crate) async fn take(&self, batch: &mut VecDeque<Line>) -> Option<()> {
        future::poll_fn(|cx| {
            let mut state = self.queue.state();
            if !state.lines.is_empty() {
                std::mem::swap(&mut state.lines, batch);
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
        })
        .await
    }

    /// Waits until the hub closes the outbox.
    pub(crate) async fn closed(&self) {
        future::poll_fn(|cx| {
            let mut state = self.queue.state();
            if state.closed {
                return Poll::Ready(());
            }
            match &mut state.session {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }
}

impl Drop for OutboxReader {
    fn drop(&mut self) {
        let mut state = self.queue.state();
        state.closed = true;
        state.lines = VecDeque::new();
        state.writer = None;
        state.session = None;
    }
}
