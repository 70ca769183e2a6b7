//! The wire format: versioned, length-prefixed, MAC-authenticated frames. `core/WIRE.md` is the
//! normative byte-by-byte description; this module is its implementation.
//!
//! # Design
//!
//! A *frame* is the unit a transport moves between two replicas. It carries the sender's ack of
//! the stream it receives (cumulative ack plus φ-list) and any number of *records*, each one
//! message of the sender's stream in some role (first send, resend, forward, repair). Its header
//! also carries a timestamp and the echo of the peer's latest timestamp, from which the peer
//! measures round-trip times (TCP-timestamps style, see [`Frame::echo`]). Batching
//! many records and the ack into one frame is what lets the engine reach millions of messages
//! per second: one MAC and one transport write amortised over the whole batch.
//!
//! - **Fixed layout, little-endian, no varints.** Every field has a fixed width, so encoding is
//!   a handful of stores and decoding a handful of bounds-checked loads; sizes are known up
//!   front ([`FrameBuilder::record_len`], [`frame_overhead`]) so the engine can fill a frame to
//!   its byte budget without trial encoding.
//! - **Length prefix first.** The first four bytes are the total frame length, so stream
//!   transports can split a byte stream into frames ([`frame_len`]) without understanding
//!   anything else, across all versions.
//! - **Authenticate, then parse.** A frame is a *head* (fixed header, φ-list, tag) and a
//!   *record section* (record count, records). The tag is a truncated BLAKE3 keyed hash, under
//!   the key of the (sender, receiver) link, of the head before it and of the section's BLAKE3
//!   digest. [`decode`] checks only the fixed header (cheap, bounded, needed to find the key)
//!   before verifying the MAC, so record parsing — the only part whose cost depends on
//!   attacker-chosen counts — runs only on bytes a holder of the link key produced. Header
//!   checks that precede the MAC are purely structural and leak nothing about the key.
//! - **Forward without copying or hashing again.** Because the tag covers the section through
//!   its digest, a replica that forwards the records of a frame it received to its peers sends
//!   the received section unchanged behind a head of its own ([`FrameBuilder::finish_sharing`]):
//!   one digest (computed while verifying) serves every copy, and the section's bytes go to
//!   the transport as they arrived ([`EncodedFrame`]).
//! - **Zero copy.** Decoded payloads and proofs are [`Bytes::slice`]s of the received frame:
//!   one reference-counted buffer, no per-record allocation. Encoding appends into one
//!   buffer (recycled through a [`BufPool`] for large frames) with no per-record allocation
//!   either.
//! - **Never panic on input.** [`decode`] validates every length before using it, with checked
//!   arithmetic, and rejects anything it does not understand with a typed [`DecodeError`].
//!
//! Frames carry no sequence number or nonce, and the timestamp is not checked for freshness: a
//! network attacker can replay or reorder whole authentic frames. The protocol tolerates that
//! (duplicate records are ignored; the engine must treat acks as monotone, since a replayed frame
//! carries an old ack, and must not take RTT samples from stale echoes, see [`Frame::echo`]).

use bytes::{BufMut, Bytes};

use crate::bufpool::BufPool;

use crate::ids::{ReplicaId, RsmId};
use crate::keys::MacKey;

/// Version of the wire format this crate speaks. Bumped on any change of layout or meaning;
/// receivers reject other versions (see `WIRE.md`, "Versioning").
pub const VERSION: u8 = 2;
/// Length of the MAC tag that ends a frame's head: 128 bits of BLAKE3 output, which is ample
/// for an online forgery bound while saving 16 bytes per frame over the full hash.
pub const TAG_LEN: usize = 16;
/// Length of a record section's digest (a BLAKE3 hash), which the tag covers.
pub const DIGEST_LEN: usize = 32;
/// The two magic bytes at offset 4, `"PQ"`: they catch a peer speaking some other protocol, or
/// a stream transport that lost frame alignment, before any other interpretation.
pub const MAGIC: [u8; 2] = *b"PQ";
/// Length of the fixed header, up to and including the cumulative ack, the timestamp and its
/// echo (the φ-list follows).
pub const HEADER_LEN: usize = 40;
/// Offset of the timestamp (`ts`) in the header; the echo follows it.
const TS_AT: usize = 24;
/// Offset of the timestamp echo in the header.
const ECHO_AT: usize = 32;
/// Length of the record count field that starts the record section.
pub const COUNT_LEN: usize = 4;
/// Length of a record's fixed header: kind, resend number, seq, payload length, proof length.
pub const RECORD_HEADER_LEN: usize = 19;
/// Smallest valid frame: header, empty φ-list, tag, record count.
pub const MIN_FRAME_LEN: usize = HEADER_LEN + TAG_LEN + COUNT_LEN;
/// Largest φ-list the format can express, in 64-bit words (the count is a `u16`).
pub const MAX_PHI_WORDS: usize = u16::MAX as usize;

/// Bytes a frame with a φ-list of `phi_words` words and no records occupies, tag included; add
/// [`FrameBuilder::record_len`] per record for the total. Lets the engine budget frames before
/// building them.
pub const fn frame_overhead(phi_words: usize) -> usize {
    head_len(phi_words) + COUNT_LEN
}

/// Length of a frame's head: the fixed header, a φ-list of `phi_words` words and the tag. The
/// record section starts there.
pub const fn head_len(phi_words: usize) -> usize {
    HEADER_LEN + 8 * phi_words + TAG_LEN
}

// Record kind codes.
const KIND_FIRST: u8 = 0;
const KIND_RESEND: u8 = 1;
const KIND_FORWARD: u8 = 2;
const KIND_REPAIR: u8 = 3;

// Frame kind codes.
const FRAME_CROSS: u8 = 0;
const FRAME_INTERNAL: u8 = 1;

/// Whether a frame crosses between the two RSMs or stays inside one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Between a replica of one RSM and a replica of the other.
    Cross,
    /// Between two replicas of the same RSM (forwarding, repair, internal acks).
    Internal,
}

impl FrameKind {
    /// The kind a frame between `src` and `dst` must have: cross iff their RSMs differ.
    /// [`decode`] rejects frames whose kind byte disagrees.
    pub fn between(src: ReplicaId, dst: ReplicaId) -> Self {
        if src.rsm == dst.rsm { Self::Internal } else { Self::Cross }
    }

    const fn code(self) -> u8 {
        match self {
            Self::Cross => FRAME_CROSS,
            Self::Internal => FRAME_INTERNAL,
        }
    }
}

/// What a replica reports about the incoming stream it receives: every seq `< next` is held;
/// bit `i` of `phi` (word `i / 64`, bit `i % 64`) set means seq `next + 1 + i` is held. Seq
/// `next` is missing by definition, so it has no bit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckReport {
    /// Cumulative ack: all seqs below are held.
    pub next: u64,
    /// φ-list words (trailing zero words are not sent).
    pub phi: Vec<u64>,
}

/// The role of a record in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// The first send of a message, by its scheduled first sender.
    First,
    /// Resend number `number` (≥ 1) of a message.
    Resend {
        /// Which resend of the rotation this is.
        number: u16,
    },
    /// A receiver forwarding a message it got first-hand to a peer of its RSM.
    Forward,
    /// A receiver sending a peer a message that peer still reports missing.
    Repair,
}

impl RecordKind {
    /// Wire code and resend-number field.
    const fn encode(self) -> (u8, u16) {
        match self {
            Self::First => (KIND_FIRST, 0),
            Self::Resend { number } => (KIND_RESEND, number),
            Self::Forward => (KIND_FORWARD, 0),
            Self::Repair => (KIND_REPAIR, 0),
        }
    }

    /// Inverse of [`Self::encode`], rejecting codes and numbers a correct encoder never writes.
    const fn decode(code: u8, number: u16) -> Result<Self, DecodeError> {
        let kind = match code {
            KIND_FIRST => Self::First,
            KIND_RESEND => {
                return if number >= 1 { Ok(Self::Resend { number }) } else { Err(DecodeError::BadResendNumber) };
            }
            KIND_FORWARD => Self::Forward,
            KIND_REPAIR => Self::Repair,
            other => return Err(DecodeError::UnknownRecordKind(other)),
        };
        if number != 0 {
            return Err(DecodeError::BadResendNumber);
        }
        Ok(kind)
    }
}

/// One message in a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Role of this copy.
    pub kind: RecordKind,
    /// Position in the sending RSM's stream.
    pub seq: u64,
    /// The message.
    pub payload: Bytes,
    /// Proof that the sending RSM committed it (empty under CFT).
    pub proof: Bytes,
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Cross or internal.
    pub kind: FrameKind,
    /// Sender replica (authenticated by the MAC).
    pub src: ReplicaId,
    /// Intended receiver replica.
    pub dst: ReplicaId,
    /// The sender's ack of the stream it receives.
    pub ack: AckReport,
    /// The sender's clock, in nanoseconds, when it built the frame (0 if it set none, see
    /// [`FrameBuilder::set_timestamps`]). The receiver remembers the latest one per peer and
    /// echoes it back in [`Frame::echo`]. Unvalidated: any value is structurally valid.
    pub ts: u64,
    /// The latest [`Frame::ts`] the sender has received from this frame's destination, echoed
    /// back; 0 means none yet.
    ///
    /// The receiver (the original timestamper) takes an RTT sample as its own clock minus
    /// `echo`, but only for an echo that matches a `ts` it actually sent to that peer and that it
    /// has not sampled before (e.g. only echoes greater than the last one sampled): anything else
    /// is a replay, a duplicate or a lie. The sample includes the time the peer held the
    /// timestamp before echoing it, as TCP timestamps include delayed-ack time. A peer can
    /// distort only samples of its own RTT, never another replica's.
    pub echo: u64,
    /// Messages carried.
    pub records: Vec<Record>,
}

/// A received frame's record section (record count and records, as they arrived) and its
/// digest: what a replica needs to forward those records to a peer unchanged
/// ([`FrameBuilder::finish_sharing`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSection {
    /// The section's bytes, a slice of the received frame.
    pub bytes: Bytes,
    /// Its BLAKE3 digest, which the MAC of every frame carrying it covers.
    pub digest: [u8; DIGEST_LEN],
}

/// A frame ready for a transport: the bytes of `head`, then those of `shared`. A frame the
/// engine built is whole in `head` (`shared` empty); a frame forwarding a received record
/// section has a head of its own and shares the section with the frame it arrived in and the
/// other forwarded copies, so that nothing is copied or hashed per copy. Transports that write
/// scattered buffers send both as they are; others join them ([`EncodedFrame::into_bytes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The frame's first bytes (all of them unless `shared` is non-empty).
    pub head: Bytes,
    /// The rest: a record section shared with other frames, or empty.
    pub shared: Bytes,
}

impl EncodedFrame {
    /// Length of the frame in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + self.shared.len()
    }

    /// Whether the frame has no bytes (never true of a frame the engine built).
    pub fn is_empty(&self) -> bool {
        self.head.is_empty() && self.shared.is_empty()
    }

    /// The frame's non-empty parts in order, each with whether it ends the frame: what a
    /// transport queues to write the parts where they are.
    pub fn into_parts(self) -> impl Iterator<Item = (Bytes, bool)> {
        let whole = self.shared.is_empty();
        [(self.head, whole), (self.shared, true)].into_iter().filter(|(part, _)| !part.is_empty())
    }

    /// The frame's bytes in one buffer (a copy only if it has a shared part).
    pub fn into_bytes(self) -> Bytes {
        if self.shared.is_empty() {
            return self.head;
        }
        let mut joined = Vec::with_capacity(self.len());
        joined.extend_from_slice(&self.head);
        joined.extend_from_slice(&self.shared);
        Bytes::from(joined)
    }
}

impl From<Bytes> for EncodedFrame {
    fn from(head: Bytes) -> Self {
        Self { head, shared: Bytes::new() }
    }
}

/// Limits applied while decoding untrusted bytes.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest whole frame.
    pub max_frame_bytes: usize,
    /// Largest payload of one record.
    pub max_payload_bytes: usize,
    /// Largest proof of one record.
    pub max_proof_bytes: usize,
    /// Largest φ-list, in 64-bit words.
    pub max_phi_words: usize,
}

/// Why bytes from a peer are not a valid frame.
///
/// Variants before [`DecodeError::BadMac`] in check order are found before authentication and
/// may come from anyone on the network; later ones come from a frame that the holder of the link
/// key produced, i.e. a broken or Byzantine peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the format needs.
    #[error("truncated frame")]
    Truncated,
    /// The length field does not match the number of bytes received.
    #[error("length field says {declared} bytes, frame has {actual}")]
    LengthMismatch {
        /// Value of the length field.
        declared: usize,
        /// Bytes actually received.
        actual: usize,
    },
    /// The frame exceeds [`Limits::max_frame_bytes`].
    #[error("frame of {len} bytes exceeds limit {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The magic bytes are not [`MAGIC`].
    #[error("bad magic")]
    BadMagic,
    /// A wire version this crate does not speak.
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u8),
    /// A frame kind byte other than cross (0) or internal (1).
    #[error("unknown frame kind {0}")]
    UnknownFrameKind(u8),
    /// An RSM byte other than 0 or 1.
    #[error("bad rsm {0}")]
    BadRsm(u8),
    /// The frame kind disagrees with the RSMs of source and destination.
    #[error("frame kind does not match the rsms of its ends")]
    KindMismatch,
    /// The φ-list exceeds [`Limits::max_phi_words`].
    #[error("phi list of {words} words exceeds limit {max}")]
    PhiTooLong {
        /// Its length in words.
        words: usize,
        /// The limit.
        max: usize,
    },
    /// No MAC key is known for the claimed source.
    #[error("no mac key for {0}")]
    UnknownKey(ReplicaId),
    /// The MAC does not verify: the frame was corrupted, forged, or sent under another key.
    #[error("bad mac")]
    BadMac,
    /// The record count exceeds what the remaining bytes could hold.
    #[error("record count {count} exceeds the {max} that fit")]
    TooManyRecords {
        /// Declared count.
        count: usize,
        /// Most records the remaining bytes could hold.
        max: usize,
    },
    /// A record kind byte outside 0..=3.
    #[error("unknown record kind {0}")]
    UnknownRecordKind(u8),
    /// A resend record with number 0, or another record with a nonzero number.
    #[error("bad resend number")]
    BadResendNumber,
    /// A payload exceeds [`Limits::max_payload_bytes`].
    #[error("payload of {len} bytes exceeds limit {max}")]
    PayloadTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A proof exceeds [`Limits::max_proof_bytes`].
    #[error("proof of {len} bytes exceeds limit {max}")]
    ProofTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes between the last record and the tag.
    #[error("trailing bytes after records")]
    TrailingBytes,
}

/// Builds one frame incrementally into a buffer, then seals it with a MAC.
///
/// The engine creates a builder per outgoing frame, pushes records while
/// [`FrameBuilder::len`] plus the next [`FrameBuilder::record_len`] fits its budget, and calls
/// [`FrameBuilder::finish`]; or, to forward a received record section, starts one with
/// [`FrameBuilder::head_for_section`], pushes nothing and calls
/// [`FrameBuilder::finish_sharing`]. Nothing is allocated per record.
#[derive(Debug)]
pub struct FrameBuilder {
    buf: Vec<u8>,
    /// Where `buf` came from and returns to, for large frames.
    pool: Option<BufPool>,
    /// Offset of the tag, written by `finish` (the end of the header and φ-list).
    tag_at: usize,
    /// Offset of the record count field (the start of the record section), patched by `finish`.
    count_at: usize,
    /// Whether the record count field is written yet (a head for a shared section has none).
    counted: bool,
    records: u32,
}

/// Room reserved beyond the header by [`FrameBuilder::new`]: enough for a few small records
/// without regrowth; bigger frames should use [`FrameBuilder::with_capacity`].
const DEFAULT_RECORD_ROOM: usize = 1024;

impl FrameBuilder {
    /// Starts a frame: writes the header and the ack, reserving room for about a kilobyte of
    /// records (the buffer grows as needed). The timestamp and its echo are 0 until
    /// [`FrameBuilder::set_timestamps`] sets them.
    ///
    /// Trailing zero φ words are not written (they say nothing), and a φ-list longer than
    /// [`MAX_PHI_WORDS`] is cut there — dropping bits only under-reports what is held, which is
    /// always safe. `kind` should be [`FrameKind::between`]`(src, dst)` and RSM ids 0 or 1;
    /// otherwise the receiver rejects the frame.
    pub fn new(kind: FrameKind, src: ReplicaId, dst: ReplicaId, ack: &AckReport) -> Self {
        Self::with_capacity(kind, src, dst, ack, DEFAULT_RECORD_ROOM)
    }

    /// Like [`FrameBuilder::new`], reserving `record_bytes` bytes for records up front so that
    /// filling a frame of known budget never reallocates.
    pub fn with_capacity(
        kind: FrameKind,
        src: ReplicaId,
        dst: ReplicaId,
        ack: &AckReport,
        record_bytes: usize,
    ) -> Self {
        Self::with_capacity_in(kind, src, dst, ack, record_bytes, None)
    }

    /// Like [`FrameBuilder::with_capacity`], taking the buffer from `pool` (if given): the
    /// finished frame returns it there when its last view is dropped.
    pub fn with_capacity_in(
        kind: FrameKind,
        src: ReplicaId,
        dst: ReplicaId,
        ack: &AckReport,
        record_bytes: usize,
        pool: Option<&BufPool>,
    ) -> Self {
        let capacity = frame_overhead(significant_phi(&ack.phi).len()).saturating_add(record_bytes);
        let buf = match pool {
            Some(pool) => pool.take(capacity),
            None => Vec::with_capacity(capacity),
        };
        let mut b = Self::start(buf, kind, src, dst, ack);
        b.pool = pool.cloned();
        b.ensure_count();
        b
    }

    /// Starts the head of a frame that will carry a received record section
    /// ([`FrameBuilder::finish_sharing`]): the header, the ack and room for the tag, in a
    /// buffer of exactly that size, so that the finished head becomes shared bytes without
    /// another allocation (one per forwarded frame, not two). Pushing records into it still
    /// works (the buffer then grows).
    pub fn head_for_section(kind: FrameKind, src: ReplicaId, dst: ReplicaId, ack: &AckReport) -> Self {
        let buf = Vec::with_capacity(head_len(significant_phi(&ack.phi).len()));
        Self::start(buf, kind, src, dst, ack)
    }

    /// Writes the header, the φ-list and room for the tag into `buf` (empty): a builder whose
    /// record count field is not written yet.
    fn start(mut buf: Vec<u8>, kind: FrameKind, src: ReplicaId, dst: ReplicaId, ack: &AckReport) -> Self {
        let phi = significant_phi(&ack.phi);
        buf.put_u32_le(0); // frame_len, patched by `finish`
        buf.put_slice(&MAGIC);
        buf.put_u8(VERSION);
        buf.put_u8(kind.code());
        buf.put_u8(src.rsm.0);
        buf.put_u8(dst.rsm.0);
        buf.put_u16_le(src.index);
        buf.put_u16_le(dst.index);
        // `significant_phi` caps the length at `MAX_PHI_WORDS`.
        buf.put_u16_le(phi.len() as u16);
        buf.put_u64_le(ack.next);
        debug_assert_eq!(buf.len(), TS_AT);
        buf.put_u64_le(0); // ts, set by `set_timestamps`
        buf.put_u64_le(0); // echo, set by `set_timestamps`
        debug_assert_eq!(buf.len(), HEADER_LEN);
        for &word in phi {
            buf.put_u64_le(word);
        }
        let tag_at = buf.len();
        buf.put_bytes(0, TAG_LEN); // tag, written by `finish`
        let count_at = buf.len();
        debug_assert_eq!(count_at, head_len(phi.len()));
        Self { buf, pool: None, tag_at, count_at, counted: false, records: 0 }
    }

    /// Writes the record count field if this builder started as a section head.
    fn ensure_count(&mut self) {
        if !self.counted {
            self.buf.put_u32_le(0); // record count, patched by `finish`
            self.counted = true;
        }
    }

    /// Sets the frame's timestamp (`ts`, the sender's clock in nanoseconds now) and the echo of
    /// the latest timestamp received from the destination (`echo`, 0 if none); see [`Frame::ts`]
    /// and [`Frame::echo`]. Both are 0 if this is never called; a later call overwrites an
    /// earlier one. May be called at any time before [`FrameBuilder::finish`].
    pub fn set_timestamps(&mut self, ts: u64, echo: u64) {
        self.buf[TS_AT..ECHO_AT].copy_from_slice(&ts.to_le_bytes());
        self.buf[ECHO_AT..HEADER_LEN].copy_from_slice(&echo.to_le_bytes());
    }

    /// Encoded size of a record with these lengths.
    pub const fn record_len(payload_len: usize, proof_len: usize) -> usize {
        RECORD_HEADER_LEN + payload_len + proof_len
    }

    /// Bytes the frame would have if finished now.
    pub fn len(&self) -> usize {
        self.buf.len() + if self.counted { 0 } else { COUNT_LEN }
    }

    /// Whether no record has been pushed yet (a frame may still be sent for its ack alone).
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Number of records pushed.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// Appends a record.
    ///
    /// # Panics
    ///
    /// If `payload` or `proof` is 4 GiB or longer (the length fields are `u32`; the engine's
    /// limits are far below).
    pub fn push(&mut self, kind: RecordKind, seq: u64, payload: &[u8], proof: &[u8]) {
        let payload_len = u32::try_from(payload.len()).expect("payload too large for the wire");
        let proof_len = u32::try_from(proof.len()).expect("proof too large for the wire");
        let (code, number) = kind.encode();
        self.ensure_count();
        self.buf.reserve(Self::record_len(payload.len(), proof.len()));
        self.buf.put_u8(code);
        self.buf.put_u16_le(number);
        self.buf.put_u64_le(seq);
        self.buf.put_u32_le(payload_len);
        self.buf.put_u32_le(proof_len);
        self.buf.put_slice(payload);
        self.buf.put_slice(proof);
        self.records += 1;
    }

    /// Writes the length and record count, then the MAC, and returns the frame.
    ///
    /// # Panics
    ///
    /// If the frame is 4 GiB or longer (the length field is a `u32`).
    pub fn finish(mut self, key: &MacKey) -> Bytes {
        self.ensure_count();
        let Self { mut buf, pool, tag_at, count_at, records, .. } = self;
        let total = u32::try_from(buf.len()).expect("frame too large for the wire");
        buf[..4].copy_from_slice(&total.to_le_bytes());
        buf[count_at..count_at + COUNT_LEN].copy_from_slice(&records.to_le_bytes());
        let digest = section_digest(&buf[count_at..]);
        let tag = mac(key, &buf[..tag_at], &digest);
        buf[tag_at..count_at].copy_from_slice(&tag);
        match pool {
            Some(pool) => pool.freeze(buf),
            None => Bytes::from(buf),
        }
    }

    /// Seals a frame that carries `section` (a record section received in another frame)
    /// as its records, and returns it as this frame's head followed by the shared section:
    /// the section is neither copied nor hashed again. Records pushed before are discarded.
    ///
    /// # Panics
    ///
    /// If the frame is 4 GiB or longer (the length field is a `u32`).
    pub fn finish_sharing(self, key: &MacKey, section: &RecordSection) -> EncodedFrame {
        let Self { mut buf, tag_at, count_at, records, .. } = self;
        debug_assert!(records == 0, "records pushed into a frame that shares a section");
        buf.truncate(count_at);
        let total = u32::try_from(count_at + section.bytes.len()).expect("frame too large for the wire");
        buf[..4].copy_from_slice(&total.to_le_bytes());
        let tag = mac(key, &buf[..tag_at], &section.digest);
        buf[tag_at..count_at].copy_from_slice(&tag);
        EncodedFrame { head: Bytes::from(buf), shared: section.bytes.clone() }
    }
}

/// The φ words worth sending: at most [`MAX_PHI_WORDS`], without trailing zeros.
fn significant_phi(phi: &[u64]) -> &[u64] {
    let mut len = phi.len().min(MAX_PHI_WORDS);
    while len > 0 && phi[len - 1] == 0 {
        len -= 1;
    }
    &phi[..len]
}

/// Fuzzing support: rewrites the length field and the MAC of `frame` under `key`, so that
/// arbitrary bytes reach the checks made after authentication (a Byzantine peer's power).
/// Leaves a frame shorter than its own head unchanged.
#[doc(hidden)]
pub fn reseal(frame: &mut [u8], key: &MacKey) {
    if frame.len() < MIN_FRAME_LEN {
        return;
    }
    let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    frame[..4].copy_from_slice(&len.to_le_bytes());
    let phi_words = usize::from(u16::from_le_bytes([frame[14], frame[15]]));
    let section_at = head_len(phi_words);
    if frame.len() < section_at {
        return;
    }
    let tag_at = section_at - TAG_LEN;
    let digest = section_digest(&frame[section_at..]);
    let tag = mac(key, &frame[..tag_at], &digest);
    frame[tag_at..section_at].copy_from_slice(&tag);
}

/// The digest of a record section (count and records) that a frame's tag covers.
fn section_digest(section: &[u8]) -> [u8; DIGEST_LEN] {
    *blake3::hash(section).as_bytes()
}

/// The tag of a frame whose header and φ-list are `head` and whose record section has digest
/// `digest`: the first [`TAG_LEN`] bytes of the BLAKE3 keyed hash under `key` of `head`
/// followed by `digest`.
fn mac(key: &MacKey, head: &[u8], digest: &[u8; DIGEST_LEN]) -> [u8; TAG_LEN] {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(head);
    hasher.update(digest);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&hasher.finalize().as_bytes()[..TAG_LEN]);
    tag
}

/// Equality of two tags in time independent of where they differ, so that response timing
/// does not let an attacker forge a tag byte by byte.
fn tags_equal(a: &[u8; TAG_LEN], b: &[u8; TAG_LEN]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Bounds-checked little-endian reads from a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

fn rsm(byte: u8) -> Result<RsmId, DecodeError> {
    if byte <= 1 { Ok(RsmId(byte)) } else { Err(DecodeError::BadRsm(byte)) }
}

/// Decodes and authenticates a frame. `key` maps the claimed source replica to the MAC key of
/// the link; unknown sources are rejected.
///
/// Checks, in order: minimum length, length field, [`Limits::max_frame_bytes`], magic, version,
/// frame kind, RSM bytes, kind against RSMs, [`Limits::max_phi_words`]; then the MAC under
/// `key(src)`; then the records. The timestamp and echo are returned as they are (any value is
/// valid). Payloads and proofs are slices of `frame` (no copy).
///
/// The caller must still check that `dst` is itself and `src` is the peer the frame came from:
/// the MAC proves only that the holder of the `(src, dst)` link key wrote it.
pub fn decode(
    frame: Bytes,
    limits: &Limits,
    key: impl FnOnce(ReplicaId) -> Option<MacKey>,
) -> Result<Frame, DecodeError> {
    decode_with_section(frame, limits, key).map(|(frame, _)| frame)
}

/// Like [`decode`], also returning the frame's record section and its digest, for a replica
/// that forwards the records unchanged.
pub fn decode_with_section(
    frame: Bytes,
    limits: &Limits,
    key: impl FnOnce(ReplicaId) -> Option<MacKey>,
) -> Result<(Frame, RecordSection), DecodeError> {
    let actual = frame.len();
    if actual < MIN_FRAME_LEN {
        return Err(DecodeError::Truncated);
    }
    let mut r = Reader { buf: &frame, pos: 0 };

    // Fixed header: structural checks only, before the MAC.
    let declared = r.u32()? as usize;
    if declared != actual {
        return Err(DecodeError::LengthMismatch { declared, actual });
    }
    if actual > limits.max_frame_bytes {
        return Err(DecodeError::TooLarge { len: actual, max: limits.max_frame_bytes });
    }
    if r.array::<2>()? != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let kind = match r.u8()? {
        FRAME_CROSS => FrameKind::Cross,
        FRAME_INTERNAL => FrameKind::Internal,
        other => return Err(DecodeError::UnknownFrameKind(other)),
    };
    let src_rsm = rsm(r.u8()?)?;
    let dst_rsm = rsm(r.u8()?)?;
    let src = ReplicaId { rsm: src_rsm, index: r.u16()? };
    let dst = ReplicaId { rsm: dst_rsm, index: r.u16()? };
    if kind != FrameKind::between(src, dst) {
        return Err(DecodeError::KindMismatch);
    }
    let phi_words = r.u16()? as usize;
    if phi_words > limits.max_phi_words {
        return Err(DecodeError::PhiTooLong { words: phi_words, max: limits.max_phi_words });
    }
    // The ack, φ-list, tag and record count must fit.
    if actual < frame_overhead(phi_words) {
        return Err(DecodeError::Truncated);
    }

    // Authenticate the head and, through its digest, the record section.
    let key = key(src).ok_or(DecodeError::UnknownKey(src))?;
    let tag_at = head_len(phi_words) - TAG_LEN;
    let section_at = head_len(phi_words);
    let tag: &[u8; TAG_LEN] = frame[tag_at..section_at].try_into().map_err(|_| DecodeError::Truncated)?;
    let digest = section_digest(&frame[section_at..]);
    if !tags_equal(&mac(&key, &frame[..tag_at], &digest), tag) {
        return Err(DecodeError::BadMac);
    }

    // Authentic from here on: parse the ack, the timestamps and the records.
    let next = r.u64()?;
    let ts = r.u64()?;
    let echo = r.u64()?;
    let mut phi = Vec::with_capacity(phi_words);
    for _ in 0..phi_words {
        phi.push(r.u64()?);
    }
    r.take(TAG_LEN)?;
    let count = r.u32()? as usize;
    let max = r.remaining() / RECORD_HEADER_LEN;
    if count > max {
        return Err(DecodeError::TooManyRecords { count, max });
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        let code = r.u8()?;
        let number = r.u16()?;
        let kind = RecordKind::decode(code, number)?;
        let seq = r.u64()?;
        let payload_len = r.u32()? as usize;
        let proof_len = r.u32()? as usize;
        if payload_len > limits.max_payload_bytes {
            return Err(DecodeError::PayloadTooLarge { len: payload_len, max: limits.max_payload_bytes });
        }
        if proof_len > limits.max_proof_bytes {
            return Err(DecodeError::ProofTooLarge { len: proof_len, max: limits.max_proof_bytes });
        }
        let payload_at = r.pos;
        r.take(payload_len)?;
        let proof_at = r.pos;
        r.take(proof_len)?;
        records.push(Record {
            kind,
            seq,
            payload: frame.slice(payload_at..proof_at),
            proof: frame.slice(proof_at..r.pos),
        });
    }
    if r.remaining() != 0 {
        return Err(DecodeError::TrailingBytes);
    }
    let section = RecordSection { bytes: frame.slice(section_at..), digest };
    Ok((Frame { kind, src, dst, ack: AckReport { next, phi }, ts, echo, records }, section))
}

/// For stream transports: the total length of the frame that starts with `prefix`, once at
/// least 4 bytes are available.
///
/// The transport should reject a length above its [`Limits::max_frame_bytes`] (or below
/// [`MIN_FRAME_LEN`]) before buffering that many bytes, and then hand the whole frame to
/// [`decode`].
pub fn frame_len(prefix: &[u8]) -> Option<usize> {
    let b: [u8; 4] = prefix.get(..4)?.try_into().ok()?;
    Some(u32::from_le_bytes(b) as usize)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const KEY: MacKey = [7u8; 32];
    const OTHER_KEY: MacKey = [8u8; 32];

    fn limits() -> Limits {
        Limits { max_frame_bytes: 1 << 20, max_payload_bytes: 1 << 16, max_proof_bytes: 1 << 12, max_phi_words: 64 }
    }

    fn dec(frame: Bytes) -> Result<Frame, DecodeError> {
        decode(frame, &limits(), |_| Some(KEY))
    }

    fn s(i: u16) -> ReplicaId {
        ReplicaId::new(0, i)
    }

    fn r(i: u16) -> ReplicaId {
        ReplicaId::new(1, i)
    }

    fn build(frame: &Frame, key: &MacKey) -> Bytes {
        let mut b = FrameBuilder::new(frame.kind, frame.src, frame.dst, &frame.ack);
        b.set_timestamps(frame.ts, frame.echo);
        for rec in &frame.records {
            b.push(rec.kind, rec.seq, &rec.payload, &rec.proof);
        }
        b.finish(key)
    }

    fn rec(kind: RecordKind, seq: u64, payload: &[u8], proof: &[u8]) -> Record {
        Record { kind, seq, payload: Bytes::copy_from_slice(payload), proof: Bytes::copy_from_slice(proof) }
    }

    fn sample() -> Frame {
        Frame {
            kind: FrameKind::Cross,
            src: s(3),
            dst: r(65_000),
            ack: AckReport { next: 1 << 40, phi: vec![0b1011, u64::MAX, 1 << 63] },
            ts: 0x0123_4567_89AB_CDEF,
            echo: u64::MAX - 1,
            records: vec![
                rec(RecordKind::First, 0, b"first", b""),
                rec(RecordKind::Resend { number: 1 }, 7, b"resend one", &[0xAB; 70]),
                rec(RecordKind::Resend { number: u16::MAX }, u64::MAX, b"", b"p"),
                rec(RecordKind::Forward, 12, &[0u8; 1000], b""),
                rec(RecordKind::Repair, 13, b"repair", b"proof"),
                rec(RecordKind::First, 14, b"", b""),
            ],
        }
    }

    /// A raw header and φ-list with zero timestamps (length left zero for `seal`, which also
    /// inserts the tag after the φ-list).
    fn raw_header(kind: u8, src: (u8, u16), dst: (u8, u16), next: u64, phi: &[u64]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&MAGIC);
        v.push(VERSION);
        v.push(kind);
        v.push(src.0);
        v.push(dst.0);
        v.extend_from_slice(&src.1.to_le_bytes());
        v.extend_from_slice(&dst.1.to_le_bytes());
        v.extend_from_slice(&(phi.len() as u16).to_le_bytes());
        v.extend_from_slice(&next.to_le_bytes());
        v.extend_from_slice(&0u64.to_le_bytes()); // ts
        v.extend_from_slice(&0u64.to_le_bytes()); // echo
        for w in phi {
            v.extend_from_slice(&w.to_le_bytes());
        }
        v
    }

    /// A valid cross header from s0 to r0 with no φ-list, followed by a record count.
    fn raw_prefix(count: u32) -> Vec<u8> {
        let mut v = raw_header(0, (0, 0), (1, 0), 5, &[]);
        v.extend_from_slice(&count.to_le_bytes());
        v
    }

    fn raw_record(code: u8, number: u16, seq: u64, payload: &[u8], proof: &[u8]) -> Vec<u8> {
        raw_record_lens(code, number, seq, payload.len() as u32, proof.len() as u32, payload, proof)
    }

    fn raw_record_lens(
        code: u8,
        number: u16,
        seq: u64,
        payload_len: u32,
        proof_len: u32,
        payload: &[u8],
        proof: &[u8],
    ) -> Vec<u8> {
        let mut v = vec![code];
        v.extend_from_slice(&number.to_le_bytes());
        v.extend_from_slice(&seq.to_le_bytes());
        v.extend_from_slice(&payload_len.to_le_bytes());
        v.extend_from_slice(&proof_len.to_le_bytes());
        v.extend_from_slice(payload);
        v.extend_from_slice(proof);
        v
    }

    /// Patches the length field of `body` (the frame without its tag: header, φ-list, record
    /// section) and inserts a valid tag after the φ-list (or at the end if the φ count points
    /// beyond it).
    fn seal(mut body: Vec<u8>, key: &MacKey) -> Bytes {
        let total = (body.len() + TAG_LEN) as u32;
        body[..4].copy_from_slice(&total.to_le_bytes());
        let words = u16::from_le_bytes([body[14], body[15]]) as usize;
        let tag_at = (HEADER_LEN + 8 * words).min(body.len());
        let tag = mac(key, &body[..tag_at], &section_digest(&body[tag_at..]));
        body.splice(tag_at..tag_at, tag);
        Bytes::from(body)
    }

    /// Errors found before the MAC is checked (or the MAC check itself).
    fn is_pre_mac(e: &DecodeError) -> bool {
        matches!(
            e,
            DecodeError::Truncated
                | DecodeError::LengthMismatch { .. }
                | DecodeError::TooLarge { .. }
                | DecodeError::BadMagic
                | DecodeError::UnsupportedVersion(_)
                | DecodeError::UnknownFrameKind(_)
                | DecodeError::BadRsm(_)
                | DecodeError::KindMismatch
                | DecodeError::PhiTooLong { .. }
                | DecodeError::UnknownKey(_)
                | DecodeError::BadMac
        )
    }

    #[test]
    fn round_trip_all_kinds() {
        let f = sample();
        let bytes = build(&f, &KEY);
        let expected_len = frame_overhead(3)
            + f.records.iter().map(|r| FrameBuilder::record_len(r.payload.len(), r.proof.len())).sum::<usize>();
        assert_eq!(bytes.len(), expected_len);
        assert_eq!(frame_len(&bytes), Some(bytes.len()));
        assert_eq!(dec(bytes).unwrap(), f);
    }

    #[test]
    fn round_trip_internal_and_empty() {
        for (src, dst) in [(s(0), s(1)), (r(2), r(0)), (r(9), s(0))] {
            let f = Frame {
                kind: FrameKind::between(src, dst),
                src,
                dst,
                ack: AckReport::default(),
                ts: 0,
                echo: 0,
                records: vec![],
            };
            let bytes = build(&f, &KEY);
            assert_eq!(bytes.len(), MIN_FRAME_LEN);
            assert_eq!(dec(bytes).unwrap(), f);
        }
    }

    #[test]
    fn decoded_records_share_the_frame_buffer() {
        let bytes = build(&sample(), &KEY);
        let range = bytes.as_ptr_range();
        let f = dec(bytes.clone()).unwrap();
        for rec in f.records.iter().filter(|r| !r.payload.is_empty()) {
            assert!(range.contains(&rec.payload.as_ptr()));
        }
    }

    #[test]
    fn a_section_head_builds_the_same_frames_as_a_full_builder() {
        let f = sample();
        let bytes = build(&f, &KEY);
        let (_, section) = decode_with_section(bytes, &limits(), |_| Some(KEY)).unwrap();
        let (me, peer) = (f.dst, ReplicaId::new(1, 7));
        let ack = AckReport { next: 9, phi: vec![1, 0, 4] };
        let start = |head: bool| {
            let mut b = if head {
                FrameBuilder::head_for_section(FrameKind::Internal, me, peer, &ack)
            } else {
                FrameBuilder::new(FrameKind::Internal, me, peer, &ack)
            };
            b.set_timestamps(5, 6);
            b
        };
        assert_eq!(start(true).len(), start(false).len(), "same length before any record");
        assert_eq!(start(true).len(), frame_overhead(3));
        // Sharing a section: same bytes, and the head is exactly the head (no spare room).
        let (a, b) =
            (start(true).finish_sharing(&OTHER_KEY, &section), start(false).finish_sharing(&OTHER_KEY, &section));
        assert_eq!(a.clone().into_bytes(), b.into_bytes());
        assert_eq!(a.head.len(), head_len(3));
        // Records pushed into a section head still make a well-formed frame.
        let fill = |mut b: FrameBuilder| {
            for rec in &f.records {
                b.push(rec.kind, rec.seq, &rec.payload, &rec.proof);
            }
            b.finish(&OTHER_KEY)
        };
        let (a, b) = (fill(start(true)), fill(start(false)));
        assert_eq!(a, b);
        assert_eq!(decode(a, &limits(), |_| Some(OTHER_KEY)).unwrap().records, f.records);
        // And so does an empty one (an ack-only frame).
        assert_eq!(start(true).finish(&OTHER_KEY), start(false).finish(&OTHER_KEY));
    }

    #[test]
    fn a_received_section_is_forwarded_unchanged_under_a_new_head() {
        let f = sample();
        let bytes = build(&f, &KEY);
        let (decoded, section) = decode_with_section(bytes.clone(), &limits(), |_| Some(KEY)).unwrap();
        assert_eq!(decoded, f);
        assert_eq!(section.bytes, bytes.slice(head_len(3)..));
        // The receiver forwards the records to a peer of its RSM, under that link's key.
        let (me, peer) = (f.dst, ReplicaId::new(1, 7));
        let ack = AckReport { next: 9, phi: vec![1] };
        let mut b = FrameBuilder::new(FrameKind::Internal, me, peer, &ack);
        b.set_timestamps(5, 6);
        let fwd = b.finish_sharing(&OTHER_KEY, &section);
        assert_eq!(fwd.head.len(), head_len(1));
        assert_eq!(fwd.shared.as_ptr(), bytes[head_len(3)..].as_ptr(), "the section is not copied");
        let joined = fwd.clone().into_bytes();
        assert_eq!(joined.len(), fwd.len());
        assert_eq!(frame_len(&joined), Some(joined.len()));
        // The same bytes as a frame built record by record.
        let mut whole = FrameBuilder::new(FrameKind::Internal, me, peer, &ack);
        whole.set_timestamps(5, 6);
        for rec in &f.records {
            whole.push(rec.kind, rec.seq, &rec.payload, &rec.proof);
        }
        assert_eq!(whole.finish(&OTHER_KEY), joined);
        let got = decode(joined.clone(), &limits(), |_| Some(OTHER_KEY)).unwrap();
        assert_eq!(
            (got.kind, got.src, got.dst, &got.ack, got.ts, got.echo),
            (FrameKind::Internal, me, peer, &ack, 5, 6)
        );
        assert_eq!(got.records, f.records);
        // Only under the forwarding link's key, and only with the section's exact bytes.
        assert_eq!(decode(joined.clone(), &limits(), |_| Some(KEY)).unwrap_err(), DecodeError::BadMac);
        let mut v = joined.to_vec();
        let last = v.len() - 1;
        v[last] ^= 1;
        assert_eq!(decode(Bytes::from(v), &limits(), |_| Some(OTHER_KEY)).unwrap_err(), DecodeError::BadMac);
    }

    #[test]
    fn builder_accounting() {
        let f = sample();
        let mut b = FrameBuilder::new(f.kind, f.src, f.dst, &f.ack);
        assert_eq!(b.len(), frame_overhead(3));
        assert!(b.is_empty());
        let mut expected = b.len();
        for (i, rec) in f.records.iter().enumerate() {
            b.push(rec.kind, rec.seq, &rec.payload, &rec.proof);
            expected += FrameBuilder::record_len(rec.payload.len(), rec.proof.len());
            assert_eq!(b.len(), expected);
            assert_eq!(b.records() as usize, i + 1);
        }
        assert!(!b.is_empty());
        assert_eq!(b.finish(&KEY).len(), expected);
    }

    #[test]
    fn timestamps_default_to_zero() {
        let f = sample();
        let mut b = FrameBuilder::new(f.kind, f.src, f.dst, &f.ack);
        b.push(RecordKind::First, 1, b"x", b"");
        let d = dec(b.finish(&KEY)).unwrap();
        assert_eq!((d.ts, d.echo), (0, 0));
        assert_eq!(d.ack, f.ack);
    }

    #[test]
    fn timestamps_round_trip_at_their_offsets() {
        let f = sample();
        for (ts, echo) in [(1, 0), (0, 1), (u64::MAX, u64::MAX), (0xDEAD_BEEF, 0x0BAD_F00D)] {
            let mut b = FrameBuilder::with_capacity(f.kind, f.src, f.dst, &f.ack, 64);
            let len = b.len();
            b.set_timestamps(7, 8); // overwritten below
            b.push(RecordKind::Forward, 3, b"abc", b"");
            b.set_timestamps(ts, echo);
            assert_eq!(b.len(), len + FrameBuilder::record_len(3, 0));
            let bytes = b.finish(&KEY);
            assert_eq!(bytes[16..24], f.ack.next.to_le_bytes());
            assert_eq!(bytes[24..32], ts.to_le_bytes());
            assert_eq!(bytes[32..40], echo.to_le_bytes());
            assert_eq!(bytes[40..48], f.ack.phi[0].to_le_bytes());
            let d = dec(bytes).unwrap();
            assert_eq!((d.ts, d.echo), (ts, echo));
            assert_eq!(d.ack, f.ack);
            assert_eq!(d.records, vec![rec(RecordKind::Forward, 3, b"abc", b"")]);
        }
        // Raw bytes at offsets 24 and 32 decode as ts and echo, whatever their value.
        let mut body = raw_prefix(0);
        body[24..32].copy_from_slice(&42u64.to_le_bytes());
        body[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        let d = dec(seal(body, &KEY)).unwrap();
        assert_eq!((d.ack.next, d.ts, d.echo), (5, 42, u64::MAX));
    }

    #[test]
    fn builder_trims_phi() {
        let ack = AckReport { next: 3, phi: vec![0, 5, 0, 0] };
        let b = FrameBuilder::new(FrameKind::Cross, s(0), r(0), &ack);
        assert_eq!(b.len(), frame_overhead(2));
        let f = dec(b.finish(&KEY)).unwrap();
        assert_eq!(f.ack, AckReport { next: 3, phi: vec![0, 5] });

        let all_zero = AckReport { next: 3, phi: vec![0; 10] };
        let b = FrameBuilder::new(FrameKind::Cross, s(0), r(0), &all_zero);
        assert_eq!(b.len(), frame_overhead(0));

        let huge = AckReport { next: 0, phi: vec![1; MAX_PHI_WORDS + 3] };
        let b = FrameBuilder::new(FrameKind::Cross, s(0), r(0), &huge);
        assert_eq!(b.len(), frame_overhead(MAX_PHI_WORDS));
        let lim = Limits { max_phi_words: MAX_PHI_WORDS, ..limits() };
        let f = decode(b.finish(&KEY), &lim, |_| Some(KEY)).unwrap();
        assert_eq!(f.ack.phi.len(), MAX_PHI_WORDS);
    }

    #[test]
    fn header_errors() {
        let good = build(&sample(), &KEY);
        let patched = |at: usize, byte: u8| {
            let mut v = good.to_vec();
            v[at] = byte;
            dec(Bytes::from(v)).unwrap_err()
        };
        assert_eq!(dec(Bytes::new()).unwrap_err(), DecodeError::Truncated);
        assert_eq!(dec(good.slice(..MIN_FRAME_LEN - 1)).unwrap_err(), DecodeError::Truncated);
        let n = good.len();
        assert_eq!(dec(good.slice(..n - 1)).unwrap_err(), DecodeError::LengthMismatch { declared: n, actual: n - 1 });
        let tight = Limits { max_frame_bytes: n - 1, ..limits() };
        assert_eq!(
            decode(good.clone(), &tight, |_| Some(KEY)).unwrap_err(),
            DecodeError::TooLarge { len: n, max: n - 1 }
        );
        assert_eq!(patched(4, b'X'), DecodeError::BadMagic);
        assert_eq!(patched(5, b'X'), DecodeError::BadMagic);
        assert_eq!(patched(6, 1), DecodeError::UnsupportedVersion(1));
        assert_eq!(patched(6, 3), DecodeError::UnsupportedVersion(3));
        assert_eq!(patched(6, 0), DecodeError::UnsupportedVersion(0));
        assert_eq!(patched(7, 2), DecodeError::UnknownFrameKind(2));
        assert_eq!(patched(7, 1), DecodeError::KindMismatch);
        assert_eq!(patched(8, 2), DecodeError::BadRsm(2));
        assert_eq!(patched(9, 255), DecodeError::BadRsm(255));
        assert_eq!(patched(8, 1), DecodeError::KindMismatch);
        let few = Limits { max_phi_words: 2, ..limits() };
        assert_eq!(
            decode(good.clone(), &few, |_| Some(KEY)).unwrap_err(),
            DecodeError::PhiTooLong { words: 3, max: 2 }
        );
        assert_eq!(decode(good.clone(), &limits(), |_| None).unwrap_err(), DecodeError::UnknownKey(s(3)));
        assert_eq!(decode(good.clone(), &limits(), |_| Some(OTHER_KEY)).unwrap_err(), DecodeError::BadMac);
        // A φ count larger than the frame can hold is caught before the MAC.
        let mut body = raw_header(0, (0, 0), (1, 0), 5, &[]);
        body[14..16].copy_from_slice(&3u16.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(dec(seal(body, &KEY)).unwrap_err(), DecodeError::Truncated);
    }

    #[test]
    fn key_is_looked_up_for_claimed_source() {
        let bytes = build(&sample(), &KEY);
        let mut asked = None;
        dec(bytes.clone()).unwrap();
        decode(bytes, &limits(), |src| {
            asked = Some(src);
            Some(KEY)
        })
        .unwrap();
        assert_eq!(asked, Some(s(3)));
    }

    #[test]
    fn record_errors() {
        let one = |rec: Vec<u8>| {
            let mut body = raw_prefix(1);
            body.extend_from_slice(&rec);
            dec(seal(body, &KEY))
        };
        assert!(one(raw_record(0, 0, 1, b"ok", b"")).is_ok());
        assert_eq!(one(raw_record(4, 0, 1, b"", b"")).unwrap_err(), DecodeError::UnknownRecordKind(4));
        assert_eq!(one(raw_record(1, 0, 1, b"", b"")).unwrap_err(), DecodeError::BadResendNumber);
        for code in [0, 2, 3] {
            assert_eq!(one(raw_record(code, 1, 1, b"", b"")).unwrap_err(), DecodeError::BadResendNumber);
        }
        let big_payload = vec![0u8; limits().max_payload_bytes + 1];
        assert_eq!(
            one(raw_record(0, 0, 1, &big_payload, b"")).unwrap_err(),
            DecodeError::PayloadTooLarge { len: big_payload.len(), max: limits().max_payload_bytes }
        );
        let big_proof = vec![0u8; limits().max_proof_bytes + 1];
        assert_eq!(
            one(raw_record(0, 0, 1, b"", &big_proof)).unwrap_err(),
            DecodeError::ProofTooLarge { len: big_proof.len(), max: limits().max_proof_bytes }
        );
        // Lengths pointing past the end.
        assert_eq!(one(raw_record_lens(0, 0, 1, 10, 0, b"short", b"")).unwrap_err(), DecodeError::Truncated);
        assert_eq!(one(raw_record_lens(0, 0, 1, 0, 10, b"", b"short")).unwrap_err(), DecodeError::Truncated);
        // Trailing bytes after the declared records.
        let mut rec = raw_record(2, 0, 1, b"x", b"");
        rec.push(0);
        assert_eq!(one(rec).unwrap_err(), DecodeError::TrailingBytes);
        let mut body = raw_prefix(0);
        body.push(1);
        assert_eq!(dec(seal(body, &KEY)).unwrap_err(), DecodeError::TrailingBytes);
    }

    #[test]
    fn record_count_checked_before_allocating() {
        let mut body = raw_prefix(u32::MAX);
        body.extend_from_slice(&raw_record(0, 0, 1, b"", b""));
        assert_eq!(
            dec(seal(body, &KEY)).unwrap_err(),
            DecodeError::TooManyRecords { count: u32::MAX as usize, max: 1 }
        );
        let mut body = raw_prefix(2);
        body.extend_from_slice(&raw_record(0, 0, 1, b"", b"abc"));
        assert_eq!(dec(seal(body, &KEY)).unwrap_err(), DecodeError::TooManyRecords { count: 2, max: 1 });
        // Two headers fit by size, but the first record's payload eats into the second.
        let mut body = raw_prefix(2);
        body.extend_from_slice(&raw_record(0, 0, 1, &[0; RECORD_HEADER_LEN], b""));
        assert_eq!(dec(seal(body, &KEY)).unwrap_err(), DecodeError::Truncated);
    }

    #[test]
    fn every_tampered_byte_is_rejected_before_records() {
        let good = build(&sample(), &KEY);
        for i in 0..good.len() {
            for bit in [0, 3, 7] {
                let mut v = good.to_vec();
                v[i] ^= 1 << bit;
                let err = dec(Bytes::from(v)).unwrap_err();
                assert!(is_pre_mac(&err), "byte {i} bit {bit}: {err:?}");
                if i >= HEADER_LEN {
                    assert_eq!(err, DecodeError::BadMac, "byte {i} bit {bit}");
                }
            }
        }
    }

    #[test]
    fn error_messages_are_short_and_lowercase() {
        let errs = [
            DecodeError::Truncated,
            DecodeError::LengthMismatch { declared: 1, actual: 2 },
            DecodeError::UnknownKey(r(1)),
            DecodeError::PhiTooLong { words: 3, max: 2 },
            DecodeError::TrailingBytes,
        ];
        for e in errs {
            let m = e.to_string();
            assert!(m.len() < 60 && m.chars().next().unwrap().is_lowercase(), "{m}");
        }
        assert_eq!(DecodeError::UnknownKey(r(1)).to_string(), "no mac key for r1");
    }

    /// The frame of the worked example in WIRE.md.
    fn wire_md_example() -> (Frame, MacKey) {
        let mut key = [0u8; 32];
        for (i, k) in key.iter_mut().enumerate() {
            *k = i as u8;
        }
        let frame = Frame {
            kind: FrameKind::Cross,
            src: s(1),
            dst: r(2),
            ack: AckReport { next: 5, phi: vec![0b101] },
            ts: 0x1122_3344,
            echo: 0xA0B0,
            records: vec![
                rec(RecordKind::First, 9, b"hi", b""),
                rec(RecordKind::Resend { number: 1 }, 6, b"abc", &[0xAA]),
            ],
        };
        (frame, key)
    }

    /// The hex bytes of the example block in WIRE.md: everything before `#` on each line
    /// between the markers.
    fn wire_md_hex() -> Vec<u8> {
        let doc = include_str!("../WIRE.md");
        let start = doc.find("<!-- example-frame:begin -->").expect("begin marker");
        let end = doc.find("<!-- example-frame:end -->").expect("end marker");
        let mut out = Vec::new();
        for line in doc[start..end].lines().skip(1) {
            if line.starts_with("```") {
                continue;
            }
            let data = line.split('#').next().unwrap_or("");
            for tok in data.split_whitespace() {
                out.push(u8::from_str_radix(tok, 16).unwrap_or_else(|_| panic!("bad hex {tok:?}")));
            }
        }
        out
    }

    #[test]
    fn wire_md_example_matches() {
        let (frame, key) = wire_md_example();
        let bytes = build(&frame, &key);
        assert_eq!(wire_md_hex(), bytes.to_vec(), "WIRE.md example is stale");
        assert_eq!(decode(bytes, &limits(), |_| Some(key)).unwrap(), frame);
    }

    fn arb_kind() -> impl Strategy<Value = RecordKind> {
        prop_oneof![
            Just(RecordKind::First),
            (1..=u16::MAX).prop_map(|number| RecordKind::Resend { number }),
            Just(RecordKind::Forward),
            Just(RecordKind::Repair),
        ]
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            arb_kind(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..48),
            proptest::collection::vec(any::<u8>(), 0..24),
        )
            .prop_map(|(kind, seq, p, q)| Record { kind, seq, payload: p.into(), proof: q.into() })
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        (
            (0u8..2, any::<u16>(), 0u8..2, any::<u16>()),
            (any::<u64>(), any::<u64>(), any::<u64>()),
            proptest::collection::vec(any::<u64>(), 0..6),
            proptest::collection::vec(arb_record(), 0..8),
        )
            .prop_map(|((sr, si, dr, di), (next, ts, echo), mut phi, records)| {
                while phi.last() == Some(&0) {
                    phi.pop();
                }
                let (src, dst) = (ReplicaId::new(sr, si), ReplicaId::new(dr, di));
                Frame { kind: FrameKind::between(src, dst), src, dst, ack: AckReport { next, phi }, ts, echo, records }
            })
    }

    #[derive(Clone, Debug)]
    enum Mutation {
        Flip { at: usize, bit: u8 },
        Truncate(usize),
        Extend(Vec<u8>),
        Overwrite { at: usize, bytes: Vec<u8> },
    }

    fn arb_mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
            any::<usize>().prop_map(Mutation::Truncate),
            proptest::collection::vec(any::<u8>(), 1..32).prop_map(Mutation::Extend),
            (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
                .prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
        ]
    }

    proptest! {
        #[test]
        fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = dec(Bytes::from(bytes));
        }

        /// Arbitrary bodies behind a valid header and a valid MAC: fuzzes the record parser.
        #[test]
        fn prop_authentic_garbage_never_panics(
            phi in proptest::collection::vec(any::<u64>(), 0..3),
            count in prop_oneof![0u32..6, any::<u32>()],
            tail in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(4), any::<u8>()], 0..160),
        ) {
            let mut body = raw_header(0, (0, 1), (1, 1), 0, &phi);
            body.extend_from_slice(&count.to_le_bytes());
            body.extend_from_slice(&tail);
            let _ = dec(seal(body, &KEY));
        }

        #[test]
        fn prop_round_trip(frame in arb_frame()) {
            let bytes = build(&frame, &KEY);
            prop_assert_eq!(frame_len(&bytes), Some(bytes.len()));
            prop_assert_eq!(dec(bytes).unwrap(), frame);
        }

        #[test]
        fn prop_mutations_are_rejected(frame in arb_frame(), muts in proptest::collection::vec(arb_mutation(), 1..4)) {
            let good = build(&frame, &KEY);
            let mut v = good.to_vec();
            for m in muts {
                match m {
                    Mutation::Flip { at, bit } => {
                        let at = at % v.len().max(1);
                        if let Some(b) = v.get_mut(at) {
                            *b ^= 1 << bit;
                        }
                    }
                    Mutation::Truncate(len) => v.truncate(len % (v.len() + 1)),
                    Mutation::Extend(more) => v.extend_from_slice(&more),
                    Mutation::Overwrite { at, bytes } => {
                        let at = at % v.len().max(1);
                        for (d, s) in v.iter_mut().skip(at).zip(bytes) {
                            *d = s;
                        }
                    }
                }
            }
            match dec(Bytes::from(v.clone())) {
                Ok(decoded) => {
                    // Only possible if the mutations cancelled out.
                    prop_assert_eq!(&v[..], &good[..]);
                    prop_assert_eq!(decoded, frame);
                }
                Err(e) => prop_assert!(is_pre_mac(&e), "{:?}", e),
            }
        }
    }
}
