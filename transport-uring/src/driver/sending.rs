//! The sending side of the ring: dialling peers (connect with a linked timeout), watching
//! established connections for hang-up, writing queued frames, and losing connections (the
//! life cycle is the runtime's shared [`Link`](picsou_runtime::transport::link::Link), see
//! [`super::outgoing`]).
//!
//! The hang-up watch also fires if the peer writes on a connection we dialled (peers never
//! do: connections are one-way); that is treated as a lost connection and redialled.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::types::{Fd, Timespec};
use io_uring::{cqueue, opcode, squeue};
use picsou_runtime::transport::accept::{HELLO_TIMEOUT, write_now};
use picsou_runtime::transport::handshake::{DialHandshake, DialProgress, SessionDirection};
use picsou_runtime::transport::{LinkError, Report, TransportEvent};
use socket2::SockAddr;

use super::Driver;
use super::ops::{LINKED_TIMEOUT, Op, SendBuffers};
use super::outgoing::{DontWait, dial_socket};
use super::sendq::{Batch, fill};
use crate::errno::completion_error;
use crate::shared::LinkState;

impl Driver {
    /// Starts a send on every connected peer with frames queued and no send in flight.
    pub(super) fn start_sends(&mut self) {
        for p in 0..self.out.len() {
            let o = &self.out[p];
            if o.sending.is_none() && !o.link.queue().is_empty() && o.up(o.epoch).is_some() {
                self.start_send(p);
            }
        }
    }

    /// Dials peer `p`: a connect linked to a timeout of `connect_timeout`.
    pub(super) fn dial(&mut self, p: usize) {
        let addr = self.out[p].addr;
        let sock = match dial_socket(addr, &self.tcp) {
            Ok(s) => s,
            Err(source) => {
                self.lose(p, LinkError::Dial { addr, source });
                return;
            }
        };
        let o = &mut self.out[p];
        o.shared.set_state(LinkState::Connecting);
        o.epoch = o.epoch.wrapping_add(1);
        o.handshake = None;
        let addr = Box::new(SockAddr::from(o.addr));
        let timeout = Box::new(Timespec::from(self.tcp.connect_timeout.max(Duration::from_millis(1))));
        let (addr_ptr, addr_len, ts_ptr): (*const libc::sockaddr, _, *const Timespec) =
            (addr.as_ptr().cast(), addr.len(), &*timeout);
        let fd = sock.as_raw_fd();
        o.link.dialing(sock, None);
        let ud = self.ops.insert(Op::Connect { peer: p, epoch: o.epoch, addr, timeout, halves: 2 });
        let connect =
            opcode::Connect::new(Fd(fd), addr_ptr, addr_len).build().flags(squeue::Flags::IO_LINK).user_data(ud);
        let timer = opcode::LinkTimeout::new(ts_ptr).build().user_data(ud | LINKED_TIMEOUT);
        #[allow(unsafe_code)]
        // SAFETY: the address and the timeout are boxed in the operation's slot, which is
        // freed only after both the connect and its linked timeout completed.
        let ok = unsafe { self.push(&[connect, timer]) };
        if !ok {
            self.ops.remove(ud);
            self.lose(p, LinkError::Overloaded);
        }
    }

    /// Watches the established connection to `p` for hang-up.
    pub(super) fn watch(&mut self, p: usize) {
        let o = &self.out[p];
        let Some(sock) = o.up(o.epoch) else { return };
        let mask = (libc::POLLIN | libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) as u32;
        let ud = self.ops.insert(Op::Watch { peer: p, epoch: o.epoch });
        let sqe = opcode::PollAdd::new(Fd(sock.as_raw_fd()), mask).build().user_data(ud);
        #[allow(unsafe_code)]
        // SAFETY: a poll names no user memory.
        let ok = unsafe { self.push(&[sqe]) };
        if !ok {
            self.ops.remove(ud);
        }
    }

    /// Submits the next batch of `p`'s queue.
    pub(super) fn start_send(&mut self, p: usize) {
        let zero_copy_min = self.zero_copy_min;
        let o = &mut self.out[p];
        let epoch = o.epoch;
        let Some(sock) = o.up(epoch) else { return };
        let fd = sock.as_raw_fd();
        let mut bufs = o.spare.take().unwrap_or_else(SendBuffers::new);
        let flags = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;
        let sqe = match fill(o.link.queue(), &mut bufs, zero_copy_min) {
            Batch::Empty => {
                o.spare = Some(bufs);
                return;
            }
            Batch::Vectored => {
                let msg: *const libc::msghdr = &*bufs.msg;
                opcode::SendMsg::new(Fd(fd), msg).flags(flags as u32).build()
            }
            Batch::ZeroCopy => {
                let b = &bufs.hold[0];
                let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
                opcode::SendZc::new(Fd(fd), b.as_ptr(), len).flags(flags).build()
            }
        };
        let zero_copy = sqe.get_opcode() == u32::from(opcode::SendZc::CODE);
        let ud = self.ops.insert(Op::Send { peer: p, epoch, bufs, zero_copy, awaiting_notif: false });
        o.sending = Some(ud);
        let sqe = sqe.user_data(ud);
        #[allow(unsafe_code)]
        // SAFETY: the message header and the iovec array are owned by the send's slot (moving
        // `SendBuffers` into it moves no heap memory the pointers refer to), freed only after
        // the send's last completion (its notification for zero-copy sends). A zero-copy
        // send's frame is held by the slot too. The frames of a vectored send are held by the
        // queue until a completion reports them written, or moved into the slot by `lose`.
        let ok = unsafe { self.push(&[sqe]) };
        if !ok {
            self.ops.remove(ud);
            self.out[p].sending = None;
            self.lose(p, LinkError::Overloaded);
        }
    }

    /// A connect (or its linked timeout) completed: up (hello first, `PeerUp`), or lost.
    pub(super) fn on_connect(&mut self, ud: u64, res: i32) {
        let Some(Op::Connect { peer, epoch, halves, .. }) = self.ops.get_mut(ud) else { return };
        *halves -= 1;
        let (p, epoch, done) = (*peer, *epoch, *halves == 0);
        if done {
            self.ops.remove(ud);
        }
        if ud & LINKED_TIMEOUT != 0 || !self.out[p].dialing(epoch) {
            return;
        }
        let addr = self.out[p].addr;
        if res < 0 {
            let why = if res == -libc::ECANCELED {
                LinkError::ConnectTimeout { addr, after: self.tcp.connect_timeout }
            } else {
                LinkError::Connect { addr, source: completion_error(res) }
            };
            self.lose(p, why);
            return;
        }
        // Connected: the handshake, within the hello timeout.
        let o = &mut self.out[p];
        o.handshake = Some(DialHandshake::new(self.local, o.shared.id, o.key, o.session));
        if let Some((_, deadline)) = o.link.dialing_mut() {
            *deadline = Some(Instant::now() + HELLO_TIMEOUT);
        }
        self.continue_handshake(p);
    }

    /// Reads what the handshake of the connection being made to `p` needs (waiting for it with
    /// a poll), answers the challenge; once the confirmation verified the link is up, its
    /// session reported first.
    pub(super) fn continue_handshake(&mut self, p: usize) {
        let o = &mut self.out[p];
        let addr = o.addr;
        let session = loop {
            let (Some((sock, _)), Some(hs)) = (o.link.dialing_mut(), o.handshake.as_mut()) else { return };
            match hs.read_from(&mut DontWait(sock)) {
                Ok(Ok(DialProgress::More)) => return self.watch_dialing(p),
                Ok(Ok(DialProgress::Send(hello))) => {
                    if !write_now(&mut DontWait(sock), &hello) {
                        let source = std::io::Error::other("cannot send the hello");
                        return self.lose(p, LinkError::Write { addr, source });
                    }
                }
                Ok(Ok(DialProgress::Done(session))) => break session,
                Ok(Err(reason)) => return self.lose(p, LinkError::Handshake { addr, reason }),
                Err(source) => return self.lose(p, LinkError::Connect { addr, source }),
            }
        };
        o.handshake = None;
        let peer = o.shared.id;
        self.events.push(TransportEvent::Session { peer, direction: SessionDirection::Send, session });
        let mut report = Report { events: &mut self.events, stats: &mut self.stats };
        if !o.link.connected(Instant::now(), &mut report, |sock| sock) {
            return;
        }
        o.shared.set_state(LinkState::Up);
        self.watch(p);
    }

    /// Waits (a poll) for the next bytes of the handshake of the connection being made to `p`.
    fn watch_dialing(&mut self, p: usize) {
        let o = &mut self.out[p];
        let epoch = o.epoch;
        let Some((sock, _)) = o.link.dialing_mut() else { return };
        let mask = (libc::POLLIN | libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) as u32;
        let sqe = opcode::PollAdd::new(Fd(sock.as_raw_fd()), mask).build();
        let ud = self.ops.insert(Op::Watch { peer: p, epoch });
        #[allow(unsafe_code)]
        // SAFETY: a poll names no user memory.
        let ok = unsafe { self.push(&[sqe.user_data(ud)]) };
        if !ok {
            self.ops.remove(ud);
            self.lose(p, LinkError::Overloaded);
        }
    }

    /// A send completed (written frames leave the queue) or a zero-copy send's notification
    /// arrived (its buffer may be released).
    pub(super) fn on_send(&mut self, ud: u64, res: i32, flags: u32) {
        let Some(Op::Send { peer, epoch, zero_copy, awaiting_notif, .. }) = self.ops.get_mut(ud) else { return };
        let (p, epoch) = (*peer, *epoch);
        if cqueue::notif(flags) {
            // The kernel is done with a zero-copy send's buffers.
            self.ops.remove(ud);
            return;
        }
        let wait_notif = *zero_copy && cqueue::more(flags);
        if wait_notif {
            *awaiting_notif = true;
        } else if let Some(Op::Send { mut bufs, .. }) = self.ops.remove(ud) {
            bufs.clear();
            if self.out[p].spare.is_none() {
                self.out[p].spare = Some(bufs);
            }
        }
        if self.out[p].up(epoch).is_none() {
            return;
        }
        self.out[p].sending = None;
        if res <= 0 {
            let source = if res == 0 { std::io::ErrorKind::WriteZero.into() } else { completion_error(res) };
            self.lose(p, LinkError::Write { addr: self.out[p].addr, source });
            return;
        }
        let o = &mut self.out[p];
        let w = o.link.queue_mut().advance(res as usize);
        o.retired += w.bytes;
        self.stats.frames_sent += w.frames;
        self.stats.bytes_sent += w.bytes;
    }

    /// The outgoing connection to `p` is gone (or could not be made).
    pub(super) fn lose(&mut self, p: usize, reason: LinkError) {
        let mut report = Report { events: &mut self.events, stats: &mut self.stats };
        if let Some((ud, orphans)) = self.out[p].lose(Instant::now(), reason, &mut report)
            && let Some(Op::Send { bufs, .. }) = self.ops.get_mut(ud)
        {
            // The kernel may still read these frames: the send's slot keeps them until then.
            bufs.hold.extend(orphans);
        }
    }
}
