//! In-memory transport: every replica in one process, frames handed over as [`Bytes`].
//!
//! A [`MemNetwork`] is the switch: each [`MemTransport`] registers a mailbox under its replica
//! id, and `send` appends the frame to the destination's mailbox. It keeps the same contract
//! as the socket transports so the node behaves identically over it: per-link queues are
//! bounded in bytes (`send` says [`SendStatus::Full`] and the link reports
//! [`TransportEvent::Writable`] once the receiver drained half), frames to a replica that is
//! gone are dropped and reported with [`TransportEvent::PeerDown`], and a replica that joins
//! again is reported up. Dropping a transport is a crash.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use picsou_core::ReplicaId;

use super::{
    ConfigError, EncodedFrame, LinkError, SendStatus, Transport, TransportError, TransportEvent, TransportStats, Wake,
};

/// Default bound on the bytes queued on one link.
pub const DEFAULT_LINK_BYTES: usize = 8 << 20;

/// A flag and a condition variable: the mailbox owner sleeps on it, senders wake it.
#[derive(Default)]
struct Parker {
    woken: Mutex<bool>,
    cond: Condvar,
}

impl Parker {
    fn park(&self, timeout: Option<Duration>) {
        let mut woken = self.woken.lock().unwrap_or_else(PoisonError::into_inner);
        if !*woken {
            woken = match timeout {
                Some(t) => self.cond.wait_timeout(woken, t).unwrap_or_else(PoisonError::into_inner).0,
                None => self.cond.wait(woken).unwrap_or_else(PoisonError::into_inner),
            };
        }
        *woken = false;
    }
}

impl Wake for Parker {
    fn wake(&self) {
        *self.woken.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.cond.notify_one();
    }
}

/// Bytes queued on one directed link, shared by its two ends.
#[derive(Default)]
struct Link {
    queued: AtomicUsize,
    /// The sender was told `Full` and waits for a `Writable`.
    full: AtomicBool,
}

/// One replica's inbox.
struct Mailbox {
    frames: Mutex<VecDeque<(ReplicaId, Bytes, Arc<Link>)>>,
    /// Control events for the owner (links that became writable).
    control: Mutex<Vec<TransportEvent>>,
    parker: Arc<Parker>,
}

/// The in-memory switch shared by the transports of one process.
#[derive(Clone, Default)]
pub struct MemNetwork {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    boxes: HashMap<ReplicaId, Arc<Mailbox>>,
    links: HashMap<(ReplicaId, ReplicaId), Arc<Link>>,
    link_bytes: Option<usize>,
}

impl std::fmt::Debug for MemNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemNetwork").finish_non_exhaustive()
    }
}

impl MemNetwork {
    /// An empty network whose links queue at most [`DEFAULT_LINK_BYTES`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty network whose links queue at most `bytes` before reporting `Full`.
    pub fn with_link_bytes(bytes: usize) -> Self {
        let net = Self::default();
        net.registry().link_bytes = Some(bytes.max(1));
        net
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `local` and returns its transport. `peers` are the replicas it talks to.
    /// Fails if `local` is already registered (a replica runs once).
    pub fn transport(&self, local: ReplicaId, peers: &[ReplicaId]) -> Result<MemTransport, TransportError> {
        let mailbox = Arc::new(Mailbox {
            frames: Mutex::new(VecDeque::new()),
            control: Mutex::new(Vec::new()),
            parker: Arc::new(Parker::default()),
        });
        let mut reg = self.registry();
        if reg.boxes.contains_key(&local) {
            return Err(ConfigError::AlreadyOnNetwork(local).into());
        }
        reg.boxes.insert(local, mailbox.clone());
        let link_bytes = reg.link_bytes.unwrap_or(DEFAULT_LINK_BYTES);
        drop(reg);
        Ok(MemTransport {
            net: self.clone(),
            local,
            mailbox,
            peers: peers
                .iter()
                .map(|&p| (p, Peer { state: PeerState::Unknown, link: self.link(local, p), mailbox: Weak::new() }))
                .collect(),
            link_bytes,
            receiving: true,
            pending: Vec::new(),
            stats: TransportStats::default(),
        })
    }

    fn link(&self, from: ReplicaId, to: ReplicaId) -> Arc<Link> {
        self.registry().links.entry((from, to)).or_default().clone()
    }

    fn mailbox(&self, r: ReplicaId) -> Option<Arc<Mailbox>> {
        self.registry().boxes.get(&r).cloned()
    }
}

/// What a transport knows of one peer: the link to it and (cached, to skip the registry's
/// lock on every send) its mailbox, looked up again only when the peer went away.
struct Peer {
    state: PeerState,
    link: Arc<Link>,
    mailbox: Weak<Mailbox>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerState {
    Unknown,
    Up,
    Down,
}

/// One replica's end of a [`MemNetwork`].
pub struct MemTransport {
    net: MemNetwork,
    local: ReplicaId,
    mailbox: Arc<Mailbox>,
    peers: HashMap<ReplicaId, Peer>,
    link_bytes: usize,
    receiving: bool,
    /// Events produced by `send` (peer up/down), returned by the next `poll`.
    pending: Vec<TransportEvent>,
    stats: TransportStats,
}

impl std::fmt::Debug for MemTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemTransport").field("local", &self.local).finish_non_exhaustive()
    }
}

impl Drop for MemTransport {
    fn drop(&mut self) {
        let mut reg = self.net.registry();
        if reg.boxes.get(&self.local).is_some_and(|b| Arc::ptr_eq(b, &self.mailbox)) {
            reg.boxes.remove(&self.local);
        }
        // Frames queued towards this replica are lost with it: release the links' budgets so
        // a replacement starts with empty links.
        let dropped: Vec<_> = self.mailbox.frames.lock().unwrap_or_else(PoisonError::into_inner).drain(..).collect();
        drop(reg);
        for (_, frame, link) in dropped {
            link.queued.fetch_sub(frame.len(), Ordering::SeqCst);
        }
    }
}

impl MemTransport {
    fn set_state(&mut self, peer: ReplicaId, state: PeerState) {
        let Some(p) = self.peers.get_mut(&peer) else { return };
        let old = std::mem::replace(&mut p.state, state);
        match (old, state) {
            (PeerState::Up, PeerState::Up) | (PeerState::Down, PeerState::Down) => {}
            (_, PeerState::Up) => {
                self.stats.connects += 1;
                self.pending.push(TransportEvent::PeerUp(peer));
            }
            (_, PeerState::Down) => {
                self.stats.disconnects += 1;
                self.pending.push(TransportEvent::PeerDown { peer, reason: LinkError::Absent });
            }
            _ => {}
        }
    }
}

impl Transport for MemTransport {
    fn kind(&self) -> &'static str {
        "mem"
    }

    fn send(&mut self, peer: ReplicaId, frame: EncodedFrame) -> SendStatus {
        // One buffer for the receiving engine (a copy only for forwarded sections).
        let frame = frame.into_bytes();
        let Some(p) = self.peers.get_mut(&peer) else {
            self.stats.frames_dropped += 1;
            return SendStatus::Room;
        };
        let mailbox = match p.mailbox.upgrade() {
            Some(m) => m,
            None => match self.net.mailbox(peer) {
                Some(m) => {
                    p.mailbox = Arc::downgrade(&m);
                    m
                }
                None => {
                    self.stats.frames_dropped += 1;
                    self.set_state(peer, PeerState::Down);
                    return SendStatus::Room;
                }
            },
        };
        let link = p.link.clone();
        self.set_state(peer, PeerState::Up);
        let len = frame.len();
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += len as u64;
        let queued = link.queued.fetch_add(len, Ordering::SeqCst) + len;
        let full = queued > self.link_bytes;
        if full {
            link.full.store(true, Ordering::SeqCst);
        }
        mailbox.frames.lock().unwrap_or_else(PoisonError::into_inner).push_back((self.local, frame, link));
        mailbox.parker.wake();
        if full { SendStatus::Full } else { SendStatus::Room }
    }

    fn flush(&mut self) {}

    fn poll(&mut self, timeout: Option<Duration>, events: &mut Vec<TransportEvent>) -> Result<(), TransportError> {
        let mut got = self.take(events);
        if !got && timeout != Some(Duration::ZERO) {
            self.mailbox.parker.park(timeout);
            got = self.take(events);
        }
        let _ = got;
        Ok(())
    }

    fn waker(&self) -> Arc<dyn Wake> {
        self.mailbox.parker.clone()
    }

    fn set_receiving(&mut self, receiving: bool) {
        self.receiving = receiving;
    }

    fn stats(&self) -> TransportStats {
        self.stats.clone()
    }
}

impl MemTransport {
    /// Moves ready events into `events`; true if any.
    fn take(&mut self, events: &mut Vec<TransportEvent>) -> bool {
        // A peer reported down is reported up again as soon as it is back, not only at the next
        // send to it: the node blocks a down peer in the engine, which then sends it nothing.
        let back: Vec<ReplicaId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::Down)
            .map(|(&r, _)| r)
            .filter(|&r| self.net.mailbox(r).is_some())
            .collect();
        for r in back {
            self.set_state(r, PeerState::Up);
        }
        let before = events.len();
        events.append(&mut self.pending);
        events.append(&mut self.mailbox.control.lock().unwrap_or_else(PoisonError::into_inner));
        if self.receiving {
            let frames = std::mem::take(&mut *self.mailbox.frames.lock().unwrap_or_else(PoisonError::into_inner));
            for (from, frame, link) in frames {
                let len = frame.len();
                self.stats.frames_received += 1;
                self.stats.bytes_received += len as u64;
                let left = link.queued.fetch_sub(len, Ordering::SeqCst) - len;
                if left <= self.link_bytes / 2 && link.full.swap(false, Ordering::SeqCst) {
                    // Tell the sender its link drained.
                    if let Some(sender) = self.net.mailbox(from) {
                        sender
                            .control
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(TransportEvent::Writable(self.local));
                        sender.parker.wake();
                    }
                }
                events.push(TransportEvent::Frame { from, frame });
            }
        }
        events.len() > before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ReplicaId = ReplicaId::new(0, 0);
    const B: ReplicaId = ReplicaId::new(1, 0);

    fn frames(t: &mut MemTransport) -> Vec<TransportEvent> {
        let mut ev = Vec::new();
        t.poll(Some(Duration::ZERO), &mut ev).unwrap();
        ev
    }

    #[test]
    fn frames_flow_and_backpressure_reports_writable() {
        let net = MemNetwork::with_link_bytes(100);
        let mut a = net.transport(A, &[B]).unwrap();
        let mut b = net.transport(B, &[A]).unwrap();
        assert_eq!(a.send(B, Bytes::from_static(&[1; 60]).into()), SendStatus::Room);
        assert_eq!(a.send(B, Bytes::from_static(&[2; 60]).into()), SendStatus::Full);
        let ev = frames(&mut b);
        assert_eq!(ev.len(), 2);
        assert!(matches!(&ev[0], TransportEvent::Frame { from: A, frame } if frame[..] == [1; 60]), "{ev:?}");
        let ev = frames(&mut a);
        assert!(ev.iter().any(|e| matches!(e, TransportEvent::Writable(B))), "{ev:?}");
        assert!(ev.iter().any(|e| matches!(e, TransportEvent::PeerUp(B))), "{ev:?}");
    }

    #[test]
    fn dropped_peer_is_down_and_frames_are_dropped_then_up_again() {
        let net = MemNetwork::new();
        let mut a = net.transport(A, &[B]).unwrap();
        let b = net.transport(B, &[A]).unwrap();
        assert!(net.transport(B, &[A]).is_err(), "a replica registers once");
        a.send(B, Bytes::from_static(&[1; 60]).into());
        drop(b);
        a.send(B, Bytes::from_static(&[1; 60]).into());
        assert_eq!(a.stats().frames_dropped, 1);
        let ev = frames(&mut a);
        assert!(matches!(ev.last(), Some(TransportEvent::PeerDown { peer: B, .. })), "{ev:?}");
        let mut b = net.transport(B, &[A]).unwrap();
        a.send(B, Bytes::from_static(&[3; 60]).into());
        assert!(matches!(&frames(&mut a)[..], [TransportEvent::PeerUp(B)]));
        let ev = frames(&mut b);
        assert!(matches!(&ev[..], [TransportEvent::Frame { from: A, frame }] if frame[..] == [3; 60]), "{ev:?}");
    }

    #[test]
    fn paused_receiver_keeps_frames_and_waker_interrupts_poll() {
        let net = MemNetwork::new();
        let mut a = net.transport(A, &[B]).unwrap();
        let mut b = net.transport(B, &[A]).unwrap();
        b.set_receiving(false);
        a.send(B, Bytes::from_static(&[1; 60]).into());
        assert!(frames(&mut b).is_empty());
        b.set_receiving(true);
        assert_eq!(frames(&mut b).len(), 1);
        let w = b.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w.wake();
        });
        let start = std::time::Instant::now();
        let mut ev = Vec::new();
        b.poll(None, &mut ev).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
    }
}
