//! Batch buffers recycled between streams (a service's many short streams).

use std::sync::{Arc, Mutex};

/// Batch buffers shared and recycled between streams, with a cap on what is kept idle.
///
/// Exists for services that run many short streams at once (the S3 gateway runs one per
/// request, i.e. per 8 MiB part of a multipart upload or per ranged GET): without it every
/// stream allocates and zeroes its `2T + 2` batches and frees them at its end, and the
/// allocator hands back fresh pages to the next request (page faults, kernel page
/// clearing, memset on every request). A stream given these buffers
/// ([`super::EngineOptions::buffers`]) takes its batches from here and gives them back when
/// it ends, and so do the buffers it hands out without a copy
/// (`aio::EncryptReader::into_sealed_stream` and `aio::DecryptReader::into_opened_stream`,
/// feature `async`) once their last reference is dropped.
///
/// Memory stays bounded: at most `max_idle_bytes` of idle buffers (by capacity) are kept;
/// a buffer given back when the idle ones are at the cap pushes out the oldest ones, so the
/// kept buffers follow what the service does now (a burst of uploads leaves 256 KiB
/// batches behind; the ranged GETs that follow still find theirs instead of allocating
/// and zeroing per request while the idle list is full of another size). The buffers in
/// use are what the streams would have allocated anyway. A buffer of the asked length is
/// taken first, else the smallest larger one, resized within its capacity (no allocation,
/// no page fault). A reused buffer still holds an earlier batch's bytes, as the buffers a
/// stream recycles between its own batches always did: the framers only ever release bytes
/// written (and sealed or authenticated) in the current batch. Not zeroing them saves a
/// memset per batch (2 % of the gateway's CPU in a boto3 upload). Used by the async
/// pipelines (`crate::aio`); the blocking driver allocates its own. Cloning is cheap (a
/// reference count).
#[derive(Clone)]
pub struct BatchBuffers {
    inner: Arc<Inner>,
}

struct Inner {
    max_idle_bytes: usize,
    idle: Mutex<Idle>,
}

// Only the async pipelines (feature `async`) take and give buffers; the core-only build
// keeps the type (it is part of `EngineOptions`) without a user.
#[derive(Default)]
#[cfg_attr(not(feature = "async"), allow(dead_code))]
struct Idle {
    /// Oldest first.
    bufs: std::collections::VecDeque<Vec<u8>>,
    /// Sum of the kept buffers' capacities.
    bytes: usize,
}

impl std::fmt::Debug for BatchBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuffers")
            .field("max_idle_bytes", &self.inner.max_idle_bytes)
            .field("idle_bytes", &self.idle_bytes())
            .finish()
    }
}

impl BatchBuffers {
    /// Keeps at most `max_idle_bytes` of idle buffers for reuse.
    pub fn new(max_idle_bytes: usize) -> BatchBuffers {
        BatchBuffers {
            inner: Arc::new(Inner {
                max_idle_bytes,
                idle: Mutex::new(Idle::default()),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        // A poisoned lock only means a thread panicked while holding it; the list is
        // always consistent (a push or a swap_remove and a counter).
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes of idle buffers kept now (for tests and metrics).
    pub fn idle_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// A buffer of exactly `len` bytes: a kept one of that length if there is one, else
    /// the smallest kept one large enough, resized within its capacity (its contents are
    /// an earlier batch's; only the growth, if any, is zeroed), else a new zeroed
    /// allocation.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        let found = {
            let mut idle = self.lock();
            let i = idle.bufs.iter().rposition(|b| b.len() == len).or_else(|| {
                (0..idle.bufs.len())
                    .filter(|&i| idle.bufs[i].capacity() >= len)
                    .min_by_key(|&i| idle.bufs[i].capacity())
            });
            let buf = i.and_then(|i| idle.bufs.remove(i));
            if let Some(b) = &buf {
                idle.bytes -= b.capacity();
            }
            buf
        };
        match found {
            Some(mut buf) => {
                buf.resize(len, 0);
                buf
            }
            None => vec![0u8; len],
        }
    }

    /// Takes `buf` back: kept, pushing out the oldest kept buffers if the idle cap needs
    /// room (one larger than the cap is freed).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn give(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap == 0 || cap > self.inner.max_idle_bytes {
            return;
        }
        let mut evicted = Vec::new();
        {
            let mut idle = self.lock();
            while idle.bytes.saturating_add(cap) > self.inner.max_idle_bytes {
                let Some(old) = idle.bufs.pop_front() else {
                    break;
                };
                idle.bytes -= old.capacity();
                evicted.push(old);
            }
            idle.bytes += cap;
            idle.bufs.push_back(buf);
        }
        // Freed outside the lock.
        drop(evicted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycles_buffers_of_the_same_length_within_the_cap() {
        let p = BatchBuffers::new(3 * 1000);
        let mut a = p.take(1000);
        a[0] = 7;
        let a_ptr = a.as_ptr();
        p.give(a);
        assert_eq!(p.idle_bytes(), 1000);
        // A longer one: not this buffer (too small).
        assert_eq!(p.take(1001).len(), 1001);
        let b = p.take(1000);
        assert_eq!(b.as_ptr(), a_ptr, "the kept buffer is reused");
        assert_eq!(b[0], 7, "not zeroed again");
        assert_eq!(p.idle_bytes(), 0);
        // The cap: a fourth buffer pushes out the oldest, not itself.
        let bufs: Vec<Vec<u8>> = (0..4).map(|_| vec![1u8; 1000]).collect();
        let ptrs: Vec<*const u8> = bufs.iter().map(|b| b.as_ptr()).collect();
        for b in bufs {
            p.give(b);
        }
        assert_eq!(p.idle_bytes(), 3000);
        let kept_bufs: Vec<Vec<u8>> = (0..3).map(|_| p.take(1000)).collect();
        let kept: Vec<*const u8> = kept_bufs.iter().map(|b| b.as_ptr()).collect();
        assert!(!kept.contains(&ptrs[0]), "the oldest was pushed out");
        assert!(
            ptrs[1..].iter().all(|q| kept.contains(q)),
            "the newest three kept"
        );
        // One larger than the cap is not kept at all.
        p.give(vec![1u8; 4000]);
        assert_eq!(p.idle_bytes(), 0);
    }

    #[test]
    fn a_smaller_request_reuses_a_larger_idle_buffer() {
        let p = BatchBuffers::new(1 << 20);
        let big = vec![3u8; 4000];
        let big_ptr = big.as_ptr();
        p.give(big);
        p.give(vec![3u8; 8000]);
        // No buffer of 1000 bytes: the smallest large enough one, shortened.
        let small = p.take(1000);
        assert_eq!((small.len(), small.as_ptr()), (1000, big_ptr));
        assert_eq!(p.idle_bytes(), 8000);
        // Back and grown again within its capacity: the same memory, the growth zeroed.
        p.give(small);
        assert_eq!(p.idle_bytes(), 12_000, "counted by capacity");
        let again = p.take(4000);
        assert_eq!(again.as_ptr(), big_ptr);
        assert_eq!((again[999], again[1000]), (3, 0));
    }
}
