//! Splitting a received byte stream into frames.
//!
//! Frames start with their total length (u32 LE) and then the magic `PQ` (see `core/WIRE.md`),
//! so a stream transport reads 6 bytes to know how much follows and to catch a foreign
//! protocol or a desynchronised stream early. A length below the minimum frame, above the
//! configured maximum, or a wrong magic is a fatal [`FramingError`]: the connection is closed
//! (its peer is redialled or must reconnect), since nothing later in the stream can be trusted.
//!
//! Frames come out as [`Bytes`] split off the receive buffer, without copying; the buffer
//! reserves a whole frame's length once its prefix is known, so large frames are read into
//! one allocation.

use bytes::{Bytes, BytesMut};
use picsou_core::wire::{MAGIC, MIN_FRAME_LEN};

/// Why a stream was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The length prefix is impossible.
    #[error("frame length {len} outside {min}..={max}")]
    BadLength {
        /// The prefix.
        len: usize,
        /// Smallest valid frame.
        min: usize,
        /// Largest accepted frame.
        max: usize,
    },
    /// The bytes after the length are not the frame magic.
    #[error("stream is not picsou frames (bad magic)")]
    BadMagic,
}

/// Accumulates stream bytes and yields whole frames.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    max_frame: usize,
    /// Read granularity when no frame length is known yet.
    chunk: usize,
}

impl FrameReader {
    /// A reader accepting frames of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self { buf: BytesMut::with_capacity(64 * 1024), max_frame, chunk: 64 * 1024 }
    }

    /// Spare buffer space to read into: at least the rest of the current frame, or a chunk.
    ///
    /// A length prefix that [`FrameReader::next_frame`] has not validated yet (above the
    /// maximum) never sizes the buffer: a peer cannot make us reserve gigabytes by sending
    /// four bytes.
    pub fn spare(&mut self) -> &mut [u8] {
        let want = match self.pending_len() {
            Some(len) if len > self.buf.len() && len <= self.max_frame => (len - self.buf.len()).max(self.chunk),
            _ => self.chunk,
        };
        if self.buf.capacity() - self.buf.len() < want {
            self.buf.reserve(want);
        }
        let len = self.buf.len();
        let cap = self.buf.capacity();
        self.buf.resize(cap, 0);
        &mut self.buf[len..]
    }

    /// Marks `n` bytes of the last [`FrameReader::spare`] as filled (and drops the rest).
    pub fn filled(&mut self, spare_start: usize, n: usize) {
        self.buf.truncate(spare_start + n);
    }

    /// The number of buffered bytes (where the next `spare` starts).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends received bytes (for transports that receive into their own buffers).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Length of the frame at the head of the buffer, once its prefix has arrived.
    fn pending_len(&self) -> Option<usize> {
        picsou_core::wire::frame_len(&self.buf)
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FramingError> {
        let Some(len) = check_prefix(&self.buf, self.max_frame)? else { return Ok(None) };
        if self.buf.len() < len {
            return Ok(None);
        }
        Ok(Some(self.buf.split_to(len).freeze()))
    }
}

/// The length of the frame that `buf` starts with, once its 4-byte prefix is in (`None`
/// before), after checking it against `MIN_FRAME_LEN..=max_frame` and, once 6 bytes are in,
/// the magic. The one rule every stream transport applies.
pub fn check_prefix(buf: &[u8], max_frame: usize) -> Result<Option<usize>, FramingError> {
    let Some(len) = picsou_core::wire::frame_len(buf) else { return Ok(None) };
    if !(MIN_FRAME_LEN..=max_frame).contains(&len) {
        return Err(FramingError::BadLength { len, min: MIN_FRAME_LEN, max: max_frame });
    }
    if buf.len() >= 6 && buf[4..6] != MAGIC {
        return Err(FramingError::BadMagic);
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn frame(len: usize, fill: u8) -> Vec<u8> {
        let mut f = vec![fill; len];
        f[..4].copy_from_slice(&(len as u32).to_le_bytes());
        f[4..6].copy_from_slice(&MAGIC);
        f
    }

    fn feed(r: &mut FrameReader, bytes: &[u8]) {
        let start = r.buffered();
        let spare = r.spare();
        spare[..bytes.len()].copy_from_slice(bytes);
        r.filled(start, bytes.len());
    }

    #[test]
    fn splits_frames_across_arbitrary_chunks() {
        let a = frame(60, 1);
        let b = frame(70_000, 2);
        let stream: Vec<u8> = a.iter().chain(&b).copied().collect();
        let mut r = FrameReader::new(1 << 20);
        let mut out = Vec::new();
        for chunk in stream.chunks(777) {
            r.extend(chunk);
            while let Some(f) = r.next_frame().unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, vec![Bytes::from(a), Bytes::from(b)]);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn rejects_bad_lengths_and_magic() {
        let mut r = FrameReader::new(1000);
        r.extend(&frame(1001, 0)[..8]);
        assert!(matches!(r.next_frame(), Err(FramingError::BadLength { len: 1001, .. })));
        let mut r = FrameReader::new(1000);
        r.extend(&[10, 0, 0, 0, 0, 0]);
        assert!(matches!(r.next_frame(), Err(FramingError::BadLength { len: 10, .. })));
        let mut r = FrameReader::new(1000);
        r.extend(&[100, 0, 0, 0, b'G', b'E']);
        assert_eq!(r.next_frame(), Err(FramingError::BadMagic));
    }

    proptest! {
        /// Arbitrary bytes (garbage on the port) never panic the reader and never yield a
        /// frame that breaks the length and magic rules.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096), cut in 1usize..512) {
            let mut r = FrameReader::new(2048);
            'outer: for chunk in bytes.chunks(cut) {
                feed(&mut r, chunk);
                loop {
                    match r.next_frame() {
                        Ok(Some(f)) => {
                            prop_assert!(f.len() >= MIN_FRAME_LEN && f.len() <= 2048);
                            prop_assert_eq!(&f[4..6], &MAGIC[..]);
                        }
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
        }
    }
}
