//! Is io_uring usable here, and if not, what to tell the operator.
//!
//! io_uring is often present in the kernel yet unusable: container runtimes block its system
//! calls with seccomp (Docker's default profile does), hardened hosts set
//! `kernel.io_uring_disabled`, and `RLIMIT_MEMLOCK` can refuse ring memory on old kernels. The
//! probe exercises exactly what the transport needs — ring creation, the opcodes it submits, a
//! registered buffer ring, and one multishot receive on a socket pair — so that a host that
//! passes the probe runs the transport, and one that fails gets a sentence naming the fix.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode};

use crate::bufring::BufRing;
use crate::errno::{errno_name, explain};

/// Why io_uring is unusable here, each with the likely fix (the ring thread reports its own
/// set-up failures with the same variants).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The ring could not be created.
    #[error("io_uring_setup: {}", explain(.0))]
    Setup(#[source] io::Error),
    /// The kernel cannot list its io_uring operations.
    #[error("io_uring_register(PROBE): {} (Linux 5.6 or later is needed)", errno_name(.0))]
    Probe(#[source] io::Error),
    /// An operation the transport submits is missing.
    #[error("the kernel's io_uring lacks the {0} operation (Linux 6.0 or later is needed)")]
    MissingOperation(&'static str),
    /// Waiting with a timeout needs `IORING_FEAT_EXT_ARG`.
    #[error("the kernel's io_uring lacks IORING_FEAT_EXT_ARG (Linux 6.0 or later is needed)")]
    NoExtArg,
    /// The provided buffer ring could not be registered.
    #[error("registering a provided buffer ring: {}", explain(.0))]
    BufRing(#[source] io::Error),
    /// The socket pair for the receive test could not be made.
    #[error("socketpair: {0}")]
    SocketPair(#[source] io::Error),
    /// A fresh ring refused a submission.
    #[error("io_uring submission queue full")]
    SubmissionQueueFull,
    /// Submitting or waiting failed.
    #[error("io_uring_enter: {}", explain(.0))]
    Enter(#[source] io::Error),
    /// The test receive did not complete in time.
    #[error("a multishot receive did not complete within 2 s")]
    MultishotTimeout,
    /// The test receive failed.
    #[error("multishot receive failed: {} (Linux 6.0 or later is needed)", errno_name(.0))]
    MultishotFailed(#[source] io::Error),
    /// The kernel does not keep a multishot receive armed.
    #[error("multishot receive is not supported (Linux 6.0 or later is needed)")]
    MultishotUnsupported,
}

/// The opcodes the transport submits, with their names for messages.
const NEEDED: &[(u8, &str)] = &[
    (opcode::AcceptMulti::CODE, "ACCEPT"),
    (opcode::Connect::CODE, "CONNECT"),
    (opcode::LinkTimeout::CODE, "LINK_TIMEOUT"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::RecvMulti::CODE, "RECV"),
    (opcode::Read::CODE, "READ"),
    (opcode::AsyncCancel2::CODE, "ASYNC_CANCEL"),
];

/// Checks that io_uring works here as the transport uses it; `Err` says why not and what to
/// do about it.
pub fn probe() -> Result<(), ProbeError> {
    let mut ring = IoUring::new(8).map_err(ProbeError::Setup)?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(ProbeError::Probe)?;
    if let Some((_, name)) = NEEDED.iter().find(|(code, _)| !probe.is_supported(*code)) {
        return Err(ProbeError::MissingOperation(name));
    }
    if !ring.params().is_feature_ext_arg() {
        return Err(ProbeError::NoExtArg);
    }
    let bufs = BufRing::register(&ring.submitter(), 2, 4096, 0).map_err(ProbeError::BufRing)?;
    let result = multishot_receive(&mut ring);
    finish(&mut ring, bufs);
    result
}

/// Receives on a socket pair with a multishot receive, as the transport does on every
/// accepted connection.
fn multishot_receive(ring: &mut IoUring) -> Result<(), ProbeError> {
    let (mut a, b) = UnixStream::pair().map_err(ProbeError::SocketPair)?;
    a.write_all(b"x").map_err(ProbeError::SocketPair)?;
    let sqe = opcode::RecvMulti::new(Fd(b.as_raw_fd()), 0).build().user_data(1);
    #[allow(unsafe_code)]
    // SAFETY: the receive names no user memory; it writes into the registered buffer ring,
    // which `finish` frees only after the receive has completed (or leaks).
    unsafe {
        ring.submission().push(&sqe).map_err(|_| ProbeError::SubmissionQueueFull)?;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProbeError::MultishotTimeout);
        }
        let ts = Timespec::from(left);
        match ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&ts)) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) => return Err(ProbeError::Enter(e)),
        }
        if let Some(c) = ring.completion().next() {
            drop(a);
            let res = c.result();
            return if res == 1 && cqueue::buffer_select(c.flags()).is_some() && cqueue::more(c.flags()) {
                Ok(())
            } else if res < 0 {
                Err(ProbeError::MultishotFailed(crate::errno::completion_error(res)))
            } else {
                Err(ProbeError::MultishotUnsupported)
            };
        }
    }
}

/// Ends whatever is still in flight, then releases the buffer ring (leaked if the kernel does
/// not confirm in time: it may still write into it).
fn finish(ring: &mut IoUring, mut bufs: BufRing) {
    let cancel = opcode::AsyncCancel2::new(CancelBuilder::any()).build().user_data(0);
    #[allow(unsafe_code)]
    // SAFETY: a cancellation names no user memory.
    let pushed = unsafe { ring.submission().push(&cancel).is_ok() };
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut ended = false;
    while pushed && !ended && Instant::now() < deadline {
        let ts = Timespec::from(Duration::from_millis(50));
        let _ = ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&ts));
        ended = ring.completion().any(|c| c.user_data() == 1 && !cqueue::more(c.flags()));
    }
    if ended {
        bufs.unregister(&ring.submitter());
        drop(bufs);
    } else {
        bufs.leak();
    }
}
