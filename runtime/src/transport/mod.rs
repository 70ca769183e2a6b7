//! The [`Transport`] trait and its implementations.
//!
//! A transport moves opaque, already-authenticated frames between replicas. It is driven by
//! the node thread: [`Transport::send`] hands it frames, [`Transport::flush`] pushes everything
//! queued towards the wire (one batch per destination), and [`Transport::poll`] waits for
//! received frames and peer events. The trait is sized for sockets and for RDMA alike: a send
//! is "append this frame to the peer's outgoing stream", nothing assumes a file descriptor.
//!
//! Rules every implementation follows:
//! - A stalled or dead peer never blocks traffic to the others: `send` never blocks; when a
//!   peer's queue is over its limit `send` says [`SendStatus::Full`] (the node then stops
//!   building frames for it, see [`picsou_core::Endpoint::set_blocked`]) and the transport
//!   reports [`TransportEvent::Writable`] once it drains.
//! - Frames to a peer that is down are dropped (counted), like frames to a crashed replica:
//!   the protocol recovers lost frames; queueing them would only grow memory.
//! - Dead connections are redialled with exponential backoff.
//! - Every connection starts with the session [`handshake`]: the acceptor challenges, the
//!   dialler proves that it holds the link key it claims over that challenge, the acceptor
//!   proves the same over the dialler's nonce. Anyone else is dropped and reported as
//!   [`TransportEvent::Rejected`]. Each side then reports [`TransportEvent::Session`] (before
//!   `PeerUp` and before any frame of the connection): the engine authenticates the
//!   connection's frames with its own session key, so a transport never trusts content.
//!
//! The socket-like transports (TCP, io_uring, RDMA) implement these rules once: [`link`] is the
//! life cycle of an outgoing link (down, `Full`, `Writable`, backoff, redial) and [`accept`]
//! the accept loop (connections waiting for their hello, its timeout, the cap on them).
//! Failures are typed ([`error`]).
//!
//! Connections are one-way: a replica dials every peer to send, and accepts connections to
//! receive. There is no tie-breaking between simultaneous dials, and a restarted peer simply
//! dials again.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use picsou_core::ReplicaId;
pub use picsou_core::wire::EncodedFrame;

pub mod accept;
pub mod backoff;
pub mod error;
pub mod framer;
pub mod handshake;
pub mod link;
pub mod mem;
pub mod options;
pub mod outqueue;
pub mod ports;
pub mod tcp;

pub use error::{BoxError, ConfigError, LinkError, Rejection, TransportError};
pub use options::{TcpOptions, TransportKind, TransportOptions, UringOptions};

/// What [`Transport::send`] says about the destination after taking a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStatus {
    /// The peer can take more.
    Room,
    /// The frame was taken, but the peer's queue is over its limit: send nothing more to it
    /// until [`TransportEvent::Writable`].
    Full,
}

/// Something that happened in the transport.
#[derive(Debug)]
pub enum TransportEvent {
    /// A complete frame arrived on the authenticated connection from `from`.
    Frame {
        /// The peer whose connection carried it.
        from: ReplicaId,
        /// The frame, as the peer's engine built it (the engine checks its MAC).
        frame: Bytes,
    },
    /// A connection with the peer completed its handshake: frames on it are MACed with
    /// `session.key` (see [`picsou_core::Endpoint::set_session`]). Reported before the
    /// connection's `PeerUp` (ours) or first frame (the peer's).
    Session {
        /// The peer.
        peer: ReplicaId,
        /// Whose connection: ours to it (`Send`) or its to us (`Receive`).
        direction: handshake::SessionDirection,
        /// The key and the peer's incarnation.
        session: handshake::Session,
    },
    /// The outgoing connection to the peer is established (pairs with `PeerDown`).
    PeerUp(ReplicaId),
    /// The outgoing connection to the peer broke or could not be made; frames to it are
    /// dropped until it is back up.
    PeerDown {
        /// The peer.
        peer: ReplicaId,
        /// Why.
        reason: LinkError,
    },
    /// A peer that was [`SendStatus::Full`] can take frames again.
    Writable(ReplicaId),
    /// An incoming connection or its bytes were refused (unknown or unauthenticated peer,
    /// garbage on the port, oversized frame); the connection was closed.
    Rejected {
        /// The remote address (or another description of the source).
        source: String,
        /// The peer it claimed to be, if it got that far.
        claimed: Option<ReplicaId>,
        /// Why.
        reason: Rejection,
    },
}

/// Where the parts of a transport report what happened: the events for the next `poll` and the
/// counters (the shared link life cycle and accept loop write both).
#[derive(Debug)]
pub struct Report<'a> {
    /// Events not yet handed out.
    pub events: &'a mut Vec<TransportEvent>,
    /// The transport's counters.
    pub stats: &'a mut TransportStats,
}

/// Wakes a transport blocked in [`Transport::poll`] from another thread (the application
/// submitted something, or the node is shutting down).
pub trait Wake: Send + Sync {
    /// Makes the current or next `poll` return promptly.
    fn wake(&self);
}

/// Counters kept by a transport.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransportStats {
    /// Frames handed to the wire.
    pub frames_sent: u64,
    /// Bytes handed to the wire.
    pub bytes_sent: u64,
    /// Frames received.
    pub frames_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Frames dropped because their peer was down.
    pub frames_dropped: u64,
    /// Connections established (both directions, including redials).
    pub connects: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// Incoming connections or streams rejected.
    pub rejected: u64,
}

/// Moves frames between this replica and its peers. See the module documentation.
pub trait Transport: Send {
    /// Short name for logs and reports ("mem", "tcp", "uring", "rdma").
    fn kind(&self) -> &'static str;

    /// Queues `frame` for `peer`. Never blocks. Frames to an unknown peer or a peer that is
    /// down are dropped and counted. A frame in two parts (a head and a record section shared
    /// with other frames) goes on the wire as their concatenation; transports that can write
    /// scattered buffers should not join them.
    fn send(&mut self, peer: ReplicaId, frame: EncodedFrame) -> SendStatus;

    /// Pushes queued frames towards the wire, batching per destination. Called once per node
    /// loop iteration, after a burst of `send`s.
    fn flush(&mut self);

    /// Appends what happened to `events`, waiting at most `timeout` (`None`: until something
    /// happens or [`Wake::wake`]) when nothing is ready. Returns promptly if events are ready.
    fn poll(&mut self, timeout: Option<Duration>, events: &mut Vec<TransportEvent>) -> Result<(), TransportError>;

    /// A handle that interrupts `poll` from another thread.
    fn waker(&self) -> Arc<dyn Wake>;

    /// Stops (`false`) or resumes (`true`) reading frames, so that an application that does
    /// not consume deliveries pushes back on its peers instead of growing memory.
    fn set_receiving(&mut self, receiving: bool);

    /// Counters.
    fn stats(&self) -> TransportStats;

    /// Whether connections have sessions ([`TransportEvent::Session`]): then nothing may be
    /// sent to a peer before the session of our connection to it is reported (frames built
    /// earlier would carry a key the peer does not accept), so the node holds frames for every
    /// peer until its `PeerUp`. Transports without connections (in-memory) have none: frames
    /// carry the link key.
    fn has_sessions(&self) -> bool {
        false
    }

    /// The engine proved `peer` faulty (see [`picsou_core::Misbehavior::proves_fault`]): close
    /// its connection to us and refuse its hellos for `for_how_long` (an authentic hello names
    /// it, so this cannot be turned against another replica). Its frames would be dropped
    /// unread anyway; cutting the connection stops the reading and costs it a handshake per
    /// attempt. Our connection to it stays: what we owe it, the protocol decides. Transports
    /// without connections ignore it.
    fn disconnect(&mut self, peer: ReplicaId, for_how_long: Duration) {
        let _ = (peer, for_how_long);
    }
}

/// Everything a transport needs to know about the deployment to start.
#[derive(Clone, Debug)]
pub struct TransportSetup {
    /// This replica.
    pub local: ReplicaId,
    /// Where this replica listens (ignored by transports without addresses).
    pub listen: std::net::SocketAddr,
    /// Every other replica of both RSMs and its address.
    pub peers: Vec<(ReplicaId, std::net::SocketAddr)>,
    /// Link keys, to prove who we are in the handshake and check who connects.
    pub keys: picsou_core::keys::LinkKeys,
    /// The deployment id and this process's incarnation, bound into every handshake.
    pub session: handshake::SessionContext,
    /// Largest frame accepted from a peer; a larger length prefix closes the connection.
    pub max_frame_bytes: usize,
}

impl TransportSetup {
    /// Every peer with its address and link key, checked: not this replica, none twice, each
    /// with a key.
    pub fn checked_peers(
        &self,
    ) -> Result<Vec<(ReplicaId, std::net::SocketAddr, picsou_core::keys::MacKey)>, ConfigError> {
        let mut seen = std::collections::HashSet::with_capacity(self.peers.len());
        let mut out = Vec::with_capacity(self.peers.len());
        for &(peer, addr) in &self.peers {
            if peer == self.local {
                return Err(ConfigError::LocalIsPeer(peer));
            }
            if !seen.insert(peer) {
                return Err(ConfigError::DuplicatePeer(peer));
            }
            let key = self.keys.key_for(peer).ok_or(ConfigError::NoLinkKey(peer))?;
            out.push((peer, addr, key));
        }
        Ok(out)
    }
}
