//! OS errors as io_uring reports them: completions carry a negative errno, and set-up
//! failures deserve their likely cause and fix (the probe and the ring thread both report
//! them).

use std::io;

/// The OS error of a completion's negative result.
pub(crate) fn completion_error(res: i32) -> io::Error {
    io::Error::from_raw_os_error(res.saturating_neg())
}

/// An OS error's name (`EPERM`) and message.
pub(crate) fn errno_name(e: &io::Error) -> String {
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
