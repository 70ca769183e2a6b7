//! The small slice of the verbs API the transport uses, as a trait of our own: open a device
//! (done by each implementation's constructor), register memory, create and connect RC queue
//! pairs, post batches of RDMA writes (one doorbell), post receives, poll the completion
//! queue, and wait on a completion channel.
//!
//! Two implementations: [`crate::hw::HwDevice`] over `sideway` (a real adapter or soft-RoCE)
//! and [`crate::fake::FakeDevice`] (in-process memory copies), so the ring, credit and
//! connection logic runs in tests on any machine.

use std::fmt;
use std::os::fd::RawFd;
use std::sync::Arc;

use crate::memory::Memory;

/// A 128-bit global identifier of a port (on RoCE, an IPv6 or IPv4-mapped address).
pub type Gid = [u8; 16];

/// Path MTU as the verbs `ibv_mtu` enumeration encodes it (1: 256 B … 5: 4096 B).
pub type MtuCode = u8;

/// Bytes of a path MTU code.
pub fn mtu_bytes(code: MtuCode) -> u32 {
    128u32 << code.clamp(1, 5)
}

/// What the other end of a queue pair needs to connect to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The port's GID.
    pub gid: Gid,
    /// The port's LID (InfiniBand; 0 on RoCE).
    pub lid: u16,
    /// Queue pair number.
    pub qpn: u32,
    /// First packet sequence number this side sends (24 bits).
    pub psn: u32,
    /// Active MTU of the port.
    pub mtu: MtuCode,
}

/// A registration's addresses and keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registered {
    /// Address of the first byte (what remote writes and local gathers name).
    pub addr: u64,
    /// Length in bytes.
    pub len: usize,
    /// Local key (for work requests that read it).
    pub lkey: u32,
    /// Remote key (for peers that write it).
    pub rkey: u32,
}

/// Where the bytes of a write come from.
#[derive(Clone, Copy, Debug)]
pub enum Payload<'a> {
    /// Copied into the work request when it is posted (at most the queue pair's inline limit).
    Inline(&'a [u8]),
    /// Read by the adapter from registered memory until the write completes.
    Registered {
        /// Local key of the registration.
        lkey: u32,
        /// Address of the first byte.
        addr: u64,
        /// Length in bytes.
        len: u32,
    },
}

impl Payload<'_> {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Self::Inline(b) => b.len(),
            Self::Registered { len, .. } => *len as usize,
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One RDMA write.
#[derive(Clone, Copy, Debug)]
pub struct WriteRequest<'a> {
    /// Returned in its completion.
    pub wr_id: u64,
    /// Generate a completion on success (errors always complete).
    pub signaled: bool,
    /// Destination address in the peer's registration.
    pub remote_addr: u64,
    /// The peer registration's remote key.
    pub rkey: u32,
    /// The bytes.
    pub payload: Payload<'a>,
    /// Write with immediate: the peer consumes a posted receive and gets a completion.
    pub imm: Option<u32>,
}

/// `ibv_wc_status` of a successful completion.
pub const WC_SUCCESS: u32 = 0;

/// A work completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The work request's id.
    pub wr_id: u64,
    /// `ibv_wc_status` (0: success).
    pub status: u32,
}

impl Completion {
    /// Whether the work request succeeded.
    pub fn ok(&self) -> bool {
        self.status == WC_SUCCESS
    }
}

/// The name of an `ibv_wc_status`, for messages.
pub fn status_name(status: u32) -> &'static str {
    match status {
        0 => "success",
        1 => "local length error",
        2 => "local QP operation error",
        3 => "local EE context operation error",
        4 => "local protection error",
        5 => "work request flushed",
        6 => "memory window bind error",
        7 => "bad response",
        8 => "local access error",
        9 => "remote invalid request",
        10 => "remote access error",
        11 => "remote operation error",
        12 => "transport retry counter exceeded",
        13 => "RNR retry counter exceeded",
        14 => "local RDD violation",
        15 => "remote invalid RD request",
        16 => "remote aborted",
        17 => "invalid EE context number",
        18 => "invalid EE context state",
        19 => "fatal error",
        20 => "response timeout",
        21 => "general error",
        _ => "unknown status",
    }
}

/// A verbs call failed.
#[derive(Debug)]
pub struct VerbsError {
    /// What was being done.
    pub what: String,
    /// The OS error (errno) if there is one.
    pub errno: Option<i32>,
    /// More detail.
    pub detail: String,
}

impl VerbsError {
    /// An error with an errno.
    pub fn os(what: impl Into<String>, err: &std::io::Error) -> Self {
        Self { what: what.into(), errno: err.raw_os_error(), detail: err.to_string() }
    }

    /// An error without an errno.
    pub fn other(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { what: what.into(), errno: None, detail: detail.into() }
    }
}

impl fmt::Display for VerbsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.detail)
    }
}

impl std::error::Error for VerbsError {}

/// Queue sizes and the inline limit wanted for a queue pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QpCaps {
    /// Send queue depth.
    pub send_depth: u32,
    /// Receive queue depth (0 when no write carries an immediate).
    pub recv_depth: u32,
    /// Requested inline limit; the device may grant less (see [`QueuePair::max_inline`]).
    pub inline: u32,
}

/// An opened device: protection domains, one completion queue shared by every queue pair (and,
/// in event mode, a completion channel).
///
/// A queue pair reaches — locally or, for its remote peer, by RDMA write — only memory
/// registered in its own protection domain. The transport gives every peer a domain of its
/// own (its two queue pairs and four regions), so a peer that learns the address and rkey of
/// another peer's ring still cannot write into it: the adapter refuses the write with a remote
/// access error.
pub trait Device: Send + 'static {
    /// A protection domain (kept alive by its registrations and queue pairs too).
    type Domain: Send + Clone;
    /// Keeps a registration alive (deregisters when dropped).
    type Region: Send;
    /// A reliable-connected queue pair.
    type Qp: QueuePair;

    /// A line for logs: device, port, GID and MTU in use.
    fn describe(&self) -> String;

    /// Allocates a protection domain.
    fn alloc_domain(&self) -> Result<Self::Domain, VerbsError>;

    /// Registers `mem` in `domain` (local write always; remote write if `remote_write`).
    fn register(
        &self,
        domain: &Self::Domain,
        mem: &Arc<Memory>,
        remote_write: bool,
    ) -> Result<(Self::Region, Registered), VerbsError>;

    /// Creates an RC queue pair in `domain`, in state INIT, on the shared completion queue.
    fn create_qp(&self, domain: &Self::Domain, caps: QpCaps) -> Result<Self::Qp, VerbsError>;

    /// Appends up to `max` completions.
    fn poll_cq(&self, out: &mut Vec<Completion>, max: usize) -> Result<(), VerbsError>;

    /// The completion channel's descriptor (event mode), readable after [`Device::arm`] when a
    /// completion arrives.
    fn completion_fd(&self) -> Option<RawFd>;

    /// Requests a channel event for the next completion.
    fn arm(&self) -> Result<(), VerbsError>;

    /// Consumes (and acknowledges) pending channel events.
    fn take_events(&self) -> Result<(), VerbsError>;
}

/// An RC queue pair.
pub trait QueuePair: Send {
    /// This side's connection details (the PSN changes at every [`QueuePair::reset`]).
    fn local(&self) -> Endpoint;

    /// Inline bytes the device granted.
    fn max_inline(&self) -> u32;

    /// Connects to `remote`: INIT → RTR → RTS, path MTU the smaller of both ports'.
    fn connect(&mut self, remote: &Endpoint) -> Result<(), VerbsError>;

    /// Back to INIT from any state with a fresh PSN; outstanding work (posted receives
    /// included) is discarded. An implementation may replace the queue pair, so the QPN may
    /// change: read [`QueuePair::local`] again.
    fn reset(&mut self) -> Result<(), VerbsError>;

    /// Posts `wrs` in order with one doorbell.
    fn post_writes(&mut self, wrs: &[WriteRequest<'_>]) -> Result<(), VerbsError>;

    /// Posts `n` receives without buffers (they only catch immediates), all with `wr_id`.
    fn post_recvs(&mut self, wr_id: u64, n: u32) -> Result<(), VerbsError>;
}

/// A fresh random 24-bit packet sequence number.
pub fn random_psn() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    (h.finish() as u32) & 0x00ff_ffff
}
