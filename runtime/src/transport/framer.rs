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
//!
//! `Read` needs initialised memory, so the spare space handed to it is zeroed once, when it is
//! allocated, and stays initialised across reads: zeroing the whole spare region before every
//! read (as `BytesMut::resize` would) cost more than the reads themselves with small frames.
//! Frames of [`DIRECT_MIN`] bytes or more skip even that: [`FrameReader::read_from`] reads them
//! into a buffer of their own through `Read::read_to_end`, which hands a socket that supports
//! it (std's `TcpStream`) uninitialised memory (the zero-fill was 6% of CPU with 1 MB messages).

use std::io::{self, Read};

use bytes::{Bytes, BytesMut};
use picsou_core::bufpool::BufPool;
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

/// Frames at least this long are read by [`FrameReader::read_from`] into a buffer of their own
/// (the io_uring transport uses the same threshold).
pub const DIRECT_MIN: usize = 64 * 1024;

/// Idle buffers of large received frames ([`DIRECT_MIN`] bytes or more) that a transport keeps
/// for reuse, shared by all its connections...
const RECEIVE_POOL_BUFFERS: usize = 32;
/// ... and at most this much idle capacity.
const RECEIVE_POOL_BYTES: usize = 32 << 20;

/// The pool that a transport's large received frames are read into and come back to when the
/// node drops them (see [`picsou_core::bufpool`]: fresh buffers were page-faulted in, frame
/// after frame). One per transport; every socket transport uses this one size.
pub fn receive_pool() -> BufPool {
    BufPool::new(RECEIVE_POOL_BUFFERS, RECEIVE_POOL_BYTES)
}

/// Accumulates stream bytes and yields whole frames.
#[derive(Debug)]
pub struct FrameReader {
    /// `buf[..filled]` are received bytes; `buf[filled..]` is initialised spare space.
    buf: BytesMut,
    filled: usize,
    max_frame: usize,
    /// Read granularity when no frame length is known yet.
    chunk: usize,
    /// A large frame being read into its own buffer, and the frame's length.
    direct: Option<(Vec<u8>, usize)>,
    /// A large frame read in full, returned before anything else.
    done: Option<Bytes>,
    /// Where large frames' buffers come from and return to, if anywhere.
    pool: Option<BufPool>,
}

impl FrameReader {
    /// A reader accepting frames of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self { buf: BytesMut::new(), filled: 0, max_frame, chunk: 64 * 1024, direct: None, done: None, pool: None }
    }

    /// Like [`FrameReader::new`], reading large frames into buffers recycled through `pool`
    /// (they return to it when the last payload viewing them is dropped).
    pub fn with_pool(max_frame: usize, pool: BufPool) -> Self {
        Self { pool: Some(pool), ..Self::new(max_frame) }
    }

    /// Reads once from `src` (a non-blocking stream): `Ok(0)` at its end, `Err` (such as
    /// `WouldBlock`) if nothing was read, else the number of bytes read. Frames of at least
    /// [`DIRECT_MIN`] bytes go straight into a buffer of their own, without zero-filling it
    /// (when `src` reads into uninitialised memory, as std's `TcpStream` does); smaller ones
    /// are read through [`FrameReader::spare`].
    pub fn read_from(&mut self, src: &mut impl Read) -> io::Result<usize> {
        if self.direct.is_none()
            && self.done.is_none()
            && let Ok(Some(len)) = check_prefix(&self.buf[..self.filled], self.max_frame)
            && len >= DIRECT_MIN
            && self.filled < len
        {
            // Everything buffered belongs to this frame (it is incomplete).
            let mut frame = match &self.pool {
                Some(pool) => pool.take(len),
                None => Vec::with_capacity(len),
            };
            frame.extend_from_slice(&self.buf[..self.filled]);
            self.buf.clear();
            self.filled = 0;
            self.direct = Some((frame, len));
        }
        if let Some((frame, len)) = &mut self.direct {
            let before = frame.len();
            let want = (*len - before) as u64;
            // On an error the bytes read so far stay appended (`read_to_end`'s contract).
            let result = src.by_ref().take(want).read_to_end(frame);
            let n = frame.len() - before;
            if frame.len() == *len
                && let Some((frame, _)) = self.direct.take()
            {
                self.done = Some(match &self.pool {
                    Some(pool) => pool.freeze(frame),
                    None => Bytes::from(frame),
                });
            }
            return match result {
                Err(e) if n == 0 => Err(e),
                _ => Ok(n),
            };
        }
        let start = self.filled;
        match src.read(self.spare()) {
            Ok(n) => {
                self.filled(start, n);
                Ok(n)
            }
            Err(e) => {
                self.filled(start, 0);
                Err(e)
            }
        }
    }

    /// Spare buffer space to read into: at least the rest of the current frame, or a chunk.
    ///
    /// A length prefix that [`FrameReader::next_frame`] has not validated yet (above the
    /// maximum) never sizes the buffer: a peer cannot make us reserve gigabytes by sending
    /// four bytes.
    pub fn spare(&mut self) -> &mut [u8] {
        let want = match self.pending_len() {
            Some(len) if len > self.filled && len <= self.max_frame => (len - self.filled).max(self.chunk),
            _ => self.chunk,
        };
        if self.buf.len() - self.filled < want {
            // Only the received bytes move (if the allocation changes); the new space is
            // zeroed once here and then reused by every read until frames consume it.
            self.buf.truncate(self.filled);
            self.buf.reserve(want);
            let cap = self.buf.capacity();
            self.buf.resize(cap, 0);
        }
        &mut self.buf[self.filled..]
    }

    /// Marks `n` bytes of the last [`FrameReader::spare`] as filled (the rest stays spare).
    pub fn filled(&mut self, spare_start: usize, n: usize) {
        debug_assert!(spare_start + n <= self.buf.len());
        self.filled = (spare_start + n).min(self.buf.len());
    }

    /// The number of buffered bytes (where the next `spare` starts).
    pub fn buffered(&self) -> usize {
        self.filled
    }

    /// Appends received bytes (for transports that receive into their own buffers).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.truncate(self.filled);
        self.buf.extend_from_slice(bytes);
        self.filled = self.buf.len();
    }

    /// Length of the frame at the head of the buffer, once its prefix has arrived.
    fn pending_len(&self) -> Option<usize> {
        picsou_core::wire::frame_len(&self.buf[..self.filled])
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FramingError> {
        if let Some(frame) = self.done.take() {
            return Ok(Some(frame));
        }
        let Some(len) = check_prefix(&self.buf[..self.filled], self.max_frame)? else { return Ok(None) };
        if self.filled < len {
            return Ok(None);
        }
        self.filled -= len;
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

    /// A non-blocking source: hands out `data` in pieces of the sizes in `cuts` (cycling),
    /// saying `WouldBlock` after each piece.
    struct Cuts {
        data: Vec<u8>,
        at: usize,
        cuts: Vec<usize>,
        turn: usize,
        blocked: bool,
    }

    impl Read for Cuts {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.blocked {
                self.blocked = false;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let cut = self.cuts[self.turn % self.cuts.len()];
            let n = cut.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            self.turn += 1;
            self.blocked = n > 0;
            Ok(n)
        }
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
        /// Reading through `spare` (which keeps its initialised space across reads) in
        /// arbitrary cuts yields exactly the frames sent, whatever their sizes.
        #[test]
        fn spare_reads_yield_the_frames(lens in proptest::collection::vec(MIN_FRAME_LEN..150_000usize, 1..12), cut in 1usize..70_000) {
            let frames: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &l)| frame(l, i as u8)).collect();
            let stream: Vec<u8> = frames.concat();
            let mut r = FrameReader::new(200_000);
            let mut out = Vec::new();
            let mut at = 0;
            while at < stream.len() {
                let start = r.buffered();
                let spare = r.spare();
                let n = spare.len().min(cut).min(stream.len() - at);
                spare[..n].copy_from_slice(&stream[at..at + n]);
                r.filled(start, n);
                at += n;
                while let Some(f) = r.next_frame().unwrap() {
                    out.push(f);
                }
            }
            prop_assert_eq!(r.buffered(), 0);
            prop_assert_eq!(out.len(), frames.len());
            for (f, want) in out.iter().zip(&frames) {
                prop_assert_eq!(&f[..], &want[..]);
            }
        }

        /// Reading through `read_from` from a non-blocking source that hands out arbitrary cuts
        /// and says `WouldBlock` in between yields exactly the frames sent, small ones through
        /// the shared buffer and large ones (≥ `DIRECT_MIN`) directly, in order — also when
        /// large frames reuse pooled buffers left by earlier (possibly larger) frames.
        #[test]
        fn read_from_yields_the_frames(
            lens in proptest::collection::vec(prop_oneof![MIN_FRAME_LEN..2_000usize, DIRECT_MIN..200_000usize], 1..10),
            cuts in proptest::collection::vec(1usize..90_000, 1..20),
            pooled in any::<bool>(),
        ) {
            let frames: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &l)| frame(l, i as u8)).collect();
            let mut src = Cuts { data: frames.concat(), at: 0, cuts, turn: 0, blocked: false };
            let pool = BufPool::new(2, 1 << 20);
            let mut r = if pooled { FrameReader::with_pool(250_000, pool.clone()) } else { FrameReader::new(250_000) };
            let mut got = 0;
            loop {
                match r.read_from(&mut src) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => prop_assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
                }
                while let Some(f) = r.next_frame().unwrap() {
                    prop_assert!(got < frames.len());
                    prop_assert_eq!(&f[..], &frames[got][..]);
                    got += 1;
                    // Dropped here: a pooled buffer is free for the next large frame.
                }
            }
            prop_assert_eq!(r.buffered(), 0);
            prop_assert_eq!(got, frames.len());
            if pooled && lens.iter().any(|&l| l >= DIRECT_MIN) {
                prop_assert!(pool.idle() > 0, "large frames' buffers came back");
            }
        }

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
