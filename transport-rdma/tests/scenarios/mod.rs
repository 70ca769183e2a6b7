//! What only the RDMA transport has, on any device: ring laps, credits running out, error
//! completions resetting a queue pair. Every scenario is generic over the device, so the same
//! checks run on the in-memory fake (`tests/fake.rs`, everywhere) and on a real device
//! (`tests/device.rs`). The contract every transport keeps is the conformance suite's.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use picsou_core::ReplicaId;
use picsou_runtime::transport::{LinkError, Transport, TransportError, TransportOptions};
use picsou_transport_conformance::harness::{
    self, A, B, addresses, exchange, init_logs, mixed_size, options as base_options, run_until,
};
use picsou_transport_conformance::{Kit, Node};
use picsou_transport_rdma::RdmaTransport;
use picsou_transport_rdma::error::RdmaLinkError;
use picsou_transport_rdma::verbs::Device;

/// Options with quick redials and the given ring size.
pub fn options(ring: usize) -> TransportOptions {
    let mut o = base_options();
    o.rdma.ring_bytes = ring;
    o
}

/// Makes the transport of a replica among (replica, address) pairs with these options.
pub type Maker<D> =
    dyn Fn(ReplicaId, &[(ReplicaId, SocketAddr)], &TransportOptions) -> Result<RdmaTransport<D>, TransportError>;

/// How the scenarios make transports and how big they make things.
pub struct Bench<D: Device> {
    pub make: Box<Maker<D>>,
    /// Frames per direction in the exchange scenarios.
    pub frames: u64,
    /// Largest frame.
    pub max_frame: usize,
    /// Generous timeout for each phase.
    pub timeout: Duration,
}

impl<D: Device + 'static> Bench<D> {
    /// Transports on fresh loopback addresses, with frames of mixed sizes up to `max_size`.
    pub fn nodes(&self, ids: &[ReplicaId], opts: &TransportOptions, max_size: usize) -> Vec<Node<RdmaTransport<D>>> {
        init_logs();
        let all = addresses(ids);
        ids.iter().map(|&id| self.node(id, &all, opts, max_size)).collect()
    }

    /// The transport of `id` among `all`.
    pub fn node(
        &self,
        id: ReplicaId,
        all: &[(ReplicaId, SocketAddr)],
        opts: &TransportOptions,
        max_size: usize,
    ) -> Node<RdmaTransport<D>> {
        let t = (self.make)(id, all, opts).unwrap_or_else(|e| panic!("start the rdma transport of {id}: {e}"));
        let mut n = Node::new(id, Box::new(t));
        n.sizer = Box::new(move |s| mixed_size(s, max_size));
        n
    }

    /// The conformance suite's kit over the same device, with these options.
    pub fn kit(self, options: TransportOptions) -> Kit {
        let make = self.make;
        Kit {
            make: Box::new(move |id, all, opts| Ok(Box::new(make(id, all, opts)?) as Box<dyn Transport>)),
            options,
            frames: self.frames,
            max_frame: self.max_frame,
            timeout: self.timeout,
            dials: true,
            listens: true,
            framed_stream: false,
        }
    }
}

/// Waits until every pair of nodes is connected both ways, then forgets the first dials'
/// failures.
pub fn wait_connected<D: Device>(nodes: &mut [Node<RdmaTransport<D>>], timeout: Duration) {
    let ids: Vec<ReplicaId> = nodes.iter().map(|n| n.id).collect();
    run_until(nodes, timeout, "all connections", |ns| {
        ns.iter().all(|n| ids.iter().filter(|&&p| p != n.id).all(|&p| n.t.connected(p)))
    });
    for n in nodes.iter_mut() {
        n.poll(Duration::ZERO);
        n.downs.clear();
        n.ups.clear();
    }
}

/// Everyone's progress and link states, for failure messages.
pub fn progress<D: Device>(nodes: &[Node<RdmaTransport<D>>]) -> Vec<String> {
    let mut out = harness::progress(nodes);
    for (line, n) in out.iter_mut().zip(nodes) {
        line.push_str(&format!(" [{}]", n.t.debug_state()));
    }
    out
}

/// A small ring: many laps, frames cut across the end of the ring, credits every lap.
pub fn wrap_around<D: Device>(b: &Bench<D>, ring: usize, frames: u64) {
    let opts = options(ring);
    let mut nodes = b.nodes(&[A, B], &opts, ring / 2);
    for n in &mut nodes {
        // Sizes up to half the ring: frames span records and cross the end of the ring.
        let half = ring / 2;
        n.sizer = Box::new(move |s| if s % 50 == 7 { half } else { 40 + (s as usize * 37) % 900 });
    }
    wait_connected(&mut nodes, b.timeout);
    exchange(&mut nodes, frames, b.timeout);
    let sent = nodes[0].t.stats().bytes_sent;
    let laps = sent / ring as u64;
    println!("{frames} frames, {sent} bytes through a {ring}-byte ring: {laps} laps");
    assert!(laps >= 10, "only {laps} laps of the ring");
}

/// The receiver stops reading: the sender fills the ring, then its queue, sees `Full`; when the
/// receiver reads again, every frame arrives and the sender gets `Writable`.
pub fn credit_exhaustion<D: Device>(b: &Bench<D>, opts: &TransportOptions) {
    let ring = opts.rdma.ring_bytes;
    let mut opts = opts.clone();
    opts.tcp.max_queued_bytes = 4 * ring;
    let mut nodes = b.nodes(&[A, B], &opts, 4096);
    for n in &mut nodes {
        n.sizer = Box::new(|_| 1000);
    }
    wait_connected(&mut nodes, b.timeout);
    nodes[1].t.set_receiving(false);
    let deadline = Instant::now() + b.timeout;
    while !nodes[0].blocked.contains(&B) {
        assert!(Instant::now() < deadline, "never Full: {:?}", progress(&nodes));
        nodes[0].pump_to(B, u64::MAX, 16);
        nodes[0].poll(Duration::ZERO);
        nodes[1].poll(Duration::ZERO);
    }
    let queued = nodes[0].next_send[&B];
    // Nothing can have been consumed: the ring holds at most its size.
    let sent = nodes[0].t.stats().bytes_sent;
    assert!(sent <= ring as u64, "{sent} bytes written into a {ring}-byte ring nobody reads");
    assert_eq!(nodes[1].received_from(A), 0);
    for _ in 0..20 {
        nodes[0].poll(Duration::from_millis(5));
        nodes[1].poll(Duration::from_millis(5));
    }
    assert!(nodes[0].blocked.contains(&B), "Writable while the receiver does not read");
    assert_eq!(nodes[0].t.stats().bytes_sent, sent, "wrote past the credit");
    nodes[1].t.set_receiving(true);
    run_until(&mut nodes, b.timeout, "Writable and every frame", |ns| {
        !ns[0].writables.is_empty() && ns[1].received_from(A) == queued
    });
    assert_eq!(nodes[0].t.stats().frames_dropped, 0);
    assert!(nodes[0].fulls > 0);
    // And the stream goes on.
    exchange(&mut nodes, queued + 500, b.timeout);
}

/// A write the peer refuses: error completion, PeerDown, queue pair reset, reconnect, and
/// fresh streams flow again both ways.
pub fn error_completion_and_reconnect<D: Device>(b: &Bench<D>, opts: &TransportOptions) {
    let mut nodes = b.nodes(&[A, B], opts, 8192);
    wait_connected(&mut nodes, b.timeout);
    exchange(&mut nodes, 200, b.timeout);
    assert!(nodes[0].t.inject_bad_write(B), "link up");
    run_until(&mut nodes, b.timeout, "PeerDown(B) after the refused write", |ns| ns[0].downs_of(B) > 0);
    let reason = &nodes[0].downs[0].1;
    let rdma = match reason {
        LinkError::Transport(e) => e.downcast_ref::<RdmaLinkError>(),
        _ => None,
    };
    assert!(matches!(rdma, Some(RdmaLinkError::Completion { .. })), "{reason}");
    let connects = nodes[0].t.stats().connects;
    run_until(&mut nodes, b.timeout, "PeerUp(B) again", |ns| ns[0].ups.contains(&B) && ns[0].t.connected(B));
    assert!(nodes[0].t.stats().connects > connects);
    // Frames in flight at the failure were lost: both streams restart from 0.
    for n in &mut nodes {
        n.restart_streams();
    }
    // B's incoming side saw A redial; B's own link to A was never down.
    exchange(&mut nodes, 300, b.timeout);
}
