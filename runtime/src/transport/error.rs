//! What goes wrong in a transport, one enum per audience:
//! - [`TransportError`]: the transport cannot start or go on, which stops the node;
//! - [`ConfigError`]: a deployment the transport cannot run (inside `TransportError::Config`);
//! - [`LinkError`]: why an outgoing link went down ([`TransportEvent::PeerDown`]);
//! - [`Rejection`]: why an incoming connection was closed ([`TransportEvent::Rejected`]).
//!
//! Each failure kind is a variant, with the OS error as its source where there is one. What is
//! specific to one transport (RDMA verbs, io_uring set-up) is that transport's own typed error,
//! carried as a [`BoxError`] source so that callers can still downcast to it.
//!
//! [`TransportEvent::PeerDown`]: super::TransportEvent::PeerDown
//! [`TransportEvent::Rejected`]: super::TransportEvent::Rejected

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use picsou_core::ReplicaId;

use super::framer::FramingError;
use super::handshake::HandshakeError;

/// A transport-specific error, kept typed behind a trait object.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A transport failure that stops the node (a peer's failure never does).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Could not listen on the replica's own address.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The transport is not available here (io_uring disabled, no RDMA device, …); the source
    /// says why and what to do about it.
    #[error("{kind} transport unavailable: {source}")]
    Unavailable {
        /// The transport kind.
        kind: &'static str,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The deployment does not fit this transport.
    #[error("transport configuration: {0}")]
    Config(#[from] ConfigError),
    /// An OS error in the transport's own machinery (poller, ring, thread).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A device error in the transport's own machinery (an RDMA completion queue or channel).
    #[error("{context}: {source}")]
    Device {
        /// What was being done.
        context: &'static str,
        /// The device's error.
        #[source]
        source: BoxError,
    },
    /// The transport's owner cancelled it (e.g. Ctrl-C in Python): not a failure, the node
    /// stops quietly.
    #[error("cancelled")]
    Cancelled,
}

/// A deployment a transport cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The replica is listed among its own peers.
    #[error("{0} is in its own peer list")]
    LocalIsPeer(ReplicaId),
    /// A peer is listed twice.
    #[error("peer {0} is listed twice")]
    DuplicatePeer(ReplicaId),
    /// No link key for a peer.
    #[error("no link key for {0}")]
    NoLinkKey(ReplicaId),
    /// More peers than the transport can address.
    #[error("{count} peers: at most {max}")]
    TooManyPeers {
        /// Peers given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An option out of its range.
    #[error("{field} = {value}: {expected}")]
    Option {
        /// The option, as the deployment file spells it (`transport.uring.entries`).
        field: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: String,
    },
    /// A replica registered twice on one in-memory network.
    #[error("replica {0} is already on this in-memory network")]
    AlreadyOnNetwork(ReplicaId),
    /// `kind = "mem"` outside a single process.
    #[error(
        "kind = \"mem\" connects replicas inside one process only: run the whole deployment in one process (`picsou local`)"
    )]
    MemNeedsOneProcess,
}

/// Why an outgoing link went down (frames to the peer are dropped until it is back up).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// No socket for the dial (creating, configuring or registering it failed).
    #[error("dial {addr}: {source}")]
    Dial {
        /// The peer's address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The connect failed (refused, unreachable, …).
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The peer's address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The connect did not complete in time.
    #[error("connect to {addr} timed out after {after:?}")]
    ConnectTimeout {
        /// The peer's address.
        addr: SocketAddr,
        /// The timeout.
        after: Duration,
    },
    /// Writing to the connection failed.
    #[error("write to {addr}: {source}")]
    Write {
        /// The peer's address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Whatever answered at the peer's address failed the session handshake: another
    /// deployment or key, an impostor, or not a picsou replica.
    #[error("handshake with {addr}: {reason}")]
    Handshake {
        /// The peer's address.
        addr: SocketAddr,
        /// What was wrong.
        reason: HandshakeError,
    },
    /// The peer closed the connection.
    #[error("connection closed by the peer")]
    Closed,
    /// The connection reported an error (reset, …).
    #[error("connection error: {0}")]
    Broken(#[source] io::Error),
    /// The transport could not queue the operation (its submission queue is full).
    #[error("the transport's submission queue is full")]
    Overloaded,
    /// The peer is not on the in-memory network (it stopped, or never started).
    #[error("not on the in-memory network")]
    Absent,
    /// A failure specific to the transport (an RDMA handshake or completion, …).
    #[error(transparent)]
    Transport(BoxError),
}

/// Why an incoming connection was refused and closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Its hello is not acceptable (garbage, unknown peer, a tag that does not answer this
    /// connection's challenge, …).
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// Its hello is authentic, but the engine proved it faulty: refused until its quarantine
    /// ends (see `Transport::disconnect`).
    #[error("quarantined: the peer was proven faulty")]
    Quarantined,
    /// It closed in the middle of its hello.
    #[error("closed in the middle of its hello")]
    ClosedMidHello,
    /// It sent no complete hello in time.
    #[error("no hello within {0:?}")]
    HelloTimeout(Duration),
    /// Too many connections already wait for their hello.
    #[error("over {0} connections without hello")]
    TooManyWaiting(usize),
    /// Its frames break the framing rules (an oversized length prefix, …).
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// It broke a rule specific to the transport (RDMA connection info, ring records, …).
    #[error(transparent)]
    Transport(BoxError),
}
