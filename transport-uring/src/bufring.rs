//! The provided buffer ring that multishot receives take their buffers from (used by the ring
//! thread, and by the probe, which checks that the kernel accepts one).
//!
//! One ring of `entries` buffers of `size` bytes serves every accepted connection: the kernel
//! picks a buffer when data arrives (so idle connections pin no memory), the completion names
//! it, the driver copies the bytes into the connection's frame assembler and hands the buffer
//! straight back. Copying costs one memcpy per received byte but lets every frame be its own
//! `Bytes` (the engine keeps frames alive while it works on them; lending ring buffers to it
//! would starve the ring). If the ring runs dry, multishot receives end with `ENOBUFS` and the
//! driver re-arms them after recycling.
//!
//! Memory: the ring of descriptors is page-aligned as the kernel requires; the buffers are one
//! allocation. Both are raw allocations, never Rust references while the kernel owns a
//! buffer, and are freed only after the ring is unregistered and no receive is in flight
//! (the driver leaks them otherwise, see its shutdown).

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;
use io_uring::types::BufRingEntry;

/// Largest ring the kernel accepts.
pub(crate) const MAX_ENTRIES: u32 = 32768;
const PAGE: usize = 4096;

/// A registered provided-buffer ring.
pub(crate) struct BufRing {
    ring: NonNull<BufRingEntry>,
    ring_layout: Layout,
    bufs: NonNull<u8>,
    bufs_layout: Layout,
    entries: u16,
    size: u32,
    /// Our copy of the tail (the kernel reads the shared one).
    tail: u16,
    bgid: u16,
    registered: bool,
}

impl BufRing {
    /// Allocates `entries` (a power of two, at most [`MAX_ENTRIES`]) buffers of `size` bytes and
    /// registers them as group `bgid`.
    pub(crate) fn register(submitter: &Submitter<'_>, entries: u32, size: u32, bgid: u16) -> io::Result<Self> {
        if !entries.is_power_of_two() || entries > MAX_ENTRIES || size == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "buffer ring: bad entries or size"));
        }
        let entries16 = u16::try_from(entries).unwrap_or(u16::MAX);
        let ring_bytes = (entries as usize * size_of::<BufRingEntry>()).max(PAGE);
        let ring_layout = Layout::from_size_align(ring_bytes, PAGE).map_err(io::Error::other)?;
        let total =
            (entries as usize).checked_mul(size as usize).ok_or_else(|| io::Error::other("buffer ring too large"))?;
        let bufs_layout = Layout::from_size_align(total, 64).map_err(io::Error::other)?;
        #[allow(unsafe_code)]
        // SAFETY: both layouts have a non-zero size; null results are handled.
        let (ring, bufs) = unsafe { (alloc_zeroed(ring_layout), alloc_zeroed(bufs_layout)) };
        let (Some(ring), Some(bufs)) = (NonNull::new(ring.cast::<BufRingEntry>()), NonNull::new(bufs)) else {
            #[allow(unsafe_code)]
            // SAFETY: each non-null pointer came from `alloc_zeroed` with its layout.
            unsafe {
                if !ring.is_null() {
                    dealloc(ring, ring_layout);
                }
                if !bufs.is_null() {
                    dealloc(bufs, bufs_layout);
                }
            }
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        let mut me =
            Self { ring, ring_layout, bufs, bufs_layout, entries: entries16, size, tail: 0, bgid, registered: false };
        #[allow(unsafe_code)]
        // SAFETY: the ring memory is page-aligned, holds `entries` descriptors, and stays
        // allocated until `Drop`, which frees it only after unregistering (or leaks it).
        unsafe {
            submitter.register_buf_ring_with_flags(me.ring.as_ptr() as u64, entries16, bgid, 0)?;
        }
        me.registered = true;
        for bid in 0..entries16 {
            me.push(bid);
        }
        me.publish();
        Ok(me)
    }

    /// The buffer group id.
    pub(crate) fn group(&self) -> u16 {
        self.bgid
    }

    /// The first `len` bytes of buffer `bid`, which a completion just handed to us. `None` if
    /// the completion is inconsistent (never trusted blindly).
    pub(crate) fn data(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= self.entries || len > self.size as usize {
            return None;
        }
        #[allow(unsafe_code)]
        // SAFETY: `bid < entries` and `len <= size`, so the range lies inside the buffer
        // allocation. The kernel filled this buffer and will not touch it again until
        // `recycle(bid)` publishes it, which needs `&mut self` and so cannot happen while the
        // returned slice lives.
        Some(unsafe { std::slice::from_raw_parts(self.bufs.as_ptr().add(bid as usize * self.size as usize), len) })
    }

    /// Hands buffer `bid` back to the kernel.
    pub(crate) fn recycle(&mut self, bid: u16) {
        if bid < self.entries {
            self.push(bid);
            self.publish();
        }
    }

    /// Writes the descriptor of buffer `bid` at our tail (not yet visible to the kernel).
    fn push(&mut self, bid: u16) {
        let mask = self.entries - 1;
        let index = usize::from(self.tail & mask);
        #[allow(unsafe_code)]
        // SAFETY: `index < entries`, inside the ring allocation. The kernel only reads
        // descriptors between its head and the published tail; this one is past the published
        // tail, so nobody else accesses it now.
        let entry = unsafe { &mut *self.ring.as_ptr().add(index) };
        entry.set_addr(self.bufs.as_ptr() as u64 + u64::from(bid) * u64::from(self.size));
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes pushed descriptors visible to the kernel.
    fn publish(&self) {
        #[allow(unsafe_code)]
        // SAFETY: the tail field lives in the first descriptor (inside the ring allocation),
        // is 2-byte aligned, and the kernel only reads it, so an atomic store is the right way
        // to publish; Release orders the descriptor writes before it.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.as_ptr()) as *mut u16;
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    /// Unregisters the ring (before freeing its memory).
    pub(crate) fn unregister(&mut self, submitter: &Submitter<'_>) {
        if self.registered {
            match submitter.unregister_buf_ring(self.bgid) {
                Ok(()) => self.registered = false,
                Err(e) => tracing::warn!("unregistering the io_uring buffer ring: {e}"),
            }
        }
    }

    /// Gives up the memory without freeing it (receives may still be in flight after a
    /// failed shutdown: leaking is the only sound choice).
    pub(crate) fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.registered {
            // Still registered: the kernel may still use the memory. Leak it.
            return;
        }
        #[allow(unsafe_code)]
        // SAFETY: allocated in `register` with these layouts; the ring is unregistered and the
        // driver drops it only once no receive is in flight.
        unsafe {
            dealloc(self.ring.as_ptr().cast(), self.ring_layout);
            dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}
