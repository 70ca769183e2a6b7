//! Stopping the ring without freeing memory the kernel may still use.
//!
//! Shutdown cancels every operation and waits (up to [`DRAIN_TIMEOUT`]) for their last
//! completions; only then are the buffer ring and the operations' memory freed. If the kernel
//! does not finish in time, or the thread unwinds from a panic, the memory is leaked instead.

use std::time::{Duration, Instant};

use io_uring::cqueue;
use io_uring::opcode;
use io_uring::types::{CancelBuilder, SubmitArgs, Timespec};

use picsou_runtime::transport::link::State;

use super::ops::{IGNORED, Op};
use super::{Driver, benign_wait_error};

/// How long shutdown waits for in-flight operations before leaking their memory.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

impl Driver {
    /// Cancels everything and waits for the kernel to finish with our memory; leaks the
    /// memory if it does not finish in time (never frees what the kernel may still write).
    pub(super) fn shutdown(mut self) {
        let _ = self.listener.shutdown(std::net::Shutdown::Both);
        for o in &self.out {
            if let State::Up { conn: sock, .. } | State::Dialing { conn: sock, .. } = o.link.state() {
                let _ = sock.shutdown(std::net::Shutdown::Both);
            }
        }
        for c in self.conns.iter().flatten() {
            let _ = c.sock.shutdown(std::net::Shutdown::Both);
        }
        let sqe = opcode::AsyncCancel2::new(CancelBuilder::any()).build().user_data(IGNORED);
        #[allow(unsafe_code)]
        // SAFETY: a cancellation names no user memory.
        let _ = unsafe { self.push(&[sqe]) };
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.ops.live() > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let ts = Timespec::from(left.min(Duration::from_millis(100)));
            if let Err(e) = self.ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&ts))
                && !benign_wait_error(&e)
            {
                break;
            }
            let cqes: Vec<(u64, u32)> = self.ring.completion().map(|c| (c.user_data(), c.flags())).collect();
            for (ud, flags) in cqes {
                self.retire_at_shutdown(ud, flags);
            }
        }
        if self.ops.live() == 0
            && let Some(mut b) = self.bufs.take()
        {
            b.unregister(&self.ring.submitter());
            drop(b);
        }
        // `Drop` leaks whatever the kernel may still use.
    }

    /// Frees the slot of an operation whose last completion this is.
    pub(super) fn retire_at_shutdown(&mut self, ud: u64, flags: u32) {
        if let (Some(bid), Some(bufs)) = (cqueue::buffer_select(flags), &mut self.bufs) {
            bufs.recycle(bid);
        }
        if ud == IGNORED {
            return;
        }
        let more = cqueue::more(flags);
        let done = match self.ops.get_mut(ud) {
            None => return,
            Some(Op::Connect { halves, .. }) => {
                *halves -= 1;
                *halves == 0
            }
            Some(Op::Send { zero_copy: true, .. }) => cqueue::notif(flags) || !more,
            Some(_) => !more,
        };
        if done {
            self.ops.remove(ud);
        }
    }
}

impl Drop for Driver {
    /// After a clean [`Driver::shutdown`] nothing is in flight. Otherwise (shutdown timed out,
    /// or the thread is unwinding from a panic) the kernel may still read or write the memory
    /// of in-flight operations: leak it rather than free it under the kernel's feet.
    fn drop(&mut self) {
        if self.ops.live() == 0 {
            return;
        }
        tracing::warn!(in_flight = self.ops.live(), "io_uring operations still in flight; leaking their buffers");
        std::mem::forget(std::mem::take(&mut self.ops));
        std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new([0; 8])));
        if let Some(b) = self.bufs.take() {
            b.leak();
        }
        // The frames of in-flight vectored sends are still in the queues.
        std::mem::forget(std::mem::take(&mut self.out));
        // Direct receives write into frame buffers owned by their slots (leaked above).
    }
}
