//! The user-space queue of one outgoing stream connection, shared by the stream transports.
//!
//! [`Transport::send`](crate::Transport::send) must never block, so frames wait here until the
//! socket (or the kernel, for io_uring) takes them. A transport reads the unwritten parts with
//! [`OutQueue::pending`] (to build a `writev` or a `sendmsg` that points into the frames, no
//! copy) and reports what the write took with [`OutQueue::advance`].
//!
//! After a (re)connect the connection hello is put at the head of the queue, so the hello and
//! the frames share one write path (including partial writes). The hello is not a frame: it
//! is not counted in [`OutQueue::bytes`] (which decides `Full`) nor in [`Written`].
//!
//! A frame may come in two parts (a head of its own and a record section it shares with other
//! frames, see [`EncodedFrame`]): each part is an item of its own, so a shared section is
//! written from where it is, never copied.

use std::collections::VecDeque;

use bytes::Bytes;
use picsou_core::wire::EncodedFrame;

/// A queued buffer: the hello, a whole frame, or one part of a frame.
#[derive(Debug)]
struct Item {
    bytes: Bytes,
    /// Its last byte is the last byte of a frame.
    ends_frame: bool,
}

/// Frames (and possibly a hello at the head) waiting for one connection.
#[derive(Debug, Default)]
pub struct OutQueue {
    items: VecDeque<Item>,
    /// Bytes of the head item already written.
    head_offset: usize,
    /// The head item is the connection hello, not a frame.
    hello_at_head: bool,
    /// Unwritten frame bytes (the hello excluded).
    bytes: usize,
}

/// What a write (or a drop) covered, for the transport's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Frames completely written.
    pub frames: u64,
    /// Frame bytes written (the hello excluded).
    pub bytes: u64,
}

/// The unwritten part of one queued item.
#[derive(Clone, Copy, Debug)]
pub struct Pending<'a> {
    /// The whole item.
    pub item: &'a Bytes,
    /// Where its unwritten part starts.
    pub start: usize,
    /// It is a frame (not the hello).
    pub is_frame: bool,
}

impl<'a> Pending<'a> {
    /// The unwritten bytes.
    pub fn part(&self) -> &'a [u8] {
        let item: &'a Bytes = self.item;
        item.get(self.start..).unwrap_or_default()
    }
}

impl OutQueue {
    /// Appends a frame; empty frames (and empty parts) are skipped: they would make a write
    /// look like EOF.
    pub fn push(&mut self, frame: impl Into<EncodedFrame>) {
        for (bytes, ends_frame) in frame.into().into_parts() {
            self.bytes += bytes.len();
            self.items.push_back(Item { bytes, ends_frame });
        }
    }

    /// Puts the connection hello in front of the queued frames. Only valid on a fresh
    /// connection, before anything of the queue was written.
    pub fn push_hello(&mut self, hello: Bytes) {
        debug_assert!(self.head_offset == 0 && !self.hello_at_head);
        self.items.push_front(Item { bytes: hello, ends_frame: false });
        self.hello_at_head = true;
        self.head_offset = 0;
    }

    /// Unwritten frame bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Nothing left to write.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The unwritten items, head first.
    pub fn pending(&self) -> impl Iterator<Item = Pending<'_>> {
        self.items.iter().enumerate().map(|(i, item)| Pending {
            item: &item.bytes,
            start: if i == 0 { self.head_offset.min(item.bytes.len()) } else { 0 },
            is_frame: i > 0 || !self.hello_at_head,
        })
    }

    /// Empties the queue (the connection is gone). Returns the frames (a partially written one
    /// included) and frame bytes dropped. A transport whose in-flight send may still point into
    /// the buffers keeps them alive first (see [`OutQueue::buffers`]).
    pub fn clear(&mut self) -> Written {
        let frames = self.items.iter().filter(|i| i.ends_frame).count() as u64;
        let dropped = Written { frames, bytes: self.bytes as u64 };
        self.head_offset = 0;
        self.hello_at_head = false;
        self.bytes = 0;
        self.items.clear();
        dropped
    }

    /// The queued buffers, shared (a reference count each).
    pub fn buffers(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.items.iter().map(|i| i.bytes.clone())
    }

    /// Consumes `n` written bytes from the head of the queue.
    pub fn advance(&mut self, mut n: usize) -> Written {
        let mut written = Written::default();
        while n > 0 {
            let Some(head) = self.items.front() else { break };
            let rest = head.bytes.len() - self.head_offset;
            let ends_frame = head.ends_frame;
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
                } else if ends_frame {
                    written.frames += 1;
                }
            } else {
                self.head_offset += step;
            }
        }
        written
    }
}
