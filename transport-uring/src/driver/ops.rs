//! In-flight io_uring operations: what each one is, and the memory it lends to the kernel.
//!
//! Every submission gets a slot here, and its `user_data` names the slot. The slot owns
//! whatever the kernel may read or write until the operation's *last* completion: the
//! `iovec` array and `msghdr` of a vectored send, a zero-copy send's frame, a direct
//! receive's buffer, a connect's address and timeout. Slots are freed only by that last
//! completion (a multishot's CQE without `F_MORE`, a zero-copy send's notification, both
//! halves of a connect and its linked timeout), which is what makes every `unsafe` submission
//! in the driver sound: the memory outlives the kernel's use of it.
//!
//! The frames of a vectored send are the one exception, to save a reference-count round trip
//! per frame: they stay in the connection's queue, which drops a frame only after a
//! completion reported it written; if the connection is dropped while the send is in flight,
//! the queue's frames move into the send's slot ([`SendBuffers::hold`]) instead of being
//! dropped.
//!
//! `user_data` = slot generation (high 32 bits) | slot index (low 31 bits) | a flag bit for the
//! second half of a linked pair. A completion whose generation does not match is for a slot
//! already reused and is ignored; generation 0 is never used, so `user_data` 0 marks
//! submissions whose completion carries nothing (cancellations).

use bytes::Bytes;
use io_uring::types::Timespec;
use socket2::SockAddr;

use crate::assembler::Lent;

/// `user_data` of submissions whose completions are ignored.
pub(crate) const IGNORED: u64 = 0;
/// Flag in `user_data`: the completion is the linked timeout of the slot's connect.
pub(crate) const LINKED_TIMEOUT: u64 = 1 << 31;

/// The memory of a send: the kernel reads `msg`, which points at `iov`, whose entries point
/// into frames (see the module documentation for who keeps those alive).
pub(crate) struct SendBuffers {
    /// Frames this send keeps alive itself: a zero-copy send's frame, or a dropped
    /// connection's queue while its vectored send is in flight.
    pub(crate) hold: Vec<Bytes>,
    /// The pieces of a vectored send.
    pub(crate) iov: Vec<libc::iovec>,
    /// Boxed so its address is stable while the kernel may read it.
    pub(crate) msg: Box<libc::msghdr>,
}

impl SendBuffers {
    /// Empty buffers.
    pub(crate) fn new() -> Self {
        #[allow(unsafe_code)]
        // SAFETY: `msghdr` is a plain C struct for which all-zero bytes are a valid value (null
        // pointers, zero lengths).
        let msg = Box::new(unsafe { std::mem::zeroed::<libc::msghdr>() });
        Self { hold: Vec::new(), iov: Vec::new(), msg }
    }

    /// Adds a piece to the vectored send.
    pub(crate) fn push(&mut self, part: &[u8]) {
        self.iov.push(libc::iovec { iov_base: part.as_ptr() as *mut _, iov_len: part.len() });
    }

    /// Points `msg` at `iov`; call after the last `push`, before submitting.
    pub(crate) fn seal(&mut self) {
        self.msg.msg_iov = self.iov.as_mut_ptr();
        self.msg.msg_iovlen = self.iov.len() as _;
    }

    /// Forgets everything (keeps the allocations for the next send).
    pub(crate) fn clear(&mut self) {
        self.hold.clear();
        self.iov.clear();
        self.msg.msg_iov = std::ptr::null_mut();
        self.msg.msg_iovlen = 0;
    }
}

/// What a slot's operation is.
pub(crate) enum Op {
    /// The multishot accept on the listener.
    Accept,
    /// The read of the doorbell eventfd (its 8-byte target lives in the driver).
    Wake,
    /// A connect and its linked timeout; `halves` counts the completions still due.
    Connect {
        /// Outgoing peer index.
        peer: usize,
        /// Connection generation of that peer.
        epoch: u32,
        /// The address the kernel reads (only held, never read by us).
        #[allow(dead_code)]
        addr: Box<SockAddr>,
        /// The timeout the kernel reads (only held, never read by us).
        #[allow(dead_code)]
        timeout: Box<Timespec>,
        /// Completions still due (2, then 1, then the slot is freed).
        halves: u8,
    },
    /// A poll watching an outgoing connection for hang-up (we never read from it).
    Watch {
        /// Outgoing peer index.
        peer: usize,
        /// Connection generation.
        epoch: u32,
    },
    /// A vectored send, or a zero-copy send of one frame.
    Send {
        /// Outgoing peer index.
        peer: usize,
        /// Connection generation.
        epoch: u32,
        /// The memory the kernel reads.
        bufs: SendBuffers,
        /// Zero-copy: the first completion reports the result, then (if it has `F_MORE`) a
        /// notification says the kernel is done with the buffers.
        zero_copy: bool,
        /// The result completion arrived; waiting for the notification.
        awaiting_notif: bool,
    },
    /// The multishot receive of an accepted connection (buffers come from the buffer ring).
    Recv {
        /// Incoming connection index.
        conn: usize,
        /// Incoming connection generation.
        epoch: u32,
    },
    /// A receive of the rest of a large frame straight into its buffer.
    RecvDirect {
        /// Incoming connection index.
        conn: usize,
        /// Incoming connection generation.
        epoch: u32,
        /// The frame's buffer: the kernel writes into its spare capacity.
        buf: Lent,
    },
}

struct Slot {
    epoch: u32,
    op: Option<Op>,
}

/// The slab of in-flight operations.
#[derive(Default)]
pub(crate) struct Ops {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

impl Ops {
    /// Stores `op`; returns its `user_data`.
    pub(crate) fn insert(&mut self, op: Op) -> u64 {
        self.live += 1;
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot { epoch: 0, op: None });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.epoch = slot.epoch.wrapping_add(1).max(1);
        slot.op = Some(op);
        (u64::from(slot.epoch) << 32) | u64::from(index)
    }

    fn slot(&mut self, user_data: u64) -> Option<&mut Slot> {
        let index = (user_data & 0x7fff_ffff) as usize;
        let epoch = (user_data >> 32) as u32;
        self.slots.get_mut(index).filter(|s| s.epoch == epoch && s.op.is_some())
    }

    /// The live operation `user_data` names, if any.
    pub(crate) fn get_mut(&mut self, user_data: u64) -> Option<&mut Op> {
        self.slot(user_data).and_then(|s| s.op.as_mut())
    }

    /// Frees the slot `user_data` names; returns its operation.
    pub(crate) fn remove(&mut self, user_data: u64) -> Option<Op> {
        let index = (user_data & 0x7fff_ffff) as u32;
        let op = self.slot(user_data)?.op.take();
        self.free.push(index);
        self.live -= 1;
        op
    }

    /// Operations still in flight.
    pub(crate) fn live(&self) -> usize {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_user_data_never_matches_a_reused_slot() {
        let mut ops = Ops::default();
        let a = ops.insert(Op::Accept);
        assert_ne!(a, IGNORED);
        assert!(ops.remove(a).is_some());
        let b = ops.insert(Op::Wake);
        assert_eq!(a & 0x7fff_ffff, b & 0x7fff_ffff, "slot reused");
        assert!(ops.get_mut(a).is_none());
        assert!(ops.remove(a).is_none());
        assert!(matches!(ops.get_mut(b | LINKED_TIMEOUT), Some(Op::Wake)));
        assert_eq!(ops.live(), 1);
        assert!(ops.get_mut(IGNORED).is_none());
    }
}
