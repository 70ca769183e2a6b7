//! [`PayloadMaker`]: builds a synthetic stream's payloads without an allocation per message.
//!
//! A load generator that allocates every payload measures the allocator as much as the
//! protocol: at 100 B the `malloc` of each message (and its `free` on the node thread, another
//! thread's arena) was a fifth of all CPU samples, and at 1 MB every message page-faulted a
//! fresh megabyte into existence. An RSM's committed messages already sit in memory, so the
//! maker hands out payloads the cheap way a real application could:
//!
//! - small payloads are consecutive slices of one shared block (one allocation per block of
//!   many messages, freed when the last of them is dropped);
//! - large payloads are recycled buffers: each is a [`Bytes`] owning a buffer that goes back to
//!   a small [`BufPool`] when the last reference is dropped, with the filler already in place, so
//!   only the sequence number is rewritten.

use bytes::{Bytes, BytesMut};
use picsou_core::bufpool::BufPool;
use picsou_core::payload::PayloadSpec;

/// Payloads up to this size are sliced out of shared blocks; larger ones use pooled buffers.
const SLICE_MAX: usize = 4096;
/// Size of a block that small payloads are sliced from.
const BLOCK_BYTES: usize = 64 * 1024;
/// Bytes of idle buffers the pool keeps for reuse (at least one buffer).
const POOL_BYTES: usize = 32 << 20;

/// Builds the payloads of one stream (see the module documentation). Not `Sync`: one
/// submitting thread owns it.
#[derive(Debug)]
pub struct PayloadMaker {
    spec: PayloadSpec,
    /// Small payloads: the unused rest of the current block.
    block: BytesMut,
    /// Large payloads: idle buffers, each already holding the filler.
    pool: Option<BufPool>,
}

impl PayloadMaker {
    /// A maker of `spec`'s payloads.
    pub fn new(spec: PayloadSpec) -> Self {
        let pool = (spec.size() > SLICE_MAX).then(|| BufPool::new(POOL_BYTES / spec.size(), POOL_BYTES));
        Self { spec, block: BytesMut::new(), pool }
    }

    /// The contents of message `seq` (equal to [`PayloadSpec::make`]`(seq)`).
    pub fn make(&mut self, seq: u64) -> Bytes {
        let size = self.spec.size();
        match &self.pool {
            None => {
                if self.block.capacity() < size {
                    self.block = BytesMut::with_capacity(BLOCK_BYTES.max(size));
                }
                self.spec.write_into(seq, &mut self.block);
                self.block.split_to(size).freeze()
            }
            Some(pool) => {
                let buf = match pool.take_as_left() {
                    Some(mut buf) => {
                        self.spec.write_seq(seq, &mut buf);
                        buf
                    }
                    None => {
                        let mut buf = Vec::with_capacity(size);
                        self.spec.write_into(seq, &mut buf);
                        buf
                    }
                };
                pool.freeze(buf)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_payloads_match_the_spec_across_blocks() {
        let spec = PayloadSpec::new(100);
        let mut m = PayloadMaker::new(spec.clone());
        let all: Vec<_> = (0..2_000).map(|s| m.make(s)).collect();
        for (s, p) in all.iter().enumerate() {
            assert_eq!(p, &spec.make(s as u64), "seq {s}");
        }
    }

    #[test]
    fn large_payloads_are_recycled_and_rewritten() {
        let spec = PayloadSpec::new(SLICE_MAX + 1);
        let mut m = PayloadMaker::new(spec.clone());
        let a = m.make(1);
        let ptr = a.as_ptr();
        assert_eq!(a, spec.make(1));
        drop(a);
        // The same buffer comes back with the new seq.
        let b = m.make(2);
        assert_eq!(b.as_ptr(), ptr);
        assert_eq!(b, spec.make(2));
        // A buffer still referenced is not reused.
        let c = m.make(3);
        assert_ne!(c.as_ptr(), b.as_ptr());
        assert_eq!(c, spec.make(3));
        assert_eq!(b, spec.make(2));
    }
}
