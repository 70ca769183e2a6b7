//! # picsou-core
//!
//! The sans-IO engine of **Picsou**, a protocol for *Cross-Cluster Consistent Broadcast* (C3B):
//! replicated state machine (RSM) *S* sends a stream of committed messages to RSM *R* such that
//! every message reaches at least one correct replica of *R* (and, with library-managed internal
//! broadcast, every correct replica of *R*, in order and exactly once), while nothing *S* did not
//! commit is ever delivered.
//!
//! This crate has no sockets, threads, clocks or async runtime: time enters as [`Time`], frames
//! enter through [`Endpoint::handle_frame`], and everything the engine wants done comes out of
//! the `poll_*` methods, in the style of `quinn-proto` (the [`endpoint`] module documents the
//! contract). The same engine drives the deterministic simulator (crate `picsou-sim`), the
//! runtime's real transports, and the Python and C bindings.
//!
//! Modules, one concept each:
//! - [`config`]: the two RSMs (replicas, stake, fault model, f), protocol tuning, validation.
//! - [`wire`]: the versioned, length-prefixed, MAC-authenticated frame format (see `WIRE.md`).
//! - [`keys`]: per-link MAC keys.
//! - [`handshake`]: the session handshake of stream connections (mutual proof over fresh
//!   nonces, a session key per connection, incarnations).
//! - [`identity`]: per-replica secret identities, pairwise link-key agreement, deployment ids.
//! - [`bufpool`]: recycled buffers for large frames (no page faults per megabyte moved).
//! - [`proof`]: proofs that the sending RSM committed a message (ed25519 quorum certificates).
//! - [`seqring`] and [`ack`]: receive windows, cumulative acks and φ-lists.
//! - [`quack`]: stake-weighted quorum acknowledgements (QUACKs).
//! - [`schedule`]: apportioned round-robin choice of sender/receiver pairs and resend rotation.
//! - [`endpoint`]: the protocol engine, Picsou and the four baselines.
//! - [`payload`]: deterministic, verifiable message contents for synthetic loads.
//! - `adversary` (feature `adversary`): Byzantine behaviours that the simulator and tests plug
//!   into faulty replicas; without the feature the engine contains none of it.
#![forbid(unsafe_code)]

pub mod ack;
#[cfg(feature = "adversary")]
pub mod adversary;
pub mod bufpool;
pub mod config;
pub mod endpoint;
pub mod handshake;
pub mod identity;
pub mod ids;
pub mod keys;
pub mod payload;
pub mod proof;
pub mod quack;
pub mod schedule;
pub mod seqring;
pub mod time;
pub mod wire;

pub use config::{
    ConfigError, Dissemination, EndpointConfig, FaultModel, Membership, ProtocolParams, RsmSpec, Strategy,
};
pub use endpoint::{Endpoint, EndpointStats, Event, Misbehavior, StreamStart, SubmitError, Transmit};
pub use ids::{ReplicaId, RsmId};
pub use time::Time;
