//! The life cycle of an outgoing link, shared by the TCP, io_uring and RDMA transports.
//!
//! ```text
//!          dial               connected: PeerUp
//!   Down ────────► Dialing ─────────────────────► Up
//!    ▲                │ refused, timed out          │ closed, reset, write error
//!    └────────────────┴─────────────────────────────┘ (redial after a backoff)
//! ```
//!
//! The rules, and why:
//! - Frames queue while dialling (the first dial of a starting replica should not lose the
//!   first frames) and while up; they are dropped, and counted, while down, like frames to a
//!   crashed replica: the protocol recovers lost frames, and queueing for a dead peer would
//!   only grow memory.
//! - `send` says [`SendStatus::Full`] once more than `max_queued` bytes wait; the link reports
//!   [`TransportEvent::Writable`] when they drain to half, or when it goes down (its queue is
//!   dropped), so the node never waits for a peer that cannot drain.
//! - `PeerDown` is reported once per loss of an established link and once for the first failed
//!   dial, not once per failed redial, so a dead peer does not flood the node with events.
//! - The redial backoff starts again from its minimum only after a link that lasted
//!   [`STABLE_AFTER`]: resetting on every connect would redial at the minimum delay forever a
//!   peer that accepts and then closes at once (it rejects our hello: a key mismatch).
//!
//! What a connection is belongs to the transport: `D` while dialling (a socket, or a socket and
//! an RDMA handshake), `U` while up; [`Link::down`] hands it back to be closed. The io_uring
//! transport decides `Full` and `Writable` on the node thread from byte counters instead (its
//! queue lives on the ring thread), so it uses the link for everything else.

use std::time::{Duration, Instant};

use picsou_core::ReplicaId;
use picsou_core::wire::EncodedFrame;

use super::backoff::Backoff;
use super::outqueue::{OutQueue, Written};
use super::{LinkError, Report, SendStatus, TransportEvent, TransportStats};

/// Shortest redial delay, whatever the options say: a zero delay would redial in a tight loop
/// when dials fail synchronously.
pub const MIN_BACKOFF: Duration = Duration::from_millis(1);
/// A link that lasted this long was a success: the backoff starts again from its minimum.
pub const STABLE_AFTER: Duration = Duration::from_secs(1);

/// The frames waiting for one link.
pub trait LinkQueue {
    /// Appends a frame (never empty).
    fn push(&mut self, frame: EncodedFrame);
    /// Frame bytes waiting (what decides `Full`).
    fn bytes(&self) -> usize;
    /// Drops every frame; returns the frames (a partially written one included) and bytes
    /// dropped.
    fn drop_all(&mut self) -> Written;
}

impl LinkQueue for OutQueue {
    fn push(&mut self, frame: EncodedFrame) {
        Self::push(self, frame);
    }

    fn bytes(&self) -> usize {
        Self::bytes(self)
    }

    fn drop_all(&mut self) -> Written {
        self.clear()
    }
}

/// Where a link stands.
#[derive(Debug)]
pub enum State<D, U> {
    /// Not connected; dial again then.
    Down {
        /// Next dial.
        retry_at: Instant,
    },
    /// A dial is in progress.
    Dialing {
        /// The transport's connection in the making.
        conn: D,
        /// Give up then (`None`: the transport enforces its own timeout).
        deadline: Option<Instant>,
    },
    /// Connected.
    Up {
        /// The transport's connection.
        conn: U,
        /// When it came up.
        since: Instant,
    },
}

/// The connection [`Link::down`] took away, for the transport to close.
#[derive(Debug)]
pub enum Released<D, U> {
    /// A dial in progress.
    Dialing(D),
    /// An established connection.
    Up(U),
}

/// A timer of the link that is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Down and due for a redial.
    Dial,
    /// The dial took too long.
    DialTimedOut,
}

/// One outgoing link: its state, its queue and the bookkeeping of the rules above.
#[derive(Debug)]
pub struct Link<D, U, Q> {
    peer: ReplicaId,
    state: State<D, U>,
    queue: Q,
    backoff: Backoff,
    /// `send` said `Full` and the node waits for `Writable`.
    full: bool,
    /// `PeerDown` was reported and no `PeerUp` since.
    announced_down: bool,
}

impl<D, U, Q: LinkQueue + Default> Link<D, U, Q> {
    /// A link to `peer`, down and due for its first dial at `now`; redials back off from
    /// `backoff_min` (at least [`MIN_BACKOFF`]) to `backoff_max`.
    pub fn new(peer: ReplicaId, backoff_min: Duration, backoff_max: Duration, now: Instant) -> Self {
        Self {
            peer,
            state: State::Down { retry_at: now },
            queue: Q::default(),
            backoff: Backoff::new(backoff_min.max(MIN_BACKOFF), backoff_max),
            full: false,
            announced_down: false,
        }
    }
}

impl<D, U, Q: LinkQueue> Link<D, U, Q> {
    /// The peer.
    pub fn peer(&self) -> ReplicaId {
        self.peer
    }

    /// The state.
    pub fn state(&self) -> &State<D, U> {
        &self.state
    }

    /// Down (frames are dropped).
    pub fn is_down(&self) -> bool {
        matches!(self.state, State::Down { .. })
    }

    /// The connection, while up.
    pub fn up(&self) -> Option<&U> {
        match &self.state {
            State::Up { conn, .. } => Some(conn),
            _ => None,
        }
    }

    /// The connection and the queue, while up.
    pub fn up_mut(&mut self) -> Option<(&mut U, &mut Q)> {
        match &mut self.state {
            State::Up { conn, .. } => Some((conn, &mut self.queue)),
            _ => None,
        }
    }

    /// The connection in the making and its deadline, while dialling.
    pub fn dialing_mut(&mut self) -> Option<(&mut D, &mut Option<Instant>)> {
        match &mut self.state {
            State::Dialing { conn, deadline } => Some((conn, deadline)),
            _ => None,
        }
    }

    /// The queue.
    pub fn queue(&self) -> &Q {
        &self.queue
    }

    /// The queue, to write from it.
    pub fn queue_mut(&mut self) -> &mut Q {
        &mut self.queue
    }

    /// Takes a frame for the peer (see the module documentation). Reads no clock: it runs
    /// once per frame.
    #[inline]
    pub fn send(&mut self, frame: EncodedFrame, stats: &mut TransportStats, max_queued: usize) -> SendStatus {
        if matches!(self.state, State::Down { .. }) || frame.is_empty() {
            stats.frames_dropped += 1;
            return SendStatus::Room;
        }
        self.queue.push(frame);
        if self.queue.bytes() > max_queued {
            self.full = true;
            SendStatus::Full
        } else {
            SendStatus::Room
        }
    }

    /// When [`Link::due`] next has something to say.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Down { retry_at } => Some(retry_at),
            State::Dialing { deadline, .. } => deadline,
            State::Up { .. } => None,
        }
    }

    /// The timer that is due at `now`, if any.
    pub fn due(&self, now: Instant) -> Option<Due> {
        match self.state {
            State::Down { retry_at } if retry_at <= now => Some(Due::Dial),
            State::Dialing { deadline: Some(d), .. } if d <= now => Some(Due::DialTimedOut),
            _ => None,
        }
    }

    /// The peer proved it is alive (it dialled us and its hello verified): a link that is down
    /// redials at once, its backoff reset. A replica that restarts would otherwise wait for the
    /// backoff (up to `backoff_max`) before it hears anything from us, although it is talking
    /// to us already. A peer that closes our dials at once still backs off: it has to dial us
    /// again (a new connection) to cut the wait each time.
    pub fn peer_alive(&mut self, now: Instant) {
        if let State::Down { retry_at } = &mut self.state
            && *retry_at > now
        {
            *retry_at = now;
            self.backoff.reset();
        }
    }

    /// A dial started (frames queue from now on); it fails at `deadline` unless connected.
    pub fn dialing(&mut self, conn: D, deadline: Option<Instant>) {
        self.state = State::Dialing { conn, deadline };
    }

    /// The dial completed: the link is up (`up` makes the connection of the dial's), counted
    /// and reported. False, and nothing done, if no dial was in progress.
    pub fn connected(&mut self, now: Instant, report: &mut Report<'_>, up: impl FnOnce(D) -> U) -> bool {
        let State::Dialing { .. } = self.state else { return false };
        let State::Dialing { conn, .. } = std::mem::replace(&mut self.state, State::Down { retry_at: now }) else {
            return false;
        };
        self.state = State::Up { conn: up(conn), since: now };
        report.stats.connects += 1;
        self.announced_down = false;
        report.events.push(TransportEvent::PeerUp(self.peer));
        true
    }

    /// Some of the queue was written: reports `Writable` if `send` said `Full` and no more
    /// than half of `max_queued` is left.
    #[inline]
    pub fn drained(&mut self, max_queued: usize, report: &mut Report<'_>) {
        if self.full && self.queue.bytes() <= max_queued / 2 {
            self.full = false;
            report.events.push(TransportEvent::Writable(self.peer));
        }
    }

    /// The dial failed or the connection broke: drops the queue, schedules a redial after the
    /// backoff, reports (see the module documentation) and hands back the connection to close.
    pub fn down(&mut self, now: Instant, reason: LinkError, report: &mut Report<'_>) -> Option<Released<D, U>> {
        let released = match std::mem::replace(&mut self.state, State::Down { retry_at: now }) {
            State::Down { .. } => None,
            State::Dialing { conn, .. } => Some(Released::Dialing(conn)),
            State::Up { conn, since } => {
                report.stats.disconnects += 1;
                if now.saturating_duration_since(since) >= STABLE_AFTER {
                    self.backoff.reset();
                }
                Some(Released::Up(conn))
            }
        };
        let delay = self.backoff.next_delay();
        self.state = State::Down { retry_at: now + delay };
        report.stats.frames_dropped += self.queue.drop_all().frames;
        if self.full {
            self.full = false;
            report.events.push(TransportEvent::Writable(self.peer));
        }
        if self.announced_down {
            tracing::debug!(peer = %self.peer, "{reason}; redial in {delay:?}");
        } else {
            tracing::debug!(peer = %self.peer, "peer down: {reason}; redial in {delay:?}");
            self.announced_down = true;
            report.events.push(TransportEvent::PeerDown { peer: self.peer, reason });
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const P: ReplicaId = ReplicaId::new(1, 2);

    type TestLink = Link<&'static str, &'static str, OutQueue>;

    fn frame(n: usize) -> EncodedFrame {
        Bytes::from(vec![7u8; n]).into()
    }

    #[test]
    fn life_cycle_reports_once_and_backs_off() {
        let t0 = Instant::now();
        let mut events = Vec::new();
        let mut stats = TransportStats::default();
        let mut link = TestLink::new(P, Duration::from_millis(10), Duration::from_millis(40), t0);
        assert_eq!(link.due(t0), Some(Due::Dial));
        // Down: frames are dropped, never Full.
        assert_eq!(link.send(frame(10), &mut stats, 1), SendStatus::Room);
        assert_eq!(stats.frames_dropped, 1);
        // Dialing: frames queue; over the limit: Full.
        link.dialing("dial", Some(t0 + Duration::from_secs(1)));
        assert_eq!(link.send(frame(10), &mut stats, 15), SendStatus::Room);
        assert_eq!(link.send(frame(10), &mut stats, 15), SendStatus::Full);
        assert_eq!(link.due(t0 + Duration::from_secs(2)), Some(Due::DialTimedOut));
        let mut report = Report { events: &mut events, stats: &mut stats };
        // The first failed dial: PeerDown and Writable (the queue is gone), redial after 10 ms.
        let released = link.down(t0, LinkError::Closed, &mut report);
        assert!(matches!(released, Some(Released::Dialing("dial"))));
        assert_eq!(stats.frames_dropped, 3);
        assert!(matches!(events[..], [TransportEvent::Writable(P), TransportEvent::PeerDown { peer: P, .. }]));
        assert_eq!(link.deadline(), Some(t0 + Duration::from_millis(10)));
        // A failed redial is not reported again; the delay doubles.
        events.clear();
        let mut report = Report { events: &mut events, stats: &mut stats };
        link.dialing("again", None);
        assert!(link.down(t0, LinkError::Closed, &mut report).is_some());
        assert!(events.is_empty());
        assert_eq!(link.deadline(), Some(t0 + Duration::from_millis(20)));
        // Up: PeerUp; a short-lived connection keeps the backoff, a stable one resets it.
        let mut report = Report { events: &mut events, stats: &mut stats };
        link.dialing("third", None);
        assert!(link.connected(t0, &mut report, |d| d));
        assert!(matches!(events[..], [TransportEvent::PeerUp(P)]));
        assert_eq!(link.up(), Some(&"third"));
        let mut report = Report { events: &mut events, stats: &mut stats };
        link.down(t0 + Duration::from_millis(5), LinkError::Closed, &mut report);
        assert_eq!(link.deadline(), Some(t0 + Duration::from_millis(45)));
        let mut report = Report { events: &mut events, stats: &mut stats };
        link.dialing("fourth", None);
        link.connected(t0, &mut report, |d| d);
        let later = t0 + STABLE_AFTER;
        link.down(later, LinkError::Closed, &mut report);
        assert_eq!(link.deadline(), Some(later + Duration::from_millis(10)));
        assert_eq!((stats.connects, stats.disconnects), (2, 2));
    }

    #[test]
    fn writable_once_half_drained() {
        let now = Instant::now();
        let mut events = Vec::new();
        let mut stats = TransportStats::default();
        let mut link = TestLink::new(P, Duration::ZERO, Duration::ZERO, now);
        link.dialing("d", None);
        assert_eq!(link.send(frame(30), &mut stats, 20), SendStatus::Full);
        let mut report = Report { events: &mut events, stats: &mut stats };
        link.drained(20, &mut report);
        assert!(events.is_empty());
        let mut report = Report { events: &mut events, stats: &mut stats };
        link.queue_mut().advance(25);
        link.drained(20, &mut report);
        assert!(matches!(events[..], [TransportEvent::Writable(P)]));
    }
}
