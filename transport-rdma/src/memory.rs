//! Memory that an RDMA device reads or writes behind the program's back.
//!
//! Rings and credit words are written by the network adapter while this process reads them, so
//! they cannot be ordinary `[u8]` (the compiler may assume memory it sees no store to does not
//! change). [`Memory`] is a fixed array of `AtomicU64` words whose address never changes while
//! it is registered. Words that are polled while the adapter may write them (record headers
//! and trailers, credit words) are read with atomic loads; bulk bytes are copied in and out
//! with `memcpy` through a raw pointer, only where no one else touches them meanwhile (a
//! record is copied out after its trailer was seen and before its space is handed back; a
//! record is built in staging before it is posted). Fields that both ends parse are stored
//! little-endian explicitly.

use std::sync::atomic::{AtomicU64, Ordering};

/// A zero-initialised, word-aligned, fixed-size region (see the module documentation).
#[derive(Debug)]
pub struct Memory {
    words: Box<[AtomicU64]>,
}

impl Memory {
    /// A region of at least `bytes` bytes (rounded up to a multiple of 8), all zero.
    pub fn new(bytes: usize) -> Self {
        let n = bytes.div_ceil(8);
        Self { words: (0..n).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Size in bytes (a multiple of 8).
    pub fn len(&self) -> usize {
        self.words.len() * 8
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The address of the first byte, for registration with a device. Stable for the region's
    /// life: the words are a boxed slice that is never reallocated.
    pub fn addr(&self) -> u64 {
        self.words.as_ptr() as u64
    }

    /// Word `i` as stored (little-endian fields are converted by the caller).
    pub fn load(&self, i: usize) -> u64 {
        self.words[i].load(Ordering::Relaxed)
    }

    /// Word `i` with acquire ordering: loads after it are not performed before it.
    pub fn load_acquire(&self, i: usize) -> u64 {
        self.words[i].load(Ordering::Acquire)
    }

    /// Stores word `i`.
    pub fn store(&self, i: usize, v: u64) {
        self.words[i].store(v, Ordering::Relaxed);
    }

    /// Loads the little-endian `u64` at word `i`.
    pub fn load_le(&self, i: usize) -> u64 {
        u64::from_le(self.load(i))
    }

    /// Stores `v` little-endian at word `i`.
    pub fn store_le(&self, i: usize, v: u64) {
        self.store(i, v.to_le());
    }

    /// Sets every word to zero.
    pub fn zero(&self) {
        for w in self.words.iter() {
            w.store(0, Ordering::Relaxed);
        }
    }

    /// The region as a raw byte pointer. Derived from the whole slice (so it may address any
    /// byte of it); writing through it is allowed because `AtomicU64` is an `UnsafeCell`.
    fn bytes_ptr(&self) -> *mut u8 {
        self.words.as_ptr() as *mut u8
    }

    /// Copies `src` to byte offset `at` (any alignment).
    ///
    /// A bulk copy, not word-by-word atomics.
    ///
    /// # Safety
    /// No other thread may read or write bytes `at..at + src.len()` of this region during the
    /// call, and the adapter must not be reading or writing them either (e.g. staging bytes
    /// not yet posted, or posted with a completion already reaped): a concurrent access would
    /// be a data race.
    ///
    /// # Panics
    /// If the range is outside the region.
    ///
    /// Safe code cannot call it:
    /// ```compile_fail,E0133
    /// let m = picsou_transport_rdma::memory::Memory::new(8);
    /// m.write_bytes(0, b"racy");
    /// ```
    #[allow(unsafe_code)]
    pub unsafe fn write_bytes(&self, at: usize, src: &[u8]) {
        assert!(
            at.checked_add(src.len()).is_some_and(|end| end <= self.len()),
            "write of {} bytes at {at} outside {} bytes",
            src.len(),
            self.len()
        );
        #[allow(unsafe_code)]
        // SAFETY: the destination range is inside this live allocation (checked above) and
        // cannot overlap `src`, a shared borrow of other memory; the pointer comes from the whole
        // slice of `UnsafeCell`-based atomics, so writing through a shared borrow is permitted;
        // nobody else accesses the range meanwhile (the caller's contract).
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.bytes_ptr().add(at), src.len());
        }
    }

    /// Copies bytes from offset `at` into `dst` (any alignment).
    ///
    /// A bulk copy, not word-by-word atomics.
    ///
    /// # Safety
    /// Nobody — no other thread, not the adapter — may write bytes `at..at + dst.len()` of this
    /// region during the call (e.g. a ring record after its trailer was seen and before credit
    /// is given back for it; staging already built).
    ///
    /// # Panics
    /// If the range is outside the region.
    #[allow(unsafe_code)]
    pub unsafe fn read_bytes(&self, at: usize, dst: &mut [u8]) {
        assert!(
            at.checked_add(dst.len()).is_some_and(|end| end <= self.len()),
            "read of {} bytes at {at} outside {} bytes",
            dst.len(),
            self.len()
        );
        #[allow(unsafe_code)]
        // SAFETY: the source range is inside this live allocation (checked above); `dst` is an
        // exclusive borrow of other memory, so the ranges do not overlap; nobody writes the
        // range meanwhile (the caller's contract).
        unsafe {
            std::ptr::copy_nonoverlapping(self.bytes_ptr().add(at), dst.as_mut_ptr(), dst.len());
        }
    }

    /// Appends `n` bytes from offset `at` to `out`, without zeroing `out`'s new bytes first.
    ///
    /// # Safety
    /// As [`Memory::read_bytes`]: nobody may write bytes `at..at + n` during the call.
    ///
    /// # Panics
    /// If the range is outside the region.
    #[allow(unsafe_code)]
    pub unsafe fn append_to(&self, at: usize, n: usize, out: &mut Vec<u8>) {
        assert!(
            at.checked_add(n).is_some_and(|end| end <= self.len()),
            "read of {n} bytes at {at} outside {} bytes",
            self.len()
        );
        out.reserve(n);
        let spare = out.spare_capacity_mut();
        #[allow(unsafe_code)]
        // SAFETY: the source range is inside this allocation (checked above); `spare` has room
        // for `n` bytes (reserved) and is `out`'s own unused capacity, which cannot overlap the
        // region; after the copy the first `n` spare bytes are initialised, so growing the
        // length by `n` exposes only initialised bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(self.bytes_ptr().add(at), spare.as_mut_ptr().cast::<u8>(), n);
            out.set_len(out.len() + n);
        }
    }

    /// Copies `src` to byte offset `at` word by word with atomic stores (partial words keep
    /// their other bytes): the fake device's "DMA", which runs while receivers poll the same
    /// words from other threads.
    ///
    /// # Panics
    /// If the range is outside the region.
    pub fn write_bytes_atomic(&self, at: usize, src: &[u8]) {
        assert!(at + src.len() <= self.len(), "write of {} bytes at {at} outside {} bytes", src.len(), self.len());
        let mut at = at;
        let mut src = src;
        let lead = at % 8;
        if lead != 0 && !src.is_empty() {
            let n = (8 - lead).min(src.len());
            let mut b = self.load(at / 8).to_ne_bytes();
            b[lead..lead + n].copy_from_slice(&src[..n]);
            self.store(at / 8, u64::from_ne_bytes(b));
            at += n;
            src = &src[n..];
        }
        let mut chunks = src.chunks_exact(8);
        let mut i = at / 8;
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.store(i, u64::from_ne_bytes(b));
            i += 1;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = self.load(i).to_ne_bytes();
            b[..rest.len()].copy_from_slice(rest);
            self.store(i, u64::from_ne_bytes(b));
        }
    }

    /// Copies bytes from offset `at` into `dst` word by word with atomic loads: safe whoever
    /// writes the region meanwhile (a concurrent write may be seen in part).
    ///
    /// # Panics
    /// If the range is outside the region.
    pub fn read_bytes_atomic(&self, at: usize, dst: &mut [u8]) {
        assert!(
            at.checked_add(dst.len()).is_some_and(|end| end <= self.len()),
            "read of {} bytes at {at} outside {} bytes",
            dst.len(),
            self.len()
        );
        for (k, b) in dst.iter_mut().enumerate() {
            let i = at + k;
            *b = self.load(i / 8).to_ne_bytes()[i % 8];
        }
    }

    /// Copies `len` bytes at `from` of `self` to `to` of `dst` with atomic loads and stores
    /// (the fake device's "DMA" from staging to a ring).
    pub fn copy_to(&self, from: usize, dst: &Self, to: usize, len: usize) {
        if from.is_multiple_of(8) && to.is_multiple_of(8) {
            let words = len / 8;
            for k in 0..words {
                dst.store(to / 8 + k, self.load(from / 8 + k));
            }
            let done = words * 8;
            if done < len {
                let mut tail = vec![0u8; len - done];
                self.read_bytes_atomic(from + done, &mut tail);
                dst.write_bytes_atomic(to + done, &tail);
            }
        } else {
            let mut buf = vec![0u8; len];
            self.read_bytes_atomic(from, &mut buf);
            dst.write_bytes_atomic(to, &buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `write_bytes` in a single-threaded test with no device.
    fn write(m: &Memory, at: usize, src: &[u8]) {
        #[allow(unsafe_code)]
        // SAFETY: nothing else accesses `m` (one thread, no adapter).
        unsafe {
            m.write_bytes(at, src);
        }
    }

    /// `read_bytes` in a single-threaded test with no device.
    fn read(m: &Memory, at: usize, dst: &mut [u8]) {
        #[allow(unsafe_code)]
        // SAFETY: nothing else accesses `m` (one thread, no adapter).
        unsafe {
            m.read_bytes(at, dst);
        }
    }

    proptest! {
        #[test]
        fn bytes_round_trip_at_any_alignment(at in 0usize..64, data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let m = Memory::new(200);
            // Surrounding bytes must survive partial-word writes.
            let fill: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
            write(&m, 0, &fill);
            write(&m, at, &data);
            let a = Memory::new(200);
            a.write_bytes_atomic(0, &fill);
            a.write_bytes_atomic(at, &data);
            let mut viaatomic = vec![0u8; 200];
            a.read_bytes_atomic(0, &mut viaatomic);
            let mut bothatomic = vec![0u8; 200];
            m.read_bytes_atomic(0, &mut bothatomic);
            let mut all = vec![0u8; 200];
            read(&m, 0, &mut all);
            let mut want = fill.clone();
            want[at..at + data.len()].copy_from_slice(&data);
            prop_assert_eq!(&all, &want);
            prop_assert_eq!(&viaatomic, &want);
            prop_assert_eq!(&bothatomic, &want);
            let mut back = vec![0u8; data.len()];
            read(&m, at, &mut back);
            prop_assert_eq!(back, data);
        }

        #[test]
        fn copy_between_regions(from in 0usize..32, to in 0usize..32, len in 0usize..64) {
            let a = Memory::new(128);
            let b = Memory::new(128);
            let src: Vec<u8> = (0..128u32).map(|i| i as u8 ^ 0x5a).collect();
            write(&a, 0, &src);
            a.copy_to(from, &b, to, len);
            let mut got = vec![0u8; len];
            read(&b, to, &mut got);
            prop_assert_eq!(&got[..], &src[from..from + len]);
        }
    }

    #[test]
    fn size_rounds_up_and_fields_are_little_endian() {
        let m = Memory::new(13);
        assert_eq!(m.len(), 16);
        m.store_le(1, 0x0102_0304_0506_0708);
        let mut b = [0u8; 8];
        read(&m, 8, &mut b);
        assert_eq!(b, [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(m.load_le(1), 0x0102_0304_0506_0708);
        m.zero();
        assert_eq!(m.load(1), 0);
    }
}
