//! # picsou-c: `libpicsou`, the C API of picsou
//!
//! Lets a replicated state machine written in C or C++ (a Raft or PBFT replica) talk to another
//! RSM over Picsou. Two levels, both complete:
//!
//! - **Driven node** (`picsou_node_*`): the replica's engine on a thread of its own over the
//!   transport its deployment file selects; the application submits its committed stream and
//!   takes the other RSM's stream by callback or by polling.
//! - **Sans-IO endpoint** (`picsou_endpoint_*`): the engine alone, for RSMs that own their
//!   networking and clock: frames and time in; frames to send, events and the next deadline
//!   out, into caller-provided buffers.
//!
//! Conventions (see `bindings-c/README.md`): opaque handles; every function returns a
//! [`picsou_result`](error::picsou_result); the thread's last error is rendered by
//! `picsou_last_error`; outputs are written only on success; what the library allocates, a
//! library function frees; every export runs inside a panic boundary; the header documents the
//! thread safety of each function.
//!
//! This crate is a thin layer: no protocol logic, only argument checks and conversions around
//! `picsou_core::Endpoint` and `picsou_runtime::node::Node`. `include/picsou.h` is generated
//! from it by cbindgen (`PICSOU_BLESS=1 cargo test -p picsou-c --test header_up_to_date`).

// An FFI layer must dereference the pointers C hands in and export unmangled symbols. Every
// unsafe block says why it is sound (`// SAFETY:`); pointer handling is confined to `ptr`.
#![allow(unsafe_code)]
// The exported names are C's (`picsou_node`, `picsou_result`), not Rust's.
#![allow(non_camel_case_types)]

// Declaration order is the order of the generated header: errors, the driven node, the sans-IO
// endpoint, then shared types (one module per group, so rustfmt keeps the order).
pub mod error;

pub mod node;

pub mod endpoint;

pub mod config;
mod ptr;
pub mod stats;

use std::ffi::c_char;

/// The library's version, `"MAJOR.MINOR.PATCH"` (the header's `PICSOU_VERSION_*` macros are the
/// version compiled against; this is the version linked). The string is static: never free it.
///
/// Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn picsou_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    error::guard_value(c"".as_ptr(), || VERSION.as_ptr().cast::<c_char>())
}

#[cfg(test)]
mod tests;
