//! The async pipeline core shared by the drivers and the adapters: batches filled from an
//! `AsyncRead` (pull) or from `poll_write` calls (push), crypto on the worker pool, output to
//! an `AsyncWrite` (push) or to `poll_read` calls (pull). Everything is poll-based state in
//! one struct, so a driver or adapter future owns it, and dropping that future drops it:
//! the stream's queued pool work is cancelled and its buffers are freed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{Error, Result};
use crate::format::TAG_LEN;
use crate::primitives::stream::PayloadCipher;
use crate::stream::framer::{Batch, Framer, OpenFramer, SealFramer};
use crate::stream::{
    BatchBuffers, CancelToken, Completions, EngineOptions, StreamStats, Submitter, geometry,
    io_error,
};

/// What one pump of a side achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Moved bytes or batches; pump again.
    Progress,
    /// Waiting: a waker is registered, or the other side must free a buffer first.
    Blocked,
    /// This side is finished.
    Done,
}

pub(crate) struct Pipe<'a, F> {
    pub(crate) framer: F,
    /// `None` once the last batch was submitted (dropping it closes the stream's input).
    sub: Option<Submitter>,
    done: Completions,
    free: Vec<Batch>,
    filling: Option<Batch>,
    out: Option<Batch>,
    out_pos: usize,
    in_flight: usize,
    pub(crate) stats: StreamStats,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
    cancel: Option<CancelToken>,
    /// Where the batch buffers come from and go back to, if shared.
    buffers: Option<BatchBuffers>,
    /// Bytes of every batch buffer of this stream.
    batch_len: usize,
    /// Authenticated plaintext pieces of the batch last handed out whole
    /// ([`Pipe::pull_opened`]), still to be returned, then that batch's error if any.
    opened: std::collections::VecDeque<Bytes>,
    opened_error: Option<Error>,
}

impl<'a, F: Framer> Pipe<'a, F> {
    pub(crate) fn new(
        cipher: &PayloadCipher,
        chunk_size: u32,
        framer: F,
        opts: &EngineOptions<'_>,
        progress: Option<&'a (dyn Fn(u64) + Sync)>,
    ) -> Result<Self> {
        let pool = opts.resolve_pool()?;
        let (window, cpb) = geometry(chunk_size, opts);
        let cs = chunk_size as usize;
        let (sub, done) = pool.stream(cipher, cs, F::OP, window);
        let buffers = opts.buffers.cloned();
        let batch_len = cpb * (cs + TAG_LEN);
        let free = (0..window)
            .map(|_| Batch::from_buf(new_buf(buffers.as_ref(), batch_len)))
            .collect();
        Ok(Pipe {
            framer,
            sub: Some(sub),
            done,
            free,
            filling: None,
            out: None,
            out_pos: 0,
            in_flight: 0,
            stats: StreamStats::default(),
            progress,
            cancel: opts.cancel.cloned(),
            buffers,
            batch_len,
            opened: std::collections::VecDeque::new(),
            opened_error: None,
        })
    }

    fn check_cancel(&self) -> Result<()> {
        if self.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            return Err(Error::stream_cancelled());
        }
        Ok(())
    }

    /// Buffers on the free list.
    pub(crate) fn free_buffers(&self) -> usize {
        self.free.len()
    }

    /// True when every submitted batch was written or read out.
    pub(crate) fn drained(&self) -> bool {
        self.in_flight == 0 && self.out.is_none()
    }

    /// The batch being filled, starting one from the free list if needed (`None` when no
    /// buffer is free), with the framer that fills it.
    fn filling(&mut self) -> Option<(&mut F, &mut Batch)> {
        if self.filling.is_none() {
            let mut b = self.free.pop()?;
            self.framer.begin(&mut b);
            self.filling = Some(b);
        }
        Some((&mut self.framer, self.filling.as_mut()?))
    }

    /// Closes the batch being filled and hands it to the workers.
    pub(crate) fn submit_filling(&mut self, eof: bool) -> Result<()> {
        let Some(mut b) = self.filling.take() else {
            return Err(crate::stream::internal("no batch to submit"));
        };
        self.framer.finish_batch(&mut b, eof)?;
        if let Some(s) = self.sub.as_mut() {
            s.submit(b);
            self.in_flight += 1;
        }
        if eof {
            self.sub = None;
        }
        Ok(())
    }

    /// Push input: copies what fits of `data` (0 only when no buffer is free). A full batch
    /// is submitted as non-final here, because `data` proves that more input follows.
    pub(crate) fn push_input(&mut self, data: &[u8]) -> Result<usize> {
        self.check_cancel()?;
        if data.is_empty() {
            return Ok(0);
        }
        if self
            .filling
            .as_ref()
            .is_some_and(|b| self.framer.is_full(b))
        {
            self.submit_filling(false)?;
        }
        Ok(self.filling().map_or(0, |(framer, b)| framer.fill(b, data)))
    }

    /// Push input, end: submits the final batch (an empty input gets its one empty chunk).
    /// `Ok(false)` when no buffer is free yet.
    pub(crate) fn finish_input(&mut self) -> Result<bool> {
        self.check_cancel()?;
        if self.sub.is_none() {
            return Ok(true);
        }
        if self.filling().is_none() {
            return Ok(false);
        }
        self.submit_filling(true)?;
        Ok(true)
    }

    /// Pull input: reads into free batches and submits them until `max` batches were
    /// submitted, the reader is pending, no buffer is free, or the input ended.
    pub(crate) fn pull_input<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        max: usize,
    ) -> Result<Step> {
        let mut step = Step::Blocked;
        let mut submitted = 0;
        loop {
            if submitted == max {
                return Ok(Step::Progress);
            }
            if self.sub.is_none() {
                return Ok(Step::Done);
            }
            self.check_cancel()?;
            let Some((framer, b)) = self.filling() else {
                return Ok(step);
            };
            if framer.is_full(b) {
                // One byte past a full batch tells whether more input follows.
                let mut one = [0u8; 1];
                let mut rb = ReadBuf::new(&mut one);
                match Pin::new(&mut *r).poll_read(cx, &mut rb) {
                    Poll::Pending => return Ok(step),
                    Poll::Ready(Err(e)) => return Err(io_error("reading input", e)),
                    Poll::Ready(Ok(())) => {}
                }
                let eof = rb.filled().is_empty();
                if !eof {
                    framer.set_lookahead(one[0]);
                }
                self.submit_filling(eof)?;
                submitted += 1;
                step = Step::Progress;
                continue;
            }
            let spare = framer.spare(b);
            let mut rb = ReadBuf::new(spare);
            match Pin::new(&mut *r).poll_read(cx, &mut rb) {
                Poll::Pending => return Ok(step),
                Poll::Ready(Err(e)) => return Err(io_error("reading input", e)),
                Poll::Ready(Ok(())) => {}
            }
            let n = rb.filled().len();
            step = Step::Progress;
            if n == 0 {
                self.submit_filling(true)?;
                submitted += 1;
            } else {
                framer.advance(b, n);
            }
        }
    }

    /// Takes the next finished batch into `out` (`Done` when there is none left).
    fn next_out(&mut self, cx: &mut Context<'_>) -> Step {
        if self.out.is_some() {
            return Step::Progress;
        }
        match self.done.poll_next(cx) {
            Poll::Pending => Step::Blocked,
            Poll::Ready(None) => Step::Done,
            Poll::Ready(Some(mut b)) => {
                self.in_flight -= 1;
                let rel = self.framer.release(&mut b);
                self.stats.plaintext_bytes += rel.output;
                self.stats.chunks += rel.chunks;
                if let Some(p) = self.progress {
                    p(rel.progress);
                }
                self.out_pos = b.out.start;
                self.out = Some(b);
                Step::Progress
            }
        }
    }

    /// After the out batch is fully delivered: its error, or its buffer back to the list.
    fn retire_out(&mut self) -> Result<()> {
        if let Some(mut b) = self.out.take() {
            if let Some((_, e)) = b.error.take() {
                return Err(e);
            }
            self.free.push(b);
        }
        Ok(())
    }

    /// Push output: writes finished batches, in order, to `w`, until `max` batches were
    /// written out, `w` is pending or no finished batch is waiting.
    pub(crate) fn push_output<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut W,
        max: usize,
    ) -> Result<Step> {
        let mut step = Step::Blocked;
        let mut retired = 0;
        loop {
            if retired == max {
                return Ok(Step::Progress);
            }
            match self.next_out(cx) {
                Step::Progress => {}
                Step::Blocked => return Ok(step),
                Step::Done => return Ok(Step::Done),
            }
            self.check_cancel()?;
            let Some(b) = self.out.as_ref() else {
                return Ok(step);
            };
            if self.out_pos < b.out.end {
                let piece = self.framer.piece(b, self.out_pos);
                match Pin::new(&mut *w).poll_write(cx, piece) {
                    Poll::Pending => return Ok(step),
                    Poll::Ready(Err(e)) => return Err(io_error("writing output", e)),
                    Poll::Ready(Ok(0)) => {
                        return Err(io_error(
                            "writing output",
                            io::Error::from(io::ErrorKind::WriteZero),
                        ));
                    }
                    Poll::Ready(Ok(n)) => self.out_pos += n,
                }
            } else {
                self.retire_out()?;
                retired += 1;
            }
            step = Step::Progress;
        }
    }

    /// Pull output: copies released bytes into `buf`. `Progress` when some were copied.
    pub(crate) fn pull_output(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Result<Step> {
        loop {
            match self.next_out(cx) {
                Step::Progress => {}
                other => return Ok(other),
            }
            self.check_cancel()?;
            let Some(b) = self.out.as_ref() else {
                return Ok(Step::Blocked);
            };
            if self.out_pos < b.out.end {
                let piece = self.framer.piece(b, self.out_pos);
                let n = piece.len().min(buf.remaining());
                buf.put_slice(&piece[..n]);
                self.out_pos += n;
                return Ok(Step::Progress);
            }
            self.retire_out()?;
        }
    }

    /// Drives a whole stream from `r` to `w` (the drivers), one batch in and one batch out
    /// in turn: the workers get the next batch as soon as a buffer comes back, instead of
    /// idling while this task writes out every finished batch before reading again (one
    /// task does both copies, so their order decides how busy the workers stay).
    pub(crate) fn poll_run<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        w: &mut W,
    ) -> Poll<Result<StreamStats>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        loop {
            let a = self.pull_input(cx, r, 1)?;
            let b = self.push_output(cx, w, 1)?;
            if b == Step::Done {
                return match Pin::new(&mut *w).poll_flush(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Err(io_error("writing output", e))),
                    Poll::Ready(Ok(())) => Poll::Ready(Ok(self.stats)),
                };
            }
            if a != Step::Progress && b != Step::Progress {
                return Poll::Pending;
            }
        }
    }
}

/// A batch buffer: from the shared buffers when there are some, else a new allocation.
fn new_buf(buffers: Option<&BatchBuffers>, len: usize) -> Vec<u8> {
    match buffers {
        Some(b) => b.take(len),
        None => vec![0u8; len],
    }
}

impl<F> Drop for Pipe<'_, F> {
    fn drop(&mut self) {
        // The buffers this side holds go back to the shared ones (those still with the
        // workers are freed where they are).
        if let Some(p) = &self.buffers {
            for b in self
                .free
                .drain(..)
                .chain(self.filling.take())
                .chain(self.out.take())
            {
                p.give(b.buf);
            }
        }
    }
}

/// A sealed batch's buffer handed out as `Bytes`: back to the shared buffers (if any) when
/// the last reference is dropped.
struct Recycled {
    buf: Vec<u8>,
    buffers: Option<BatchBuffers>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        if let Some(p) = &self.buffers {
            p.give(std::mem::take(&mut self.buf));
        }
    }
}

impl<F> Pipe<'_, F> {
    /// A finished batch's buffer handed out as `Bytes` (the zero-copy pulls below): a new
    /// buffer takes its place in the window (from the shared buffers when there are some;
    /// else one is allocated per batch), and it goes back to the shared buffers once its
    /// last piece is dropped.
    fn hand_out(&mut self, mut b: Batch) -> Bytes {
        let fresh = new_buf(self.buffers.as_ref(), self.batch_len);
        let buf = std::mem::replace(&mut b.buf, fresh);
        self.free.push(b);
        Bytes::from_owner(Recycled {
            buf,
            buffers: self.buffers.clone(),
        })
    }
}

impl Pipe<'_, SealFramer> {
    /// Pull output without a copy: the next sealed batch's bytes as `Bytes` that own the
    /// batch's buffer, whose place in the window a new buffer takes (from the shared
    /// buffers when there are some; else this allocates one per batch). `Ready(None)` at
    /// the end of the stream.
    pub(crate) fn pull_sealed(&mut self, cx: &mut Context<'_>) -> Result<Poll<Option<Bytes>>> {
        loop {
            match self.next_out(cx) {
                Step::Progress => {}
                Step::Blocked => return Ok(Poll::Pending),
                Step::Done => return Ok(Poll::Ready(None)),
            }
            self.check_cancel()?;
            let Some(mut b) = self.out.take() else {
                return Ok(Poll::Pending);
            };
            if let Some((_, e)) = b.error.take() {
                self.free.push(b);
                return Err(e);
            }
            let range = self.out_pos.min(b.out.end)..b.out.end;
            if range.is_empty() {
                self.free.push(b);
                continue;
            }
            return Ok(Poll::Ready(Some(self.hand_out(b).slice(range))));
        }
    }
}

impl Pipe<'_, OpenFramer> {
    /// Pull output without a copy: the next piece of authenticated plaintext (the rest of
    /// one chunk) as `Bytes` sharing the opened batch's buffer, whose place in the window a
    /// new buffer takes (from the shared buffers when there are some); the buffer goes back
    /// to the shared buffers once its last piece is dropped. Only chunks that authenticated
    /// are handed out (the framer's release); a batch's error comes after its good pieces.
    /// `Ready(None)` at the end of the stream.
    pub(crate) fn pull_opened(&mut self, cx: &mut Context<'_>) -> Result<Poll<Option<Bytes>>> {
        loop {
            if let Some(piece) = self.opened.pop_front() {
                return Ok(Poll::Ready(Some(piece)));
            }
            if let Some(e) = self.opened_error.take() {
                return Err(e);
            }
            match self.next_out(cx) {
                Step::Progress => {}
                Step::Blocked => return Ok(Poll::Pending),
                Step::Done => return Ok(Poll::Ready(None)),
            }
            self.check_cancel()?;
            let Some(mut b) = self.out.take() else {
                return Ok(Poll::Pending);
            };
            let error = b.error.take().map(|(_, e)| e);
            let ranges = self.framer.piece_ranges(&b);
            if ranges.is_empty() {
                self.free.push(b);
                if let Some(e) = error {
                    return Err(e);
                }
                continue;
            }
            let all = self.hand_out(b);
            self.opened.extend(ranges.into_iter().map(|r| all.slice(r)));
            self.opened_error = error;
        }
    }
}
