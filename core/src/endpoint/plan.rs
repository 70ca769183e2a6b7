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

    /// Picsou: pair `r` of `seq`'s rotation.
    pub(crate) fn pair(&self, seq: u64, r: usize) -> Option<(u16, u16)> {
        self.out_sched.as_ref()?.pair(seq, r)
    }

    /// Picsou: the cycle position and the pair of loss-detection round `round` (≥ 1) of `seq`:
    /// the rotation's pairs in order, then around the rotation again, lap after lap (see
    /// [`encode_number`] for why rounds can pass the rotation).
    pub(crate) fn round_pair(&self, seq: u64, round: usize) -> Option<(usize, u16, u16)> {
        let rot = self.out_sched.as_ref()?.rotation(seq);
        let p = round % rot.len().max(1);
        let (s, r) = rot.cycle_pair(p);
        Some((p, s, r))
    }

    /// Picsou: the first round after `round` whose pair `trusted` accepts, looking one lap
    /// ahead, else `round + 1`. The rotation has a correct pair; skipping pairs with a replica
    /// known to be down or faulty saves one detection delay per skipped pair.
    pub(crate) fn next_trusted_round(&self, seq: u64, round: usize, trusted: impl Fn(u16, u16) -> bool) -> usize {
        let Some(sched) = self.out_sched.as_ref() else { return round + 1 };
        let rot = sched.rotation(seq);
        let k = rot.len().max(1);
        (round + 1..=round + k)
            .find(|&r| {
                let (s, q) = rot.cycle_pair(r % k);
                trusted(s, q)
            })
            .unwrap_or(round + 1)
    }

    /// Picsou: where a message whose first pair has a replica known to be down or faulty goes
    /// instead, as (cycle position, sender, receiver): pair `⌊h·|pairs|⌋` (`h` a fraction of
    /// 2^64, the same on every replica) of the pairs of a trusted sender and a trusted
    /// receiver, in order. Any pair, not only the rotation's, so that the failed pairs' load
    /// spreads over every correct pair instead of doubling the next pair's of each rotation.
    pub(crate) fn reassign(&self, seq: u64, h: u64, senders: &[u16], receivers: &[u16]) -> Option<(usize, u16, u16)> {
        if senders.is_empty() || receivers.is_empty() {
            return None;
        }
        let (ns, nr) = (senders.len() as u128, receivers.len() as u128);
        let idx = (u128::from(h) * ns * nr) >> 64;
        let (s, r) = (senders[(idx / nr) as usize], receivers[(idx % nr) as usize]);
        let t = self.out_sched.as_ref()?.rotation(seq).cycle_position(s, r)?;
        (t > 0 && self.wire_number(t).is_some()).then_some((t, s, r))
    }

    /// Picsou: the resend number on the wire for cycle position `p` of the outgoing stream;
    /// `None` if it does not fit.
    pub(crate) fn wire_number(&self, p: usize) -> Option<u16> {
        encode_number(p, usize::from(self.n_local) * usize::from(self.n_remote))
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
            (Strategy::Picsou, RecordKind::Resend { number }) => self.in_sched.as_ref().is_some_and(|s| {
                let rot = s.rotation(seq);
                rot.cycle_pair(decode_number(number, rot.cycle_pairs())) == (from, me)
            }),
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

/// The resend number on the wire for position `p` of a seq's whole cycle of pairs (its
/// rotation continued until every (sender, receiver) pair appeared once: `cycle` pairs): `p`
/// itself, and position 0 as `cycle`. `None` where that does not fit the wire's `u16`.
///
/// Numbers name pairs rather than attempts, so a receiver checks a resend by its number alone:
/// resend `m` of `seq` may only come from the sender of pair `m mod cycle`, to its receiver.
/// Loss detection walks the rotation's positions; with reliable links between correct
/// replicas a message needs at most `len − 1` of them (f_s + f_r with unit stakes). Real links
/// are not reliable — a transport drops what it cannot deliver to a peer that is down or not
/// yet connected, which can hit every pair of a rotation (with f = 0 on both sides the
/// rotation is one pair) — so rounds go around the rotation again (position 0, the first
/// pair, included), backing off per lap (see `detect_losses`). A message whose first pair has
/// a replica known to be down or faulty is reassigned to any position (`Plan::reassign`).
pub(crate) fn encode_number(p: usize, cycle: usize) -> Option<u16> {
    let n = if p == 0 { cycle } else { p };
    u16::try_from(n).ok().filter(|&n| n > 0)
}

/// The cycle position a resend number names (see [`encode_number`]).
pub fn decode_number(number: u16, cycle: usize) -> usize {
    let n = usize::from(number);
    if cycle <= usize::from(u16::MAX) { n % cycle.max(1) } else { n }
}
