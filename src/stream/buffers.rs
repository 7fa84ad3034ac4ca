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
/// Memory stays bounded: at most `max_idle_bytes` of idle buffers are kept (more are freed
/// as they come back), and the buffers in use are what the streams would have allocated
/// anyway. A reused buffer still holds an earlier batch's bytes, as the buffers a stream
/// recycles between its own batches always did: the framers only ever release bytes
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
    bufs: Vec<Vec<u8>>,
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

    /// A buffer of exactly `len` bytes: a kept one if there is one of that length (its
    /// contents are an earlier batch's), else a new zeroed allocation.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        {
            let mut idle = self.lock();
            if let Some(i) = idle.bufs.iter().rposition(|b| b.len() == len) {
                idle.bytes -= len;
                return idle.bufs.swap_remove(i);
            }
        }
        vec![0u8; len]
    }

    /// Takes `buf` back: kept if the idle cap allows, else freed.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn give(&self, buf: Vec<u8>) {
        let len = buf.len();
        if len == 0 {
            return;
        }
        let mut idle = self.lock();
        if idle.bytes + len <= self.inner.max_idle_bytes {
            idle.bytes += len;
            idle.bufs.push(buf);
        }
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
        // Another length: not this buffer.
        assert_eq!(p.take(999).len(), 999);
        let b = p.take(1000);
        assert_eq!(b.as_ptr(), a_ptr, "the kept buffer is reused");
        assert_eq!(p.idle_bytes(), 0);
        // The cap: a fourth buffer is freed, not kept.
        for _ in 0..4 {
            p.give(vec![1u8; 1000]);
        }
        assert_eq!(p.idle_bytes(), 3000);
        p.give(vec![1u8; 4000]);
        assert_eq!(p.idle_bytes(), 3000);
    }
}
