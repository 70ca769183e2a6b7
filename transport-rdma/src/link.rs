//! What both sides of a peer's RDMA link share (the [`outgoing`](crate::outgoing) side we write
//! on, the [`incoming`](crate::incoming) side it writes on) and the transport drives: the
//! settings, the per-call context, work request ids, queue depths, and reposting receives.
//! Kept below the transport so that the sides and the device do not depend on the top layer.

use std::time::{Duration, Instant};

use mio::Registry;
use picsou_core::ReplicaId;
use picsou_runtime::transport::{Report, TcpOptions};

use crate::ring::Geometry;
use crate::verbs::{QueuePair, VerbsError};

/// Work requests a queue pair may have outstanding (posted, completion not yet seen).
pub(crate) const SQ_DEPTH: u32 = 128;
/// Receives kept posted per queue pair when writes carry immediates.
pub(crate) const RECV_DEPTH: u32 = 128;
/// Ring bytes read from one peer per poll before the others get their turn.
pub(crate) const READ_BUDGET: u64 = 1 << 20;

/// Work request kinds (the top two bits of a work request id).
pub(crate) const KIND_DATA: u64 = 0;
pub(crate) const KIND_CREDIT: u64 = 1;
pub(crate) const KIND_RECV_OUT: u64 = 2;
pub(crate) const KIND_RECV_IN: u64 = 3;
/// Peers a work request id can name (14 bits).
pub(crate) const MAX_PEERS: usize = 1 << 14;

/// A work request id: kind (2 bits), peer (14), connection generation (16), counter (32).
pub(crate) fn wr_id(kind: u64, peer: usize, epoch: u16, counter: u32) -> u64 {
    (kind << 62) | ((peer as u64 & 0x3fff) << 48) | (u64::from(epoch) << 32) | u64::from(counter)
}

/// The parts of a work request id.
pub(crate) fn split_wr_id(id: u64) -> (u64, usize, u16, u32) {
    (id >> 62, ((id >> 48) & 0x3fff) as usize, (id >> 32) as u16, id as u32)
}

/// Settings every link needs.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) local: ReplicaId,
    pub(crate) session: picsou_runtime::transport::handshake::SessionContext,
    pub(crate) geo: Geometry,
    pub(crate) event: bool,
    pub(crate) max_frame: usize,
    pub(crate) max_queued: usize,
    pub(crate) tcp: TcpOptions,
    pub(crate) spin: Duration,
}

/// What the links share while handling one call.
pub(crate) struct Ctx<'a> {
    pub(crate) registry: &'a Registry,
    pub(crate) report: Report<'a>,
    pub(crate) cfg: &'a Config,
    pub(crate) now: Instant,
}

/// Posts the `*owed` receives one by one; a full receive queue (ENOMEM) leaves the rest owed
/// for the next round. True if it posted any.
pub(crate) fn repost<Q: QueuePair>(qp: &mut Q, wr_id: u64, owed: &mut u32) -> Result<bool, VerbsError> {
    let mut did = false;
    while *owed > 0 {
        match qp.post_recvs(wr_id, 1) {
            Ok(()) => {
                *owed -= 1;
                did = true;
            }
            Err(e) if e.errno == Some(libc::ENOMEM) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(did)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_request_ids_round_trip() {
        for (kind, peer, epoch, counter) in [(0, 0, 0, 0), (3, 16383, 65535, u32::MAX), (1, 5, 7, 123_456)] {
            assert_eq!(split_wr_id(wr_id(kind, peer, epoch, counter)), (kind, peer, epoch, counter));
        }
    }
}
