//! The C3B checker: watches every event of every replica and records each way the run breaks
//! Cross-Cluster Consistent Broadcast or Picsou's own promises.
//!
//! It is separate from the runner so it can be tested with synthetic event streams (a checker
//! that never fires proves nothing), and so the properties are written down in one place:
//!
//! - **Integrity and order.** An honest receiver delivers `0, 1, 2, …`, each exactly once, each
//!   with exactly the payload RSM 0 transmitted; nothing RSM 0 did not transmit is delivered.
//! - **Eventual delivery.** By the end of the run every correct receiver delivered everything.
//! - **QUACK soundness.** An honest sender's `Quacked { up_to }` never exceeds what some correct
//!   receiver actually holds (the largest `received()` of a correct receiver at that moment), and
//!   never goes backwards.
//! - **Resend bound** (Picsou). Honest senders together resend a message at most
//!   `rotation_len(seq) − 1` times (f_s + f_r with unit stakes) plus one reassignment (a message
//!   whose first pair has a replica known to be down or faulty), each resend with a number that
//!   names a pair of which the resender is the sender.
//! - **No false accusations.** An honest replica reports `PeerMisbehaved` only about a Byzantine
//!   replica; accusations of Byzantine replicas are counted as detections.
//!
//! "Correct" means neither crashes nor is Byzantine; "honest" adds replicas that crash (they
//! follow the protocol until they stop), so their events are checked too, but they are not
//! required to deliver everything.

use picsou_core::endpoint::{Event, decode_resend_number};
use picsou_core::schedule::Schedule;

use super::payload::PayloadSpec;
use super::scenario::ReplicaPlan;

/// How many violation messages are kept (the count is always exact).
pub const MAX_VIOLATIONS_KEPT: usize = 50;

/// The most resends each message may get.
#[derive(Clone, Debug)]
pub enum ResendBound {
    /// No bound (baselines).
    Unchecked,
    /// At most this many resends of every message (tests).
    Fixed(usize),
    /// Picsou: `schedule.rotation_len(seq) − 1`.
    Schedule(Schedule),
}

/// Formats virtual seconds for messages: integral values without decimals.
fn secs(ns: u64) -> String {
    if ns.is_multiple_of(1_000_000_000) { format!("{}", ns / 1_000_000_000) } else { format!("{:.3}", ns as f64 / 1e9) }
}

/// Watches a run; see the module documentation for what it checks.
#[derive(Debug)]
pub struct Checker {
    /// Every replica, in the simulator's global order (senders first).
    plans: Vec<ReplicaPlan>,
    messages: u64,
    payload: PayloadSpec,
    bound: ResendBound,
    /// Per replica: the next seq it must deliver (receivers).
    next_deliver: Vec<u64>,
    /// Per replica: its last QUACK (senders).
    last_quack: Vec<u64>,
    /// Largest `received()` of any correct receiver so far.
    max_correct_received: u64,
    /// Per seq: resends by honest senders.
    resends: Vec<u16>,
    total_resends: u64,
    max_resends: u16,
    misbehaviors_detected: u64,
    violations: Vec<String>,
    violation_count: u64,
}

impl Checker {
    /// A checker for a run where RSM 0 transmits `messages` messages shaped by `payload`, among
    /// the replicas `plans` (global order: every replica of RSM 0, then every replica of RSM 1).
    pub fn new(plans: Vec<ReplicaPlan>, messages: u64, payload: PayloadSpec, bound: ResendBound) -> Self {
        let n = plans.len();
        Self {
            plans,
            messages,
            payload,
            bound,
            next_deliver: vec![0; n],
            last_quack: vec![0; n],
            max_correct_received: 0,
            resends: vec![0; messages as usize],
            total_resends: 0,
            max_resends: 0,
            misbehaviors_detected: 0,
            violations: Vec::new(),
            violation_count: 0,
        }
    }

    fn violation(&mut self, message: String) {
        self.violation_count += 1;
        if self.violations.len() < MAX_VIOLATIONS_KEPT {
            self.violations.push(message);
        }
    }

    fn global(&self, id: picsou_core::ids::ReplicaId) -> Option<usize> {
        self.plans.iter().position(|p| p.id == id)
    }

    /// Records that correct-or-not receiver `replica` now reports cumulative ack `received`
    /// (call after each input to a receiver; only correct receivers count).
    pub fn observe_received(&mut self, replica: usize, received: u64) {
        let plan = self.plans[replica];
        if plan.id.rsm.0 != 1 || !plan.is_correct() {
            return;
        }
        if received > self.messages {
            self.violation(format!(
                "{} reports holding {received} messages but RSM 0 transmitted only {}",
                plan.id, self.messages
            ));
        }
        self.max_correct_received = self.max_correct_received.max(received);
    }

    /// Checks one event emitted by `replica` (global index). Returns
    /// the seq if the event is a valid, in-order delivery at a correct receiver (the runner uses
    /// it for completion times).
    pub fn on_event(&mut self, replica: usize, event: &Event) -> Option<u64> {
        let plan = self.plans[replica];
        if !plan.is_honest() {
            // A Byzantine replica's own events promise nothing.
            return None;
        }
        let me = plan.id;
        match event {
            Event::Deliver { seq, payload } => {
                let seq = *seq;
                if me.rsm.0 != 1 {
                    self.violation(format!("{me} delivered seq {seq}, but RSM 1 sends nothing"));
                    return None;
                }
                let expected = self.next_deliver[replica];
                if seq >= self.messages {
                    self.violation(format!(
                        "{me} delivered seq {seq}, which RSM 0 never transmitted (it sent {})",
                        self.messages
                    ));
                    return None;
                }
                if seq != expected {
                    let what = if seq < expected { "again (duplicate)" } else { "out of order" };
                    self.violation(format!("{me} delivered seq {seq} {what}; expected seq {expected}"));
                    self.next_deliver[replica] = expected.max(seq + 1);
                    return None;
                }
                self.next_deliver[replica] = seq + 1;
                if !self.payload.matches(seq, payload) {
                    self.violation(format!(
                        "{me} delivered seq {seq} with a payload ({} bytes) that RSM 0 did not transmit",
                        payload.len()
                    ));
                    return None;
                }
                plan.is_correct().then_some(seq)
            }
            Event::Received { seq, .. } => {
                self.violation(format!("{me} emitted Received for seq {seq}, but dissemination is library-managed"));
                None
            }
            Event::Quacked { up_to } => {
                let up_to = *up_to;
                if me.rsm.0 != 0 {
                    if up_to > 0 {
                        self.violation(format!("{me} QUACKed up to {up_to}, but RSM 1 sends nothing"));
                    }
                    return None;
                }
                if up_to < self.last_quack[replica] {
                    self.violation(format!("{me}'s QUACK went backwards from {} to {up_to}", self.last_quack[replica]));
                }
                self.last_quack[replica] = up_to;
                if up_to > self.max_correct_received {
                    self.violation(format!(
                        "{me} QUACKed up to {up_to} but correct receivers hold at most {} (QUACK ran ahead)",
                        self.max_correct_received
                    ));
                }
                None
            }
            Event::Resent { seq, number } => {
                let (seq, number) = (*seq, *number);
                if me.rsm.0 != 0 || seq >= self.messages {
                    self.violation(format!("{me} resent seq {seq}, which RSM 0 never transmitted"));
                    return None;
                }
                self.total_resends += 1;
                let count = &mut self.resends[seq as usize];
                *count = count.saturating_add(1);
                let count = *count;
                self.max_resends = self.max_resends.max(count);
                let mut violations = Vec::new();
                match &self.bound {
                    ResendBound::Unchecked => {}
                    ResendBound::Fixed(limit) => {
                        if number == 0 || usize::from(number) > *limit {
                            violations.push(format!(
                                "{me} sent resend number {number} of seq {seq}, outside its rotation (resends 1..={limit})"
                            ));
                        }
                        if usize::from(count) == limit + 1 {
                            violations.push(format!(
                                "seq {seq} was resent {count} times; the rotation allows at most {limit}"
                            ));
                        }
                    }
                    ResendBound::Schedule(sched) => {
                        // A resend number names a position of the seq's cycle of pairs; only
                        // that pair's sender may send it.
                        let rot = sched.rotation(seq);
                        let p = decode_resend_number(number, rot.cycle_pairs());
                        if number == 0 || rot.cycle_pair(p).0 != me.index {
                            violations.push(format!(
                                "{me} sent resend number {number} of seq {seq}, which names a pair it is not the sender of"
                            ));
                        }
                        // Loss detection walks the rotation (at most `limit` resends); a
                        // message whose first pair has a replica known to be down or faulty is
                        // also reassigned once (see the engine's sender).
                        let limit = rot.len().saturating_sub(1);
                        if usize::from(count) == limit + 2 {
                            violations.push(format!(
                                "seq {seq} was resent {count} times; the rotation allows at most {limit} and one reassignment"
                            ));
                        }
                    }
                }
                for v in violations {
                    self.violation(v);
                }
                None
            }
            Event::StateTransferNeeded { next, peers_at } => {
                // The simulator has no state transfer: a correct replica that needs one will
                // never complete, so say why.
                self.violation(format!(
                    "{me} fell beyond its peers' retention (it lacks seq {next}, peers are at {peers_at}): it needs a state transfer"
                ));
                None
            }
            Event::PeerMisbehaved { peer, reason } => {
                match self.global(*peer) {
                    Some(p) if !self.plans[p].is_honest() => self.misbehaviors_detected += 1,
                    Some(_) => self.violation(format!("{me} accused correct peer {peer}: {reason}")),
                    None => self.violation(format!("{me} accused unknown peer {peer}: {reason}")),
                }
                None
            }
        }
    }

    /// Records a problem the runner found (e.g. the engine refusing a message it had capacity
    /// for).
    pub fn report_violation(&mut self, message: String) {
        self.violation(message);
    }

    /// Ends the run at `end_ns`: every correct receiver must have delivered everything.
    pub fn finish(&mut self, end_ns: u64) {
        for i in 0..self.plans.len() {
            let plan = self.plans[i];
            let got = self.next_deliver[i];
            if plan.id.rsm.0 == 1 && plan.is_correct() && got < self.messages {
                self.violation(format!("{} delivered {got} of {} by {} s", plan.id, self.messages, secs(end_ns)));
            }
        }
    }

    /// Fewest messages delivered by a correct receiver.
    pub fn delivered_min(&self) -> u64 {
        self.plans
            .iter()
            .zip(&self.next_deliver)
            .filter(|(p, _)| p.id.rsm.0 == 1 && p.is_correct())
            .map(|(_, &n)| n)
            .min()
            .unwrap_or(0)
    }

    /// True while no violation was recorded.
    pub fn ok(&self) -> bool {
        self.violation_count == 0
    }

    /// Violation messages (the first [`MAX_VIOLATIONS_KEPT`], then a count of the rest).
    pub fn violations(&self) -> Vec<String> {
        let mut v = self.violations.clone();
        let more = self.violation_count - self.violations.len() as u64;
        if more > 0 {
            v.push(format!("… and {more} more violations"));
        }
        v
    }

    /// Resends by honest senders, all messages together.
    pub fn total_resends(&self) -> u64 {
        self.total_resends
    }

    /// Most resends of any one message by honest senders.
    pub fn max_resends(&self) -> u16 {
        self.max_resends
    }

    /// Accusations by honest replicas of Byzantine replicas.
    pub fn misbehaviors_detected(&self) -> u64 {
        self.misbehaviors_detected
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use picsou_core::adversary::Behavior;
    use picsou_core::endpoint::Misbehavior;
    use picsou_core::ids::ReplicaId;

    const S0: usize = 0;
    const S1: usize = 1;
    const S2: usize = 2;
    const R0: usize = 3;
    const R1: usize = 4;
    const R2: usize = 5;

    /// s0 s1 s2 | r0 r1 r2; s2 Byzantine, r2 crashes at 1 ms; 5 messages of 16 B.
    fn checker(bound: ResendBound) -> Checker {
        let mut plans = Vec::new();
        for rsm in 0..2u8 {
            for i in 0..3u16 {
                plans.push(ReplicaPlan { id: ReplicaId::new(rsm, i), stake: 1, crash_at: None, behavior: None });
            }
        }
        plans[S2].behavior = Some(Behavior::Forge.into());
        plans[R2].crash_at = Some(1_000_000);
        Checker::new(plans, 5, PayloadSpec::new(16), bound)
    }

    fn deliver(seq: u64) -> Event {
        Event::Deliver { seq, payload: PayloadSpec::new(16).make(seq) }
    }

    fn deliver_all(c: &mut Checker, r: usize) {
        for s in 0..5 {
            c.on_event(r, &deliver(s));
        }
    }

    fn only_violation(c: &Checker, needle: &str) {
        let v = c.violations();
        assert!(!c.ok());
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains(needle), "{v:?} should mention {needle:?}");
    }

    #[test]
    fn clean_run_passes() {
        let mut c = checker(ResendBound::Fixed(2));
        assert_eq!(c.on_event(R0, &deliver(0)), Some(0));
        deliver_all(&mut c, R1);
        for s in 1..5 {
            assert_eq!(c.on_event(R0, &deliver(s)), Some(s));
        }
        // The crash-faulty r2 delivers a prefix; that is fine but not reported as completion.
        assert_eq!(c.on_event(R2, &deliver(0)), None);
        c.observe_received(R0, 5);
        c.on_event(S0, &Event::Quacked { up_to: 5 });
        c.on_event(S1, &Event::Resent { seq: 3, number: 1 });
        c.on_event(S0, &Event::Resent { seq: 3, number: 2 });
        c.finish(2_000_000_000);
        assert!(c.ok(), "{:?}", c.violations());
        assert_eq!(c.delivered_min(), 5);
        assert_eq!(c.total_resends(), 2);
        assert_eq!(c.max_resends(), 2);
    }

    #[test]
    fn duplicate_delivery() {
        let mut c = checker(ResendBound::Unchecked);
        c.on_event(R0, &deliver(0));
        c.on_event(R0, &deliver(0));
        only_violation(&c, "seq 0 again");
    }

    #[test]
    fn gap_in_delivery() {
        let mut c = checker(ResendBound::Unchecked);
        c.on_event(R0, &deliver(0));
        assert_eq!(c.on_event(R0, &deliver(2)), None);
        // Resynchronised: no second report for seq 3.
        c.on_event(R0, &deliver(3));
        only_violation(&c, "seq 2 out of order; expected seq 1");
    }

    #[test]
    fn crash_faulty_receivers_are_still_checked_for_order() {
        let mut c = checker(ResendBound::Unchecked);
        c.on_event(R2, &deliver(1));
        only_violation(&c, "r2 delivered seq 1 out of order");
    }

    #[test]
    fn delivery_of_something_never_transmitted() {
        let mut c = checker(ResendBound::Unchecked);
        c.on_event(R1, &Event::Deliver { seq: 5, payload: PayloadSpec::new(16).make(5) });
        only_violation(&c, "never transmitted");
    }

    #[test]
    fn forged_payload() {
        let mut c = checker(ResendBound::Unchecked);
        let mut p = PayloadSpec::new(16).make(0).to_vec();
        p[12] ^= 0xFF;
        assert_eq!(c.on_event(R0, &Event::Deliver { seq: 0, payload: Bytes::from(p) }), None);
        only_violation(&c, "payload");
        // A payload for the wrong seq is a forgery too.
        let mut c = checker(ResendBound::Unchecked);
        c.on_event(R0, &Event::Deliver { seq: 0, payload: PayloadSpec::new(16).make(1) });
        only_violation(&c, "payload");
    }

    #[test]
    fn incomplete_delivery_at_the_end() {
        let mut c = checker(ResendBound::Unchecked);
        deliver_all(&mut c, R0);
        c.on_event(R1, &deliver(0));
        c.on_event(R1, &deliver(1));
        c.finish(300_000_000_000);
        only_violation(&c, "r1 delivered 2 of 5 by 300 s");
        assert_eq!(c.delivered_min(), 2);
    }

    #[test]
    fn quack_ahead_of_correct_receivers() {
        let mut c = checker(ResendBound::Unchecked);
        c.observe_received(R0, 3);
        // A Byzantine or crashing receiver's claims do not count.
        c.observe_received(R2, 5);
        c.on_event(S0, &Event::Quacked { up_to: 3 });
        assert!(c.ok());
        c.on_event(S1, &Event::Quacked { up_to: 4 });
        only_violation(&c, "QUACK ran ahead");
    }

    #[test]
    fn quack_going_backwards() {
        let mut c = checker(ResendBound::Unchecked);
        c.observe_received(R0, 3);
        c.on_event(S0, &Event::Quacked { up_to: 3 });
        c.on_event(S0, &Event::Quacked { up_to: 2 });
        only_violation(&c, "went backwards");
    }

    #[test]
    fn receiver_holding_more_than_transmitted() {
        let mut c = checker(ResendBound::Unchecked);
        c.observe_received(R1, 6);
        only_violation(&c, "transmitted only 5");
    }

    #[test]
    fn too_many_resends() {
        let mut c = checker(ResendBound::Fixed(2));
        c.on_event(S0, &Event::Resent { seq: 1, number: 1 });
        c.on_event(S1, &Event::Resent { seq: 1, number: 2 });
        assert!(c.ok());
        c.on_event(S0, &Event::Resent { seq: 1, number: 2 });
        c.on_event(S0, &Event::Resent { seq: 1, number: 1 });
        only_violation(&c, "seq 1 was resent 3 times; the rotation allows at most 2");
        assert_eq!(c.max_resends(), 4);
        assert_eq!(c.total_resends(), 4);
    }

    #[test]
    fn resend_number_outside_rotation() {
        let mut c = checker(ResendBound::Fixed(2));
        c.on_event(S0, &Event::Resent { seq: 0, number: 3 });
        only_violation(&c, "outside its rotation");
    }

    #[test]
    fn byzantine_events_are_ignored() {
        let mut c = checker(ResendBound::Fixed(0));
        c.on_event(S2, &Event::Resent { seq: 0, number: 9 });
        c.on_event(S2, &Event::Quacked { up_to: 1_000 });
        assert!(c.ok());
        assert_eq!(c.total_resends(), 0);
        // Unbounded (baselines): counted, never a violation.
        let mut c = checker(ResendBound::Unchecked);
        for _ in 0..10 {
            c.on_event(S0, &Event::Resent { seq: 2, number: 7 });
        }
        assert!(c.ok());
        assert_eq!((c.total_resends(), c.max_resends()), (10, 10));
    }

    #[test]
    fn accusations() {
        let mut c = checker(ResendBound::Unchecked);
        let reason = Misbehavior::WrongFrameKind;
        c.on_event(R0, &Event::PeerMisbehaved { peer: ReplicaId::new(0, 2), reason: reason.clone() });
        assert!(c.ok());
        assert_eq!(c.misbehaviors_detected(), 1);
        c.on_event(R0, &Event::PeerMisbehaved { peer: ReplicaId::new(0, 1), reason });
        only_violation(&c, "r0 accused correct peer s1");
    }

    #[test]
    fn wrong_side_events() {
        let mut c = checker(ResendBound::Unchecked);
        c.on_event(S0, &deliver(0));
        only_violation(&c, "RSM 1 sends nothing");
        let mut c = checker(ResendBound::Unchecked);
        c.on_event(R0, &Event::Quacked { up_to: 1 });
        only_violation(&c, "RSM 1 sends nothing");
        let mut c = checker(ResendBound::Unchecked);
        c.on_event(R0, &Event::Received { seq: 0, payload: Bytes::new(), proof: Bytes::new() });
        only_violation(&c, "library-managed");
    }

    #[test]
    fn violations_are_capped_but_counted() {
        let mut c = checker(ResendBound::Unchecked);
        for _ in 0..(MAX_VIOLATIONS_KEPT + 7) {
            c.on_event(R0, &Event::Quacked { up_to: 1 });
        }
        let v = c.violations();
        assert_eq!(v.len(), MAX_VIOLATIONS_KEPT + 1);
        assert!(v.last().unwrap().contains("7 more"));
    }
}
