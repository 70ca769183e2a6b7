//! One outgoing connection as the ring thread sees it: dial state, write queue, counters.
//!
//! The life cycle is `Dialing → Up → (lost) → Idle → Dialing …`, the same as the TCP
//! transport's: frames queue while dialling (the first dial of a starting replica should not
//! lose the first frames) and while up, and are dropped while idle, waiting to redial — like
//! frames to a crashed replica. A lost connection (or a failed dial) clears the queue and
//! schedules a redial after [`Backoff`]'s delay. `PeerDown` is reported once per loss of an
//! established connection and once for the first failed dial, not once per failed redial.
//! The backoff starts again from its minimum only after a connection that lasted
//! [`STABLE_AFTER`]: a peer that accepts and then closes at once (it rejects our hello) is not
//! redialled at the minimum delay forever.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use picsou_core::keys::MacKey;
use picsou_runtime::transport::TcpOptions;
use picsou_runtime::transport::backoff::Backoff;
use socket2::{Domain, Protocol, Socket, Type};

use super::ops::SendBuffers;
use super::sendq::{SendQueue, Written};
use crate::shared::{LinkState, PeerLink};

/// A connection that lasted this long was a success: the backoff restarts from its minimum.
pub(crate) const STABLE_AFTER: Duration = Duration::from_secs(1);
/// Shortest redial delay, whatever the options say (a zero delay would spin on refusals).
const MIN_BACKOFF: Duration = Duration::from_millis(1);

/// Where the connection stands.
pub(crate) enum Phase {
    /// Waiting to redial.
    Idle {
        /// When.
        redial_at: Instant,
    },
    /// A connect is in flight.
    Dialing {
        /// The socket being connected.
        sock: Socket,
    },
    /// Connected; the hello goes first.
    Up {
        /// The connected socket.
        sock: Socket,
        /// When the connect completed.
        since: Instant,
    },
}

/// What [`Outgoing::lose`] did, for events and counters.
pub(crate) struct Loss {
    /// The connection was up (a disconnect, not a failed dial).
    pub(crate) was_up: bool,
    /// First loss since the link was last up: report `PeerDown`.
    pub(crate) report: bool,
    /// Frames and bytes dropped from the queue.
    pub(crate) dropped: Written,
    /// The queue's items, which an in-flight send may still point into.
    pub(crate) orphans: Vec<bytes::Bytes>,
    /// The send in flight, if any (its slot must keep `orphans` alive).
    pub(crate) in_flight: Option<u64>,
}

/// One outgoing link.
pub(crate) struct Outgoing {
    /// What the node thread shares.
    pub(crate) link: Arc<PeerLink>,
    /// Where the peer listens.
    pub(crate) addr: SocketAddr,
    /// Link key, for the hello.
    pub(crate) key: MacKey,
    /// Dial state.
    pub(crate) phase: Phase,
    /// Connection generation: completions of older connections are ignored.
    pub(crate) epoch: u32,
    /// Frames waiting for the socket.
    pub(crate) queue: SendQueue,
    /// The `user_data` of the send in flight (one at a time keeps the stream in order).
    pub(crate) sending: Option<u64>,
    /// Redial delays.
    pub(crate) backoff: Backoff,
    /// Frame bytes written or dropped, ever (published to [`PeerLink::retired`]).
    pub(crate) retired: u64,
    /// The value last published.
    pub(crate) published: u64,
    /// Send buffers kept for reuse.
    pub(crate) spare: Option<SendBuffers>,
    /// `PeerDown` was reported and no `PeerUp` since.
    pub(crate) announced_down: bool,
}

impl Outgoing {
    /// A link that dials at once.
    pub(crate) fn new(link: Arc<PeerLink>, addr: SocketAddr, key: MacKey, opts: &TcpOptions, now: Instant) -> Self {
        Self {
            link,
            addr,
            key,
            phase: Phase::Idle { redial_at: now },
            epoch: 0,
            queue: SendQueue::default(),
            sending: None,
            backoff: Backoff::new(opts.backoff_min.max(MIN_BACKOFF), opts.backoff_max),
            retired: 0,
            published: 0,
            spare: None,
            announced_down: false,
        }
    }

    /// The connected socket, if `epoch` is the current, established connection.
    pub(crate) fn up(&self, epoch: u32) -> Option<&Socket> {
        match &self.phase {
            Phase::Up { sock, .. } if epoch == self.epoch => Some(sock),
            _ => None,
        }
    }

    /// Whether a dial of generation `epoch` is the one in flight.
    pub(crate) fn dialing(&self, epoch: u32) -> bool {
        matches!(self.phase, Phase::Dialing { .. }) && epoch == self.epoch
    }

    /// The connection is lost or the dial failed: close, drop the queue, schedule a redial.
    pub(crate) fn lose(&mut self, now: Instant) -> Loss {
        let old = std::mem::replace(&mut self.phase, Phase::Idle { redial_at: now });
        let was_up = matches!(old, Phase::Up { .. });
        if let Phase::Up { since, .. } = &old
            && now.saturating_duration_since(*since) >= STABLE_AFTER
        {
            self.backoff.reset();
        }
        if let Phase::Up { sock, .. } | Phase::Dialing { sock } = old {
            // Wakes the kernel's pending operations on it (they complete and are ignored).
            let _ = sock.shutdown(std::net::Shutdown::Both);
        }
        self.phase = Phase::Idle { redial_at: now + self.backoff.next_delay() };
        let in_flight = self.sending.take();
        let (dropped, orphans) = self.queue.clear();
        self.retired += dropped.bytes;
        self.link.set_state(LinkState::Down);
        let report = !self.announced_down;
        self.announced_down = true;
        Loss { was_up, report, dropped, orphans, in_flight }
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
