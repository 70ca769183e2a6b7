//! The accept loop shared by the TCP, io_uring and RDMA transports: connections accepted and
//! waiting for their first message (the hello, or a message that starts with one), the deadline
//! for it, the cap on how many may wait, and the verdict on the hello.
//!
//! Why these rules:
//! - a connection that says nothing holds a slot (a small denial of service): it must complete
//!   its first message within [`HELLO_TIMEOUT`], and at most [`MAX_WAITING`] may wait at once,
//!   so that clients which connect and stay silent cannot exhaust file descriptors;
//! - when that many wait, a new connection is still taken: the oldest waiting connection of
//!   the source address that holds the most slots is refused instead. Refusing newcomers would
//!   let anyone who opens connections faster than they time out lock configured peers out
//!   (their reconnections after a restart included). Evicting the biggest holder means a flood
//!   displaces its own connections; a peer, which sends its hello as soon as it connects, is
//!   displaced only by hundreds of connections from its own address within one round trip;
//! - bytes that cannot begin a hello are refused as soon as they arrive (garbage on the port is
//!   not kept waiting for a whole hello);
//! - every accepted connection is sent a challenge at once (a fresh nonce, see
//!   [`handshake`]); a hello is acceptable only from a configured peer that holds the link key
//!   and answers that very challenge (a recorded hello cannot be replayed, no clock needed),
//!   and is answered with the confirmation that proves this replica to the dialler;
//! - the first message is read exactly, never past its end: the frames behind it stay in the
//!   kernel until the transport reads them, where TCP flow control pushes back on the sender
//!   while the node does not receive.
//!
//! Every refusal is reported as [`TransportEvent::Rejected`] and counted. The transport keys
//! connections as it likes (a poller token, a slot) and keeps what it needs of a waiting
//! connection in `C` (its socket, or nothing when the socket stays in a slot of its own).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use picsou_core::ReplicaId;
use picsou_core::keys::LinkKeys;

use super::handshake::{self, CHALLENGE_LEN, CONFIRM_LEN, HELLO_LEN, HandshakeError, Nonce, Session, SessionContext};
use super::{Rejection, Report, TransportEvent};
use picsou_core::handshake as wire;

/// How long a connection may take to send its first message.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections allowed to wait for their first message at once; more are refused on accept.
pub const MAX_WAITING: usize = 256;
/// After an accept error other than "no more connections" (e.g. out of file descriptors), wait
/// this long before accepting again instead of spinning.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A connection waiting for its first message.
#[derive(Debug)]
struct Waiting<C> {
    conn: C,
    source: String,
    /// The source address without its port (`None` if `source` is not `ip:port`).
    ip: Option<IpAddr>,
    buf: Box<[u8]>,
    got: usize,
    deadline: Instant,
    /// The nonce of the challenge it was sent.
    nonce: Nonce,
    /// The hello verified (the rest of a longer first message may still be missing): who sent
    /// it, the confirmation to answer with and the connection's session.
    verified: Option<(ReplicaId, [u8; CONFIRM_LEN], Session)>,
}

/// A connection whose hello verified.
#[derive(Debug)]
pub struct Arrival<C> {
    /// What the transport keeps of it.
    pub conn: C,
    /// The remote address.
    pub source: String,
    /// The peer that proved to be on the other end.
    pub peer: ReplicaId,
    /// The whole first message (the hello first).
    pub message: Box<[u8]>,
    /// The confirmation to send back (the transport writes it before anything else).
    pub confirm: [u8; CONFIRM_LEN],
    /// The connection's session, for the engine ([`super::TransportEvent::Session`]).
    pub session: Session,
}

/// What reading a waiting connection found.
#[derive(Debug)]
pub enum Step<C> {
    /// More bytes are needed (or the connection is not waiting).
    Waiting,
    /// The first message arrived and its hello verified: the connection is the transport's
    /// again, authenticated.
    Arrived(Arrival<C>),
    /// Refused, and reported: close it.
    Refused(C),
    /// Closed or failed before saying anything: close it, nothing to report.
    Gone(C),
}

/// Connections accepted and waiting for their first message, and the hello check.
#[derive(Debug)]
pub struct Acceptor<K, C> {
    local: ReplicaId,
    keys: LinkKeys,
    session: SessionContext,
    known: HashSet<ReplicaId>,
    /// Peers whose hellos are refused until then (`Transport::disconnect`).
    banned: HashMap<ReplicaId, Instant>,
    /// Length of the first message (at least a hello).
    first_len: usize,
    waiting: HashMap<K, Waiting<C>>,
    /// Accept again then (after an accept error).
    retry_at: Option<Instant>,
}

/// Reports a refused connection.
pub fn reject(report: &mut Report<'_>, source: String, claimed: Option<ReplicaId>, reason: Rejection) {
    tracing::debug!(%source, ?claimed, "rejected: {reason}");
    report.stats.rejected += 1;
    report.events.push(TransportEvent::Rejected { source, claimed, reason });
}

impl<K: Copy + Eq + Hash, C> Acceptor<K, C> {
    /// Accepts hellos addressed to `local` from the `known` peers; the first message is
    /// `first_len` bytes (at least [`HELLO_LEN`]) and starts with the hello.
    pub fn new(
        local: ReplicaId,
        keys: LinkKeys,
        session: SessionContext,
        known: impl IntoIterator<Item = ReplicaId>,
        first_len: usize,
    ) -> Self {
        Self {
            local,
            keys,
            session,
            known: known.into_iter().collect(),
            banned: HashMap::new(),
            first_len: first_len.max(HELLO_LEN),
            waiting: HashMap::new(),
            retry_at: None,
        }
    }

    /// Connections waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// No connection waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Whether `key` is a waiting connection.
    pub fn is_waiting(&self, key: K) -> bool {
        self.waiting.contains_key(&key)
    }

    /// Makes room for a connection just accepted (call before [`Acceptor::admit`]): when
    /// [`MAX_WAITING`] connections wait, the oldest one of the source address holding the most
    /// of them is refused (and reported) and returned, for the caller to close.
    pub fn make_room(&mut self, report: &mut Report<'_>) -> Option<(K, C)> {
        if self.waiting.len() < MAX_WAITING {
            return None;
        }
        let mut held: HashMap<Option<IpAddr>, usize> = HashMap::new();
        for w in self.waiting.values() {
            *held.entry(w.ip).or_default() += 1;
        }
        let most = held.values().copied().max()?;
        let (&key, _) = self.waiting.iter().filter(|(_, w)| held[&w.ip] == most).min_by_key(|(_, w)| w.deadline)?;
        let w = self.waiting.remove(&key)?;
        reject(report, w.source, None, Rejection::TooManyWaiting(MAX_WAITING));
        Some((key, w.conn))
    }

    /// Starts waiting for the first message of a connection just accepted (call
    /// [`Acceptor::make_room`] first). Returns the challenge to send it at once.
    pub fn admit(&mut self, key: K, conn: C, source: String, now: Instant) -> [u8; CHALLENGE_LEN] {
        tracing::trace!(%source, "accepted");
        let buf = vec![0; self.first_len].into_boxed_slice();
        let ip = source.parse::<SocketAddr>().ok().map(|a| a.ip());
        let nonce = handshake::fresh_nonce();
        let deadline = now + HELLO_TIMEOUT;
        self.waiting.insert(key, Waiting { conn, source, ip, buf, got: 0, deadline, nonce, verified: None });
        wire::challenge(&nonce)
    }

    /// Refuses `peer`'s hellos until `until` (it was proven faulty).
    pub fn ban(&mut self, peer: ReplicaId, until: Instant) {
        self.banned.retain(|_, t| *t > Instant::now());
        self.banned.insert(peer, until);
    }

    /// The connection `key` while it waits (to write its challenge).
    pub fn conn_mut(&mut self, key: K) -> Option<&mut C> {
        self.waiting.get_mut(&key).map(|w| &mut w.conn)
    }

    /// Stops waiting for `key` (the transport closes it for its own reasons).
    pub fn forget(&mut self, key: K) -> Option<C> {
        self.waiting.remove(&key).map(|w| w.conn)
    }

    /// Takes bytes received on `key`: the first message's, up to its end. Returns what happened
    /// and how many bytes of `data` were used (the rest, after an arrival, is the peer's
    /// frames).
    pub fn feed(&mut self, key: K, data: &[u8], report: &mut Report<'_>) -> (Step<C>, usize) {
        let Some(w) = self.waiting.get_mut(&key) else { return (Step::Waiting, 0) };
        let take = (w.buf.len() - w.got).min(data.len());
        w.buf[w.got..w.got + take].copy_from_slice(&data[..take]);
        w.got += take;
        (self.check(key, report), take)
    }

    /// The connection `key` ended (closed or failed) before its first message was complete.
    pub fn ended(&mut self, key: K, report: &mut Report<'_>) -> Step<C> {
        let Some(w) = self.waiting.remove(&key) else { return Step::Waiting };
        if w.got > 0 {
            reject(report, w.source, None, Rejection::ClosedMidHello);
            Step::Refused(w.conn)
        } else {
            tracing::debug!(source = %w.source, "connection closed before its hello");
            Step::Gone(w.conn)
        }
    }

    /// Refuses the connections whose first message is late; returns them to be closed.
    pub fn expire(&mut self, now: Instant, report: &mut Report<'_>) -> Vec<(K, C)> {
        let late: Vec<K> = self.waiting.iter().filter(|(_, w)| w.deadline <= now).map(|(k, _)| *k).collect();
        let mut out = Vec::with_capacity(late.len());
        for key in late {
            if let Some(w) = self.waiting.remove(&key) {
                reject(report, w.source, None, Rejection::HelloTimeout(HELLO_TIMEOUT));
                out.push((key, w.conn));
            }
        }
        out
    }

    /// The earliest deadline: a first message, or accepting again after an error.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiting.values().map(|w| w.deadline).chain(self.retry_at).min()
    }

    /// Accepting failed with `e` (not "no more connections"): try again in [`ACCEPT_RETRY`].
    pub fn accept_failed(&mut self, now: Instant, e: &dyn std::fmt::Display) {
        tracing::warn!("accept: {e}; retrying in {ACCEPT_RETRY:?}");
        self.retry_at = Some(now + ACCEPT_RETRY);
    }

    /// Whether accepting is due again after an error (then it no longer is).
    pub fn retry_due(&mut self, now: Instant) -> bool {
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            return true;
        }
        false
    }

    /// Judges what `key` has so far: garbage as soon as it cannot begin a hello, the hello as
    /// soon as it is complete (before the rest of a longer first message).
    fn check(&mut self, key: K, report: &mut Report<'_>) -> Step<C> {
        let Some(w) = self.waiting.get_mut(&key) else { return Step::Waiting };
        if w.verified.is_none() {
            if !wire::plausible_hello(&w.buf[..w.got.min(HELLO_LEN)]) {
                return self.refuse(key, None, HandshakeError::BadMagic.into(), report);
            }
            if w.got < HELLO_LEN {
                return Step::Waiting;
            }
            let mut h = [0u8; HELLO_LEN];
            h.copy_from_slice(&w.buf[..HELLO_LEN]);
            let claimed = wire::parse_hello(&h).ok().map(|c| c.from);
            let (keys, known) = (&self.keys, &self.known);
            let key_for = |p| known.contains(&p).then(|| keys.key_for(p)).flatten();
            match wire::accept(&h, self.local, &w.nonce, &self.session, key_for) {
                Ok((c, _, _)) if self.banned.get(&c.from).is_some_and(|&t| t > Instant::now()) => {
                    return self.refuse(key, claimed, Rejection::Quarantined, report);
                }
                Ok((c, confirm, session)) => w.verified = Some((c.from, confirm, session)),
                Err(e) => return self.refuse(key, claimed, e.into(), report),
            }
        }
        if w.got < w.buf.len() {
            return Step::Waiting;
        }
        let Some(w) = self.waiting.remove(&key) else { return Step::Waiting };
        let Some((peer, confirm, session)) = w.verified else { return Step::Waiting };
        tracing::debug!(%peer, source = %w.source, "incoming connection authenticated");
        Step::Arrived(Arrival { conn: w.conn, source: w.source, peer, message: w.buf, confirm, session })
    }

    fn refuse(&mut self, key: K, claimed: Option<ReplicaId>, reason: Rejection, report: &mut Report<'_>) -> Step<C> {
        let Some(w) = self.waiting.remove(&key) else { return Step::Waiting };
        reject(report, w.source, claimed, reason);
        Step::Refused(w.conn)
    }
}

impl<K: Copy + Eq + Hash, C: Read> Acceptor<K, C> {
    /// Reads what the waiting connection `key` has, never past its first message.
    pub fn read(&mut self, key: K, report: &mut Report<'_>) -> Step<C> {
        loop {
            let Some(w) = self.waiting.get_mut(&key) else { return Step::Waiting };
            if w.got == w.buf.len() {
                return self.check(key, report);
            }
            match w.conn.read(&mut w.buf[w.got..]) {
                Ok(0) => return self.ended(key, report),
                Ok(n) => {
                    w.got += n;
                    if let step @ (Step::Arrived(_) | Step::Refused(_)) = self.check(key, report) {
                        return step;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Waiting,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(source = %w.source, "connection failed before its hello: {e}");
                    return self.ended(key, report);
                }
            }
        }
    }
}

/// Writes a handshake message to a connection's empty send buffer at once: it fits whole (a
/// fresh socket's buffer holds kilobytes), so anything short of that means the connection is
/// already broken. Never blocks, so a client that does not read cannot stall the acceptor.
pub fn write_now(stream: &mut impl Write, bytes: &[u8]) -> bool {
    loop {
        match stream.write(bytes) {
            Ok(n) => return n == bytes.len(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// The accept loop of a transport whose sockets are registered with a mio poller (TCP, and the
/// RDMA transport's bootstrap): the listener, the connections waiting for their first message
/// (each under a fresh token, deregistered when it goes), and the retry after accept errors.
#[derive(Debug)]
pub struct MioAcceptor {
    listener: TcpListener,
    waiting: Acceptor<Token, TcpStream>,
    /// The token of the next accepted connection (tokens are never reused).
    next_token: usize,
    /// Sets a new connection's options.
    configure: fn(&TcpStream),
}

impl MioAcceptor {
    /// Accepts on `listener` (already registered with the poller), gives accepted connections
    /// tokens from `first_token` on, and sets their options with `configure`.
    pub fn new(
        listener: TcpListener,
        waiting: Acceptor<Token, TcpStream>,
        first_token: usize,
        configure: fn(&TcpStream),
    ) -> Self {
        Self { listener, waiting, next_token: first_token, configure }
    }

    /// Refuses `peer`'s hellos until `until` (see [`Acceptor::ban`]).
    pub fn ban(&mut self, peer: ReplicaId, until: Instant) {
        self.waiting.ban(peer, until);
    }

    /// Whether `token` is a connection waiting for its first message.
    pub fn is_waiting(&self, token: Token) -> bool {
        self.waiting.is_waiting(token)
    }

    /// The earliest deadline (see [`Acceptor::next_deadline`]).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiting.next_deadline()
    }

    /// Accepts every pending connection (edge-triggered readiness: until `WouldBlock`),
    /// registers each readable and reads the first bytes already there. Returns the
    /// connections whose first message is complete already.
    pub fn accept_all(
        &mut self,
        registry: &Registry,
        now: Instant,
        report: &mut Report<'_>,
    ) -> Vec<(Token, Arrival<TcpStream>)> {
        let mut admitted = Vec::new();
        loop {
            match self.listener.accept() {
                Ok((mut stream, source)) => {
                    if let Some((_, mut evicted)) = self.waiting.make_room(report) {
                        let _ = registry.deregister(&mut evicted);
                    }
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
                        tracing::warn!(%source, "cannot register an accepted connection: {e}");
                        continue;
                    }
                    (self.configure)(&stream);
                    let challenge = self.waiting.admit(token, stream, source.to_string(), now);
                    let sent = self.waiting.conn_mut(token).is_some_and(|s| write_now(s, &challenge));
                    if !sent {
                        tracing::debug!(%source, "cannot send the challenge; connection dropped");
                        if let Some(mut s) = self.waiting.forget(token) {
                            let _ = registry.deregister(&mut s);
                        }
                        continue;
                    }
                    admitted.push(token);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {}
                Err(e) => {
                    self.waiting.accept_failed(now, &e);
                    break;
                }
            }
        }
        admitted.into_iter().filter_map(|token| Some((token, self.read(token, registry, report)?))).collect()
    }

    /// Reads the waiting connection `token`; returns it once its first message is complete,
    /// deregisters it if it was refused or went away.
    pub fn read(&mut self, token: Token, registry: &Registry, report: &mut Report<'_>) -> Option<Arrival<TcpStream>> {
        match self.waiting.read(token, report) {
            Step::Waiting => None,
            Step::Refused(mut stream) | Step::Gone(mut stream) => {
                let _ = registry.deregister(&mut stream);
                None
            }
            Step::Arrived(mut a) => {
                if write_now(&mut a.conn, &a.confirm) {
                    Some(a)
                } else {
                    tracing::debug!(source = %a.source, "cannot send the confirmation; connection dropped");
                    let _ = registry.deregister(&mut a.conn);
                    None
                }
            }
        }
    }

    /// Refuses (and deregisters) the connections whose first message is late, and accepts
    /// again if that is due after an error; returns what that accepted.
    pub fn run_timers(
        &mut self,
        registry: &Registry,
        now: Instant,
        report: &mut Report<'_>,
    ) -> Vec<(Token, Arrival<TcpStream>)> {
        for (_, mut stream) in self.waiting.expire(now, report) {
            let _ = registry.deregister(&mut stream);
        }
        if self.waiting.retry_due(now) {
            return self.accept_all(registry, now, report);
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use picsou_core::keys::LinkKeys;

    use super::*;
    use crate::transport::TransportStats;

    const A: ReplicaId = ReplicaId::new(0, 1);
    const B: ReplicaId = ReplicaId::new(1, 0);
    const C: ReplicaId = ReplicaId::new(1, 5);
    const SECRET: [u8; 32] = [7; 32];

    fn ctx() -> SessionContext {
        SessionContext { deployment: [4; 32], incarnation: handshake::Incarnation([1; 16]) }
    }

    fn acceptor(first_len: usize) -> Acceptor<u32, ()> {
        Acceptor::new(B, LinkKeys::derived(B, SECRET), ctx(), [A], first_len)
    }

    /// `from`'s answer to `challenge`, under its real link key or `key`.
    fn hello_with(from: ReplicaId, challenge: &[u8; CHALLENGE_LEN], key: Option<[u8; 32]>) -> [u8; HELLO_LEN] {
        let key = key.unwrap_or_else(|| LinkKeys::derived(from, SECRET).key_for(B).unwrap());
        wire::answer(challenge, from, B, &key, &ctx(), &[2; 16]).unwrap().0
    }

    fn hello_from(from: ReplicaId, challenge: &[u8; CHALLENGE_LEN]) -> [u8; HELLO_LEN] {
        hello_with(from, challenge, None)
    }

    fn reasons(events: &[TransportEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                TransportEvent::Rejected { claimed, reason, .. } => format!("{claimed:?}: {reason}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_hello_in_any_split_arrives_with_what_follows_left_over() {
        for cut in [1, 3, 63, 64, 65, 80, 1000] {
            let (mut events, mut stats) = (Vec::new(), TransportStats::default());
            let mut report = Report { events: &mut events, stats: &mut stats };
            let mut acc = acceptor(80);
            let challenge = acc.admit(1, (), "here".into(), Instant::now());
            let mut stream = hello_from(A, &challenge).to_vec();
            stream.extend_from_slice(b"rest of the message, then frames");
            let mut arrived = None;
            let mut used_total = 0;
            for chunk in stream.chunks(cut) {
                let (step, used) = acc.feed(1, chunk, &mut report);
                used_total += used;
                match step {
                    Step::Waiting => assert_eq!(used, chunk.len(), "cut {cut}"),
                    Step::Arrived(a) => {
                        arrived = Some(a);
                        break;
                    }
                    other => panic!("cut {cut}: {other:?}"),
                }
            }
            let a = arrived.expect("arrived");
            assert_eq!((a.peer, a.message.len(), used_total), (A, 80, 80), "cut {cut}");
            assert_eq!(a.session.peer_incarnation, ctx().incarnation);
            assert!(acc.is_empty() && events.is_empty());
        }
    }

    #[test]
    fn refusals_are_reported_with_what_was_claimed() {
        let (mut events, mut stats) = (Vec::new(), TransportStats::default());
        let mut report = Report { events: &mut events, stats: &mut stats };
        let mut acc = acceptor(HELLO_LEN);
        let now = Instant::now();
        let mut try_hello = |acc: &mut Acceptor<u32, ()>, key: u32, make: &dyn Fn(&[u8; CHALLENGE_LEN]) -> Vec<u8>| {
            let challenge = acc.admit(key, (), format!("conn {key}"), now);
            acc.feed(key, &make(&challenge), &mut report).0
        };
        // Garbage at its first byte; a wrong key; an unknown peer; a hello replayed on another
        // connection (made for another challenge).
        assert!(matches!(try_hello(&mut acc, 1, &|_| b"G".to_vec()), Step::Refused(())));
        assert!(matches!(try_hello(&mut acc, 2, &|c| hello_with(A, c, Some([3; 32])).to_vec()), Step::Refused(())));
        assert!(matches!(try_hello(&mut acc, 3, &|c| hello_from(C, c).to_vec()), Step::Refused(())));
        let recorded = std::cell::RefCell::new(Vec::new());
        let record = |c: &[u8; CHALLENGE_LEN]| {
            let h = hello_from(A, c).to_vec();
            *recorded.borrow_mut() = h.clone();
            h
        };
        assert!(matches!(try_hello(&mut acc, 4, &record), Step::Arrived(_)));
        assert!(matches!(try_hello(&mut acc, 5, &|_| recorded.borrow().clone()), Step::Refused(())));
        // Closed mid-hello is refused; closed before any byte is not.
        assert!(matches!(try_hello(&mut acc, 6, &|c| hello_from(A, c)[..10].to_vec()), Step::Waiting));
        assert!(matches!(acc.ended(6, &mut report), Step::Refused(())));
        acc.admit(7, (), "silent".into(), now);
        assert!(matches!(acc.ended(7, &mut report), Step::Gone(())));
        // Late: refused at the deadline.
        acc.admit(8, (), "slow".into(), now);
        assert_eq!(acc.next_deadline(), Some(now + HELLO_TIMEOUT));
        assert!(acc.expire(now, &mut report).is_empty());
        assert_eq!(acc.expire(now + HELLO_TIMEOUT, &mut report).len(), 1);
        let got = reasons(&events);
        assert_eq!(got.len(), 6, "{got:?}");
        assert!(got[0].starts_with("None: not a picsou v3 handshake"), "{got:?}");
        assert!(got[1].contains("Some(ReplicaId") && got[1].contains("authentication"), "{got:?}");
        assert!(got[2].contains("unknown peer"), "{got:?}");
        assert!(got[3].contains("Some(ReplicaId") && got[3].contains("authentication"), "{got:?}");
        assert!(got[4].contains("middle of its hello"), "{got:?}");
        assert!(got[5].contains("no hello within"), "{got:?}");
        assert_eq!(stats.rejected, 6);
    }

    #[test]
    fn at_the_cap_the_biggest_holders_oldest_connection_makes_room() {
        let (mut events, mut stats) = (Vec::new(), TransportStats::default());
        let mut report = Report { events: &mut events, stats: &mut stats };
        let mut acc = acceptor(HELLO_LEN);
        let t0 = Instant::now();
        let at = |k: u32| t0 + Duration::from_micros(u64::from(k));
        // A peer connects from 10.0.0.2 among a flood from 10.0.0.9 that fills every slot.
        let challenge = acc.admit(0, (), "10.0.0.2:40000".into(), at(0));
        for k in 1..MAX_WAITING as u32 {
            assert!(acc.make_room(&mut report).is_none());
            acc.admit(k, (), format!("10.0.0.9:{}", 1000 + k), at(k));
        }
        // The flood goes on: each new connection displaces the flood's oldest, never the peer's.
        for k in MAX_WAITING as u32..4 * MAX_WAITING as u32 {
            let (evicted, ()) = acc.make_room(&mut report).expect("full: one is evicted");
            assert_eq!(evicted, k - MAX_WAITING as u32 + 1, "the flood's oldest");
            acc.admit(k, (), format!("10.0.0.9:{}", 1000 + k), at(k));
        }
        assert_eq!(acc.len(), MAX_WAITING);
        assert!(matches!(acc.feed(0, &hello_from(A, &challenge), &mut report).0, Step::Arrived(a) if a.peer == A));
        assert_eq!(stats.rejected, 3 * MAX_WAITING as u64);
        assert!(matches!(events[0], TransportEvent::Rejected { reason: Rejection::TooManyWaiting(MAX_WAITING), .. }));

        // From one address (loopback), the oldest goes first: a peer that sends its hello at
        // once is not displaced by a flood slower than MAX_WAITING connections per hello.
        let (mut events, mut stats) = (Vec::new(), TransportStats::default());
        let mut report = Report { events: &mut events, stats: &mut stats };
        let mut acc = acceptor(HELLO_LEN);
        for k in 0..MAX_WAITING as u32 {
            acc.admit(k, (), format!("127.0.0.1:{}", 1000 + k), at(k));
        }
        assert_eq!(acc.make_room(&mut report).map(|(k, ())| k), Some(0));
    }
}
