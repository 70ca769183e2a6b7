//! The ring thread's queue of one outgoing connection, and how it is cut into submissions.
//!
//! Frames stay here until the kernel reports them written: a vectored send points into them
//! (see [`super::ops`]; when the connection dies with a send in flight, its slot keeps the
//! queue's buffers alive, see `Outgoing::lose`). One submission covers up to [`MAX_IOV`] frames or
//! about [`MAX_BATCH_BYTES`] in one `sendmsg` (one system-call-equivalent for a whole burst of
//! small frames, yet completions often enough for `Writable` to come early on a long queue).
//! Frames of at least the zero-copy threshold go alone in a `SEND_ZC`.
//!
//! After a (re)connect the hello is put at the head, so it shares the write path (including
//! partial writes) with frames; it is not counted as frame bytes nor as a sent frame.

pub(crate) use picsou_runtime::transport::outqueue::OutQueue as SendQueue;

use super::ops::SendBuffers;

/// Most frames in one vectored send (Linux's `UIO_MAXIOV` is 1024).
pub(crate) const MAX_IOV: usize = 256;
/// A vectored send stops adding frames beyond this many bytes.
pub(crate) const MAX_BATCH_BYTES: usize = 2 << 20;

/// What [`fill`] prepared.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Batch {
    /// Nothing to send.
    Empty,
    /// A vectored send of the buffers' contents.
    Vectored,
    /// A zero-copy send of the single buffer.
    ZeroCopy,
}

/// Prepares the next submission of `q` in `bufs` (cleared first). Frames of at least
/// `zero_copy_min` bytes (0: never) are sent alone with zero copy (`bufs.hold` then holds the
/// frame). The iovecs of a vectored send point into the queue's frames: they stay valid until
/// `OutQueue::advance` or `OutQueue::clear` releases them.
pub(crate) fn fill(q: &SendQueue, bufs: &mut SendBuffers, zero_copy_min: usize) -> Batch {
    bufs.clear();
    let mut bytes = 0;
    for p in q.pending() {
        let part = p.part();
        if zero_copy_min > 0 && p.is_frame && part.len() >= zero_copy_min {
            if bufs.iov.is_empty() {
                bufs.hold.push(p.item.slice(p.start..));
                return Batch::ZeroCopy;
            }
            break;
        }
        bytes += part.len();
        bufs.push(part);
        if bufs.iov.len() >= MAX_IOV || bytes >= MAX_BATCH_BYTES {
            break;
        }
    }
    if bufs.iov.is_empty() {
        return Batch::Empty;
    }
    bufs.seal();
    Batch::Vectored
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use picsou_runtime::transport::outqueue::Written;

    use super::*;

    /// Drains `q` through `fill`/`advance`, the kernel taking at most `per_write` bytes.
    fn drain(q: &mut SendQueue, per_write: usize, zc: usize) -> (Vec<u8>, Written, usize) {
        let mut out = Vec::new();
        let mut total = Written::default();
        let mut zc_sends = 0;
        let mut bufs = SendBuffers::new();
        loop {
            let pieces: Vec<Vec<u8>> = match fill(q, &mut bufs, zc) {
                Batch::Empty => break,
                Batch::ZeroCopy => {
                    zc_sends += 1;
                    assert!(bufs.iov.is_empty());
                    bufs.hold.iter().map(|b| b.to_vec()).collect()
                }
                Batch::Vectored => {
                    assert!(bufs.hold.is_empty());
                    assert_eq!(bufs.msg.msg_iov.cast_const(), bufs.iov.as_ptr(), "sealed");
                    bufs.iov
                        .iter()
                        .map(|v| {
                            #[allow(unsafe_code)]
                            // SAFETY: the iovecs point into frames the queue holds, unchanged
                            // until `advance` below.
                            unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) }.to_vec()
                        })
                        .collect()
                }
            };
            let mut room = per_write.min(pieces.iter().map(Vec::len).sum());
            let n = room;
            for b in &pieces {
                let k = b.len().min(room);
                out.extend_from_slice(&b[..k]);
                room -= k;
            }
            let w = q.advance(n);
            total.frames += w.frames;
            total.bytes += w.bytes;
        }
        (out, total, zc_sends)
    }

    #[test]
    fn partial_writes_keep_order_and_counts() {
        for (per_write, zc) in [(333, 0), (1 << 20, 0), (777, 1000), (1 << 20, 1000)] {
            let mut q = SendQueue::default();
            let frames: Vec<Bytes> = (0..300u16).map(|i| Bytes::from(vec![i as u8; 1 + usize::from(i) * 7])).collect();
            let total: usize = frames.iter().map(Bytes::len).sum();
            for f in &frames {
                q.push(f.clone());
            }
            q.push_hello(Bytes::from_static(b"HELLO"));
            assert_eq!(q.bytes(), total);
            let (out, written, zc_sends) = drain(&mut q, per_write, zc);
            let mut expected = b"HELLO".to_vec();
            for f in &frames {
                expected.extend_from_slice(f);
            }
            assert_eq!(out, expected);
            assert_eq!(written, Written { frames: 300, bytes: total as u64 });
            assert_eq!(q.bytes(), 0);
            assert!(q.is_empty());
            if zc > 0 {
                assert!(zc_sends >= frames.iter().filter(|f| f.len() >= zc).count());
            } else {
                assert_eq!(zc_sends, 0);
            }
        }
    }
}
