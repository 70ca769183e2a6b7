//! # picsou-transport-conformance
//!
//! One conformance suite for every [`Transport`](picsou_runtime::Transport): the rules of
//! `picsou_runtime::transport` (frames arrive in order and intact, `Full` then `Writable`,
//! frames to a down peer dropped and counted, `PeerDown` once, redials, hostile connections
//! refused and reported, the waker) checked through `dyn Transport`, so that the in-memory, TCP,
//! io_uring and RDMA transports are held to the same contract by the same code.
//!
//! - [`harness`]: drives transports from the test thread as the node does (send, flush, poll),
//!   with frames whose bytes are a function of sender, receiver and sequence number, so every
//!   receiver checks order and content exactly. Transport-specific tests use it too.
//! - [`suite`]: the scenarios, each taking a [`Kit`] (how to make the transport under test
//!   and what it supports), and [`conformance_tests!`], which turns them into `#[test]`s.
//!
//! A dev-only crate rather than a module of the runtime behind a feature: the suite needs no
//! access to the runtime's internals, it stays out of every production build, and each
//! transport's tests (including the RDMA device tests run in a VM) just dev-depend on it.

pub mod harness;
pub mod suite;

pub use harness::Node;
pub use suite::Kit;

/// Expands to one `#[test]` per scenario of the suite, each running on the kit that `$kit`
/// makes (an `Option<Kit>`: `None` skips, the kit's maker says why on stderr).
#[macro_export]
macro_rules! conformance_tests {
    ($kit:expr) => {
        $crate::conformance_tests!(@test $kit, conformance_three_transports_exchange_frames_every_way, exchange_between_three);
        $crate::conformance_tests!(@test $kit, conformance_a_dead_peer_is_down_once_drops_frames_and_comes_back, peer_down_and_back);
        $crate::conformance_tests!(@test $kit, conformance_a_paused_receiver_pushes_back_and_loses_nothing, backpressure);
        $crate::conformance_tests!(@test $kit, conformance_hostile_connections_are_refused_while_good_peers_carry_on, hostile_connections);
        $crate::conformance_tests!(@test $kit, conformance_a_disconnected_peer_is_refused_until_its_quarantine_ends, disconnect_quarantined);
        $crate::conformance_tests!(@test $kit, conformance_idle_poll_sleeps_and_the_waker_interrupts_it, waker_and_idle_poll);
        $crate::conformance_tests!(@test $kit, conformance_frames_to_an_unknown_peer_are_dropped, unknown_peer);
        $crate::conformance_tests!(@test $kit, conformance_a_taken_address_is_a_listen_error, listen_error);
    };
    (@test $kit:expr, $name:ident, $scenario:ident) => {
        #[test]
        fn $name() {
            if let Some(kit) = $kit {
                $crate::suite::$scenario(&kit);
            }
        }
    };
}
