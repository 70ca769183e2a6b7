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

use std::io;
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::super::TcpOptions;

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
