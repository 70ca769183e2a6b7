//! One outgoing connection as the ring thread sees it: the shared [`Link`] life cycle over a
//! socket, the connection's generation, the send in flight and the byte counters that the node
//! thread's `Full` and `Writable` are decided from.
//!
//! The ring thread is the only one to run the life cycle; it mirrors the state into
//! [`PeerLink`] for `send` on the node thread (which drops frames to a down peer), and the
//! node thread reports `Full` itself from `handed - retired` (see [`crate::shared`]), so the
//! link's own `Full`/`Writable` bookkeeping stays unused here.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use picsou_core::keys::MacKey;
use picsou_runtime::transport::handshake::{DialHandshake, SessionContext};
use picsou_runtime::transport::link::{Link, Released, State};
use picsou_runtime::transport::{LinkError, Report, TcpOptions};
use socket2::{Domain, Protocol, Socket, Type};

use super::ops::SendBuffers;
use super::sendq::SendQueue;
use crate::shared::{LinkState, PeerLink};

/// One outgoing link.
pub(crate) struct Outgoing {
    /// What the node thread shares.
    pub(crate) shared: Arc<PeerLink>,
    /// Where the peer listens.
    pub(crate) addr: SocketAddr,
    /// Link key, for the handshake.
    pub(crate) key: MacKey,
    /// Deployment id and incarnation, for the handshake.
    pub(crate) session: SessionContext,
    /// The handshake of the connection being made, once it connected.
    pub(crate) handshake: Option<DialHandshake>,
    /// The life cycle; the socket while dialling and while up. No dial deadline: the kernel
    /// enforces the connect timeout (a linked timeout).
    pub(crate) link: Link<Socket, Socket, SendQueue>,
    /// Connection generation: completions of older connections are ignored.
    pub(crate) epoch: u32,
    /// The `user_data` of the send in flight (one at a time keeps the stream in order).
    pub(crate) sending: Option<u64>,
    /// Frame bytes written or dropped, ever (published to [`PeerLink::retired`]).
    pub(crate) retired: u64,
    /// The value last published.
    pub(crate) published: u64,
    /// Send buffers kept for reuse.
    pub(crate) spare: Option<SendBuffers>,
}

/// What a send in flight may still read after [`Outgoing::lose`]: its `user_data` and the
/// buffers of the dropped queue, which its slot must keep alive.
pub(crate) type Orphans = Option<(u64, Vec<Bytes>)>;

impl Outgoing {
    /// A link that dials at once.
    pub(crate) fn new(
        shared: Arc<PeerLink>,
        addr: SocketAddr,
        key: MacKey,
        session: SessionContext,
        opts: &TcpOptions,
        now: Instant,
    ) -> Self {
        let link = Link::new(shared.id, opts.backoff_min, opts.backoff_max, now);
        let (sending, retired, published, spare, handshake) = (None, 0, 0, None, None);
        Self { shared, addr, key, session, handshake, link, epoch: 0, sending, retired, published, spare }
    }

    /// The connected socket, if `epoch` is the current, established connection.
    pub(crate) fn up(&self, epoch: u32) -> Option<&Socket> {
        self.link.up().filter(|_| epoch == self.epoch)
    }

    /// Whether a dial of generation `epoch` is the one in flight.
    pub(crate) fn dialing(&self, epoch: u32) -> bool {
        matches!(self.link.state(), State::Dialing { .. }) && epoch == self.epoch
    }

    /// The connection is lost or the dial failed: the link goes down (its queue dropped,
    /// reported, a redial scheduled) and the socket is shut down.
    pub(crate) fn lose(&mut self, now: Instant, reason: LinkError, report: &mut Report<'_>) -> Orphans {
        self.handshake = None;
        let orphans = self.sending.take().map(|ud| (ud, self.link.queue().buffers().collect()));
        let dropped = self.link.queue().bytes() as u64;
        if let Some(Released::Up(sock) | Released::Dialing(sock)) = self.link.down(now, reason, report) {
            // Wakes the kernel's pending operations on it (they complete and are ignored).
            let _ = sock.shutdown(std::net::Shutdown::Both);
        }
        self.retired += dropped;
        self.shared.set_state(LinkState::Down);
        orphans
    }
}

/// A socket for dialling `addr`, with the sender-side options (`nodelay`, `send_buffer`).
/// Blocking mode on purpose: io_uring then waits for readiness itself, whereas a
/// non-blocking socket would make it return `EAGAIN` to us.
pub(crate) fn dial_socket(addr: SocketAddr, opts: &TcpOptions) -> std::io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Err(e) = sock.set_tcp_nodelay(opts.nodelay) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
    if opts.send_buffer > 0
        && let Err(e) = sock.set_send_buffer_size(opts.send_buffer)
    {
        tracing::debug!(size = opts.send_buffer, "cannot set the send buffer: {e}");
    }
    Ok(sock)
}

/// A socket read and written without blocking, whatever its mode: the handshake's few bytes
/// on a connection whose readiness a poll already reported (the socket itself stays blocking
/// for io_uring's sends).
pub(crate) struct DontWait<'a>(pub(crate) &'a Socket);

impl std::io::Read for DontWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        #[allow(unsafe_code)]
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
    }
}

impl std::io::Write for DontWait<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        #[allow(unsafe_code)]
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the duration of the call.
        let n = unsafe { libc::send(self.0.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
        if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
