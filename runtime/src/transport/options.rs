//! Per-kind transport options, as they appear under `[transport]` in a deployment file.
//!
//! Switching transport is one line (`kind = "tcp"` → `kind = "uring"`); the options of every
//! kind may stay in the file, only those of the selected kind are used.

use std::time::Duration;

use picsou_core::config::millis;
use serde::{Deserialize, Serialize};

/// Which transport carries frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// In-process queues: every replica in one process (tests, the embedded default's
    /// single-process mode).
    Mem,
    /// Non-blocking TCP sockets driven by epoll (mio) in the node thread.
    #[default]
    Tcp,
    /// TCP sockets driven by io_uring in a transport-owned thread.
    Uring,
    /// RDMA verbs, one-sided writes into remote rings.
    Rdma,
}

impl TransportKind {
    /// The name used in files and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mem => "mem",
            Self::Tcp => "tcp",
            Self::Uring => "uring",
            Self::Rdma => "rdma",
        }
    }
}

/// The `[transport]` table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportOptions {
    /// The transport in use.
    pub kind: TransportKind,
    /// Options of the TCP transport (also used by io_uring for socket settings and when it
    /// falls back to TCP).
    pub tcp: TcpOptions,
    /// Options of the io_uring transport.
    pub uring: UringOptions,
    /// Options of the RDMA transport.
    pub rdma: RdmaOptions,
}

/// `[transport.tcp]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpOptions {
    /// Disable Nagle's algorithm (frames are already batched by the node).
    pub nodelay: bool,
    /// Kernel send buffer size in bytes (`SO_SNDBUF`); 0 keeps the system default.
    pub send_buffer: usize,
    /// Kernel receive buffer size in bytes (`SO_RCVBUF`); 0 keeps the system default.
    pub recv_buffer: usize,
    /// Bytes queued in user space per peer before `send` reports the peer full.
    pub max_queued_bytes: usize,
    /// Give up a dial attempt after this long, in (fractional) milliseconds.
    #[serde(with = "millis")]
    pub connect_timeout: Duration,
    /// First redial delay after a failure, in milliseconds (doubles per failure).
    #[serde(with = "millis")]
    pub backoff_min: Duration,
    /// Longest redial delay, in milliseconds.
    #[serde(with = "millis")]
    pub backoff_max: Duration,
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self {
            nodelay: true,
            send_buffer: 0,
            recv_buffer: 0,
            max_queued_bytes: 8 << 20,
            connect_timeout: Duration::from_millis(1000),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(1000),
        }
    }
}

/// `[transport.uring]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UringOptions {
    /// If io_uring is unavailable: `true` falls back to TCP with one log line saying why,
    /// `false` makes starting the node fail.
    pub fallback: bool,
    /// Submission queue entries (a power of two).
    pub entries: u32,
    /// Provided receive buffers in the buffer ring (a power of two, at most 32768).
    pub recv_buffers: u32,
    /// Size of each provided receive buffer in bytes.
    pub recv_buffer_size: u32,
    /// Sends of at least this many bytes use `SEND_ZC`; 0 disables zero-copy sends. Over
    /// loopback the kernel copies anyway, so the default is off; measure on a real NIC.
    pub zerocopy_threshold: usize,
}

impl Default for UringOptions {
    fn default() -> Self {
        Self { fallback: true, entries: 256, recv_buffers: 256, recv_buffer_size: 64 * 1024, zerocopy_threshold: 0 }
    }
}

/// Notification mode of the RDMA transport's receivers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RdmaPolling {
    /// Receivers spin on ring memory (lowest latency, burns a core).
    #[default]
    Busy,
    /// Writes carry an immediate; receivers block on a completion channel.
    Event,
}

/// `[transport.rdma]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RdmaOptions {
    /// RDMA device name (e.g. `rxe0`, `mlx5_0`); empty picks the first device.
    pub device: String,
    /// GID index; absent picks the RoCEv2 IPv4-mapped GID automatically.
    pub gid_index: Option<u32>,
    /// Size of each receive ring (one per remote sender) in bytes.
    pub ring_bytes: usize,
    /// Requested inline data limit in bytes (the device may grant less); 0 disables inline.
    pub inline: u32,
    /// How receivers learn of new records.
    pub polling: RdmaPolling,
    /// Busy polling: microseconds `poll` keeps spinning on ring memory after the last activity
    /// before it sleeps in steps of at most a millisecond (looking at memory between steps), so
    /// an idle replica does not hold a core. Larger values trade CPU for latency.
    pub spin_us: u64,
}

impl Default for RdmaOptions {
    fn default() -> Self {
        Self {
            device: String::new(),
            gid_index: None,
            ring_bytes: 4 << 20,
            inline: 256,
            polling: RdmaPolling::Busy,
            spin_us: 100,
        }
    }
}
