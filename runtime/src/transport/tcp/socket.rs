//! Socket creation and the options of [`TcpOptions`].
//!
//! Connections are one-way, so each option matters on one side only: `nodelay` and
//! `send_buffer` on the sockets we dial (we only write to them), `recv_buffer` on the sockets we
//! accept (we only read from them). The receive buffer is set on the listener before `listen`,
//! so accepted sockets inherit it from their first SYN and the TCP window scale is negotiated
//! for it; setting it afterwards would be too late for the handshake.
//!
//! Failing to apply an option is logged, not fatal: the kernel clamps sizes anyway, and a
//! replica with default buffers still works.

use std::io::{self, Read};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::transport::{LinkError, TcpOptions};

/// Pending connections the kernel keeps for us between two polls.
const LISTEN_BACKLOG: i32 = 1024;

/// A non-blocking listener on `addr`, with `SO_REUSEADDR` (a restarted replica rebinds its
/// port while old connections linger in `TIME_WAIT`) and the configured receive buffer.
pub(super) fn listen(addr: SocketAddr, opts: &TcpOptions) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if opts.recv_buffer > 0
        && let Err(e) = socket.set_recv_buffer_size(opts.recv_buffer)
    {
        tracing::warn!(%addr, size = opts.recv_buffer, "cannot set the receive buffer: {e}");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Applies the sender-side options to a socket we dialled.
pub(super) fn configure_outgoing(stream: &TcpStream, opts: &TcpOptions) {
    if let Err(e) = stream.set_nodelay(opts.nodelay) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
    if opts.send_buffer > 0
        && let Err(e) = SockRef::from(stream).set_send_buffer_size(opts.send_buffer)
    {
        tracing::debug!(size = opts.send_buffer, "cannot set the send buffer: {e}");
    }
}

/// Whether a non-blocking connect finished: `Ok(true)` connected, `Ok(false)` still in
/// progress, `Err` failed (the pattern mio documents for `TcpStream::connect`). Shared with the
/// transports that dial over TCP too (the RDMA transport's bootstrap).
pub fn connect_status(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// Bytes a peer may make us discard per readiness event on an outgoing connection (it should
/// send none; this bounds the work a misbehaving one causes, and a new arrival re-arms the
/// edge-triggered readiness).
const DISCARD_BUDGET: usize = 64 * 1024;

/// Reads whatever an outgoing socket has to say: `Err` with a reason if the peer closed or
/// reset it. Bytes (the peer should send none) are discarded. Shared with the RDMA
/// transport, whose bootstrap sockets stay open and silent.
pub fn probe_closed(stream: &mut TcpStream) -> Result<(), LinkError> {
    if let Ok(Some(e)) | Err(e) = stream.take_error() {
        return Err(LinkError::Broken(e));
    }
    let mut scratch = [0u8; 1024];
    let mut discarded = 0;
    loop {
        match stream.read(&mut scratch) {
            Ok(0) => return Err(LinkError::Closed),
            Ok(n) => {
                discarded += n;
                if discarded >= DISCARD_BUDGET {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LinkError::Broken(e)),
        }
    }
}
