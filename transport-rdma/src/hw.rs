//! [`HwDevice`]: the [`Device`] trait over `sideway` — a real adapter or soft-RoCE.
//!
//! `sideway` loads `libibverbs.so.1` at run time, so this builds and links everywhere; on a
//! host without the library, without kernel RDMA support or without a device, opening fails
//! with one [`TransportError::Unavailable`] whose reason names the fix ([`diagnose`]).
//!
//! Choices made here:
//! - port 1 of the device; GID: the configured index, else the first RoCEv2 IPv4-mapped GID
//!   (what RoCE over IPv4 needs), else the first RoCEv2 one, else index 0 (InfiniBand);
//! - queue pairs use the extended post API (`ibv_wr_start` … `ibv_wr_complete`: one doorbell
//!   per batch) and fall back to `ibv_post_send` lists where the provider lacks it; the inline
//!   limit is probed by asking for the configured size and halving on refusal, then read back;
//! - the classic completion queue (`ibv_poll_cq`), not the extended one: rdma-core's rxe
//!   provider (v44) ends an extended poll itself when `ibv_next_poll` runs dry, so the
//!   `ibv_end_poll` that must follow advances the consumer index twice (completions are
//!   skipped, zeroed ones appear);
//! - RC timeouts: local ACK timeout 16 (≈ 268 ms; soft-RoCE under emulation is slow), 7
//!   retries, infinite RNR retries;
//! - memory locking is checked before registering (`RLIMIT_MEMLOCK` unless `CAP_IPC_LOCK`).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use picsou_runtime::transport::TransportError;
use picsou_runtime::transport::options::RdmaOptions;
use sideway::ibverbs::AccessFlags;
use sideway::ibverbs::address::{AddressHandleAttribute, Gid as SwGid};
use sideway::ibverbs::completion::{CompletionChannel, CompletionQueue, GenericCompletionQueue};
use sideway::ibverbs::device::{DeviceInfo, DeviceList};
use sideway::ibverbs::device_context::{DeviceContext, LinkLayer, Mtu, PortState};
use sideway::ibverbs::memory_region::MemoryRegion;
use sideway::ibverbs::protection_domain::ProtectionDomain;
use sideway::ibverbs::queue_pair::{
    GenericQueuePair, PostSendGuard, QueuePair as SwQueuePair, QueuePairAttribute, QueuePairAttributeMask,
    QueuePairState, SendOperationFlags, SetInlineData, SetScatterGatherEntry, WorkRequestFlags,
};

use crate::memory::Memory;
use crate::verbs::{
    Completion, Device, Endpoint, Gid, MtuCode, Payload, QpCaps, QueuePair, Registered, VerbsError, WriteRequest,
    random_psn,
};

const PORT: u8 = 1;
const ACK_TIMEOUT: u8 = 16;
const RETRY_COUNT: u8 = 7;
const RNR_RETRY_INFINITE: u8 = 7;
const MIN_RNR_TIMER: u8 = 12;
const HOP_LIMIT: u8 = 64;
const CAP_IPC_LOCK: u32 = 14;

/// What the host offers, for [`diagnose`] (read from `/sys`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostView {
    /// Entries of `/sys/class/infiniband`, or `None` if it does not exist.
    pub sysfs_devices: Option<Vec<String>>,
    /// `rdma_rxe` is loaded.
    pub rxe_loaded: bool,
}

impl HostView {
    /// Reads it from this host.
    pub fn read() -> Self {
        let sysfs_devices = std::fs::read_dir("/sys/class/infiniband").ok().map(|d| {
            let mut v: Vec<String> =
                d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            v.sort();
            v
        });
        Self { sysfs_devices, rxe_loaded: Path::new("/sys/module/rdma_rxe").exists() }
    }
}

const SOFT_ROCE: &str = "for soft-RoCE on any Ethernet interface: `modprobe rdma_rxe && rdma link add rxe0 type rxe netdev eth0` \
     (rdma_rxe ships with most distribution kernels, e.g. Debian's linux-image-amd64)";

/// Why no device could be opened, and what to do. `list_errno` is the error of listing
/// devices (`None`: the list was empty or lacked `wanted`); `found` the devices listed.
pub fn diagnose(list_errno: Option<i32>, found: &[String], wanted: &str, host: &HostView) -> String {
    match list_errno {
        Some(libc::EOPNOTSUPP) => {
            return "libibverbs.so.1 could not be loaded: install rdma-core and the providers \
                    (Debian/Ubuntu: apt-get install rdma-core ibverbs-providers)"
                .into();
        }
        Some(libc::ENOSYS) => {
            return format!(
                "this kernel has no RDMA support (listing devices: function not implemented): run on a kernel with \
                 InfiniBand/RDMA enabled and an RDMA NIC, or {SOFT_ROCE}"
            );
        }
        Some(e) => return format!("listing RDMA devices failed: {}", io::Error::from_raw_os_error(e)),
        None => {}
    }
    if !wanted.is_empty() && !found.is_empty() {
        return format!(
            "no RDMA device named {wanted:?} (found: {}); set transport.rdma.device to one of them, or \"\" for the first",
            found.join(", ")
        );
    }
    match &host.sysfs_devices {
        None if host.rxe_loaded => format!("no RDMA device: rdma_rxe is loaded but has no link; {SOFT_ROCE}"),
        None => format!("no RDMA device (no RDMA driver loaded: /sys/class/infiniband is missing); {SOFT_ROCE}"),
        Some(v) if v.is_empty() && host.rxe_loaded => {
            format!("no RDMA device: rdma_rxe is loaded but no rxe link exists; {SOFT_ROCE}")
        }
        Some(v) if v.is_empty() => format!("no RDMA device; {SOFT_ROCE}"),
        Some(v) => format!(
            "the kernel has RDMA devices ({}) but libibverbs lists none: install the user-space provider \
             (Debian/Ubuntu: apt-get install ibverbs-providers)",
            v.join(", ")
        ),
    }
}

/// `RLIMIT_MEMLOCK` in bytes (`None`: unlimited) and whether the process has `CAP_IPC_LOCK`
/// (which lifts it), from `/proc/self`.
fn memlock() -> (Option<u64>, bool) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let limit = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<u64>().ok());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|c| c & (1 << CAP_IPC_LOCK) != 0);
    (limit, cap)
}

/// Bytes the transport pins for `peers` peers with rings of `ring` bytes.
pub fn pinned_bytes(ring: usize, peers: usize) -> u64 {
    // A ring and a staging region per peer, plus two credit words (a page each, rounded).
    (peers as u64) * (2 * ring as u64 + 2 * 4096)
}

fn memlock_advice(need: u64, limit: Option<u64>) -> String {
    format!(
        "the rings need {} KiB of locked memory but RLIMIT_MEMLOCK is {}: raise it (`ulimit -l unlimited`, \
         LimitMEMLOCK=infinity for a systemd service, or memlock in /etc/security/limits.conf), or lower \
         transport.rdma.ring_bytes",
        need.div_ceil(1024),
        limit.map_or("unlimited".to_string(), |l| format!("{} KiB", l / 1024))
    )
}

/// A verbs failure at start-up, explained (memory locking above all).
pub(crate) fn explain(what: &str, e: &VerbsError, ring: usize, peers: usize) -> String {
    match e.errno {
        Some(libc::ENOMEM) | Some(libc::EPERM) if what.contains("register") => {
            format!("{what}: {e}; {}", memlock_advice(pinned_bytes(ring, peers), memlock().0))
        }
        _ => format!("{what} on the RDMA device: {e}"),
    }
}

/// An opened RDMA device (see the module documentation).
pub struct HwDevice {
    // Field order is drop order: completion queue and channel before the context (protection
    // domains are held by the queue pairs and registrations made in them).
    cq: GenericCompletionQueue,
    channel: Option<Arc<CompletionChannel>>,
    ctx: Arc<DeviceContext>,
    gid: Gid,
    gid_index: u8,
    lid: u16,
    mtu: MtuCode,
    ethernet: bool,
    describe: String,
}

impl std::fmt::Debug for HwDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

fn verbs(what: &str, e: impl std::error::Error) -> VerbsError {
    // sideway wraps io::Error in a chain; report the whole chain.
    let mut detail = e.to_string();
    let mut errno = None;
    let mut src = e.source();
    while let Some(s) = src {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        if let Some(io) = s.downcast_ref::<io::Error>() {
            errno = errno.or(io.raw_os_error());
        }
        src = s.source();
    }
    VerbsError { what: what.to_string(), errno, detail }
}

/// Why no RDMA device can be used here: a sentence naming the fix ([`diagnose`], the memory
/// locking advice, or the verbs call that failed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

pub(crate) fn unavailable(reason: String) -> TransportError {
    TransportError::Unavailable { kind: "rdma", source: Box::new(Unavailable(reason)) }
}

fn is_ipv4_mapped(g: &Gid) -> bool {
    g[..10].iter().all(|&b| b == 0) && g[10] == 0xff && g[11] == 0xff
}

fn gid_text(g: &Gid) -> String {
    if is_ipv4_mapped(g) {
        format!("::ffff:{}.{}.{}.{}", g[12], g[13], g[14], g[15])
    } else {
        std::net::Ipv6Addr::from(*g).to_string()
    }
}

/// Whether GID `index` of `device` is RoCE v2 (sysfs types read "RoCE v2").
fn is_roce_v2(ctx: &DeviceContext, device: &str, index: u32) -> bool {
    match ctx.query_gid_type(PORT, index) {
        // IBV_GID_TYPE_SYSFS_ROCE_V2
        Ok(t) => t == 1,
        Err(_) => {
            std::fs::read_to_string(format!("/sys/class/infiniband/{device}/ports/{PORT}/gid_attrs/types/{index}"))
                .is_ok_and(|s| s.contains("v2"))
        }
    }
}

impl HwDevice {
    /// Opens the device the options name (or the first), checks its port and memory locking
    /// for `peers` peers, and creates the completion queue (with a channel if `event`).
    pub fn open(opts: &RdmaOptions, peers: usize, event: bool) -> Result<Self, TransportError> {
        let list = match DeviceList::new() {
            Ok(l) => l,
            Err(e) => {
                let errno = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<io::Error>())
                    .and_then(io::Error::raw_os_error)
                    .or_else(|| match &e.0 {
                        sideway::ibverbs::device::GetDeviceListErrorKind::Ibverbs(io) => io.raw_os_error(),
                        _ => None,
                    })
                    .unwrap_or(libc::EIO);
                return Err(unavailable(diagnose(Some(errno), &[], &opts.device, &HostView::read())));
            }
        };
        let names: Vec<String> = list.iter().map(|d| d.name()).collect();
        let pick = if opts.device.is_empty() {
            (!names.is_empty()).then_some(0)
        } else {
            names.iter().position(|n| *n == opts.device)
        };
        let Some(pick) = pick else {
            return Err(unavailable(diagnose(None, &names, &opts.device, &HostView::read())));
        };
        let name = names[pick].clone();
        let device = list.get(pick).ok_or_else(|| unavailable(format!("device {name} vanished")))?;
        let ctx = device.open().map_err(|e| unavailable(format!("open {name}: {}", verbs("open", e))))?;
        let port = ctx.query_port(PORT).map_err(|e| unavailable(format!("query port {PORT} of {name}: {e}")))?;
        if port.port_state() != PortState::Active {
            return Err(unavailable(format!(
                "port {PORT} of {name} is {:?}, not active: bring its network interface up (`ip link set <netdev> up`)",
                port.port_state()
            )));
        }
        let ethernet = port.link_layer() == LinkLayer::Ethernet;
        let mtu = port.active_mtu() as u32 as MtuCode;
        let (gid_index, gid) = Self::pick_gid(&ctx, &name, opts, port.gid_tbl_len(), ethernet)?;
        let (limit, cap) = memlock();
        let need = pinned_bytes(opts.ring_bytes, peers);
        if !cap && limit.is_some_and(|l| l < need) {
            return Err(unavailable(memlock_advice(need, limit)));
        }
        let cqe = ((peers as u32) * 2 * (crate::link::SQ_DEPTH + crate::link::RECV_DEPTH + 32) + 64)
            .min(ctx.query_device().map(|a| a.max_cqe().max(64) as u32).unwrap_or(4096));
        let channel = if event {
            let ch = ctx.create_comp_channel().map_err(|e| unavailable(format!("create a completion channel: {e}")))?;
            ch.set_nonblocking(true).map_err(|e| unavailable(format!("completion channel: {e}")))?;
            Some(ch)
        } else {
            None
        };
        let mut builder = ctx.create_cq_builder();
        builder.setup_cqe(cqe);
        if let Some(ch) = &channel {
            builder.setup_comp_channel(ch, 0);
        }
        // The classic completion queue (`ibv_poll_cq`), not the extended one: rdma-core's rxe
        // provider (v44) finishes an extended poll itself when `ibv_next_poll` runs dry, so the
        // `ibv_end_poll` that must follow advances the consumer index a second time — entries
        // are skipped and zeroed ones appear.
        let cq = GenericCompletionQueue::from(
            builder.build().map_err(|e| unavailable(format!("create a completion queue of {cqe}: {e}")))?,
        );
        let describe = format!(
            "{name} port {PORT}, GID index {gid_index} ({}), MTU {}{}",
            gid_text(&gid),
            crate::verbs::mtu_bytes(mtu),
            if ethernet { ", RoCE" } else { ", InfiniBand" }
        );
        Ok(Self { cq, channel, ctx, gid, gid_index, lid: port.lid(), mtu, ethernet, describe })
    }

    fn pick_gid(
        ctx: &DeviceContext,
        name: &str,
        opts: &RdmaOptions,
        table: i32,
        ethernet: bool,
    ) -> Result<(u8, Gid), TransportError> {
        let read = |i: u32| ctx.query_gid(PORT, i).ok().map(|g| g.raw).filter(|g| g.iter().any(|&b| b != 0));
        if let Some(i) = opts.gid_index {
            let g = read(i).ok_or_else(|| {
                unavailable(format!(
                    "GID index {i} of {name} port {PORT} is empty or invalid (transport.rdma.gid_index)"
                ))
            })?;
            let i = u8::try_from(i).map_err(|_| unavailable(format!("GID index {i} over 255")))?;
            return Ok((i, g));
        }
        let mut first_v2 = None;
        let mut first = None;
        for i in 0..table.max(0) as u32 {
            let Some(g) = read(i) else { continue };
            first.get_or_insert((i, g));
            if ethernet && is_roce_v2(ctx, name, i) {
                if is_ipv4_mapped(&g) {
                    return Ok((i as u8, g));
                }
                first_v2.get_or_insert((i, g));
            }
        }
        let (i, g) = first_v2.or(first).ok_or_else(|| {
            unavailable(format!(
                "{name} port {PORT} has no GID: give its network interface an IP address (e.g. `ip addr add 192.168.100.10/24 dev <netdev>`)"
            ))
        })?;
        Ok((i as u8, g))
    }
}

/// A registration on a [`HwDevice`]; keeps its memory alive until deregistered.
pub struct HwRegion {
    // Deregister before the memory may be freed and the domain released.
    _mr: Arc<MemoryRegion>,
    _pd: Arc<ProtectionDomain>,
    _mem: Arc<Memory>,
}

/// A queue pair on a [`HwDevice`].
pub struct HwQp {
    qp: GenericQueuePair,
    pd: Arc<ProtectionDomain>,
    cq: GenericCompletionQueue,
    caps: QpCaps,
    psn: u32,
    inline: u32,
    gid: Gid,
    gid_index: u8,
    lid: u16,
    mtu: MtuCode,
    ethernet: bool,
}

impl Device for HwDevice {
    type Domain = Arc<ProtectionDomain>;
    type Region = HwRegion;
    type Qp = HwQp;

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn alloc_domain(&self) -> Result<Arc<ProtectionDomain>, VerbsError> {
        self.ctx.alloc_pd().map_err(|e| verbs("allocate a protection domain (ibv_alloc_pd)", e))
    }

    fn register(
        &self,
        pd: &Arc<ProtectionDomain>,
        mem: &Arc<Memory>,
        remote_write: bool,
    ) -> Result<(HwRegion, Registered), VerbsError> {
        let access =
            if remote_write { AccessFlags::LocalWrite | AccessFlags::RemoteWrite } else { AccessFlags::LocalWrite };
        #[allow(unsafe_code)]
        // SAFETY: `mem` is a boxed slice of `mem.len()` bytes at `mem.addr()` that never moves or
        // shrinks; the returned region holds an `Arc` to it and drops the registration first,
        // so the adapter never accesses freed memory. Rust reads polled words with atomic loads
        // and copies bulk bytes only where the adapter does not access them meanwhile (the
        // `unsafe` contracts of `Memory::write_bytes`, `read_bytes` and `append_to`).
        let mr = unsafe { pd.reg_mr(mem.addr() as usize, mem.len(), access) }
            .map_err(|e| verbs("register memory (ibv_reg_mr)", e))?;
        let reg = Registered { addr: mem.addr(), len: mem.len(), lkey: mr.lkey(), rkey: mr.rkey() };
        Ok((HwRegion { _mr: mr, _pd: pd.clone(), _mem: mem.clone() }, reg))
    }

    fn create_qp(&self, pd: &Arc<ProtectionDomain>, caps: QpCaps) -> Result<HwQp, VerbsError> {
        let (qp, granted) = build_qp(pd, &self.cq, caps)?;
        let mut q = HwQp {
            qp,
            pd: pd.clone(),
            cq: self.cq.clone(),
            // Later rebuilds ask for what was granted, without probing again.
            caps: QpCaps { inline: granted, ..caps },
            psn: random_psn(),
            inline: granted,
            gid: self.gid,
            gid_index: self.gid_index,
            lid: self.lid,
            mtu: self.mtu,
            ethernet: self.ethernet,
        };
        q.reinit()?;
        Ok(q)
    }

    fn poll_cq(&self, out: &mut Vec<Completion>, max: usize) -> Result<(), VerbsError> {
        let poller = match self.cq.start_poll() {
            Ok(p) => p,
            Err(sideway::ibverbs::completion::PollCompletionQueueError::CompletionQueueEmpty) => return Ok(()),
            Err(e) => return Err(verbs("poll the completion queue", e)),
        };
        for wc in poller.take(max) {
            out.push(Completion { wr_id: wc.wr_id(), status: wc.status() });
        }
        Ok(())
    }

    fn completion_fd(&self) -> Option<RawFd> {
        self.channel.as_ref().map(|c| c.as_raw_fd())
    }

    fn arm(&self) -> Result<(), VerbsError> {
        #[allow(unsafe_code)]
        // SAFETY: the completion queue is alive (owned by `self`), and `ibv_req_notify_cq` is the
        // provider's `req_notify_cq` operation on the CQ's context, which is what the C inline
        // function of that name calls; it only reads and writes provider state of this CQ.
        let ret = unsafe {
            let cq = self.cq.cq().as_ptr();
            match (*(*cq).context).ops.req_notify_cq {
                Some(f) => f(cq, 0),
                None => libc::EOPNOTSUPP,
            }
        };
        if ret == 0 {
            Ok(())
        } else {
            Err(VerbsError::os("request a completion event", &io::Error::from_raw_os_error(ret)))
        }
    }

    fn take_events(&self) -> Result<(), VerbsError> {
        let Some(ch) = &self.channel else { return Ok(()) };
        let mut n = 0u32;
        loop {
            let mut cq: *mut rdma_mummy_sys::ibv_cq = std::ptr::null_mut();
            let mut context: *mut std::ffi::c_void = std::ptr::null_mut();
            #[allow(unsafe_code)]
            // SAFETY: the channel is alive and non-blocking; both out-pointers point to locals.
            let ret = unsafe { rdma_mummy_sys::ibv_get_cq_event(ch.comp_channel().as_ptr(), &mut cq, &mut context) };
            if ret != 0 {
                break;
            }
            n += 1;
        }
        if n > 0 {
            #[allow(unsafe_code)]
            // SAFETY: the only CQ on this channel is `self.cq`, alive; `n` events were taken.
            unsafe {
                rdma_mummy_sys::ibv_ack_cq_events(self.cq.cq().as_ptr(), n);
            }
        }
        Ok(())
    }
}

/// Creates an RC queue pair on the shared completion queue: extended (batched posting) if the
/// provider has it, the classic one otherwise; the inline limit asked for is halved until the
/// device accepts it. Returns the queue pair and the inline bytes granted.
fn build_qp(
    pd: &Arc<ProtectionDomain>,
    cq: &GenericCompletionQueue,
    caps: QpCaps,
) -> Result<(GenericQueuePair, u32), VerbsError> {
    let mut inline = caps.inline;
    let qp = loop {
        let mut b = pd.create_qp_builder();
        b.setup_send_cq(cq.clone())
            .setup_recv_cq(cq.clone())
            .setup_max_send_wr(caps.send_depth)
            .setup_max_recv_wr(caps.recv_depth.max(1))
            .setup_max_send_sge(1)
            .setup_max_recv_sge(1)
            .setup_max_inline_data(inline)
            .setup_send_ops_flags(SendOperationFlags::Write | SendOperationFlags::WriteWithImmediate);
        match b.build_ex() {
            Ok(qp) => break GenericQueuePair::from(qp),
            Err(e) if inline > 0 => {
                tracing::debug!("queue pair with {inline} inline bytes refused ({e}); asking for less");
                inline /= 2;
            }
            Err(e) => {
                tracing::debug!("extended queue pair refused ({e}); using ibv_post_send");
                inline = caps.inline;
                break loop {
                    b.setup_max_inline_data(inline);
                    match b.build() {
                        Ok(qp) => break GenericQueuePair::from(qp),
                        Err(_) if inline > 0 => inline /= 2,
                        Err(e) => return Err(verbs("create a queue pair", e)),
                    }
                };
            }
        }
    };
    // What was granted (a provider may round up or down).
    let granted = qp
        .query(QueuePairAttributeMask::Capabilities)
        .map(|(_, init)| init.max_inline_data())
        .unwrap_or(inline)
        .min(inline.max(caps.inline));
    Ok((qp, granted))
}

impl HwQp {
    fn modify(&mut self, what: &str, attr: &QueuePairAttribute) -> Result<(), VerbsError> {
        self.qp.modify(attr).map_err(|e| verbs(what, e))
    }

    fn reinit(&mut self) -> Result<(), VerbsError> {
        let mut a = QueuePairAttribute::new();
        a.setup_state(QueuePairState::Init)
            .setup_pkey_index(0)
            .setup_port(PORT)
            .setup_access_flags(AccessFlags::LocalWrite | AccessFlags::RemoteWrite);
        self.modify("modify QP to INIT", &a)
    }
}

impl QueuePair for HwQp {
    fn local(&self) -> Endpoint {
        Endpoint { gid: self.gid, lid: self.lid, qpn: self.qp.qp_number(), psn: self.psn, mtu: self.mtu }
    }

    fn max_inline(&self) -> u32 {
        self.inline
    }

    fn connect(&mut self, remote: &Endpoint) -> Result<(), VerbsError> {
        let mut ah = AddressHandleAttribute::new();
        ah.setup_dest_lid(remote.lid).setup_port(PORT).setup_service_level(0);
        if self.ethernet || remote.lid == 0 {
            ah.setup_grh(&SwGid { raw: remote.gid }, 0, self.gid_index, HOP_LIMIT, 0);
        }
        let mtu = Mtu::from(u32::from(self.mtu.min(remote.mtu).clamp(1, 5)));
        let mut rtr = QueuePairAttribute::new();
        rtr.setup_state(QueuePairState::ReadyToReceive)
            .setup_path_mtu(mtu)
            .setup_dest_qp_num(remote.qpn)
            .setup_rq_psn(remote.psn)
            .setup_max_dest_read_atomic(1)
            .setup_min_rnr_timer(MIN_RNR_TIMER)
            .setup_address_vector(&ah);
        self.modify("modify QP to RTR", &rtr)?;
        let mut rts = QueuePairAttribute::new();
        rts.setup_state(QueuePairState::ReadyToSend)
            .setup_sq_psn(self.psn)
            .setup_timeout(ACK_TIMEOUT)
            .setup_retry_cnt(RETRY_COUNT)
            .setup_rnr_retry(RNR_RETRY_INFINITE)
            .setup_max_read_atomic(1);
        self.modify("modify QP to RTS", &rts)
    }

    /// Replaces the queue pair with a new one in INIT (new QPN, new PSN). A transition to
    /// RESET would be cheaper, but soft-RoCE keeps a reset queue pair's posted receives, so
    /// the next connection's receives would not fit; a new queue pair starts clean everywhere.
    fn reset(&mut self) -> Result<(), VerbsError> {
        let (qp, _) = build_qp(&self.pd, &self.cq, self.caps)?;
        // The old queue pair is destroyed here; its completions still in the shared queue carry
        // an older connection epoch and are ignored.
        self.qp = qp;
        self.psn = random_psn();
        self.reinit()
    }

    fn post_writes(&mut self, wrs: &[WriteRequest<'_>]) -> Result<(), VerbsError> {
        let mut guard = self.qp.start_post_send();
        for wr in wrs {
            let mut flags = if wr.signaled { WorkRequestFlags::Signaled } else { WorkRequestFlags::none() };
            // Providers such as rxe take the inline flag from the work request flags even
            // with ibv_wr_set_inline_data (without it they look for a scatter list).
            if matches!(wr.payload, Payload::Inline(_)) {
                flags |= WorkRequestFlags::Inline;
            }
            let h = guard.construct_wr(wr.wr_id, flags);
            let h = match wr.imm {
                Some(imm) => h.setup_write_imm(wr.rkey, wr.remote_addr, imm),
                None => h.setup_write(wr.rkey, wr.remote_addr),
            };
            match wr.payload {
                Payload::Inline(bytes) => h.setup_inline_data(bytes),
                Payload::Registered { lkey, addr, len } => {
                    #[allow(unsafe_code)]
                    // SAFETY: the range lies in a registration of the transport (staging or
                    // credit source), which outlives every queue pair; the transport does not
                    // reuse those bytes before this write's completion (or a later one's) is
                    // reaped, or the queue pair is reset.
                    unsafe {
                        h.setup_sge(lkey, addr, len)
                    }
                }
            }
        }
        guard.post().map_err(|e| verbs("post RDMA writes", e))
    }

    fn post_recvs(&mut self, wr_id: u64, n: u32) -> Result<(), VerbsError> {
        let mut guard = self.qp.start_post_recv();
        for _ in 0..n {
            guard.construct_wr(wr_id);
        }
        guard.post().map_err(|e| verbs("post receives", e))
    }
}

/// Opens the device the options name and reports what it would use, or why it cannot (for
/// tests that need a device, and for diagnostics).
pub fn probe(opts: &RdmaOptions) -> Result<String, TransportError> {
    HwDevice::open(opts, 1, false).map(|d| d.describe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_piece_names_its_fix() {
        let none = HostView { sysfs_devices: None, rxe_loaded: false };
        assert!(
            diagnose(Some(libc::EOPNOTSUPP), &[], "", &none).contains("apt-get install rdma-core ibverbs-providers")
        );
        let m = diagnose(Some(libc::ENOSYS), &[], "", &none);
        assert!(m.contains("no RDMA support") && m.contains("modprobe rdma_rxe"), "{m}");
        let m = diagnose(None, &[], "", &none);
        assert!(m.contains("no RDMA driver loaded") && m.contains("rdma link add"), "{m}");
        let rxe = HostView { sysfs_devices: Some(vec![]), rxe_loaded: true };
        assert!(diagnose(None, &[], "", &rxe).contains("rdma_rxe is loaded but no rxe link"));
        let m = diagnose(None, &["mlx5_0".into()], "rxe0", &none);
        assert!(m.contains("no RDMA device named \"rxe0\"") && m.contains("mlx5_0"), "{m}");
        let sys = HostView { sysfs_devices: Some(vec!["rxe0".into()]), rxe_loaded: true };
        assert!(diagnose(None, &[], "", &sys).contains("ibverbs-providers"));
        let m = memlock_advice(pinned_bytes(4 << 20, 7), Some(8 << 20));
        assert!(m.contains("ulimit -l unlimited") && m.contains("ring_bytes") && m.contains("8192 KiB"), "{m}");
    }

    #[test]
    fn gid_helpers() {
        let mut g = [0u8; 16];
        g[10] = 0xff;
        g[11] = 0xff;
        g[12..].copy_from_slice(&[192, 168, 100, 10]);
        assert!(is_ipv4_mapped(&g));
        assert_eq!(gid_text(&g), "::ffff:192.168.100.10");
        g[0] = 0xfe;
        assert!(!is_ipv4_mapped(&g));
    }

    #[test]
    fn memlock_reads_this_process() {
        let (limit, _cap) = memlock();
        // Every Linux process has a limit line; it may be unlimited.
        let text = std::fs::read_to_string("/proc/self/limits").unwrap();
        assert_eq!(
            limit.is_none(),
            text.lines().any(|l| l.starts_with("Max locked memory") && l.contains("unlimited"))
        );
    }
}
