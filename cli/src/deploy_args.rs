//! Flags shared by `picsou node`, `picsou local` and `picsou bench`: which deployment file,
//! and overrides of its most-changed fields.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use picsou_core::Strategy;
use picsou_runtime::deployment::{DeploymentConfig, DeploymentError, Senders};
use picsou_runtime::transport::TransportKind;

/// Transport kind, as a command-line value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum KindArg {
    /// In-process queues (every replica in one process).
    Mem,
    /// TCP with epoll.
    Tcp,
    /// TCP with io_uring.
    Uring,
    /// RDMA verbs.
    Rdma,
}

impl From<KindArg> for TransportKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Mem => Self::Mem,
            KindArg::Tcp => Self::Tcp,
            KindArg::Uring => Self::Uring,
            KindArg::Rdma => Self::Rdma,
        }
    }
}

/// Which RSMs send, as a command-line value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SendersArg {
    /// Both RSMs send a stream.
    Both,
    /// Only the first RSM sends.
    First,
    /// Only the second RSM sends.
    Second,
}

/// The deployment file and overrides.
#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// Deployment file (TOML). Without it, the embedded default: two RSMs of 4 replicas, TCP on
    /// loopback ports 27100–27103 and 27200–27203.
    #[arg(long, value_name = "FILE.toml")]
    pub(crate) config: Option<PathBuf>,
    /// Override `[transport] kind`.
    #[arg(long, value_enum)]
    pub(crate) transport: Option<KindArg>,
    /// Override `strategy` (picsou, ost, ata, ll, otu).
    #[arg(long)]
    pub(crate) strategy: Option<Strategy>,
    /// Override `[load] messages`.
    #[arg(long)]
    pub(crate) messages: Option<u64>,
    /// Override `[load] size` (payload bytes).
    #[arg(long)]
    pub(crate) size: Option<usize>,
    /// Override `[load] senders`.
    #[arg(long, value_enum)]
    pub(crate) senders: Option<SendersArg>,
    /// Override `[load] rate` (messages/s per sending replica, 0 = unlimited).
    #[arg(long)]
    pub(crate) rate: Option<u64>,
    /// Move every replica to 127.0.0.1 ports BASE, BASE+1, … (avoids clashes between runs).
    #[arg(long, value_name = "BASE")]
    pub(crate) base_port: Option<u16>,
}

impl DeployArgs {
    /// The deployment: the file (or embedded default) with the overrides applied.
    pub(crate) fn load(&self) -> Result<DeploymentConfig, DeploymentError> {
        let mut c = match &self.config {
            Some(path) => DeploymentConfig::from_path(path)?,
            None => DeploymentConfig::embedded_default(),
        };
        if let Some(base) = self.base_port {
            c = c.with_loopback_ports(base);
        }
        if let Some(k) = self.transport {
            c.transport.kind = k.into();
        }
        if let Some(s) = self.strategy {
            c.strategy = s;
        }
        if let Some(m) = self.messages {
            c.load.messages = m;
        }
        if let Some(s) = self.size {
            if s == 0 || s > c.tuning.max_payload_bytes {
                return Err(DeploymentError::unlocated(
                    "--size",
                    "load.size",
                    format!("must be between 1 and tuning.max_payload_bytes = {}", c.tuning.max_payload_bytes),
                ));
            }
            c.load.size = s;
        }
        if let Some(s) = self.senders {
            c.load.senders = match s {
                SendersArg::Both => Senders::Both,
                SendersArg::First => Senders::First,
                SendersArg::Second => Senders::Second,
            };
        }
        if let Some(r) = self.rate {
            c.load.rate = r;
        }
        Ok(c)
    }
}
