//! Opens the transport a deployment file selects: `kind` is the one line that switches it.

use picsou_core::ReplicaId;
use picsou_runtime::deployment::DeploymentConfig;
use picsou_runtime::transport::mem::MemNetwork;
use picsou_runtime::transport::tcp::TcpTransport;
use picsou_runtime::transport::{Transport, TransportError, TransportKind};

/// The transport of replica `local`. `mem` needs the process-wide network that every replica
/// of an in-process deployment shares.
pub(crate) fn open(
    config: &DeploymentConfig,
    local: ReplicaId,
    mem: Option<&MemNetwork>,
) -> Result<Box<dyn Transport>, TransportError> {
    let setup = config.transport_setup(local);
    match config.transport.kind {
        TransportKind::Mem => {
            let net = mem.ok_or_else(|| {
                TransportError::Config(
                    "kind = \"mem\" connects replicas inside one process only: run the deployment with `picsou local`"
                        .into(),
                )
            })?;
            let peers: Vec<ReplicaId> = setup.peers.iter().map(|(r, _)| *r).collect();
            Ok(Box::new(net.transport(local, &peers)?))
        }
        TransportKind::Tcp => Ok(Box::new(TcpTransport::new(setup, &config.transport.tcp)?)),
        TransportKind::Uring => picsou_transport_uring::open(setup, &config.transport),
        TransportKind::Rdma => Err(TransportError::Unavailable {
            kind: "rdma",
            reason: "the RDMA transport is not part of this build yet; use kind = \"tcp\" or \"uring\"".into(),
        }),
    }
}
