//! The [`Wake`] handle of the TCP transport.
//!
//! The node thread sleeps in `epoll_wait`; another thread (the application submitting a
//! message, or shutdown) interrupts it through a `mio::Waker`, an eventfd registered in the
//! same poller under its own token.

use super::super::Wake;

/// Interrupts [`super::TcpTransport`]'s poll from any thread.
#[derive(Debug)]
pub(super) struct TcpWaker(pub(super) mio::Waker);

impl Wake for TcpWaker {
    fn wake(&self) {
        // Fails only if the eventfd counter is saturated, i.e. a wake-up is already pending.
        if let Err(e) = self.0.wake() {
            tracing::debug!("waking the tcp transport: {e}");
        }
    }
}
