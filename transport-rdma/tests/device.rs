//! The transport on a real RDMA device (an adapter, or soft-RoCE: `ci/rdma-vm.sh` runs this
//! binary in a VM with an `rxe0` device). Where there is no usable device every test says
//! `SKIPPED <test>: <why>` on stderr and returns; with `PICSOU_RDMA_REQUIRED=1` it fails
//! instead, so a run that must exercise the device cannot pass by skipping.
//!
//! `PICSOU_RDMA_DEVICE` names the device (default: the first one). Sizes are kept small:
//! soft-RoCE under emulation moves a few MB/s.

mod common;

use std::time::Duration;

use common::*;
use picsou_runtime::transport::TransportOptions;
use picsou_runtime::transport::options::{RdmaOptions, RdmaPolling};
use picsou_transport_rdma::{HwDevice, RdmaTransport};

fn device_name() -> String {
    std::env::var("PICSOU_RDMA_DEVICE").unwrap_or_default()
}

/// Why the RDMA tests cannot run here, if they cannot.
fn rdma_unavailable() -> Option<String> {
    if std::env::var_os("PICSOU_TEST_NO_RDMA").is_some() {
        return Some("PICSOU_TEST_NO_RDMA is set".into());
    }
    let opts = RdmaOptions { device: device_name(), ring_bytes: 64 * 1024, ..RdmaOptions::default() };
    picsou_transport_rdma::probe(&opts).err()
}

/// Skips the test, saying why, when there is no usable device (fails instead under
/// `PICSOU_RDMA_REQUIRED=1`). The reason goes to the process's stderr, which the test harness
/// does not capture: a skip is never silent.
macro_rules! require_rdma {
    () => {
        if let Some(why) = rdma_unavailable() {
            use std::io::Write as _;
            let test = std::thread::current().name().unwrap_or(module_path!()).to_string();
            if std::env::var_os("PICSOU_RDMA_REQUIRED").is_some() {
                panic!("{test}: PICSOU_RDMA_REQUIRED is set but RDMA is unavailable: {why}");
            }
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: no usable RDMA device here: {why}");
            return;
        }
    };
}

fn bench() -> Bench<HwDevice> {
    Bench {
        make: Box::new(|id, all, opts: &TransportOptions| {
            let mut opts = opts.clone();
            opts.rdma.device = device_name();
            let t = picsou_transport_rdma::open_hw(setup(id, all), &opts).expect("start the rdma transport");
            println!("{id}: {} (inline {} bytes)", t.device(), t.max_inline());
            t
        }),
        frames: 2_000,
        max_frame: 64 * 1024,
        timeout: Duration::from_secs(
            std::env::var("PICSOU_RDMA_TEST_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(120),
        ),
    }
}

fn event(mut o: TransportOptions) -> TransportOptions {
    o.rdma.polling = RdmaPolling::Event;
    o
}

#[test]
fn rdma_three_transports_exchange_frames_each_way() {
    require_rdma!();
    three_way_exchange(&bench(), &options(1 << 20));
}

#[test]
fn rdma_event_mode_exchange() {
    require_rdma!();
    let b = Bench { frames: 1_000, ..bench() };
    three_way_exchange(&b, &event(options(1 << 20)));
}

#[test]
fn rdma_small_ring_wraps_around() {
    require_rdma!();
    wrap_around(&bench(), 16 * 1024, 3_000);
}

#[test]
fn rdma_credit_exhaustion_blocks_then_resumes() {
    require_rdma!();
    credit_exhaustion(&bench(), &options(16 * 1024));
}

#[test]
fn rdma_error_completion_resets_the_queue_pair_and_reconnects() {
    require_rdma!();
    error_completion_and_reconnect(&bench(), &options(64 * 1024));
}

#[test]
fn rdma_restarted_peer_is_redialled() {
    require_rdma!();
    peer_restart(&bench(), &options(64 * 1024));
}

#[test]
fn rdma_open_reports_the_device() {
    require_rdma!();
    let all = [(A, free_addr()), (B, free_addr())];
    let t: RdmaTransport<HwDevice> =
        picsou_transport_rdma::open_hw(setup(A, &all), &options(64 * 1024)).expect("open the device");
    let d = t.device().to_string();
    println!("{d}");
    assert!(d.contains("port 1") && d.contains("GID index"), "{d}");
}
