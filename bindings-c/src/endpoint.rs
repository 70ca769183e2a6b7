//! The sans-IO endpoint (`picsou_core::Endpoint`) for RSMs that own their networking and
//! clock: frames and time go in, frames to send, events and the next deadline come out, into
//! caller-provided buffers.

use std::ffi::c_char;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use picsou_core::endpoint::LocalHasError;
use picsou_core::{Endpoint, Event, StreamStart, SubmitError, Time, Transmit};
use picsou_runtime::deployment::DeploymentConfig;

use crate::config::{load, picsou_replica};
use crate::error::{Error, guard, picsou_result};
use crate::ptr::{BufOut, Handle, Kind, Out, bytes_in, handle_ref, handle_take, into_handle};
use crate::stats::picsou_endpoint_stats;

use picsou_result::*;

/// The protocol engine of one replica (opaque). Created by `picsou_endpoint_new`, freed by
/// `picsou_endpoint_free`.
pub struct picsou_endpoint {
    state: Mutex<State>,
}

struct State {
    ep: Endpoint,
    config: DeploymentConfig,
    /// A frame or event that did not fit the caller's buffer, handed out first next time.
    pending_transmit: Option<Transmit>,
    pending_event: Option<Event>,
}

impl Handle for picsou_endpoint {
    const KIND: Kind = Kind::Endpoint;
}

/// What kind of event `picsou_endpoint_poll_event` returned.
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum picsou_event_kind {
    /// Never returned: the kind of a zero-initialised `picsou_event`.
    #[default]
    PICSOU_EVENT_NONE = 0,
    /// The next message of the incoming stream, in order, exactly once (library-managed
    /// dissemination, the default): `seq`, and `payload_len` bytes at the start of the buffer.
    PICSOU_EVENT_DELIVER = 1,
    /// Application-managed dissemination: a message received first-hand from the other RSM
    /// (exactly once, in arrival order), for the application to spread inside its RSM: `seq`,
    /// `payload_len` bytes of payload at the start of the buffer, then `proof_len` bytes of
    /// proof.
    PICSOU_EVENT_RECEIVED = 2,
    /// The other RSM definitely holds every message below `seq` (the new QUACK).
    PICSOU_EVENT_QUACKED = 3,
    /// This replica resent message `seq` (resend number `resend_number` of its rotation).
    PICSOU_EVENT_RESENT = 4,
    /// Replica `peer` sent something a correct replica never sends; the input was dropped.
    /// The buffer holds the reason as a NUL-terminated string of `payload_len` bytes.
    PICSOU_EVENT_PEER_MISBEHAVED = 5,
    /// This replica fell further behind than its peers retain (`seq`: the first seq it
    /// lacks); repairs can no longer bring it back. Install a snapshot of the RSM's state taken
    /// at some seq `s >= seq` (a peer's checkpoint) and build a new endpoint resuming at
    /// `receive = s`. Signalled once per endpoint (library-managed dissemination).
    PICSOU_EVENT_STATE_TRANSFER_NEEDED = 6,
}

/// An event of the endpoint (see `picsou_event_kind` for which fields each kind sets; the
/// others are 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct picsou_event {
    /// What happened.
    pub kind: picsou_event_kind,
    /// The message (`DELIVER`, `RECEIVED`, `RESENT`), the new QUACK (`QUACKED`), or the first
    /// seq this replica lacks (`STATE_TRANSFER_NEEDED`).
    pub seq: u64,
    /// `RESENT`: the resend number.
    pub resend_number: u16,
    /// `PEER_MISBEHAVED`: the peer.
    pub peer: picsou_replica,
    /// Bytes of payload (`DELIVER`, `RECEIVED`) or of reason text (`PEER_MISBEHAVED`, without
    /// the NUL) at the start of the buffer.
    pub payload_len: usize,
    /// `RECEIVED`: bytes of proof in the buffer right after the payload.
    pub proof_len: usize,
}

impl picsou_endpoint {
    fn lock(&self) -> Result<MutexGuard<'_, State>, Error> {
        self.state.lock().map_err(|_| {
            Error::new(PICSOU_ERR_PANIC, "an earlier call panicked inside this endpoint; free it and build a new one")
        })
    }
}

/// # Safety
/// As for `picsou_endpoint_new`.
unsafe fn new_endpoint(
    config_toml: *const c_char,
    rsm: *const c_char,
    replica: u16,
    now_ns: u64,
    start: StreamStart,
    out_endpoint: *mut *mut picsou_endpoint,
) -> Result<(), Error> {
    // SAFETY: the caller guarantees `out_endpoint` is NULL or writable.
    let out = unsafe { Out::checked(out_endpoint, "out_endpoint") }?;
    // SAFETY: the caller guarantees the strings are NULL or NUL-terminated.
    let (config, local) = unsafe { load(config_toml, rsm, replica) }?;
    let endpoint = config.endpoint_config(local).map_err(|e| Error::new(PICSOU_ERR_CONFIG, e.to_string()))?;
    let ep = Endpoint::resuming(endpoint, Time::from_nanos(now_ns), start)
        .map_err(|e| Error::new(PICSOU_ERR_CONFIG, e.to_string()))?;
    let state = State { ep, config, pending_transmit: None, pending_event: None };
    out.set(into_handle(picsou_endpoint { state: Mutex::new(state) }));
    Ok(())
}

/// Builds the protocol engine of replica `replica` of RSM `rsm` (its `name` or `"0"` / `"1"`)
/// of the deployment described by `config_toml` (the text of a deployment file; its
/// `[transport]` and `[node]` tables are not used). `now_ns` is the current time in
/// nanoseconds on a monotonic clock of the caller's choice (e.g. `CLOCK_MONOTONIC`); every
/// later `now_ns` must come from the same clock. On success `*out_endpoint` receives the
/// handle.
///
/// Drive it like this: after every input (`picsou_endpoint_submit`,
/// `picsou_endpoint_handle_frame`, `picsou_endpoint_handle_timeout`), drain
/// `picsou_endpoint_poll_transmit` (send each frame to its replica) and
/// `picsou_endpoint_poll_event` until they return `PICSOU_EMPTY`, then call
/// `picsou_endpoint_handle_timeout` when the time from `picsou_endpoint_poll_timeout` comes.
///
/// Errors: `PICSOU_ERR_NULL_ARGUMENT`, `PICSOU_ERR_INVALID_UTF8`, `PICSOU_ERR_CONFIG`,
/// `PICSOU_ERR_UNKNOWN_RSM`, `PICSOU_ERR_UNKNOWN_REPLICA`.
///
/// Thread safety: any thread.
///
/// # Safety
/// `config_toml` and `rsm` must be NULL or NUL-terminated strings; `out_endpoint` must be NULL
/// or point to a writable `picsou_endpoint *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_new(
    config_toml: *const c_char,
    rsm: *const c_char,
    replica: u16,
    now_ns: u64,
    out_endpoint: *mut *mut picsou_endpoint,
) -> picsou_result {
    // SAFETY: forwarded contract.
    guard("picsou_endpoint_new", || unsafe {
        new_endpoint(config_toml, rsm, replica, now_ns, StreamStart::default(), out_endpoint)
    })
}

/// Like `picsou_endpoint_new`, for a replica restarting from a checkpoint: its outgoing stream
/// continues at `transmit_from` (a QUACK it saw before) and its incoming stream at
/// `receive_from` (the first seq the application has not durably applied).
///
/// Thread safety: any thread.
///
/// # Safety
/// As for `picsou_endpoint_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_new_resuming(
    config_toml: *const c_char,
    rsm: *const c_char,
    replica: u16,
    now_ns: u64,
    transmit_from: u64,
    receive_from: u64,
    out_endpoint: *mut *mut picsou_endpoint,
) -> picsou_result {
    let start = StreamStart { transmit: transmit_from, receive: receive_from };
    // SAFETY: forwarded contract.
    guard("picsou_endpoint_new_resuming", || unsafe {
        new_endpoint(config_toml, rsm, replica, now_ns, start, out_endpoint)
    })
}

/// Frees an endpoint. Freeing NULL does nothing; an endpoint already freed gets
/// `PICSOU_ERR_INVALID_HANDLE` (unless its memory was reused by a new endpoint).
///
/// Thread safety: any thread, but no other call on this endpoint may be running or follow.
///
/// # Safety
/// `endpoint` must be NULL or a handle from `picsou_endpoint_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_free(endpoint: *mut picsou_endpoint) -> picsou_result {
    guard("picsou_endpoint_free", || {
        // SAFETY: no other call uses it (contract); the registry refuses a freed handle.
        drop(unsafe { handle_take(endpoint, "endpoint") }?);
        Ok(())
    })
}

/// Runs `f` on the endpoint's state.
///
/// # Safety
/// `endpoint` must be NULL or a handle not freed during the call.
unsafe fn with<T>(
    endpoint: *const picsou_endpoint,
    f: impl FnOnce(&mut State) -> Result<T, Error>,
) -> Result<T, Error> {
    // SAFETY: forwarded contract.
    let e = unsafe { handle_ref(endpoint, "endpoint") }?;
    let mut state = e.lock()?;
    f(&mut state)
}

/// Writes the endpoint's replica to `*out`.
///
/// Thread safety: see `picsou_endpoint_submit`.
///
/// # Safety
/// `endpoint` must be NULL or a live handle; `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_local(
    endpoint: *const picsou_endpoint,
    out: *mut picsou_replica,
) -> picsou_result {
    guard("picsou_endpoint_local", || {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        let out = unsafe { Out::checked(out, "out") }?;
        // SAFETY: not freed during the call (contract).
        out.set(unsafe { with(endpoint, |s| Ok(s.ep.local())) }?.into());
        Ok(())
    })
}

/// Writes the number of replicas of RSM `rsm` (0 or 1) to `*out` (their ids are 0 to n - 1).
///
/// Errors: `PICSOU_ERR_UNKNOWN_RSM` if `rsm` is not 0 or 1.
///
/// Thread safety: see `picsou_endpoint_submit`.
///
/// # Safety
/// `endpoint` must be NULL or a live handle; `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_replica_count(
    endpoint: *const picsou_endpoint,
    rsm: u8,
    out: *mut u16,
) -> picsou_result {
    guard("picsou_endpoint_replica_count", || {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        let out = unsafe { Out::checked(out, "out") }?;
        // SAFETY: not freed during the call (contract).
        let n = unsafe {
            with(endpoint, |s| {
                s.config
                    .rsms
                    .get(usize::from(rsm))
                    .map(|r| r.n())
                    .ok_or_else(|| Error::new(PICSOU_ERR_UNKNOWN_RSM, format!("rsm {rsm}: RSMs are 0 and 1")))
            })
        }?;
        out.set(u16::try_from(n).unwrap_or(u16::MAX));
        Ok(())
    })
}

/// Copies the address of `replica` in the deployment file (`"ip:port"`, NUL-terminated) into
/// `buf` (`buf_len` bytes); `*out_len` receives its length without the NUL — or, with
/// `PICSOU_ERR_BUFFER_TOO_SMALL`, the buffer size needed. For RSMs that route frames with the
/// deployment's own addresses.
///
/// Errors: `PICSOU_ERR_UNKNOWN_RSM`, `PICSOU_ERR_UNKNOWN_REPLICA`,
/// `PICSOU_ERR_BUFFER_TOO_SMALL`.
///
/// Thread safety: see `picsou_endpoint_submit`.
///
/// # Safety
/// `endpoint` must be NULL or a live handle; `buf` must be NULL or point to `buf_len` writable
/// bytes; `out_len` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_replica_address(
    endpoint: *const picsou_endpoint,
    replica: picsou_replica,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> picsou_result {
    guard("picsou_endpoint_replica_address", || {
        // SAFETY: the caller guarantees `out_len` is NULL or writable.
        let out_len = unsafe { Out::checked(out_len, "out_len") }?;
        // SAFETY: the caller guarantees `buf` is NULL or `buf_len` writable bytes.
        let buf = unsafe { BufOut::new(buf.cast::<u8>(), buf_len, "buf") }?;
        // SAFETY: not freed during the call (contract).
        let text = unsafe {
            with(endpoint, |s| {
                let rsm = s.config.rsms.get(usize::from(replica.rsm)).ok_or_else(|| {
                    Error::new(PICSOU_ERR_UNKNOWN_RSM, format!("rsm {}: RSMs are 0 and 1", replica.rsm))
                })?;
                let r = rsm.replicas.get(usize::from(replica.index)).ok_or_else(|| {
                    Error::new(
                        PICSOU_ERR_UNKNOWN_REPLICA,
                        format!("RSM {:?} has {} replicas: there is no replica {}", rsm.name, rsm.n(), replica.index),
                    )
                })?;
                Ok(r.address.to_string())
            })
        }?;
        let needed = text.len() + 1;
        if needed > buf.capacity() {
            out_len.set(needed);
            return Err(Error::too_small("buf", needed, buf.capacity()));
        }
        buf.write(&[text.as_bytes(), b"\0"]);
        out_len.set(text.len());
        Ok(())
    })
}

/// Hands the engine message `seq` of this RSM's committed stream (`len` bytes at `data` and its
/// proof, `proof_len` bytes at `proof`, both copied; the proof is empty when this RSM is
/// `cft`). Every replica of the RSM hands over every message, in order from 0.
///
/// Errors: `PICSOU_ERR_OUT_OF_ORDER`, `PICSOU_ERR_PAYLOAD_TOO_LARGE`, `PICSOU_ERR_FULL` (too
/// far ahead of the QUACK: retry with the same seq after a `PICSOU_EVENT_QUACKED`; see
/// `picsou_endpoint_submit_capacity`).
///
/// Thread safety: an endpoint is meant to be driven by one thread at a time; calls on the same
/// endpoint from several threads are serialized by a lock inside it (never concurrent with
/// `picsou_endpoint_free`). Different endpoints are independent.
///
/// # Safety
/// `endpoint` must be NULL or a live handle; `data` must point to `len` readable bytes (NULL
/// allowed when `len` is 0), likewise `proof` and `proof_len`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_submit(
    endpoint: *const picsou_endpoint,
    now_ns: u64,
    seq: u64,
    data: *const u8,
    len: usize,
    proof: *const u8,
    proof_len: usize,
) -> picsou_result {
    guard("picsou_endpoint_submit", || {
        // SAFETY: not freed during the call (contract); the slices are read inside it.
        unsafe {
            with(endpoint, |s| {
                let max = s.config.tuning.max_payload_bytes;
                if len > max {
                    return Err(Error::new(
                        PICSOU_ERR_PAYLOAD_TOO_LARGE,
                        format!("payload of {len} bytes exceeds the limit of {max} (tuning.max_payload_bytes)"),
                    ));
                }
                let payload = Bytes::copy_from_slice(bytes_in(data, len, "data")?);
                let proof = Bytes::copy_from_slice(bytes_in(proof, proof_len, "proof")?);
                s.ep.submit(Time::from_nanos(now_ns), seq, payload, proof).map_err(|e| {
                    let code = match e {
                        SubmitError::OutOfOrder { .. } => PICSOU_ERR_OUT_OF_ORDER,
                        SubmitError::PayloadTooLarge { .. } => PICSOU_ERR_PAYLOAD_TOO_LARGE,
                        SubmitError::Backpressure { .. } => PICSOU_ERR_FULL,
                        _ => PICSOU_ERR_INVALID_ARGUMENT,
                    };
                    Error::new(code, e.to_string())
                })
            })
        }
    })
}

/// Writes how many more messages `picsou_endpoint_submit` accepts right now to `*out`.
///
/// Thread safety: see `picsou_endpoint_submit`.
///
/// # Safety
/// `endpoint` must be NULL or a live handle; `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_submit_capacity(
    endpoint: *const picsou_endpoint,
    out: *mut u64,
) -> picsou_result {
    guard("picsou_endpoint_submit_capacity", || {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        let out = unsafe { Out::checked(out, "out") }?;
        // SAFETY: not freed during the call (contract).
        out.set(unsafe { with(endpoint, |s| Ok(s.ep.submit_capacity())) }?);
        Ok(())
    })
}

/// Writes the seq `picsou_endpoint_submit` expects next to `*out`.
///
/// Thread safety: see `picsou_endpoint_submit`.
///
/// # Safety
/// `endpoint` must be NULL or a live handle; `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_next_submit(endpoint: *const picsou_endpoint, out: *mut u64) -> picsou_result {
    guard("picsou_endpoint_next_submit", || {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        let out = unsafe { Out::checked(out, "out") }?;
        // SAFETY: not freed during the call (contract).
        out.set(unsafe { with(endpoint, |s| Ok(s.ep.next_submit())) }?);
        Ok(())
    })
}

/// Hands the engine a frame (`len` bytes at `data`, copied) that arrived from replica `from`.
/// `from` must be the replica at the other end of the channel it came on, as your networking
/// authenticated it (frames are MACed, so a frame from anyone else is rejected). Invalid input
/// is dropped and reported as a `PICSOU_EVENT_PEER_MISBEHAVED` event, not as an error.
///
/// Errors: `PICSOU_ERR_NULL_ARGUMENT`, `PICSOU_ERR_INVALID_ARGUMENT` (length).
///
/// Thread safety: see `picsou_endpoint_submit`.
///
/// # Safety
/// `endpoint` must be NULL or a live handle; `data` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_handle_frame(
    endpoint: *const picsou_endpoint,
    now_ns: u64,
    from: picsou_replica,
    data: *const u8,
    len: usize,
) -> picsou_result {
    guard("picsou_endpoint_handle_frame", || {
        // SAFETY: not freed during the call (contract); the slice is read inside it.
        unsafe {
            with(endpoint, |s| {
                let frame = Bytes::copy_from_slice(bytes_in(data, len, "data")?);
                s.ep.handle_frame(Time::from_nanos(now_ns), from.into(), frame);
                Ok(())
            })
        }
    })
}

/// Lets the engine act on the passing of time (acks, repairs, suspicion, takeovers). Call it
/// at or after the deadline from `picsou_endpoint_poll_timeout` (calling it earlier is
/// harmless).
///
/// Thread safety: see `picsou_endpoint_submit`.
///
/// # Safety
/// `endpoint` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_handle_timeout(
    endpoint: *const picsou_endpoint,
    now_ns: u64,
) -> picsou_result {
    guard("picsou_endpoint_handle_timeout", || {
        // SAFETY: not freed during the call (contract).
        unsafe {
            with(endpoint, |s| {
                s.ep.handle_timeout(Time::from_nanos(now_ns));
                Ok(())
            })
        }
    })
}

/// Writes when `picsou_endpoint_handle_timeout` should next be called (same clock as
/// `now_ns`) to `*out_deadline_ns`, or returns `PICSOU_EMPTY` if nothing is scheduled.
///
/// Thread safety: see `picsou_endpoint_submit`.
///
/// # Safety
/// `endpoint` must be NULL or a live handle; `out_deadline_ns` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_poll_timeout(
    endpoint: *const picsou_endpoint,
    out_deadline_ns: *mut u64,
) -> picsou_result {
    guard("picsou_endpoint_poll_timeout", || {
        // SAFETY: the caller guarantees the output is NULL or writable.
        let out = unsafe { Out::checked(out_deadline_ns, "out_deadline_ns") }?;
        // SAFETY: not freed during the call (contract).
        let t = unsafe { with(endpoint, |s| Ok(s.ep.poll_timeout())) }?.ok_or_else(Error::empty)?;
        out.set(t.as_nanos());
        Ok(())
    })
}

/// Takes the next frame to send: copies it into `buf` (`buf_len` bytes), writes its
/// destination to `*out_to` and its length to `*out_len`. Returns `PICSOU_EMPTY` when no frame
/// is due. Send each frame to its destination as one message (your networking must preserve
/// frame boundaries); a frame may be lost, the protocol recovers.
///
/// If the frame does not fit, returns `PICSOU_ERR_BUFFER_TOO_SMALL` with the size needed in
/// `*out_len` and keeps the frame for the next call (`buf` may be NULL with `buf_len` 0 to
/// ask for the size). Frames are at most `tuning.max_frame_bytes` (256 KiB by default), except
/// one carrying a single larger message.
///
/// Thread safety: see `picsou_endpoint_submit`.
///
/// # Safety
/// `endpoint` must be NULL or a live handle; `buf` must be NULL or point to `buf_len` writable
/// bytes; `out_to` and `out_len` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_poll_transmit(
    endpoint: *const picsou_endpoint,
    now_ns: u64,
    buf: *mut u8,
    buf_len: usize,
    out_to: *mut picsou_replica,
    out_len: *mut usize,
) -> picsou_result {
    guard("picsou_endpoint_poll_transmit", || {
        // SAFETY: the caller guarantees the outputs are NULL or writable and `buf` NULL or
        // `buf_len` writable bytes.
        let (to, len, buf) = unsafe {
            (Out::checked(out_to, "out_to")?, Out::checked(out_len, "out_len")?, BufOut::new(buf, buf_len, "buf")?)
        };
        // SAFETY: not freed during the call (contract).
        unsafe {
            with(endpoint, |s| {
                let t = match s.pending_transmit.take() {
                    Some(t) => t,
                    None => s.ep.poll_transmit(Time::from_nanos(now_ns)).ok_or_else(Error::empty)?,
                };
                if t.frame.len() > buf.capacity() {
                    let (needed, cap) = (t.frame.len(), buf.capacity());
                    s.pending_transmit = Some(t);
                    len.set(needed);
                    return Err(Error::too_small("buf", needed, cap));
                }
                buf.write(&[&t.frame.head, &t.frame.shared]);
                to.set(t.to.into());
                len.set(t.frame.len());
                Ok(())
            })
        }
    })
}

/// Bytes of the caller's buffer an event needs.
fn event_bytes(ev: &Event) -> usize {
    match ev {
        Event::Deliver { payload, .. } => payload.len(),
        Event::Received { payload, proof, .. } => payload.len() + proof.len(),
        Event::PeerMisbehaved { reason, .. } => reason.to_string().len() + 1,
        _ => 0,
    }
}

/// Takes the next event: fills `*out_event` and copies its bytes (a payload, payload and
/// proof, or a reason text; see `picsou_event_kind`) into `buf` (`buf_len` bytes);
/// `*out_len` receives the bytes of `buf` used. Returns `PICSOU_EMPTY` when there is none.
///
/// If the event's bytes do not fit, returns `PICSOU_ERR_BUFFER_TOO_SMALL` with the size needed
/// in `*out_len` and keeps the event for the next call (`buf` may be NULL with `buf_len` 0:
/// events without bytes still fit). A payload is at most `tuning.max_payload_bytes`.
///
/// Thread safety: see `picsou_endpoint_submit`.
///
/// # Safety
/// `endpoint` must be NULL or a live handle; `buf` must be NULL or point to `buf_len` writable
/// bytes; `out_event` and `out_len` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_poll_event(
    endpoint: *const picsou_endpoint,
    buf: *mut u8,
    buf_len: usize,
    out_event: *mut picsou_event,
    out_len: *mut usize,
) -> picsou_result {
    guard("picsou_endpoint_poll_event", || {
        // SAFETY: the caller guarantees the outputs are NULL or writable and `buf` NULL or
        // `buf_len` writable bytes.
        let (event, len, buf) = unsafe {
            (
                Out::checked(out_event, "out_event")?,
                Out::checked(out_len, "out_len")?,
                BufOut::new(buf, buf_len, "buf")?,
            )
        };
        // SAFETY: not freed during the call (contract).
        unsafe {
            with(endpoint, |s| {
                let ev = match s.pending_event.take() {
                    Some(ev) => ev,
                    None => s.ep.poll_event().ok_or_else(Error::empty)?,
                };
                let needed = event_bytes(&ev);
                if needed > buf.capacity() {
                    let cap = buf.capacity();
                    s.pending_event = Some(ev);
                    len.set(needed);
                    return Err(Error::too_small("buf", needed, cap));
                }
                let mut out = picsou_event::default();
                match ev {
                    Event::Deliver { seq, payload } => {
                        buf.write(&[&payload]);
                        out.kind = picsou_event_kind::PICSOU_EVENT_DELIVER;
                        out.seq = seq;
                        out.payload_len = payload.len();
                    }
                    Event::Received { seq, payload, proof } => {
                        buf.write(&[&payload, &proof]);
                        out.kind = picsou_event_kind::PICSOU_EVENT_RECEIVED;
                        out.seq = seq;
                        out.payload_len = payload.len();
                        out.proof_len = proof.len();
                    }
                    Event::Quacked { up_to } => {
                        out.kind = picsou_event_kind::PICSOU_EVENT_QUACKED;
                        out.seq = up_to;
                    }
                    Event::Resent { seq, number } => {
                        out.kind = picsou_event_kind::PICSOU_EVENT_RESENT;
                        out.seq = seq;
                        out.resend_number = number;
                    }
                    Event::StateTransferNeeded { next, .. } => {
                        out.kind = picsou_event_kind::PICSOU_EVENT_STATE_TRANSFER_NEEDED;
                        out.seq = next;
                    }
                    Event::PeerMisbehaved { peer, reason } => {
                        let text = reason.to_string();
                        buf.write(&[text.as_bytes(), b"\0"]);
                        out.kind = picsou_event_kind::PICSOU_EVENT_PEER_MISBEHAVED;
                        out.peer = peer.into();
                        out.payload_len = text.len();
                    }
                }
                event.set(out);
                len.set(needed);
                Ok(())
            })
        }
    })
}

/// Tells the engine whether your channel to `peer` is full (`blocked` true) or has room again.
/// While a peer is blocked, `picsou_endpoint_poll_transmit` skips it and its frames wait in the
/// engine (built fresh once unblocked), so a slow or dead peer never holds up the others.
/// Unknown peers are ignored.
///
/// Thread safety: see `picsou_endpoint_submit`.
///
/// # Safety
/// `endpoint` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_set_blocked(
    endpoint: *const picsou_endpoint,
    peer: picsou_replica,
    blocked: bool,
) -> picsou_result {
    guard("picsou_endpoint_set_blocked", || {
        // SAFETY: not freed during the call (contract).
        unsafe {
            with(endpoint, |s| {
                s.ep.set_blocked(peer.into(), blocked);
                Ok(())
            })
        }
    })
}

/// Application-managed dissemination (`tuning.dissemination = "application"`): the local RSM
/// now holds `seq` of the incoming stream, so this replica's acks cover it.
///
/// Errors: `PICSOU_ERR_INVALID_STATE` under library-managed dissemination,
/// `PICSOU_ERR_INVALID_ARGUMENT` if `seq` is beyond the receive window.
///
/// Thread safety: see `picsou_endpoint_submit`.
///
/// # Safety
/// `endpoint` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_local_has(
    endpoint: *const picsou_endpoint,
    now_ns: u64,
    seq: u64,
) -> picsou_result {
    guard("picsou_endpoint_local_has", || {
        // SAFETY: not freed during the call (contract).
        unsafe {
            with(endpoint, |s| {
                s.ep.local_has(Time::from_nanos(now_ns), seq).map_err(|e| {
                    let code = match e {
                        LocalHasError::LibraryManaged => PICSOU_ERR_INVALID_STATE,
                        _ => PICSOU_ERR_INVALID_ARGUMENT,
                    };
                    Error::new(code, e.to_string())
                })
            })
        }
    })
}

/// Writes the QUACK of the outgoing stream to `*out`: every seq below it is held by at least
/// one correct replica of the other RSM.
///
/// Thread safety: see `picsou_endpoint_submit`.
///
/// # Safety
/// `endpoint` must be NULL or a live handle; `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_quacked(endpoint: *const picsou_endpoint, out: *mut u64) -> picsou_result {
    guard("picsou_endpoint_quacked", || {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        let out = unsafe { Out::checked(out, "out") }?;
        // SAFETY: not freed during the call (contract).
        out.set(unsafe { with(endpoint, |s| Ok(s.ep.quacked())) }?);
        Ok(())
    })
}

/// Writes the cumulative ack of the incoming stream to `*out`: every seq below it is held here.
///
/// Thread safety: see `picsou_endpoint_submit`.
///
/// # Safety
/// `endpoint` must be NULL or a live handle; `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_received(endpoint: *const picsou_endpoint, out: *mut u64) -> picsou_result {
    guard("picsou_endpoint_received", || {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        let out = unsafe { Out::checked(out, "out") }?;
        // SAFETY: not freed during the call (contract).
        out.set(unsafe { with(endpoint, |s| Ok(s.ep.received())) }?);
        Ok(())
    })
}

/// Writes the engine's counters to `*out`.
///
/// Thread safety: see `picsou_endpoint_submit`.
///
/// # Safety
/// `endpoint` must be NULL or a live handle; `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_get_stats(
    endpoint: *const picsou_endpoint,
    out: *mut picsou_endpoint_stats,
) -> picsou_result {
    guard("picsou_endpoint_get_stats", || {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        let out = unsafe { Out::checked(out, "out") }?;
        // SAFETY: not freed during the call (contract).
        out.set((&unsafe { with(endpoint, |s| Ok(s.ep.stats())) }?).into());
        Ok(())
    })
}

// Names of the previous release, kept for one release: same behaviour as the new names.

/// Deprecated alias of `picsou_endpoint_submit` (the name of the previous release; removed in
/// the next one).
///
/// # Safety
/// As `picsou_endpoint_submit`.
#[deprecated(note = "use picsou_endpoint_submit")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_transmit(
    endpoint: *const picsou_endpoint,
    now_ns: u64,
    seq: u64,
    data: *const u8,
    len: usize,
    proof: *const u8,
    proof_len: usize,
) -> picsou_result {
    // SAFETY: the caller upholds `picsou_endpoint_submit`'s contract.
    unsafe { picsou_endpoint_submit(endpoint, now_ns, seq, data, len, proof, proof_len) }
}

/// Deprecated alias of `picsou_endpoint_submit_capacity` (removed in the next release).
///
/// # Safety
/// As `picsou_endpoint_submit_capacity`.
#[deprecated(note = "use picsou_endpoint_submit_capacity")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_transmit_capacity(
    endpoint: *const picsou_endpoint,
    out: *mut u64,
) -> picsou_result {
    // SAFETY: the caller upholds `picsou_endpoint_submit_capacity`'s contract.
    unsafe { picsou_endpoint_submit_capacity(endpoint, out) }
}

/// Deprecated alias of `picsou_endpoint_next_submit` (removed in the next release).
///
/// # Safety
/// As `picsou_endpoint_next_submit`.
#[deprecated(note = "use picsou_endpoint_next_submit")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_next_transmit(
    endpoint: *const picsou_endpoint,
    out: *mut u64,
) -> picsou_result {
    // SAFETY: the caller upholds `picsou_endpoint_next_submit`'s contract.
    unsafe { picsou_endpoint_next_submit(endpoint, out) }
}

/// Deprecated alias of `picsou_endpoint_quacked` (removed in the next release).
///
/// # Safety
/// As `picsou_endpoint_quacked`.
#[deprecated(note = "use picsou_endpoint_quacked")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_endpoint_quack(endpoint: *const picsou_endpoint, out: *mut u64) -> picsou_result {
    // SAFETY: the caller upholds `picsou_endpoint_quacked`'s contract.
    unsafe { picsou_endpoint_quacked(endpoint, out) }
}
