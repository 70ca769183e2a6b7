//! An in-memory [`Device`]: queue pairs of devices in the same process "write" into each
//! other's registered [`Memory`] by copying words, in order, when a write is posted.
//!
//! It checks what an adapter checks: queue pair states, that the peer queue pair is connected
//! back to the writer, remote keys and bounds, protection domains (a region is reached only
//! through a queue pair of its own domain), inline limits, send queue depth, and that a
//! write with immediate finds a posted receive (a missing one is held until a receive is
//! posted, as an adapter's RNR retries would). A bad remote key or a peer that is not
//! connected completes with an error and moves the queue pair to ERROR; later work is
//! flushed. Completions, errors included, go to the device's completion queue, and in event
//! mode a byte on a socket pair stands in for the completion channel.
//!
//! It exists so that the ring, credit and connection logic is tested on any machine; the
//! same tests run against a real device where there is one.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use crate::memory::Memory;
use crate::verbs::{
    Completion, Device, Endpoint, Gid, Payload, QpCaps, QueuePair, Registered, VerbsError, WC_SUCCESS, WriteRequest,
    random_psn,
};

const WC_LOC_PROT_ERR: u32 = 4;
const WC_WR_FLUSH_ERR: u32 = 5;
const WC_REM_ACCESS_ERR: u32 = 10;
const WC_RETRY_EXC_ERR: u32 = 12;

/// Every fake device of the process, by GID.
static FABRIC: LazyLock<Mutex<HashMap<Gid, Weak<DevInner>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));
static NEXT_DEVICE: AtomicU64 = AtomicU64::new(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QpState {
    Init,
    Rts,
    Error,
}

#[derive(Debug)]
struct QpInner {
    qpn: u32,
    /// Its protection domain.
    domain: u32,
    psn: u32,
    state: QpState,
    /// The connected peer (GID, QPN).
    remote: Option<(Gid, u32)>,
    /// Posted receives (event mode): their wr_ids, consumed in order.
    recvs: VecDeque<u64>,
    /// Receive queue capacity.
    recv_depth: u32,
    /// Immediates that arrived with no receive posted.
    waiting_imm: u32,
    send_depth: u32,
    /// Work requests posted and not yet retired by a signaled completion.
    outstanding: u32,
    inline: u32,
    /// A successful completion held back until the next post (see
    /// [`FakeDevice::withhold_last_completion`]).
    held: Option<Completion>,
}

/// One registered region.
#[derive(Debug)]
struct Registration {
    mem: Arc<Memory>,
    remote_write: bool,
    /// Its protection domain.
    domain: u32,
}

#[derive(Debug)]
struct DevInner {
    gid: Gid,
    /// Registrations by key.
    regions: Mutex<HashMap<u32, Registration>>,
    qps: Mutex<HashMap<u32, Arc<Mutex<QpInner>>>>,
    cq: Mutex<VecDeque<Completion>>,
    next_key: AtomicU32,
    max_inline: u32,
    /// Event mode: (notifier, listener) and whether a notification was requested.
    channel: Option<(UnixStream, UnixStream)>,
    armed: AtomicBool,
    withhold: AtomicBool,
}

impl DevInner {
    fn complete(&self, c: Completion) {
        lock(&self.cq).push_back(c);
        if let Some((tx, _)) = &self.channel
            && self.armed.swap(false, Ordering::SeqCst)
        {
            // Non-blocking: a full socket buffer already holds a pending notification.
            let _ = (&*tx).write(&[1]);
        }
    }
}

/// An in-memory device (see the module documentation).
#[derive(Debug, Clone)]
pub struct FakeDevice {
    inner: Arc<DevInner>,
}

impl FakeDevice {
    /// A new device with its own GID; `event` gives it a completion channel.
    pub fn new(event: bool) -> Self {
        Self::with_inline(event, 256)
    }

    /// A device whose queue pairs grant at most `max_inline` inline bytes.
    pub fn with_inline(event: bool, max_inline: u32) -> Self {
        let id = NEXT_DEVICE.fetch_add(1, Ordering::Relaxed);
        let mut gid = [0u8; 16];
        gid[0] = 0xfe;
        gid[1] = 0x80;
        gid[8..].copy_from_slice(&id.to_be_bytes());
        let channel = event.then(|| {
            let (tx, rx) = UnixStream::pair().expect("socketpair for the fake completion channel");
            tx.set_nonblocking(true).expect("non-blocking notifier");
            rx.set_nonblocking(true).expect("non-blocking listener");
            (tx, rx)
        });
        let inner = Arc::new(DevInner {
            gid,
            regions: Mutex::new(HashMap::new()),
            qps: Mutex::new(HashMap::new()),
            cq: Mutex::new(VecDeque::new()),
            next_key: AtomicU32::new(0x100),
            max_inline,
            channel,
            armed: AtomicBool::new(false),
            withhold: AtomicBool::new(false),
        });
        lock(&FABRIC).insert(gid, Arc::downgrade(&inner));
        Self { inner }
    }

    /// Holds back each queue pair's latest successful signaled completion until something
    /// else is posted on it, as soft-RoCE does under load: a sender that waits for that
    /// completion before reusing staging must ask for a fresh one.
    pub fn withhold_last_completion(&self, on: bool) {
        self.inner.withhold.store(on, Ordering::SeqCst);
    }

    /// The device's GID.
    pub fn gid(&self) -> Gid {
        self.inner.gid
    }
}

impl Drop for DevInner {
    fn drop(&mut self) {
        lock(&FABRIC).remove(&self.gid);
    }
}

/// A fake protection domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeDomain(u32);

/// A fake registration (deregistered when dropped).
#[derive(Debug)]
pub struct FakeRegion {
    dev: Weak<DevInner>,
    key: u32,
}

impl Drop for FakeRegion {
    fn drop(&mut self) {
        if let Some(d) = self.dev.upgrade() {
            lock(&d.regions).remove(&self.key);
        }
    }
}

/// A fake queue pair.
#[derive(Debug)]
pub struct FakeQp {
    dev: Arc<DevInner>,
    inner: Arc<Mutex<QpInner>>,
}

impl Drop for FakeQp {
    fn drop(&mut self) {
        let qpn = lock(&self.inner).qpn;
        lock(&self.dev.qps).remove(&qpn);
    }
}

impl Device for FakeDevice {
    type Domain = FakeDomain;
    type Region = FakeRegion;
    type Qp = FakeQp;

    fn describe(&self) -> String {
        format!("fake device {:02x?}", &self.inner.gid[8..])
    }

    fn alloc_domain(&self) -> Result<FakeDomain, VerbsError> {
        Ok(FakeDomain(self.inner.next_key.fetch_add(1, Ordering::Relaxed)))
    }

    fn register(
        &self,
        domain: &FakeDomain,
        mem: &Arc<Memory>,
        remote_write: bool,
    ) -> Result<(FakeRegion, Registered), VerbsError> {
        let key = self.inner.next_key.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.regions).insert(key, Registration { mem: mem.clone(), remote_write, domain: domain.0 });
        let reg = Registered { addr: mem.addr(), len: mem.len(), lkey: key, rkey: key };
        Ok((FakeRegion { dev: Arc::downgrade(&self.inner), key }, reg))
    }

    fn create_qp(&self, domain: &FakeDomain, caps: QpCaps) -> Result<FakeQp, VerbsError> {
        let qpn = self.inner.next_key.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
        let qp = Arc::new(Mutex::new(QpInner {
            qpn,
            domain: domain.0,
            psn: random_psn(),
            state: QpState::Init,
            remote: None,
            recvs: VecDeque::new(),
            recv_depth: caps.recv_depth,
            waiting_imm: 0,
            send_depth: caps.send_depth,
            outstanding: 0,
            inline: caps.inline.min(self.inner.max_inline),
            held: None,
        }));
        lock(&self.inner.qps).insert(qpn, qp.clone());
        Ok(FakeQp { dev: self.inner.clone(), inner: qp })
    }

    fn poll_cq(&self, out: &mut Vec<Completion>, max: usize) -> Result<(), VerbsError> {
        let mut cq = lock(&self.inner.cq);
        let n = cq.len().min(max);
        out.extend(cq.drain(..n));
        Ok(())
    }

    fn completion_fd(&self) -> Option<RawFd> {
        self.inner.channel.as_ref().map(|(_, rx)| rx.as_raw_fd())
    }

    fn arm(&self) -> Result<(), VerbsError> {
        self.inner.armed.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn take_events(&self) -> Result<(), VerbsError> {
        if let Some((_, rx)) = &self.inner.channel {
            let mut buf = [0u8; 64];
            while let Ok(n) = (&*rx).read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Why a fake write failed, as a completion status.
struct Fault(u32);

impl FakeQp {
    /// Performs one write; returns the status it completes with.
    fn execute(&self, wr: &WriteRequest<'_>, remote: (Gid, u32), own: (Gid, u32)) -> Result<(), Fault> {
        let peer_dev = lock(&FABRIC).get(&remote.0).and_then(Weak::upgrade).ok_or(Fault(WC_RETRY_EXC_ERR))?;
        let peer_qp = lock(&peer_dev.qps).get(&remote.1).cloned().ok_or(Fault(WC_RETRY_EXC_ERR))?;
        let peer_domain = {
            let p = lock(&peer_qp);
            // The peer must be connected back to us and able to receive.
            if p.state != QpState::Rts || p.remote != Some(own) {
                return Err(Fault(WC_RETRY_EXC_ERR));
            }
            p.domain
        };
        let region = {
            let regions = lock(&peer_dev.regions);
            let r = regions.get(&wr.rkey).ok_or(Fault(WC_REM_ACCESS_ERR))?;
            // Only memory of the receiving queue pair's protection domain is reachable.
            if !r.remote_write || r.domain != peer_domain {
                return Err(Fault(WC_REM_ACCESS_ERR));
            }
            r.mem.clone()
        };
        let len = wr.payload.len();
        let start = wr.remote_addr.checked_sub(region.addr()).ok_or(Fault(WC_REM_ACCESS_ERR))? as usize;
        if start + len > region.len() {
            return Err(Fault(WC_REM_ACCESS_ERR));
        }
        match wr.payload {
            Payload::Inline(bytes) => region.write_bytes_atomic(start, bytes),
            Payload::Registered { lkey, addr, len } => {
                let own_domain = lock(&self.inner).domain;
                let local = lock(&self.dev.regions)
                    .get(&lkey)
                    .filter(|r| r.domain == own_domain)
                    .map(|r| r.mem.clone())
                    .ok_or(Fault(WC_LOC_PROT_ERR))?;
                let from = addr.checked_sub(local.addr()).ok_or(Fault(WC_LOC_PROT_ERR))? as usize;
                if from + len as usize > local.len() {
                    return Err(Fault(WC_LOC_PROT_ERR));
                }
                local.copy_to(from, &region, start, len as usize);
            }
        }
        if wr.imm.is_some() {
            let mut p = lock(&peer_qp);
            match p.recvs.pop_front() {
                Some(id) => {
                    drop(p);
                    peer_dev.complete(Completion { wr_id: id, status: WC_SUCCESS });
                }
                None => p.waiting_imm += 1,
            }
        }
        Ok(())
    }
}

impl QueuePair for FakeQp {
    fn local(&self) -> Endpoint {
        let q = lock(&self.inner);
        Endpoint { gid: self.dev.gid, lid: 0, qpn: q.qpn, psn: q.psn, mtu: 3 }
    }

    fn max_inline(&self) -> u32 {
        lock(&self.inner).inline
    }

    fn connect(&mut self, remote: &Endpoint) -> Result<(), VerbsError> {
        let mut q = lock(&self.inner);
        if q.state != QpState::Init {
            return Err(VerbsError::other("modify QP to RTR", "queue pair not in INIT"));
        }
        q.remote = Some((remote.gid, remote.qpn));
        q.state = QpState::Rts;
        Ok(())
    }

    fn reset(&mut self) -> Result<(), VerbsError> {
        let mut q = lock(&self.inner);
        q.state = QpState::Init;
        q.remote = None;
        q.recvs.clear();
        q.waiting_imm = 0;
        q.outstanding = 0;
        q.held = None;
        q.psn = random_psn();
        Ok(())
    }

    fn post_writes(&mut self, wrs: &[WriteRequest<'_>]) -> Result<(), VerbsError> {
        let (state, remote, own, inline) = {
            let mut q = lock(&self.inner);
            if let Some(c) = q.held.take() {
                self.dev.complete(c);
            }
            if q.outstanding as usize + wrs.len() > q.send_depth as usize {
                return Err(VerbsError::other("post send", "send queue full (ENOMEM)"));
            }
            (q.state, q.remote, (self.dev.gid, q.qpn), q.inline)
        };
        if state == QpState::Init {
            return Err(VerbsError::other("post send", "queue pair not ready (EINVAL)"));
        }
        for wr in wrs {
            if let Payload::Inline(b) = wr.payload
                && b.len() > inline as usize
            {
                return Err(VerbsError::other(
                    "post send",
                    format!("{} inline bytes over the limit {inline}", b.len()),
                ));
            }
        }
        let mut failed = state == QpState::Error;
        for wr in wrs {
            let status = if failed {
                WC_WR_FLUSH_ERR
            } else {
                match remote.ok_or(Fault(WC_RETRY_EXC_ERR)).and_then(|r| self.execute(wr, r, own)) {
                    Ok(()) => WC_SUCCESS,
                    Err(Fault(s)) => s,
                }
            };
            let mut q = lock(&self.inner);
            if status == WC_SUCCESS {
                if wr.signaled {
                    q.outstanding = 0;
                    let c = Completion { wr_id: wr.wr_id, status };
                    if self.dev.withhold.load(Ordering::SeqCst) {
                        let older = q.held.replace(c);
                        drop(q);
                        if let Some(older) = older {
                            self.dev.complete(older);
                        }
                    } else {
                        drop(q);
                        self.dev.complete(c);
                    }
                } else {
                    q.outstanding += 1;
                }
            } else {
                failed = true;
                q.state = QpState::Error;
                q.outstanding = 0;
                drop(q);
                self.dev.complete(Completion { wr_id: wr.wr_id, status });
            }
        }
        Ok(())
    }

    fn post_recvs(&mut self, wr_id: u64, n: u32) -> Result<(), VerbsError> {
        let mut q = lock(&self.inner);
        if q.state == QpState::Error {
            drop(q);
            for _ in 0..n {
                self.dev.complete(Completion { wr_id, status: WC_WR_FLUSH_ERR });
            }
            return Ok(());
        }
        if q.recvs.len() + n as usize > q.recv_depth as usize {
            return Err(VerbsError {
                what: "post receives".into(),
                errno: Some(libc::ENOMEM),
                detail: "receive queue full".into(),
            });
        }
        let mut done = 0;
        for _ in 0..n {
            if q.waiting_imm > 0 {
                q.waiting_imm -= 1;
                done += 1;
            } else {
                q.recvs.push_back(wr_id);
            }
        }
        drop(q);
        for _ in 0..done {
            self.dev.complete(Completion { wr_id, status: WC_SUCCESS });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two devices with a connected queue pair each; also `b`'s queue pair's domain.
    fn pair(event: bool) -> (FakeDevice, FakeQp, FakeDevice, FakeQp, FakeDomain) {
        let caps = QpCaps { send_depth: 8, recv_depth: 8, inline: 64 };
        let a = FakeDevice::new(event);
        let b = FakeDevice::new(event);
        let db = b.alloc_domain().unwrap();
        let mut qa = a.create_qp(&a.alloc_domain().unwrap(), caps).unwrap();
        let mut qb = b.create_qp(&db, caps).unwrap();
        let (ea, eb) = (qa.local(), qb.local());
        qa.connect(&eb).unwrap();
        qb.connect(&ea).unwrap();
        (a, qa, b, qb, db)
    }

    #[test]
    fn writes_land_and_bad_keys_break_the_queue_pair() {
        let (a, mut qa, b, _qb, db) = pair(false);
        let dst = Arc::new(Memory::new(64));
        let (_r, reg) = b.register(&db, &dst, true).unwrap();
        let wr = |id, rkey, addr, data: &'static [u8]| WriteRequest {
            wr_id: id,
            signaled: true,
            remote_addr: addr,
            rkey,
            payload: Payload::Inline(data),
            imm: None,
        };
        qa.post_writes(&[wr(1, reg.rkey, reg.addr + 8, b"12345678")]).unwrap();
        let mut got = [0u8; 8];
        dst.read_bytes_atomic(8, &mut got);
        assert_eq!(&got, b"12345678");
        // Out of bounds: remote access error, then everything is flushed.
        qa.post_writes(&[wr(2, reg.rkey, reg.addr + 60, b"12345678"), wr(3, reg.rkey, reg.addr, b"x")]).unwrap();
        let mut cs = Vec::new();
        a.poll_cq(&mut cs, 16).unwrap();
        assert_eq!(
            cs,
            vec![
                Completion { wr_id: 1, status: 0 },
                Completion { wr_id: 2, status: WC_REM_ACCESS_ERR },
                Completion { wr_id: 3, status: WC_WR_FLUSH_ERR }
            ]
        );
        // Reset and reconnect to a peer that is not connected back: the write fails.
        qa.reset().unwrap();
        assert!(qa.post_writes(&[wr(4, reg.rkey, reg.addr, b"x")]).is_err(), "INIT cannot send");
        let other = b.create_qp(&db, QpCaps { send_depth: 8, recv_depth: 0, inline: 0 }).unwrap();
        qa.connect(&other.local()).unwrap();
        qa.post_writes(&[wr(5, reg.rkey, reg.addr, b"x")]).unwrap();
        cs.clear();
        a.poll_cq(&mut cs, 16).unwrap();
        assert_eq!(cs, vec![Completion { wr_id: 5, status: WC_RETRY_EXC_ERR }]);
        drop(other);
    }

    #[test]
    fn immediates_wait_for_receives_and_wake_the_channel() {
        let (_a, mut qa, b, mut qb, db) = pair(true);
        let dst = Arc::new(Memory::new(64));
        let (_r, reg) = b.register(&db, &dst, true).unwrap();
        b.arm().unwrap();
        let w = WriteRequest {
            wr_id: 9,
            signaled: false,
            remote_addr: reg.addr,
            rkey: reg.rkey,
            payload: Payload::Inline(b"abcdefgh"),
            imm: Some(1),
        };
        qa.post_writes(&[w]).unwrap();
        let mut cs = Vec::new();
        b.poll_cq(&mut cs, 8).unwrap();
        assert!(cs.is_empty(), "no receive posted yet");
        qb.post_recvs(77, 2).unwrap();
        b.poll_cq(&mut cs, 8).unwrap();
        assert_eq!(cs, vec![Completion { wr_id: 77, status: 0 }]);
        let mut byte = [0u8; 1];
        let fd = b.completion_fd().unwrap();
        assert!(fd >= 0);
        let (_, rx) = b.inner.channel.as_ref().unwrap();
        assert_eq!((&*rx).read(&mut byte).unwrap(), 1, "the armed channel was notified");
        b.take_events().unwrap();
    }

    #[test]
    fn inline_limit_and_send_queue_depth_are_enforced() {
        let (_a, mut qa, b, _qb, db) = pair(false);
        let dst = Arc::new(Memory::new(256));
        let (_r, reg) = b.register(&db, &dst, true).unwrap();
        let big = [7u8; 100];
        let w = WriteRequest {
            wr_id: 1,
            signaled: false,
            remote_addr: reg.addr,
            rkey: reg.rkey,
            payload: Payload::Inline(&big),
            imm: None,
        };
        assert!(qa.post_writes(&[w]).is_err(), "100 inline bytes over a 64-byte limit");
        let small = WriteRequest { payload: Payload::Inline(&big[..8]), ..w };
        for _ in 0..8 {
            qa.post_writes(&[small]).unwrap();
        }
        assert!(qa.post_writes(&[small]).is_err(), "9 unsignaled writes in a queue of 8");
    }

    /// Memory registered in another protection domain than the receiving queue pair's cannot
    /// be written through it, even with the right rkey and address: what keeps one RDMA peer
    /// out of another peer's ring.
    #[test]
    fn writes_reach_only_the_receiving_queue_pairs_domain() {
        let (a, mut qa, b, _qb, db) = pair(false);
        let other = b.alloc_domain().unwrap();
        assert_ne!(other, db);
        let (mine, theirs) = (Arc::new(Memory::new(64)), Arc::new(Memory::new(64)));
        let (_r1, own) = b.register(&db, &mine, true).unwrap();
        let (_r2, foreign) = b.register(&other, &theirs, true).unwrap();
        let wr = |id, reg: Registered| WriteRequest {
            wr_id: id,
            signaled: true,
            remote_addr: reg.addr,
            rkey: reg.rkey,
            payload: Payload::Inline(b"intruder"),
            imm: None,
        };
        qa.post_writes(&[wr(1, own)]).unwrap();
        qa.post_writes(&[wr(2, foreign)]).unwrap();
        let mut cs = Vec::new();
        a.poll_cq(&mut cs, 8).unwrap();
        assert_eq!(cs, vec![Completion { wr_id: 1, status: 0 }, Completion { wr_id: 2, status: WC_REM_ACCESS_ERR }]);
        let mut got = [0u8; 8];
        theirs.read_bytes_atomic(0, &mut got);
        assert_eq!(got, [0; 8], "the other domain's memory is untouched");
    }
}
