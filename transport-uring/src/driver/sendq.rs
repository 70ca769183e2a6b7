//! The ring thread's queue of one outgoing connection, and how it is cut into submissions.
//!
//! Frames stay here until the kernel reports them written: a vectored send points into them
//! (see [`super::ops`]; when the connection dies with a send in flight, [`SendQueue::clear`]
//! hands the frames over instead of dropping them). One submission covers up to [`MAX_IOV`] frames or
//! about [`MAX_BATCH_BYTES`] in one `sendmsg` (one system-call-equivalent for a whole burst of
//! small frames, yet completions often enough for `Writable` to come early on a long queue).
//! Frames of at least the zero-copy threshold go alone in a `SEND_ZC`.
//!
//! After a (re)connect the hello is put at the head, so it shares the write path (including
//! partial writes) with frames; it is not counted as frame bytes nor as a sent frame.

use std::collections::VecDeque;

use bytes::Bytes;

use super::ops::SendBuffers;

/// Most frames in one vectored send (Linux's `UIO_MAXIOV` is 1024).
pub(crate) const MAX_IOV: usize = 256;
/// A vectored send stops adding frames beyond this many bytes.
pub(crate) const MAX_BATCH_BYTES: usize = 2 << 20;

/// What [`SendQueue::fill`] prepared.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Batch {
    /// Nothing to send.
    Empty,
    /// A vectored send of the buffers' contents.
    Vectored,
    /// A zero-copy send of the single buffer.
    ZeroCopy,
}

/// What a completed write covered, for the counters.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Frames completely written.
    pub(crate) frames: u64,
    /// Frame bytes written (the hello excluded).
    pub(crate) bytes: u64,
}

/// Frames (and possibly the hello at the head) waiting for one connection.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    items: VecDeque<Bytes>,
    /// Bytes of the head item already written.
    head_offset: usize,
    /// The head item is the hello.
    hello_at_head: bool,
    /// Unwritten frame bytes.
    bytes: usize,
}

impl SendQueue {
    /// Appends frames (empty ones are skipped: they would make a write look like EOF).
    pub(crate) fn extend(&mut self, frames: impl IntoIterator<Item = Bytes>) {
        for f in frames {
            if !f.is_empty() {
                self.bytes += f.len();
                self.items.push_back(f);
            }
        }
    }

    /// Puts the hello in front; only on a fresh connection, before anything was written.
    pub(crate) fn push_hello(&mut self, hello: Bytes) {
        debug_assert!(self.head_offset == 0 && !self.hello_at_head);
        self.items.push_front(hello);
        self.hello_at_head = true;
        self.head_offset = 0;
    }

    /// Nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Unwritten frame bytes.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Empties the queue; returns the frames (a partial one included) and frame bytes dropped,
    /// and the items themselves (an in-flight send may still point into them).
    pub(crate) fn clear(&mut self) -> (Written, VecDeque<Bytes>) {
        let frames = (self.items.len() - usize::from(self.hello_at_head)) as u64;
        let dropped = Written { frames, bytes: self.bytes as u64 };
        self.head_offset = 0;
        self.hello_at_head = false;
        self.bytes = 0;
        (dropped, std::mem::take(&mut self.items))
    }

    /// Prepares the next submission in `bufs` (cleared first). Frames of at least
    /// `zero_copy_min` bytes (0: never) are sent alone with zero copy (`bufs.hold` then holds
    /// the frame). The iovecs of a vectored send point into the queue's frames: they stay
    /// valid until [`SendQueue::advance`] or [`SendQueue::clear`] releases them.
    pub(crate) fn fill(&self, bufs: &mut SendBuffers, zero_copy_min: usize) -> Batch {
        bufs.clear();
        let mut bytes = 0;
        for (i, item) in self.items.iter().enumerate() {
            let start = if i == 0 { self.head_offset.min(item.len()) } else { 0 };
            let part = &item[start..];
            let is_frame = i > 0 || !self.hello_at_head;
            if zero_copy_min > 0 && is_frame && part.len() >= zero_copy_min {
                if bufs.iov.is_empty() {
                    bufs.hold.push(item.slice(start..));
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

    /// Consumes `n` written bytes from the head.
    pub(crate) fn advance(&mut self, mut n: usize) -> Written {
        let mut written = Written::default();
        while n > 0 {
            let Some(head) = self.items.front() else { break };
            let rest = head.len() - self.head_offset;
            let step = rest.min(n);
            n -= step;
            if !self.hello_at_head {
                self.bytes -= step;
                written.bytes += step as u64;
            }
            if step == rest {
                self.items.pop_front();
                self.head_offset = 0;
                if self.hello_at_head {
                    self.hello_at_head = false;
                } else {
                    written.frames += 1;
                }
            } else {
                self.head_offset += step;
            }
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drains `q` through `fill`/`advance`, the kernel taking at most `per_write` bytes.
    fn drain(q: &mut SendQueue, per_write: usize, zc: usize) -> (Vec<u8>, Written, usize) {
        let mut out = Vec::new();
        let mut total = Written::default();
        let mut zc_sends = 0;
        let mut bufs = SendBuffers::new();
        loop {
            let pieces: Vec<Vec<u8>> = match q.fill(&mut bufs, zc) {
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
            q.extend(frames.iter().cloned());
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

    #[test]
    fn clear_counts_frames_not_the_hello() {
        let mut q = SendQueue::default();
        q.extend([Bytes::from_static(b"abc"), Bytes::new(), Bytes::from_static(b"def")]);
        q.push_hello(Bytes::from_static(b"H"));
        let (dropped, items) = q.clear();
        assert_eq!(dropped, Written { frames: 2, bytes: 6 });
        assert_eq!(items.len(), 3);
        assert!(q.is_empty());
    }
}
