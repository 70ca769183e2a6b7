//! Typed indices of the replicas an endpoint talks to.
//!
//! An endpoint keeps state per replica of the other RSM (the receivers of its stream and the
//! senders of the one it receives), per replica of its own RSM (its peers), and per destination
//! of its frames (either kind). Bare `usize`s for all three made it easy to index one table with
//! another's index; these types make the compiler check it.

use crate::ids::ReplicaId;

/// A replica of the other RSM, by its index there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct RemoteIdx(u16);

/// A replica of this RSM (a peer, or this replica itself), by its index in the RSM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct PeerIdx(u16);

impl RemoteIdx {
    pub(super) const fn new(i: u16) -> Self {
        Self(i)
    }

    /// The index in the other RSM (as the schedule numbers replicas).
    pub(super) const fn index(self) -> u16 {
        self.0
    }

    /// For tables with one entry per replica of the other RSM.
    pub(super) const fn get(self) -> usize {
        self.0 as usize
    }
}

impl PeerIdx {
    pub(super) const fn new(i: u16) -> Self {
        Self(i)
    }

    /// For tables with one entry per replica of this RSM.
    pub(super) const fn get(self) -> usize {
        self.0 as usize
    }
}

/// A destination of frames: a replica of the other RSM or a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Dest {
    /// Cross-RSM frames (records of the outgoing stream, acks of the incoming one).
    Remote(RemoteIdx),
    /// Frames inside this RSM (forwards, repairs, reports of the incoming stream).
    Peer(PeerIdx),
}

/// How destinations map to replicas and to slots of per-destination tables: slots
/// `0..n_remote` are the replicas of the other RSM, then `n_remote..n_remote + n_local` those of
/// this RSM (this replica's own slot unused).
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    local: ReplicaId,
    n_remote: usize,
    n_local: usize,
}

impl Layout {
    pub(super) fn new(local: ReplicaId, n_remote: usize, n_local: usize) -> Self {
        Self { local, n_remote, n_local }
    }

    /// Replicas of the other RSM.
    pub(super) fn n_remote(&self) -> usize {
        self.n_remote
    }

    /// Replicas of this RSM, this one included.
    pub(super) fn n_local(&self) -> usize {
        self.n_local
    }

    /// Destinations (and slots) in all.
    pub(super) fn n_dest(&self) -> usize {
        self.n_remote + self.n_local
    }

    /// This replica, as a peer index.
    pub(super) fn me(&self) -> PeerIdx {
        PeerIdx(self.local.index)
    }

    /// Every replica of this RSM, this one included.
    pub(super) fn peers(&self) -> impl Iterator<Item = PeerIdx> + use<> {
        (0..self.n_local as u16).map(PeerIdx)
    }

    /// The destination of a replica, or `None` for unknown replicas and this one.
    pub(super) fn dest_of(&self, r: ReplicaId) -> Option<Dest> {
        let i = usize::from(r.index);
        if r == self.local || r.rsm.0 > 1 {
            None
        } else if r.rsm != self.local.rsm {
            (i < self.n_remote).then_some(Dest::Remote(RemoteIdx(r.index)))
        } else {
            (i < self.n_local).then_some(Dest::Peer(PeerIdx(r.index)))
        }
    }

    /// The replica behind a destination.
    pub(super) fn replica(&self, d: Dest) -> ReplicaId {
        match d {
            Dest::Remote(j) => ReplicaId { rsm: self.local.rsm.other(), index: j.0 },
            Dest::Peer(p) => ReplicaId { rsm: self.local.rsm, index: p.0 },
        }
    }

    /// The slot of a destination in per-destination tables.
    pub(super) fn slot(&self, d: Dest) -> usize {
        match d {
            Dest::Remote(j) => j.get(),
            Dest::Peer(p) => self.n_remote + p.get(),
        }
    }

    /// The destination in slot `slot < n_dest()`.
    pub(super) fn dest(&self, slot: usize) -> Dest {
        match slot.checked_sub(self.n_remote) {
            None => Dest::Remote(RemoteIdx(slot as u16)),
            Some(p) => Dest::Peer(PeerIdx(p as u16)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_replicas_round_trip() {
        let local = ReplicaId::new(1, 2);
        let l = Layout::new(local, 3, 4);
        assert_eq!(l.n_dest(), 7);
        for slot in 0..l.n_dest() {
            let d = l.dest(slot);
            assert_eq!(l.slot(d), slot);
            let r = l.replica(d);
            assert_eq!(l.dest_of(r), (r != local).then_some(d));
        }
        assert_eq!(l.dest(0), Dest::Remote(RemoteIdx::new(0)));
        assert_eq!(l.dest(3), Dest::Peer(PeerIdx::new(0)));
        assert_eq!(l.dest_of(ReplicaId::new(0, 3)), None, "beyond the other RSM");
        assert_eq!(l.dest_of(ReplicaId::new(1, 4)), None, "beyond this RSM");
        assert_eq!(l.dest_of(ReplicaId::new(2, 0)), None, "no third RSM");
        assert_eq!(l.me(), PeerIdx::new(2));
    }
}
