//! The transport on a real RDMA device (an adapter, or soft-RoCE: `ci/rdma-vm.sh` runs this
//! binary in a VM with an `rxe0` device): the conformance suite, then the RDMA scenarios of
//! `scenarios`. Where there is no usable device every test says
//! `SKIPPED <test>: <why>` on stderr and returns; with `PICSOU_RDMA_REQUIRED=1` it fails
//! instead, so a run that must exercise the device cannot pass by skipping.
//!
//! `PICSOU_RDMA_DEVICE` names the device (default: the first one). Sizes are kept small:
//! soft-RoCE under emulation moves a few MB/s.

mod scenarios;

use std::time::Duration;

use picsou_runtime::transport::TransportOptions;
use picsou_runtime::transport::options::{RdmaOptions, RdmaPolling};
use picsou_transport_conformance::harness::{A, B, addresses, setup};
use picsou_transport_conformance::{Kit, suite};
use picsou_transport_rdma::{HwDevice, RdmaTransport};
use scenarios::*;

fn device_name() -> String {
    std::env::var("PICSOU_RDMA_DEVICE").unwrap_or_default()
}

/// Why the RDMA tests cannot run here, if they cannot.
fn rdma_unavailable() -> Option<String> {
    if std::env::var_os("PICSOU_TEST_NO_RDMA").is_some() {
        return Some("PICSOU_TEST_NO_RDMA is set".into());
    }
    let opts = RdmaOptions { device: device_name(), ring_bytes: 64 * 1024, ..RdmaOptions::default() };
    picsou_transport_rdma::probe(&opts).err().map(|e| e.to_string())
}

/// True if there is a usable device; otherwise says why on the process's stderr (which the
/// test harness does not capture: a skip is never silent) and returns false, or fails under
/// `PICSOU_RDMA_REQUIRED=1`.
fn rdma_here() -> bool {
    let Some(why) = rdma_unavailable() else { return true };
    use std::io::Write as _;
    let test = std::thread::current().name().unwrap_or(module_path!()).to_string();
    if std::env::var_os("PICSOU_RDMA_REQUIRED").is_some() {
        panic!("{test}: PICSOU_RDMA_REQUIRED is set but RDMA is unavailable: {why}");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: no usable RDMA device here: {why}");
    false
}

fn bench() -> Bench<HwDevice> {
    Bench {
        make: Box::new(|id, all, opts: &TransportOptions| {
            let mut opts = opts.clone();
            opts.rdma.device = device_name();
            let t = picsou_transport_rdma::open_hw(setup(id, all), &opts)?;
            println!("{id}: {} (inline {} bytes)", t.device(), t.max_inline());
            Ok(t)
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

/// The conformance suite's kit on the device, or `None` (skipped) without one.
fn kit(options: TransportOptions) -> Option<Kit> {
    rdma_here().then(|| bench().kit(options))
}

mod conformance {
    use super::*;

    picsou_transport_conformance::conformance_tests!(kit(options(1 << 20)));
}

#[test]
fn rdma_event_mode_exchange() {
    if let Some(k) = kit(event(options(1 << 20))) {
        suite::exchange_between_three(&Kit { frames: 1_000, ..k });
    }
}

#[test]
fn rdma_small_ring_wraps_around() {
    if rdma_here() {
        wrap_around(&bench(), 16 * 1024, 3_000);
    }
}

#[test]
fn rdma_credit_exhaustion_blocks_then_resumes() {
    if rdma_here() {
        credit_exhaustion(&bench(), &options(16 * 1024));
    }
}

#[test]
fn rdma_error_completion_resets_the_queue_pair_and_reconnects() {
    if rdma_here() {
        error_completion_and_reconnect(&bench(), &options(64 * 1024));
    }
}

#[test]
fn rdma_open_reports_the_device() {
    if !rdma_here() {
        return;
    }
    let all = addresses(&[A, B]);
    let t: RdmaTransport<HwDevice> =
        picsou_transport_rdma::open_hw(setup(A, &all), &options(64 * 1024)).expect("open the device");
    let d = t.device().to_string();
    println!("{d}");
    assert!(d.contains("port 1") && d.contains("GID index"), "{d}");
}
