//! The blocking driver: a scoped reader thread fills batches from the caller's `Read` and
//! submits them to the pool; the calling thread takes them back in order and writes them
//! to the caller's `Write`, then recycles the buffer. Reading and writing run in parallel
//! (on two cores the kernel copies of both sides are half the work).

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::framer::{Batch, Framer};
use super::{Completions, EngineOptions, StreamStats, Submitter, geometry, internal, io_error};
use crate::error::{Error, Result};
use crate::format::TAG_LEN;
use crate::primitives::stream::PayloadCipher;

/// Most output pieces handed to one vectored write (well under Linux's IOV_MAX of 1024).
const IOV_BATCH: usize = 64;

pub(super) fn run<F, R, W>(
    cipher: &PayloadCipher,
    chunk_size: u32,
    framer: F,
    input: R,
    mut output: W,
    opts: &EngineOptions<'_>,
) -> Result<StreamStats>
where
    F: Framer + Clone,
    R: Read + Send,
    W: Write,
{
    if opts.is_cancelled() {
        return Err(Error::stream_cancelled());
    }
    let pool = opts.resolve_pool()?;
    let (window, cpb) = geometry(chunk_size, opts);
    let cs = chunk_size as usize;
    let (submitter, mut done) = pool.stream(cipher, cs, F::OP, window);
    // The reader's framer decides geometry and indices; the writer's copy only decides
    // what to release (the two use disjoint parts of its state).
    let mut out_framer = framer.clone();

    std::thread::scope(|s| {
        let (free_tx, free_rx) = sync_channel::<Batch>(window);
        for _ in 0..window {
            // The channel has room for exactly `window` batches.
            if free_tx.send(Batch::new(cpb * (cs + TAG_LEN))).is_err() {
                return Err(internal("buffer pool closed during start-up"));
            }
        }
        let cancel = opts.cancel;
        let reader = s.spawn(move || read_loop(input, framer, free_rx, submitter, cancel));
        let written = write_loop(&mut output, &mut out_framer, &mut done, free_tx, opts);
        if written.is_err() {
            // Workers skip what is still queued; the reader stops at its next batch.
            done.cancel();
        }
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(internal("reader thread panicked")));
        let stats = written?;
        read?;
        output.flush().map_err(|e| io_error("writing output", e))?;
        Ok(stats)
    })
}

/// Reads into `buf` until it is full or the input ends; returns bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("reading input", e)),
        }
    }
    Ok(got)
}

/// Fills batches and submits them; dropping the submitter on return tells the writer that
/// nothing more comes.
fn read_loop<F: Framer, R: Read>(
    mut input: R,
    mut framer: F,
    free_rx: Receiver<Batch>,
    mut submitter: Submitter,
    cancel: Option<&super::CancelToken>,
) -> Result<()> {
    loop {
        if cancel.is_some_and(super::CancelToken::is_cancelled) {
            return Err(Error::stream_cancelled());
        }
        let Ok(mut b) = free_rx.recv() else {
            return Ok(()); // the writer stopped; it reports why
        };
        framer.begin(&mut b);
        let mut eof = false;
        loop {
            let spare = framer.spare(&mut b);
            if spare.is_empty() {
                break;
            }
            let want = spare.len();
            let n = read_full(&mut input, spare)?;
            framer.advance(&mut b, n);
            if n < want {
                // read_full only stops early at end of input.
                eof = true;
                break;
            }
        }
        if !eof {
            // One byte past a full batch tells whether more input follows; it becomes the
            // first byte of the next batch.
            let mut one = [0u8; 1];
            if read_full(&mut input, &mut one)? == 0 {
                eof = true;
            } else {
                framer.set_lookahead(one[0]);
            }
        }
        framer.finish_batch(&mut b, eof)?;
        submitter.submit(b);
        if eof {
            return Ok(());
        }
    }
}

/// `Write::write_all` for several buffers (std's `write_all_vectored` is not stable yet).
///
/// Writers without a real vectored write take one buffer per call, as `write_all` would.
fn write_all_vectored<W: Write>(w: &mut W, mut bufs: &mut [io::IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_loop<F: Framer, W: Write>(
    output: &mut W,
    framer: &mut F,
    done: &mut Completions,
    free_tx: SyncSender<Batch>,
    opts: &EngineOptions<'_>,
) -> Result<StreamStats> {
    let mut stats = StreamStats::default();
    loop {
        let Some(mut b) = done.wait(opts.cancel)? else {
            return Ok(stats); // the reader finished (or failed: the caller checks)
        };
        if opts.is_cancelled() {
            return Err(Error::stream_cancelled());
        }
        let rel = framer.release(&mut b);
        // The output pieces (for open: the authenticated plaintext of each chunk, tags
        // between them skipped) go out in vectored writes of up to IOV_BATCH pieces: one
        // system call per batch for the usual geometry, and no copy into a buffered
        // writer's buffer, which would cost this thread a memcpy of every byte.
        let mut iov = [io::IoSlice::new(&[]); IOV_BATCH];
        let mut k = 0;
        let mut pos = b.out.start;
        while pos < b.out.end {
            let piece = framer.piece(&b, pos);
            pos += piece.len();
            iov[k] = io::IoSlice::new(piece);
            k += 1;
            if k == IOV_BATCH {
                write_all_vectored(output, &mut iov[..k])
                    .map_err(|e| io_error("writing output", e))?;
                k = 0;
            }
        }
        if k > 0 {
            write_all_vectored(output, &mut iov[..k]).map_err(|e| io_error("writing output", e))?;
        }
        stats.plaintext_bytes += rel.output;
        stats.chunks += rel.chunks;
        if let Some(p) = opts.progress {
            p(rel.progress);
        }
        if let Some((_, e)) = b.error.take() {
            return Err(e);
        }
        // The reader may already have finished and dropped its end; keep draining.
        let _ = free_tx.send(b);
    }
}
