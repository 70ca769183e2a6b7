//! Reassembling frames from received chunks, with the rules of the runtime's `FrameReader`.
//!
//! The runtime's [`FrameReader`](picsou_runtime::transport::framer::FrameReader) is shaped for
//! `read(2)`: it hands out zero-filled spare space to read into. io_uring receives land in
//! provided buffers instead, and the bytes must be copied out; doing that through `spare`
//! would zero the rest of a large frame's allocation on every chunk (megabytes of memset per
//! megabyte frame), and through `extend` would grow a large frame's buffer by doubling. This
//! assembler applies exactly the same rules and errors ([`FramingError`]: length below
//! [`MIN_FRAME_LEN`] or above the maximum, wrong magic, both checked as soon as the 6-byte
//! prefix is in) but reserves a frame's whole length once its prefix is known, so a large frame
//! is copied once into one allocation and split off as `Bytes` without another copy. A test
//! checks it against `FrameReader` on arbitrary streams.

use bytes::{Bytes, BytesMut};
use picsou_core::bufpool::BufPool;
use picsou_core::wire::MIN_FRAME_LEN;
use picsou_runtime::transport::framer::{DIRECT_MIN, FramingError, check_prefix};

/// Allocation granularity for runs of small frames: they are split off one shared buffer.
const CHUNK: usize = 64 * 1024;

/// Frames at least this long are large: each gets a buffer of its own (the TCP transport's
/// threshold too).
const LARGE_MIN: usize = DIRECT_MIN;

/// A frame's prefix: its length and magic, checked before anything is allocated for it.
const PREFIX_LEN: usize = 6;

/// Accumulates received bytes and yields whole frames.
///
/// Small frames are cut from shared chunks; a large frame is received into a buffer of its
/// own, taken from the pool if there is one (the frame hands it back when its last view is
/// dropped: without that, the allocator returned each megabyte frame's memory to the kernel
/// and every frame page-faulted it back in, which made io_uring at 1 MiB swing between about
/// 2.5 and 5 GB/s from one run to the next).
#[derive(Debug)]
pub(crate) struct Assembler {
    /// Small frames, and the first bytes of every frame until its length says it is large.
    buf: BytesMut,
    /// The large frame being received (its bytes so far) and its length. The buffer is `None`
    /// while it is lent for a direct receive.
    large: Option<(Option<Vec<u8>>, usize)>,
    max_frame: usize,
    pool: Option<BufPool>,
}

/// A buffer lent to the kernel for a direct receive into its spare capacity: the start of the
/// next frame (its prefix) or the rest of a large frame.
#[derive(Debug)]
pub(crate) enum Lent {
    /// The shared buffer of small frames.
    Small(BytesMut),
    /// A large frame's own buffer.
    Large(Vec<u8>),
}

impl Lent {
    /// Where the kernel writes: the start of the spare capacity. Moving a `Lent` does not move
    /// this memory.
    pub(crate) fn spare_ptr(&mut self) -> *mut u8 {
        match self {
            Lent::Small(b) => b.spare_capacity_mut().as_mut_ptr().cast(),
            Lent::Large(v) => v.spare_capacity_mut().as_mut_ptr().cast(),
        }
    }

    /// Bytes of spare capacity.
    #[cfg(test)]
    fn spare_len(&self) -> usize {
        match self {
            Lent::Small(b) => b.capacity() - b.len(),
            Lent::Large(v) => v.capacity() - v.len(),
        }
    }
}

impl Assembler {
    /// An assembler accepting frames of at most `max_frame` bytes, receiving large frames into
    /// buffers recycled through `pool` (if given).
    pub(crate) fn new(max_frame: usize, pool: Option<BufPool>) -> Self {
        Self { buf: BytesMut::new(), large: None, max_frame, pool }
    }

    /// Feeds `data`, appending every completed frame to `out`. On error the stream is dead.
    ///
    /// Bytes are appended in as few copies as the buffer allows (a whole receive buffer at
    /// once for runs of small frames), then complete frames are split off.
    pub(crate) fn feed(&mut self, mut data: &[u8], out: &mut impl FnMut(Bytes)) -> Result<(), FramingError> {
        while !data.is_empty() {
            if let Some((Some(frame), len)) = &mut self.large {
                let take = (*len - frame.len()).min(data.len());
                frame.extend_from_slice(&data[..take]);
                data = &data[take..];
                self.emit_large(out);
                continue;
            }
            if self.start_large()? {
                continue;
            }
            if self.buf.capacity() == self.buf.len() {
                self.buf.reserve(CHUNK);
            }
            let mut take = (self.buf.capacity() - self.buf.len()).min(data.len());
            if self.peek_len(data).is_some_and(|len| len >= LARGE_MIN) {
                // A large frame starts: only its prefix goes through the shared buffer (to be
                // checked), the rest straight into the frame's own buffer.
                take = take.min(PREFIX_LEN.saturating_sub(self.buf.len()).max(1));
            }
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.split_small(out)?;
        }
        Ok(())
    }

    /// Splits complete small frames off the shared buffer; stops at an incomplete frame or a
    /// large one (left to [`Assembler::start_large`]).
    fn split_small(&mut self, out: &mut impl FnMut(Bytes)) -> Result<(), FramingError> {
        while self.buf.len() >= 4 {
            let len = self.check()?;
            if self.buf.len() < len {
                break;
            }
            out(self.buf.split_to(len).freeze());
        }
        Ok(())
    }

    /// If the buffered bytes begin a large frame that is not all in yet, moves them into the
    /// frame's own buffer (the shared buffer then holds nothing: an incomplete frame is all it
    /// can hold). Returns whether it did.
    fn start_large(&mut self) -> Result<bool, FramingError> {
        if self.large.is_some() || self.buf.len() < PREFIX_LEN {
            return Ok(false);
        }
        let len = self.check()?;
        if len < LARGE_MIN || self.buf.len() >= len {
            return Ok(false);
        }
        let mut frame = match &self.pool {
            Some(pool) => pool.take(len),
            None => Vec::with_capacity(len),
        };
        frame.extend_from_slice(&self.buf);
        self.buf.clear();
        self.large = Some((Some(frame), len));
        Ok(true)
    }

    /// Hands out the large frame if it is complete.
    fn emit_large(&mut self, out: &mut impl FnMut(Bytes)) {
        if let Some((Some(frame), len)) = &self.large
            && frame.len() == *len
            && let Some((Some(frame), _)) = self.large.take()
        {
            out(match &self.pool {
                Some(pool) => pool.freeze(frame),
                None => Bytes::from(frame),
            });
        }
    }

    /// The length field of the frame that the buffered bytes followed by `data` begin, if
    /// those hold its four bytes (unchecked: [`Assembler::check`] validates it).
    fn peek_len(&self, data: &[u8]) -> Option<usize> {
        let have = self.buf.len();
        if have + data.len() < 4 {
            return None;
        }
        let mut field = [0u8; 4];
        for (i, b) in field.iter_mut().enumerate() {
            *b = if i < have { self.buf[i] } else { data[i - have] };
        }
        usize::try_from(u32::from_le_bytes(field)).ok()
    }

    /// Validates the buffered prefix; returns the frame length.
    fn check(&self) -> Result<usize, FramingError> {
        check_prefix(&self.buf, self.max_frame)?.ok_or(FramingError::BadLength {
            len: 0,
            min: MIN_FRAME_LEN,
            max: self.max_frame,
        })
    }

    /// Bytes of an incomplete frame held.
    pub(crate) fn buffered(&self) -> usize {
        match &self.large {
            Some((frame, _)) => frame.as_ref().map_or(0, Vec::len),
            None => self.buf.len(),
        }
    }

    /// Bytes the current frame still lacks, once its (valid) length is in.
    pub(crate) fn missing(&self) -> Option<usize> {
        if let Some((frame, len)) = &self.large {
            return frame.as_ref().map(|f| len - f.len());
        }
        if self.buf.len() < 4 {
            return None;
        }
        let len = self.check().ok()?;
        Some(len - self.buf.len().min(len))
    }

    /// Lends the current large frame's buffer for a direct receive of its rest: the returned
    /// buffer's spare capacity holds at least the returned number of missing bytes. `None`
    /// unless a large frame's prefix is in and checked. The frame's bytes are out of the
    /// assembler until [`Assembler::restore`].
    pub(crate) fn lend_rest(&mut self) -> Option<(Lent, usize)> {
        let missing = self.missing().filter(|&m| m > 0)?;
        self.start_large().ok()?;
        let (frame, _) = self.large.as_mut()?;
        Some((Lent::Large(frame.take()?), missing))
    }

    /// Like [`Assembler::lend_rest`], for the missing bytes of the next frame's 6-byte prefix.
    pub(crate) fn lend_prefix(&mut self) -> Option<(Lent, usize)> {
        if self.large.is_some() {
            return None;
        }
        let missing = PREFIX_LEN.checked_sub(self.buf.len()).filter(|&m| m > 0)?;
        self.buf.reserve(missing.max(64));
        Some((Lent::Small(std::mem::take(&mut self.buf)), missing))
    }

    /// Takes back a lent buffer whose spare capacity received `n` bytes; emits the frame if
    /// it is now complete, and checks a prefix that is now complete.
    ///
    /// # Safety
    /// The first `n` bytes of the buffer's spare capacity must be initialised (the kernel wrote
    /// them), and `n` must not exceed what the lending call said was missing.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn restore(
        &mut self,
        lent: Lent,
        n: usize,
        out: &mut impl FnMut(Bytes),
    ) -> Result<(), FramingError> {
        match lent {
            Lent::Small(mut buf) => {
                debug_assert!(self.buf.is_empty() && self.large.is_none(), "restore without lend");
                let n = n.min(buf.capacity() - buf.len());
                // SAFETY: `n` is within the spare capacity and initialised, per the caller.
                unsafe { buf.set_len(buf.len() + n) };
                self.buf = buf;
                self.split_small(out)?;
            }
            Lent::Large(mut frame) => {
                let Some((slot, len)) = &mut self.large else {
                    debug_assert!(false, "restore of a large frame without lend");
                    return Ok(());
                };
                let n = n.min(*len - frame.len());
                // SAFETY: `n` is within the spare capacity (`lend_rest` lent a buffer of the
                // frame's whole length) and initialised, per the caller.
                unsafe { frame.set_len(frame.len() + n) };
                *slot = Some(frame);
                self.emit_large(out);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use picsou_core::wire::MAGIC;
    use picsou_runtime::transport::framer::FrameReader;
    use proptest::prelude::*;

    use super::*;

    fn frame(len: usize, fill: u8) -> Vec<u8> {
        let mut f = vec![fill; len];
        f[..4].copy_from_slice(&(len as u32).to_le_bytes());
        f[4..6].copy_from_slice(&MAGIC);
        f
    }

    fn run_assembler(stream: &[u8], cut: usize, max: usize) -> (Vec<Bytes>, Option<FramingError>) {
        run_assembler_with(stream, cut, max, None)
    }

    fn run_assembler_with(
        stream: &[u8],
        cut: usize,
        max: usize,
        pool: Option<BufPool>,
    ) -> (Vec<Bytes>, Option<FramingError>) {
        let mut a = Assembler::new(max, pool);
        let mut out = Vec::new();
        for chunk in stream.chunks(cut.max(1)) {
            if let Err(e) = a.feed(chunk, &mut |f| out.push(f)) {
                return (out, Some(e));
            }
        }
        (out, None)
    }

    fn run_reader(stream: &[u8], cut: usize, max: usize) -> (Vec<Bytes>, Option<FramingError>) {
        let mut r = FrameReader::new(max);
        let mut out = Vec::new();
        for chunk in stream.chunks(cut.max(1)) {
            r.extend(chunk);
            loop {
                match r.next_frame() {
                    Ok(Some(f)) => out.push(f),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    #[test]
    fn large_and_small_frames_across_chunks() {
        let frames = [frame(60, 1), frame(300_000, 2), frame(143, 3), frame(70_000, 4)];
        let stream: Vec<u8> = frames.iter().flatten().copied().collect();
        for cut in [1, 5, 6, 7, 4096, 65536, stream.len()] {
            for pool in [None, Some(BufPool::new(4, 1 << 21))] {
                let (out, err) = run_assembler_with(&stream, cut, 1 << 20, pool);
                assert_eq!(err, None);
                assert_eq!(out.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), frames.to_vec(), "cut {cut}");
            }
        }
    }

    #[test]
    fn large_frames_reuse_pooled_buffers() {
        let pool = BufPool::new(4, 1 << 21);
        let mut a = Assembler::new(1 << 20, Some(pool.clone()));
        let mut out = Vec::new();
        a.feed(&frame(300_000, 1), &mut |b| out.push(b)).unwrap();
        let first = out.pop().unwrap();
        assert_eq!(first, Bytes::from(frame(300_000, 1)));
        let at = first.as_ptr();
        drop(first);
        assert_eq!(pool.idle(), 1, "the frame's buffer came back when it was dropped");
        // The next large frame lands in the same memory: no fresh allocation to fault in.
        let f = frame(290_000, 2);
        a.feed(&f[..100], &mut |b| out.push(b)).unwrap();
        a.feed(&f[100..], &mut |b| out.push(b)).unwrap();
        assert_eq!(out, vec![Bytes::from(f)]);
        assert_eq!(out[0].as_ptr(), at);
        assert_eq!(pool.idle(), 0);
        // Small frames do not use the pool.
        a.feed(&frame(100, 3), &mut |b| out.push(b)).unwrap();
        assert_eq!((out.len(), pool.idle()), (2, 0));
    }

    /// What the kernel does with a lent buffer: writes `data` at the start of its spare
    /// capacity.
    fn kernel_writes(lent: &mut Lent, data: &[u8]) {
        assert!(lent.spare_len() >= data.len());
        let spare = match lent {
            Lent::Small(b) => b.spare_capacity_mut(),
            Lent::Large(v) => v.spare_capacity_mut(),
        };
        for (dst, src) in spare.iter_mut().zip(data) {
            dst.write(*src);
        }
    }

    #[test]
    fn lend_and_restore_complete_a_frame_in_place() {
        for pool in [None, Some(BufPool::new(4, 1 << 21))] {
            let f = frame(200_000, 7);
            let mut a = Assembler::new(1 << 20, pool);
            let mut out = Vec::new();
            a.feed(&f[..1000], &mut |b| out.push(b)).unwrap();
            assert_eq!(a.missing(), Some(199_000));
            assert!(a.lend_prefix().is_none());
            let (mut lent, missing) = a.lend_rest().unwrap();
            assert!(matches!(lent, Lent::Large(_)));
            assert_eq!(missing, 199_000);
            kernel_writes(&mut lent, &f[1000..100_000]);
            #[allow(unsafe_code)]
            // SAFETY: the first 99_000 bytes of the spare capacity were written just above.
            unsafe {
                a.restore(lent, 99_000, &mut |b| out.push(b)).unwrap();
            }
            assert!(out.is_empty());
            assert_eq!(a.missing(), Some(100_000));
            a.feed(&f[100_000..], &mut |b| out.push(b)).unwrap();
            assert_eq!(out, vec![Bytes::from(f.clone())]);
            assert_eq!(a.buffered(), 0);
            // The next prefix, in place too; then the rest of that (large) frame in place.
            let g = frame(150_000, 8);
            let (mut lent, missing) = a.lend_prefix().unwrap();
            assert_eq!(missing, 6);
            kernel_writes(&mut lent, &g[..6]);
            #[allow(unsafe_code)]
            // SAFETY: 6 bytes of the spare capacity were written just above.
            unsafe {
                a.restore(lent, 6, &mut |b| out.push(b)).unwrap();
            }
            let (mut lent, missing) = a.lend_rest().unwrap();
            assert_eq!(missing, 150_000 - 6);
            kernel_writes(&mut lent, &g[6..]);
            #[allow(unsafe_code)]
            // SAFETY: `missing` bytes of the spare capacity were written just above.
            unsafe {
                a.restore(lent, missing, &mut |b| out.push(b)).unwrap();
            }
            assert_eq!(out, vec![Bytes::from(f), Bytes::from(g)]);
            // A bad prefix is refused on restore.
            let (mut lent, _) = a.lend_prefix().unwrap();
            kernel_writes(&mut lent, &[10u8, 0, 0, 0, b'P', b'Q']);
            #[allow(unsafe_code)]
            // SAFETY: 6 bytes of the spare capacity were written just above.
            let r = unsafe { a.restore(lent, 6, &mut |b| out.push(b)) };
            assert!(matches!(r, Err(FramingError::BadLength { len: 10, .. })));
        }
    }

    #[test]
    fn rejects_like_the_frame_reader() {
        let (_, e) = run_assembler(&frame(1001, 0)[..8], 8, 1000);
        assert!(matches!(e, Some(FramingError::BadLength { len: 1001, .. })));
        let (_, e) = run_assembler(&[10, 0, 0, 0], 4, 1000);
        assert!(matches!(e, Some(FramingError::BadLength { len: 10, .. })));
        let (_, e) = run_assembler(&[100, 0, 0, 0, b'G', b'E'], 6, 1000);
        assert_eq!(e, Some(FramingError::BadMagic));
    }

    proptest! {
        /// Same frames and same verdict as the runtime's FrameReader, on arbitrary bytes and
        /// on valid streams, whatever the chunking.
        #[test]
        fn agrees_with_frame_reader(garbage in proptest::collection::vec(any::<u8>(), 0..3000),
                                    sizes in proptest::collection::vec(60usize..5000, 0..8),
                                    cut in 1usize..700, valid_first in any::<bool>()) {
            let mut stream = Vec::new();
            if valid_first {
                for (i, s) in sizes.iter().enumerate() {
                    stream.extend(frame(*s, i as u8));
                }
            }
            stream.extend(&garbage);
            let (fa, ea) = run_assembler(&stream, cut, 4096);
            let (fr, er) = run_reader(&stream, cut, 4096);
            prop_assert_eq!(fa, fr);
            prop_assert_eq!(ea.is_some(), er.is_some());
            if let (Some(a), Some(r)) = (ea, er) {
                prop_assert_eq!(a, r);
            }
        }

        /// The same with large frames (own, possibly pooled, buffers) among small ones, and a
        /// bad prefix possibly cut anywhere at the end.
        #[test]
        fn agrees_with_frame_reader_on_large_frames(
            sizes in proptest::collection::vec(prop_oneof![60usize..3000, 60_000usize..300_000], 0..6),
            tail in proptest::collection::vec(any::<u8>(), 0..12),
            cut in prop_oneof![1usize..16, 1000usize..70_000],
            pooled in any::<bool>(),
        ) {
            let mut stream = Vec::new();
            for (i, s) in sizes.iter().enumerate() {
                stream.extend(frame(*s, i as u8));
            }
            stream.extend(&tail);
            let pool = pooled.then(|| BufPool::new(2, 1 << 20));
            let (fa, ea) = run_assembler_with(&stream, cut, 400_000, pool);
            let (fr, er) = run_reader(&stream, cut, 400_000);
            prop_assert_eq!(fa, fr);
            prop_assert_eq!(ea, er);
        }
    }
}
