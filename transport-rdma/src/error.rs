//! Why an RDMA link went down, beyond what every transport shares
//! ([`LinkError`](picsou_runtime::transport::LinkError) carries these as its transport-specific
//! source, so `PeerDown` reasons stay typed).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use picsou_core::ReplicaId;

use crate::ring::{CreditError, GeometryError};
use crate::verbs::{VerbsError, status_name};
use crate::wire::WireError;

/// An RDMA-specific reason for `PeerDown`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RdmaLinkError {
    /// The peer closed the bootstrap connection before answering our dial: it refused us.
    #[error("{addr} closed the connection during the handshake (it refused us: see its log)")]
    HandshakeClosed {
        /// The peer's address.
        addr: SocketAddr,
    },
    /// The bootstrap connection failed during the handshake.
    #[error("handshake with {addr}: {source}")]
    Handshake {
        /// The peer's address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// No answer in time.
    #[error("no answer from {addr} within {after:?}")]
    HandshakeTimeout {
        /// The peer's address.
        addr: SocketAddr,
        /// The timeout.
        after: Duration,
    },
    /// The answer is not acceptable.
    #[error("answer from {addr}: {source}")]
    BadAnswer {
        /// The peer's address.
        addr: SocketAddr,
        /// What is wrong with it.
        #[source]
        source: WireError,
    },
    /// The peer's ring is not the size of ours.
    #[error(
        "{peer}'s ring is {theirs} bytes and ours {ours}: transport.rdma.ring_bytes must be the same on every replica"
    )]
    RingSizeMismatch {
        /// The peer.
        peer: ReplicaId,
        /// Its ring size.
        theirs: u64,
        /// Ours.
        ours: u64,
    },
    /// The peer's ring size is unusable.
    #[error("{peer}'s ring: {source}")]
    BadRing {
        /// The peer.
        peer: ReplicaId,
        /// Why.
        #[source]
        source: GeometryError,
    },
    /// A verbs call failed.
    #[error("{what}: {source}")]
    Verbs {
        /// What was being done.
        what: &'static str,
        /// The device's error.
        #[source]
        source: VerbsError,
    },
    /// A work request completed with an error status.
    #[error("{what} to {peer} completed with error: {}", status_name(*.status))]
    Completion {
        /// The kind of work request.
        what: &'static str,
        /// The peer.
        peer: ReplicaId,
        /// The completion status.
        status: u32,
    },
    /// The peer published a credit it cannot have.
    #[error("{peer} published an impossible credit: {source}")]
    ImpossibleCredit {
        /// The peer.
        peer: ReplicaId,
        /// The credit.
        #[source]
        source: CreditError,
    },
}

impl From<RdmaLinkError> for picsou_runtime::transport::LinkError {
    fn from(e: RdmaLinkError) -> Self {
        Self::Transport(Box::new(e))
    }
}
