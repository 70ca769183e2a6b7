//! Who sends which message to whom: Picsou's schedule and the four baselines' fixed plans.
//!
//! The plan is the only place the strategies differ in their good case; acks, QUACKs, flow
//! control, delivery and internal dissemination are shared, so that comparisons between them
//! measure dissemination alone. The same plan also validates incoming records: a record that
//! the plan does not assign to its sender is dropped and reported, which stops a Byzantine
//! replica from impersonating another's duties (the artifact's receivers accepted anything).

use crate::config::{Membership, Strategy};
use crate::ids::RsmId;
use crate::schedule::{Schedule, ScheduleError};
use crate::wire::RecordKind;

/// The plan of one replica, for both directions of its link.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    strategy: Strategy,
    me: u16,
    n_local: u16,
    n_remote: u16,
    /// Picsou's schedule of the outgoing stream (local → remote).
    out_sched: Option<Schedule>,
    /// Picsou's schedule of the incoming stream (remote → local).
    in_sched: Option<Schedule>,
    /// OTU: the receivers of our outgoing stream (f_r+1 stake of the remote RSM).
    otu_out_set: Vec<u16>,
    /// OTU: whether this replica is one of the receivers of the incoming stream.
    otu_in_member: bool,
}

/// Destinations of a message's first copies from this replica.
#[derive(Clone, Debug)]
pub(crate) enum Dests<'a> {
    None,
    One(u16),
    All(u16),
    Set(&'a [u16]),
}

impl Iterator for Dests<'_> {
    type Item = u16;
    fn next(&mut self) -> Option<u16> {
        match self {
            Self::None => None,
            Self::One(d) => {
                let d = *d;
                *self = Self::None;
                Some(d)
            }
            Self::All(n) => {
                if *n == 0 {
                    return None;
                }
                // Iterate downwards: order does not matter, and this avoids a second field.
                *n -= 1;
                Some(*n)
            }
            Self::Set(s) => {
                let (first, rest) = s.split_first()?;
                *s = rest;
                Some(*first)
            }
        }
    }
}

/// The smallest prefix of replicas (by index) whose stake exceeds f.
fn quorum_prefix(stakes: &[u64], f: u64) -> Vec<u16> {
    let mut sum = 0;
    let mut set = Vec::new();
    for (i, s) in stakes.iter().enumerate() {
        set.push(i as u16);
        sum += s;
        if sum > f {
            break;
        }
    }
    set
}

impl Plan {
    pub(crate) fn new(
        strategy: Strategy,
        membership: &Membership,
        local_rsm: RsmId,
        me: u16,
    ) -> Result<Self, ScheduleError> {
        let local = membership.rsm(local_rsm);
        let remote = membership.rsm(local_rsm.other());
        let (out_sched, in_sched) = if strategy == Strategy::Picsou {
            (
                Some(Schedule::new(&local.stakes(), local.f, &remote.stakes(), remote.f)?),
                Some(Schedule::new(&remote.stakes(), remote.f, &local.stakes(), local.f)?),
            )
        } else {
            (None, None)
        };
        for s in out_sched.iter().chain(&in_sched) {
            if s.max_rotation_len() > usize::from(u16::MAX) + 1 {
                return Err(ScheduleError::RotationTooLong(s.max_rotation_len()));
            }
        }
        let otu_out_set = quorum_prefix(&remote.stakes(), remote.f);
        let otu_in_member = quorum_prefix(&local.stakes(), local.f).contains(&me);
        Ok(Self {
            strategy,
            me,
            n_local: local.n() as u16,
            n_remote: remote.n() as u16,
            out_sched,
            in_sched,
            otu_out_set,
            otu_in_member,
        })
    }

    pub(crate) fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Whether this replica keeps message `seq` of the outgoing stream for a sending duty.
    pub(crate) fn stores(&self, seq: u64) -> bool {
        match self.strategy {
            Strategy::Picsou => self.out_sched.as_ref().is_some_and(|s| s.has_role(seq, self.me)),
            Strategy::Ost => seq % u64::from(self.n_local) == u64::from(self.me),
            Strategy::Ata | Strategy::Otu => true,
            Strategy::Ll => self.me == 0,
        }
    }

    /// For a message of the outgoing stream: whether this replica keeps it, and (Picsou)
    /// the receiver of its first copy if this replica is its first sender — one schedule
    /// lookup instead of two on the hot path.
    pub(crate) fn duty(&self, seq: u64) -> (bool, Option<u16>) {
        match (self.strategy, &self.out_sched) {
            (Strategy::Picsou, Some(s)) => {
                let rot = s.rotation(seq);
                let first = (rot.first_sender() == self.me).then(|| rot.first_receiver());
                (rot.has_role(self.me), first)
            }
            _ => (self.stores(seq), None),
        }
    }

    /// Remote replicas this replica sends the first copies of `seq` to.
    pub(crate) fn first_dests(&self, seq: u64) -> Dests<'_> {
        match self.strategy {
            Strategy::Picsou => match self.out_sched.as_ref().and_then(|s| s.pair(seq, 0)) {
                Some((s, r)) if s == self.me => Dests::One(r),
                _ => Dests::None,
            },
            Strategy::Ost if self.stores(seq) => Dests::One((seq % u64::from(self.n_remote)) as u16),
            Strategy::Ata => Dests::All(self.n_remote),
            Strategy::Ll if self.me == 0 => Dests::One(0),
            Strategy::Otu if self.me == 0 => Dests::Set(&self.otu_out_set),
            _ => Dests::None,
        }
    }

    /// Picsou: the receiver of resend round `round` of `seq` if this replica is its sender.
    /// Rounds past the rotation wrap around it (see [`wrapped_pair`]).
    pub(crate) fn resend_dest(&self, seq: u64, round: usize) -> Option<u16> {
        let (s, r) = wrapped_pair(self.out_sched.as_ref()?, seq, usize::from(resend_number(round)))?;
        (s == self.me).then_some(r)
    }

    /// Picsou: this replica's earliest resend turn `(r, receiver)` of `seq` whose every earlier
    /// pair has a suspected sender or receiver — a resend that is certainly needed, sent at
    /// once instead of after loss detection.
    pub(crate) fn proactive_resend(&self, seq: u64, suspected: impl Fn(u16, u16) -> bool) -> Option<(usize, u16)> {
        let rot = self.out_sched.as_ref()?.rotation(seq);
        let (r, recv) = rot.turns(self.me).find(|&(r, _)| r >= 1)?;
        (0..r).all(|i| rot.pair(i).is_some_and(|(s, q)| suspected(s, q))).then_some((r, recv))
    }

    /// Picsou: pair `r` of `seq`'s rotation.
    pub(crate) fn pair(&self, seq: u64, r: usize) -> Option<(u16, u16)> {
        self.out_sched.as_ref()?.pair(seq, r)
    }

    /// Picsou: the receiver of resend round `round` of `seq` (round 0: the first send).
    pub(crate) fn pair_receiver(&self, seq: u64, round: usize) -> Option<u16> {
        let number = if round == 0 { 0 } else { usize::from(resend_number(round)) };
        wrapped_pair(self.out_sched.as_ref()?, seq, number).map(|(_, q)| q)
    }

    /// Picsou: number of pairs in the rotation of `seq` of the outgoing stream.
    pub(crate) fn rotation_len(&self, seq: u64) -> usize {
        self.out_sched.as_ref().map_or(1, |s| s.rotation_len(seq))
    }

    /// OTU: the sender replica that takes over attempt `attempt` (≥ 1) of a message.
    pub(crate) fn otu_takeover(&self, attempt: u64) -> u16 {
        (attempt % u64::from(self.n_local)) as u16
    }

    /// OTU: the receivers of our outgoing stream.
    pub(crate) fn otu_out_set(&self) -> &[u16] {
        &self.otu_out_set
    }

    /// Whether receivers forward first-hand copies to their RSM peers (all but all-to-all,
    /// where every receiver gets every message directly).
    pub(crate) fn forwards(&self) -> bool {
        self.strategy != Strategy::Ata
    }

    /// Whether remote replica `from` may send this replica record `kind` of `seq`.
    pub(crate) fn allows_incoming(&self, seq: u64, kind: RecordKind, from: u16) -> bool {
        let me = self.me;
        match (self.strategy, kind) {
            (_, RecordKind::Forward | RecordKind::Repair) => false,
            (Strategy::Picsou, RecordKind::First) => {
                self.in_sched.as_ref().and_then(|s| s.pair(seq, 0)) == Some((from, me))
            }
            (Strategy::Picsou, RecordKind::Resend { number }) => {
                self.in_sched.as_ref().and_then(|s| wrapped_pair(s, seq, usize::from(number))) == Some((from, me))
            }
            (Strategy::Ost, RecordKind::First) => {
                seq % u64::from(self.n_remote) == u64::from(from) && seq % u64::from(self.n_local) == u64::from(me)
            }
            (Strategy::Ata, RecordKind::First) => true,
            (Strategy::Ll, RecordKind::First) => from == 0 && me == 0,
            (Strategy::Otu, RecordKind::First) => from == 0 && self.otu_in_member,
            (Strategy::Otu, RecordKind::Resend { number }) => {
                self.otu_in_member && u64::from(number) % u64::from(self.n_remote) == u64::from(from)
            }
            (_, RecordKind::Resend { .. }) => false,
        }
    }
}

/// The resend number on the wire for resend round `round` (≥ 1): the round itself while it
/// fits the wire's `u16`, then counting 1..=65535 again. Both sides map a number to a pair
/// with [`wrapped_pair`], so the number alone tells a receiver who may send it.
pub(crate) fn resend_number(round: usize) -> u16 {
    debug_assert!(round >= 1);
    ((round.saturating_sub(1) % usize::from(u16::MAX)) + 1) as u16
}

/// Pair `number mod len` of `seq`'s rotation of length `len`.
///
/// With reliable links between correct replicas a message needs at most `len − 1` resends
/// (f_s + f_r with unit stakes), so numbers below `len` are the paper's rotation. Real
/// links are not reliable: a transport drops what it cannot deliver to a peer that is down
/// or not yet connected, and such a loss can hit every pair of a rotation (with f = 0 on both
/// sides the rotation is a single pair). Resends therefore go on past the rotation, around
/// it again, only ever among the replicas that keep the message for a sending duty; the
/// sender backs off exponentially per lap (see `detect_losses`).
pub(crate) fn wrapped_pair(sched: &Schedule, seq: u64, number: usize) -> Option<(u16, u16)> {
    let rot = sched.rotation(seq);
    rot.pair(number % rot.len().max(1))
}
