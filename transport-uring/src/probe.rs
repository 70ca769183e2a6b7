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

use crate::driver::BufRing;

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
pub fn probe() -> Result<(), String> {
    let mut ring = IoUring::new(8).map_err(|e| format!("io_uring_setup: {}", explain(&e)))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring_register(PROBE): {} (Linux 5.6 or later is needed)", errno_name(&e)))?;
    if let Some((_, name)) = NEEDED.iter().find(|(code, _)| !probe.is_supported(*code)) {
        return Err(format!("the kernel's io_uring lacks the {name} operation (Linux 6.0 or later is needed)"));
    }
    if !ring.params().is_feature_ext_arg() {
        return Err("the kernel's io_uring lacks IORING_FEAT_EXT_ARG (Linux 6.0 or later is needed)".into());
    }
    let bufs = BufRing::register(&ring.submitter(), 2, 4096, 0)
        .map_err(|e| format!("registering a provided buffer ring: {}", explain(&e)))?;
    let result = multishot_receive(&mut ring);
    finish(&mut ring, bufs);
    result
}

/// Receives on a socket pair with a multishot receive, as the transport does on every
/// accepted connection.
fn multishot_receive(ring: &mut IoUring) -> Result<(), String> {
    let (mut a, b) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    a.write_all(b"x").map_err(|e| format!("socketpair write: {e}"))?;
    let sqe = opcode::RecvMulti::new(Fd(b.as_raw_fd()), 0).build().user_data(1);
    #[allow(unsafe_code)]
    // SAFETY: the receive names no user memory; it writes into the registered buffer ring,
    // which `finish` frees only after the receive has completed (or leaks).
    unsafe {
        ring.submission().push(&sqe).map_err(|_| "io_uring submission queue full".to_string())?;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("a multishot receive did not complete within 2 s".into());
        }
        let ts = Timespec::from(left);
        match ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&ts)) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) => return Err(format!("io_uring_enter: {}", explain(&e))),
        }
        if let Some(c) = ring.completion().next() {
            drop(a);
            let res = c.result();
            return if res == 1 && cqueue::buffer_select(c.flags()).is_some() && cqueue::more(c.flags()) {
                Ok(())
            } else if res < 0 {
                Err(format!(
                    "multishot receive failed: {} (Linux 6.0 or later is needed)",
                    errno_name(&io::Error::from_raw_os_error(-res))
                ))
            } else {
                Err("multishot receive is not supported (Linux 6.0 or later is needed)".into())
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

/// An OS error's name (`EPERM`) and message.
fn errno_name(e: &io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::EACCES) => "EACCES",
        Some(libc::ENOSYS) => "ENOSYS",
        Some(libc::ENOMEM) => "ENOMEM",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::EMFILE) => "EMFILE",
        Some(libc::ENFILE) => "ENFILE",
        _ => return e.to_string(),
    };
    format!("{name} ({e})")
}

/// An io_uring setup error with the likely cause and its fix.
pub(crate) fn explain(e: &io::Error) -> String {
    let name = errno_name(e);
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => {
            let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok();
            match sysctl.as_deref().map(str::trim) {
                Some("2") => format!("{name} — disabled by sysctl kernel.io_uring_disabled=2 (set it to 0)"),
                Some("1") => format!(
                    "{name} — restricted by sysctl kernel.io_uring_disabled=1 to CAP_SYS_ADMIN and the group in \
                     kernel.io_uring_group (add the user to that group or set the sysctl to 0)"
                ),
                _ => format!(
                    "{name} — blocked by seccomp (container runtimes' default profiles deny io_uring: allow \
                     io_uring_setup, io_uring_enter and io_uring_register in the seccomp profile, e.g. \
                     --security-opt seccomp=<profile>) or by kernel.io_uring_disabled"
                ),
            }
        }
        Some(libc::ENOSYS) => format!("{name} — the kernel has no io_uring (CONFIG_IO_URING off, or older than 5.1)"),
        Some(libc::ENOMEM) => format!(
            "{name} — locked memory exhausted: raise RLIMIT_MEMLOCK (ulimit -l, LimitMEMLOCK= in systemd, \
             --ulimit memlock= in containers) or use fewer/smaller receive buffers"
        ),
        Some(libc::EINVAL) => {
            format!("{name} — the kernel is too old for this io_uring feature (Linux 6.0 or later is needed)")
        }
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanations_name_the_fix() {
        assert!(explain(&io::Error::from_raw_os_error(libc::EPERM)).starts_with("EPERM"));
        assert!(explain(&io::Error::from_raw_os_error(libc::ENOMEM)).contains("RLIMIT_MEMLOCK"));
        assert!(explain(&io::Error::from_raw_os_error(libc::ENOSYS)).contains("CONFIG_IO_URING"));
    }
}
