//! A small pool of large byte buffers that come back when the last [`Bytes`] viewing them is
//! dropped.
//!
//! Why: a 1 MB message is copied into a fresh 1 MB frame buffer at each send and read into a
//! fresh one at each receive; the allocator hands such buffers back to the kernel on free, so
//! every message page-faulted several megabytes back in (about 800 faults per megabyte moved,
//! 12% of CPU at 1 MB). A buffer taken from a [`BufPool`] and frozen with
//! [`BufPool::freeze`] returns to the pool instead, from whichever thread drops it last.
//!
//! The pool is bounded (a number of idle buffers and their total capacity; extras are freed),
//! and hands out a buffer only if its capacity is at most twice the size asked for: receivers
//! keep payloads as slices of the frame they came in, so an oversized buffer would pin memory
//! for as long as any of its messages is retained.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;

/// A shareable pool of idle buffers (cloning shares the pool).
#[derive(Clone, Debug)]
pub struct BufPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    idle: ArrayQueue<Vec<u8>>,
    /// Total capacity of the idle buffers, at most `max_bytes`.
    idle_bytes: AtomicUsize,
    max_bytes: usize,
}

impl Inner {
    fn give_back(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        if self.idle_bytes.fetch_add(cap, Ordering::Relaxed) + cap > self.max_bytes {
            self.idle_bytes.fetch_sub(cap, Ordering::Relaxed);
            return;
        }
        if let Err(buf) = self.idle.push(buf) {
            self.idle_bytes.fetch_sub(buf.capacity(), Ordering::Relaxed);
        }
    }

    fn pop(&self) -> Option<Vec<u8>> {
        let buf = self.idle.pop()?;
        self.idle_bytes.fetch_sub(buf.capacity(), Ordering::Relaxed);
        Some(buf)
    }
}

/// A buffer on loan from a pool: the owner behind a frozen [`Bytes`].
struct Loaned {
    buf: Vec<u8>,
    pool: Arc<Inner>,
}

impl AsRef<[u8]> for Loaned {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Loaned {
    fn drop(&mut self) {
        // A full pool frees the buffer instead.
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

impl BufPool {
    /// A pool keeping at most `max_idle` idle buffers (at least one) of at most `max_bytes`
    /// total capacity.
    pub fn new(max_idle: usize, max_bytes: usize) -> Self {
        let inner = Inner { idle: ArrayQueue::new(max_idle.max(1)), idle_bytes: AtomicUsize::new(0), max_bytes };
        Self { inner: Arc::new(inner) }
    }

    /// An empty buffer with room for `len` bytes: an idle one of capacity `len..=2·len` if the
    /// pool has one at hand, else a new one. (An idle buffer that does not fit is freed, so that
    /// the pool follows the sizes in use.)
    pub fn take(&self, len: usize) -> Vec<u8> {
        if let Some(mut buf) = self.inner.pop()
            && buf.capacity() >= len
            && buf.capacity() / 2 <= len
        {
            buf.clear();
            return buf;
        }
        Vec::with_capacity(len)
    }

    /// Idle buffers as they were left by their last user (contents kept): for callers that
    /// rewrite only part of a buffer on reuse. `None` if the pool is empty.
    pub fn take_as_left(&self) -> Option<Vec<u8>> {
        self.inner.pop()
    }

    /// `buf` as [`Bytes`] that give it back to this pool once the last of them is dropped.
    pub fn freeze(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Loaned { buf, pool: self.inner.clone() })
    }

    /// Idle buffers now in the pool.
    pub fn idle(&self) -> usize {
        self.inner.idle.len()
    }

    /// Total capacity of the idle buffers.
    pub fn idle_bytes(&self) -> usize {
        self.inner.idle_bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_when_its_last_view_is_dropped() {
        let pool = BufPool::new(2, 1 << 20);
        let mut buf = pool.take(1000);
        buf.extend_from_slice(&[7u8; 1000]);
        let ptr = buf.as_ptr();
        let bytes = pool.freeze(buf);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.idle(), 0, "a slice still views it");
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        assert_eq!(pool.idle(), 1);
        let again = pool.take(900);
        assert_eq!(again.as_ptr(), ptr, "the same allocation is reused");
        assert!(again.is_empty());
    }

    #[test]
    fn oversized_or_undersized_idle_buffers_are_not_lent() {
        let pool = BufPool::new(4, 1 << 20);
        drop(pool.freeze(Vec::with_capacity(10_000)));
        let small = pool.take(100);
        assert!(small.capacity() < 10_000, "a 10 kB buffer is not lent for 100 bytes");
        assert_eq!(pool.idle(), 0, "and it is freed");
        drop(pool.freeze(Vec::with_capacity(100)));
        assert!(pool.take(1000).capacity() >= 1000);
    }

    #[test]
    fn the_pool_keeps_at_most_max_idle_buffers() {
        let pool = BufPool::new(2, 1 << 20);
        let views: Vec<Bytes> = (0..5).map(|_| pool.freeze(pool.take(64))).collect();
        drop(views);
        assert_eq!(pool.idle(), 2);
        let bounded = BufPool::new(10, 5000);
        let views: Vec<Bytes> = (0..5).map(|_| bounded.freeze(bounded.take(2000))).collect();
        drop(views);
        assert_eq!(bounded.idle(), 2, "two 2000-byte buffers fit in 5000 bytes, three do not");
        assert!(bounded.idle_bytes() <= 5000);
        let _ = bounded.take(2000);
        assert_eq!(bounded.idle(), 1);
        assert_eq!(bounded.idle_bytes(), 2000, "the count follows buffers out of the pool");
    }

    #[test]
    fn buffers_come_back_from_other_threads() {
        let pool = BufPool::new(8, 1 << 20);
        let bytes = pool.freeze(vec![1u8; 4096]);
        std::thread::spawn(move || drop(bytes)).join().unwrap();
        assert_eq!(pool.idle(), 1);
        assert_eq!(pool.take_as_left().unwrap(), vec![1u8; 4096], "contents as left");
    }
}
