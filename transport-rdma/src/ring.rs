//! The receive ring: the record format, the sender's side ([`RingWriter`]) and the receiver's
//! side ([`RingReader`]). Pure logic over [`Memory`]: no device, so it is tested everywhere.
//!
//! Each receiver keeps one ring per remote sender in registered memory; the sender keeps a
//! *staging* region of the same size, builds records there at the offsets they will have in
//! the ring, and RDMA-writes contiguous runs of records ([`Span`]s) to the same offsets
//! remotely. Positions are byte counts since the connection started (`u64`, never wrapping);
//! the offset of a position is `pos % size`.
//!
//! ```text
//! record:  | header: len u32, flags u8, check u24 | seq u64 | payload (len, multiple of 8) | trailer u64 |
//! payload: | seg_len u32 | seg_flags u32 | bytes, padded to 8 | seg_len u32 | seg_flags u32 | ... |
//! ```
//!
//! * `seq` numbers records 1, 2, 3, … per connection (the receiver zeroes the ring before a
//!   connection starts, so no stale record can carry the expected number). The receiver polls
//!   the `seq` word at its head until it holds the expected number, checks the header's 24-bit
//!   check and bounds, then polls the trailer, a 64-bit hash of (seq, len, flags): only when it
//!   matches is the record complete. Adapters place the bytes of one RDMA write in increasing
//!   address order (the Mu and FaRM assumption), so header first and trailer last; the
//!   trailer being a hash rather than a copy of `seq` means stale payload bytes from an earlier
//!   lap at the trailer's position cannot pass for it. The engine's per-frame MAC would still
//!   catch a torn frame.
//! * A record never crosses the end of the ring: it is cut short there and the frame
//!   continues in the next record at offset 0 (segments carry an `END` flag on a frame's last
//!   piece, so frames of any size cross records). A record never starts less than
//!   [`MIN_RECORD`] bytes before the end: both sides skip such a tail.
//! * Many frames share one record (one segment header of 8 bytes each), and consecutive
//!   records are contiguous, so a flush of small frames becomes one RDMA write.
//! * Credits: the receiver publishes the position up to which it consumed (its head) by an
//!   RDMA write of `[head, !head]` into the sender's credit word; the sender never writes
//!   past `head + size`. The receiver writes it back lazily: after a quarter of the ring, or
//!   when it has drained the ring and a record asked for credit (`WANT_CREDIT`: the sender had
//!   less than half the ring free after writing it, so it may be about to block).

use std::collections::VecDeque;

use bytes::Bytes;
use picsou_runtime::transport::EncodedFrame;
use picsou_runtime::transport::link::LinkQueue;
use picsou_runtime::transport::outqueue::Written;

use crate::memory::Memory;

/// Bytes of a record header.
pub const HEADER: usize = 16;
/// Bytes of a record trailer.
pub const TRAILER: usize = 8;
/// Bytes of a segment header.
pub const SEGMENT_HEADER: usize = 8;
/// A record never starts closer than this to the end of the ring; both sides skip that tail.
pub const MIN_RECORD: usize = 64;
/// Smallest ring accepted.
pub const MIN_RING: usize = 4096;
/// Record flag: the sender is low on space; write credit back once drained.
pub const FLAG_WANT_CREDIT: u8 = 1;
const SEG_END: u32 = 1;
const TRAILER_SALT: u64 = 0x5049_4353_4f55_5244;

/// A 64-bit mixer (the splitmix64 finaliser).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn check24(seq: u64, len: u32, flags: u8) -> u64 {
    mix(seq ^ (u64::from(len) << 8) ^ u64::from(flags)) >> 40
}

/// The first header word of a record.
fn header_word(len: u32, flags: u8, seq: u64) -> u64 {
    u64::from(len) | (u64::from(flags) << 32) | (check24(seq, len, flags) << 40)
}

/// The trailer of a record: never zero, never equal to `seq` by construction of a hash.
fn trailer_word(seq: u64, len: u32, flags: u8) -> u64 {
    mix(seq.rotate_left(17) ^ ((u64::from(len) << 32) | u64::from(flags)) ^ TRAILER_SALT) | 1
}

const fn pad8(n: usize) -> usize {
    (n + 7) & !7
}

/// Why a ring size is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// Below the smallest ring.
    #[error("ring of {bytes} bytes: at least {min} needed")]
    TooSmall {
        /// The size asked for.
        bytes: usize,
        /// The smallest ring.
        min: usize,
    },
    /// Above 4 GiB (ring offsets are 32 bits).
    #[error("ring of {bytes} bytes: at most 4 GiB")]
    TooLarge {
        /// The size asked for.
        bytes: usize,
    },
}

/// A credit the receiver could not have published: beyond what was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("credit {head} beyond the {tail} bytes written")]
pub struct CreditError {
    /// The published head.
    pub head: u64,
    /// What was written.
    pub tail: u64,
}

/// Size and record limit of a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Ring size in bytes (a multiple of 8).
    pub size: u64,
    /// Largest record (a quarter of the ring, so a blocked sender always asked for credit).
    pub max_record: u64,
}

impl Geometry {
    /// The geometry of a ring of `bytes` (rounded down to a multiple of 8).
    pub fn new(bytes: usize) -> Result<Self, GeometryError> {
        let size = bytes & !7;
        if size < MIN_RING {
            return Err(GeometryError::TooSmall { bytes, min: MIN_RING });
        }
        if size > u32::MAX as usize {
            return Err(GeometryError::TooLarge { bytes });
        }
        Ok(Self { size: size as u64, max_record: ((size / 4) & !7) as u64 })
    }

    /// Bytes both sides skip at `pos` (the tail of the ring too short for a record), or 0.
    pub fn skip_at(&self, pos: u64) -> u64 {
        let to_end = self.size - pos % self.size;
        if to_end < MIN_RECORD as u64 { to_end } else { 0 }
    }

    /// The offset of a position.
    pub fn offset(&self, pos: u64) -> usize {
        (pos % self.size) as usize
    }
}

/// Frames waiting to be written to one peer, in order; the front one may be partly written.
/// A frame in two parts (a head and a shared record section) is queued as two pieces that
/// are copied into records one after the other, the `END` flag on the last.
#[derive(Debug, Default)]
pub struct FrameQueue {
    /// Pieces of frames, each with whether it ends its frame.
    frames: VecDeque<(Bytes, bool)>,
    /// Bytes of the front piece already in records.
    front_done: usize,
    /// Bytes not yet in records.
    bytes: usize,
}

impl FrameQueue {
    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames waiting (the front one may be partly written).
    pub fn len(&self) -> usize {
        self.frames.iter().filter(|(_, ends)| *ends).count()
    }
}

/// The queue of an outgoing link (see the runtime's shared link life cycle).
impl LinkQueue for FrameQueue {
    /// Appends a frame (empty parts are skipped).
    fn push(&mut self, frame: EncodedFrame) {
        for (piece, ends) in frame.into_parts() {
            self.bytes += piece.len();
            self.frames.push_back((piece, ends));
        }
    }

    /// Bytes not yet written.
    fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops everything; returns the frames and bytes dropped.
    fn drop_all(&mut self) -> Written {
        let dropped = Written { frames: self.len() as u64, bytes: self.bytes as u64 };
        self.frames.clear();
        self.front_done = 0;
        self.bytes = 0;
        dropped
    }
}

/// A contiguous run of records in staging and ring (never crossing the end of the ring).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Position of its first byte.
    pub pos: u64,
    /// Length in bytes.
    pub len: u64,
    /// One of its records asked for credit (signal its write: the sender may block).
    pub want_credit: bool,
}

impl Span {
    /// Position after its last byte.
    pub fn end(&self) -> u64 {
        self.pos + self.len
    }
}

/// What [`RingWriter::fill`] moved into records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filled {
    /// Frames whose last byte went into a record.
    pub frames: u64,
    /// Frame bytes that went into records.
    pub bytes: u64,
}

/// The sender's view of a remote ring.
#[derive(Clone, Debug)]
pub struct RingWriter {
    geo: Geometry,
    tail: u64,
    seq: u64,
    /// The receiver's consumed head, from the credit word.
    credit: u64,
    /// Staging bytes before this position are no longer read by the adapter.
    completed: u64,
}

impl RingWriter {
    /// A writer at the start of a connection.
    pub fn new(geo: Geometry) -> Self {
        Self { geo, tail: 0, seq: 1, credit: 0, completed: 0 }
    }

    /// The ring geometry.
    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// Position of the next record.
    pub fn tail(&self) -> u64 {
        self.tail
    }

    /// The receiver's head as last published.
    pub fn credit(&self) -> u64 {
        self.credit
    }

    /// Staging bytes before this position are free again (the adapter finished them).
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Bytes that may be written now: the ring minus what the receiver has not consumed or
    /// the adapter has not finished reading from staging.
    pub fn free(&self) -> u64 {
        self.geo.size - (self.tail - self.credit.min(self.completed))
    }

    /// Takes the receiver's published head. Older values are ignored; a head beyond what was
    /// written is a protocol violation.
    pub fn set_credit(&mut self, head: u64) -> Result<bool, CreditError> {
        if head > self.tail {
            return Err(CreditError { head, tail: self.tail });
        }
        let moved = head > self.credit;
        if moved {
            self.credit = head;
        }
        Ok(moved)
    }

    /// The adapter finished every write up to `pos`.
    pub fn set_completed(&mut self, pos: u64) {
        self.completed = self.completed.max(pos.min(self.tail));
    }

    /// Moves frames from `q` into records in `staging` while the ring has room, appending
    /// the runs to write to `spans`.
    pub fn fill(&mut self, staging: &Memory, q: &mut FrameQueue, spans: &mut Vec<Span>) -> Filled {
        debug_assert_eq!(staging.len() as u64, self.geo.size);
        let mut filled = Filled::default();
        while !q.is_empty() {
            let skip = self.geo.skip_at(self.tail);
            let free = self.free();
            if skip > 0 {
                if free < skip + MIN_RECORD as u64 {
                    break;
                }
                self.tail += skip;
                continue;
            }
            let off = self.geo.offset(self.tail);
            let to_end = self.geo.size - off as u64;
            let room = to_end.min(free).min(self.geo.max_record) as usize & !7;
            if room < MIN_RECORD {
                break;
            }
            let cap = room - HEADER - TRAILER;
            let mut used = 0;
            while let Some((front, ends_frame)) = q.frames.front() {
                if cap - used < SEGMENT_HEADER + 8 {
                    break;
                }
                let rest = &front[q.front_done..];
                let n = rest.len().min(cap - used - SEGMENT_HEADER);
                let piece_done = n == rest.len();
                let end = piece_done && *ends_frame;
                let at = off + HEADER + used;
                staging.store_le(at / 8, n as u64 | (u64::from(if end { SEG_END } else { 0 }) << 32));
                #[allow(unsafe_code)]
                // SAFETY: this span of staging is being built and is posted only after this
                // call; the adapter finished with its previous contents (its space came back
                // from reaped completions), and only this thread touches staging.
                unsafe {
                    staging.write_bytes(at + SEGMENT_HEADER, &rest[..n]);
                }
                used += SEGMENT_HEADER + pad8(n);
                q.bytes -= n;
                filled.bytes += n as u64;
                if piece_done {
                    q.frames.pop_front();
                    q.front_done = 0;
                    filled.frames += u64::from(end);
                } else {
                    q.front_done += n;
                    break;
                }
            }
            let total = (HEADER + used + TRAILER) as u64;
            let flags = if free - total < self.geo.size / 2 { FLAG_WANT_CREDIT } else { 0 };
            let len = used as u32;
            staging.store_le(off / 8, header_word(len, flags, self.seq));
            staging.store_le(off / 8 + 1, self.seq);
            staging.store_le((off + HEADER + used) / 8, trailer_word(self.seq, len, flags));
            let want = flags & FLAG_WANT_CREDIT != 0;
            match spans.last_mut() {
                // Contiguous in the ring too: not across its end.
                Some(s) if s.end() == self.tail && off != 0 => {
                    s.len += total;
                    s.want_credit |= want;
                }
                _ => spans.push(Span { pos: self.tail, len: total, want_credit: want }),
            }
            self.tail += total;
            self.seq += 1;
        }
        filled
    }
}

/// Why a ring's content was refused (the peer wrote something no correct sender writes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// A record or segment does not fit where it claims to be.
    #[error("malformed record {seq} at ring offset {offset}: {why}")]
    Malformed {
        /// Its sequence number.
        seq: u64,
        /// Where it starts.
        offset: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// A frame longer than the largest accepted.
    #[error("frame of more than {max} bytes (length limit)")]
    TooLarge {
        /// The limit.
        max: usize,
    },
}

/// What one [`RingReader::read`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Records consumed.
    pub records: u64,
    /// Ring bytes consumed (records and skipped tails).
    pub ring_bytes: u64,
    /// Frame bytes delivered.
    pub frame_bytes: u64,
    /// The ring had no further complete record (false: the budget ran out first).
    pub drained: bool,
}

/// The receiver's side of a ring.
#[derive(Debug)]
pub struct RingReader {
    geo: Geometry,
    head: u64,
    seq: u64,
    /// The head last written back to the sender.
    reported: u64,
    /// A record consumed since the last write-back asked for credit.
    want_credit: bool,
    /// The frame being reassembled from segments.
    partial: Vec<u8>,
    max_frame: usize,
}

impl RingReader {
    /// A reader at the start of a connection (the ring must be zeroed).
    pub fn new(geo: Geometry, max_frame: usize) -> Self {
        Self { geo, head: 0, seq: 1, reported: 0, want_credit: false, partial: Vec::new(), max_frame }
    }

    /// Position up to which records were consumed.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Consumes complete records (at least one if there is one, then until `budget` ring
    /// bytes), appending whole frames to `frames`.
    pub fn read(&mut self, ring: &Memory, budget: u64, frames: &mut Vec<Bytes>) -> Result<ReadOutcome, RingError> {
        let mut out = ReadOutcome::default();
        loop {
            if out.ring_bytes >= budget && out.records > 0 {
                return Ok(out);
            }
            let pos = self.head + self.geo.skip_at(self.head);
            let off = self.geo.offset(pos);
            let w = off / 8;
            if ring.load_le(w + 1) != self.seq {
                break;
            }
            let h = ring.load_le(w);
            let len = h as u32;
            let flags = (h >> 32) as u8;
            if h >> 40 != check24(self.seq, len, flags) {
                // Header not (completely) there yet.
                break;
            }
            let len = len as usize;
            let bad = |why| RingError::Malformed { seq: self.seq, offset: off, why };
            if !len.is_multiple_of(8)
                || (HEADER + len + TRAILER) as u64 > self.geo.max_record.min(self.geo.size - off as u64)
            {
                return Err(bad("length out of bounds"));
            }
            if ring.load_acquire((off + HEADER + len) / 8) != trailer_word(self.seq, len as u32, flags).to_le() {
                break;
            }
            let mut at = off + HEADER;
            let end = at + len;
            while at < end {
                let s = ring.load_le(at / 8);
                let n = (s as u32) as usize;
                let seg_flags = (s >> 32) as u32;
                if n == 0 || at + SEGMENT_HEADER + pad8(n) > end || seg_flags & !SEG_END != 0 {
                    return Err(bad("bad segment"));
                }
                if self.partial.len() + n > self.max_frame {
                    return Err(RingError::TooLarge { max: self.max_frame });
                }
                #[allow(unsafe_code)]
                // SAFETY: the record's trailer was seen (the writer finished it) and its space
                // is handed back as credit only after this read, so nobody writes it meanwhile.
                unsafe {
                    ring.append_to(at + SEGMENT_HEADER, n, &mut self.partial);
                }
                if seg_flags & SEG_END != 0 {
                    let frame = std::mem::take(&mut self.partial);
                    out.frame_bytes += frame.len() as u64;
                    frames.push(Bytes::from(frame));
                }
                at += SEGMENT_HEADER + pad8(n);
            }
            if flags & FLAG_WANT_CREDIT != 0 {
                self.want_credit = true;
            }
            let next = pos + (HEADER + len + TRAILER) as u64;
            out.ring_bytes += next - self.head;
            out.records += 1;
            self.head = next;
            self.seq += 1;
        }
        out.drained = true;
        Ok(out)
    }

    /// The head to write back to the sender now, if one is due (see the module documentation):
    /// after a quarter of the ring, or once drained if a record asked for credit.
    pub fn credit_due(&mut self, drained: bool) -> Option<u64> {
        let unreported = self.head - self.reported;
        if unreported == 0 {
            return None;
        }
        if unreported >= self.geo.size / 4 || (drained && self.want_credit) {
            self.reported = self.head;
            self.want_credit = false;
            Some(self.head)
        } else {
            None
        }
    }
}

/// Bytes of a credit word: `[head, !head]`, little-endian.
pub const CREDIT_BYTES: usize = 16;

/// Writes a credit word into `mem` at word `w` (the source of the credit write).
pub fn store_credit(mem: &Memory, w: usize, head: u64) {
    mem.store_le(w, head);
    mem.store_le(w + 1, !head);
}

/// The credit word at word `w` of `mem`, if it is consistent (a torn or never written word
/// reads as `None`).
pub fn load_credit(mem: &Memory, w: usize) -> Option<u64> {
    let second = mem.load_acquire(w + 1);
    let head = mem.load_le(w);
    // Re-read the second word: a write may have landed between the two loads.
    (u64::from_le(second) == !head && mem.load_le(w + 1) == !head).then_some(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(id: u64, len: usize) -> Bytes {
        let mut v = vec![0u8; len];
        for (i, b) in v.iter_mut().enumerate() {
            *b = (i as u64).wrapping_mul(31).wrapping_add(id.wrapping_mul(131)) as u8;
        }
        if len >= 8 {
            v[..8].copy_from_slice(&id.to_le_bytes());
        }
        Bytes::from(v)
    }

    /// Every third frame in two parts, as a forwarded record section goes to the transport (a
    /// head, then a shared section): the parts are written one after the other, the frame's
    /// end flagged only after the second.
    fn in_two_parts(f: Bytes, k: usize) -> EncodedFrame {
        let cut = if k % 3 == 1 { f.len() / 3 } else { f.len() };
        EncodedFrame { head: f.slice(..cut), shared: f.slice(cut..) }
    }

    /// A sender and a receiver joined by an in-order "adapter" that copies staging bytes to
    /// the ring, possibly a little at a time.
    struct Link {
        geo: Geometry,
        staging: Memory,
        ring: Memory,
        w: RingWriter,
        r: RingReader,
        q: FrameQueue,
        /// Runs posted but not fully copied: (span, bytes copied so far).
        inflight: VecDeque<(Span, u64)>,
        credit_word: Memory,
        delivered: Vec<Bytes>,
    }

    impl Link {
        fn new(size: usize) -> Self {
            let geo = Geometry::new(size).unwrap();
            let size = geo.size as usize;
            Self {
                geo,
                staging: Memory::new(size),
                ring: Memory::new(size),
                w: RingWriter::new(geo),
                r: RingReader::new(geo, 1 << 20),
                q: FrameQueue::default(),
                inflight: VecDeque::new(),
                credit_word: Memory::new(CREDIT_BYTES),
                delivered: Vec::new(),
            }
        }

        fn fill(&mut self) {
            let mut spans = Vec::new();
            self.w.fill(&self.staging, &mut self.q, &mut spans);
            for s in spans {
                assert!(s.len > 0 && self.geo.offset(s.pos) as u64 + s.len <= self.geo.size, "{s:?}");
                self.inflight.push_back((s, 0));
            }
        }

        /// Copies up to `n` bytes of in-flight runs, in order; completions free staging.
        fn dma(&mut self, mut n: u64) {
            while n > 0 {
                let Some((s, done)) = self.inflight.front_mut() else { return };
                let k = (s.len - *done).min(n);
                let pos = s.pos + *done;
                // The sender must never write over what the receiver has not consumed.
                assert!(pos + k <= self.r.head() + self.geo.size, "overrun at {pos}+{k}, head {}", self.r.head());
                let off = self.geo.offset(pos);
                self.staging.copy_to(off, &self.ring, off, k as usize);
                *done += k;
                n -= k;
                if *done == s.len {
                    let end = s.end();
                    self.inflight.pop_front();
                    self.w.set_completed(end);
                }
            }
        }

        fn read(&mut self, budget: u64) -> ReadOutcome {
            let before = self.delivered.len();
            let out = self.r.read(&self.ring, budget, &mut self.delivered).unwrap();
            assert!(out.records > 0 || self.delivered.len() == before);
            if let Some(h) = self.r.credit_due(out.drained) {
                store_credit(&self.credit_word, 0, h);
            }
            out
        }

        fn take_credit(&mut self) {
            if let Some(h) = load_credit(&self.credit_word, 0) {
                self.w.set_credit(h).unwrap();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Any mix of frame sizes, partial transfers, read budgets and credit delays delivers
        /// every frame exactly once, in order, byte for byte, without ever overrunning.
        #[test]
        fn frames_cross_the_ring_intact(
            size in 4096usize..20_000,
            sizes in proptest::collection::vec(prop_oneof![8 => 1usize..300, 2 => 300usize..5000, 1 => 5000usize..30_000], 1..300),
            steps in proptest::collection::vec((0u8..5, 1u64..6000), 1..400),
        ) {
            let mut l = Link::new(size);
            let mut next = 0usize;
            let mut sent = Vec::new();
            let mut i = 0usize;
            let mut idle = 0;
            while l.delivered.len() < sizes.len() {
                let (op, n) = steps[i % steps.len()];
                i += 1;
                match op {
                    0 => {
                        for _ in 0..(n % 7 + 1) {
                            if next < sizes.len() {
                                let f = frame(next as u64, sizes[next]);
                                sent.push(f.clone());
                                l.q.push(in_two_parts(f, next));
                                next += 1;
                            }
                        }
                        l.fill();
                    }
                    1 => l.dma(n),
                    2 => { l.read(n); }
                    3 => l.take_credit(),
                    _ => l.fill(),
                }
                // Make sure the run ends: after many steps, drive everything to completion.
                if i > steps.len() * 4 {
                    while next < sizes.len() {
                        let f = frame(next as u64, sizes[next]);
                        sent.push(f.clone());
                        l.q.push(in_two_parts(f, next));
                        next += 1;
                    }
                    l.fill();
                    l.dma(u64::MAX);
                    l.read(u64::MAX);
                    l.take_credit();
                    idle += 1;
                    prop_assert!(idle < 100_000, "no progress: {} of {} delivered", l.delivered.len(), sizes.len());
                }
            }
            prop_assert_eq!(l.delivered.len(), sent.len());
            for (k, (got, want)) in l.delivered.iter().zip(&sent).enumerate() {
                prop_assert!(got == want, "frame {k} differs: {} vs {} bytes", got.len(), want.len());
            }
            prop_assert!(l.q.is_empty());
        }
    }

    #[test]
    fn thousands_of_small_frames_wrap_many_times_and_coalesce() {
        let mut l = Link::new(4096);
        let total = 5_000u64;
        let mut sent = 0u64;
        let mut spans = 0usize;
        while (l.delivered.len() as u64) < total {
            for _ in 0..20 {
                if sent < total {
                    l.q.push(frame(sent, 60).into());
                    sent += 1;
                }
            }
            let mut s = Vec::new();
            l.w.fill(&l.staging, &mut l.q, &mut s);
            spans += s.len();
            for x in s {
                l.inflight.push_back((x, 0));
            }
            l.dma(u64::MAX);
            l.read(u64::MAX);
            l.take_credit();
        }
        let laps = l.w.tail() / 4096;
        assert!(laps > 50, "only {laps} laps");
        // 20 frames per fill share one record and one span (two when a fill wraps).
        assert!(spans < (total as usize / 20) * 2, "{spans} spans for {total} frames");
        for (k, f) in l.delivered.iter().enumerate() {
            assert!(*f == frame(k as u64, 60));
        }
    }

    #[test]
    fn a_half_written_record_is_never_consumed() {
        let mut l = Link::new(8192);
        l.q.push(frame(1, 1000).into());
        l.fill();
        let total = l.inflight[0].0.len;
        // Every prefix of the write short of the whole leaves nothing to read.
        for k in (8..total).step_by(8) {
            let mut m = Link::new(8192);
            m.q.push(frame(1, 1000).into());
            m.fill();
            m.dma(k);
            let out = m.read(u64::MAX);
            assert_eq!(out.records, 0, "consumed a record with {k} of {total} bytes");
            assert!(m.delivered.is_empty());
        }
        l.dma(total);
        assert_eq!(l.read(u64::MAX).records, 1);
        assert!(l.delivered[0] == frame(1, 1000));
    }

    #[test]
    fn stale_bytes_from_an_earlier_lap_never_validate() {
        // Fill the ring with copies of what a later record's trailer position will hold
        // (the sequence number it will carry, as earlier-lap payload could) and header words.
        let mut l = Link::new(4096);
        for w in 0..(4096 / 8) {
            l.ring.store_le(w, 1);
        }
        l.q.push(frame(7, 200).into());
        l.fill();
        l.dma(16); // header only
        assert_eq!(l.read(u64::MAX).records, 0);
        l.dma(u64::MAX);
        assert_eq!(l.read(u64::MAX).records, 1);
    }

    #[test]
    fn a_blocked_sender_always_gets_credit_back() {
        let mut l = Link::new(4096);
        // Fill the ring without reading: the writer stops with data queued.
        for k in 0..100 {
            l.q.push(frame(k, 100).into());
        }
        l.fill();
        l.dma(u64::MAX);
        assert!(!l.q.is_empty(), "the ring should be full");
        let blocked_at = l.w.tail();
        // The receiver drains; the credit rule must publish the head even though less than a
        // quarter of the ring may be unreported at the very end.
        l.read(u64::MAX);
        l.take_credit();
        assert_eq!(l.w.credit(), blocked_at);
        l.fill();
        assert!(l.w.tail() > blocked_at);
    }

    #[test]
    fn credit_words_detect_torn_and_stale_values() {
        let m = Memory::new(CREDIT_BYTES);
        assert_eq!(load_credit(&m, 0), None);
        store_credit(&m, 0, 12345);
        assert_eq!(load_credit(&m, 0), Some(12345));
        m.store_le(0, 99_999);
        assert_eq!(load_credit(&m, 0), None);
        let mut w = RingWriter::new(Geometry::new(4096).unwrap());
        assert!(w.set_credit(1).is_err(), "credit beyond what was written");
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let geo = Geometry::new(4096).unwrap();
        let ring = Memory::new(4096);
        // A valid-looking header claiming more than the ring holds.
        let len = 8000u32;
        ring.store_le(0, header_word(len, 0, 1));
        ring.store_le(1, 1);
        let mut r = RingReader::new(geo, 1 << 20);
        assert!(matches!(r.read(&ring, u64::MAX, &mut Vec::new()), Err(RingError::Malformed { .. })));
        // A segment that runs past its record.
        ring.zero();
        ring.store_le(0, header_word(16, 0, 1));
        ring.store_le(1, 1);
        ring.store_le(2, 100 | (1 << 32));
        ring.store_le(4, trailer_word(1, 16, 0));
        let mut r = RingReader::new(geo, 1 << 20);
        assert!(matches!(r.read(&ring, u64::MAX, &mut Vec::new()), Err(RingError::Malformed { .. })));
        // A frame over the receiver's limit.
        let mut l = Link::new(8192);
        l.r = RingReader::new(l.geo, 100);
        l.q.push(frame(1, 500).into());
        l.fill();
        l.dma(u64::MAX);
        assert!(matches!(l.r.read(&l.ring, u64::MAX, &mut Vec::new()), Err(RingError::TooLarge { max: 100 })));
    }

    #[test]
    fn geometry_limits() {
        assert!(Geometry::new(100).is_err());
        let g = Geometry::new(4099).unwrap();
        assert_eq!(g.size, 4096);
        assert_eq!(g.max_record, 1024);
        assert_eq!(g.skip_at(4096 - 8), 8);
        assert_eq!(g.skip_at(4096 - 64), 0);
    }
}
