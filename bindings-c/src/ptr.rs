//! Everything that touches the pointers C hands in: inputs (byte slices, strings), outputs
//! (single values, caller buffers), and handles (registered, so that a freed or foreign
//! handle is refused instead of dereferenced).
//!
//! Outputs are checked for NULL before any work and written only at the end, on success.
//!
//! Failures are [`PtrError`]s; `error` maps them to result codes. This module sits below
//! `error` (which uses its output types for `picsou_last_error`), so it knows nothing of codes.

use std::collections::BTreeMap;
use std::ffi::{CStr, c_char};
use std::sync::{Mutex, PoisonError};

/// Why a pointer C handed in was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PtrError {
    /// A pointer that must not be NULL was NULL.
    #[error("`{what}` is NULL")]
    Null {
        /// The argument.
        what: String,
    },
    /// A length too large for a slice.
    #[error("`{what}` length {len} exceeds PTRDIFF_MAX")]
    TooLong {
        /// The argument.
        what: String,
        /// The length given.
        len: usize,
    },
    /// A string that is not UTF-8.
    #[error("`{what}` is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 {
        /// The argument.
        what: String,
        /// Where the first invalid byte is.
        offset: usize,
    },
    /// A live handle of another kind.
    #[error("`{what}` is a {is}, not a {expected}")]
    WrongKind {
        /// The argument.
        what: String,
        /// The C type of the handle given.
        is: &'static str,
        /// The C type expected.
        expected: &'static str,
    },
    /// Not a live handle: freed, or never allocated by libpicsou.
    #[error("`{what}` is not a live {expected} (already freed, or not allocated by libpicsou)")]
    NotLive {
        /// The argument.
        what: String,
        /// The C type expected.
        expected: &'static str,
    },
}

impl PtrError {
    pub(crate) fn null(what: &str) -> Self {
        Self::Null { what: what.to_owned() }
    }
}

/// A byte slice given by C. NULL is allowed with length 0 only.
///
/// # Safety
/// If `len > 0`, `ptr` must be NULL or point to `len` readable bytes that stay valid and
/// unmodified for `'a`.
pub(crate) unsafe fn bytes_in<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], PtrError> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(PtrError::null(what));
    }
    if len > isize::MAX as usize {
        return Err(PtrError::TooLong { what: what.to_owned(), len });
    }
    // SAFETY: `ptr` is non-NULL and, by the caller's contract, points to `len` readable bytes
    // valid for 'a; `len` fits in isize as `from_raw_parts` requires.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A NUL-terminated UTF-8 string given by C.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string that stays valid for `'a`.
pub(crate) unsafe fn str_in<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, PtrError> {
    if ptr.is_null() {
        return Err(PtrError::null(what));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str().map_err(|e| PtrError::NotUtf8 { what: what.to_owned(), offset: e.valid_up_to() })
}

/// A checked, non-NULL output location, written once on success.
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// `None` if `ptr` is NULL.
    ///
    /// # Safety
    /// `ptr` must be NULL or valid for writing a `T` (aligned) until [`Out::set`] is called.
    pub(crate) unsafe fn new(ptr: *mut T) -> Option<Self> {
        (!ptr.is_null()).then_some(Self(ptr))
    }

    /// Like [`Out::new`], with a NULL-argument error naming `what`.
    ///
    /// # Safety
    /// As for [`Out::new`].
    pub(crate) unsafe fn checked(ptr: *mut T, what: &str) -> Result<Self, PtrError> {
        // SAFETY: forwarded contract.
        unsafe { Self::new(ptr) }.ok_or_else(|| PtrError::null(what))
    }

    /// Writes the value (without reading or dropping what was there: C memory).
    pub(crate) fn set(self, value: T) {
        // SAFETY: non-NULL, and valid for writes by the contract of `new`.
        unsafe { self.0.write(value) }
    }
}

/// A caller-provided buffer: `cap` writable bytes at `ptr` (NULL allowed when `cap` is 0).
pub(crate) struct BufOut {
    ptr: *mut u8,
    cap: usize,
}

impl BufOut {
    /// # Safety
    /// `ptr` must be NULL or point to `cap` writable bytes that stay valid until the last
    /// [`BufOut::write`].
    pub(crate) unsafe fn new(ptr: *mut u8, cap: usize, what: &str) -> Result<Self, PtrError> {
        if ptr.is_null() && cap > 0 {
            return Err(PtrError::null(what));
        }
        Ok(Self { ptr, cap })
    }

    pub(crate) fn capacity(&self) -> usize {
        if self.ptr.is_null() { 0 } else { self.cap }
    }

    /// Copies `parts` one after the other from the start of the buffer.
    ///
    /// # Panics
    /// If they do not fit (callers check [`BufOut::capacity`] first).
    pub(crate) fn write(&self, parts: &[&[u8]]) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        assert!(total <= self.capacity(), "BufOut::write beyond capacity");
        let mut at = 0;
        for p in parts {
            if !p.is_empty() {
                // SAFETY: `at + p.len() <= total <= cap` bytes are writable at `ptr` (contract
                // of `new`); the source is a Rust slice, which cannot overlap C's buffer
                // unless C passed the same memory as input and output, which the API forbids.
                unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), self.ptr.add(at), p.len()) };
            }
            at += p.len();
        }
    }
}

/// The kinds of handle, so that one kind is never taken for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Node,
    Endpoint,
    Delivery,
}

impl Kind {
    /// The C type of handles of this kind.
    fn c_name(self) -> &'static str {
        match self {
            Self::Node => "picsou_node",
            Self::Endpoint => "picsou_endpoint",
            Self::Delivery => "picsou_delivery",
        }
    }
}

/// A type handed to C as an opaque handle.
pub(crate) trait Handle: Sized {
    const KIND: Kind;
}

/// Addresses of the live handles. A handle is looked up before it is dereferenced, so NULL,
/// freed (double free, use after free) and foreign pointers get `PICSOU_ERR_INVALID_HANDLE`
/// instead of undefined behaviour — unless the allocator has meanwhile reused the address for
/// a new handle of the same kind, which no registry can tell apart.
static LIVE: Mutex<BTreeMap<usize, Kind>> = Mutex::new(BTreeMap::new());

fn live() -> std::sync::MutexGuard<'static, BTreeMap<usize, Kind>> {
    // The map is consistent after any panic (single insert/remove calls), so poison is moot.
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Boxes `value` and registers it as a live handle.
pub(crate) fn into_handle<T: Handle>(value: T) -> *mut T {
    let ptr = Box::into_raw(Box::new(value));
    live().insert(ptr as usize, T::KIND);
    ptr
}

fn check_live<T: Handle>(ptr: *const T, what: &str) -> Result<(), PtrError> {
    if ptr.is_null() {
        return Err(PtrError::null(what));
    }
    match live().get(&(ptr as usize)) {
        Some(k) if *k == T::KIND => Ok(()),
        Some(k) => Err(PtrError::WrongKind { what: what.to_owned(), is: k.c_name(), expected: T::KIND.c_name() }),
        None => Err(PtrError::NotLive { what: what.to_owned(), expected: T::KIND.c_name() }),
    }
}

/// Borrows a live handle.
///
/// # Safety
/// While the borrow lasts, the handle must not be freed by another thread (the API's
/// thread-safety rules say which calls may run concurrently).
pub(crate) unsafe fn handle_ref<'a, T: Handle>(ptr: *const T, what: &str) -> Result<&'a T, PtrError> {
    check_live(ptr, what)?;
    // SAFETY: registered, so it came from `into_handle` (a live Box<T>) and was not freed;
    // by the caller's contract it stays live for 'a. Only shared references are handed out.
    Ok(unsafe { &*ptr })
}

/// Unregisters a live handle and takes its ownership back; NULL is `Ok(None)` (freeing NULL
/// does nothing).
///
/// # Safety
/// No other call may be using the handle (the API documents free as exclusive).
pub(crate) unsafe fn handle_take<T: Handle>(ptr: *mut T, what: &str) -> Result<Option<Box<T>>, PtrError> {
    if ptr.is_null() {
        return Ok(None);
    }
    {
        let mut live = live();
        match live.get(&(ptr as usize)) {
            Some(k) if *k == T::KIND => {
                live.remove(&(ptr as usize));
            }
            _ => {
                drop(live);
                check_live(ptr.cast_const(), what)?;
                unreachable!("check_live refuses an unregistered handle");
            }
        }
    }
    // SAFETY: it was registered (so it is a Box<T> from `into_handle`, not yet freed) and is
    // now unregistered, so no later call can reach it; nobody else uses it (contract).
    Ok(Some(unsafe { Box::from_raw(ptr) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct A(#[allow(dead_code)] u32);
    impl Handle for A {
        const KIND: Kind = Kind::Delivery;
    }
    #[derive(Debug)]
    struct B;
    impl Handle for B {
        const KIND: Kind = Kind::Node;
    }

    #[test]
    fn handles_refuse_null_freed_and_wrong_kind() {
        let a = into_handle(A(5));
        // SAFETY: live handle, no concurrent free.
        assert!(unsafe { handle_ref(a, "a") }.is_ok());
        let wrong = a.cast::<B>();
        // SAFETY: the registry refuses it before any dereference.
        assert!(matches!(unsafe { handle_ref(wrong, "a") }.unwrap_err(), PtrError::WrongKind { .. }));
        // SAFETY: as above.
        assert!(matches!(unsafe { handle_take(wrong, "a") }.unwrap_err(), PtrError::WrongKind { .. }));
        // SAFETY: live handle, taken once.
        assert!(unsafe { handle_take(a, "a") }.unwrap().is_some());
        // SAFETY: the registry refuses the freed handle before any dereference.
        assert!(matches!(unsafe { handle_take(a, "a") }.unwrap_err(), PtrError::NotLive { .. }));
        // SAFETY: as above.
        assert!(matches!(unsafe { handle_ref(a, "a") }.unwrap_err(), PtrError::NotLive { .. }));
        // SAFETY: NULL is refused / a no-op.
        assert_eq!(unsafe { handle_ref(std::ptr::null::<A>(), "a") }.unwrap_err(), PtrError::null("a"));
        // SAFETY: as above.
        assert!(unsafe { handle_take(std::ptr::null_mut::<A>(), "a") }.unwrap().is_none());
    }

    #[test]
    fn inputs_check_null_length_and_utf8() {
        // SAFETY: NULL with length 0 is never read.
        assert_eq!(unsafe { bytes_in(std::ptr::null(), 0, "d") }.unwrap(), &[] as &[u8]);
        // SAFETY: NULL is refused before reading.
        assert_eq!(unsafe { bytes_in(std::ptr::null(), 3, "d") }.unwrap_err(), PtrError::null("d"));
        let x = [1u8];
        // SAFETY: the length is refused before reading.
        assert!(matches!(unsafe { bytes_in(x.as_ptr(), usize::MAX, "d") }.unwrap_err(), PtrError::TooLong { .. }));
        let bad = c"\xff\xfe";
        // SAFETY: a NUL-terminated string.
        let refused = unsafe { str_in(bad.as_ptr(), "s") }.unwrap_err();
        assert_eq!(refused, PtrError::NotUtf8 { what: "s".into(), offset: 0 });
        // SAFETY: NULL is refused.
        assert_eq!(unsafe { str_in(std::ptr::null(), "s") }.unwrap_err(), PtrError::null("s"));
    }
}
