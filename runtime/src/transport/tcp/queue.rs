//! Draining an outgoing connection's [`OutQueue`] into a non-blocking socket.
//!
//! Draining uses vectored writes: the node hands over many small frames per loop iteration,
//! and one `writev` of up to [`MAX_SLICES`] frames costs one system call instead of one per
//! frame, without copying them into a contiguous buffer.

use std::io::{self, IoSlice, Write};

pub(super) use crate::transport::outqueue::{OutQueue as SendQueue, Written};

/// Most buffers handed to one `writev` (Linux accepts 1024; 64 frames already amortise the
/// system call, and the slice array stays on the stack).
const MAX_SLICES: usize = 64;

/// How a [`drain_into`] ended.
#[derive(Debug)]
pub(super) enum Drain {
    /// Everything was written.
    Empty,
    /// The socket is full: wait for writable readiness.
    Blocked,
    /// The connection is broken.
    Failed(io::Error),
}

/// Writes `q` to `w` until the queue is empty, `w` would block, or `w` fails; adds what was
/// written to `written`.
pub(super) fn drain_into(q: &mut SendQueue, w: &mut impl Write, written: &mut Written) -> Drain {
    loop {
        if q.is_empty() {
            return Drain::Empty;
        }
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let mut count = 0;
        for (slot, p) in slices.iter_mut().zip(q.pending()) {
            *slot = IoSlice::new(p.part());
            count += 1;
        }
        match w.write_vectored(&slices[..count]) {
            Ok(0) => return Drain::Failed(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                let w = q.advance(n);
                written.frames += w.frames;
                written.bytes += w.bytes;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drain::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Drain::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use picsou_core::wire::EncodedFrame;

    use super::*;

    /// A writer taking at most `per_call` bytes per call, then blocking after `limit` bytes.
    struct Trickle {
        out: Vec<u8>,
        per_call: usize,
        limit: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let room = self.limit.saturating_sub(self.out.len()).min(self.per_call);
            if room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut taken = 0;
            for b in bufs {
                let k = b.len().min(room - taken);
                self.out.extend_from_slice(&b[..k]);
                taken += k;
                if taken == room {
                    break;
                }
            }
            Ok(taken)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_order_and_counts() {
        let mut q = SendQueue::default();
        let frames: Vec<Bytes> = (0..200u8).map(|i| Bytes::from(vec![i; 1 + usize::from(i) * 7])).collect();
        let total: usize = frames.iter().map(Bytes::len).sum();
        for (i, f) in frames.iter().enumerate() {
            // Every third frame in two parts (a head and a shared section), written in place.
            let cut = if i % 3 == 1 { f.len() / 3 } else { f.len() };
            q.push(EncodedFrame { head: f.slice(..cut), shared: f.slice(cut..) });
        }
        q.push_hello(Bytes::from_static(b"HELLO"));
        assert_eq!(q.bytes(), total);
        let mut w = Trickle { out: Vec::new(), per_call: 333, limit: 10_000 };
        let mut written = Written::default();
        assert!(matches!(drain_into(&mut q, &mut w, &mut written), Drain::Blocked));
        w.limit = usize::MAX;
        assert!(matches!(drain_into(&mut q, &mut w, &mut written), Drain::Empty));
        let mut expected = b"HELLO".to_vec();
        for f in &frames {
            expected.extend_from_slice(f);
        }
        assert_eq!(w.out, expected);
        assert_eq!(written.frames, 200);
        assert_eq!(written.bytes, total as u64);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn clear_counts_frames_not_the_hello() {
        let mut q = SendQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(EncodedFrame { head: Bytes::from_static(b"d"), shared: Bytes::from_static(b"ef") });
        q.push_hello(Bytes::from_static(b"H"));
        // The hello and three frame parts, for a send in flight to keep alive.
        assert_eq!(q.buffers().count(), 4);
        assert_eq!(q.clear(), Written { frames: 2, bytes: 6 });
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }
}
