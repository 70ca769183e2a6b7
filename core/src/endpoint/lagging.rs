//! Detecting that this replica fell further behind than its peers retain (library-managed
//! dissemination), so that repairs can no longer bring it back: it needs a state transfer.
//!
//! A receiver keeps the last `retention` delivered messages to repair lagging or restarted
//! peers (see `incoming`). A replica whose cumulative ack is more than `retention` below a
//! peer's can no longer be repaired by that peer: the peer trimmed what it lacks. Such a
//! replica would wait silently forever, so the engine tells the application once, with
//! [`Event::StateTransferNeeded`], and the application installs a snapshot of its RSM's state
//! (a peer's checkpoint) and resumes the endpoint after it ([`Endpoint::resuming`]).
//!
//! # Why this cannot be faked by f faulty peers
//!
//! The signal fires only once peers holding more than `f` stake of this RSM report a
//! cumulative ack beyond `next + retention`, so at least one correct peer is that far ahead
//! and really trimmed what this replica lacks. A Byzantine peer can lie about its ack, but f
//! stake of liars alone never reaches the threshold. (A correct peer also trims by bytes,
//! `retention_bytes`, which with large messages can trim earlier than the count says; the
//! signal is then late, never early.)

use super::Endpoint;
use super::event::Event;
use crate::config::Dissemination;

/// What the lag check needs: this RSM's stakes and f, and whether it already fired.
#[derive(Debug)]
pub(super) struct Lagging {
    stakes: Vec<u64>,
    f: u64,
    signalled: bool,
}

impl Lagging {
    pub(super) fn new(stakes: Vec<u64>, f: u64) -> Self {
        Self { stakes, f, signalled: false }
    }
}

impl Endpoint {
    /// After a peer's report: signals [`Event::StateTransferNeeded`] (once) if peers with more
    /// than `f` stake are beyond what they retain for this replica.
    pub(super) fn check_lagging(&mut self) {
        if self.lagging.signalled || self.params.dissemination != Dissemination::Library {
            return;
        }
        let next = self.inc.window.next();
        let beyond = next.saturating_add(self.params.retention);
        let me = self.layout.me();
        let mut stake = 0u64;
        let mut lowest = u64::MAX;
        for p in self.layout.peers() {
            if p == me {
                continue;
            }
            let Some(report) = self.peers[p].report.as_ref() else { continue };
            if report.next > beyond {
                stake += self.lagging.stakes.get(p.get()).copied().unwrap_or(0);
                lowest = lowest.min(report.next);
            }
        }
        if stake > self.lagging.f {
            self.lagging.signalled = true;
            self.events.push_back(Event::StateTransferNeeded { next, peers_at: lowest });
        }
    }
}
