//! The receiving side of the ring: accepting connections, authenticating them (the runtime's
//! shared accept loop: hello, its deadline, the cap on waiting connections), reading frames
//! with the multishot receive or in place (see [`super::incoming`]), and pausing reads when
//! the node does not keep up or asked to stop.

use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Instant;

use io_uring::types::Fd;
use io_uring::{cqueue, opcode};
use picsou_core::ReplicaId;
use picsou_runtime::transport::accept::{self, Step, write_now};
use picsou_runtime::transport::handshake::SessionDirection;
use picsou_runtime::transport::{Rejection, Report, TransportEvent};
use socket2::Socket;

use super::Driver;
use super::incoming::{Anomaly, Incoming};
use super::ops::Op;
use super::outgoing::DontWait;
use crate::errno::completion_error;

/// Why an incoming connection is closed: reported as `Rejected` (with the peer it claimed to
/// be) or not.
type Refusal = Option<(Option<ReplicaId>, Rejection)>;

impl Driver {
    /// Arms the multishot accept on the listener.
    pub(super) fn arm_accept(&mut self) {
        let ud = self.ops.insert(Op::Accept);
        let sqe =
            opcode::AcceptMulti::new(Fd(self.listener.as_raw_fd())).flags(libc::SOCK_CLOEXEC).build().user_data(ud);
        #[allow(unsafe_code)]
        // SAFETY: a multishot accept without an address buffer names no user memory.
        let ok = unsafe { self.push(&[sqe]) };
        if !ok {
            self.ops.remove(ud);
            self.acceptor.accept_failed(Instant::now(), &"the submission queue is full");
        }
    }

    /// A connection arrived (or accepting failed: retried a little later).
    pub(super) fn on_accept(&mut self, ud: u64, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        if !more {
            self.ops.remove(ud);
        }
        if res >= 0 {
            #[allow(unsafe_code)]
            // SAFETY: a successful accept completion's result is a new descriptor that nothing
            // else owns.
            let sock = unsafe { Socket::from_raw_fd(res) };
            self.add_conn(sock);
            if !more {
                self.arm_accept();
            }
        } else if !more {
            self.acceptor.accept_failed(Instant::now(), &completion_error(res));
        } else {
            tracing::warn!("accept: {}", completion_error(res));
        }
    }

    /// Takes an accepted connection, unless too many already wait for their hello.
    pub(super) fn add_conn(&mut self, sock: Socket) {
        let source =
            sock.peer_addr().ok().and_then(|a| a.as_socket()).map_or_else(|| "unknown".into(), |a| a.to_string());
        let mut report = Report { events: &mut self.events, stats: &mut self.stats };
        if let Some((evicted, ())) = self.acceptor.make_room(&mut report) {
            // Refused and reported by the acceptor already.
            self.close_conn(evicted, None);
        }
        self.conn_epoch = self.conn_epoch.wrapping_add(1);
        let c = Incoming::new(sock, self.conn_epoch, source.clone(), self.max_frame, self.frame_pool.clone());
        let i = match self.free_conns.pop() {
            Some(i) => {
                self.conns[i] = Some(c);
                i
            }
            None => {
                self.conns.push(Some(c));
                self.conns.len() - 1
            }
        };
        let challenge = self.acceptor.admit(i, (), source, Instant::now());
        let sent = self.conns[i].as_ref().is_some_and(|c| write_now(&mut DontWait(&c.sock), &challenge));
        if !sent {
            tracing::debug!("cannot send the challenge; connection dropped");
            self.close_conn(i, None);
            return;
        }
        self.resume_recv(i);
    }

    /// Closes an incoming connection, reporting it if refused.
    pub(super) fn close_conn(&mut self, i: usize, refusal: Refusal) {
        let Some(c) = self.conns.get_mut(i).and_then(Option::take) else { return };
        self.free_conns.push(i);
        self.acceptor.forget(i);
        if let Some(p) = c.peer() {
            if self.by_peer.get(&p) == Some(&i) {
                self.by_peer.remove(&p);
            }
            if refusal.is_none() {
                self.stats.disconnects += 1;
            }
        }
        if let Some((claimed, reason)) = refusal {
            let mut report = Report { events: &mut self.events, stats: &mut self.stats };
            accept::reject(&mut report, c.source.clone(), claimed, reason);
        }
        // Ends the armed receive (it completes and is ignored); the descriptor closes on drop.
        let _ = c.sock.shutdown(std::net::Shutdown::Both);
    }

    /// Arms the multishot receive of `conn` (buffers from the buffer ring).
    pub(super) fn arm_recv(&mut self, conn: usize) {
        let Some(c) = self.conns.get_mut(conn).and_then(Option::as_mut) else { return };
        if c.recv.is_some() {
            return;
        }
        let Some(bufs) = &self.bufs else { return };
        let ud = self.ops.insert(Op::Recv { conn, epoch: c.epoch });
        c.recv = Some(ud);
        let sqe = opcode::RecvMulti::new(Fd(c.sock.as_raw_fd()), bufs.group()).build().user_data(ud);
        #[allow(unsafe_code)]
        // SAFETY: the receive names no user memory itself; the kernel writes into buffers of
        // the registered ring, which stays allocated until no receive is in flight.
        let ok = unsafe { self.push(&[sqe]) };
        if !ok {
            self.ops.remove(ud);
            tracing::warn!("cannot receive on an incoming connection (io_uring full): closing it");
            self.close_conn(conn, None);
        }
    }

    /// Starts receiving on `conn` if it should and nothing is armed: in place if the current
    /// frame is large, else with the multishot receive.
    pub(super) fn resume_recv(&mut self, conn: usize) {
        if !self.reading() {
            return;
        }
        let Some(c) = self.conns.get_mut(conn).and_then(Option::as_mut) else { return };
        if c.recv.is_some() || c.direct {
            return;
        }
        let Some((mut buf, want)) = c.lend() else {
            self.arm_recv(conn);
            return;
        };
        let fd = c.sock.as_raw_fd();
        c.direct = true;
        let len = u32::try_from(want).unwrap_or(u32::MAX);
        let ptr = buf.spare_ptr();
        let ud = self.ops.insert(Op::RecvDirect { conn, epoch: c.epoch, buf });
        let sqe = opcode::Recv::new(Fd(fd), ptr, len).flags(libc::MSG_WAITALL).build().user_data(ud);
        #[allow(unsafe_code)]
        // SAFETY: the kernel writes at most `want` bytes into the spare capacity of `buf`,
        // which `lend` reserved; `buf` is owned by the operation's slot (moving a `Lent`
        // does not move its heap memory) until the receive completes.
        let ok = unsafe { self.push(&[sqe]) };
        if !ok {
            // The buffer went with the slot: the connection cannot continue.
            self.ops.remove(ud);
            tracing::warn!("cannot receive on an incoming connection (io_uring full): closing it");
            self.close_conn(conn, None);
        }
    }

    /// Receives are wanted: the node receives and keeps up.
    pub(super) fn reading(&self) -> bool {
        self.receiving && !self.paused
    }

    /// Applies `set_receiving` and the backlog pause: arms or cancels receives.
    pub(super) fn set_reading(&mut self, receiving: bool, paused: bool) {
        let before = self.reading();
        self.receiving = receiving;
        self.paused = paused;
        let now = self.reading();
        if before == now {
            return;
        }
        for i in 0..self.conns.len() {
            let Some(c) = &self.conns[i] else { continue };
            // A direct receive in flight is left to finish: it is bounded by one frame.
            match (now, c.recv) {
                (true, None) => self.resume_recv(i),
                (false, Some(ud)) => self.cancel(ud),
                _ => {}
            }
        }
    }

    /// A multishot receive completion: data (in a provided buffer, given back at once), end of
    /// stream, or the end of the multishot (re-armed, or replaced by a direct receive).
    pub(super) fn on_recv(&mut self, ud: u64, conn: usize, epoch: u32, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        let bid = cqueue::buffer_select(flags);
        if !more {
            self.ops.remove(ud);
        }
        let live = matches!(self.conns.get(conn), Some(Some(c)) if c.epoch == epoch);
        if !live {
            if let (Some(bid), Some(bufs)) = (bid, &mut self.bufs) {
                bufs.recycle(bid);
            }
            return;
        }
        if !more && let Some(Some(c)) = self.conns.get_mut(conn) {
            c.recv = None;
            c.stopping = false;
        }
        if res > 0 {
            let outcome = match bid {
                Some(bid) => self.deliver(conn, bid, res as usize),
                None => Err(Some((None, Rejection::Transport(Box::new(Anomaly::NoBuffer))))),
            };
            if let Some(bufs) = &mut self.bufs
                && let Some(bid) = bid
            {
                bufs.recycle(bid);
            }
            match outcome {
                Ok(Some(peer)) => self.authenticated(conn, peer),
                Ok(None) => {}
                Err(r) => {
                    self.close_conn(conn, r);
                    return;
                }
            }
            // A large frame started: stop the multishot (its remaining completions still
            // arrive, in order) and receive the rest in place once it has ended.
            if more
                && let Some(Some(c)) = self.conns.get_mut(conn)
                && !c.stopping
                && c.wants_direct()
            {
                c.stopping = true;
                self.cancel(ud);
            }
        } else if res == 0 || (res != -libc::ENOBUFS && res != -libc::ECANCELED) {
            if res < 0 {
                tracing::debug!("receive: {}", completion_error(res));
            }
            self.end_conn(conn);
            return;
        }
        // ENOBUFS (the buffer ring ran dry: buffers were just recycled), a cancellation, or a
        // multishot that ended for its own reasons: re-arm if still reading.
        if res == -libc::ENOBUFS {
            self.enobufs += 1;
        }
        if !more {
            self.resume_recv(conn);
        }
    }

    /// A direct receive completed: the frame's buffer goes back to its connection.
    pub(super) fn on_recv_direct(&mut self, ud: u64, res: i32) {
        let Some(Op::RecvDirect { conn, epoch, buf }) = self.ops.remove(ud) else { return };
        let Some(Some(c)) = self.conns.get_mut(conn).filter(|c| c.as_ref().is_some_and(|c| c.epoch == epoch)) else {
            return;
        };
        c.direct = false;
        let n = usize::try_from(res).unwrap_or(0);
        let (events, stats, rx_bytes) = (&mut self.events, &mut self.stats, &mut self.rx_bytes);
        #[allow(unsafe_code)]
        // SAFETY: a receive completion's non-negative result is the number of bytes the kernel
        // wrote at the start of the spare capacity, at most the length it was given (`want`).
        let restored = unsafe {
            c.restore(buf, n, &mut |from, frame| {
                stats.frames_received += 1;
                stats.bytes_received += frame.len() as u64;
                *rx_bytes += frame.len();
                events.push(TransportEvent::Frame { from, frame });
            })
        };
        if let Err(e) = restored {
            let claimed = c.peer();
            self.close_conn(conn, Some((claimed, e.into())));
            return;
        }
        match res {
            0 => self.close_conn(conn, None),
            r if r < 0 && r != -libc::ECANCELED => {
                tracing::debug!("receive: {}", completion_error(r));
                self.close_conn(conn, None);
            }
            _ => self.resume_recv(conn),
        }
    }

    /// Feeds `len` bytes of buffer `bid` to connection `conn`: to the accept loop until its
    /// hello verified, then to its frames. Returns the peer if its hello just verified.
    pub(super) fn deliver(&mut self, conn: usize, bid: u16, len: usize) -> Result<Option<ReplicaId>, Refusal> {
        let Some(bufs) = &self.bufs else { return Ok(None) };
        let Some(data) = bufs.data(bid, len) else {
            return Err(Some((None, Rejection::Transport(Box::new(Anomaly::OutOfRange)))));
        };
        let Some(Some(c)) = self.conns.get_mut(conn) else { return Ok(None) };
        let (events, stats, rx_bytes) = (&mut self.events, &mut self.stats, &mut self.rx_bytes);
        let mut newly = None;
        let mut frames = data;
        if c.peer().is_none() {
            let (step, used) = self.acceptor.feed(conn, data, &mut Report { events: &mut *events, stats: &mut *stats });
            match step {
                Step::Waiting => return Ok(None),
                // Already reported.
                Step::Refused(()) | Step::Gone(()) => return Err(None),
                Step::Arrived(a) => {
                    if !write_now(&mut DontWait(&c.sock), &a.confirm) {
                        tracing::debug!(source = %a.source, "cannot send the confirmation; connection dropped");
                        return Err(None);
                    }
                    // Before any frame of the connection: the engine checks them with its key.
                    let (peer, session) = (a.peer, a.session);
                    events.push(TransportEvent::Session { peer, direction: SessionDirection::Receive, session });
                    // Like the TCP transport, `PeerUp` reports outgoing connections only (those
                    // decide whether frames to the peer flow); an incoming one is counted.
                    c.authenticated(a.peer);
                    stats.connects += 1;
                    newly = Some(a.peer);
                    frames = &data[used..];
                }
            }
        }
        c.receive(frames, &mut |from, frame| {
            stats.frames_received += 1;
            stats.bytes_received += frame.len() as u64;
            *rx_bytes += frame.len();
            events.push(TransportEvent::Frame { from, frame });
        })
        .map_err(|e| Some((c.peer(), e.into())))?;
        Ok(newly)
    }

    /// The connection ended (closed, or failed): refused if it stopped in the middle of its
    /// hello, closed quietly otherwise.
    fn end_conn(&mut self, conn: usize) {
        if self.acceptor.is_waiting(conn) {
            let mut report = Report { events: &mut self.events, stats: &mut self.stats };
            self.acceptor.ended(conn, &mut report);
        } else if let Some(Some(c)) = self.conns.get(conn)
            && c.partial() > 0
        {
            tracing::debug!(source = %c.source, bytes = c.partial(), "connection closed mid-frame");
        }
        self.close_conn(conn, None);
    }

    /// A newer authenticated connection from `peer` replaces the older one.
    pub(super) fn authenticated(&mut self, conn: usize, peer: ReplicaId) {
        // A peer that dials us is up: if our link to it is down (it restarted), redial now.
        let now = std::time::Instant::now();
        for o in self.out.iter_mut().filter(|o| o.link.peer() == peer) {
            o.link.peer_alive(now);
        }
        if let Some(old) = self.by_peer.insert(peer, conn)
            && old != conn
        {
            tracing::debug!(%peer, "newer incoming connection replaces the old one");
            self.close_conn(old, None);
        }
    }
}
