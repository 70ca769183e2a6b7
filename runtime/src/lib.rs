//! # picsou-runtime
//!
//! Turns the sans-IO [`picsou_core::Endpoint`] into a running replica: a [`node::Node`] owns a
//! thread that feeds frames and timeouts into the engine, hands frames to a [`Transport`] in
//! per-destination batches, and exchanges payloads with the application through bounded
//! lock-free queues (payloads travel as [`bytes::Bytes`], never copied).
//!
//! Modules, one concept each:
//! - [`transport`]: the [`Transport`] trait (sockets and RDMA alike), its typed errors, the
//!   authenticated connection hello, stream framing, the outgoing link life cycle and the
//!   accept loop that the TCP, io_uring and RDMA transports share, and the in-memory and TCP
//!   implementations.
//! - [`deployment`]: the TOML file that describes a deployment (RSMs, addresses, transport,
//!   tuning, keys, load), with errors that name the file, line and field.
//! - [`node`]: the node driver and its application API (the handle, the queues it shares with
//!   the node thread, the thread's loop).
//! - [`load`]: synthetic, verifiable message streams for `picsou node|local|bench`.
//! - [`local`]: receiver-confirmed results of a whole deployment, and in-process deployments.
//! - [`bench`](mod@bench): benchmark grids (strategies × sizes × RSM sizes × transports) over real deployments.

pub mod bench;
pub mod deployment;
pub mod load;
pub mod local;
pub mod node;
pub mod transport;

pub use transport::{SendStatus, Transport, TransportError, TransportEvent, Wake};
