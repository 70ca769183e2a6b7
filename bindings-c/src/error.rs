//! Result codes, the thread's last error, and the panic boundary every export runs inside.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::ptr::{BufOut, Out, PtrError};

/// What a libpicsou function did. Every function returns one (except `picsou_version`,
/// `picsou_result_name` and `picsou_last_error_message`, which cannot fail).
///
/// `PICSOU_OK` and `PICSOU_EMPTY` are not errors. Every other code is an error: the function
/// wrote none of its outputs (except the size needed, with `PICSOU_ERR_BUFFER_TOO_SMALL`) and
/// recorded a message for the calling thread, read with `picsou_last_error` or
/// `picsou_last_error_message`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum picsou_result {
    /// Success.
    PICSOU_OK = 0,
    /// Nothing to return right now (no delivery before the timeout, no frame or event queued,
    /// no deadline): not an error, the last error is left unchanged.
    PICSOU_EMPTY = 1,
    /// A pointer argument that must not be NULL was NULL.
    PICSOU_ERR_NULL_ARGUMENT = 2,
    /// A handle that libpicsou did not allocate, or that was already freed.
    PICSOU_ERR_INVALID_HANDLE = 3,
    /// An argument is out of range (e.g. a length above `PTRDIFF_MAX`, a seq beyond the
    /// receive window).
    PICSOU_ERR_INVALID_ARGUMENT = 4,
    /// A string argument is not valid UTF-8.
    PICSOU_ERR_INVALID_UTF8 = 5,
    /// The deployment configuration (TOML) is invalid; the message names the line and field.
    PICSOU_ERR_CONFIG = 6,
    /// The deployment has no RSM of that name (or index).
    PICSOU_ERR_UNKNOWN_RSM = 7,
    /// The RSM has no replica with that id.
    PICSOU_ERR_UNKNOWN_REPLICA = 8,
    /// The transport could not be opened (address in use, unsupported kind, ...).
    PICSOU_ERR_TRANSPORT = 9,
    /// Messages are submitted as 0, 1, 2, ... with no gap or repeat.
    PICSOU_ERR_OUT_OF_ORDER = 10,
    /// The payload exceeds the deployment's `tuning.max_payload_bytes`.
    PICSOU_ERR_PAYLOAD_TOO_LARGE = 11,
    /// No room right now (submit queue full, or the endpoint's backpressure window); retry
    /// later.
    PICSOU_ERR_FULL = 12,
    /// The node has stopped.
    PICSOU_ERR_STOPPED = 13,
    /// The caller's buffer is too small: the size needed was written to the length output and
    /// the item is kept for the next call.
    PICSOU_ERR_BUFFER_TOO_SMALL = 14,
    /// The call is not valid in the handle's current state (e.g. polling deliveries of a node
    /// that has a delivery callback, freeing a node from its own callback).
    PICSOU_ERR_INVALID_STATE = 15,
    /// The node's thread failed (it could not start, or it stopped with an error).
    PICSOU_ERR_NODE_FAILED = 16,
    /// A bug inside libpicsou: it panicked. The panic was caught at the API boundary; the
    /// handle involved should be freed.
    PICSOU_ERR_PANIC = 17,
    /// The replica fell further behind than its peers retain: repairs can no longer bring it
    /// back (every delivery before the gap was handed out first; the message says where it
    /// stands). Install a snapshot of the RSM's state taken at or after the first seq it lacks
    /// (a peer's checkpoint) and resume after it.
    PICSOU_ERR_STATE_TRANSFER_NEEDED = 18,
}

use picsou_result::*;

impl picsou_result {
    /// Every code, in numeric order.
    pub(crate) const ALL: [Self; 19] = [
        PICSOU_OK,
        PICSOU_EMPTY,
        PICSOU_ERR_NULL_ARGUMENT,
        PICSOU_ERR_INVALID_HANDLE,
        PICSOU_ERR_INVALID_ARGUMENT,
        PICSOU_ERR_INVALID_UTF8,
        PICSOU_ERR_CONFIG,
        PICSOU_ERR_UNKNOWN_RSM,
        PICSOU_ERR_UNKNOWN_REPLICA,
        PICSOU_ERR_TRANSPORT,
        PICSOU_ERR_OUT_OF_ORDER,
        PICSOU_ERR_PAYLOAD_TOO_LARGE,
        PICSOU_ERR_FULL,
        PICSOU_ERR_STOPPED,
        PICSOU_ERR_BUFFER_TOO_SMALL,
        PICSOU_ERR_INVALID_STATE,
        PICSOU_ERR_NODE_FAILED,
        PICSOU_ERR_PANIC,
        PICSOU_ERR_STATE_TRANSFER_NEEDED,
    ];

    /// The code's name as a static C string.
    fn name(self) -> &'static CStr {
        match self {
            PICSOU_OK => c"PICSOU_OK",
            PICSOU_EMPTY => c"PICSOU_EMPTY",
            PICSOU_ERR_NULL_ARGUMENT => c"PICSOU_ERR_NULL_ARGUMENT",
            PICSOU_ERR_INVALID_HANDLE => c"PICSOU_ERR_INVALID_HANDLE",
            PICSOU_ERR_INVALID_ARGUMENT => c"PICSOU_ERR_INVALID_ARGUMENT",
            PICSOU_ERR_INVALID_UTF8 => c"PICSOU_ERR_INVALID_UTF8",
            PICSOU_ERR_CONFIG => c"PICSOU_ERR_CONFIG",
            PICSOU_ERR_UNKNOWN_RSM => c"PICSOU_ERR_UNKNOWN_RSM",
            PICSOU_ERR_UNKNOWN_REPLICA => c"PICSOU_ERR_UNKNOWN_REPLICA",
            PICSOU_ERR_TRANSPORT => c"PICSOU_ERR_TRANSPORT",
            PICSOU_ERR_OUT_OF_ORDER => c"PICSOU_ERR_OUT_OF_ORDER",
            PICSOU_ERR_PAYLOAD_TOO_LARGE => c"PICSOU_ERR_PAYLOAD_TOO_LARGE",
            PICSOU_ERR_FULL => c"PICSOU_ERR_FULL",
            PICSOU_ERR_STOPPED => c"PICSOU_ERR_STOPPED",
            PICSOU_ERR_BUFFER_TOO_SMALL => c"PICSOU_ERR_BUFFER_TOO_SMALL",
            PICSOU_ERR_INVALID_STATE => c"PICSOU_ERR_INVALID_STATE",
            PICSOU_ERR_NODE_FAILED => c"PICSOU_ERR_NODE_FAILED",
            PICSOU_ERR_PANIC => c"PICSOU_ERR_PANIC",
            PICSOU_ERR_STATE_TRANSFER_NEEDED => c"PICSOU_ERR_STATE_TRANSFER_NEEDED",
        }
    }
}

/// A failed call: its code and what went wrong. `PICSOU_EMPTY` travels as an `Error` too, for
/// `?`, but is never recorded as the last error.
#[derive(Debug)]
pub(crate) struct Error {
    pub(crate) code: picsou_result,
    pub(crate) message: String,
}

impl Error {
    pub(crate) fn new(code: picsou_result, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// "Nothing right now": not an error.
    pub(crate) fn empty() -> Self {
        Self { code: PICSOU_EMPTY, message: String::new() }
    }

    pub(crate) fn null(what: &str) -> Self {
        PtrError::null(what).into()
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(PICSOU_ERR_INVALID_ARGUMENT, message)
    }

    pub(crate) fn too_small(what: &str, needed: usize, capacity: usize) -> Self {
        Self::new(
            PICSOU_ERR_BUFFER_TOO_SMALL,
            format!("`{what}` holds {capacity} bytes but {needed} are needed; the item is kept for the next call"),
        )
    }
}

impl From<PtrError> for Error {
    fn from(e: PtrError) -> Self {
        let code = match e {
            PtrError::Null { .. } => PICSOU_ERR_NULL_ARGUMENT,
            PtrError::TooLong { .. } => PICSOU_ERR_INVALID_ARGUMENT,
            PtrError::NotUtf8 { .. } => PICSOU_ERR_INVALID_UTF8,
            PtrError::WrongKind { .. } | PtrError::NotLive { .. } => PICSOU_ERR_INVALID_HANDLE,
        };
        Self::new(code, e.to_string())
    }
}

thread_local! {
    /// The message of the latest failed call on this thread (None: no call failed yet).
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(function: &str, message: &str) {
    let text = format!("{function}: {message}");
    // An interior NUL cannot be shown by C; replace it rather than lose the message.
    let c = CString::new(text.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = Some(c));
}

/// Runs the body of the export `function` inside the panic boundary: a panic becomes
/// `PICSOU_ERR_PANIC`, an error its code, and both are recorded as the thread's last error.
pub(crate) fn guard(function: &str, body: impl FnOnce() -> Result<(), Error>) -> picsou_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => PICSOU_OK,
        Ok(Err(e)) => {
            if e.code != PICSOU_EMPTY {
                set_last_error(function, &e.message);
            }
            e.code
        }
        Err(panic) => {
            let what = picsou_runtime::node::panic_message(panic.as_ref());
            set_last_error(function, &format!("internal error (libpicsou panicked; please report it): {what}"));
            PICSOU_ERR_PANIC
        }
    }
}

/// Like [`guard`] for the few functions that return a value instead of a code: a panic
/// returns `fallback`.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// The name of a result code (`"PICSOU_ERR_CONFIG"`), or `"PICSOU_UNKNOWN_RESULT"` for a value
/// that is not one. The string is static: never free it.
///
/// Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn picsou_result_name(code: u32) -> *const c_char {
    guard_value(c"PICSOU_UNKNOWN_RESULT".as_ptr(), || {
        picsou_result::ALL.iter().find(|r| **r as u32 == code).map_or(c"PICSOU_UNKNOWN_RESULT", |r| r.name()).as_ptr()
    })
}

/// Copies the calling thread's last error message (NUL-terminated, UTF-8) into `buf`, which
/// holds `buf_len` bytes; `*out_len` receives the message length without the NUL. The message
/// is empty if no call on this thread has failed yet.
///
/// Errors: `PICSOU_ERR_NULL_ARGUMENT` if `out_len` is NULL, or `buf` is NULL while `buf_len`
/// is not 0; `PICSOU_ERR_BUFFER_TOO_SMALL` if the message and its NUL do not fit: `*out_len`
/// then receives the buffer size needed (length + 1). Unlike every other function, this one
/// never changes the last error, so it can be retried with a larger buffer.
///
/// Thread safety: any thread; each thread has its own last error (a thread-local).
///
/// # Safety
/// `buf` must be NULL or point to `buf_len` writable bytes; `out_len` must be NULL or point to
/// a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picsou_last_error(buf: *mut c_char, buf_len: usize, out_len: *mut usize) -> picsou_result {
    guard_value(PICSOU_ERR_PANIC, || {
        // SAFETY: the caller guarantees `out_len` is NULL or writable.
        let Some(out_len) = (unsafe { Out::new(out_len) }) else { return PICSOU_ERR_NULL_ARGUMENT };
        // SAFETY: the caller guarantees `buf` is NULL or points to `buf_len` writable bytes.
        let Ok(buf) = (unsafe { BufOut::new(buf.cast::<u8>(), buf_len, "buf") }) else {
            return PICSOU_ERR_NULL_ARGUMENT;
        };
        LAST_ERROR.with(|l| {
            let l = l.borrow();
            let bytes = l.as_deref().map_or(&b"\0"[..], CStr::to_bytes_with_nul);
            if bytes.len() > buf.capacity() {
                out_len.set(bytes.len());
                return PICSOU_ERR_BUFFER_TOO_SMALL;
            }
            buf.write(&[bytes]);
            out_len.set(bytes.len() - 1);
            PICSOU_OK
        })
    })
}

/// The calling thread's last error message (NUL-terminated, UTF-8; `""` if no call on this
/// thread has failed yet). The pointer stays valid until the next libpicsou call on this thread
/// that fails; copy the text to keep it. Never free it.
///
/// Thread safety: any thread; each thread has its own last error (a thread-local).
#[unsafe(no_mangle)]
pub extern "C" fn picsou_last_error_message() -> *const c_char {
    guard_value(c"".as_ptr(), || LAST_ERROR.with(|l| l.borrow().as_deref().map_or(c"".as_ptr(), CStr::as_ptr)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> String {
        // SAFETY: the returned pointer is a NUL-terminated thread-local string, read at once.
        unsafe { CStr::from_ptr(picsou_last_error_message()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn guard_maps_ok_error_empty_and_panic() {
        assert_eq!(guard("f", || Ok(())), PICSOU_OK);
        assert_eq!(guard("f", || Err(Error::new(PICSOU_ERR_CONFIG, "bad line 3"))), PICSOU_ERR_CONFIG);
        assert_eq!(last(), "f: bad line 3");
        // EMPTY leaves the last error alone.
        assert_eq!(guard("g", || Err(Error::empty())), PICSOU_EMPTY);
        assert_eq!(last(), "f: bad line 3");
        let r = guard("h", || panic!("boom {}", 7));
        assert_eq!(r, PICSOU_ERR_PANIC);
        assert!(last().starts_with("h: internal error") && last().ends_with("boom 7"), "{}", last());
    }

    #[test]
    fn last_error_is_per_thread() {
        assert_eq!(guard("main", || Err(Error::invalid("here"))), PICSOU_ERR_INVALID_ARGUMENT);
        let other = std::thread::spawn(last).join().unwrap();
        assert_eq!(other, "");
        assert_eq!(last(), "main: here");
    }

    #[test]
    fn last_error_copies_and_reports_size_needed() {
        assert_eq!(guard("fn", || Err(Error::invalid("abc"))), PICSOU_ERR_INVALID_ARGUMENT);
        let mut len = 0usize;
        let mut small = [0 as c_char; 4];
        // SAFETY: valid buffer and length.
        let r = unsafe { picsou_last_error(small.as_mut_ptr(), small.len(), &mut len) };
        assert_eq!(r, PICSOU_ERR_BUFFER_TOO_SMALL);
        assert_eq!(len, "fn: abc".len() + 1);
        let mut buf = vec![0 as c_char; len];
        // SAFETY: valid buffer and length.
        let r = unsafe { picsou_last_error(buf.as_mut_ptr(), buf.len(), &mut len) };
        assert_eq!(r, PICSOU_OK);
        assert_eq!(len, 7);
        // SAFETY: the buffer was NUL-terminated by the call.
        assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap(), "fn: abc");
        // SAFETY: NULL out_len is rejected before anything is written.
        let r = unsafe { picsou_last_error(buf.as_mut_ptr(), buf.len(), std::ptr::null_mut()) };
        assert_eq!(r, PICSOU_ERR_NULL_ARGUMENT);
    }

    #[test]
    fn every_code_has_its_name() {
        for (i, r) in picsou_result::ALL.iter().enumerate() {
            assert_eq!(*r as u32, i as u32);
            // SAFETY: static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(picsou_result_name(i as u32)) }.to_str().unwrap();
            assert_eq!(name, format!("{r:?}"));
        }
        // SAFETY: static NUL-terminated string.
        let unknown = unsafe { CStr::from_ptr(picsou_result_name(999)) };
        assert_eq!(unknown.to_str().unwrap(), "PICSOU_UNKNOWN_RESULT");
    }
}
