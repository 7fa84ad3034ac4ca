//! The worker pool: threads that run chunk crypto for any number of streams at once, fed
//! from blocking drivers and async drivers alike.
//!
//! A stream hands the pool whole batches (many chunks each), never single chunks, and gets
//! them back in its own completion ring, indexed by sequence number so the driver takes them
//! in order whatever worker finished first. Completion wakes both kinds of driver: a
//! blocking one waits on a condition variable, an async one registers a `Waker`. Nothing is
//! allocated per batch: a job is the batch itself (its buffer moves) plus a reference count.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::CancelToken;
use super::framer::{Batch, open_batch, seal_batch};
use crate::error::{Error, Result};
use crate::primitives::stream::PayloadCipher;

/// Which crypto a stream's batches get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Seal,
    Open,
}

/// Worker threads for chunk crypto, shared by every stream that uses them.
///
/// Exists so that many concurrent streams (a service's requests, sync or async) spread their
/// crypto over the cores without each stream starting threads, and without putting CPU work
/// on an async runtime's threads. Cloning is cheap (a reference count); the threads stop
/// when the last clone is dropped (after the jobs already queued). [`Pool::global`] is the
/// one the drivers use unless told otherwise.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.inner.threads)
            .finish_non_exhaustive()
    }
}

struct PoolInner {
    queue: Arc<Queue>,
    threads: usize,
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // Workers finish what is queued, then exit; nobody waits for them here, so dropping
        // a pool never blocks (an async caller may be the one dropping it).
        self.queue.lock().shutdown = true;
        self.queue.cv.notify_all();
    }
}

struct Queue {
    state: Mutex<QueueState>,
    cv: Condvar,
}

struct QueueState {
    jobs: VecDeque<Job>,
    shutdown: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A poisoned lock only means a thread panicked while holding it; the queue itself
        // (a VecDeque and a flag) is always consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Job {
    stream: Arc<Shared>,
    seq: usize,
    batch: Batch,
}

static GLOBAL: Mutex<Option<Pool>> = Mutex::new(None);

impl Pool {
    /// Starts a pool of `threads` workers (0: one per available core).
    pub fn new(threads: usize) -> Result<Pool> {
        let threads = if threads > 0 { threads } else { super::cores() };
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                // Room for every batch of a few streams at once; it grows (rarely, never per
                // batch) if more are in flight.
                jobs: VecDeque::with_capacity(64),
                shutdown: false,
            }),
            cv: Condvar::new(),
        });
        let pool = Pool {
            inner: Arc::new(PoolInner {
                queue: Arc::clone(&queue),
                threads,
            }),
        };
        for i in 0..threads {
            let q = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("sealstream-worker-{i}"))
                .spawn(move || worker(&q))
                .map_err(|e| Error::io("starting a crypto worker thread", e))?;
        }
        Ok(pool)
    }

    /// The process-wide pool, one worker per available core, started on first use.
    pub fn global() -> Result<Pool> {
        let mut g = GLOBAL.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = g.as_ref() {
            return Ok(p.clone());
        }
        let p = Pool::new(0)?;
        *g = Some(p.clone());
        Ok(p)
    }

    /// Worker threads in this pool.
    pub fn threads(&self) -> usize {
        self.inner.threads
    }

    /// Registers a stream whose driver keeps at most `window` batches alive.
    pub(crate) fn stream(
        &self,
        cipher: &PayloadCipher,
        chunk_size: usize,
        op: Op,
        window: usize,
    ) -> (Submitter, Completions) {
        let shared = Arc::new(Shared {
            cipher: cipher.clone(),
            cs: chunk_size,
            op,
            cancelled: AtomicBool::new(false),
            done: Mutex::new(Done {
                slots: (0..window).map(|_| None).collect(),
                waker: None,
                closed_at: None,
            }),
            cv: Condvar::new(),
        });
        (
            Submitter {
                shared: Arc::clone(&shared),
                queue: Arc::clone(&self.inner.queue),
                next: 0,
                _pool: self.clone(),
            },
            Completions {
                shared,
                next: 0,
                _pool: self.clone(),
            },
        )
    }
}

fn worker(queue: &Queue) {
    // Per worker, reused for every stream: the copy `open_final_chunk` needs.
    let mut scratch = Vec::new();
    loop {
        let job = {
            let mut q = queue.lock();
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    break j;
                }
                if q.shutdown {
                    return;
                }
                q = queue.cv.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let Job {
            stream,
            seq,
            mut batch,
        } = job;
        if stream.cancelled.load(Ordering::Acquire) {
            // The driver is gone or stopping: skip the work, free the buffer here.
            continue;
        }
        let cs = stream.cs;
        let ran = catch_unwind(AssertUnwindSafe(|| match stream.op {
            Op::Seal => seal_batch(&stream.cipher, cs, &mut batch),
            Op::Open => open_batch(&stream.cipher, cs, &mut batch, &mut scratch),
        }));
        if ran.is_err() {
            batch.error = Some((0, super::internal("a crypto worker panicked")));
        }
        stream.complete(seq, batch);
    }
}

/// State one stream shares with the workers.
struct Shared {
    cipher: PayloadCipher,
    cs: usize,
    op: Op,
    cancelled: AtomicBool,
    done: Mutex<Done>,
    cv: Condvar,
}

struct Done {
    /// Finished batches, at `seq % window`.
    slots: Vec<Option<Batch>>,
    waker: Option<Waker>,
    /// Set when the submitter is done: the number of batches it submitted.
    closed_at: Option<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Done> {
        self.done.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn complete(&self, seq: usize, batch: Batch) {
        let waker = {
            let mut d = self.lock();
            let w = d.slots.len();
            d.slots[seq % w] = Some(batch);
            d.waker.take()
        };
        self.cv.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn close(&self, at: usize) {
        let waker = {
            let mut d = self.lock();
            d.closed_at = Some(at);
            d.waker.take()
        };
        self.cv.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The submitting half of a stream (the reader side). Dropping it tells the completing half
/// that no more batches come.
pub(crate) struct Submitter {
    shared: Arc<Shared>,
    queue: Arc<Queue>,
    next: usize,
    _pool: Pool,
}

impl Submitter {
    /// Queues a closed batch for the workers.
    pub(crate) fn submit(&mut self, batch: Batch) {
        let job = Job {
            stream: Arc::clone(&self.shared),
            seq: self.next,
            batch,
        };
        self.next += 1;
        self.queue.lock().jobs.push_back(job);
        self.queue.cv.notify_one();
    }
}

impl Drop for Submitter {
    fn drop(&mut self) {
        self.shared.close(self.next);
    }
}

/// The completing half of a stream (the writer side): finished batches in submission order.
/// Dropping it cancels the stream's queued work (workers skip it and free the buffers).
pub(crate) struct Completions {
    shared: Arc<Shared>,
    next: usize,
    _pool: Pool,
}

impl Completions {
    /// Stops the stream's queued work now.
    pub(crate) fn cancel(&self) {
        self.shared.cancelled.store(true, Ordering::Release);
    }

    fn try_take(&mut self, d: &mut Done) -> Option<Option<Batch>> {
        let w = d.slots.len();
        if let Some(b) = d.slots[self.next % w].take() {
            self.next += 1;
            return Some(Some(b));
        }
        if d.closed_at.is_some_and(|t| self.next >= t) {
            return Some(None);
        }
        None
    }

    /// Blocks for the next batch in order; `None` once every submitted batch was taken and
    /// the submitter is gone. With a cancel token, wakes up regularly to check it.
    pub(crate) fn wait(&mut self, cancel: Option<&CancelToken>) -> Result<Option<Batch>> {
        let shared = Arc::clone(&self.shared);
        let mut d = shared.lock();
        loop {
            if cancel.is_some_and(CancelToken::is_cancelled) {
                return Err(Error::stream_cancelled());
            }
            if let Some(r) = self.try_take(&mut d) {
                return Ok(r);
            }
            d = match cancel {
                None => shared.cv.wait(d).unwrap_or_else(|p| p.into_inner()),
                Some(_) => {
                    shared
                        .cv
                        .wait_timeout(d, CANCEL_POLL)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// The next batch in order, for async drivers; `Ready(None)` as for [`Self::wait`].
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Batch>> {
        let shared = Arc::clone(&self.shared);
        let mut d = shared.lock();
        if let Some(r) = self.try_take(&mut d) {
            return Poll::Ready(r);
        }
        match &d.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => d.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Completions {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// How often a blocked driver with a cancel token looks at it.
const CANCEL_POLL: Duration = Duration::from_millis(20);
