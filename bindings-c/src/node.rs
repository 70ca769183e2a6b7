//! The driven node: a replica running on a thread of its own, over the transport its
//! deployment file selects (`picsou_runtime::node::Node`).

use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use picsou_core::StreamStart;
use picsou_runtime::node::{Node, NodeError, NodeOptions, SubmitError};

use crate::config::{load, picsou_replica, with_identity_file};
use crate::error::{Error, guard, picsou_result};
use crate::ptr::{Handle, Kind, Out, bytes_in, handle_ref, handle_take, into_handle};
use crate::stats::picsou_node_stats;

use picsou_result::*;

/// A running replica (opaque). Created by `picsou_node_new`, freed by `picsou_node_free`.
pub struct picsou_node {
    node: Arc<Node>,
    max_payload: usize,
    /// Replicas per RSM.
    replica_counts: [usize; 2],
    /// Set once a delivery callback is installed (polling is then refused).
    callback: AtomicBool,
    dispatcher: Mutex<Option<Dispatcher>>,
}

impl Handle for picsou_node {
    const KIND: Kind = Kind::Node;
}

/// The thread that calls the delivery callback.
struct Dispatcher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

thread_local! {
    /// On a callback thread: the address of the node it serves (0 elsewhere). A plain flag
    /// rather than `std::thread::current()`, which would allocate a thread handle for the C
    /// caller's thread that is never freed before exit (valgrind counts it as possibly lost).
    static DISPATCHING_FOR: Cell<usize> = const { Cell::new(0) };
}

/// A message of the incoming stream taken with `picsou_node_next_delivery` (opaque). Read it
/// with `picsou_delivery_get` (and `picsou_delivery_proof`); free it with
/// `picsou_delivery_free`.
pub struct picsou_delivery {
    seq: u64,
    payload: Bytes,
    proof: Option<Bytes>,
}

impl Handle for picsou_delivery {
    const KIND: Kind = Kind::Delivery;
}

/// Called once per delivered message, in stream order, on a thread that libpicsou owns:
/// `user_data` as given to `picsou_node_set_delivery_callback`, the message's position `seq`
/// in the incoming stream, and its `len` bytes at `data` (never NULL; valid only during the
/// call: copy what you keep). It must not throw or unwind (a C++ exception escaping it aborts
/// the process) and must not call `picsou_node_free` on its own node.
#[allow(non_camel_case_types)]
pub type picsou_delivery_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, seq: u64, data: *const u8, len: usize)>;

/// A callback and its user data, moved to the dispatcher thread.
struct Callback {
    f: unsafe extern "C" fn(*mut c_void, u64, *const u8, usize),
    user_data: *mut c_void,
}

// SAFETY: `picsou_node_set_delivery_callback` documents that the callback and `user_data` are
// used from a libpicsou thread; the caller guarantees they may be (the C code owns whatever
// synchronisation `user_data` needs). The pointer is only passed back to the callback.
unsafe impl Send for Callback {}

/// A non-NULL pointer for empty payloads, which C may hand to memcpy.
static EMPTY: [u8; 1] = [0];

fn data_ptr(b: &[u8]) -> *const u8 {
    if b.is_empty() { EMPTY.as_ptr() } else { b.as_ptr() }
}

fn submit_error(e: SubmitError) -> Error {
    let code = match e {
        SubmitError::OutOfOrder { .. } => PICSOU_ERR_OUT_OF_ORDER,
        SubmitError::PayloadTooLarge { .. } => PICSOU_ERR_PAYLOAD_TOO_LARGE,
        SubmitError::Full => PICSOU_ERR_FULL,
        SubmitError::Stopped => PICSOU_ERR_STOPPED,
        SubmitError::StateTransferNeeded { .. } => PICSOU_ERR_STATE_TRANSFER_NEEDED,
        _ => PICSOU_ERR_NODE_FAILED,
    };
    Error::new(code, e.to_string())
}

fn node_error(e: NodeError) -> Error {
    let code = match e {
        NodeError::Config(_) | NodeError::Keys(_) => PICSOU_ERR_CONFIG,
        NodeError::Transport(_) => PICSOU_ERR_TRANSPORT,
        _ => PICSOU_ERR_NODE_FAILED,
    };
    Error::new(code, e.to_string())
}

/// # Safety
/// As for `picsou_node_new`.
unsafe fn new_node(
    config_toml: *const c_char,
    rsm: *const c_char,
    replica: u16,
    identity_file: *const c_char,
    resume: StreamStart,
    out_node: *mut *mut picsou_node,
) -> Result<(), Error> {
    // SAFETY: the caller guarantees `out_node` is NULL or writable.
    let out = unsafe { Out::checked(out_node, "out_node") }?;
    // SAFETY: the caller guarantees the strings are NULL or NUL-terminated.
    let (config, local) = unsafe { load(config_toml, rsm, replica) }?;
    // SAFETY: as above.
    let config = unsafe { with_identity_file(config, local, identity_file) }?;
    let keys = config.replica_keys(local).map_err(|e| Error::new(PICSOU_ERR_CONFIG, e.to_string()))?;
    let transport = picsou_transports::open(&config, local, keys.links.clone(), None)
        .map_err(|e| Error::new(PICSOU_ERR_TRANSPORT, e.to_string()))?;
    let mut options = NodeOptions::from_tuning(&config.node);
    options.resume = resume;
    let node = Node::start(config.endpoint_config_with(local, keys), options, transport).map_err(node_error)?;
    let handle = picsou_node {
        node: Arc::new(node),
        max_payload: config.tuning.max_payload_bytes,
        replica_counts: [config.rsms[0].n(), config.rsms[1].n()],
        callback: AtomicBool::new(false),
        dispatcher: Mutex::new(None),
    };
    out.set(into_handle(handle));
    Ok(())
}

/// Starts replica `replica` of RSM `rsm` of the deployment described by `config_toml` (the
/// text of a deployment file, like those of the repository's `examples/` directory; `rsm` is
/// the RSM's `name` or `"0"` / `"1"`): parses and checks the text, opens the configured transport (`tcp`
/// or `uring`: it listens on the replica's address at once) and starts the node's thread. On
/// success `*out_node` receives the handle.
///
/// Errors: `PICSOU_ERR_NULL_ARGUMENT`, `PICSOU_ERR_INVALID_UTF8`, `PICSOU_ERR_CONFIG` (the
/// message names the line, column and field), `PICSOU_ERR_UNKNOWN_RSM`,
/// `PICSOU_ERR_UNKNOWN_REPLICA`, `PICSOU_ERR_TRANSPORT` (e.g. the address is in use, or
/// `kind = "mem"`, which only works inside one Rust process), `PICSOU_ERR_NODE_FAILED`.
/// A relative `keys.secret_file` or `keys.identity_file` is read relative to the current
/// directory. With per-replica keys, the replica's identity comes from `keys.identity_file`
/// (see `picsou_node_new_with_identity` to give another file).
///
/// Thread safety: any thread.
///
/// # Safety
/// `config_toml` and `rsm` must be NULL or NUL-terminated strings; `out_node` must be NULL or
/// point to a writable `picsou_node *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_new(
    config_toml: *const c_char,
    rsm: *const c_char,
    replica: u16,
    out_node: *mut *mut picsou_node,
) -> picsou_result {
    // SAFETY: forwarded contract.
    guard("picsou_node_new", || unsafe {
        new_node(config_toml, rsm, replica, std::ptr::null(), StreamStart::default(), out_node)
    })
}

/// Like `picsou_node_new`, for a replica restarting from a checkpoint: its outgoing stream
/// continues at `transmit_from` (a QUACK it saw before, see `picsou_node_quacked`: every seq
/// below is known to be held by the other RSM) and its incoming stream at `receive_from` (the
/// first seq the application has not durably applied; deliveries resume there). The next
/// `picsou_node_submit` must then be for seq `transmit_from`.
///
/// Thread safety: any thread.
///
/// # Safety
/// As for `picsou_node_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_new_resuming(
    config_toml: *const c_char,
    rsm: *const c_char,
    replica: u16,
    transmit_from: u64,
    receive_from: u64,
    out_node: *mut *mut picsou_node,
) -> picsou_result {
    let start = StreamStart { transmit: transmit_from, receive: receive_from };
    // SAFETY: forwarded contract.
    guard("picsou_node_new_resuming", || unsafe {
        new_node(config_toml, rsm, replica, std::ptr::null(), start, out_node)
    })
}

/// Like `picsou_node_new_resuming` (pass 0 and 0 for a fresh start), for a deployment with
/// per-replica keys: the replica's secret identity is read from `identity_file` (a file of 64
/// hexadecimal digits written by `picsou keygen`, readable by its owner only) instead of the
/// deployment's `keys.identity_file`. NULL `identity_file` means the deployment's own.
///
/// Errors: as `picsou_node_new`; `PICSOU_ERR_CONFIG` also when the file cannot be read, is
/// readable by other users, or holds an identity whose public key is not the one the
/// deployment lists for this replica.
///
/// Thread safety: any thread.
///
/// # Safety
/// As for `picsou_node_new`; `identity_file` must be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_new_with_identity(
    config_toml: *const c_char,
    rsm: *const c_char,
    replica: u16,
    identity_file: *const c_char,
    transmit_from: u64,
    receive_from: u64,
    out_node: *mut *mut picsou_node,
) -> picsou_result {
    let start = StreamStart { transmit: transmit_from, receive: receive_from };
    // SAFETY: forwarded contract.
    guard("picsou_node_new_with_identity", || unsafe {
        new_node(config_toml, rsm, replica, identity_file, start, out_node)
    })
}

/// Stops the node: stops and joins the delivery-callback thread (if any) and the node's thread,
/// closes its connections and frees the handle, including deliveries not taken yet. Freeing
/// NULL does nothing.
///
/// Returns `PICSOU_OK`, or `PICSOU_ERR_NODE_FAILED` if the node's thread had stopped with an
/// error (the message says which; the node is freed anyway). A handle that was already freed
/// gets `PICSOU_ERR_INVALID_HANDLE` (unless its memory was reused by a new node).
/// `PICSOU_ERR_INVALID_STATE` if called from the node's own delivery callback (it would wait
/// for itself); the node is then not freed.
///
/// Thread safety: any thread, but no other call on this node may be running or follow.
///
/// # Safety
/// `node` must be NULL or a handle from `picsou_node_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_free(node: *mut picsou_node) -> picsou_result {
    guard("picsou_node_free", || {
        if !node.is_null() && DISPATCHING_FOR.with(Cell::get) == node as usize {
            return Err(Error::new(
                PICSOU_ERR_INVALID_STATE,
                "called from the node's own delivery callback; free the node from another thread",
            ));
        }
        // SAFETY: no other call runs on it (contract); the registry refuses a freed handle.
        let Some(n) = (unsafe { handle_take(node, "node") })? else { return Ok(()) };
        let n = *n;
        if let Some(d) = n.dispatcher.into_inner().unwrap_or_else(PoisonError::into_inner) {
            d.stop.store(true, Ordering::SeqCst);
            // The callback is C code that cannot unwind into us (extern "C" aborts instead).
            let _ = d.thread.join();
        }
        match Arc::try_unwrap(n.node) {
            Ok(node) => node.shutdown().map(drop).map_err(|e| Error::new(PICSOU_ERR_NODE_FAILED, e.to_string())),
            // Unreachable (the dispatcher, the only other owner, was joined); dropping the last
            // reference stops the node anyway.
            Err(_) => Ok(()),
        }
    })
}

/// Writes the node's replica to `*out`.
///
/// Thread safety: any thread, concurrently with other calls on the node (except
/// `picsou_node_free`).
///
/// # Safety
/// `node` must be NULL or a live handle; `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_local(node: *const picsou_node, out: *mut picsou_replica) -> picsou_result {
    guard("picsou_node_local", || {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        let out = unsafe { Out::checked(out, "out") }?;
        // SAFETY: not freed concurrently (contract).
        let n = unsafe { handle_ref(node, "node") }?;
        out.set(n.node.local().into());
        Ok(())
    })
}

/// Writes the number of replicas of RSM `rsm` (0 or 1) of the node's deployment to `*out`
/// (their ids are 0 to n - 1).
///
/// Errors: `PICSOU_ERR_UNKNOWN_RSM` if `rsm` is not 0 or 1.
///
/// Thread safety: any thread, concurrently with other calls on the node (except
/// `picsou_node_free`).
///
/// # Safety
/// `node` must be NULL or a live handle; `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_replica_count(node: *const picsou_node, rsm: u8, out: *mut u16) -> picsou_result {
    guard("picsou_node_replica_count", || {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        let out = unsafe { Out::checked(out, "out") }?;
        // SAFETY: not freed concurrently (contract).
        let n = unsafe { handle_ref(node, "node") }?;
        let count = n
            .replica_counts
            .get(usize::from(rsm))
            .ok_or_else(|| Error::new(PICSOU_ERR_UNKNOWN_RSM, format!("rsm {rsm}: RSMs are 0 and 1")))?;
        out.set(u16::try_from(*count).unwrap_or(u16::MAX));
        Ok(())
    })
}

/// Which flavour of submit.
enum Wait {
    Block,
    Try,
    Timeout(Duration),
}

/// # Safety
/// As for `picsou_node_submit`.
unsafe fn submit(
    node: *const picsou_node,
    seq: u64,
    data: *const u8,
    len: usize,
    proof: *const u8,
    proof_len: usize,
    wait: Wait,
) -> Result<(), Error> {
    // SAFETY: not freed concurrently (contract).
    let n = unsafe { handle_ref(node, "node") }?;
    if len > n.max_payload {
        return Err(Error::new(
            PICSOU_ERR_PAYLOAD_TOO_LARGE,
            format!("payload of {len} bytes exceeds the limit of {} (tuning.max_payload_bytes)", n.max_payload),
        ));
    }
    // SAFETY: the caller guarantees `len` readable bytes at `data` (or NULL with 0).
    let payload = Bytes::copy_from_slice(unsafe { bytes_in(data, len, "data") }?);
    // SAFETY: as above for the proof.
    let proof = Bytes::copy_from_slice(unsafe { bytes_in(proof, proof_len, "proof") }?);
    let r = match wait {
        Wait::Block => n.node.submit(seq, payload, proof),
        Wait::Try => n.node.try_submit(seq, payload, proof),
        Wait::Timeout(t) => n.node.submit_timeout(seq, payload, proof, t),
    };
    r.map_err(submit_error)
}

/// Submits message `seq` of this RSM's committed stream: `len` bytes at `data` (copied) and
/// its commit proof, `proof_len` bytes at `proof` (copied; empty — NULL, 0 — when this RSM is
/// `cft`; a quorum certificate when it is `bft`). Every replica of the RSM submits every
/// message, in order from 0 (or from `transmit_from` when resuming), exactly as its log
/// committed them; the protocol decides which replica actually sends what. Blocks while the
/// node is backlogged (its submit queue is full and the protocol's window is closed).
///
/// Errors: `PICSOU_ERR_OUT_OF_ORDER` (not the next seq), `PICSOU_ERR_PAYLOAD_TOO_LARGE`,
/// `PICSOU_ERR_STOPPED` (shut down), `PICSOU_ERR_NODE_FAILED` (its thread failed; the message
/// says why), `PICSOU_ERR_NULL_ARGUMENT` (`data` NULL with `len` > 0, ...).
///
/// Thread safety: any thread, concurrently with other calls on the node (except
/// `picsou_node_free`); concurrent submitters are serialized, so each must still submit the
/// next seq.
///
/// # Safety
/// `node` must be NULL or a live handle; `data` must point to `len` readable bytes (NULL allowed
/// when `len` is 0), likewise `proof` and `proof_len`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_submit(
    node: *const picsou_node,
    seq: u64,
    data: *const u8,
    len: usize,
    proof: *const u8,
    proof_len: usize,
) -> picsou_result {
    // SAFETY: forwarded contract.
    guard("picsou_node_submit", || unsafe { submit(node, seq, data, len, proof, proof_len, Wait::Block) })
}

/// Like `picsou_node_submit`, but never blocks: `PICSOU_ERR_FULL` when the submit queue is
/// full (retry later with the same seq).
///
/// Thread safety: as `picsou_node_submit`.
///
/// # Safety
/// As for `picsou_node_submit`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_try_submit(
    node: *const picsou_node,
    seq: u64,
    data: *const u8,
    len: usize,
    proof: *const u8,
    proof_len: usize,
) -> picsou_result {
    // SAFETY: forwarded contract.
    guard("picsou_node_try_submit", || unsafe { submit(node, seq, data, len, proof, proof_len, Wait::Try) })
}

/// Like `picsou_node_submit`, but gives up after `timeout_ms` milliseconds with
/// `PICSOU_ERR_FULL` (retry later with the same seq).
///
/// Thread safety: as `picsou_node_submit`.
///
/// # Safety
/// As for `picsou_node_submit`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_submit_timeout(
    node: *const picsou_node,
    seq: u64,
    data: *const u8,
    len: usize,
    proof: *const u8,
    proof_len: usize,
    timeout_ms: u32,
) -> picsou_result {
    let wait = Wait::Timeout(Duration::from_millis(u64::from(timeout_ms)));
    // SAFETY: forwarded contract.
    guard("picsou_node_submit_timeout", || unsafe { submit(node, seq, data, len, proof, proof_len, wait) })
}

/// One message of a batch given to `picsou_node_submit_batch`: `len` bytes at `data` and its
/// commit proof, `proof_len` bytes at `proof` (NULL, 0 when this RSM is `cft`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct picsou_message {
    /// The payload (NULL allowed when `len` is 0).
    pub data: *const u8,
    /// Its length in bytes.
    pub len: usize,
    /// The commit proof (NULL allowed when `proof_len` is 0).
    pub proof: *const u8,
    /// Its length in bytes.
    pub proof_len: usize,
}

/// # Safety
/// As for `picsou_node_submit_batch`.
unsafe fn submit_batch(
    node: *const picsou_node,
    first: u64,
    messages: *const picsou_message,
    count: usize,
    timeout: Option<Duration>,
) -> Result<(), Error> {
    // SAFETY: not freed concurrently (contract).
    let n = unsafe { handle_ref(node, "node") }?;
    if count == 0 {
        return Ok(());
    }
    if messages.is_null() {
        return Err(Error::null("messages"));
    }
    if count > isize::MAX as usize / size_of::<picsou_message>() {
        return Err(Error::invalid(format!("`count` {count} exceeds PTRDIFF_MAX")));
    }
    // SAFETY: non-NULL, and by the caller's contract `count` readable messages.
    let given = unsafe { std::slice::from_raw_parts(messages, count) };
    let mut batch = Vec::with_capacity(count);
    for (i, m) in given.iter().enumerate() {
        if m.len > n.max_payload {
            return Err(Error::new(
                PICSOU_ERR_PAYLOAD_TOO_LARGE,
                format!(
                    "messages[{i}]: payload of {} bytes exceeds the limit of {} (tuning.max_payload_bytes)",
                    m.len, n.max_payload
                ),
            ));
        }
        // SAFETY: the caller guarantees each message's buffers (or NULL with 0).
        let payload = Bytes::copy_from_slice(unsafe { bytes_in(m.data, m.len, &format!("messages[{i}].data")) }?);
        // SAFETY: as above.
        let proof = Bytes::copy_from_slice(unsafe { bytes_in(m.proof, m.proof_len, &format!("messages[{i}].proof")) }?);
        batch.push((payload, proof));
    }
    n.node.submit_batch(first, &mut batch, timeout).map_err(submit_error)
}

/// Submits `count` messages, `messages[0..count]`, as seqs `first, first + 1, …` of this RSM's
/// committed stream (each copied), in one operation: for an RSM that commits in batches, far
/// cheaper per message than `picsou_node_submit`. All or nothing: on any error no message was
/// submitted. Blocks while the node is backlogged; a batch larger than the submit queue's
/// byte capacity is taken once the queue is empty. `count` 0 does nothing.
///
/// Errors: `PICSOU_ERR_OUT_OF_ORDER` (`first` is not the next seq),
/// `PICSOU_ERR_PAYLOAD_TOO_LARGE` (the message is named in `picsou_last_error_message`),
/// `PICSOU_ERR_STOPPED`, `PICSOU_ERR_NODE_FAILED`, `PICSOU_ERR_NULL_ARGUMENT` (`messages` NULL with `count` > 0, or a
/// message's `data` NULL with `len` > 0, ...).
///
/// Thread safety: as `picsou_node_submit`.
///
/// # Safety
/// `node` must be NULL or a live handle; `messages` must point to `count` readable
/// `picsou_message`s (NULL allowed when `count` is 0), each valid as for `picsou_node_submit`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_submit_batch(
    node: *const picsou_node,
    first: u64,
    messages: *const picsou_message,
    count: usize,
) -> picsou_result {
    // SAFETY: forwarded contract.
    guard("picsou_node_submit_batch", || unsafe { submit_batch(node, first, messages, count, None) })
}

/// Like `picsou_node_submit_batch`, but gives up after `timeout_ms` milliseconds (0: at once)
/// with `PICSOU_ERR_FULL`, having submitted nothing (retry later with the same `first`).
///
/// Thread safety: as `picsou_node_submit`.
///
/// # Safety
/// As for `picsou_node_submit_batch`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_submit_batch_timeout(
    node: *const picsou_node,
    first: u64,
    messages: *const picsou_message,
    count: usize,
    timeout_ms: u32,
) -> picsou_result {
    let timeout = Some(Duration::from_millis(u64::from(timeout_ms)));
    // SAFETY: forwarded contract.
    guard("picsou_node_submit_batch_timeout", || unsafe { submit_batch(node, first, messages, count, timeout) })
}

/// Delivers the incoming stream by callback from now on: a libpicsou thread calls
/// `callback(user_data, seq, data, len)` for each message, in order, exactly once (messages
/// that arrived before this call included). Set once per node; `picsou_node_next_delivery`
/// is then refused. Under application-managed dissemination (`tuning.dissemination`), use
/// polling instead: the callback does not carry proofs.
///
/// Errors: `PICSOU_ERR_NULL_ARGUMENT` (NULL callback), `PICSOU_ERR_INVALID_STATE` (a callback
/// is already set), `PICSOU_ERR_NODE_FAILED` (the thread could not be spawned).
///
/// Thread safety: any thread, concurrently with other calls on the node (except
/// `picsou_node_free`). The callback runs on another thread than the caller's: `user_data`
/// must be safe to use from it. `picsou_node_free` stops the callback thread and waits for a
/// running callback to return.
///
/// # Safety
/// `node` must be NULL or a live handle; `callback` must stay callable, and `user_data`
/// usable by it, until `picsou_node_free` returns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_set_delivery_callback(
    node: *const picsou_node,
    callback: picsou_delivery_cb,
    user_data: *mut c_void,
) -> picsou_result {
    guard("picsou_node_set_delivery_callback", || {
        // SAFETY: not freed concurrently (contract).
        let n = unsafe { handle_ref(node, "node") }?;
        let f = callback.ok_or_else(|| Error::null("callback"))?;
        let mut slot = n.dispatcher.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() {
            return Err(Error::new(PICSOU_ERR_INVALID_STATE, "this node already has a delivery callback"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let cb = Callback { f, user_data };
        let (node2, stop2, me) = (n.node.clone(), stop.clone(), node as usize);
        let thread = std::thread::Builder::new()
            .name(format!("picsou-deliver-{}", n.node.local()))
            .spawn(move || {
                DISPATCHING_FOR.with(|d| d.set(me));
                dispatch(&node2, &stop2, &cb);
            })
            .map_err(|e| Error::new(PICSOU_ERR_NODE_FAILED, format!("cannot spawn the callback thread: {e}")))?;
        *slot = Some(Dispatcher { stop, thread });
        n.callback.store(true, Ordering::SeqCst);
        Ok(())
    })
}

/// The callback thread: hands every delivery to C until told to stop or the node stops.
fn dispatch(node: &Node, stop: &AtomicBool, cb: &Callback) {
    while !stop.load(Ordering::SeqCst) {
        match node.next_delivery(Some(Duration::from_millis(20))) {
            Ok(Some(d)) => {
                // SAFETY: the caller of `picsou_node_set_delivery_callback` guarantees the
                // function and `user_data` stay valid until `picsou_node_free`, which joins this
                // thread first; `data` points to `len` bytes that live across the call.
                unsafe { (cb.f)(cb.user_data, d.seq, data_ptr(&d.payload), d.payload.len()) };
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
}

/// Takes the next message of the incoming stream, waiting up to `timeout_ms` milliseconds (0:
/// do not wait). On `PICSOU_OK`, `*out_delivery` receives a delivery to read with
/// `picsou_delivery_get` and free with `picsou_delivery_free`. Messages come in stream order,
/// exactly once (under library-managed dissemination, the default).
///
/// Returns `PICSOU_EMPTY` if none arrived in time, `PICSOU_ERR_STOPPED` once the node has
/// stopped and every delivery was taken (`PICSOU_ERR_NODE_FAILED` if its thread failed),
/// `PICSOU_ERR_INVALID_STATE` if the node has a delivery callback.
///
/// Thread safety: any thread, concurrently with other calls on the node (except
/// `picsou_node_free`); with several pollers each message still goes to exactly one.
///
/// # Safety
/// `node` must be NULL or a live handle; `out_delivery` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_next_delivery(
    node: *const picsou_node,
    timeout_ms: u32,
    out_delivery: *mut *mut picsou_delivery,
) -> picsou_result {
    guard("picsou_node_next_delivery", || {
        // SAFETY: the caller guarantees `out_delivery` is NULL or writable.
        let out = unsafe { Out::checked(out_delivery, "out_delivery") }?;
        // SAFETY: not freed concurrently (contract).
        let n = unsafe { handle_ref(node, "node") }?;
        if n.callback.load(Ordering::SeqCst) {
            return Err(Error::new(
                PICSOU_ERR_INVALID_STATE,
                "this node delivers through its callback (picsou_node_set_delivery_callback); polling is off",
            ));
        }
        let got = if timeout_ms == 0 {
            match n.node.try_next_delivery() {
                Some(d) => Some(d),
                None if n.node.state_transfer_needed().is_some() => {
                    return Err(submit_error(n.node.state_transfer_needed().unwrap_or(SubmitError::Stopped)));
                }
                // The node may have published deliveries just before stopping; after them,
                // STOPPED, or NODE_FAILED if its thread failed.
                None if n.node.is_stopped() => n.node.next_delivery(Some(Duration::ZERO)).map_err(submit_error)?,
                None => None,
            }
        } else {
            n.node.next_delivery(Some(Duration::from_millis(u64::from(timeout_ms)))).map_err(submit_error)?
        };
        let d = got.ok_or_else(Error::empty)?;
        out.set(into_handle(picsou_delivery { seq: d.seq, payload: d.payload, proof: d.proof }));
        Ok(())
    })
}

/// Reads a delivery: its position `*out_seq` in the incoming stream, and its payload,
/// `*out_len` bytes at `*out_data` (never NULL; valid until `picsou_delivery_free`).
///
/// Thread safety: any thread; a delivery may be read from several threads at once.
///
/// # Safety
/// `delivery` must be NULL or a live delivery; the outputs must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_delivery_get(
    delivery: *const picsou_delivery,
    out_seq: *mut u64,
    out_data: *mut *const u8,
    out_len: *mut usize,
) -> picsou_result {
    guard("picsou_delivery_get", || {
        // SAFETY: the caller guarantees the outputs are NULL or writable.
        let (seq, data, len) = unsafe {
            (Out::checked(out_seq, "out_seq")?, Out::checked(out_data, "out_data")?, Out::checked(out_len, "out_len")?)
        };
        // SAFETY: not freed concurrently (contract).
        let d = unsafe { handle_ref(delivery, "delivery") }?;
        seq.set(d.seq);
        data.set(data_ptr(&d.payload));
        len.set(d.payload.len());
        Ok(())
    })
}

/// Reads a delivery's commit proof, `*out_len` bytes at `*out_proof` (valid until
/// `picsou_delivery_free`). Only application-managed dissemination hands proofs over (to pass
/// on inside the RSM); otherwise this returns `PICSOU_EMPTY`.
///
/// Thread safety: any thread.
///
/// # Safety
/// `delivery` must be NULL or a live delivery; the outputs must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_delivery_proof(
    delivery: *const picsou_delivery,
    out_proof: *mut *const u8,
    out_len: *mut usize,
) -> picsou_result {
    guard("picsou_delivery_proof", || {
        // SAFETY: the caller guarantees the outputs are NULL or writable.
        let (proof, len) = unsafe { (Out::checked(out_proof, "out_proof")?, Out::checked(out_len, "out_len")?) };
        // SAFETY: not freed concurrently (contract).
        let d = unsafe { handle_ref(delivery, "delivery") }?;
        let p = d.proof.as_ref().ok_or_else(Error::empty)?;
        proof.set(data_ptr(p));
        len.set(p.len());
        Ok(())
    })
}

/// Frees a delivery (its payload pointer becomes invalid). Freeing NULL does nothing; a
/// delivery already freed gets `PICSOU_ERR_INVALID_HANDLE`.
///
/// Thread safety: any thread, but no other call on this delivery may be running or follow.
///
/// # Safety
/// `delivery` must be NULL or a handle from `picsou_node_next_delivery`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_delivery_free(delivery: *mut picsou_delivery) -> picsou_result {
    guard("picsou_delivery_free", || {
        // SAFETY: no other call uses it (contract); the registry refuses a freed handle.
        drop(unsafe { handle_take(delivery, "delivery") }?);
        Ok(())
    })
}

/// Writes the QUACK of this RSM's outgoing stream to `*out`: every seq below it is held by at
/// least one correct replica of the other RSM (a safe point to checkpoint `transmit_from`).
///
/// Thread safety: any thread, concurrently with other calls on the node (except
/// `picsou_node_free`).
///
/// # Safety
/// `node` must be NULL or a live handle; `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_quacked(node: *const picsou_node, out: *mut u64) -> picsou_result {
    guard("picsou_node_quacked", || {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        let out = unsafe { Out::checked(out, "out") }?;
        // SAFETY: not freed concurrently (contract).
        out.set(unsafe { handle_ref(node, "node") }?.node.quacked());
        Ok(())
    })
}

/// Writes the cumulative ack of the incoming stream at this replica to `*out`: every seq below
/// it has been received (delivered, or queued for delivery).
///
/// Thread safety: any thread, concurrently with other calls on the node (except
/// `picsou_node_free`).
///
/// # Safety
/// `node` must be NULL or a live handle; `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_received(node: *const picsou_node, out: *mut u64) -> picsou_result {
    guard("picsou_node_received", || {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        let out = unsafe { Out::checked(out, "out") }?;
        // SAFETY: not freed concurrently (contract).
        out.set(unsafe { handle_ref(node, "node") }?.node.received());
        Ok(())
    })
}

/// Application-managed dissemination (`tuning.dissemination = "application"`): the local RSM
/// now holds `seq` of the incoming stream (it arrived through the application's own channels),
/// so this replica acknowledges it. Asynchronous: a refusal by the engine is only logged. Never
/// waits behind submissions or for the send window (acks travel in a queue of their own).
///
/// Errors: `PICSOU_ERR_STOPPED`, `PICSOU_ERR_NODE_FAILED`.
///
/// Thread safety: any thread, concurrently with other calls on the node (except
/// `picsou_node_free`).
///
/// # Safety
/// `node` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_local_has(node: *const picsou_node, seq: u64) -> picsou_result {
    guard("picsou_node_local_has", || {
        // SAFETY: not freed concurrently (contract).
        unsafe { handle_ref(node, "node") }?.node.local_has(seq).map_err(submit_error)
    })
}

/// Writes the node's latest published counters to `*out` (refreshed every
/// `[node] stats_interval_ms`, and once more when the node stops).
///
/// `transport.connects - transport.disconnects` counts the node's live connections: it reaches
/// 2 × (replicas of both RSMs − 1) once the node is connected to every peer in both directions.
/// Wait for that before the first submit when the other replicas may not be up yet: the
/// transport drops frames to a peer it is not connected to, and a message whose first copy
/// and every resend of its rotation were dropped that way is not sent again (see the
/// README's *Starting a deployment*).
///
/// Thread safety: any thread, concurrently with other calls on the node (except
/// `picsou_node_free`).
///
/// # Safety
/// `node` must be NULL or a live handle; `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_get_stats(node: *const picsou_node, out: *mut picsou_node_stats) -> picsou_result {
    guard("picsou_node_get_stats", || {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        let out = unsafe { Out::checked(out, "out") }?;
        // SAFETY: not freed concurrently (contract).
        out.set((&unsafe { handle_ref(node, "node") }?.node.stats()).into());
        Ok(())
    })
}

/// Writes whether the node's thread has stopped (it stops only when freed, or on a transport
/// error) to `*out`.
///
/// Thread safety: any thread, concurrently with other calls on the node (except
/// `picsou_node_free`).
///
/// # Safety
/// `node` must be NULL or a live handle; `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_node_is_stopped(node: *const picsou_node, out: *mut bool) -> picsou_result {
    guard("picsou_node_is_stopped", || {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        let out = unsafe { Out::checked(out, "out") }?;
        // SAFETY: not freed concurrently (contract).
        out.set(unsafe { handle_ref(node, "node") }?.node.is_stopped());
        Ok(())
    })
}
