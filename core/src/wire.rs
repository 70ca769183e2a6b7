//! The wire format: versioned, length-prefixed, MAC-authenticated frames. See `core/WIRE.md`.
//!
//! STUB — being written (helper A). The public API below is fixed; bodies are placeholders.

use bytes::{Bytes, BytesMut};

use crate::ids::ReplicaId;
use crate::keys::MacKey;

/// Version of the wire format this crate speaks.
pub const VERSION: u8 = 1;
/// Length of the MAC tag at the end of every frame.
pub const TAG_LEN: usize = 16;

/// Whether a frame crosses between the two RSMs or stays inside one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Between a replica of one RSM and a replica of the other.
    Cross,
    /// Between two replicas of the same RSM (forwarding, repair, internal acks).
    Internal,
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
    /// Messages carried.
    pub records: Vec<Record>,
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
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the format needs.
    #[error("truncated frame")]
    Truncated,
}

/// Builds one frame incrementally into a buffer, then seals it with a MAC.
#[derive(Debug)]
pub struct FrameBuilder {
    buf: BytesMut,
}

impl FrameBuilder {
    /// Starts a frame.
    pub fn new(_kind: FrameKind, _src: ReplicaId, _dst: ReplicaId, _ack: &AckReport) -> Self {
        todo!()
    }
    /// Encoded size of a record with these lengths.
    pub const fn record_len(payload_len: usize, proof_len: usize) -> usize {
        19 + payload_len + proof_len
    }
    /// Bytes the frame would have if finished now (including the tag).
    pub fn len(&self) -> usize {
        self.buf.len() + TAG_LEN
    }
    /// Number of records pushed.
    pub fn records(&self) -> u32 {
        todo!()
    }
    /// Appends a record.
    pub fn push(&mut self, _kind: RecordKind, _seq: u64, _payload: &[u8], _proof: &[u8]) {
        todo!()
    }
    /// Writes the length and record count, appends the MAC, and returns the frame.
    pub fn finish(self, _key: &MacKey) -> Bytes {
        todo!()
    }
}

/// Decodes and authenticates a frame. `key` maps the claimed source replica to the MAC key of
/// the link; unknown sources are rejected.
pub fn decode(
    _frame: Bytes,
    _limits: &Limits,
    _key: impl FnOnce(ReplicaId) -> Option<MacKey>,
) -> Result<Frame, DecodeError> {
    todo!()
}

/// For stream transports: the total length of the frame that starts with `prefix`, once at
/// least 4 bytes are available.
pub fn frame_len(prefix: &[u8]) -> Option<usize> {
    let b: [u8; 4] = prefix.get(..4)?.try_into().ok()?;
    Some(u32::from_le_bytes(b) as usize)
}
