//! The user-space queue of one outgoing connection.
//!
//! [`Transport::send`](crate::Transport::send) must never block, so frames wait here until the
//! socket takes them. Draining uses vectored writes: the node hands over many small frames per
//! loop iteration, and one `writev` of up to [`MAX_SLICES`] frames costs one system call
//! instead of one per frame, without copying them into a contiguous buffer.
//!
//! After a (re)connect the connection hello is put at the head of the queue, so the hello and
//! the frames share one write path (including partial writes). The hello is not a frame: it is
//! not counted in [`SendQueue::bytes`] (which decides `Full`) nor in the sent-frame counters.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::Bytes;

/// Most buffers handed to one `writev` (Linux accepts 1024; 64 frames already amortise the
/// system call, and the slice array stays on the stack).
const MAX_SLICES: usize = 64;

/// Frames (and possibly a hello at the head) waiting for one socket.
#[derive(Debug, Default)]
pub(super) struct SendQueue {
    items: VecDeque<Bytes>,
    /// Bytes of the head item already written.
    head_offset: usize,
    /// The head item is the connection hello, not a frame.
    hello_at_head: bool,
    /// Unwritten frame bytes (the hello excluded).
    bytes: usize,
}

/// How a [`SendQueue::drain_into`] ended.
#[derive(Debug)]
pub(super) enum Drain {
    /// Everything was written.
    Empty,
    /// The socket is full: wait for writable readiness.
    Blocked,
    /// The connection is broken.
    Failed(io::Error),
}

/// What a drain wrote, for the transport's counters.
#[derive(Debug, Default)]
pub(super) struct Written {
    /// Frames completely written.
    pub(super) frames: u64,
    /// Frame bytes written (the hello excluded).
    pub(super) bytes: u64,
}

impl SendQueue {
    /// Appends a frame (callers drop empty frames: they would make a write look like EOF).
    pub(super) fn push(&mut self, frame: Bytes) {
        debug_assert!(!frame.is_empty());
        self.bytes += frame.len();
        self.items.push_back(frame);
    }

    /// Puts the connection hello in front of the queued frames. Only valid on a fresh
    /// connection, before anything of the queue was written.
    pub(super) fn push_hello(&mut self, hello: Bytes) {
        debug_assert!(self.head_offset == 0 && !self.hello_at_head);
        self.items.push_front(hello);
        self.hello_at_head = true;
    }

    /// Unwritten frame bytes.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Nothing left to write.
    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drops everything (the connection is gone); returns how many frames were dropped,
    /// counting a partially written one.
    pub(super) fn clear(&mut self) -> u64 {
        let frames = self.items.len() - usize::from(self.hello_at_head);
        self.items.clear();
        self.head_offset = 0;
        self.hello_at_head = false;
        self.bytes = 0;
        frames as u64
    }

    /// Writes to `w` until the queue is empty, `w` would block, or `w` fails.
    pub(super) fn drain_into(&mut self, w: &mut impl Write, written: &mut Written) -> Drain {
        loop {
            if self.items.is_empty() {
                return Drain::Empty;
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for (slot, item) in slices.iter_mut().zip(&self.items) {
                let part = if count == 0 { item.get(self.head_offset..).unwrap_or_default() } else { &item[..] };
                *slot = IoSlice::new(part);
                count += 1;
            }
            match w.write_vectored(&slices[..count]) {
                Ok(0) => return Drain::Failed(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n, written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drain::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Drain::Failed(e),
            }
        }
    }

    /// Consumes `n` written bytes from the head of the queue.
    fn advance(&mut self, mut n: usize, written: &mut Written) {
        while n > 0 {
            let Some(head) = self.items.front() else { return };
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
    }
}

#[cfg(test)]
mod tests {
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
        for f in &frames {
            q.push(f.clone());
        }
        q.push_hello(Bytes::from_static(b"HELLO"));
        assert_eq!(q.bytes(), total);
        let mut w = Trickle { out: Vec::new(), per_call: 333, limit: 10_000 };
        let mut written = Written::default();
        assert!(matches!(q.drain_into(&mut w, &mut written), Drain::Blocked));
        w.limit = usize::MAX;
        assert!(matches!(q.drain_into(&mut w, &mut written), Drain::Empty));
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
        q.push(Bytes::from_static(b"def"));
        q.push_hello(Bytes::from_static(b"H"));
        assert_eq!(q.clear(), 2);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }
}
