//! Deterministic, verifiable message contents: the synthetic load of the simulator and of real
//! deployments (`picsou-runtime`'s load generator).
//!
//! Message `k` is `size` bytes: `k` as 8 little-endian bytes, then a fixed filler pattern. A
//! receiver can therefore tell, from the bytes alone, whether a delivered payload is exactly what
//! was submitted at that position, without anyone remembering every payload (a run of 10,000
//! one-megabyte messages would otherwise hold 10 GB).

use bytes::{BufMut, Bytes, BytesMut};

/// Byte `i` of the filler that follows the sequence number.
fn filler_byte(i: usize) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(7)
}

/// The shape of every message of a run.
#[derive(Clone, Debug)]
pub struct PayloadSpec {
    size: usize,
    /// The full-size filler pattern, shared by every payload built and every check.
    filler: Bytes,
}

impl PayloadSpec {
    /// Messages of `size` bytes.
    pub fn new(size: usize) -> Self {
        let filler: Vec<u8> = (0..size).map(filler_byte).collect();
        Self { size, filler: Bytes::from(filler) }
    }

    /// Size of every message.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Number of leading bytes that carry the sequence number.
    fn header_len(&self) -> usize {
        self.size.min(8)
    }

    /// The contents of message `seq`.
    pub fn make(&self, seq: u64) -> Bytes {
        let mut b = BytesMut::with_capacity(self.size);
        self.write_into(seq, &mut b);
        b.freeze()
    }

    /// Appends the contents of message `seq` to `out`.
    pub fn write_into(&self, seq: u64, out: &mut impl BufMut) {
        let h = self.header_len();
        out.put_slice(&seq.to_le_bytes()[..h]);
        out.put_slice(&self.filler[h..]);
    }

    /// Turns `payload`, the contents of some message of this spec, into those of message
    /// `seq` (only the leading sequence number differs between messages).
    ///
    /// # Panics
    ///
    /// If `payload` is shorter than the sequence number field.
    pub fn write_seq(&self, seq: u64, payload: &mut [u8]) {
        let h = self.header_len();
        payload[..h].copy_from_slice(&seq.to_le_bytes()[..h]);
    }

    /// True if `payload` is exactly the contents of message `seq`.
    pub fn matches(&self, seq: u64, payload: &[u8]) -> bool {
        let h = self.header_len();
        payload.len() == self.size && payload[..h] == seq.to_le_bytes()[..h] && payload[h..] == self.filler[h..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_encode_their_seq_and_check() {
        let spec = PayloadSpec::new(100);
        let p = spec.make(12345);
        assert_eq!(p.len(), 100);
        assert_eq!(&p[..8], &12345u64.to_le_bytes());
        assert!(spec.matches(12345, &p));
        assert!(!spec.matches(12346, &p));
        let mut bad = p.to_vec();
        bad[50] ^= 1;
        assert!(!spec.matches(12345, &bad));
        assert!(!spec.matches(12345, &p[..99]));
        assert_ne!(spec.make(1), spec.make(2));
    }

    #[test]
    fn tiny_payloads_are_truncated_seqs() {
        let spec = PayloadSpec::new(3);
        let p = spec.make(0x0A0B0C0D);
        assert_eq!(&p[..], &[0x0D, 0x0C, 0x0B]);
        assert!(spec.matches(0x0A0B0C0D, &p));
    }
}
