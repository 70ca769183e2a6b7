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
use picsou_core::wire::MIN_FRAME_LEN;
use picsou_runtime::transport::framer::{FramingError, check_prefix};

/// Allocation granularity for runs of small frames: they are split off one shared buffer.
const CHUNK: usize = 64 * 1024;

/// Accumulates received bytes and yields whole frames.
#[derive(Debug)]
pub(crate) struct Assembler {
    buf: BytesMut,
    max_frame: usize,
}

impl Assembler {
    /// An assembler accepting frames of at most `max_frame` bytes.
    pub(crate) fn new(max_frame: usize) -> Self {
        Self { buf: BytesMut::new(), max_frame }
    }

    /// Feeds `data`, appending every completed frame to `out`. On error the stream is dead.
    ///
    /// Bytes are appended in as few copies as the buffer allows (a whole receive buffer at
    /// once for runs of small frames), then complete frames are split off.
    pub(crate) fn feed(&mut self, mut data: &[u8], out: &mut impl FnMut(Bytes)) -> Result<(), FramingError> {
        while !data.is_empty() {
            let missing = self.missing();
            let room = self.buf.capacity() - self.buf.len();
            if room == 0 || missing.is_some_and(|m| m > room) {
                // A large frame gets exactly its own allocation; small ones share chunks.
                let m = missing.unwrap_or(0);
                self.buf.reserve(if m >= CHUNK { m } else { CHUNK });
            }
            let take = (self.buf.capacity() - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            while self.buf.len() >= 4 {
                let len = self.check()?;
                if self.buf.len() < len {
                    break;
                }
                out(self.buf.split_to(len).freeze());
            }
        }
        Ok(())
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
        self.buf.len()
    }

    /// Bytes the current frame still lacks, once its (valid) length is in.
    pub(crate) fn missing(&self) -> Option<usize> {
        if self.buf.len() < 4 {
            return None;
        }
        let len = self.check().ok()?;
        Some(len - self.buf.len().min(len))
    }

    /// Lends the buffer for a direct receive of the rest of the current frame: the returned
    /// buffer's spare capacity holds at least the returned number of missing bytes. The
    /// assembler holds nothing until [`Assembler::restore`].
    pub(crate) fn lend_rest(&mut self) -> Option<(BytesMut, usize)> {
        let missing = self.missing().filter(|&m| m > 0)?;
        self.buf.reserve(missing);
        Some((std::mem::take(&mut self.buf), missing))
    }

    /// Like [`Assembler::lend_rest`], for the missing bytes of the next frame's 6-byte prefix.
    pub(crate) fn lend_prefix(&mut self) -> Option<(BytesMut, usize)> {
        let missing = 6usize.checked_sub(self.buf.len()).filter(|&m| m > 0)?;
        self.buf.reserve(missing.max(64));
        Some((std::mem::take(&mut self.buf), missing))
    }

    /// Takes back a lent buffer whose spare capacity received `n` bytes; emits the frame if
    /// it is now complete, and checks a prefix that is now complete.
    ///
    /// # Safety
    /// The first `n` bytes of `buf`'s spare capacity must be initialised (the kernel wrote
    /// them), and `n` must not exceed what the lending call said was missing.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn restore(
        &mut self,
        mut buf: BytesMut,
        n: usize,
        out: &mut impl FnMut(Bytes),
    ) -> Result<(), FramingError> {
        debug_assert!(self.buf.is_empty(), "restore without lend");
        let n = n.min(buf.capacity() - buf.len());
        // SAFETY: `n` is within the spare capacity and initialised, per the caller.
        unsafe { buf.set_len(buf.len() + n) };
        self.buf = buf;
        if self.buf.len() < 4 {
            return Ok(());
        }
        let len = self.check()?;
        if self.buf.len() >= len {
            out(self.buf.split_to(len).freeze());
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
        let mut a = Assembler::new(max);
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
            let (out, err) = run_assembler(&stream, cut, 1 << 20);
            assert_eq!(err, None);
            assert_eq!(out.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), frames.to_vec(), "cut {cut}");
        }
    }

    #[test]
    fn lend_and_restore_complete_a_frame_in_place() {
        let f = frame(200_000, 7);
        let mut a = Assembler::new(1 << 20);
        let mut out = Vec::new();
        a.feed(&f[..1000], &mut |b| out.push(b)).unwrap();
        assert_eq!(a.missing(), Some(199_000));
        assert!(a.lend_prefix().is_none());
        let (mut buf, missing) = a.lend_rest().unwrap();
        assert_eq!(missing, 199_000);
        // What the kernel does: write into the spare capacity.
        let spare = buf.spare_capacity_mut();
        assert!(spare.len() >= missing);
        for (dst, src) in spare.iter_mut().zip(&f[1000..100_000]) {
            dst.write(*src);
        }
        #[allow(unsafe_code)]
        // SAFETY: the first 99_000 bytes of the spare capacity were written just above.
        unsafe {
            a.restore(buf, 99_000, &mut |b| out.push(b)).unwrap();
        }
        assert!(out.is_empty());
        assert_eq!(a.missing(), Some(100_000));
        a.feed(&f[100_000..], &mut |b| out.push(b)).unwrap();
        assert_eq!(out, vec![Bytes::from(f)]);
        assert_eq!(a.buffered(), 0);
        // The next prefix, in place too: a bad one is refused on restore.
        let (mut buf, missing) = a.lend_prefix().unwrap();
        assert_eq!(missing, 6);
        for (dst, src) in buf.spare_capacity_mut().iter_mut().zip([10u8, 0, 0, 0, b'P', b'Q']) {
            dst.write(src);
        }
        #[allow(unsafe_code)]
        // SAFETY: 6 bytes of the spare capacity were written just above.
        let r = unsafe { a.restore(buf, 6, &mut |b| out.push(b)) };
        assert!(matches!(r, Err(FramingError::BadLength { len: 10, .. })));
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
    }
}
