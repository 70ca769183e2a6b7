//! # picsou-etcd
//!
//! Disaster recovery and reconciliation between two unmodified etcd clusters over Picsou.
//! One sidecar runs next to each etcd member and is that member's Picsou replica:
//!
//! - [`source`]: the sending side reads its own member's committed history under the mirrored
//!   prefix, one message per revision that changed something under it;
//! - [`codec`]: the message format of one revision's events;
//! - [`apply`]: the receiving side's transactions, guarded on a progress key so that every
//!   revision is applied exactly once and in order although every sidecar delivers it;
//! - [`sink`]: the receiving side's loop (who applies, takeover, resuming from the key);
//! - [`sidecar`]: `picsou-etcd sidecar`, the process;
//! - [`cluster`], [`demo`], [`digest`]: `picsou-etcd demo`, two 3-member etcd clusters on
//!   loopback with six sidecars, a put load, and the report.

pub mod apply;
pub mod cluster;
pub mod codec;
pub mod demo;
pub mod digest;
pub mod etcd;
pub mod sidecar;
pub mod sink;
pub mod source;
