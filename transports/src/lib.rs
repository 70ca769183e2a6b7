//! # picsou-transports
//!
//! Opens the transport a deployment file selects. `[transport] kind` is the one line that
//! switches a deployment between the in-memory, TCP, io_uring and RDMA transports; this crate is
//! the one place that maps the kind to an implementation, so the CLI and the Python and C
//! bindings open transports the same way.

use picsou_core::ReplicaId;
use picsou_core::keys::LinkKeys;
use picsou_runtime::deployment::DeploymentConfig;
use picsou_runtime::transport::mem::MemNetwork;
use picsou_runtime::transport::tcp::TcpTransport;
use picsou_runtime::transport::{ConfigError, Transport, TransportError, TransportKind};

/// The transport of replica `local` of `config`, with `local`'s link keys (from
/// [`DeploymentConfig::replica_keys`]). `mem` needs the process-wide network that every replica
/// of an in-process deployment shares; the other kinds ignore `mem`.
pub fn open(
    config: &DeploymentConfig,
    local: ReplicaId,
    links: LinkKeys,
    mem: Option<&MemNetwork>,
) -> Result<Box<dyn Transport>, TransportError> {
    let setup = config.transport_setup_with(local, links);
    match config.transport.kind {
        TransportKind::Mem => {
            let net = mem.ok_or(ConfigError::MemNeedsOneProcess)?;
            let peers: Vec<ReplicaId> = setup.peers.iter().map(|(r, _)| *r).collect();
            Ok(Box::new(net.transport(local, &peers)?))
        }
        TransportKind::Tcp => Ok(Box::new(TcpTransport::new(setup, &config.transport.tcp)?)),
        TransportKind::Uring => picsou_transport_uring::open(setup, &config.transport),
        TransportKind::Rdma => picsou_transport_rdma::open(setup, &config.transport),
    }
}
